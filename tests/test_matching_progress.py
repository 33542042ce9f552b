"""Progress of `tmfast match`: throttled log lines when stderr is not a terminal
(checked with a fake clock), a rich bar with the rotation rate on a terminal."""

from __future__ import annotations

import io
import logging
import re
import sys

import pytest
from tmfast.cli import match as cli_match


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_log_progress_is_throttled_with_rate_and_time_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    report = cli_match._log_progress(30.0, clock=clock)
    caplog.set_level(logging.INFO, logger="tmfast.cli.match")
    total = 1000
    # 10 rotations per second of a run resumed at 100: one call every 0.5 s
    done = 100
    report(done, total)
    while done < total:
        clock.t += 0.5
        done = min(total, done + 5)
        report(done, total)
    lines = [r.getMessage() for r in caplog.records if r.name == "tmfast.cli.match"]
    # 90 s of calls (181 of them): t = 0, 30, 60, 90 (last, also forced)
    assert len(lines) == 4, lines
    assert lines[0].startswith("matching: 100/1000 rotations (10.0%)")
    assert "?" in lines[0]  # no rate yet
    m = re.fullmatch(
        r"matching: (\d+)/1000 rotations \(([\d.]+)%\), ([\d.]+) rot/s, (\d+) s left",
        lines[1],
    )
    assert m is not None, lines[1]
    assert int(m[1]) == 400 and float(m[3]) == pytest.approx(10.0)  # resumed excluded
    assert int(m[4]) == 60
    assert lines[-1].startswith("matching: 1000/1000 rotations (100.0%)")


def test_non_tty_uses_logs_and_tty_a_rich_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    fake = io.StringIO()
    monkeypatch.setattr(sys, "stderr", fake)
    report, stop = cli_match._progress()
    assert report.__qualname__.startswith("_log_progress")
    stop()

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    report, stop = cli_match._progress()
    try:
        assert report.__qualname__.startswith("_progress")
        report(0, 40)
        report(40, 40)
    finally:
        stop()
    out = tty.getvalue()
    assert "40/40" in out and "rot/s" in out and "left" in out
    # under SLURM a terminal still gets log lines (job logs are files)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    report, stop = cli_match._progress()
    assert report.__qualname__.startswith("_log_progress")
    stop()
