"""Extraction histogram: its axes show the background tail, the cutoff and the picks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import norm
from tmfast.errors import ConfigError
from tmfast.extraction import plots
from tmfast.extraction.candidates import CandidateTable
from tmfast.extraction.cutoff import false_alarm_cutoff


def _table(scores: list[float], cutoff: float) -> CandidateTable:
    n = len(scores)
    return CandidateTable(
        tomo_id="t",
        positions_zyx=np.zeros((n, 3), np.int64),
        scores=np.asarray(scores, np.float32),
        angle_indices=np.zeros(n, np.int64),
        angles_zxz_rad=np.zeros((n, 3)),
        relion_angles_deg=np.zeros((n, 3)),
        cutoff=cutoff,
        search_std=0.05,
        search_space=177_000_000,
        voxel_size_a=20.0,
        tomo_shape_zyx=(48, 80, 80),
        particle_diameter_a=400.0,
    )


def _figure(table: CandidateTable, monkeypatch, tmp_path: Path) -> Any:
    got: dict[str, Any] = {}

    def keep(fig: Any, paths: Any, *, overwrite: bool = False) -> list[Path]:
        got["fig"] = fig
        return []

    monkeypatch.setattr(plots, "save_figure", keep)
    plots.plot_extraction(table, [tmp_path / "x.png"], n_bins=20)
    return got["fig"]


@pytest.mark.parametrize(
    ("scores", "cutoff"),
    [([0.62, 0.63, 0.63, 0.64, 0.66, 0.62], None), ([], 0.99)],
)
def test_background_tail_cutoff_and_picks_are_in_view(
    monkeypatch, tmp_path, scores, cutoff
) -> None:
    auto = false_alarm_cutoff(0.05, 177_000_000, n_false_positives=1.0)
    cut = auto if cutoff is None else cutoff
    fig = _figure(_table(scores, cut), monkeypatch, tmp_path)
    ax = fig.axes[0]
    x0, x1 = ax.get_xlim()
    y0, _ = ax.get_ylim()
    assert x0 < cut < x1 and all(x0 < s < x1 for s in scores)
    bg = next(ln for ln in ax.get_lines() if "background" in str(ln.get_label()))
    x, y = (np.asarray(v, float) for v in bg.get_data())
    # The curve is drawn (within the axes) from well below the tail end to where
    # fewer than one background sample per bin is expected.
    tail = 0.05 * math.sqrt(2) * float(norm.isf(1 / 177_000_000) / math.sqrt(2))
    assert x.min() <= tail - 2.5 * 0.05 and x.max() > tail
    assert y.min() >= y0 and y.min() < 1 and y.max() > 1e4
    # expected counts per bin: N * bin width * pdf
    bw = (x1 - x0) / 20 / 1.0
    i = len(x) // 3
    want = 177_000_000 * norm.pdf(x[i], scale=0.05)
    assert y[i] / want == pytest.approx(bw, rel=0.05)


def test_plot_bins_below_one_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="n_bins=0 must be at least 1"):
        plots.plot_extraction(_table([0.5], 0.3), [tmp_path / "x.png"], n_bins=0)
    assert not (tmp_path / "x.png").exists()
