"""Engine: splits, search regions, tomogram masks, statistics, multi-device merge."""

from __future__ import annotations

import numpy as np
import pytest
from _synthetic import sphere_mask
from tmfast.backends.base import CorrelationInputs, RunningMaps
from tmfast.backends.cpu import CpuBackend
from tmfast.geometry.rotations import zxz_to_matrices
from tmfast.matching.engine import merge_running_maps, search_volume
from tmfast.matching.stats import noise_corrected_scores, search_statistics
from tmfast.matching.tiling import cut_tile, fast_period, plan_tiles

N_BOX = 7
ANGLES = np.array(
    [
        [0.0, 0.0, 0.0],
        [0.5, 0.3, 1.0],
        [1.2, 2.0, -0.5],
        [2.5, 1.0, 0.2],
        [4.0, 0.7, 3.0],
    ]
)


@pytest.fixture(scope="module")
def problem() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    tomo = rng.standard_normal((20, 23, 26)).astype(np.float32)
    tmpl = rng.standard_normal((N_BOX,) * 3).astype(np.float32)
    weight = rng.uniform(0.3, 1.0, (N_BOX, N_BOX, N_BOX // 2 + 1)).astype(np.float32)
    return {
        "tomo": tomo,
        "tmpl": tmpl,
        "mask": sphere_mask(N_BOX, 3.0),
        "weight": weight,
        "noise": rng.standard_normal((N_BOX,) * 3).astype(np.float32),
    }


def _search(p: dict[str, np.ndarray], **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("backends", [CpuBackend(workers=1)])
    kw.setdefault("keep_sums", True)
    return search_volume(p["tomo"], p["tmpl"], p["mask"], p["weight"], ANGLES, **kw)  # type: ignore[arg-type]


def _periodic_reference(p: dict[str, np.ndarray]) -> RunningMaps:
    """The definition: circular correlation over the tomogram zero-padded to the
    FFT-fast period, computed by the backend on that padded array directly."""
    shape = p["tomo"].shape
    period = fast_period(shape)
    padded = np.zeros(period, np.float32)
    padded[: shape[0], : shape[1], : shape[2]] = p["tomo"]
    be = CpuBackend(workers=1)
    be.prepare(
        CorrelationInputs(
            tomogram=padded,
            template=p["tmpl"],
            mask=p["mask"],
            template_weight=p["weight"],
        )
    )
    be.score_rotations(0, zxz_to_matrices(ANGLES))
    m = be.finalize()
    sl = tuple(slice(0, n) for n in shape)
    return RunningMaps(
        scores=m.scores[sl],
        angles=m.angles[sl],
        score_sum=m.score_sum[sl],
        score_sq_sum=m.score_sq_sum[sl],
        noise_scores=None,
        n_rotations_done=m.n_rotations_done,
    )


def test_tiles_cover_the_region_once() -> None:
    period = (16, 18, 18)
    tiles = plan_tiles((2, 3, 0), (14, 15, 17), (3, 2, 2), 8, period)
    cover = np.zeros((14, 15, 17), int)
    for t in tiles:
        cover[t.unique_in_region((2, 3, 0))] += 1
        for s, a, b, n, per in zip(
            t.shape_zyx,
            t.unique_start_zyx,
            t.unique_stop_zyx,
            t.data_len_zyx,
            period,
            strict=True,
        ):
            # either the whole period, or unique + box - 1 without wrap
            assert (n == s == per) or (n == (b - a) + 7 and s >= n)
    assert (cover == 1).all()
    assert len(tiles) == 12
    vol = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7) + 1
    # a 1-voxel-wide tile near x = 0 wraps to the far end of the padded period 8
    t = plan_tiles((0, 0, 0), (5, 6, 7), (7, 1, 1), 4, (5, 6, 8))[0]
    assert t.data_start_zyx == (0, 0, -2) and t.data_len_zyx == (5, 6, 4)
    cut = cut_tile(vol, t)
    np.testing.assert_array_equal(cut[:, :, 0], vol[:, :, 6])  # x = -2 -> 6
    np.testing.assert_array_equal(cut[:, :, 1], 0)  # x = -1 -> 7, the zero padding
    np.testing.assert_array_equal(cut[:, :, 2], vol[:, :, 0])
    np.testing.assert_array_equal(cut[:, :, 3], vol[:, :, 1])


def test_unsplit_equals_periodic_definition(problem: dict[str, np.ndarray]) -> None:
    maps = _search(problem)
    ref = _periodic_reference(problem)
    np.testing.assert_allclose(maps.scores, ref.scores, atol=1e-5)
    np.testing.assert_array_equal(maps.angles, ref.angles)
    np.testing.assert_allclose(maps.score_sq_sum, ref.score_sq_sum, atol=1e-4)
    assert maps.searched.all()


@pytest.mark.parametrize("split", [(2, 1, 1), (3, 2, 2), (1, 3, 1)])
def test_split_equals_unsplit(
    problem: dict[str, np.ndarray], split: tuple[int, int, int]
) -> None:
    whole = _search(problem)
    parts = _search(problem, split_xyz=split)
    np.testing.assert_allclose(parts.scores, whole.scores, atol=1e-5)
    np.testing.assert_array_equal(parts.angles, whole.angles)
    np.testing.assert_allclose(parts.score_sum, whole.score_sum, atol=1e-4)
    np.testing.assert_allclose(parts.score_sq_sum, whole.score_sq_sum, atol=1e-4)


def test_search_region_crops(problem: dict[str, np.ndarray]) -> None:
    whole = _search(problem)
    origin, shape = (3, 5, 2), (10, 12, 20)
    sub = _search(
        problem, search_origin_zyx=origin, search_shape_zyx=shape, split_xyz=(2, 1, 2)
    )
    sl = tuple(slice(o, o + s) for o, s in zip(origin, shape, strict=True))
    assert sub.scores.shape == shape
    np.testing.assert_allclose(sub.scores, whole.scores[sl], atol=1e-5)
    np.testing.assert_array_equal(sub.angles, whole.angles[sl])


def test_masked_tiles_are_skipped(problem: dict[str, np.ndarray]) -> None:
    tmask = np.zeros(problem["tomo"].shape, np.float32)
    tmask[:, :, 20:] = 1.0  # only the last x tile (x in [13, 26)) touches the mask
    calls: list[int] = []

    class Counting(CpuBackend):
        def prepare(self, inputs, *, resume_from=None):  # type: ignore[no-untyped-def]
            calls.append(1)
            super().prepare(inputs, resume_from=resume_from)

    whole = _search(problem)
    maps = _search(
        problem,
        split_xyz=(2, 1, 1),
        tomogram_mask=tmask,
        backends=[Counting(workers=1)],
    )
    assert len(calls) == 1
    assert (
        np.isneginf(maps.scores[:, :, :13]).all()
        and (maps.angles[:, :, :13] == -1).all()
    )
    assert not maps.searched[:, :, :13].any() and maps.searched[:, :, 13:].all()
    np.testing.assert_allclose(
        maps.scores[:, :, 13:], whole.scores[:, :, 13:], atol=1e-5
    )


def test_two_devices_merge_like_one(problem: dict[str, np.ndarray]) -> None:
    one = _search(problem, batch_rotations=1)
    two = _search(
        problem,
        batch_rotations=1,
        backends=[CpuBackend(workers=1), CpuBackend(workers=1)],
    )
    np.testing.assert_array_equal(two.scores, one.scores)
    np.testing.assert_array_equal(two.angles, one.angles)
    # The CPU backend accumulates the per-voxel sums in float32 (memory target of
    # issue 3): two devices add the same terms in another order, so the merged sums
    # agree to float32 rounding; with float64 sums they agree to float64 rounding.
    np.testing.assert_allclose(two.score_sq_sum, one.score_sq_sum, rtol=1e-6)
    one64 = _search(
        problem, batch_rotations=1, backends=[CpuBackend(float32_sums=False)]
    )
    two64 = _search(
        problem,
        batch_rotations=1,
        backends=[
            CpuBackend(workers=1, float32_sums=False),
            CpuBackend(workers=1, float32_sums=False),
        ],
    )
    np.testing.assert_allclose(two64.score_sq_sum, one64.score_sq_sum, rtol=1e-12)


def test_merge_ties_keep_smaller_index() -> None:
    shape = (1, 1, 3)
    a = RunningMaps.empty(shape, with_noise=False)
    b = RunningMaps.empty(shape, with_noise=False)
    a.scores[:] = [0.5, 0.5, 0.2]
    a.angles[:] = [4, 2, 7]
    b.scores[:] = [0.5, 0.5, 0.3]
    b.angles[:] = [3, 5, 1]
    for m in (merge_running_maps(a, b), merge_running_maps(b, a)):
        np.testing.assert_array_equal(m.angles.ravel(), [3, 2, 1])
        np.testing.assert_array_equal(m.scores.ravel(), np.float32([0.5, 0.5, 0.3]))


def test_corrected_statistics_equal_brute_force(problem: dict[str, np.ndarray]) -> None:
    """σ from per-voxel sums equals σ of every stored, corrected per-rotation map."""
    maps = _search(problem, noise_template=problem["noise"])
    assert maps.noise_scores is not None
    # brute force: one run per rotation, every map stored
    per_rot, per_noise = [], []
    for i in range(len(ANGLES)):
        m = search_volume(
            problem["tomo"],
            problem["tmpl"],
            problem["mask"],
            problem["weight"],
            ANGLES[i : i + 1],
            backends=[CpuBackend(workers=1)],
            noise_template=problem["noise"],
        )
        per_rot.append(m.scores.astype(np.float64))
        assert m.noise_scores is not None
        per_noise.append(m.noise_scores.astype(np.float64))
    s = np.stack(per_rot)
    noise_max = np.stack(per_noise).max(axis=0)
    np.testing.assert_allclose(maps.noise_scores, noise_max, atol=1e-6)
    roi = np.zeros(s.shape[1:], bool)
    roi[2:15, 3:20, 1:24] = True
    roi[5, 5, 5] = False
    corrected, m_noise = noise_corrected_scores(maps.scores, maps.noise_scores, roi)
    assert m_noise == pytest.approx(noise_max[roi].mean(), rel=1e-9)
    c = s - noise_max[None] + m_noise  # every rotation's corrected map
    np.testing.assert_allclose(corrected, c.max(axis=0), atol=1e-5)
    stats = search_statistics(
        maps.score_sum,
        maps.score_sq_sum,
        len(ANGLES),
        roi,
        noise_scores=maps.noise_scores,
        noise_mean=m_noise,
    )
    vals = c[:, roi]
    assert stats.search_space == vals.size == int(roi.sum()) * len(ANGLES)
    assert stats.variance == pytest.approx(float((vals**2).mean()), rel=1e-6)
    assert stats.std == pytest.approx(float(np.sqrt((vals**2).mean())), rel=1e-6)
    assert stats.mean == pytest.approx(float(vals.mean()), abs=1e-6)
    plain = search_statistics(maps.score_sum, maps.score_sq_sum, len(ANGLES), roi)
    assert plain.variance == pytest.approx(float((s[:, roi] ** 2).mean()), rel=1e-6)
    assert plain.variance != pytest.approx(stats.variance, rel=1e-3)


@pytest.mark.parametrize("split", [(1, 1, 1), (2, 2, 1)])
def test_tile_reduced_statistics_equal_brute_force(
    problem: dict[str, np.ndarray], split: tuple[int, int, int]
) -> None:
    """The scalar per-tile reduction used by the engine gives the brute-force σ."""
    roi = np.zeros(problem["tomo"].shape, bool)
    roi[2:15, 3:20, 1:24] = True
    roi[5, 5, 5] = False
    maps = _search(
        problem,
        noise_template=problem["noise"],
        split_xyz=split,
        tomogram_mask=roi.astype(np.float32),
        keep_sums=False,
    )
    assert maps.score_sum is None and maps.noise_scores is not None
    per_rot, per_noise = [], []
    for i in range(len(ANGLES)):
        m = search_volume(
            problem["tomo"],
            problem["tmpl"],
            problem["mask"],
            problem["weight"],
            ANGLES[i : i + 1],
            backends=[CpuBackend(workers=1)],
            noise_template=problem["noise"],
        )
        per_rot.append(m.scores.astype(np.float64))
        per_noise.append(m.noise_scores.astype(np.float64))  # type: ignore[union-attr]
    s = np.stack(per_rot)
    noise_max = np.stack(per_noise).max(axis=0)
    m_noise = noise_max[roi].mean()
    assert maps.roi_sums.noise_mean() == pytest.approx(m_noise, rel=1e-6)
    c = (s - noise_max[None] + m_noise)[:, roi]
    st = maps.roi_sums.statistics(len(ANGLES), corrected=True)
    assert st.search_space == c.size
    assert st.variance == pytest.approx(float((c**2).mean()), rel=1e-6)
    assert st.mean == pytest.approx(float(c.mean()), abs=1e-6)
    plain = maps.roi_sums.statistics(len(ANGLES), corrected=False)
    assert plain.variance == pytest.approx(float((s[:, roi] ** 2).mean()), rel=1e-6)


@pytest.mark.parametrize("split", [(1, 1, 1), (2, 1, 2)])
def test_backend_roi_totals_give_the_brute_force_statistics(
    problem: dict[str, np.ndarray], split: tuple[int, int, int]
) -> None:
    """Without a noise template the cpu backend keeps no per-voxel sums at all: it
    totals them over each tile's region of interest (CorrelationInputs.stats_roi);
    the statistics still equal those of every stored per-rotation map."""
    roi = np.zeros(problem["tomo"].shape, bool)
    roi[1:14, 2:21, 3:22] = True
    roi[6, 7, 8] = False
    maps = _search(
        problem,
        split_xyz=split,
        tomogram_mask=roi.astype(np.float32),
        keep_sums=False,
    )
    assert maps.score_sum is None
    s = np.stack(
        [
            search_volume(
                problem["tomo"],
                problem["tmpl"],
                problem["mask"],
                problem["weight"],
                ANGLES[i : i + 1],
                backends=[CpuBackend(workers=1)],
            ).scores.astype(np.float64)
            for i in range(len(ANGLES))
        ]
    )[:, roi]
    st = maps.roi_sums.statistics(len(ANGLES), corrected=False)
    assert st.search_space == s.size
    assert st.variance == pytest.approx(float((s**2).mean()), rel=1e-6)
    assert st.mean == pytest.approx(float(s.mean()), abs=1e-7)
    # and the per-voxel path (keep_sums) agrees
    kept = _search(
        problem, split_xyz=split, tomogram_mask=roi.astype(np.float32), keep_sums=True
    )
    assert kept.score_sum is not None
    ref = kept.roi_sums.statistics(len(ANGLES), corrected=False)
    assert st.variance == pytest.approx(ref.variance, rel=1e-6)


@pytest.mark.parametrize("spherical", [True, False])
def test_flat_filtered_region_keeps_flcf_bounded(spherical: bool) -> None:
    """A constant region, low-pass and wedge filtered, has a local variance at the
    float32 rounding level; it must not produce |FLCF| > 1 (it gave 6.4 with an
    absolute 1e-18 variance floor only)."""
    from tmfast.filters import template_weight, tomogram_filter
    from tmfast.matching.demo import demo_mask, demo_template
    from tmfast.matching.engine import filter_tomogram

    rng = np.random.default_rng(0)
    vol = rng.standard_normal((48, 64, 64)).astype(np.float32)
    vol[:, :, 32:] = 7.0
    filtered = filter_tomogram(
        vol,
        lambda s: tomogram_filter(s, 10.0, low_pass_a=30.0, tilt_range_deg=(-60, 60)),
    )
    weight = template_weight(16, 10.0, low_pass_a=30.0, tilt_range_deg=(-60, 60))
    angles = np.random.default_rng(1).uniform(0, 3, (6, 3))
    maps = search_volume(
        filtered,
        demo_template(16),
        demo_mask(16),
        weight,
        angles,
        backends=[CpuBackend()],
        mask_is_spherical=spherical,
    )
    assert np.abs(maps.scores).max() <= 1.0 + 1e-3


def test_tiles_are_split_until_the_backend_says_they_fit(
    problem: dict[str, np.ndarray],
) -> None:
    seen: list[tuple[int, int, int]] = []

    class Small(CpuBackend):
        def fits(self, shape_zyx, box_n, *, mask_is_spherical, with_noise):  # type: ignore[no-untyped-def]
            return int(np.prod(shape_zyx)) <= 20 * 20 * 20

        def prepare(self, inputs, *, resume_from=None):  # type: ignore[no-untyped-def]
            seen.append(inputs.tomogram.shape)
            super().prepare(inputs, resume_from=resume_from)

    whole = _search(problem)
    maps = _search(problem, backends=[Small(workers=1)])
    assert len(seen) > 1 and all(np.prod(s) <= 8000 for s in seen)
    np.testing.assert_allclose(maps.scores, whole.scores, atol=1e-5)
    np.testing.assert_array_equal(maps.angles, whole.angles)
