"""run_match end to end on tiny MRC files: outputs, job record, bad input, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from _synthetic import sphere_mask, write_angle_file, write_mrc
from tmfast.backends.cpu import CpuBackend
from tmfast.errors import ConfigError, FormatError, OutputExistsError
from tmfast.matching.config import MatchConfig
from tmfast.matching.engine import match_template, output_paths, run_match
from tmfast.matching.job import MatchJob

N = 8
ANGLES = np.array([[0.1 * i, 0.3 + 0.2 * i, 0.5 * i] for i in range(8)])


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(5)
    d = tmp_path / "in"
    d.mkdir()
    return {
        "tomogram": write_mrc(d / "tomo.mrc", rng.standard_normal((18, 20, 22)), 5.0),
        "template": write_mrc(d / "tmpl.mrc", rng.standard_normal((N, N, N)), 5.0),
        "mask": write_mrc(d / "mask.mrc", sphere_mask(N, 3.5), 5.0),
        "angles": write_angle_file(d / "angles.txt", ANGLES),
        "dir": d,
    }


def _config(files: dict[str, Path], dest: Path, **kw: object) -> MatchConfig:
    base: dict[str, object] = {
        "template": files["template"],
        "tomogram": files["tomogram"],
        "mask": files["mask"],
        "destination": dest,
        "angular_search": str(files["angles"]),
        "tilt_angles": (-50, 55),
        "low_pass_a": 12.0,
        "backend": "cpu",
    }
    base.update(kw)
    return MatchConfig(**base)  # type: ignore[arg-type]


def test_outputs_and_job_record(files: dict[str, Path], tmp_path: Path) -> None:
    dest = tmp_path / "out"
    cfg = _config(
        files,
        dest,
        search_x=(2, 20),
        search_z=(1, 17),
        half_precision=True,
        volume_split_xyz=(2, 1, 1),
        random_phase_correction=True,
        rng_seed=7,
    )
    job = run_match(cfg)
    paths = output_paths(dest, "tomo")
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        p.name for k, p in paths.items() if k != "checkpoint"
    )
    with mrcfile.open(paths["scores"]) as m:
        assert m.data.dtype == np.float16 and m.data.shape == (16, 20, 18)
        assert float(m.voxel_size.x) == pytest.approx(5.0)
        scores = m.data.astype(np.float32)
    with mrcfile.open(paths["angles"]) as m:
        assert m.data.dtype == np.float32 and float(m.voxel_size.x) == pytest.approx(
            5.0
        )
        angles = m.data
    assert np.isfinite(scores).all()
    assert set(np.unique(angles).astype(int)) <= set(range(len(ANGLES)))
    back = MatchJob.read(paths["job"])
    assert back == job
    assert job.n_rotations == 8 and job.search_origin_zyx == (1, 0, 2)
    assert job.search_shape_zyx == (16, 20, 18) and job.tomo_shape_zyx == (18, 20, 22)
    assert (
        job.rng_seed == 7 and job.random_phase_correction and job.noise_mean is not None
    )
    assert job.stats is not None and job.stats.search_space == 16 * 20 * 18 * 8
    assert job.tilt_range_deg == (-50.0, 55.0)
    # the same maps in memory, and a seeded rerun reproduces them bit for bit
    res = match_template(cfg)
    np.testing.assert_array_equal(
        res.scores.astype(np.float16).astype(np.float32), scores
    )
    np.testing.assert_array_equal(res.angles.astype(np.float32), angles)
    res2 = match_template(cfg)
    np.testing.assert_array_equal(res2.scores, res.scores)
    other = match_template(cfg.with_updates(rng_seed=8))
    assert not np.array_equal(other.scores, res.scores)
    # existing outputs: refused before any work, nothing changed
    before = {p: p.stat().st_mtime_ns for p in dest.iterdir()}
    with pytest.raises(OutputExistsError):
        run_match(cfg)
    assert {p: p.stat().st_mtime_ns for p in dest.iterdir()} == before
    run_match(cfg, overwrite=True)


def _bad(
    files: dict[str, Path],
    tmp_path: Path,
    name: str,
    data: np.ndarray,
    voxel: float = 5.0,
) -> Path:
    return write_mrc(tmp_path / "in" / name, data, voxel)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ("noncubic", ConfigError, "not cubic"),
        ("maskbox", ConfigError, "differs from the template box"),
        ("big", ConfigError, "larger than"),
        ("voxel", ConfigError, "voxel sizes disagree"),
        ("nan", FormatError, "NaN"),
        ("emptymask", ConfigError, "empty"),
        ("missing", FormatError, "not found"),
        ("tmask", ConfigError, "tomogram mask shape"),
        ("search", ConfigError, "search-x"),
        ("split", ConfigError, "volume-split"),
    ],
)
def test_bad_input_writes_nothing(
    files: dict[str, Path], tmp_path: Path, change: str, error: type, match: str
) -> None:
    dest = tmp_path / "out"
    kw: dict[str, object] = {}
    rng = np.random.default_rng(0)
    if change == "noncubic":
        kw["template"] = _bad(files, tmp_path, "t.mrc", rng.standard_normal((8, 8, 9)))
    elif change == "maskbox":
        kw["mask"] = _bad(files, tmp_path, "m.mrc", sphere_mask(9, 3))
    elif change == "big":
        kw["template"] = _bad(files, tmp_path, "t.mrc", rng.standard_normal((19,) * 3))
        kw["mask"] = _bad(files, tmp_path, "m.mrc", sphere_mask(19, 5))
    elif change == "voxel":
        kw["template"] = _bad(
            files, tmp_path, "t.mrc", rng.standard_normal((8,) * 3), 6.0
        )
    elif change == "nan":
        t = rng.standard_normal((18, 20, 22))
        t[3, 4, 5] = np.nan
        kw["tomogram"] = _bad(files, tmp_path, "v.mrc", t)
    elif change == "emptymask":
        kw["mask"] = _bad(files, tmp_path, "m.mrc", np.zeros((8,) * 3))
    elif change == "missing":
        kw["tomogram"] = tmp_path / "nope.mrc"
    elif change == "tmask":
        kw["tomogram_mask"] = _bad(files, tmp_path, "tm.mrc", np.ones((18, 20, 21)))
    elif change == "search":
        kw["search_x"] = (0, 23)
    elif change == "split":
        kw["volume_split_xyz"] = (30, 1, 1)
    with pytest.raises(error, match=match):
        run_match(_config(files, dest, **kw))
    assert not dest.exists()


def test_voxel_size_override(files: dict[str, Path], tmp_path: Path) -> None:
    t = write_mrc(
        tmp_path / "in" / "t6.mrc",
        np.random.default_rng(1).standard_normal((8,) * 3),
        6.0,
    )
    job = run_match(_config(files, tmp_path / "o", template=t, voxel_size_a=5.5))
    assert job.voxel_size_a == 5.5


class _Failing(CpuBackend):
    def __init__(self, fail_after: int) -> None:
        super().__init__(workers=1)
        self.calls = 0
        self.fail_after = fail_after

    def score_rotations(self, first_index, matrices):  # type: ignore[no-untyped-def]
        if self.calls == self.fail_after:
            raise RuntimeError("injected failure")
        self.calls += 1
        super().score_rotations(first_index, matrices)


@pytest.mark.parametrize(
    ("split", "fail_after", "resumed"), [((1, 1, 1), 3, 6), ((2, 1, 2), 6, 12)]
)
def test_resume_after_exception_is_identical(
    files: dict[str, Path],
    tmp_path: Path,
    split: tuple[int, int, int],
    fail_after: int,
    resumed: int,
) -> None:
    kw = {
        "volume_split_xyz": split,
        "random_phase_correction": True,
        "rng_seed": 3,
        "checkpoint_every": 2,
        "checkpoint_interval_s": 0,
    }
    ref = run_match(
        _config(files, tmp_path / "ref", **kw),
        backend=CpuBackend(workers=1),
        batch_rotations=2,
    )
    dest = tmp_path / "run"
    cfg = _config(files, dest, **kw)
    with pytest.raises(RuntimeError, match="injected"):
        run_match(cfg, backend=_Failing(fail_after=fail_after), batch_rotations=2)
    ckpt = output_paths(dest, "tomo")["checkpoint"]
    assert ckpt.exists() and not output_paths(dest, "tomo")["scores"].exists()
    # finished tiles are kept in their own files, written once
    tile_files = sorted(p.name for p in dest.glob("tomo_checkpoint_tile*.npz"))
    assert tile_files == [f"tomo_checkpoint_tile{k}.npz" for k in range(resumed // 8)]
    job = run_match(cfg, backend=CpuBackend(workers=1), batch_rotations=2)
    assert job.resumed_rotations == resumed
    assert not ckpt.exists() and not list(dest.glob("*checkpoint*"))
    for key in ("scores", "angles"):
        a = mrcfile.read(output_paths(dest, "tomo")[key])
        b = mrcfile.read(output_paths(tmp_path / "ref", "tomo")[key])
        np.testing.assert_array_equal(a, b)
    assert job.stats == ref.stats


def test_checkpoint_of_another_config_is_ignored(
    files: dict[str, Path], tmp_path: Path
) -> None:
    dest = tmp_path / "run"
    cfg = _config(files, dest, checkpoint_every=2, checkpoint_interval_s=0)
    with pytest.raises(RuntimeError):
        run_match(cfg, backend=_Failing(fail_after=2), batch_rotations=2)
    job = run_match(
        cfg.with_updates(low_pass_a=15.0),
        backend=CpuBackend(workers=1),
        batch_rotations=2,
    )
    assert job.resumed_rotations == 0


_CHILD = """
import sys, time
from pathlib import Path
from tmfast.backends.cpu import CpuBackend
from tmfast.matching.config import MatchConfig
from tmfast.matching.engine import run_match

