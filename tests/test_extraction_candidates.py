"""extract_candidates on synthetic score/angle maps written with mrcfile."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from scipy.stats import norm
from tmfast.errors import ConfigError, FormatError
from tmfast.extraction import extract_candidates, false_alarm_cutoff
from tmfast.geometry.angles import angle_set, angle_set_sha256
from tmfast.matching.job import MatchJob, SearchStats
from tmfast.metadata import TiltSeriesMetadata

TOMO_ZYX = (40, 48, 56)
ORIGIN_ZYX = (2, 3, 4)
SEARCH_ZYX = (32, 40, 48)
VOXEL_A = 10.0
STEP_DEG = 90.0
SIGMA = 0.01
#: Planted peaks: search-region (z, y, x), score, angle index.
PLANTED = [((10, 12, 14), 0.50, 5), ((20, 25, 30), 0.40, 17), ((16, 30, 10), 0.30, 40)]


def _write(path: Path, data: np.ndarray, voxel: float = VOXEL_A) -> None:
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.ascontiguousarray(data))
        m.voxel_size = voxel


def make_job(
    tmp: Path,
    *,
    metadata: TiltSeriesMetadata | None = None,
    tomogram_mask: str | None = None,
    planted=PLANTED,
    seed: int = 0,
    write_tomogram: bool = True,
) -> Path:
    """Write scores/angles maps, a tomogram and a tmfast job; return the job path."""
    rng = np.random.default_rng(seed)
    angles = angle_set(STEP_DEG)
    scores = (rng.standard_normal(SEARCH_ZYX) * SIGMA).astype(np.float32)
    amap = rng.integers(0, len(angles), SEARCH_ZYX).astype(np.float32)
    for (z, y, x), s, a in planted:
        scores[z, y, x] = s
        amap[z, y, x] = a
    _write(tmp / "tomo_scores.mrc", scores)
    _write(tmp / "tomo_angles.mrc", amap)
    if write_tomogram:
        tomo = rng.standard_normal(TOMO_ZYX).astype(np.float32)
        _write(tmp / "tomo.mrc", tomo)
    n_vox = int(np.prod(SEARCH_ZYX))
    job = MatchJob(
        tomo_id="tomo",
        tomogram=str(tmp / "tomo.mrc"),
        template="t.mrc",
        mask="m.mrc",
        output_dir=str(tmp),
        tomo_shape_zyx=TOMO_ZYX,
        search_origin_zyx=ORIGIN_ZYX,
        search_shape_zyx=SEARCH_ZYX,
        voxel_size_a=VOXEL_A,
        angular_search=STEP_DEG,
        n_rotations=len(angles),
        angle_set_sha256=angle_set_sha256(angles),
        particle_diameter_a=60.0,
        tomogram_mask=tomogram_mask,
        metadata=metadata,
        stats=SearchStats(
            search_space=n_vox * len(angles), variance=SIGMA**2, std=SIGMA
        ),
        scores_file="tomo_scores.mrc",
        angles_file="tomo_angles.mrc",
    )
    return job.write(tmp / "tomo_job.json")


def test_cutoff_matches_false_alarm_definition() -> None:
    # Independent oracle: N * P(X > theta) = n_fp for X ~ N(0, sigma).
    for sigma, n, nfp in [(0.01, 10**9, 1.0), (0.05, 2.5e12, 3.0), (1.0, 1e6, 0.1)]:
        theta = false_alarm_cutoff(sigma, int(n), n_false_positives=nfp)
        assert n * norm.sf(theta / sigma) == pytest.approx(nfp, rel=1e-6)
    # the θ/sigma table of pytom-match-pick (reference §4.2)
    assert false_alarm_cutoff(1.0, 10**12) == pytest.approx(7.03, abs=0.01)
    with pytest.raises(ConfigError, match="search std"):
        false_alarm_cutoff(float("nan"), 100)


def test_planted_peaks_recovered_with_auto_cutoff(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    t = extract_candidates(job, n_particles=50)
    n_search = int(np.prod(SEARCH_ZYX)) * 48
    assert t.cutoff == pytest.approx(
        math.sqrt(2) * SIGMA * float(__import__("scipy").special.erfcinv(2 / n_search))
    )
    # Background N(0, 0.01) never reaches the ~0.06 cutoff: exactly the planted peaks.
    assert len(t) == 3
    expect = np.array([p for p, _, _ in PLANTED]) + np.array(ORIGIN_ZYX)
    np.testing.assert_array_equal(t.positions_zyx, expect)
    np.testing.assert_allclose(t.scores, [s for _, s, _ in PLANTED], rtol=1e-6)
    np.testing.assert_array_equal(t.angle_indices, [a for _, _, a in PLANTED])
    angles = angle_set(STEP_DEG)
    np.testing.assert_allclose(t.angles_zxz_rad, angles[[5, 17, 40]])
    # RELION angles: pytom's own formula (scipy), compared as matrices.
    ref = Rotation.from_euler("ZXZ", -angles[[5, 17, 40]])
    got = Rotation.from_euler("ZYZ", t.relion_angles_deg, degrees=True)
    assert np.all((ref.inv() * got).magnitude() < 1e-6)


def test_forced_picks_and_manual_cutoff(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    t = extract_candidates(job, n_particles=20, cutoff=-1)
    assert len(t) == 20 and t.cutoff == float("-inf")
    assert np.all(np.diff(t.scores) <= 0)
    t2 = extract_candidates(job, n_particles=20, cutoff=0.35)
    assert len(t2) == 2 and t2.cutoff == 0.35


def test_exclusion_is_spherical_and_border_applied(tmp_path: Path) -> None:
    # Two peaks 3 voxels apart in each of x and y: Euclidean 4.24 > radius 3 but a
    # cube exclusion (pytom's defect) would suppress the second.
    planted = [
        ((10, 10, 10), 0.5, 1),
        ((10, 13, 13), 0.45, 2),
        ((1, 20, 20), 0.9, 3),
    ]  # z=1 lies in the border
    job = make_job(tmp_path, planted=planted)
    t = extract_candidates(job, n_particles=10, particle_diameter_a=60.0)
    got = {tuple(p) for p in t.positions_zyx - np.array(ORIGIN_ZYX)}
    assert got == {(10, 10, 10), (10, 13, 13)}
    t = extract_candidates(job, n_particles=10, particle_diameter_a=90.0)  # r = 4.5
    got = {tuple(p) for p in t.positions_zyx - np.array(ORIGIN_ZYX)}
    assert got == {(10, 10, 10)}


def test_tomogram_mask_cropped_and_applied(tmp_path: Path) -> None:
    mask = np.ones(TOMO_ZYX, np.float32)
    z, y, x = np.array(PLANTED[0][0]) + np.array(ORIGIN_ZYX)
    mask[z, y, x] = 0.0
    _write(tmp_path / "mask.mrc", mask)
    job = make_job(tmp_path, tomogram_mask=str(tmp_path / "mask.mrc"))
    t = extract_candidates(job, n_particles=10)
    assert len(t) == 2 and 0.5 not in t.scores.tolist()
    t = extract_candidates(job, n_particles=10, ignore_tomogram_mask=True)
    assert len(t) == 3
    arr = np.ones(SEARCH_ZYX, np.float32)
    arr[tuple(PLANTED[1][0])] = -1
    t = extract_candidates(job, n_particles=10, tomogram_mask=arr)
    assert sorted(t.scores.tolist()) == pytest.approx([0.3, 0.5])
    with pytest.raises(FormatError, match="matches neither"):
        extract_candidates(job, n_particles=10, tomogram_mask=np.ones((5, 5, 5)))


def test_no_particle_above_cutoff_gives_empty_table(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    t = extract_candidates(job, n_particles=10, cutoff=0.99)
    assert len(t) == 0
    blocks = t.to_star_blocks()
    assert all(len(v) == 0 for v in blocks["particles"].values())


def test_missing_or_mismatched_maps(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    (tmp_path / "tomo_angles.mrc").unlink()
    with pytest.raises(FormatError, match=r"angle map .* not found"):
        extract_candidates(job, n_particles=5)
    _write(tmp_path / "tomo_angles.mrc", np.zeros((4, 4, 4), np.float32))
    with pytest.raises(FormatError, match="does not match the job's search region"):
        extract_candidates(job, n_particles=5)
    amap = np.full(SEARCH_ZYX, 999.0, np.float32)
    _write(tmp_path / "tomo_angles.mrc", amap)
    with pytest.raises(FormatError, match="outside the job's 48 rotations"):
        extract_candidates(job, n_particles=5)
    with pytest.raises(FormatError, match="job file not found"):
        extract_candidates(tmp_path / "nope.json", n_particles=5)


def test_no_stats_needs_manual_cutoff(tmp_path: Path) -> None:
    job = MatchJob.read(make_job(tmp_path)).with_updates(stats=None)
    with pytest.raises(ConfigError, match="manual cutoff"):
        extract_candidates(job, n_particles=5, job_dir=tmp_path)
    assert (
        len(extract_candidates(job, n_particles=5, cutoff=0.2, job_dir=tmp_path)) == 3
    )


def test_tophat_keeps_sharp_peaks_and_drops_plateaus(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    scores = mrcfile.read(tmp_path / "tomo_scores.mrc").copy()
    zz, yy, xx = np.indices(SEARCH_ZYX)
    blob = 0.6 * np.exp(
        -((zz - 22) ** 2 + (yy - 8) ** 2 + (xx - 38) ** 2) / (2 * 6.0**2)
    )
    scores += blob.astype(np.float32)  # a broad, smooth score hill
    _write(tmp_path / "tomo_scores.mrc", scores)
    plain = extract_candidates(job, n_particles=10)
    assert plain.scores[0] > 0.55  # the hill is picked without it
    t = extract_candidates(job, n_particles=10, tophat_filter=True)
    expect = np.array([p for p, _, _ in PLANTED]) + np.array(ORIGIN_ZYX)
    np.testing.assert_array_equal(t.positions_zyx, expect)  # the hill is gone


# --- pytom-match-pick job files ---------------------------------------------------


def _pytom_job(tmp: Path, with_relion: bool) -> Path:
    """A job JSON following pytom-match-pick 0.14's schema (reference §3.10)."""
    make_job(tmp)
    nz, ny, nx = TOMO_ZYX
    oz, oy, ox = ORIGIN_ZYX
    sz, sy, sx = SEARCH_ZYX
    meta = {
        "tilt_angles": [-60.0, 0.0, 60.0],
        "angles_in_degrees": True,
        "ctf_data": None,
        "dose_accumulation": None,
        "defocus_handedness": 0,
        "per_tilt_weighting": False,
        "level_angle_x": 0.0,
        "level_angle_y": 0.0,
        "__class__": "TiltSeriesMetaData",
    }
    if with_relion:
        meta.update(
            binning=4.0,
            tilt_series_pixel_size=2.5,
            __class__="RelionTiltSeriesMetaData",
        )
    data = {
        "mask": str(tmp / "m.mrc"),
        "mask_is_spherical": True,
        "output_dir": str(tmp / "moved_away"),
        "tomogram": str(tmp / "rec_tomo.mrc"),
        "template": str(tmp / "t.mrc"),
        "tomo_id": "tomo",
        "ts_metadata": meta,
        "tomo_shape": [nx, ny, nz],
        "template_shape": [12, 12, 12],
        "mask_shape": [12, 12, 12],
        "voxel_size": VOXEL_A,
        "tomogram_mask": None,
        "whole_start": None,
        "sub_start": [0, 0, 0],
        "sub_step": [sx, sy, sz],
        "start_slice": 0,
        "steps_slice": 1,
        "rotational_symmetry": 1,
        "particle_diameter": 60.0,
        "rotation_file": STEP_DEG,
        "n_rotations": 48,
        "low_pass": None,
        "high_pass": None,
        "whiten_spectrum": False,
        "whitening_filter": str(tmp / "w.npy"),
        "random_phase_correction": False,
        "rng_seed": 321,
        "job_key": "0",
        "leader": None,
        "job_stats": {
            "search_space": sx * sy * sz * 48,
            "variance": SIGMA**2,
            "std": SIGMA,
        },
        "log_level": 20,
        "pytom_tm_version_number": "0.14.0",
        "output_dtype": "float32",
        "search_x": [ox, ox + sx],
        "search_y": [oy, oy + sy],
        "search_z": [oz, oz + sz],
    }
    p = tmp / "tomo_pytom_job.json"
    p.write_text(json.dumps(data))
    return p


