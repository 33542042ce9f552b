"""tmfast: fast template matching for cryo-electron tomography.

The public API is re-exported here and documented in ``docs/api.md``:

* matching: :func:`match_template` (in memory, returns a :class:`MatchResult`),
  :func:`run_match` (also writes the maps and the job file), :class:`MatchConfig`;
* extraction: :func:`candidates_from_maps` (in-memory maps),
  :func:`extract_candidates` (a job on disk), :class:`CandidateTable`;
* readers and writers: :func:`read_volume`, :func:`write_volume`, :func:`read_star`,
  :func:`write_star`, :func:`write_imod_points`, tilt/defocus/dose files, RELION5
  and AreTomo3 metadata;
* angle sets and rotation conventions: :func:`angle_set`, :func:`zxz_to_matrices`...;
* the errors every function raises (:class:`TmfastError` and subclasses).

Importing tmfast is light: it loads no GPU library (pycuda, pyvkfft, pyopencl), no
CLI library (typer, rich) and no plotting library. The heavier parts (the matching
engine needs scipy) are imported on first use of their names.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from tmfast.errors import (
    BackendUnavailableError,
    ConfigError,
    FormatError,
    GpuOutOfMemoryError,
    OutputExistsError,
    TmfastError,
)

try:
    __version__ = version("tmfast")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "uninstalled"

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Public name -> module that defines it; imported on first attribute access.
_LAZY: dict[str, str] = {
    # matching
    "MatchConfig": "tmfast.matching.config",
    "MatchInterrupted": "tmfast.matching.engine",
    "MatchJob": "tmfast.matching.job",
    "OutputWriteError": "tmfast.errors",
    "MatchResult": "tmfast.matching.engine",
    "SearchStats": "tmfast.matching.job",
    "match_template": "tmfast.matching.engine",
    "run_match": "tmfast.matching.engine",
    # extraction
    "CandidateTable": "tmfast.extraction.candidates",
    "candidates_from_maps": "tmfast.extraction.candidates",
    "extract_candidates": "tmfast.extraction.candidates",
    "false_alarm_cutoff": "tmfast.extraction.cutoff",
    # readers and writers
    "read_header": "tmfast.io.mrc",
    "read_volume": "tmfast.io.mrc",
    "write_volume": "tmfast.io.mrc",
    "read_star": "tmfast.io.star",
    "star_to_string": "tmfast.io.star",
    "write_star": "tmfast.io.star",
    "write_imod_points": "tmfast.io.imod",
    "read_defocus": "tmfast.io.tilts",
    "read_dose": "tmfast.io.tilts",
    "read_tilt_angles": "tmfast.io.tilts",
    "TiltSeriesMetadata": "tmfast.metadata",
    "read_relion5_metadata": "tmfast.batch.relion5",
    "read_aretomo3": "tmfast.batch.aretomo3",
    # angle sets and rotations
    "angle_set": "tmfast.geometry.angles",
    "angle_step_from_diameter": "tmfast.geometry.angles",
    "optimal_angle_set": "tmfast.geometry.angles",
    "pytom_angle_set": "tmfast.geometry.angles",
    "read_angle_file": "tmfast.geometry.angles",
    "matrices_to_zxz": "tmfast.geometry.rotations",
    "relion_deg_to_zxz": "tmfast.geometry.rotations",
    "zxz_to_matrices": "tmfast.geometry.rotations",
    "zxz_to_relion_deg": "tmfast.geometry.rotations",
    # templates and masks
    "sphere_mask": "tmfast.templates.masks",
    "template_from_map": "tmfast.templates.maps",
    # compute backends
    "available_backends": "tmfast.backends.registry",
}

__all__ = [
    "BackendUnavailableError",
    "CandidateTable",
    "ConfigError",
    "FormatError",
    "GpuOutOfMemoryError",
    "MatchConfig",
    "MatchInterrupted",
    "MatchJob",
    "MatchResult",
    "OutputExistsError",
    "OutputWriteError",
    "SearchStats",
    "TiltSeriesMetadata",
    "TmfastError",
    "__version__",
    "angle_set",
    "angle_step_from_diameter",
    "available_backends",
    "candidates_from_maps",
    "extract_candidates",
    "false_alarm_cutoff",
    "match_template",
    "matrices_to_zxz",
    "optimal_angle_set",
    "pytom_angle_set",
    "read_angle_file",
    "read_aretomo3",
    "read_defocus",
    "read_dose",
    "read_header",
    "read_relion5_metadata",
    "read_star",
    "read_tilt_angles",
    "read_volume",
    "relion_deg_to_zxz",
    "run_match",
    "sphere_mask",
    "star_to_string",
    "template_from_map",
    "write_imod_points",
    "write_star",
    "write_volume",
    "zxz_to_matrices",
    "zxz_to_relion_deg",
]

if TYPE_CHECKING:  # static checkers see the lazy names as ordinary imports
    from tmfast.backends.registry import available_backends
    from tmfast.batch.aretomo3 import read_aretomo3
    from tmfast.batch.relion5 import read_relion5_metadata
    from tmfast.errors import OutputWriteError
    from tmfast.extraction.candidates import (
        CandidateTable,
        candidates_from_maps,
        extract_candidates,
    )
    from tmfast.extraction.cutoff import false_alarm_cutoff
    from tmfast.geometry.angles import (
        angle_set,
        angle_step_from_diameter,
        optimal_angle_set,
        pytom_angle_set,
        read_angle_file,
    )
    from tmfast.geometry.rotations import (
        matrices_to_zxz,
        relion_deg_to_zxz,
        zxz_to_matrices,
        zxz_to_relion_deg,
    )
    from tmfast.io.imod import write_imod_points
    from tmfast.io.mrc import read_header, read_volume, write_volume
    from tmfast.io.star import read_star, star_to_string, write_star
    from tmfast.io.tilts import read_defocus, read_dose, read_tilt_angles
    from tmfast.matching.config import MatchConfig
    from tmfast.matching.engine import (
        MatchInterrupted,
        MatchResult,
        match_template,
        run_match,
    )
    from tmfast.matching.job import MatchJob, SearchStats
    from tmfast.metadata import TiltSeriesMetadata
    from tmfast.templates.maps import template_from_map
    from tmfast.templates.masks import sphere_mask


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tmfast' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    """List the public API next to the module's own attributes."""
    return sorted(set(globals()) | set(__all__))
