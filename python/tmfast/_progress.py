"""Progress reporting for long work.

Library code takes ``progress: ProgressCallback | None`` and calls it as
``progress(done, total)``. The CLI supplies a rich bar on a terminal or a throttled
logger under SLURM (see :func:`throttled_log_progress`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["ProgressCallback", "throttled_log_progress"]

ProgressCallback = Callable[[int, int], None]


def throttled_log_progress(
    logger: logging.Logger, label: str, *, interval_s: float = 30.0
) -> ProgressCallback:
    """Return a callback logging ``label: done/total (pct, ETA)``.

    At most one line per ``interval_s`` (plus the first and the last). The ETA is
    the rate of this run: work already done when the first call comes (a job
    resumed from its checkpoint) does not count, and it is ``?`` until this run
    has done something.
    """
    start = time.monotonic()
    last = [-float("inf")]
    first: list[int] = []  # ``done`` at the first call

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if not first:
            first.append(done)
        if done < total and now - last[0] < interval_s:
            return
        last[0] = now
        elapsed = now - start
        pct = 100.0 * done / total if total else 100.0
        done_here = done - first[0]
        # no rate yet: say so rather than "ETA nan s" or a resumed job's 0 s
        eta = (
            f"{elapsed / done_here * (total - done):.0f} s"
            if done_here > 0
            else ("0 s" if done >= total else "?")
        )
        logger.info(
            "%s: %d/%d (%.1f%%, %.0f s elapsed, ETA %s)",
            label,
            done,
            total,
            pct,
            elapsed,
            eta,
        )

    return report
