"""CpuBackend against a brute-force real-space masked Pearson correlation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tmfast.backends.base import CorrelationInputs, RunningMaps
from tmfast.backends.cpu import CpuBackend
from tmfast.errors import ConfigError
from tmfast.geometry.interpolation import bspline_coefficients, rotate_volume
from tmfast.geometry.rotations import zxz_to_matrices


def _sphere(n: int, radius: float) -> np.ndarray:
    z, y, x = np.indices((n, n, n)) - n // 2
    return (np.sqrt(x**2 + y**2 + z**2) <= radius).astype(np.float32)


def _brute_flcf(vol: np.ndarray, tmpl: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked Pearson correlation of ``tmpl`` centred (N//2) on every voxel.

    Explicit sums over box offsets with circular indexing (np.roll); float64.
    """
    n = tmpl.shape[0]
    c = n // 2
    v = vol.astype(np.float64)
    t = tmpl.astype(np.float64)
    m = mask.astype(np.float64)
    n_m = m.sum()
    mu_t = (t * m).sum() / n_m
    sd_t = np.sqrt((t * t * m).sum() / n_m - mu_t**2)
    s_pt = np.zeros_like(v)
    s_p = np.zeros_like(v)
    s_pp = np.zeros_like(v)
    for dz in range(n):
        for dy in range(n):
            for dx in range(n):
                w = m[dz, dy, dx]
                if w == 0:
                    continue
                # shifted[x] = V[x + r - c]
                shifted = np.roll(v, shift=(c - dz, c - dy, c - dx), axis=(0, 1, 2))
                s_pt += w * (t[dz, dy, dx] - mu_t) * shifted
                s_p += w * shifted
                s_pp += w * shifted * shifted
    mu_p = s_p / n_m
    var_p = s_pp / n_m - mu_p**2
    return s_pt / (n_m * sd_t * np.sqrt(var_p))


def _weighted(box: np.ndarray, weight: np.ndarray) -> np.ndarray:
    spectrum = np.fft.rfftn(box.astype(np.float64)) * weight
    return np.fft.irfftn(spectrum, s=box.shape, axes=(0, 1, 2))


