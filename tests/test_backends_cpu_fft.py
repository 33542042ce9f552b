"""The CPU backend's volume FFT engines (scipy.fft and FFTW) against numpy's FFT."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tmfast.backends import _cpu_fft
from tmfast.backends._cpu_fft import (
    FftwVolumeFft,
    ScipyVolumeFft,
    fftw_available,
    make_volume_fft,
    wisdom_path,
)
from tmfast.backends.base import CorrelationInputs
from tmfast.backends.cpu import PATIENT_MIN_ROTATIONS, CpuBackend
from tmfast.errors import ConfigError
from tmfast.geometry.angles import angle_set
from tmfast.geometry.rotations import zxz_to_matrices

needs_fftw = pytest.mark.skipif(
    fftw_available() is not None, reason=f"{fftw_available()}"
)

SHAPES = [(24, 20, 28), (17, 18, 15)]  # even and odd, x the half-spectrum axis


@pytest.fixture(autouse=True)
def _private_wisdom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test plans into its own wisdom cache (not the user's)."""
    monkeypatch.setenv("TMFAST_FFTW_WISDOM", str(tmp_path / "wisdom.json"))


def _engines(shape: tuple[int, int, int], box: int) -> list[object]:
    engines: list[object] = [ScipyVolumeFft(shape, box, 2)]
    if fftw_available() is None:
        engines += [
            FftwVolumeFft(shape, box, 2, "estimate"),
            FftwVolumeFft(shape, box, 2, "measure"),
            FftwVolumeFft(shape, box, 2, "patient"),
        ]
    return engines