def test_pytom_job_read_and_extracted(tmp_path: Path) -> None:
    job = _pytom_job(tmp_path, with_relion=True)
    t = extract_candidates(job, n_particles=50)
    assert len(t) == 3
    expect = np.array([p for p, _, _ in PLANTED]) + np.array(ORIGIN_ZYX)
    np.testing.assert_array_equal(t.positions_zyx, expect)
    assert t.tilt_series_pixel_size_a == 2.5 and t.binning == 4.0
    assert t.voxel_size_a == VOXEL_A


def test_pytom_job_with_wrong_rotation_count(tmp_path: Path) -> None:
    p = _pytom_job(tmp_path, with_relion=False)
    d = json.loads(p.read_text())
    d["n_rotations"] = 50
    p.write_text(json.dumps(d))
    with pytest.raises(FormatError, match="now has 48 rotations"):
        extract_candidates(p, n_particles=5)


@pytest.mark.parametrize("inside", [1, -1])
def test_int8_mask_file_including_unsigned_read_as_signed(tmp_path, inside) -> None:
    # Slabify writes int8 0/1 masks; 0/255 masks stored as int8 read back as 0/-1.
    mask = np.full(TOMO_ZYX, inside, np.int8)
    z, y, x = np.array(PLANTED[2][0]) + np.array(ORIGIN_ZYX)
    mask[z - 1 : z + 2, y - 1 : y + 2, x - 1 : x + 2] = 0
    with mrcfile.new(tmp_path / "mask.mrc") as m:
        m.set_data(mask)
    job = make_job(tmp_path, tomogram_mask="mask.mrc")  # relative to the job file
    t = extract_candidates(job, n_particles=10)
    np.testing.assert_allclose(t.scores, [0.5, 0.4], rtol=1e-6)


