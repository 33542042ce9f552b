"""Template matching: configuration, engine, job record, statistics.

Entry points: :func:`match_template` (in memory) and :func:`run_match` (writes the
maps and the job file), both driven by a :class:`MatchConfig`.
"""

from __future__ import annotations

from tmfast.matching.config import MatchConfig
from tmfast.matching.engine import MatchResult, match_template, run_match
from tmfast.matching.job import MatchJob, SearchStats

__all__ = [
    "MatchConfig",
    "MatchJob",
    "MatchResult",
    "SearchStats",
    "match_template",
    "run_match",
]
