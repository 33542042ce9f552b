"""find_peaks (Rust) against the numpy reference loop and an independent brute force."""

from __future__ import annotations

import numpy as np
import pytest
from tmfast.errors import ConfigError
from tmfast.extraction.peaks import PeakList, find_peaks, numpy_reference_find_peaks


def _brute(
    scores: np.ndarray,
    n_peaks: int,
    r: float,
    *,
    cutoff: float | None = None,
    mask: np.ndarray | None = None,
    border: int = 0,
) -> list[tuple[int, int, int]]:
    """Independent oracle: full-map distance test, exclusions kept as a boolean map."""
    nz, ny, nx = scores.shape
    zz, yy, xx = np.indices(scores.shape)
    alive = ~np.isnan(scores)
    if mask is not None:
        alive &= ~(mask <= 0)
    if border:
        for c, n in ((zz, nz), (yy, ny), (xx, nx)):
            alive &= (c >= border) & (c < n - border)
    picks = []
    while len(picks) < n_peaks and alive.any():
        vals = np.where(alive, scores, -np.inf)
        best = vals.max()
        if best == -np.inf or (cutoff is not None and best <= cutoff):
            break
        # first flat index among the maxima (numpy argmax rule)
        flat = np.flatnonzero(vals.ravel() == best)[0]
        z, y, x = np.unravel_index(flat, scores.shape)
        picks.append((int(z), int(y), int(x)))
        alive &= (zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 > r * r
    return picks


def _random_case(rng: np.random.Generator, case: int) -> dict[str, object]:
    shape = tuple(int(v) for v in rng.integers(1, [14, 18, 26]))
    scores = rng.standard_normal(shape).astype(np.float32)
    if case % 3 == 1:
        scores = np.round(scores * 2) / 2  # heavy ties
    if case % 3 == 2:
        scores = np.zeros(shape, np.float32)  # every voxel tied
    if case % 5 == 0:
        scores[rng.random(shape) < 0.05] = np.nan
        scores[rng.random(shape) < 0.05] = -np.inf
    kw: dict[str, object] = {
        "n_peaks": int(rng.integers(1, 40)),
        "exclusion_radius_vox": float(rng.choice([0.0, 1.0, 1.5, 2.0, 3.3, 5.0])),
        "border_vox": int(rng.choice([0, 0, 1, 2])),
    }
    if case % 4 == 1:
        kw["mask"] = (rng.random(shape) > 0.3).astype(np.float32) - 0.5
    if case % 7 == 2:
        kw["cutoff"] = 0.5
    kw["angle_map"] = rng.integers(0, 5000, shape).astype(np.float32)
    return {"scores": scores, **kw}


@pytest.mark.parametrize("seed", range(6))
def test_matches_numpy_reference_on_random_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for case in range(25):
        args = _random_case(rng, case)
        scores = args.pop("scores")
        before = np.array(scores, copy=True)
        got = find_peaks(scores, **args)  # type: ignore[arg-type]
        want = numpy_reference_find_peaks(scores, **args)  # type: ignore[arg-type]
        np.testing.assert_array_equal(got.positions_zyx, want.positions_zyx)
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_array_equal(got.angle_indices, want.angle_indices)
        np.testing.assert_array_equal(scores, before)  # caller's map untouched
        brute = _brute(
            scores,  # type: ignore[arg-type]
            args["n_peaks"],  # type: ignore[arg-type]
            args["exclusion_radius_vox"],  # type: ignore[arg-type]
            cutoff=args.get("cutoff"),  # type: ignore[arg-type]
            mask=args.get("mask"),  # type: ignore[arg-type]
            border=args["border_vox"],  # type: ignore[arg-type]
        )
        assert [tuple(p) for p in got.positions_zyx.tolist()] == brute


def test_sphere_not_cube() -> None:
    # Second peak at (+7, +7, 0): Chebyshev 7 <= r = 8 but Euclidean 9.9 > 8.
    scores = np.zeros((32, 32, 32), np.float32)
    scores[10, 10, 10] = 5.0
    scores[17, 17, 10] = 4.0
    peaks = find_peaks(scores, n_peaks=2, exclusion_radius_vox=8.0, cutoff=0.0)
    assert peaks.positions_zyx.tolist() == [[10, 10, 10], [17, 17, 10]]
    assert peaks.scores.tolist() == [5.0, 4.0]
    # At r = 10 the second one is inside the sphere.
    peaks = find_peaks(scores, n_peaks=2, exclusion_radius_vox=10.0, cutoff=0.0)
    assert peaks.positions_zyx.tolist() == [[10, 10, 10]]


@pytest.mark.parametrize("radius", [1e6, 1e300])
def test_huge_radius_gives_one_pick(radius: float) -> None:
    scores = np.random.default_rng(4).random((6, 7, 8), dtype=np.float32)
    got = find_peaks(scores, n_peaks=5, exclusion_radius_vox=radius)
    want = numpy_reference_find_peaks(scores, n_peaks=5, exclusion_radius_vox=radius)
    assert len(got) == 1
    np.testing.assert_array_equal(got.positions_zyx, want.positions_zyx)
    assert tuple(got.positions_zyx[0]) == np.unravel_index(
        scores.argmax(), scores.shape
    )


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int8, np.int16, np.float64])
def test_mask_dtypes(dtype: type) -> None:
    rng = np.random.default_rng(9)
    scores = rng.random((12, 13, 14), dtype=np.float32)
    mask01 = rng.random(scores.shape) > 0.4
    mask = mask01.astype(dtype)
    if dtype is np.int8:
        mask = np.where(mask01, 1, -128).astype(np.int8)
    got = find_peaks(scores, n_peaks=20, exclusion_radius_vox=2.0, mask=mask)
    want = numpy_reference_find_peaks(
        scores, n_peaks=20, exclusion_radius_vox=2.0, mask=mask01.astype(np.float32)
    )
    np.testing.assert_array_equal(got.positions_zyx, want.positions_zyx)
    assert mask01[tuple(got.positions_zyx.T)].all()


