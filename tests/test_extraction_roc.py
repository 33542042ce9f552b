"""ROC estimate: bimodal fit on picks drawn from two known Gaussians."""

from __future__ import annotations

import numpy as np
import pytest
from tmfast.errors import ConfigError
from tmfast.extraction.roc import estimate_roc, plot_roc


def _synthetic_picks(
    seed: int,
    n_bg: int,
    sd_bg: float,
    n_noise_picks: int,
    n_true: int,
    mu_p: float,
    sd_p: float,
):
    rng = np.random.default_rng(seed)
    bg = rng.normal(0.0, sd_bg, n_bg)
    noise_picks = np.sort(bg)[-n_noise_picks:]
    true = rng.normal(mu_p, sd_p, n_true)
    scores = np.concatenate([noise_picks, true])
    labels = np.concatenate([np.zeros(n_noise_picks, bool), np.ones(n_true, bool)])
    return scores, labels, bg


@pytest.mark.parametrize("seed", [1, 2])
def test_recovers_count_and_threshold(seed: int) -> None:
    scores, labels, bg = _synthetic_picks(seed, 2_000_000, 0.05, 600, 300, 0.32, 0.03)
    res = estimate_roc(
        scores,
        n_background=bg.size,
        background_std=float(bg.std()),
        background_mean=float(bg.mean()),
        n_bins=30,
    )
    assert abs(res.n_true_estimate - 300) < 0.15 * 300  # seeds 3-10 give 266-293
    assert abs(res.particle_mean - 0.32) < 0.01

    # The chosen threshold is (nearly) as good as the best one measured on the
    # labelled sample itself.
    def true_quality(t: float) -> float:
        above = scores > t
        recall = (above & labels).sum() / labels.sum()
        fdr = (above & ~labels).sum() / max(above.sum(), 1)
        return float(recall * (1 - fdr))

    grid = np.linspace(scores.min(), scores.max(), 400)
    best_true = max(true_quality(t) for t in grid)
    assert true_quality(res.best_threshold) > best_true - 0.05
    assert 0.19 < res.best_threshold < 0.30


def test_plot_roc_writes_files(tmp_path) -> None:
    scores, _, bg = _synthetic_picks(3, 500_000, 0.05, 400, 200, 0.3, 0.03)
    res = estimate_roc(scores, n_background=bg.size, background_std=float(bg.std()))
    out = plot_roc(res, [tmp_path / "t_roc.svg", tmp_path / "t_roc.png"], title="t")
    assert all(p.stat().st_size > 1000 for p in out)
    assert (tmp_path / "t_roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_too_few_picks_is_config_error() -> None:
    with pytest.raises(ConfigError, match="only 5 picks"):
        estimate_roc(np.ones(5), n_background=100, background_std=0.1)


def test_forced_peak_pins_the_particle_mean() -> None:
    scores, _, bg = _synthetic_picks(4, 1_000_000, 0.05, 500, 250, 0.3, 0.03)
    _, edges = np.histogram(scores, bins=20)
    centres = 0.5 * (edges[1:] + edges[:-1])
    k = int(np.argmin(abs(centres - 0.3)))
    res = estimate_roc(
        scores,
        n_background=bg.size,
        background_std=float(bg.std()),
        n_bins=20,
        gaussian_peak=k,
        force_peak=True,
    )
    span = edges[-1] - edges[0]
    assert abs(res.particle_mean - centres[k]) <= 0.01 * span + 1e-12
    with pytest.raises(ConfigError, match="gaussian_peak=25"):
        estimate_roc(
            scores,
            n_background=bg.size,
            background_std=0.05,
            n_bins=20,
            gaussian_peak=25,
        )


@pytest.mark.parametrize("seed", [5, 6])
def test_particle_population_narrower_than_a_bin_is_counted(seed: int) -> None:
    """Regression: 6 of 30 picks in a spike narrower than a bin were counted as 2.

    The particle sigma (0.004) is a fifth of a bin; fitting densities at bin
    centres lets a spike between centres explain the counts with a small area.
    """
    n_true = 60
    scores, _, bg = _synthetic_picks(seed, 2_000_000, 0.05, 240, n_true, 0.4, 0.004)
    res = estimate_roc(
        scores,
        n_background=bg.size,
        background_std=float(bg.std()),
        background_mean=float(bg.mean()),
        n_bins=20,
    )
    assert res.particle_std < res.bin_width  # the case of the regression
    assert abs(res.n_true_estimate - n_true) < 0.15 * n_true
    assert abs(res.particle_mean - 0.4) < res.bin_width / 2
    # every true pick lies above the chosen threshold
    assert res.best_threshold < scores[-n_true:].min()
