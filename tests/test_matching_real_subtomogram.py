"""A real ribosome subtomogram (cryoCAT, ../shared/data/real/cryocat): the template in
its own frame scores clearly above every random rotation near the particle centre."""

from __future__ import annotations

import numpy as np
import pytest
from _synthetic import SHARED
from scipy.spatial.transform import Rotation
from tmfast.backends.cpu import CpuBackend
from tmfast.filters import template_weight, tomogram_filter
from tmfast.matching.engine import filter_tomogram, search_volume

DATA = SHARED / "data" / "real" / "cryocat" / "peak_analysis"
VOXEL_A = 8.704  # bin4 of 2.176 Å (template_list.csv)


def _read_em(path):  # type: ignore[no-untyped-def]
    """TOM/EM: 512-byte header, byte 3 = dtype code, int32 nx ny nz, x fastest."""
    raw = path.read_bytes()
    nx, ny, nz = (int(v) for v in np.frombuffer(raw[4:16], dtype="<i4"))
    dtype = {5: "<f4", 9: "<f8"}[raw[3]]
    data = np.frombuffer(raw[512:], dtype=dtype, count=nx * ny * nz)
    return data.reshape(nz, ny, nx).astype(np.float32)


def test_ribosome_subtomogram_prefers_its_own_frame() -> None:
    subtomos = sorted(DATA.glob("subtomo_ribosome_*.em")) if DATA.exists() else []
    if not subtomos:
        pytest.skip("../shared/data/real/cryocat not present")
    template = _read_em(DATA / "bin4_voxel2.176_ribosome.em")
    mask = _read_em(DATA / "mask48_r22.em")
    vol = _read_em(subtomos[0])
    low_pass_a = 40.0
    weight = template_weight(48, VOXEL_A, low_pass_a=low_pass_a)
    filtered = filter_tomogram(
        vol, lambda s: tomogram_filter(s, VOXEL_A, low_pass_a=low_pass_a)
    )
    random = Rotation.random(60, random_state=1).as_euler("zxz")

    def run(angles: np.ndarray) -> np.ndarray:
        maps = search_volume(
            filtered, template, mask, weight, angles, backends=[CpuBackend()]
        )
        return maps.scores

    own = run(np.zeros((1, 3)))
    other = run(random)
    near = (slice(24 - 4, 24 + 5),) * 3  # the particle centre (box centre 24)
    best_own = float(own[near].max())
    best_other = float(other[near].max())
    assert best_own > best_other
    # and the template's frame stands out from the distribution of random rotations
    centre = tuple(
        int(v) + 20 for v in np.unravel_index(own[near].argmax(), own[near].shape)
    )
    per_rotation = np.array([run(a[None])[centre] for a in random[:20]])
    assert own[centre] > per_rotation.mean() + 4 * per_rotation.std()
