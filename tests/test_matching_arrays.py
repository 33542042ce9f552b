"""match_template on arrays (issue 8) and MatchConfig.metadata.

Oracles: the same inputs as MRC files through the file path (maps equal bit for
bit), the tilt/defocus/dose text files that the metadata object replaces, and the
checks that files get (the same error, naming the array).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _synthetic import sphere_mask, write_angle_file, write_mrc
from tmfast.backends.cpu import CpuBackend
from tmfast.batch.manifest import Manifest, ManifestEntry
from tmfast.batch.plan import build_match_config
from tmfast.errors import ConfigError, FormatError
from tmfast.extraction.candidates import candidates_from_maps, extract_candidates
from tmfast.matching.config import MatchConfig
from tmfast.matching.engine import match_template
from tmfast.metadata import TiltSeriesMetadata

N = 8
ANGLES = np.array([[0.1 * i, 0.3 + 0.2 * i, 0.5 * i] for i in range(6)])
TILTS = tuple(float(t) for t in range(-45, 46, 15))


@pytest.fixture()
def data(tmp_path: Path) -> dict[str, object]:
    rng = np.random.default_rng(9)
    arrays = {
        "tomogram": rng.standard_normal((16, 18, 20)).astype(np.float32),
        "template": rng.standard_normal((N, N, N)).astype(np.float32),
        "mask": sphere_mask(N, 3.5),
    }
    d = tmp_path / "in"
    d.mkdir()
    files = {k: write_mrc(d / f"{k}.mrc", v, 6.0) for k, v in arrays.items()}
    return {
        "arrays": arrays,
        "files": files,
        "angles": write_angle_file(d / "angles.txt", ANGLES),
        "dir": d,
    }


def _cfg(data: dict[str, object], **kw: object) -> MatchConfig:
    base: dict[str, object] = {
        "angular_search": str(data["angles"]),
        "tilt_angles": (-45.0, 45.0),
        "low_pass_a": 15.0,
        "backend": "cpu",
    }
    base.update(kw)
    return MatchConfig(**base)  # type: ignore[arg-type]


def test_arrays_give_the_file_maps_bit_for_bit(data: dict[str, object]) -> None:
    arrays: dict[str, Any] = data["arrays"]  # type: ignore[assignment]
    files: dict[str, Path] = data["files"]  # type: ignore[assignment]
    from_files = match_template(
        _cfg(data, **files, random_phase_correction=True, rng_seed=4)
    )
    from_arrays = match_template(
        _cfg(data, tomo_id="tomogram", random_phase_correction=True, rng_seed=4),
        **arrays,
        voxel_size_a=6.0,
    )
    np.testing.assert_array_equal(from_arrays.scores, from_files.scores)
    np.testing.assert_array_equal(from_arrays.angles, from_files.angles)
    assert from_arrays.stats == from_files.stats
    assert from_arrays.job.tomogram == "<array>" and from_arrays.job.mask == "<array>"
    assert from_files.job.tomogram == str(files["tomogram"].resolve())
    # mixed: the tomogram as an array, template and mask from their files (the
    # array's voxel size is compared with the template header's)
    mixed = match_template(
        _cfg(data, template=files["template"], mask=files["mask"]),
        tomogram=arrays["tomogram"],
        voxel_size_a=6.0,
    )
    np.testing.assert_array_equal(mixed.scores, from_files.maps.scores)
    assert mixed.job.template == str(files["template"].resolve())
    with pytest.raises(ConfigError, match=r"voxel sizes disagree: tomogram 7\.000"):
        match_template(
            _cfg(data, template=files["template"], mask=files["mask"]),
            tomogram=arrays["tomogram"],
            voxel_size_a=7.0,
        )
    # extract_candidates(result) == candidates_from_maps with the result's angle set
    t1 = extract_candidates(
        from_arrays, n_particles=3, cutoff=-1, particle_diameter_a=30
    )
    t2 = candidates_from_maps(
        from_files.job,
        from_files.scores,
        from_files.angles,
        n_particles=3,
        cutoff=-1,
        particle_diameter_a=30,
        angle_set=from_files.angle_set,
    )
    np.testing.assert_array_equal(t1.positions_zyx, t2.positions_zyx)
    np.testing.assert_array_equal(t1.angles_zxz_rad, ANGLES[t2.angle_indices])
    with pytest.raises(FormatError, match="angle_set"):
        candidates_from_maps(
            from_files.job,
            from_files.scores,
            from_files.angles,
            n_particles=3,
            cutoff=-1,
            particle_diameter_a=30,
            angle_set=ANGLES[:3],
        )


@pytest.mark.parametrize(
    ("name", "change", "error", "needle"),
    [
        ("tomogram", "nan", FormatError, r"tomogram array: the tomogram contains NaN"),
        (
            "template",
            "inf",
            FormatError,
            r"template array: the template contains NaN or inf",
        ),
        ("mask", "nan", FormatError, r"mask array: the mask contains NaN"),
        ("mask", "zero", ConfigError, r"mask array: the mask is empty"),
        (
            "template",
            "noncubic",
            ConfigError,
            r"template array: template box .* not cubic",
        ),
        ("mask", "box", ConfigError, r"mask array: mask box"),
        (
            "template",
            "large",
            ConfigError,
            r"template array: template box 20 is larger",
        ),
        (
            "tomogram",
            "2d",
            FormatError,
            r"tomogram array: shape \(18, 20\) is not a 3-D",
        ),
    ],
)
def test_array_inputs_get_the_file_checks(
    data: dict[str, object], name: str, change: str, error: type, needle: str
) -> None:
    arrays = {k: v.copy() for k, v in data["arrays"].items()}  # type: ignore[attr-defined]
    a = arrays[name]
    if change == "nan":
        a[1, 2, 3] = np.nan
    elif change == "inf":
        a[0, 0, 0] = np.inf
    elif change == "zero":
        a[...] = 0.0
    elif change == "noncubic":
        arrays[name] = a[:, :, :-1]
    elif change == "box":
        arrays[name] = np.ones((N + 2,) * 3, np.float32)
    elif change == "large":
        arrays[name] = np.ones((20,) * 3, np.float32)
        arrays["mask"] = np.ones((20,) * 3, np.float32)
    elif change == "2d":
        arrays[name] = a[0]
    with pytest.raises(error, match=needle):
        match_template(_cfg(data), **arrays, voxel_size_a=6.0)


def test_array_without_voxel_size_and_missing_inputs(data: dict[str, object]) -> None:
    arrays: dict[str, Any] = data["arrays"]  # type: ignore[assignment]
    with pytest.raises(FormatError, match=r"tomogram array: voxel size unknown"):
        match_template(_cfg(data), **arrays)
    # --voxel-size-angstrom (config.voxel_size_a) serves for arrays too
    r = match_template(_cfg(data, voxel_size_a=6.0), **arrays)
    assert r.job.voxel_size_a == 6.0
    with pytest.raises(ConfigError, match=r"^mask is required: .*mask= as an array"):
        match_template(
            _cfg(data), tomogram=arrays["tomogram"], template=arrays["template"]
        )
    with pytest.raises(ConfigError, match="voxel_size_a"):
        match_template(_cfg(data), **arrays, voxel_size_a=-1.0)


def test_metadata_object_equals_the_tilt_defocus_dose_files(
    data: dict[str, object], tmp_path: Path
) -> None:
    arrays: dict[str, Any] = data["arrays"]  # type: ignore[assignment]
    n = len(TILTS)
    defocus = tuple(3.0 + 0.1 * i for i in range(n))
    dose = tuple(2.5 * i for i in range(n))
    tlt = tmp_path / "ts.tlt"
    tlt.write_text("".join(f"{t!r}\n" for t in TILTS))
    df = tmp_path / "df.txt"
    df.write_text("".join(f"{v!r}\n" for v in defocus))
    ds = tmp_path / "dose.txt"
    ds.write_text("".join(f"{v!r}\n" for v in dose))
    ctf: dict[str, Any] = {
        "voltage_kv": 300.0,
        "spherical_aberration_mm": 2.7,
        "amplitude_contrast": 0.07,
    }
    by_files = match_template(
        _cfg(
            data,
            tilt_angles=tlt,
            defocus=df,
            dose_accumulation=ds,
            per_tilt_weighting=True,
            **ctf,
        ),
        **arrays,
        voxel_size_a=6.0,
    )
    md = TiltSeriesMetadata(
        tilt_angles_deg=TILTS, defocus_um=defocus, dose_e_per_a2=dose, **ctf
    )
    by_object = match_template(
        _cfg(data, tilt_angles=None, per_tilt_weighting=True),
        **arrays,
        voxel_size_a=6.0,
        metadata=md,
    )
    np.testing.assert_array_equal(by_object.scores, by_files.scores)
    assert by_object.job.metadata == md == by_files.job.metadata
    # CTF constants missing in the metadata come from the config
    partial = TiltSeriesMetadata(tilt_angles_deg=TILTS, dose_e_per_a2=dose)
    r = match_template(
        _cfg(data, metadata=partial, voltage_kv=200.0, per_tilt_weighting=True),
        **arrays,
        voxel_size_a=6.0,
    )
    assert r.job.metadata is not None and r.job.metadata.voltage_kv == 200.0
    # unequal tilt/defocus lengths are refused where the metadata is built
    with pytest.raises(ConfigError, match=r"6 defocus_um values for 7 tilts"):
        TiltSeriesMetadata(tilt_angles_deg=TILTS, defocus_um=defocus[:-1], **ctf)


def test_batch_config_carries_the_metadata_object(tmp_path: Path) -> None:
    """build_match_config passes the entry's metadata (handedness included) and
    writes no tilt/defocus/dose files."""
    md = TiltSeriesMetadata(
        tilt_angles_deg=TILTS,
        defocus_um=tuple(2.0 + 0.1 * i for i in range(len(TILTS))),
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.1,
        defocus_handedness=-1,
        tomo_name="TS_07",
    )
    out = tmp_path / "batch" / "TS_07"
    entry = ManifestEntry(
        index=0,
        key="TS_07",
        tomo_name="TS_07",
        tomogram=str(tmp_path / "rec_TS_07.mrc"),
        output_dir=str(out),
        voxel_size_a=10.0,
        metadata=md,
    )
    manifest = Manifest(
        source="test",
        source_path=str(tmp_path),
        output_dir=str(tmp_path / "batch"),
        match={
            "template": str(tmp_path / "t.mrc"),
            "mask": str(tmp_path / "m.mrc"),
            "angular_search": 30.0,
            "amplitude_contrast": 0.07,
        },
        extract={},
        slurm={},
        entries=(entry,),
    )
    cfg = build_match_config(manifest, entry)
    assert cfg.metadata is not None and cfg.metadata.defocus_handedness == -1
    assert cfg.metadata.defocus_um == md.defocus_um
    assert cfg.metadata.amplitude_contrast == 0.07  # the manifest option wins
    assert cfg.tilt_angles is None and cfg.defocus is None
    assert cfg.voxel_size_a == 10.0 and cfg.tomo_id == "rec_TS_07"
    assert not out.exists()
    assert MatchConfig.from_mapping(cfg.to_dict()) == cfg


class _FailAfter(CpuBackend):
    def __init__(self, n: int) -> None:
        super().__init__(workers=1)
        self.n, self.calls = n, 0

    def score_rotations(self, first_index: int, matrices: np.ndarray) -> None:
        if self.calls == self.n:
            raise RuntimeError("injected failure")
        self.calls += 1
        super().score_rotations(first_index, matrices)


def test_array_checkpoint_resumes_only_for_the_same_arrays(
    data: dict[str, object], tmp_path: Path
) -> None:
    arrays: dict[str, Any] = data["arrays"]  # type: ignore[assignment]
    cfg = _cfg(data, tomo_id="cell", checkpoint_every=1, checkpoint_interval_s=0)
    ck = tmp_path / "ck"
    ck.mkdir()
    kw: dict[str, Any] = {"voxel_size_a": 6.0, "batch_rotations": 2}
    with pytest.raises(RuntimeError, match="injected"):
        match_template(cfg, **arrays, backend=_FailAfter(2), checkpoint_dir=ck, **kw)
    assert (ck / "cell_checkpoint.npz").exists()
    ref = match_template(cfg, **arrays, **kw)
    changed = {**arrays, "tomogram": arrays["tomogram"] * np.float32(1.5)}
    other = match_template(cfg, **changed, checkpoint_dir=ck, **kw)
    assert other.job.resumed_rotations == 0  # other content: checkpoint ignored
    with pytest.raises(RuntimeError, match="injected"):
        match_template(cfg, **arrays, backend=_FailAfter(2), checkpoint_dir=ck, **kw)
    resumed = match_template(cfg, **arrays, checkpoint_dir=ck, **kw)
    assert resumed.job.resumed_rotations == 4
    np.testing.assert_array_equal(resumed.scores, ref.scores)
    np.testing.assert_array_equal(resumed.angles, ref.angles)
