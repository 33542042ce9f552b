"""Plant -> match -> extract -> STAR: positions and RELION orientations recovered.

A template is planted rotated by known RELION (rot, tilt, psi) angles, using RELION's
own matrix formula (a particle is the reference actively rotated by A). After
matching on the CPU backend and extraction to a RELION5 STAR file, the centred Å
coordinates converted back to voxels must equal the planted positions and the STAR's
rotation matrix must lie within one angular step of A (geodesic angle between
matrices, not raw angles).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import starfile
from _synthetic import plant, sphere_mask, write_mrc
from tmfast.extraction import extract_candidates
from tmfast.extraction.star_columns import centred_angstrom_to_voxels
from tmfast.geometry.rotations import relion_matrix
from tmfast.io.star import write_star
from tmfast.matching.config import MatchConfig
from tmfast.matching.engine import run_match

N = 12
SHAPE_ZYX = (36, 40, 44)
VOXEL_A = 10.0
STEP_DEG = 30.0
PLANTED_ZYX = [(12, 13, 14), (24, 27, 30)]
PLANTED_RELION = [(30.0, 50.0, -70.0), (-120.0, 110.0, 40.0)]


def _asymmetric_template() -> np.ndarray:
    z, y, x = np.indices((N, N, N)) - N // 2
    t = np.zeros((N, N, N))
    # three blobs of different sizes at different, non-coplanar-symmetric offsets
    for (cx, cy, cz), s, a in (
        ((0, 0, 0), 1.8, 1.0),
        ((3, 0, 0), 1.2, 0.8),
        ((0, 3, 1), 1.0, 0.6),
        ((-1, -1, 3), 0.9, 0.5),
    ):
        t += a * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * s * s))
    return t.astype(np.float32)


def _geodesic_deg(a: np.ndarray, b: np.ndarray) -> float:
    c = (np.trace(a.T @ b) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


@pytest.mark.slow
def test_plant_match_extract_star(tmp_path: Path) -> None:
    template = _asymmetric_template()
    mats = [relion_matrix(*a) for a in PLANTED_RELION]
    tomo = plant(
        SHAPE_ZYX, template, PLANTED_ZYX, np.stack(mats), noise_sigma=0.05, seed=3
    )
    d = tmp_path / "in"
    d.mkdir()
    cfg = MatchConfig(
        template=write_mrc(d / "tmpl.mrc", template, VOXEL_A),
        tomogram=write_mrc(d / "tomo.mrc", tomo, VOXEL_A),
        mask=write_mrc(d / "mask.mrc", sphere_mask(N, 5.5), VOXEL_A),
        destination=tmp_path / "out",
        angular_search=STEP_DEG,
        tilt_angles=(-90.0, 90.0),
        backend="cpu",
        particle_diameter_a=100.0,
    )
    job = run_match(cfg)
    table = extract_candidates(
        tmp_path / "out" / "tomo_job.json", n_particles=2, cutoff=-1
    )
    star = tmp_path / "tomo_particles.star"
    write_star(star, table.to_star_blocks(relion5=True))
    df = starfile.read(star)
    a = df[[f"rlnCenteredCoordinate{c}Angst" for c in "XYZ"]].to_numpy()
    px = df["rlnTomoTiltSeriesPixelSize"].to_numpy()
    nz, ny, nx = job.tomo_shape_zyx
    vox_xyz = centred_angstrom_to_voxels(
        a, pixel_size_a=px, tomo_size_xyz_vox=(nx, ny, nz)
    )
    got = {tuple(round(v) for v in p[::-1]): i for i, p in enumerate(vox_xyz)}
    assert set(got) == set(PLANTED_ZYX)
    np.testing.assert_allclose(vox_xyz, np.round(vox_xyz), atol=1e-9)
    for pos, A in zip(PLANTED_ZYX, mats, strict=True):
        row = df.iloc[got[pos]]
        m = relion_matrix(row["rlnAngleRot"], row["rlnAngleTilt"], row["rlnAnglePsi"])
        assert _geodesic_deg(m, A) <= STEP_DEG, (pos, _geodesic_deg(m, A))
    # The automatic cutoff from the engine's statistics keeps both particles first.
    auto = extract_candidates(tmp_path / "out" / "tomo_job.json", n_particles=10)
    assert np.isfinite(auto.cutoff) and auto.cutoff > 0
    assert {tuple(p) for p in auto.positions_zyx[:2]} == set(PLANTED_ZYX)
