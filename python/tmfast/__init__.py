"""tmfast: fast template matching for cryo-electron tomography.

The public API is re-exported here; see ``docs/api.md``. Importing tmfast loads no
GPU library and no CLI library.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tmfast")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "uninstalled"

logging.getLogger(__name__).addHandler(logging.NullHandler())

from tmfast.matching import MatchConfig, match_template, run_match  # noqa: E402

__all__ = ["MatchConfig", "__version__", "match_template", "run_match"]
