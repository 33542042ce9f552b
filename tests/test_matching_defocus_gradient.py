"""The defocus gradient (``--defocus-handedness``): offsets and per-tile template CTF.

Oracles: the height of a point after rotating the specimen about y (scipy's
Rotation), pytom-match-pick's own offsets in tests/test_parity_pytom.py, and the
template weight built from explicitly shifted defocus values for each sub-volume.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import pytest
from _synthetic import sphere_mask
from scipy.spatial.transform import Rotation
from tmfast.backends.base import CorrelationInputs, RunningMaps
from tmfast.backends.cpu import CpuBackend
from tmfast.errors import ConfigError
from tmfast.filters import template_weight
from tmfast.filters.defocus_gradient import defocus_offsets_um, metadata_at
from tmfast.matching.config import MatchConfig
from tmfast.matching.engine import match_template
from tmfast.metadata import TiltSeriesMetadata

TILTS = (-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0)
DEFOCUS = (3.1, 3.0, 2.9, 2.8, 2.9, 3.0, 3.1)
CTF: dict[str, Any] = {
    "voltage_kv": 300.0,
    "spherical_aberration_mm": 2.7,
    "amplitude_contrast": 0.07,
}
VOXEL_A = 6.0


@pytest.mark.parametrize("handedness", [1, -1])
def test_offsets_are_the_height_of_the_point_in_each_tilted_image(
    handedness: int,
) -> None:
    rng = np.random.default_rng(1)
    tilts = rng.uniform(-60, 60, 9)
    x_a, z_a = 2500.0, -800.0
    got = defocus_offsets_um(tilts, x_a, z_a, handedness)
    for tilt, off in zip(tilts, got, strict=True):
        # tilting the specimen by a (handedness 1) moves (x, 0, z) to this height
        turned = Rotation.from_euler("y", -handedness * tilt, degrees=True).apply(
            [x_a, 0.0, z_a]
        )
        assert off == pytest.approx(turned[2] * 1e-4, abs=1e-12)
    # the two handednesses agree at zero tilt and mirror the x term elsewhere
    other = defocus_offsets_um(tilts, x_a, z_a, -handedness)
    np.testing.assert_allclose(got + other, 2e-4 * z_a * np.cos(np.deg2rad(tilts)))


def test_handedness_zero_and_bad_values() -> None:
    np.testing.assert_array_equal(defocus_offsets_um(TILTS, 900.0, 50.0, 0), 0.0)
    with pytest.raises(ConfigError, match="-1, 0 or 1"):
        defocus_offsets_um(TILTS, 1.0, 1.0, 2)


def test_metadata_at_shifts_each_tilts_defocus() -> None:
    meta = TiltSeriesMetadata(
        tilt_angles_deg=TILTS, defocus_um=DEFOCUS, defocus_handedness=1, **CTF
    )
    at = metadata_at(meta, 1000.0, 0.0)
    assert at.defocus_um is not None
    pairs = zip(DEFOCUS, TILTS, strict=True)
    expected = [d + 0.1 * np.sin(np.deg2rad(t)) for d, t in pairs]
    np.testing.assert_allclose(at.defocus_um, expected, rtol=0, atol=1e-12)
    assert at.tilt_angles_deg == meta.tilt_angles_deg
    # nothing to shift: the same object back
    no_hand = TiltSeriesMetadata(tilt_angles_deg=TILTS, defocus_um=DEFOCUS, **CTF)
    assert metadata_at(no_hand, 1000.0, 0.0) is no_hand
    no_ctf = TiltSeriesMetadata(tilt_angles_deg=TILTS, defocus_handedness=1)
    assert metadata_at(no_ctf, 1000.0, 0.0) is no_ctf


class _Recording(CpuBackend):
    """A cpu backend that keeps each tile's template weight; with ``max_x`` it
    says that tiles longer than that along x do not fit (as a small GPU would)."""

    def __init__(self, max_x: int | None = None) -> None:
        super().__init__(workers=1)
        self.weights: list[np.ndarray] = []
        self.shapes: list[tuple[int, ...]] = []
        self.max_x = max_x

    def fits(
        self,
        shape_zyx: tuple[int, int, int],
        box_n: int,
        *,
        mask_is_spherical: bool,
        with_noise: bool,
    ) -> bool:
        return self.max_x is None or shape_zyx[2] <= self.max_x

    def prepare(
        self, inputs: CorrelationInputs, *, resume_from: RunningMaps | None = None
    ) -> None:
        self.weights.append(np.array(inputs.template_weight))
        self.shapes.append(inputs.tomogram.shape)
        super().prepare(inputs, resume_from=resume_from)


def _run(
    handedness: int | None,
    *,
    per_tilt: bool = True,
    meta_hand: int = 0,
    max_x: int | None = None,
) -> tuple[_Recording, Any]:
    rng = np.random.default_rng(3)
    meta = TiltSeriesMetadata(
        tilt_angles_deg=TILTS,
        defocus_um=DEFOCUS,
        defocus_handedness=meta_hand,
        **CTF,
    )
    backend = _Recording(max_x)
    config = MatchConfig(
        angular_search="38.53",
        low_pass_a=15.0,
        per_tilt_weighting=per_tilt,
        defocus_handedness=handedness,
        volume_split_xyz=(2, 1, 1),
        backend="cpu",
    )
    result = match_template(
        config,
        tomogram=rng.standard_normal((16, 18, 20)).astype(np.float32),
        template=rng.standard_normal((8, 8, 8)).astype(np.float32),
        mask=sphere_mask(8, 3.5),
        voxel_size_a=VOXEL_A,
        metadata=meta,
        backend=backend,
    )
    return backend, result


def _expected_weight(meta: TiltSeriesMetadata) -> np.ndarray:
    return template_weight(
        8, VOXEL_A, metadata=meta, per_tilt_weighting=True, low_pass_a=15.0
    )


@pytest.mark.parametrize(("flag", "meta_hand"), [(1, 0), (-1, 0), (None, -1), (1, -1)])
def test_each_tile_gets_the_ctf_at_its_centre(flag: int | None, meta_hand: int) -> None:
    """Split in two along x (20 voxels): the tiles score x 0-9 and 10-19, centres 5
    and 15, i.e. -30 and +30 Å from the tomogram centre (x 10) at z = 0. The flag
    wins over the metadata's handedness; without the flag the metadata's holds."""
    backend, result = _run(flag, meta_hand=meta_hand)
    hand = meta_hand if flag is None else flag
    assert result.job.defocus_handedness == hand
    assert len(backend.weights) == 2
    meta = TiltSeriesMetadata(
        tilt_angles_deg=TILTS, defocus_um=DEFOCUS, defocus_handedness=hand, **CTF
    )
    for got, x_a in zip(backend.weights, (-30.0, 30.0), strict=True):
        want = _expected_weight(metadata_at(meta, x_a, 0.0))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
    # the gradient changes the weight: not the weight at the centre
    flat = _expected_weight(dataclasses.replace(meta, defocus_handedness=0))
    assert np.abs(backend.weights[0] - flat).max() > 1e-4


@pytest.mark.parametrize(("flag", "meta_hand"), [(None, 0), (0, 1)])
def test_no_handedness_keeps_one_weight_for_all_tiles(
    flag: int | None, meta_hand: int
) -> None:
    """No handedness anywhere, or the metadata's turned off with 0."""
    backend, result = _run(flag, meta_hand=meta_hand)
    assert result.job.defocus_handedness == 0
    np.testing.assert_array_equal(backend.weights[0], backend.weights[1])


def test_tiles_added_for_memory_keep_their_sub_volumes_weight() -> None:
    """A device that takes only narrower tiles makes the engine split further; each
    smaller tile keeps the weight of the -s half it lies in, so the maps do not
    depend on the device's memory."""
    whole, whole_result = _run(1)
    small, small_result = _run(1, max_x=min(sh[2] for sh in whole.shapes) - 1)
    assert len(whole.weights) == 2 and len(small.weights) > 4
    assert max(sh[2] for sh in small.shapes) < min(sh[2] for sh in whole.shapes)
    # every smaller tile has one of the two halves' weights, and both occur
    used = {
        next(k for k, w in enumerate(whole.weights) if np.array_equal(got, w))
        for got in small.weights
    }
    assert used == {0, 1}
    np.testing.assert_allclose(small_result.scores, whole_result.scores, atol=1e-5)
    np.testing.assert_array_equal(small_result.angles, whole_result.angles)


def test_handedness_without_per_tilt_weighting_warns_and_does_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="tmfast"):
        backend, result = _run(1, per_tilt=False)
    assert "no defocus gradient without per-tilt weighting" in caplog.text
    assert result.job.defocus_handedness == 0
    np.testing.assert_array_equal(backend.weights[0], backend.weights[1])