def test_job_with_relative_rotation_file(tmp_path: Path, monkeypatch) -> None:
    from _synthetic import write_angle_file

    angles = angle_set(STEP_DEG)
    write_angle_file(tmp_path / "rot.txt", angles)
    job = MatchJob.read(make_job(tmp_path)).with_updates(angular_search="rot.txt")
    job.write(tmp_path / "tomo_job.json", overwrite=True)
    monkeypatch.chdir(tmp_path.parent)  # the file is not in the CWD
    t = extract_candidates(tmp_path / "tomo_job.json", n_particles=10)
    np.testing.assert_allclose(t.angles_zxz_rad, angles[[5, 17, 40]])


def test_centred_coordinates_infer_missing_binning(tmp_path: Path) -> None:
    """A tilt-series pixel size without a recorded binning means binning = voxel/pixel.

    RELION5: centred Å = (x_vox * binning - size_unbinned / 2) * pixel; assuming a
    binning of 1 would shrink every coordinate by the true binning.
    """
    ts_px = VOXEL_A / 4.0
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    md = {"tilt_angles_deg": (-60.0, 0.0, 60.0), "tilt_series_pixel_size_a": ts_px}
    known = extract_candidates(
        make_job(tmp_path / "a", metadata=TiltSeriesMetadata(**md, binning=4.0)),
        n_particles=50,
    )
    unknown = extract_candidates(
        make_job(tmp_path / "b", metadata=TiltSeriesMetadata(**md)), n_particles=50
    )
    assert unknown.binning is None and len(known) == len(unknown) == 3
    got = unknown.centred_coordinates_a()
    np.testing.assert_allclose(got, known.centred_coordinates_a())
    nx = TOMO_ZYX[2]
    x_vox = known.positions_zyx[:, 2]
    np.testing.assert_allclose(got[:, 0], (x_vox * 4.0 - nx * 4.0 / 2) * ts_px)
