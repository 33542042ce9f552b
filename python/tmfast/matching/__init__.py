"""Template matching: configuration, engine, job record, statistics.

Entry points: :func:`match_template` (in memory) and :func:`run_match` (writes the
maps and the job file), both driven by a :class:`MatchConfig`. Names are imported on
first access (PEP 562), so ``import tmfast.matching.job`` stays light (no scipy).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "MatchConfig",
    "MatchJob",
    "MatchResult",
    "SearchStats",
    "match_template",
    "run_match",
]

_LAZY = {
    "MatchConfig": "tmfast.matching.config",
    "MatchJob": "tmfast.matching.job",
    "MatchResult": "tmfast.matching.engine",
    "SearchStats": "tmfast.matching.job",
    "match_template": "tmfast.matching.engine",
    "run_match": "tmfast.matching.engine",
}


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tmfast.matching' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
