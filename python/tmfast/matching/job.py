"""The job record written next to the score maps as ``{tomo_id}_job.json``.

It holds everything extraction needs (paths, shapes, the angle set, the search
statistics) and everything needed to rerun or resume the match. ``tmfast extract``
reads it; it also reads pytom-match-pick's own job JSON (see
:mod:`tmfast.extraction`).

Shapes are ``(z, y, x)`` voxel counts; origins are 0-based ``(z, y, x)`` voxel indices
into the full tomogram.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from tmfast._fileio import atomic_path, read_json
from tmfast.errors import FormatError
from tmfast.metadata import TiltSeriesMetadata

__all__ = ["ARRAY_SOURCE", "JOB_FORMAT_VERSION", "MatchJob", "SearchStats"]

#: What a job records instead of a file path for an input given as an array.
ARRAY_SOURCE = "<array>"

JOB_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchStats:
    """Background statistics of the score maps, the input to the automatic cutoff.

    Attributes
    ----------
    search_space
        Number of (voxel, rotation) pairs searched: voxels inside the tomogram mask and
        the search region times the number of rotations.
    variance
        Mean of score² over those pairs (the background is assumed zero-mean).
    std
        ``sqrt(variance)``.
    mean
        Mean score over those pairs (informative; the cutoff assumes zero).
    """

    search_space: int
    variance: float
    std: float
    mean: float = 0.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class MatchJob:
    """A template-matching job and, once run, its results' locations and statistics."""

    tomo_id: str
    tomogram: str
    template: str
    mask: str
    output_dir: str
    tomo_shape_zyx: tuple[int, int, int]
    search_origin_zyx: tuple[int, int, int]
    search_shape_zyx: tuple[int, int, int]
    voxel_size_a: float
    #: Angular step in degrees, or the path of a ZXZ-radian angle file.
    angular_search: float | str
    rotational_symmetry: int = 1
    n_rotations: int
    #: SHA-256 of the float64 little-endian angle array, to detect a changed angle set.
    angle_set_sha256: str
    mask_is_spherical: bool = True
    particle_diameter_a: float | None = None
    low_pass_a: float | None = None
    high_pass_a: float | None = None
    spectral_whitening: bool = False
    per_tilt_weighting: bool = False
    tomogram_ctf_model: str | None = None
    random_phase_correction: bool = False
    rng_seed: int | None = None
    tomogram_mask: str | None = None
    metadata: TiltSeriesMetadata | None = None
    volume_split_xyz: tuple[int, int, int] = (1, 1, 1)
    #: ``(min, max)`` tilt of the binary wedge in degrees (None: no wedge or metadata).
    tilt_range_deg: tuple[float, float] | None = None
    #: Radial whitening profile used (Nyquist-spaced samples), when whitening.
    whitening_profile: tuple[float, ...] | None = None
    #: Mean of the noise-template maxima subtracted back in (random-phase correction).
    noise_mean: float | None = None
    #: Rotation-tiles (rotations x sub-volumes searched) merged from a checkpoint
    #: when the run was resumed; with ``-s`` this can exceed ``n_rotations``.
    resumed_rotations: int = 0
    backend: str = "cpu"
    half_precision: bool = False
    #: Defocus-gradient handedness the search applied (0: none; see
    #: tmfast.filters.defocus_gradient).
    defocus_handedness: int = 0
    #: Filled in when matching finishes.
    stats: SearchStats | None = None
    scores_file: str | None = None
    angles_file: str | None = None
    tmfast_version: str = ""
    job_format_version: int = JOB_FORMAT_VERSION

    def with_updates(self, **changes: Any) -> MatchJob:
        """Return a copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, TiltSeriesMetadata):
                v = v.to_dict()
            elif isinstance(v, SearchStats):
                v = dataclasses.asdict(v)
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "job") -> MatchJob:
        """Build a job from :meth:`to_dict` output.

        Raises
        ------
        FormatError
            If keys are missing or unknown, or the format version is newer.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise FormatError(f"{source}: unknown job keys {sorted(unknown)}")
        version = int(data.get("job_format_version", JOB_FORMAT_VERSION))
        if version > JOB_FORMAT_VERSION:
            raise FormatError(
                f"{source}: job format {version} is newer than this tmfast reads "
                f"({JOB_FORMAT_VERSION}); upgrade tmfast"
            )
        d = dict(data)
        for key in (
            "tomo_shape_zyx",
            "search_origin_zyx",
            "search_shape_zyx",
            "volume_split_xyz",
        ):
            if key in d and d[key] is not None:
                d[key] = tuple(int(v) for v in d[key])
        for key in ("tilt_range_deg", "whitening_profile"):
            if d.get(key) is not None:
                d[key] = tuple(float(v) for v in d[key])
        if d.get("metadata") is not None:
            d["metadata"] = TiltSeriesMetadata.from_dict(d["metadata"])
        if d.get("stats") is not None:
            d["stats"] = SearchStats(**d["stats"])
        try:
            return cls(**d)
        except TypeError as exc:
            raise FormatError(f"{source}: incomplete job file ({exc})") from None

    def write(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the job as JSON atomically and return its path."""
        with atomic_path(path, overwrite=overwrite) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return Path(path)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> MatchJob:
        """Read a job written by :meth:`write`.

        Raises
        ------
        FormatError
            If the file is missing, not JSON, or not a tmfast job.
        """
        p = Path(path)
        data = read_json(p, what="job file", fix="check the path")
        if not isinstance(data, dict):
            raise FormatError(f"{p}: not a tmfast job file")
        return cls.from_dict(data, source=str(p))
