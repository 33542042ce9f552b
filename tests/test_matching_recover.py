"""Plant rotated templates in noise (with a missing wedge) and recover them exactly."""

from __future__ import annotations

import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from _synthetic import SHARED, plant, write_mrc
from tmfast.geometry.angles import angle_set
from tmfast.geometry.rotations import zxz_to_matrices
from tmfast.io.mrc import read_volume
from tmfast.matching.config import MatchConfig
from tmfast.matching.demo import demo_mask, demo_template
from tmfast.matching.engine import match_template

STEP = 38.53  # 480 rotations, pytom's unit-test increment


def _wedge_filtered(vol: np.ndarray, max_tilt_deg: float) -> np.ndarray:
    """Remove the missing wedge (about y, beyond ±max tilt) from a volume."""
    kz = np.fft.fftfreq(vol.shape[0])[:, None, None]
    kx = np.fft.rfftfreq(vol.shape[2])[None, None, :]
    # sampled: |kz| <= tan(max_tilt) * |kx| (tilt axis y, beam along z)
    keep = np.abs(kz) <= np.tan(np.radians(max_tilt_deg)) * np.abs(kx) + 1e-9
    keep = np.broadcast_to(keep, (vol.shape[0], vol.shape[1], vol.shape[2] // 2 + 1))
    return np.fft.irfftn(np.fft.rfftn(vol) * keep, s=vol.shape, axes=(0, 1, 2))


def _recover(
    tmp_path: Path,
    template: np.ndarray,
    mask: np.ndarray,
    voxel: float,
    seed: int,
    noise: float,
) -> None:
    rng = np.random.default_rng(seed)
    angles = angle_set(STEP)
    shape = (36, 44, 40)
    n = template.shape[0]
    positions = np.array([[10, 12, 11], [24, 30, 13], [12, 31, 28], [26, 13, 29]])
    positions = positions[:, :] + np.array([0, 0, 0])
    idx = rng.choice(len(angles), size=len(positions), replace=False)
    mats = zxz_to_matrices(angles[idx])
    clean = plant(shape, template, positions, mats)
    vol = _wedge_filtered(clean, 60.0) + rng.normal(0, noise * clean.std(), shape)
    cfg = MatchConfig(
        template=write_mrc(tmp_path / "t.mrc", template, voxel),
        tomogram=write_mrc(tmp_path / "v.mrc", vol, voxel),
        mask=write_mrc(tmp_path / "m.mrc", mask, voxel),
        destination=tmp_path,
        angular_search=STEP,
        tilt_angles=(-60, 60),
        backend="cpu",
        checkpoint_every=0,
        checkpoint_interval_s=0,
    )
    res = match_template(cfg)
    assert res.angle_set.shape == angles.shape
    np.testing.assert_array_equal(res.angle_set, angles)
    r = n // 2
    for pos, i, m in zip(positions, idx, mats, strict=True):
        lo = np.maximum(pos - r, 0)
        hi = pos + r + 1
        window = res.scores[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        peak = np.array(np.unravel_index(np.argmax(window), window.shape)) + lo
        np.testing.assert_array_equal(peak, pos)
        found = res.angles[tuple(pos)]
        if found != i:  # allow a neighbouring rotation of the same quality
            m2 = zxz_to_matrices(angles[found])[0]
            err = np.degrees(np.arccos(np.clip((np.trace(m.T @ m2) - 1) / 2, -1, 1)))
            assert err <= STEP, (pos, i, found, err)
        assert res.scores[tuple(pos)] > 6 * res.stats.std


def test_recover_builtin_template(tmp_path: Path) -> None:
    _recover(tmp_path, demo_template(16), demo_mask(16), 10.0, seed=1, noise=1.0)


def test_recover_real_ribosome_template(tmp_path: Path) -> None:
    tmpl = SHARED / "data" / "real" / "pytom" / "emd_5592_21A.mrc"
    mask = SHARED / "data" / "real" / "pytom" / "mask_20_8_1.mrc"
    if not (tmpl.exists() and mask.exists()):
        pytest.skip("../shared/data/real/pytom not present")
    t, _ = read_volume(tmpl, require_voxel_size=False)  # old headers, no voxel size
    m, _ = read_volume(mask, require_voxel_size=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with mrcfile.open(mask, permissive=True) as f:  # independent reader
            np.testing.assert_array_equal(m, f.data)
    _recover(tmp_path, t * m, m, 21.0, seed=2, noise=1.0)
