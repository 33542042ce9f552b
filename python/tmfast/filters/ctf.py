"""Contrast transfer function of the microscope (pytom-match-pick's model).

    lambda  relativistic electron wavelength (Å) at the acceleration voltage
    chi(k)  = pi * lambda * df * k^2 - 0.5 * pi * Cs * lambda^3 * k^4
    CTF(k)  = -sin(chi + arctan(A / sqrt(1 - A^2)) + phase_shift)

with ``k`` in 1/Å, defocus ``df`` in Å (underfocus positive), ``Cs`` in Å and ``A`` the
amplitude-contrast fraction. Envelopes and astigmatism are not modelled (as in pytom).
Two variants serve template matching: ``phase_flip=True`` returns ``|CTF|`` (for
tomograms reconstructed from phase-flipped tilt series), and ``match_contrast=True``
multiplies the CTF by -1 for underfocus, so a template with the tomogram's contrast
(dark density on a dark-density tomogram) keeps that contrast after weighting.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from tmfast.errors import ConfigError

__all__ = ["ctf_1d", "electron_wavelength_a"]

_H = 6.62607015e-34  # Planck constant, J s
_M0 = 9.1093837015e-31  # electron rest mass, kg
_E = 1.602176634e-19  # elementary charge, C
_C = 299792458.0  # speed of light, m/s


def electron_wavelength_a(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å.

    Parameters
    ----------
    voltage_kv
        Acceleration voltage in kV.

    Returns
    -------
    float
        ``h / sqrt(2 m0 e V (1 + e V / (2 m0 c^2)))`` in Å (0.01969 Å at 300 kV).

    Raises
    ------
    ConfigError
        If the voltage is not positive.
    """
    v = float(voltage_kv)
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"voltage {voltage_kv!r} kV must be positive (e.g. 300)")
    ev = _E * v * 1e3
    return _H / math.sqrt(2.0 * _M0 * ev * (1.0 + ev / (2.0 * _M0 * _C * _C))) * 1e10


def ctf_1d(
    k_inv_a: npt.ArrayLike,
    *,
    defocus_um: npt.ArrayLike,
    voltage_kv: float,
    spherical_aberration_mm: float,
    amplitude_contrast: float,
    phase_shift_deg: float = 0.0,
    phase_flip: bool = False,
    match_contrast: bool = False,
) -> npt.NDArray[np.floating]:
    """Evaluate the CTF at spatial frequencies ``k_inv_a`` (1/Å).

    Parameters
    ----------
    k_inv_a
        Spatial frequency magnitudes in 1/Å, any shape. float32 input is evaluated in
        float32, anything else in float64.
    defocus_um
        Defocus in µm, underfocus positive; a scalar or an array broadcastable
        against ``k_inv_a`` (one defocus per row, for instance).
    voltage_kv
        Acceleration voltage in kV.
    spherical_aberration_mm
        Spherical aberration in mm.
    amplitude_contrast
        Amplitude contrast fraction in ``[0, 1)``.
    phase_shift_deg
        Additional phase shift (phase plate) in degrees.
    phase_flip
        Return ``|CTF|`` (phase-flipped tomogram model).
    match_contrast
        Multiply by -1 where the defocus is positive (underfocus), pytom-match-pick's
        convention for template weights. Ignored with ``phase_flip``.

    Returns
    -------
    numpy.ndarray
        The CTF, broadcast shape of ``k_inv_a`` and ``defocus_um``.

    Raises
    ------
    ConfigError
        If the voltage is not positive or the amplitude contrast is outside [0, 1).
    """
    k_raw = np.asarray(k_inv_a)
    dtype = np.float32 if k_raw.dtype == np.float32 else np.float64
    k: npt.NDArray[np.floating] = k_raw.astype(dtype, copy=False)
    a = float(amplitude_contrast)
    if not 0.0 <= a < 1.0:
        raise ConfigError(
            f"amplitude contrast {amplitude_contrast!r} must be a fraction in [0, 1)"
        )
    lam = electron_wavelength_a(voltage_kv)
    df_a: npt.NDArray[np.floating] = np.multiply(
        np.asarray(defocus_um, dtype=np.float64).astype(dtype), 1e4
    )
    cs_a = float(spherical_aberration_mm) * 1e7
    k2 = k * k
    # python floats are weak scalars (NEP 50): float32 input stays float32
    chi = k2 * (math.pi * lam * df_a - 0.5 * math.pi * cs_a * lam**3 * k2)
    offset = math.atan(a / math.sqrt(1.0 - a * a)) + math.radians(phase_shift_deg)
    ctf = -np.sin(chi + offset)
    if phase_flip:
        return np.abs(ctf)
    if match_contrast:
        ctf = np.where(df_a > 0, -ctf, ctf)
    return ctf