class Slow(CpuBackend):
    def score_rotations(self, first_index, matrices):
        super().score_rotations(first_index, matrices)
        time.sleep(0.4)

cfg = MatchConfig.from_toml(sys.argv[1])
run_match(cfg, backend=Slow(workers=1), batch_rotations=1)
"""


def test_resume_after_sigkill(files: dict[str, Path], tmp_path: Path) -> None:
    ref = run_match(_config(files, tmp_path / "ref"), backend=CpuBackend(workers=1))
    dest = tmp_path / "run"
    toml = tmp_path / "cfg.toml"
    toml.write_text(
        "[match]\n"
        f'template = "{files["template"]}"\ntomogram = "{files["tomogram"]}"\n'
        f'mask = "{files["mask"]}"\ndestination = "{dest}"\n'
        f'angular-search = "{files["angles"]}"\ntilt-angles = [-50, 55]\n'
        'low-pass = 12.0\nbackend = "cpu"\ncheckpoint-every = 1\n'
        "checkpoint_interval_s = 0\n"
    )
    cfg = MatchConfig.from_toml(toml)
    assert cfg == _config(files, dest, checkpoint_every=1, checkpoint_interval_s=0)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "python"))
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(toml)], env=env)
    ckpt = output_paths(dest, "tomo")["checkpoint"]
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and not ckpt.exists():
            time.sleep(0.05)
        time.sleep(0.5)
        assert proc.poll() is None, "child finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert ckpt.exists() and not output_paths(dest, "tomo")["scores"].exists()
    job = run_match(cfg, backend=CpuBackend(workers=1))
    assert 0 < job.resumed_rotations < len(ANGLES)
    for key in ("scores", "angles"):
        np.testing.assert_array_equal(
            mrcfile.read(output_paths(dest, "tomo")[key]),
            mrcfile.read(output_paths(tmp_path / "ref", "tomo")[key]),
        )
    assert job.stats == ref.stats


def test_relion5_metadata(files: dict[str, Path], tmp_path: Path) -> None:
    from _synthetic import SHARED
    from tmfast.batch.relion5 import read_relion5_metadata

    star = SHARED / "data" / "formats" / "relion5_tomograms" / "pytom_job009"
    star = star / "tomograms.star"
    if not star.exists():
        pytest.skip("../shared/data/formats/relion5_tomograms not present")
    tomo = tmp_path / "in" / "tomo200528_107.mrc"
    tomo.write_bytes(files["tomogram"].read_bytes())
    job = run_match(
        _config(
            files,
            tmp_path / "o",
            tomogram=tomo,
            relion5_tomograms_star=star,
            per_tilt_weighting=True,
            tilt_angles=None,
        )
    )
    meta = read_relion5_metadata(star, "tomo200528_107")
    assert job.metadata == meta and meta.has_ctf
    assert meta.tilt_series_pixel_size_a is not None and meta.binning is not None
    assert job.voxel_size_a == pytest.approx(
        meta.tilt_series_pixel_size_a * meta.binning
    )
    assert job.tilt_range_deg == (min(meta.tilt_angles_deg), max(meta.tilt_angles_deg))


def test_tilt_defocus_dose_files(files: dict[str, Path], tmp_path: Path) -> None:
    tilts = list(range(-51, 52, 3))
    tlt = tmp_path / "in" / "ts.tlt"
    tlt.write_text("\n".join(str(t) for t in tilts) + "\n")
    dose = tmp_path / "in" / "dose.txt"
    dose.write_text("\n".join(str(3.0 * i) for i in range(len(tilts))) + "\n")
    job = run_match(
        _config(
            files,
            tmp_path / "o",
            tilt_angles=tlt,
            per_tilt_weighting=True,
            defocus=3.5,
            dose_accumulation=dose,
            amplitude_contrast=0.07,
            spherical_aberration_mm=2.7,
            voltage_kv=300.0,
            tomogram_ctf_model="phase-flip",
        )
    )
    meta = job.metadata
    assert meta is not None and meta.tilt_angles_deg == tuple(float(t) for t in tilts)
    assert meta.defocus_um == (3.5,) * len(tilts)
    assert meta.dose_e_per_a2 == tuple(3.0 * i for i in range(len(tilts)))
    assert job.tomogram_ctf_model == "phase-flip" and job.per_tilt_weighting
    short = tmp_path / "in" / "dose_short.txt"
    short.write_text("1\n2\n")
    with pytest.raises((ConfigError, FormatError)):
        run_match(
            _config(
                files,
                tmp_path / "o2",
                tilt_angles=tlt,
                per_tilt_weighting=True,
                dose_accumulation=short,
            )
        )
    assert not (tmp_path / "o2").exists()


def test_unwritable_destination(files: dict[str, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot be created"):
        run_match(_config(files, blocker / "out"))


def test_crowther_step_whitening_and_tomogram_mask(
    files: dict[str, Path], tmp_path: Path
) -> None:
    from tmfast.geometry.angles import angle_set, angle_step_from_diameter

    tmask = np.zeros((18, 20, 22), np.float32)
    tmask[4:14, 5:15, 3:20] = 1.0
    mask_file = write_mrc(tmp_path / "in" / "tmask.mrc", tmask, 5.0)
    cfg = _config(
        files,
        tmp_path / "o",
        angular_search=None,
        particle_diameter_a=15.0,
        spectral_whitening=True,
        tomogram_mask=mask_file,
        volume_split_xyz=(1, 1, 3),
    )
    job = run_match(cfg)
    step = angle_step_from_diameter(15.0, 5.0, low_pass_a=12.0)
    assert job.angular_search == pytest.approx(step)
    assert job.n_rotations == len(angle_set(step))
    assert job.whitening_profile is not None and len(job.whitening_profile) > 2
    assert job.tomogram_mask == str(mask_file.resolve())
    assert job.stats is not None
    assert job.stats.search_space == int(tmask.sum()) * job.n_rotations


def test_unseeded_random_phase_run_resumes_with_its_seed(
    files: dict[str, Path], tmp_path: Path
) -> None:
    dest = tmp_path / "run"
    cfg = _config(
        files,
        dest,
        random_phase_correction=True,
        checkpoint_every=2,
        checkpoint_interval_s=0,
    )
    assert cfg.rng_seed is None
    with pytest.raises(RuntimeError, match="injected"):
        run_match(cfg, backend=_Failing(fail_after=2), batch_rotations=2)
    job = run_match(cfg, backend=CpuBackend(workers=1), batch_rotations=2)
    assert job.resumed_rotations == 4 and job.rng_seed is not None
    ref = run_match(
        cfg.with_updates(rng_seed=job.rng_seed, destination=tmp_path / "r"),
        backend=CpuBackend(workers=1),
        batch_rotations=2,
    )
    for key in ("scores", "angles"):
        np.testing.assert_array_equal(
            mrcfile.read(output_paths(dest, "tomo")[key]),
            mrcfile.read(output_paths(tmp_path / "r", "tomo")[key]),
        )
    assert ref.stats == job.stats