@pytest.mark.parametrize("shape", SHAPES)
def test_padded_rfft_is_rfftn_of_the_zero_padded_boxes(
    shape: tuple[int, int, int],
) -> None:
    rng = np.random.default_rng(1)
    box = 9
    for eng in _engines(shape, box):
        buf = eng.spectrum_buffer(2)  # type: ignore[attr-defined]
        assert not buf.any()  # zeroed after planning
        for _ in range(2):  # twice: the zero padding must survive a transform
            boxes = rng.standard_normal((2, box, box, box)).astype(np.float32)
            padded = np.zeros((2, *shape))
            padded[:, :box, :box, :box] = boxes
            want = np.fft.rfftn(padded, axes=(1, 2, 3))
            got = eng.padded_rfft(boxes, buf)  # type: ignore[attr-defined]
            assert got is buf
            scale = np.abs(want).max()
            np.testing.assert_allclose(got, want, atol=2e-6 * scale, rtol=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_inverse_but_x_then_the_row_transforms_is_irfftn_times_the_engine_scale(
    shape: tuple[int, int, int],
) -> None:
    """The engines' inverse stops before x; the rows' unnormalised real transforms
    (numpy here, tmfast::rowfft in the fold) finish it."""
    rng = np.random.default_rng(2)
    vol = rng.standard_normal((2, *shape))
    spec = np.fft.rfftn(vol, axes=(1, 2, 3))
    for eng in _engines(shape, 5):
        buf = eng.spectrum_buffer(2)  # type: ignore[attr-defined]
        buf[...] = spec
        out = eng.inverse_but_x(buf)  # type: ignore[attr-defined]
        assert out is buf
        real = np.fft.irfft(buf, n=shape[2], axis=-1, norm="forward")
        got = real / eng.inverse_scale  # type: ignore[attr-defined]
        np.testing.assert_allclose(got, vol, atol=2e-5, rtol=0)


def _small_case(spherical: bool) -> tuple[CorrelationInputs, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 10
    zz, yy, xx = np.mgrid[:n, :n, :n] - n // 2
    r = np.sqrt(zz**2 + yy**2 + xx**2)
    mask = (r <= n / 2 - 1).astype(np.float32)
    if not spherical:
        mask *= (np.abs(zz) <= 2).astype(np.float32) + 0.5
        mask = np.clip(mask, 0, 1)
    inputs = CorrelationInputs(
        tomogram=rng.standard_normal((20, 22, 24)).astype(np.float32),
        template=(rng.standard_normal((n, n, n)) * (r < 4)).astype(np.float32),
        mask=mask,
        template_weight=np.ones((n, n, n // 2 + 1), np.float32),
        mask_is_spherical=spherical,
        noise_template=None,
    )
    return inputs, zxz_to_matrices(angle_set(45.0))[:20]


@needs_fftw
@pytest.mark.parametrize("spherical", [True, False])
def test_cpu_backend_engines_agree(spherical: bool) -> None:
    inputs, mats = _small_case(spherical)
    maps = {}
    for fft in ("scipy", "fftw"):
        be = CpuBackend(workers=2, fft=fft)
        be.prepare(inputs)
        be.score_rotations(0, mats)
        maps[fft] = be.finalize()
    a, b = maps["scipy"], maps["fftw"]
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5, rtol=0)
    np.testing.assert_allclose(a.score_sq_sum, b.score_sq_sum, atol=1e-4, rtol=1e-5)
    assert np.mean(a.angles == b.angles) > 0.999
    assert float(np.abs(a.scores).max()) > 0.1  # a real signal was compared


_REPRO_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    from tmfast.backends._cpu_fft import FftwVolumeFft
    shape = (32, 30, 36)
    eng = FftwVolumeFft(shape, 8, 2, "measure")
    buf = eng.spectrum_buffer(1)
    rng = np.random.default_rng(5)
    boxes = rng.standard_normal((1, 8, 8, 8)).astype(np.float32)
    spec = eng.padded_rfft(boxes, buf).copy()
    buf *= np.conj(spec)
    inverse = eng.inverse_but_x(buf)
    sys.stdout.buffer.write(inverse.tobytes() + spec.tobytes())
    """
)


@needs_fftw
def test_wisdom_cache_makes_measured_plans_reproducible_across_processes(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache" / "w.json"
    env = {**os.environ, "TMFAST_FFTW_WISDOM": str(cache)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", _REPRO_SCRIPT],
            env=env,
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
        for _ in range(2)
    ]
    doc = json.loads(cache.read_text())
    assert doc["format"] == "tmfast-fftw-wisdom-1"
    assert any("fftw" in w for w in doc["wisdom"])  # FFTW's own wisdom text
    assert len(runs[0]) > 0 and runs[0] == runs[1]  # bit for bit
    assert not list(cache.parent.glob("*.part"))  # written by rename, nothing left


@needs_fftw
def test_unwritable_wisdom_cache_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    path = blocker / "w.json"
    monkeypatch.setenv("TMFAST_FFTW_WISDOM", str(path))
    # as if this file had been read and held other wisdom: planning then writes it
    # (whatever FFTW's in-process wisdom already holds from earlier tests)
    monkeypatch.setattr(_cpu_fft, "_wisdom_loaded", {path: (b"other",)})
    with caplog.at_level(logging.WARNING, logger="tmfast.backends._cpu_fft"):
        eng = FftwVolumeFft((19, 21, 23), 4, 1, "measure")
        buf = eng.spectrum_buffer(1)
    assert not buf.any()
    assert "not writable" in caplog.text and "TMFAST_FFTW_WISDOM" in caplog.text


@needs_fftw
def test_wisdom_cache_off_and_default_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMFAST_FFTW_WISDOM", "off")
    assert wisdom_path() is None
    monkeypatch.delenv("TMFAST_FFTW_WISDOM")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = wisdom_path()
    assert path is not None and path.parent == tmp_path / "tmfast"
    assert path.name.startswith("fftw-wisdom-") and path.suffix == ".json"


def test_engine_choice_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="choose auto, scipy, fftw"):
        make_volume_fft("mkl", (8, 8, 8), 4, 1)
    with pytest.raises(ConfigError, match="choose auto, scipy or fftw"):
        CpuBackend(fft="mkl")
    with pytest.raises(ConfigError, match="choose auto, estimate, measure, patient"):
        CpuBackend(fft_planner="exhaustive")
    with pytest.raises(ConfigError, match="use one of estimate, measure, patient"):
        FftwVolumeFft((8, 8, 8), 4, 1, "exhaustive")  # type: ignore[arg-type]
    monkeypatch.setattr(_cpu_fft, "fftw_available", lambda: "pyfftw not importable")
    with pytest.raises(ConfigError, match="pyfftw not importable"):
        make_volume_fft("fftw", (8, 8, 8), 4, 1)
    assert make_volume_fft("auto", (8, 8, 8), 4, 1).name == "scipy"
    assert make_volume_fft("scipy", (8, 8, 8), 4, 1).name == "scipy"


def test_auto_planner_is_patient_for_long_searches_only() -> None:
    auto = CpuBackend()
    assert auto._planner(None) == "measure"  # count unknown
    assert auto._planner(PATIENT_MIN_ROTATIONS - 1) == "measure"
    assert auto._planner(PATIENT_MIN_ROTATIONS) == "patient"
    for planner in ("estimate", "measure", "patient"):
        fixed = CpuBackend(fft_planner=planner)
        assert fixed._planner(None) == fixed._planner(10**6) == planner


@needs_fftw
def test_fftw_results_do_not_depend_on_the_batch() -> None:
    """Each spectrum goes through the same one-spectrum plans, whichever slot of a
    buffer of any size it is in: bit-identical transforms (a resumed search with
    other batch sizes reproduces the maps); shapes whose slots would not share the
    first one's SIMD alignment get one-spectrum buffers."""
    shape, box = (24, 20, 28), 9
    rng = np.random.default_rng(5)
    boxes = rng.standard_normal((3, box, box, box)).astype(np.float32)
    eng = FftwVolumeFft(shape, box, 2, "measure")
    assert eng.max_batch > 1
    three = eng.spectrum_buffer(3)
    eng.padded_rfft(boxes, three)
    forward = three.copy()
    inverse = eng.inverse_but_x(three).copy()
    one = eng.spectrum_buffer(1)
    for i in range(3):
        eng.padded_rfft(boxes[i : i + 1], one)
        np.testing.assert_array_equal(one[0], forward[i])
        np.testing.assert_array_equal(eng.inverse_but_x(one)[0], inverse[i])
    odd = FftwVolumeFft((13, 13, 13), 5, 2, "estimate")  # 9464-byte slots
    assert odd.max_batch == 1
    with pytest.raises(ValueError, match="at most 1"):
        odd.spectrum_buffer(2)


@needs_fftw
@pytest.mark.parametrize("first_planner", ["measure", "auto"])
def test_resume_plans_as_the_checkpointed_run_whatever_the_planner(
    first_planner: str,
) -> None:
    """A long search plans patiently under "auto", but a resumed one ("auto" too)
    must use exactly the plans of the run that wrote the checkpoint, also when that
    run measured (an older tmfast, or fft_planner="measure"): after
    ``adopt_plan_state`` it asks FFTW for measure-level plans, which the adopted
    wisdom serves whichever rigour made it. Bit for bit equal to an uninterrupted
    run."""
    inputs, mats = _small_case(spherical=True)
    inputs = dataclasses.replace(inputs, n_rotations=PATIENT_MIN_ROTATIONS)

    def backend() -> CpuBackend:
        return CpuBackend(workers=2, fft_planner=first_planner)

    ref_be = backend()
    ref_be.prepare(inputs)
    ref_be.score_rotations(0, mats)
    ref = ref_be.finalize()
    first = backend()
    first.prepare(inputs)
    first.score_rotations(0, mats[:7])
    snap, state = first.snapshot(), first.plan_state()
    first.close()
    _cpu_fft._import_pyfftw().forget_wisdom()  # the process now knows no plans
    resumed = CpuBackend(workers=2)
    resumed.adopt_plan_state(state)
    assert resumed._planner(PATIENT_MIN_ROTATIONS) == "measure"
    resumed.prepare(inputs, resume_from=snap)
    resumed.score_rotations(7, mats[7:])
    out = resumed.finalize()
    np.testing.assert_array_equal(out.scores, ref.scores)
    np.testing.assert_array_equal(out.angles, ref.angles)
