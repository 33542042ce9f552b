"""Per-tilt-series acquisition metadata: what importers produce and matching takes.

RELION5 and AreTomo3 importers (:mod:`tmfast.batch`), the tilt/defocus/dose file
readers (:mod:`tmfast.io.tilts`) and the CLI flags all build a
:class:`TiltSeriesMetadata`; the matching engine builds its Fourier weights from it.
Units are carried in the names: degrees, micrometres (defocus, underfocus positive),
e⁻/Å² (accumulated dose before each tilt), kV, mm, Å.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from tmfast.errors import ConfigError

__all__ = ["TiltSeriesMetadata"]


def _floats(values: Sequence[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(v) for v in values)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TiltSeriesMetadata:
    """Acquisition parameters of one tilt series, one entry per tilt where per-tilt.

    Attributes
    ----------
    tilt_angles_deg
        Tilt angle of each image in degrees, in acquisition-independent stack order.
    defocus_um
        Defocus of each tilt in µm, underfocus positive; ``None`` for no CTF model.
    dose_e_per_a2
        Accumulated electron dose before each tilt, e⁻/Å²; ``None`` for no dose
        weighting.
    voltage_kv, spherical_aberration_mm, amplitude_contrast, phase_shift_deg
        Microscope parameters for the CTF (required when ``defocus_um`` is set).
    defocus_handedness
        0 (no defocus gradient), 1 or -1 (see pytom-match-pick's convention).
    tilt_series_pixel_size_a
        Pixel size of the tilt-series images in Å (RELION5
        ``rlnTomoTiltSeriesPixelSize``).
    binning
        Tomogram binning relative to the tilt series (RELION5
        ``rlnTomoTomogramBinning``).
    tomo_name
        Name of the tomogram in the source project (RELION5 ``rlnTomoName``).
    """

    tilt_angles_deg: tuple[float, ...]
    defocus_um: tuple[float, ...] | None = None
    dose_e_per_a2: tuple[float, ...] | None = None
    voltage_kv: float | None = None
    spherical_aberration_mm: float | None = None
    amplitude_contrast: float | None = None
    phase_shift_deg: float = 0.0
    defocus_handedness: int = 0
    tilt_series_pixel_size_a: float | None = None
    binning: float | None = None
    tomo_name: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "tilt_angles_deg", _floats(self.tilt_angles_deg))
        set_(self, "defocus_um", _floats(self.defocus_um))
        set_(self, "dose_e_per_a2", _floats(self.dose_e_per_a2))
        n = len(self.tilt_angles_deg)
        if n == 0:
            raise ConfigError("tilt series metadata: no tilt angles given")
        if any(not math.isfinite(a) or abs(a) > 90 for a in self.tilt_angles_deg):
            raise ConfigError(
                "tilt series metadata: tilt angles must be finite degrees in [-90, 90]"
            )
        for name in ("defocus_um", "dose_e_per_a2"):
            vals = getattr(self, name)
            if vals is not None and len(vals) != n:
                raise ConfigError(
                    f"tilt series metadata: {len(vals)} {name} values for {n} tilts; "
                    "give one value per tilt, in the same order as the tilt angles"
                )
        if self.defocus_um is not None:
            missing = [
                k
                for k in ("voltage_kv", "spherical_aberration_mm", "amplitude_contrast")
                if getattr(self, k) is None
            ]
            if missing:
                raise ConfigError(
                    "tilt series metadata: a CTF needs "
                    + ", ".join(missing)
                    + " (--voltage, --spherical-aberration, --amplitude-contrast)"
                )
            ac = self.amplitude_contrast
            assert ac is not None
            if not 0.0 <= ac < 1.0:
                raise ConfigError(
                    f"amplitude contrast {ac} must be a fraction in [0, 1)"
                )
        if self.defocus_handedness not in (-1, 0, 1):
            raise ConfigError(
                f"defocus handedness {self.defocus_handedness} must be -1, 0 or 1"
            )

    @property
    def n_tilts(self) -> int:
        """Number of tilts."""
        return len(self.tilt_angles_deg)

    @property
    def has_ctf(self) -> bool:
        """Whether per-tilt CTF parameters are present."""
        return self.defocus_um is not None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (lists for tuples)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TiltSeriesMetadata:
        """Inverse of :meth:`to_dict`; unknown keys are rejected."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"tilt series metadata: unknown keys {sorted(unknown)}")
        return cls(**data)
