"""Templates from atomic models: scattering-factor density, geometry, real 5UZ4."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from tmfast.errors import ConfigError, FormatError
from tmfast.templates.maps import template_from_map
from tmfast.templates.models import AtomModel, read_atom_model, template_from_model

gemmi = pytest.importorskip("gemmi")

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
EMD_8621 = REAL / "pytme" / "emd_8621.mrc.gz"
MODEL_5UZ4 = REAL / "pytme" / "5uz4.cif.gz"


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _model(xyz: list[tuple[float, float, float]], elements: list[str]) -> AtomModel:
    return AtomModel(
        coords_xyz_a=np.asarray(xyz, dtype=np.float64),
        elements=np.asarray(elements),
        occupancies=np.ones(len(xyz)),
    )


@pytest.mark.parametrize("element", ["C", "P"])
def test_single_atom_matches_gemmi_analytic_density(element: str) -> None:
    """A smooth atom (B = 150 Å^2, band-limited below Nyquist) equals gemmi's own
    real-space density of the IT 4.3.2.2 Gaussians at every voxel."""
    voxel = 0.7
    pos = (1.23, -0.41, 0.77)  # off-grid
    out = template_from_model(
        _model([pos], [element]),
        voxel,
        box_size=36,
        center_xyz_a=(0.0, 0.0, 0.0),
        b_factor_a2=150.0,
    )
    coef = gemmi.Element(element).c4322
    g = (np.arange(36) - 18) * voxel
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    r2 = (x - pos[0]) ** 2 + (y - pos[1]) ** 2 + (z - pos[2]) ** 2
    ref = np.vectorize(lambda v: coef.calculate_density_iso(v, 150.0))(r2)
    assert np.abs(out - ref).max() < 1e-3 * ref.max()
    # Integral = f(0) (forward scattering), i.e. sum of the a coefficients.
    assert out.sum() * voxel**3 == pytest.approx(sum(coef.get_coefs()[:5]), rel=1e-3)


def test_model_geometry_mirror_invert_and_default_box() -> None:
    xyz = [(10.0, 0.0, 0.0), (0.0, 5.0, 0.0), (0.0, 0.0, -7.5)]
    m = _model(xyz, ["S", "S", "S"])
    out = template_from_model(m, 2.5, box_size=24, center_xyz_a=(0.0, 0.0, 0.0))
    # Peaks at N//2 + r / voxel, in (z, y, x) order.
    for x, y, z in xyz:
        idx = (12 + round(z / 2.5), 12 + round(y / 2.5), 12 + round(x / 2.5))
        nb = out[
            idx[0] - 1 : idx[0] + 2, idx[1] - 1 : idx[1] + 2, idx[2] - 1 : idx[2] + 2
        ]
        assert out[idx] == nb.max()
    mir = template_from_model(
        m, 2.5, box_size=24, center_xyz_a=(0.0, 0.0, 0.0), mirror=True
    )
    flipped = _model([(x, y, -z) for x, y, z in xyz], ["S"] * 3)
    ref = template_from_model(flipped, 2.5, box_size=24, center_xyz_a=(0.0, 0.0, 0.0))
    assert np.abs(mir - ref).max() < 1e-6 * ref.max()
    inv = template_from_model(
        m, 2.5, box_size=24, center_xyz_a=(0.0, 0.0, 0.0), invert=True
    )
    assert np.array_equal(inv, -out)
    auto = template_from_model(m, 2.5)  # mean-centred, box covers atoms + 2 x 5 Å
    reach = np.linalg.norm(np.asarray(xyz) - np.mean(xyz, axis=0), axis=1).max()
    assert auto.shape[0] >= 2 * (reach + 10.0) / 2.5
    # an explicit box below the smallest template box is refused, as for maps
    with pytest.raises(ConfigError, match="--box-size 4"):
        template_from_model(m, 2.5, box_size=4)


def test_model_without_atoms_is_a_format_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pdb"
    empty.write_text("HEADER    EMPTY\nEND\n")
    with pytest.raises(FormatError, match="no atoms"):
        read_atom_model(empty)
    waters = tmp_path / "water.pdb"
    waters.write_text(
        "HETATM    1  O   HOH A   1      10.000  10.000  10.000  1.00 20.00"
        "           O\n"
        "END\n"
    )
    with pytest.raises(FormatError, match="no atoms"):
        read_atom_model(waters)
    with pytest.raises(FormatError, match="no such file"):
        read_atom_model(tmp_path / "missing.cif")
    with pytest.raises(FormatError, match="no atoms"):
        template_from_model(_model([], []), 5.0)


@pytest.mark.skipif(
    not (EMD_8621.is_file() and MODEL_5UZ4.is_file()),
    reason="shared/data/real/pytme absent",
)
def test_5uz4_model_matches_emd_8621_map_on_the_same_grid() -> None:
    """PDB 5UZ4 was built into EMD-8621; simulated at 7.64 Å on the map's grid it
    correlates far better than copies shifted by one voxel or by 2 Å, and better
    than its mirror image. The model frame is voxel index * 1.45 Å of the map
    (the header origin is not applied), so the map's centre voxel 110 sits at
    110 * 1.45 Å on every axis."""
    from tmfast.io.mrc import read_volume

    vol, a_in = read_volume(EMD_8621)
    tmap = template_from_map(vol, a_in, 7.64)
    t0 = time.perf_counter()
    model = read_atom_model(MODEL_5UZ4)
    t_read = time.perf_counter() - t0
    center = (110 * a_in,) * 3
    t0 = time.perf_counter()
    tmod = template_from_model(model, 7.64, box_size=tmap.shape[0], center_xyz_a=center)
    t_sim = time.perf_counter() - t0
    print(
        f"5UZ4: {len(model.elements)} atoms read {t_read:.2f} s, "
        f"simulated {t_sim:.2f} s"
    )
    assert len(model.elements) > 50_000
    cc = _ncc(tmap, tmod)
    assert cc > 0.9
    for axis in range(3):
        for step in (-1, 1):
            assert cc > _ncc(tmap, np.roll(tmod, step, axis=axis)) + 0.05
    for d in np.eye(3) * 2.0:
        shifted = template_from_model(
            model, 7.64, box_size=tmap.shape[0], center_xyz_a=tuple(np.add(center, d))
        )
        assert cc > _ncc(tmap, shifted)
    mirrored = template_from_model(
        model, 7.64, box_size=tmap.shape[0], center_xyz_a=center, mirror=True
    )
    assert cc > _ncc(tmap, mirrored) + 0.2