def _case(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vol = rng.standard_normal((16, 15, 17)).astype(np.float32)
    tmpl = rng.standard_normal((n, n, n)).astype(np.float32)
    weight = rng.uniform(0.2, 1.0, size=(n, n, n // 2 + 1)).astype(np.float32)
    weight[0, 0, 0] = 1.0
    return vol, tmpl, weight


def _run(
    inputs: CorrelationInputs,
    mats: np.ndarray,
    batches: int = 1,
    float32_sums: bool = True,
) -> RunningMaps:
    be = CpuBackend(workers=1, float32_sums=float32_sums)
    be.prepare(inputs)
    for chunk, first in zip(
        np.array_split(mats, batches),
        np.cumsum([0, *[len(c) for c in np.array_split(mats, batches)][:-1]]),
        strict=True,
    ):
        be.score_rotations(int(first), chunk)
    return be.finalize()


@pytest.mark.parametrize(
    ("n", "spherical"), [(5, True), (6, True), (7, False), (6, False)]
)
def test_matches_brute_force(n: int, spherical: bool) -> None:
    vol, tmpl, weight = _case(n, seed=n)
    if spherical:
        mask = _sphere(n, n / 2 - 0.5)
    else:
        mask = np.zeros((n, n, n), np.float32)
        mask[1:-1, 1:, : n - 2] = 1.0  # off-centre box: not rotation invariant
        mask[1, 1, 1] = 0.5  # a soft voxel
    angles = np.array([[0.0, 0.0, 0.0], [0.4, 1.1, -0.3], [2.0, 0.5, 1.5]])
    mats = zxz_to_matrices(angles)
    inputs = CorrelationInputs(
        tomogram=vol,
        template=tmpl,
        mask=mask,
        template_weight=weight,
        mask_is_spherical=spherical,
    )
    maps = _run(inputs, mats, batches=2)
    per_rot = []
    ct, cm = bspline_coefficients(tmpl), bspline_coefficients(mask)
    for m in mats:
        rot_t = _weighted(rotate_volume(ct, m), weight)
        # a rotated mask is a weight: clipped to [0, 1] after the B-spline rotation
        rot_m = mask if spherical else np.clip(rotate_volume(cm, m), 0.0, 1.0)
        per_rot.append(_brute_flcf(vol, rot_t, rot_m))
    stack = np.stack(per_rot)
    np.testing.assert_allclose(maps.scores, stack.max(axis=0), atol=1e-5)
    np.testing.assert_array_equal(maps.angles, stack.argmax(axis=0))
    np.testing.assert_allclose(maps.score_sum, stack.sum(axis=0), atol=1e-5)
    np.testing.assert_allclose(maps.score_sq_sum, (stack**2).sum(axis=0), atol=1e-5)
    assert maps.n_rotations_done == 3
    assert maps.scores.dtype == np.float32 and maps.angles.dtype == np.int32
    assert np.abs(stack).max() <= 1.0 + 1e-9


def test_spherical_and_non_spherical_agree_for_a_sphere() -> None:
    n = 7
    vol, tmpl, weight = _case(n, seed=3)
    mask = _sphere(n, 3.0)
    # quarter turns map the voxelised sphere exactly onto itself
    q = np.pi / 2
    mats = zxz_to_matrices([[0, 0, 0], [q, 0, 0], [0, q, 0], [q, q, q], [0, 2 * q, q]])
    res = [
        _run(
            CorrelationInputs(
                tomogram=vol,
                template=tmpl,
                mask=mask,
                template_weight=weight,
                mask_is_spherical=s,
            ),
            mats,
        )
        for s in (True, False)
    ]
    np.testing.assert_allclose(res[0].scores, res[1].scores, atol=1e-5)
    np.testing.assert_array_equal(res[0].angles, res[1].angles)
    np.testing.assert_allclose(res[0].score_sq_sum, res[1].score_sq_sum, atol=1e-4)


def test_noise_template_and_snapshot_resume() -> None:
    n = 6
    vol, tmpl, weight = _case(n, seed=4)
    noise = np.random.default_rng(9).standard_normal((n, n, n)).astype(np.float32)
    mask = _sphere(n, 2.6)
    mats = zxz_to_matrices(np.random.default_rng(2).uniform(0, 3, size=(6, 3)))
    inputs = CorrelationInputs(
        tomogram=vol,
        template=tmpl,
        mask=mask,
        template_weight=weight,
        noise_template=noise,
    )
    full = _run(inputs, mats)
    # the noise running max equals the score max of the noise template run alone
    alone = _run(
        CorrelationInputs(
            tomogram=vol, template=noise, mask=mask, template_weight=weight
        ),
        mats,
    )
    assert full.noise_scores is not None
    np.testing.assert_array_equal(full.noise_scores, alone.scores)
    # interrupt after 2 rotations, resume in a fresh backend: bit-identical maps
    be = CpuBackend(workers=1)
    be.prepare(inputs)
    be.score_rotations(0, mats[:2])
    snap = be.snapshot()
    be.close()
    be2 = CpuBackend(workers=1)
    be2.prepare(inputs, resume_from=snap)
    be2.score_rotations(2, mats[2:])
    resumed = be2.finalize()
    np.testing.assert_array_equal(resumed.scores, full.scores)
    np.testing.assert_array_equal(resumed.angles, full.angles)
    np.testing.assert_array_equal(resumed.score_sq_sum, full.score_sq_sum)
    assert resumed.noise_scores is not None
    np.testing.assert_array_equal(resumed.noise_scores, full.noise_scores)
    assert resumed.n_rotations_done == 6


def test_ties_keep_the_smaller_index() -> None:
    n = 5
    vol, tmpl, weight = _case(n, seed=5)
    mask = _sphere(n, 2.0)
    m = zxz_to_matrices([[0.3, 0.2, 0.1]])
    maps = _run(
        CorrelationInputs(
            tomogram=vol, template=tmpl, mask=mask, template_weight=weight
        ),
        np.concatenate([m, m, m]),
    )
    assert (maps.angles == 0).all()


def test_bad_inputs_raise() -> None:
    vol, tmpl, weight = _case(5, seed=1)
    good = {"tomogram": vol, "template": tmpl, "template_weight": weight}
    for changed, message in (
        ({"mask": np.ones((4, 4, 4), np.float32)}, "mask box"),
        ({"mask": np.zeros_like(tmpl)}, "empty"),
        (
            {
                "mask": np.ones_like(tmpl),
                "noise_template": np.ones((4, 4, 4), np.float32),
            },
            "noise template box",
        ),
    ):
        with pytest.raises(ConfigError, match=message):
            CpuBackend().prepare(CorrelationInputs(**good, **changed))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        CpuBackend().score_rotations(0, np.eye(3)[None])


def test_float32_sums_give_the_float64_search_sigma() -> None:
    """float32_sums=True over 2000 rotations: the search sigma
    sqrt(E[s^2] - E[s]^2) per voxel agrees with float64 sums (the default, itself
    checked against brute force above) to 1e-5 relative; maxima and angles equal."""
    rng = np.random.default_rng(11)
    vol = rng.standard_normal((10, 9, 11)).astype(np.float32)
    n = 4
    tmpl = rng.standard_normal((n, n, n)).astype(np.float32)
    weight = np.ones((n, n, n // 2 + 1), np.float32)
    inputs = CorrelationInputs(
        tomogram=vol, template=tmpl, mask=_sphere(n, 1.8), template_weight=weight
    )
    n_rot = 2000
    mats = zxz_to_matrices(rng.uniform(0, 2 * np.pi, size=(n_rot, 3)))
    out = []
    for f32 in (False, True):
        be = CpuBackend(workers=1, float32_sums=f32)
        be.prepare(inputs)
        be.score_rotations(0, mats)
        out.append(be.finalize())
    ref, got = out
    assert got.score_sum.dtype == np.float64  # handed out as float64 regardless
    np.testing.assert_array_equal(got.scores, ref.scores)
    np.testing.assert_array_equal(got.angles, ref.angles)

    def sigma(m: RunningMaps) -> np.ndarray:
        mean = m.score_sum / n_rot
        return np.sqrt(m.score_sq_sum / n_rot - mean**2)

    np.testing.assert_allclose(sigma(got), sigma(ref), rtol=1e-5)
    assert np.abs(sigma(ref)).min() > 0.05  # a real spread, not a degenerate case


def test_float32_sums_snapshot_resume_is_exact() -> None:
    """float32 sums are handed out as float64 (exact) and read back exactly: an
    interrupted search resumed in a fresh backend equals the unbroken one."""
    vol, tmpl, weight = _case(5, seed=12)
    inputs = CorrelationInputs(
        tomogram=vol, template=tmpl, mask=_sphere(5, 2.2), template_weight=weight
    )
    mats = zxz_to_matrices(np.random.default_rng(3).uniform(0, 3, size=(7, 3)))
    whole = CpuBackend(workers=1, float32_sums=True)
    whole.prepare(inputs)
    whole.score_rotations(0, mats)
    ref = whole.finalize()
    first = CpuBackend(workers=1, float32_sums=True)
    first.prepare(inputs)
    first.score_rotations(0, mats[:3])
    snap = first.snapshot()
    first.close()
    assert snap.score_sum.dtype == np.float64
    second = CpuBackend(workers=1, float32_sums=True)
    second.prepare(inputs, resume_from=snap)
    second.score_rotations(3, mats[3:])
    got = second.finalize()
    for name in ("scores", "angles", "score_sum", "score_sq_sum"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name))
    # and the float32 sums are float32-rounded values (not float64 accumulations)
    assert np.array_equal(ref.score_sum.astype(np.float32), ref.score_sum)


@pytest.mark.parametrize("noise", [False, True])
@pytest.mark.parametrize("spherical", [True, False])
def test_stats_roi_totals_equal_the_reduced_per_voxel_sums(
    spherical: bool, noise: bool
) -> None:
    """Given a region of interest the backend keeps no per-voxel sum of squares (and
    no per-voxel sum without a noise template): the totals it returns over the
    region equal the per-voxel sums reduced over it, the maxima are unchanged, and a
    resume from a snapshot (also from per-voxel maps) continues the totals."""
    n = 6
    vol, tmpl, weight = _case(n, seed=5)
    rng = np.random.default_rng(3)
    mask = _sphere(n, 2.6)
    if not spherical:
        mask[: n // 2] *= 0.5
    mats = zxz_to_matrices(rng.uniform(0, 3, size=(7, 3)))
    roi = rng.uniform(size=vol.shape) > 0.3
    kw = {
        "tomogram": vol,
        "template": tmpl,
        "mask": mask,
        "template_weight": weight,
        "mask_is_spherical": spherical,
        "noise_template": (
            rng.standard_normal((n, n, n)).astype(np.float32) if noise else None
        ),
    }
    full = _run(CorrelationInputs(**kw), mats, batches=2)  # type: ignore[arg-type]
    # the totals' oracle: per-voxel float64 sums (float32 ones round by ~1e-6 of
    # sum |s|, more than the cancelled sum s allows)
    exact = _run(CorrelationInputs(**kw), mats, float32_sums=False)  # type: ignore[arg-type]
    assert exact.score_sum is not None and exact.score_sq_sum is not None
    totals = _run(CorrelationInputs(**kw, stats_roi=roi), mats, batches=3)  # type: ignore[arg-type]
    np.testing.assert_array_equal(totals.scores, full.scores)
    np.testing.assert_array_equal(totals.angles, full.angles)
    assert totals.score_sq_sum is None
    assert full.score_sum is not None and full.score_sq_sum is not None
    want2 = float(exact.score_sq_sum[roi].sum())
    assert totals.roi_score_sq_sum == pytest.approx(want2, rel=1e-6)
    if noise:  # sum_r s stays per voxel for the corrected statistics
        assert totals.score_sum is not None and totals.roi_score_sum == 0.0
        np.testing.assert_allclose(totals.score_sum, full.score_sum, rtol=1e-6)
        np.testing.assert_array_equal(totals.noise_scores, full.noise_scores)  # type: ignore[arg-type]
    else:
        assert totals.score_sum is None
        want1 = float(exact.score_sum[roi].sum())
        assert totals.roi_score_sum == pytest.approx(want1, rel=1e-6, abs=1e-9)
    # resume mid-way from a snapshot, and from per-voxel maps of another backend
    for resume_kind in ("totals", "per-voxel"):
        be = CpuBackend(workers=1)
        be.prepare(
            CorrelationInputs(**kw, stats_roi=roi if resume_kind == "totals" else None)  # type: ignore[arg-type]
        )
        be.score_rotations(0, mats[:3])
        snap = be.snapshot()
        be.close()
        be2 = CpuBackend(workers=1)
        be2.prepare(CorrelationInputs(**kw, stats_roi=roi), resume_from=snap)  # type: ignore[arg-type]
        be2.score_rotations(3, mats[3:])
        resumed = be2.finalize()
        np.testing.assert_array_equal(resumed.scores, full.scores)
        assert resumed.roi_score_sq_sum == pytest.approx(want2, rel=1e-6)


@pytest.mark.parametrize("spherical", [True, False])
def test_16_bit_angle_map_gives_the_32_bit_results_and_resumes(
    spherical: bool,
) -> None:
    """``n_rotations`` <= 65,535 keeps the angle map in uint16 while searching: the
    maps handed out (int32, -1 for "none yet") equal those of the int32 map, and a
    search resumes from int32 maps across the two widths."""
    n = 6
    vol, tmpl, weight = _case(n, seed=11)
    mats = zxz_to_matrices(np.random.default_rng(3).uniform(0, 3, size=(7, 3)))
    base = {
        "tomogram": vol,
        "template": tmpl,
        "mask": _sphere(n, 2.6),
        "template_weight": weight,
        "mask_is_spherical": spherical,
    }
    wide = _run(CorrelationInputs(**base), mats)  # type: ignore[arg-type]
    narrow_inputs = CorrelationInputs(**base, n_rotations=len(mats))  # type: ignore[arg-type]
    narrow = _run(narrow_inputs, mats)
    assert narrow.angles.dtype == np.int32
    np.testing.assert_array_equal(narrow.angles, wide.angles)
    np.testing.assert_array_equal(narrow.scores, wide.scores)
    be = CpuBackend(workers=1)
    be.prepare(narrow_inputs)
    assert be._maps is not None and be._maps.angles.dtype == np.uint16
    before = be.snapshot()
    assert before.angles.dtype == np.int32 and (before.angles == -1).all()
    be.score_rotations(0, mats[:3])
    snap = be.snapshot()
    be.close()
    # resume the 16-bit snapshot in a 32-bit search, and a 32-bit one in a 16-bit one
    for inputs, resume in ((CorrelationInputs(**base), snap), (narrow_inputs, snap)):  # type: ignore[arg-type]
        be2 = CpuBackend(workers=1)
        be2.prepare(inputs, resume_from=resume)
        be2.score_rotations(3, mats[3:])
        out = be2.finalize()
        np.testing.assert_array_equal(out.angles, wide.angles)
        np.testing.assert_array_equal(out.scores, wide.scores)
    # a resume holding an index the 16-bit map cannot hold is refused
    bad = RunningMaps(
        scores=snap.scores,
        angles=np.full(snap.angles.shape, 70000, np.int32),
        score_sum=snap.score_sum,
        score_sq_sum=snap.score_sq_sum,
        noise_scores=None,
        n_rotations_done=3,
    )
    with pytest.raises(ConfigError, match=r"70000, outside -1 \.\. 65534"):
        CpuBackend(workers=1).prepare(narrow_inputs, resume_from=bad)


@pytest.mark.parametrize("spherical", [True, False])
def test_angle_bit_planes_beyond_65535_rotations_give_the_32_bit_results(
    spherical: bool,
) -> None:
    """A search of more than 65,535 rotations keeps a uint16 angle map plus bit planes
    for the index bits above 16 (2 planes for 200,003 rotations): the maps handed out
    equal the int32 map's, across index batches on both sides of 65,536 and 131,072,
    and after a resume from a snapshot."""
    n = 6
    vol, tmpl, weight = _case(n, seed=12)
    mats = zxz_to_matrices(np.random.default_rng(4).uniform(0, 3, size=(9, 3)))
    base = {
        "tomogram": vol,
        "template": tmpl,
        "mask": _sphere(n, 2.6),
        "template_weight": weight,
        "mask_is_spherical": spherical,
    }
    # (first index, rotations): batches on both sides of 65,536 and 131,072
    batches = [(65_534, slice(0, 3)), (131_070, slice(3, 6)), (200_000, slice(6, 9))]

    def run(inputs: CorrelationInputs, resume_after: int | None = None) -> RunningMaps:
        # one FFTW planner on both sides (n_rotations would make "auto" patient)
        be = CpuBackend(workers=1, fft_planner="measure")
        be.prepare(inputs)
        for k, (first, rows) in enumerate(batches):
            be.score_rotations(first, mats[rows])
            if k == resume_after:
                snap = be.snapshot()
                be.close()
                be = CpuBackend(workers=1, fft_planner="measure")
                be.prepare(inputs, resume_from=snap)
        return be.finalize()

    wide = run(CorrelationInputs(**base))  # type: ignore[arg-type]
    narrow_inputs = CorrelationInputs(**base, n_rotations=200_003)  # type: ignore[arg-type]
    be = CpuBackend(workers=1)
    be.prepare(narrow_inputs)
    assert be._maps is not None and be._maps.angles.dtype == np.uint16
    assert be._maps.angle_high is not None and be._maps.angle_high.shape[0] == 2
    assert (be.snapshot().angles == -1).all()
    be.close()
    # voxels won by rotations of every batch: high bits 0 to 3 all occur
    assert set(np.unique(wide.angles >> 16)) == {0, 1, 2, 3}
    for resume_after in (None, 0, 1):
        out = run(narrow_inputs, resume_after)
        assert out.angles.dtype == np.int32
        np.testing.assert_array_equal(out.angles, wide.angles)
        np.testing.assert_array_equal(out.scores, wide.scores)
    bad = RunningMaps(
        scores=wide.scores,
        angles=np.full(wide.angles.shape, 262_143, np.int32),
        score_sum=wide.score_sum,
        score_sq_sum=wide.score_sq_sum,
        noise_scores=None,
        n_rotations_done=9,
    )
    with pytest.raises(ConfigError, match=r"262143, outside -1 \.\. 262142"):
        CpuBackend(workers=1).prepare(narrow_inputs, resume_from=bad)


def test_wide_simd_kernels_give_the_baseline_results(tmp_path: Path) -> None:
    """The Rust fold and rotation run AVX2-compiled copies where the CPU has AVX2 and
    FMA; ``TMFAST_SIMD=baseline`` forces the x86-64 baseline copies. Both must give
    bit-identical maps and totals (same operations, same order), in noise and
    non-spherical-mask searches too."""
    from tmfast import _rust

    if not _rust.wide_simd():
        pytest.skip("no AVX2+FMA here (or TMFAST_SIMD=baseline): one kernel form only")
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from tmfast.backends.base import CorrelationInputs
        from tmfast.backends.cpu import CpuBackend
        from tmfast.geometry.rotations import zxz_to_matrices

        rng = np.random.default_rng(0)
        n = 8
        z, y, x = np.indices((n, n, n)) - n // 2
        mask = (np.sqrt(x**2 + y**2 + z**2) <= 3.2).astype(np.float32)
        out = {}
        for spherical in (True, False):
            inputs = CorrelationInputs(
                tomogram=rng.standard_normal((20, 18, 35)).astype(np.float32),
                template=rng.standard_normal((n, n, n)).astype(np.float32),
                mask=mask,
                template_weight=np.ones((n, n, n // 2 + 1), np.float32),
                mask_is_spherical=spherical,
                noise_template=rng.standard_normal((n, n, n)).astype(np.float32),
                stats_roi=rng.uniform(size=(20, 18, 35)) > 0.3,
                n_rotations=40,
            )
            be = CpuBackend(workers=2)
            be.prepare(inputs)
            be.score_rotations(0, zxz_to_matrices(rng.uniform(0, 6, size=(40, 3))))
            maps = be.finalize()
            for name in ("scores", "angles", "score_sum", "noise_scores"):
                out[f"{name}_{spherical}"] = getattr(maps, name)
            out[f"totals_{spherical}"] = np.array(
                [maps.roi_score_sum, maps.roi_score_sq_sum]
            )
        np.savez(sys.argv[1], **out)
        """
    )
    results = {}
    for mode in ("auto", "baseline"):
        path = tmp_path / f"{mode}.npz"
        env = dict(os.environ, TMFAST_SIMD=mode)
        subprocess.run(
            [sys.executable, "-c", script, str(path)], env=env, check=True, timeout=120
        )
        results[mode] = dict(np.load(path))
    assert results["auto"].keys() == results["baseline"].keys()
    for key, value in results["auto"].items():
        np.testing.assert_array_equal(value, results["baseline"][key], err_msg=key)


def test_fold_binding_refuses_mixed_sum_dtypes() -> None:
    from tmfast import _rust

    shape = (2, 3, 4)
    with pytest.raises(ValueError, match="same dtype"):
        _rust.fold_rotations(
            np.zeros(shape, np.float32),
            np.zeros(shape, np.int32),
            np.zeros(shape, np.float64),
            np.zeros(shape, np.float32),
            np.zeros((1, *shape), np.float32),
            first_index=0,
            inverse_norm=np.ones(shape, np.float32),
        )
