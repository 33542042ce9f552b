"""Candidate extraction: particles from score/angle maps, STAR/IMOD output, plots.

:func:`extract_candidates` turns a match job (tmfast's or pytom-match-pick's) into a
:class:`CandidateTable`; :meth:`CandidateTable.to_star_blocks` gives RELION5 or
pytom-style STAR columns. Plots and the QC picture live in :mod:`.plots` and
:mod:`.qc` (matplotlib, imported lazily); the ROC estimate in :mod:`.roc`.
"""

from __future__ import annotations

from tmfast.extraction.candidates import (
    CandidateTable,
    candidates_from_maps,
    extract_candidates,
)
from tmfast.extraction.cutoff import false_alarm_cutoff

__all__ = [
    "CandidateTable",
    "candidates_from_maps",
    "extract_candidates",
    "false_alarm_cutoff",
]
