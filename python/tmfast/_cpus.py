"""How many CPUs this process may use."""

from __future__ import annotations

import os

__all__ = ["usable_cpu_count"]


def usable_cpu_count() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one (a SLURM
    task with ``--cpus-per-task``, ``taskset``), else ``os.cpu_count()``.

    ``os.cpu_count()`` counts the whole node, so FFT threads sized by it
    oversubscribe a task given a few cores of a large node.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1
