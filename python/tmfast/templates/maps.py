"""Templates from density maps: exact Fourier resampling, low-pass, box, flips.

Resampling is band-limited (trigonometric) interpolation: the map is low-passed
isotropically in 3D Fourier space on its own grid, then evaluated at the output
voxel centres with the periodic-sinc (Dirichlet) kernel, one axis at a time as a
real matrix product. For voxel-size ratios that divide the box this is identical to
Fourier cropping; for any other ratio it is the same band-limited function sampled
at the new positions, so the output voxel size is exactly the one asked for (no
rounding of the box to an integer ratio) and no interpolation blur is added.
Voxel values (not sums) are preserved: a constant map stays the same constant.

Geometry follows ``docs/conventions.md``: the centre of a box of ``N`` voxels is
index ``N // 2``; input centre ``N_in // 2`` maps onto output centre ``N_out // 2``.

Low-pass filter: raised cosine in spatial frequency ``f`` (1/Å) that is 1 up to
``f_c * (1 - edge)``, falls as ``0.5 * (1 + cos(pi * (f - f_lo) / (f_c - f_lo)))``
and is exactly 0 at and beyond ``f_c = 1 / resolution``. The default resolution is
the output Nyquist, ``2 * output_voxel_size_a``, so nothing is kept on or beyond
the output Nyquist plane and no aliasing can occur.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import numpy.typing as npt
import scipy.fft

from tmfast.errors import ConfigError
from tmfast.types import Volume

__all__ = [
    "DEFAULT_LOWPASS_EDGE",
    "MAX_DOWNSAMPLING",
    "MAX_MAP_ASPECT",
    "MIN_TEMPLATE_BOX",
    "center_of_mass_zyx",
    "check_map_values",
    "density_outside_box",
    "fourier_resample",
    "lowpass_weights_rfft",
    "pad_to_cube",
    "template_from_map",
]

logger = logging.getLogger(__name__)

#: Width of the raised-cosine low-pass edge as a fraction of the cutoff frequency.
DEFAULT_LOWPASS_EDGE = 0.1


def _check_voxel(name: str, value: float | None) -> float:
    if value is None or not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"{name}={value!r}: voxel size must be a positive number of Å; "
            "pass --input-voxel-size-angstrom when the map header holds none"
            if name.startswith("input")
            else f"{name}={value!r}: voxel size must be a positive number of Å"
        )
    return float(value)


def lowpass_weights_rfft(
    shape_zyx: tuple[int, int, int],
    voxel_size_a: float,
    resolution_a: float,
    *,
    edge_fraction: float = DEFAULT_LOWPASS_EDGE,
) -> npt.NDArray[np.float64]:
    """Isotropic raised-cosine low-pass weights in ``scipy.fft.rfftn`` layout.

    Parameters
    ----------
    shape_zyx
        Real-space shape of the volume the weights apply to.
    voxel_size_a
        Voxel size in Å of that volume.
    resolution_a
        Cutoff resolution in Å; the weight is 0 at and beyond ``1 / resolution_a``.
    edge_fraction
        Width of the cosine edge as a fraction of the cutoff frequency (0 = hard).

    Returns
    -------
    numpy.ndarray
        float64 weights of shape ``(nz, ny, nx // 2 + 1)``, not fft-shifted.

    Raises
    ------
    ConfigError
        If the resolution or edge fraction is out of range.
    """
    if not (resolution_a > 0 and math.isfinite(resolution_a)):
        raise ConfigError(f"low-pass resolution {resolution_a!r} Å: must be > 0")
    if not 0 <= edge_fraction < 1:
        raise ConfigError(
            f"low-pass edge fraction {edge_fraction!r}: must be in [0, 1)"
        )
    nz, ny, nx = shape_zyx
    fz = scipy.fft.fftfreq(nz, d=voxel_size_a)[:, None, None]
    fy = scipy.fft.fftfreq(ny, d=voxel_size_a)[None, :, None]
    fx = scipy.fft.rfftfreq(nx, d=voxel_size_a)[None, None, :]
    f = np.sqrt(fz * fz + fy * fy + fx * fx)
    f_c = 1.0 / resolution_a
    f_lo = f_c * (1.0 - edge_fraction)
    w = np.where(f < f_c, 1.0, 0.0)
    if edge_fraction > 0:
        band = (f > f_lo) & (f < f_c)
        w[band] = 0.5 * (1.0 + np.cos(np.pi * (f[band] - f_lo) / (f_c - f_lo)))
    return w


def _interp_matrix(
    n_in: int, positions: npt.NDArray[np.float64], cutoff_cycles: float
) -> npt.NDArray[np.float64]:
    """Periodic band-limited interpolation matrix ``(len(positions), n_in)``.

    ``out[m] = sum_n A[m, n] * in[n]`` evaluates the trigonometric polynomial
    through ``in`` (period ``n_in``) at ``positions`` (input voxel units), keeping
    only frequencies ``k / n_in <= cutoff_cycles`` (cycles per input voxel). The
    Nyquist term of an even ``n_in`` enters as a cosine (half of it on +N/2 and
    half on -N/2), so the matrix is real and is the identity on the grid.
    """
    k = np.arange(n_in // 2 + 1, dtype=np.float64)
    c = np.full(k.shape, 2.0)
    c[0] = 1.0
    if n_in % 2 == 0:
        c[-1] = 1.0
    c[k / n_in > cutoff_cycles * (1 + 1e-9)] = 0.0
    keep = c > 0
    k, c = k[keep], c[keep] / n_in
    d = positions[:, None] - np.arange(n_in, dtype=np.float64)[None, :]
    phase = (2.0 * np.pi / n_in) * d[:, :, None] * k[None, None, :]
    out: npt.NDArray[np.float64] = np.cos(phase) @ c
    return out


def pad_to_cube(volume: npt.NDArray[np.floating], *, value: float = 0.0) -> Volume:
    """Pad a volume to a cube with ``value``, keeping index ``N // 2`` centred.

    Parameters
    ----------
    volume
        ``(z, y, x)`` array.
    value
        Fill value.

    Returns
    -------
    numpy.ndarray
        float32 cube of side ``max(volume.shape)``.
    """
    n = max(volume.shape)
    pads = [(n // 2 - s // 2, n - s - (n // 2 - s // 2)) for s in volume.shape]
    return np.pad(np.asarray(volume, dtype=np.float32), pads, constant_values=value)


def center_of_mass_zyx(volume: npt.NDArray[np.floating]) -> tuple[float, float, float]:
    """Centre of mass of the positive density above the median, in voxels (z, y, x).

    Parameters
    ----------
    volume
        ``(z, y, x)`` map; density is taken as ``max(v - median(v), 0)``.

    Returns
    -------
    tuple of float
        ``(z, y, x)`` centre of mass in voxel index units.

    Raises
    ------
    ConfigError
        If the map has no density above its median (e.g. a constant map).
    """
    v = np.asarray(volume, dtype=np.float64)
    w = np.clip(v - np.median(v), 0.0, None)
    total = w.sum()
    if total <= 0:
        raise ConfigError("--center: the map has no density above its median")
    coms = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        coms.append(float((w.sum(axis=other) * np.arange(v.shape[axis])).sum() / total))
    return coms[0], coms[1], coms[2]


def fourier_resample(
    volume: npt.NDArray[np.floating],
    input_voxel_size_a: float,
    output_voxel_size_a: float,
    *,
    box_size: int | None = None,
    lowpass_resolution_a: float | None = None,
    lowpass_edge: float = DEFAULT_LOWPASS_EDGE,
    center_zyx_px: tuple[float, float, float] | None = None,
    mirror: bool = False,
    allow_upsampling: bool = False,
) -> Volume:
    """Resample a cubic or non-cubic map to a new voxel size, band-limited and exact.

    Parameters
    ----------
    volume
        ``(z, y, x)`` map. Space outside it is taken as 0.
    input_voxel_size_a, output_voxel_size_a
        Voxel sizes in Å.
    box_size
        Output cube side in voxels; default ``round(max(shape) * in / out)``.
    lowpass_resolution_a
        Low-pass cutoff in Å (weight 0 beyond ``1 / resolution``); default and
        minimum: ``2 * max(input, output voxel size)`` (the coarser Nyquist).
    lowpass_edge
        Raised-cosine edge width as a fraction of the cutoff frequency.
    center_zyx_px
        Input position (voxels, ``(z, y, x)``, may be fractional) placed at the
        output box centre; default the input box centre ``shape // 2``.
    mirror
        Mirror along z about the box centre (inverts the handedness).
    allow_upsampling
        Permit ``output_voxel_size_a < input_voxel_size_a``.

    Returns
    -------
    numpy.ndarray
        float32 cube ``(box, box, box)``.

    Raises
    ------
    ConfigError
        On a non-positive voxel size or box, or upsampling without permission.
    """
    a_in = _check_voxel("input_voxel_size_a", input_voxel_size_a)
    a_out = _check_voxel("output_voxel_size_a", output_voxel_size_a)
    if a_out < a_in * (1 - 1e-6) and not allow_upsampling:
        raise ConfigError(
            f"output voxel size {a_out:.6g} Å is smaller than the input's "
            f"{a_in:.6g} Å: "
            "templates are only downsampled; pass --allow-upsampling to upsample"
        )
    vol = np.asarray(volume, dtype=np.float64)
    if vol.ndim != 3 or min(vol.shape) < 1:
        raise ConfigError(f"map shape {vol.shape}: need a non-empty 3D volume")
    ratio = a_out / a_in
    if box_size is None:
        box_size = max(1, round(max(vol.shape) / ratio))
    if box_size < 1:
        raise ConfigError(f"box size {box_size}: must be a positive number of voxels")
    if center_zyx_px is None:
        center_zyx_px = tuple(float(s // 2) for s in vol.shape)  # type: ignore[assignment]
    assert center_zyx_px is not None
    nyq_res = 2.0 * max(a_in, a_out)
    if lowpass_resolution_a is None:
        res = nyq_res
    elif lowpass_resolution_a < nyq_res * (1 - 1e-9):
        warnings.warn(
            f"low-pass {lowpass_resolution_a} Å is finer than Nyquist {nyq_res} Å; "
            f"using {nyq_res} Å",
            RuntimeWarning,
            stacklevel=2,
        )
        res = nyq_res
    else:
        res = float(lowpass_resolution_a)

    # Zero-pad so the output field of view (and the filter's ringing) never wraps.
    offsets = np.arange(box_size, dtype=np.float64) - box_size // 2
    margin = 2 * math.ceil(2 * ratio) + 2
    pads = []
    for axis in range(3):
        n = vol.shape[axis]
        c = center_zyx_px[axis]
        lo = c + offsets.min() * ratio
        hi = c + offsets.max() * ratio
        before = max(0, math.ceil(-lo) + margin)
        after = max(0, math.ceil(hi - (n - 1)) + margin)
        pads.append((before, after))
    if any(p != (0, 0) for p in pads):
        vol = np.pad(vol, pads)
    center = [center_zyx_px[a] + pads[a][0] for a in range(3)]

    spec = scipy.fft.rfftn(vol)
    padded_zyx = (vol.shape[0], vol.shape[1], vol.shape[2])
    spec *= lowpass_weights_rfft(padded_zyx, a_in, res, edge_fraction=lowpass_edge)
    vol = scipy.fft.irfftn(spec, s=vol.shape)
    del spec

    cutoff_cycles = min(0.5, 0.5 / ratio)  # cycles per input voxel
    mats = []
    for axis in range(3):
        sign = -1.0 if (mirror and axis == 0) else 1.0
        pos = center[axis] + sign * offsets * ratio
        mats.append(_interp_matrix(vol.shape[axis], pos, cutoff_cycles))
    nz, ny, nx = vol.shape
    t = (mats[0] @ vol.reshape(nz, ny * nx)).reshape(box_size, ny, nx)
    t = np.matmul(mats[1], t)
    t = t @ mats[2].T
    return np.ascontiguousarray(t, dtype=np.float32)


#: Smallest template box in voxels (smaller is almost always a wrong voxel size).
MIN_TEMPLATE_BOX = 8
#: Downsampling factor above which the input voxel size is questioned.
MAX_DOWNSAMPLING = 8.0
#: Largest ratio of a map's longest to its shortest axis (padding it to a cube
#: multiplies its size by up to this squared).
MAX_MAP_ASPECT = 4.0


def density_outside_box(
    volume: npt.NDArray[np.floating],
    box_input_px: float,
    *,
    center_zyx_px: tuple[float, float, float] | None = None,
    peak_fraction: float = 0.1,
) -> tuple[float, float]:
    """Fraction of a map's particle density outside a centred cubic box.

    The particle is the set of voxels whose density above the map median
    exceeds ``peak_fraction`` of the peak; each counts with that excess density.

    Parameters
    ----------
    volume
        ``(z, y, x)`` map.
    box_input_px
        Side of the box in input voxels (output box x output/input voxel size).
    center_zyx_px
        Box centre in input voxels; default ``shape // 2``.
    peak_fraction
        Threshold as a fraction of the peak above the median.

    Returns
    -------
    (fraction, extent_px)
        Fraction of the particle density outside the box (0 to 1), and the side in
        input voxels of the smallest such box around the centre holding it all.
    """
    vol = np.asarray(volume, dtype=np.float64)
    w = vol - float(np.median(vol))
    peak = float(w.max())
    if peak <= 0:
        return 0.0, 0.0
    w = np.where(w > peak_fraction * peak, w, 0.0)
    c = (
        tuple(float(n // 2) for n in vol.shape)
        if center_zyx_px is None
        else center_zyx_px
    )
    half = box_input_px / 2.0
    dist = np.zeros(vol.shape)
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = vol.shape[axis]
        d = np.abs(np.arange(vol.shape[axis], dtype=np.float64) - c[axis])
        dist = np.maximum(dist, d.reshape(shape))
    total = float(w.sum())
    outside = float(w[dist > half].sum())
    extent = 2.0 * float(dist[w > 0].max())
    return outside / total, extent


def check_map_values(volume: npt.NDArray[np.generic], subject: str = "map") -> None:
    """Refuse a map with NaN or infinite voxels, or with one value everywhere.

    Either gave a template of NaN or of zeros, written without a word, which then
    matched nothing.

    Parameters
    ----------
    volume
        The map, any shape.
    subject
        What to name in the message (the file, or ``"map"``).

    Raises
    ------
    ConfigError
        ``"<subject>: N of M voxels are NaN or infinite; ..."`` or
        ``"<subject>: every voxel is V; ..."``.
    """
    v = np.asarray(volume)
    if v.size == 0:
        raise ConfigError(f"{subject}: the map is empty; give a 3-D density map")
    if v.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(v)))
        if bad:
            raise ConfigError(
                f"{subject}: {bad} of {v.size} voxels are NaN or infinite; fix or "
                "replace the map (e.g. set them to the background value)"
            )
    lo, hi = v.min(), v.max()
    if lo == hi:
        raise ConfigError(
            f"{subject}: every voxel is {float(lo):g}; the map holds no density "
            "(an empty or failed reconstruction?): give the particle's map"
        )


def template_from_map(
    volume: npt.NDArray[np.floating],
    input_voxel_size_a: float | None,
    output_voxel_size_a: float,
    *,
    box_size: int | None = None,
    lowpass_resolution_a: float | None = None,
    lowpass_edge: float = DEFAULT_LOWPASS_EDGE,
    invert: bool = False,
    mirror: bool = False,
    center: bool = False,
    allow_upsampling: bool = False,
    input_voxel_source: str = "",
) -> Volume:
    """Make a matching template from a density map.

    Non-cubic maps are zero-padded to a cube first (with a ``RuntimeWarning``).
    Then the map is low-passed and resampled (:func:`fourier_resample`), optionally
    centred on its centre of mass (:func:`center_of_mass_zyx`, sub-voxel exact),
    mirrored along z and inverted (multiplied by -1).

    Parameters
    ----------
    volume
        ``(z, y, x)`` map.
    input_voxel_size_a
        Voxel size of the map in Å (``None`` or 0 is an error).
    output_voxel_size_a
        Template voxel size in Å (usually the tomogram's).
    box_size
        Output cube side; default the map's extent at the new voxel size.
    lowpass_resolution_a
        Low-pass cutoff in Å; default the output Nyquist ``2 * output_voxel_size_a``.
    lowpass_edge
        Raised-cosine edge width as a fraction of the cutoff frequency.
    invert
        Multiply by -1 (dark particles in the tomogram, bright map).
    mirror
        Mirror along z (flip handedness).
    center
        Put the centre of mass at the box centre ``N // 2``.
    allow_upsampling
        Permit an output voxel smaller than the input voxel.
    input_voxel_source
        Where ``input_voxel_size_a`` came from (e.g. ``"header"``), for messages.

    Returns
    -------
    numpy.ndarray
        float32 cube ``(box, box, box)``.

    Raises
    ------
    ConfigError
        Missing or non-positive voxel size, upsampling without permission, a box
        below :data:`MIN_TEMPLATE_BOX` voxels (usually a wrong input voxel size), a
        map with an axis under :data:`MIN_TEMPLATE_BOX` voxels or longer than
        :data:`MAX_MAP_ASPECT` times another (not a particle map), NaN or
        infinite voxels, or one value everywhere (:func:`check_map_values`).

    Warns
    -----
    RuntimeWarning
        Downsampling by more than :data:`MAX_DOWNSAMPLING` without ``box_size``
        (the input voxel size may be wrong), and a ``box_size`` that leaves out
        more than 1 % of the map's density (:func:`density_outside_box`).
    """
    a_in = _check_voxel("input_voxel_size_a", input_voxel_size_a)
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3:
        raise ConfigError(f"map shape {vol.shape}: need a 3D volume")
    check_map_values(vol)
    if min(vol.shape) < MIN_TEMPLATE_BOX or max(vol.shape) > (
        MAX_MAP_ASPECT * min(vol.shape)
    ):
        # padded to a cube, a (1, 1023, 20) motive list became 1023^3 voxels and
        # the process was killed for memory
        raise ConfigError(
            f"map shape {vol.shape} (z, y, x) is not a particle map: an axis under "
            f"{MIN_TEMPLATE_BOX} voxels or more than {MAX_MAP_ASPECT:g}x another "
            "(a 2-D image, an image stack, a motive list or a whole tomogram?); "
            "give the 3-D density map of the particle"
        )
    if len(set(vol.shape)) != 1:
        warnings.warn(
            f"map shape {vol.shape} (z, y, x) is not cubic; zero-padded to a cube",
            RuntimeWarning,
            stacklevel=2,
        )
        vol = pad_to_cube(vol)
    com = center_of_mass_zyx(vol) if center else None
    if com is not None:
        logger.info("centre of mass (z, y, x) = %.2f %.2f %.2f voxels", *com)
    a_out = _check_voxel("output_voxel_size_a", output_voxel_size_a)
    ratio = a_out / a_in
    src = f" ({input_voxel_source})" if input_voxel_source else ""
    if box_size is None:
        box = max(1, round(vol.shape[0] / ratio))
        if box < MIN_TEMPLATE_BOX:
            raise ConfigError(
                f"input voxel {a_in:g} Å{src} gives a {box}-voxel template at "
                f"{a_out:g} Å: the{' header' if src else ''} voxel size looks "
                "wrong; pass --input-voxel-size-angstrom (or, for a particle this "
                f"small, --box-size {MIN_TEMPLATE_BOX} or more)"
            )
        if ratio > MAX_DOWNSAMPLING:
            warnings.warn(
                f"downsampling {ratio:.1f}x (input voxel {a_in:g} Å{src} to "
                f"{a_out:g} Å) gives a {box}-voxel template: check the input voxel "
                "size (--input-voxel-size-angstrom); pass --box-size to silence this",
                RuntimeWarning,
                stacklevel=2,
            )
    else:
        if box_size < MIN_TEMPLATE_BOX:
            raise ConfigError(
                f"--box-size {box_size}: a template needs at least "
                f"{MIN_TEMPLATE_BOX} voxels; use a larger box"
            )
        frac, needed = density_outside_box(vol, box_size * ratio, center_zyx_px=com)
        if frac > 0.01:
            warnings.warn(
                f"--box-size {box_size} ({box_size * a_out:g} Å) crops the particle: "
                f"{100 * frac:.0f}% of the map's density (voxels above 10% of its "
                f"peak) lies outside the box; use --box-size "
                f"{math.ceil(needed / ratio) + 1} or more to keep it",
                RuntimeWarning,
                stacklevel=2,
            )
    out = fourier_resample(
        vol,
        a_in,
        output_voxel_size_a,
        box_size=box_size,
        lowpass_resolution_a=lowpass_resolution_a,
        lowpass_edge=lowpass_edge,
        center_zyx_px=com,
        mirror=mirror,
        allow_upsampling=allow_upsampling,
    )
    if invert:
        np.negative(out, out=out)
    return out