def test_angle_map_types_and_result_dtypes() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random((8, 9, 10), dtype=np.float32)
    ang_i = rng.integers(0, 100, scores.shape).astype(np.int32)
    a = find_peaks(scores, n_peaks=5, exclusion_radius_vox=2, angle_map=ang_i)
    b = find_peaks(
        scores, n_peaks=5, exclusion_radius_vox=2, angle_map=ang_i.astype(np.float32)
    )
    c = find_peaks(scores, n_peaks=5, exclusion_radius_vox=2)
    assert isinstance(a, PeakList) and len(a) == 5
    expected = ang_i[tuple(a.positions_zyx.T)]
    np.testing.assert_array_equal(a.angle_indices, expected)
    np.testing.assert_array_equal(b.angle_indices, expected)
    assert c.angle_indices.tolist() == [-1] * 5
    assert a.positions_zyx.dtype == np.int64 and a.positions_zyx.shape == (5, 3)
    assert a.scores.dtype == np.float32 and a.angle_indices.dtype == np.int64


def test_non_contiguous_and_float64_input_is_converted() -> None:
    rng = np.random.default_rng(2)
    base = rng.random((10, 12, 14))
    view = base[:, ::2, ::-1]
    got = find_peaks(view, n_peaks=4, exclusion_radius_vox=1.5)
    want = numpy_reference_find_peaks(
        np.ascontiguousarray(view, np.float32), n_peaks=4, exclusion_radius_vox=1.5
    )
    np.testing.assert_array_equal(got.positions_zyx, want.positions_zyx)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_peaks": -1, "exclusion_radius_vox": 1.0}, "n_peaks"),
        ({"n_peaks": 1, "exclusion_radius_vox": -1.0}, "exclusion_radius_vox"),
        ({"n_peaks": 1, "exclusion_radius_vox": float("nan")}, "exclusion_radius_vox"),
        ({"n_peaks": 1, "exclusion_radius_vox": 1.0, "border_vox": -2}, "border_vox"),
        ({"n_peaks": 1, "exclusion_radius_vox": 1.0, "cutoff": float("nan")}, "cutoff"),
        (
            {"n_peaks": 1, "exclusion_radius_vox": 1.0, "mask": np.ones((2, 2, 2))},
            "mask has shape",
        ),
        (
            {"n_peaks": 1, "exclusion_radius_vox": 1.0, "angle_map": np.ones((4, 4))},
            "angle map has shape",
        ),
    ],
)
def test_bad_input_raises_config_error(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        find_peaks(np.zeros((4, 4, 4), np.float32), **kwargs)  # type: ignore[arg-type]


def test_two_d_map_rejected() -> None:
    with pytest.raises(ConfigError, match="3-D"):
        find_peaks(np.zeros((4, 4), np.float32), n_peaks=1, exclusion_radius_vox=1.0)
