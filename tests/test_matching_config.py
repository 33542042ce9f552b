"""MatchConfig validation and TOML loading; backend registry; noise template."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.fft as sfft
from tmfast.backends.cpu import CpuBackend
from tmfast.backends.registry import available_backends, get_backend, get_backends
from tmfast.errors import BackendUnavailableError, ConfigError, FormatError
from tmfast.matching.config import MatchConfig
from tmfast.matching.random_phase import phase_randomised_template

BASE = {
    "template": "t.mrc",
    "tomogram": "dir/TS_01.mrc",
    "mask": "m.mrc",
    "angular_search": 10,
}


def test_defaults_and_coercion() -> None:
    c = MatchConfig(
        **BASE,
        volume_split_xyz=[2, 1, 3],
        search_x=[0, 5],  # type: ignore[arg-type]
        tilt_angles=["-60", "58.5"],
        defocus="3.5",
        amplitude_contrast=0.07,
        spherical_aberration_mm=2.7,
        voltage_kv=300,
        gpu_ids=[1, 0],
    )
    assert c.template == Path("t.mrc") and c.tomo_id == "TS_01"
    assert c.volume_split_xyz == (2, 1, 3) and c.search_x == (0, 5)
    assert c.tilt_angles == (-60.0, 58.5) and c.defocus == 3.5
    assert c.gpu_ids == (1, 0) and c.backend == "auto" and c.checkpoint_every == 2000
    assert MatchConfig(**{**BASE, "angular_search": "7.5"}).angular_search == 7.5
    f = MatchConfig(**{**BASE, "angular_search": "angles.txt"}, tilt_angles="x.tlt")
    assert f.angular_search == "angles.txt" and f.tilt_angles == Path("x.tlt")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"angular_search": None}, "--particle-diameter"),
        ({"angular_search": -3}, "--angular-search"),
        ({"volume_split_xyz": (1, 0, 1)}, "--volume-split"),
        ({"search_y": (4, 4)}, "--search-y"),
        ({"tilt_angles": (30, -30)}, "--tilt-angles"),
        ({"low_pass_a": 20, "high_pass_a": 10}, "--high-pass"),
        ({"defocus": 3.0}, "--amplitude-contrast"),
        ({"amplitude_contrast": 1.5}, "--amplitude-contrast"),
        ({"tomogram_ctf_model": "wiener"}, "phase-flip"),
        ({"backend": "metal"}, "--backend"),
        ({"gpu_ids": (0, 0)}, "--gpu-ids"),
        ({"rng_seed": -1}, "--rng-seed"),
        ({"z_axis_rotational_symmetry": 0}, "symmetry"),
    ],
)
def test_invalid_options(change: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("-", r"\-")):
        MatchConfig(**{**BASE, **change})  # type: ignore[arg-type]


def test_files_optional_until_required_and_tomo_id() -> None:
    c = MatchConfig(**{**BASE, "template": None})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^template is required: give its MRC file"):
        c.require_files()
    c.require_files(except_=frozenset({"template"}))
    assert c.tomo_id == "TS_01"
    # a derived tomo_id follows a new tomogram; an explicit one stays
    assert c.with_updates(tomogram="b/TS_02.rec").tomo_id == "TS_02"
    named = c.with_updates(tomo_id="cell7")
    assert named.with_updates(tomogram="x.mrc").tomo_id == "cell7"
    assert MatchConfig(**{**BASE, "tomogram": None}).tomo_id == "tomogram"  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tomo_id"):
        c.with_updates(tomo_id="a/b")


def test_metadata_field_round_trips_through_dict_and_toml(tmp_path: Path) -> None:
    from tmfast.metadata import TiltSeriesMetadata

    md = TiltSeriesMetadata(
        tilt_angles_deg=(-30.0, 0.0, 30.0),
        defocus_um=(3.1, 3.0, 2.9),
        dose_e_per_a2=(0.0, 3.0, 6.0),
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
        defocus_handedness=-1,
    )
    c = MatchConfig(**BASE, metadata=md)  # type: ignore[arg-type]
    d = c.to_dict()
    assert d["metadata"]["defocus_handedness"] == -1
    back = MatchConfig.from_mapping(json.loads(json.dumps(d)))
    assert back == c and back.metadata == md
    # TOML: a [match.metadata] table (TOML has no null: None keys left out)
    meta_lines = "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in md.to_dict().items() if v is not None
    )
    p = tmp_path / "m.toml"
    p.write_text(
        '[match]\ntemplate = "t.mrc"\ntomogram = "TS_01.mrc"\nmask = "m.mrc"\n'
        "angular-search = 10\n[match.metadata]\n" + meta_lines
    )
    assert MatchConfig.from_toml(p).metadata == md
    with pytest.raises(ConfigError, match="metadata"):
        MatchConfig(**BASE, metadata={"tilt_angles_deg": [0.0], "bogus": 1})  # type: ignore[arg-type]
    assert c.result_sha256() != MatchConfig(**BASE).result_sha256()  # type: ignore[arg-type]


def test_toml_flag_names_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(
        '[match]\ntemplate = "t.mrc"\ntomogram = "v.mrc"\nmask = "m.mrc"\n'
        "angular-search = 12.5\nvolume-split = [2, 2, 1]\nlow-pass = 30\n"
        "tilt-angles = [-45, 45]\nrandom-phase-correction = true\n"
    )
    c = MatchConfig.from_toml(p, low_pass_a=25.0)
    assert c.volume_split_xyz == (2, 2, 1) and c.low_pass_a == 25.0
    assert c.tilt_angles == (-45.0, 45.0) and c.random_phase_correction
    assert c.angular_search == 12.5
    bad = tmp_path / "bad.toml"
    bad.write_text('template = "t.mrc"\nbogus = 1\n')
    with pytest.raises(ConfigError, match="bogus"):
        MatchConfig.from_toml(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("template = \n")
    with pytest.raises(FormatError, match="TOML"):
        MatchConfig.from_toml(broken)
    with pytest.raises(FormatError, match="not found"):
        MatchConfig.from_toml(tmp_path / "none.toml")


def test_result_hash_ignores_performance_options() -> None:
    a = MatchConfig(**BASE)  # type: ignore[arg-type]
    assert (
        a.result_sha256()
        == a.with_updates(
            gpu_ids=(1,), backend="cpu", destination=Path("x")
        ).result_sha256()
    )
    assert a.result_sha256() != a.with_updates(low_pass_a=20.0).result_sha256()


def test_registry() -> None:
    av = available_backends()
    assert set(av) == {"cpu", "cuda", "opencl"} and av["cpu"] is None
    assert isinstance(get_backend("cpu"), CpuBackend)
    assert len(get_backends("cpu", device_ids=[0, 1])) == 1
    assert get_backend("auto").name in ("cpu", "cuda", "opencl")
    with pytest.raises(ConfigError, match="unknown backend"):
        get_backend("metal")
    for name in ("cuda", "opencl"):
        if av[name] is not None:
            with pytest.raises(BackendUnavailableError, match=name):
                get_backend(name)


def test_noise_template_properties() -> None:
    rng = np.random.default_rng(0)
    n = 16
    t = rng.standard_normal((n, n, n))
    z, y, x = np.indices((n, n, n)) - n // 2
    m = (x * x + y * y + z * z <= 36).astype(float)
    a = phase_randomised_template(t, m, seed=3)
    b = phase_randomised_template(t, m, seed=3)
    c = phase_randomised_template(t, m, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a[m == 0] == 0).all()
    assert np.sign(a.sum()) == np.sign((t * m).sum())
    # the amplitude spectrum is close to the template's (GS keeps it within ~25%)
    amp_t = np.abs(sfft.rfftn(t * m))
    amp_a = np.abs(sfft.rfftn(a))
    assert np.abs(amp_a - amp_t).mean() / amp_t.mean() < 0.25
    # and it is not the template: correlation inside the mask is small
    inside = m > 0
    assert abs(np.corrcoef(a[inside], t[inside])[0, 1]) < 0.2
