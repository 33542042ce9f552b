"""Templates from atomic models (PDB / mmCIF via gemmi): simulated Coulomb potential.

Each atom contributes its element's electron scattering factor, the 5-Gaussian fit
of International Tables vol. C table 4.3.2.2 as shipped by gemmi
(``gemmi.Element(el).c4322``):  ``f_e(s) = sum_i a_i exp(-b_i s^2)`` with
``s = |q| / 2`` (q in 1/Å), weighted by the atom's occupancy, times an optional
uniform B-factor ``exp(-B s^2)``. Per-atom B-factors are ignored (the template is
low-passed to a resolution far coarser than they matter at). Waters are removed and
only the first model of a multi-model file is used.

The structure factor is computed by Gaussian gridding (the type-1 non-uniform FFT
idea): atoms are spread with a narrow separable Gaussian of sigma = one voxel on a
grid ``oversample`` times finer than the output, each element's grid is Fourier
transformed and multiplied by ``f_e(q) / G(q)`` (``G`` the spreading Gaussian's
transform), the raised-cosine low-pass of :mod:`tmfast.templates.maps` zeroes
everything beyond the requested resolution (at most the output Nyquist), and the
fine grid is decimated to the output grid. With ``oversample = 2`` the aliased part
that can reach the kept band is below ``exp(-9 pi^2 / 8) ~ 1.5e-5`` of the signal.
Units: ``f`` (Å) per Å^3, i.e. proportional to the potential; only relative values
matter for matching.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.fft

from tmfast.errors import ConfigError, FormatError
from tmfast.templates.maps import (
    DEFAULT_LOWPASS_EDGE,
    MIN_TEMPLATE_BOX,
    lowpass_weights_rfft,
)
from tmfast.types import Volume

__all__ = ["AtomModel", "read_atom_model", "template_from_model"]

logger = logging.getLogger(__name__)

#: Atoms spread per chunk (bounds temporary memory to ~ chunk * 9^3 * 16 bytes).
_CHUNK_ATOMS = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class AtomModel:
    """Atom positions and elements of a model.

    Attributes
    ----------
    coords_xyz_a
        ``(N, 3)`` float64 positions ``(x, y, z)`` in Å.
    elements
        ``(N,)`` element symbols (str, as gemmi spells them, e.g. ``"C"``, ``"Mg"``).
    occupancies
        ``(N,)`` float64 occupancies.
    """

    coords_xyz_a: npt.NDArray[np.float64]
    elements: npt.NDArray[np.str_]
    occupancies: npt.NDArray[np.float64]


def _binary_content(path: Path) -> str | None:
    """Why ``path`` (after gzip) is no text model, or None: gemmi reads an MRC
    map named ``.pdb`` as a model with no atoms, and says nothing of it."""
    import gzip

    try:
        with path.open("rb") as fh:
            head = fh.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            text = fh.read(4096)
    except (OSError, EOFError) as exc:
        return f"cannot be read: {exc}"
    if b"\0" not in text:
        return None
    if len(text) >= 212 and text[208:212] == b"MAP ":
        return "it is an MRC map: use its .mrc name, or give the model file"
    return "binary data, not text"


def read_atom_model(path: str | os.PathLike[str]) -> AtomModel:
    """Read atoms from a PDB or mmCIF file (optionally gzipped) with gemmi.

    Parameters
    ----------
    path
        ``.pdb``, ``.ent``, ``.cif``, ``.mmcif`` (``.gz`` allowed).

    Returns
    -------
    AtomModel
        Atoms of the first model, waters removed.

    Raises
    ------
    FormatError
        If gemmi is missing, the file is unreadable, or it holds no atoms.
    """
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"{p}: no such file; give an existing PDB or mmCIF model")
    try:
        import gemmi
    except ImportError as exc:  # pragma: no cover - gemmi is in the test group
        raise FormatError(
            f"{p}: reading atomic models needs gemmi; pip install 'tmfast[models]'"
        ) from exc
    binary = _binary_content(p)
    if binary is not None:
        raise FormatError(f"{p}: not a PDB/mmCIF model ({binary})")
    try:
        st = gemmi.read_structure(str(p))
    except (RuntimeError, ValueError, OSError) as exc:
        # gemmi quotes the offending line on a line of its own: keep one line
        reason = " ".join(str(exc).split())
        if len(reason) > 160:
            reason = reason[:160] + "..."
        raise FormatError(
            f"{p}: not a readable PDB/mmCIF model ({reason}); check that the file "
            "is complete (a cut-short download or copy?)"
        ) from None
    st.remove_waters()
    if len(st) == 0:
        raise FormatError(
            f"{p}: the model holds no atoms; give a model with coordinates"
        )
    model = st[0]
    coords: list[tuple[float, float, float]] = []
    elements: list[str] = []
    occ: list[float] = []
    for chain in model:
        for res in chain:
            for atom in res:
                pos = atom.pos
                coords.append((pos.x, pos.y, pos.z))
                elements.append(atom.element.name)
                occ.append(atom.occ)
    if not coords:
        raise FormatError(
            f"{p}: the model holds no atoms; give a model with coordinates"
        )
    return AtomModel(
        coords_xyz_a=np.asarray(coords, dtype=np.float64),
        elements=np.asarray(elements, dtype=np.str_),
        occupancies=np.asarray(occ, dtype=np.float64),
    )


def _scattering_coefs(
    element: str,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    import gemmi

    coefs = np.asarray(gemmi.Element(element).c4322.get_coefs(), dtype=np.float64)
    return coefs[:5], coefs[5:]


def _spread_gaussian(
    grid: npt.NDArray[np.float64],
    pos_zyx_px: npt.NDArray[np.float64],
    weights: npt.NDArray[np.float64],
    sigma_px: float,
) -> None:
    """Add unit-integral Gaussians (sigma in voxels) at ``pos_zyx_px`` to ``grid``.

    Normalised to the continuous integral (``1 / (sqrt(2 pi) sigma)`` per axis) so
    the grid's DFT is ``weights * G(q)`` up to the truncation at 4 sigma.
    """
    half = math.ceil(4.0 * sigma_px)
    taps = np.arange(-half, half + 1)
    shape = np.asarray(grid.shape)
    norm = 1.0 / (math.sqrt(2.0 * math.pi) * sigma_px)
    flat = grid.reshape(-1)
    for start in range(0, len(weights), _CHUNK_ATOMS):
        p = pos_zyx_px[start : start + _CHUNK_ATOMS]
        w = weights[start : start + _CHUNK_ATOMS]
        base = np.floor(p).astype(np.int64)
        idx = base[:, :, None] + taps[None, None, :]  # (n, 3, T)
        d = idx - p[:, :, None]
        g = norm * np.exp(-0.5 * (d / sigma_px) ** 2)
        valid = (idx >= 0) & (idx < shape[None, :, None])
        g = np.where(valid, g, 0.0)
        idx = np.clip(idx, 0, shape[None, :, None] - 1)
        vals = (w[:, None, None, None] * g[:, 0, :, None, None]) * (
            g[:, 1, None, :, None] * g[:, 2, None, None, :]
        )
        lin = (idx[:, 0, :, None, None] * shape[1] + idx[:, 1, None, :, None]) * shape[
            2
        ] + idx[:, 2, None, None, :]
        flat += np.bincount(
            lin.reshape(-1), weights=vals.reshape(-1), minlength=flat.size
        )


def template_from_model(
    model: AtomModel,
    output_voxel_size_a: float,
    *,
    box_size: int | None = None,
    center_xyz_a: tuple[float, float, float] | None = None,
    lowpass_resolution_a: float | None = None,
    lowpass_edge: float = DEFAULT_LOWPASS_EDGE,
    b_factor_a2: float = 0.0,
    invert: bool = False,
    mirror: bool = False,
    oversample: int = 2,
) -> Volume:
    """Simulate a template from an atomic model.

    Parameters
    ----------
    model
        Atoms, e.g. from :func:`read_atom_model`.
    output_voxel_size_a
        Voxel size in Å.
    box_size
        Cube side in voxels; default fits the atoms' bounding sphere about the
        centre plus ``2 * resolution`` on each side.
    center_xyz_a
        Physical point ``(x, y, z)`` in Å placed at voxel ``N // 2``; default the
        mean atom position.
    lowpass_resolution_a
        Low-pass cutoff in Å; default and minimum the output Nyquist.
    lowpass_edge
        Raised-cosine edge width as a fraction of the cutoff frequency.
    b_factor_a2
        Uniform B-factor in Å^2 applied to all atoms.
    invert
        Multiply by -1.
    mirror
        Mirror along z about the box centre (flip handedness).
    oversample
        Internal grid refinement factor (>= 2).

    Returns
    -------
    numpy.ndarray
        float32 cube ``(box, box, box)``; position ``(x, y, z)`` Å maps to voxel
        ``(z, y, x) = N // 2 + (r - center) / voxel``.

    Raises
    ------
    ConfigError
        On a non-positive voxel size or box, or ``oversample < 2``.
    FormatError
        If the model holds no atoms.
    """
    t = float(output_voxel_size_a)
    if not (t > 0 and math.isfinite(t)):
        raise ConfigError(f"output voxel size {output_voxel_size_a!r} Å: must be > 0")
    if oversample < 2:
        raise ConfigError(f"oversample={oversample}: must be >= 2")
    xyz = np.asarray(model.coords_xyz_a, dtype=np.float64)
    if xyz.size == 0:
        raise FormatError("atomic model holds no atoms; give a model with coordinates")
    nyq = 2.0 * t
    res = nyq if lowpass_resolution_a is None else max(float(lowpass_resolution_a), nyq)
    center = (
        xyz.mean(axis=0) if center_xyz_a is None else np.asarray(center_xyz_a, float)
    )
    if box_size is None:
        radius = float(np.sqrt(((xyz - center) ** 2).sum(axis=1)).max())
        box_size = 2 * math.ceil((radius + 2 * res) / t)
    elif box_size < MIN_TEMPLATE_BOX:  # as for maps
        raise ConfigError(
            f"--box-size {box_size}: a template needs at least {MIN_TEMPLATE_BOX} "
            "voxels; use a larger box"
        )
    if box_size < 1:
        raise ConfigError(f"box size {box_size}: must be a positive number of voxels")
    k = int(oversample)
    h = t / k
    n_fine = k * box_size
    c_fine = k * (box_size // 2)
    # Positions in fine voxels, (z, y, x) order.
    pos = (xyz[:, ::-1] - center[::-1]) / h + c_fine
    if mirror:
        pos[:, 0] = 2 * c_fine - pos[:, 0]
    sigma_px = 1.0
    shape = (n_fine, n_fine, n_fine)
    spectrum = np.zeros((n_fine, n_fine, n_fine // 2 + 1), dtype=np.complex128)
    fz = scipy.fft.fftfreq(n_fine, d=h)[:, None, None]
    fy = scipy.fft.fftfreq(n_fine, d=h)[None, :, None]
    fx = scipy.fft.rfftfreq(n_fine, d=h)[None, None, :]
    q2 = fz * fz + fy * fy + fx * fx
    s2 = q2 / 4.0
    weights = lowpass_weights_rfft(shape, h, res, edge_fraction=lowpass_edge)
    keep = weights > 0
    g_spread = np.exp(-2.0 * np.pi**2 * (sigma_px * h) ** 2 * q2)
    occ = np.asarray(model.occupancies, dtype=np.float64)
    for el in np.unique(model.elements):
        sel = model.elements == el
        try:
            a, b = _scattering_coefs(str(el))
        except Exception as exc:  # gemmi raises RuntimeError on unknown symbols
            raise FormatError(f"atomic model: unknown element {el!r} ({exc})") from exc
        if not np.any(a):
            logger.warning(
                "no scattering factors for element %r; %d atoms skipped", el, sel.sum()
            )
            continue
        grid = np.zeros(shape, dtype=np.float64)
        _spread_gaussian(grid, pos[sel], occ[sel], sigma_px)
        f_e = (
            a[:, None, None, None]
            * np.exp(-(b[:, None, None, None] + b_factor_a2) * s2)
        ).sum(axis=0)
        spec_e = scipy.fft.rfftn(grid)
        spectrum[keep] += spec_e[keep] * f_e[keep]
        logger.debug("element %s: %d atoms", el, int(sel.sum()))
    spectrum[keep] *= weights[keep] / g_spread[keep]
    spectrum[~keep] = 0
    fine = scipy.fft.irfftn(spectrum, s=shape) / h**3
    out = fine[::k, ::k, ::k]
    if invert:
        out = -out
    return np.ascontiguousarray(out, dtype=np.float32)
