"""ROC estimate from picked scores: a bimodal Gaussian fit (pytom-match-pick §4.6).

Extract many more picks than expected particles with no cutoff; their score
histogram is the upper tail of the background plus a bump of true particles.
Model of the count in the bin ``[a, b)`` (``Phi`` the normal CDF)::

    counts = N_bg * (Phi((b - m_bg) / s) - Phi((a - m_bg) / s))
           + N_p * (Phi((b - m_p) / s_p) - Phi((a - m_p) / s_p))

Bin integrals, not densities at bin centres: a particle population narrower than
a bin (all true picks in one or two bins) would otherwise be fitted by a spike
between centres and its count ``N_p`` badly underestimated.
The background amplitude is fixed by the number of searched voxels ``N_bg`` and
its mean by the score map's mean; its sigma ``s`` is fitted within
``[sigma_map, 1.5 sigma_map]``. ``N_p`` is the estimated number of true particles.
For thresholds ``t`` the recall is the particle mass above ``t`` and the false
discovery rate the background share of what lies above ``t``;
the best threshold maximises ``recall·(1 - FDR)``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from scipy.optimize import curve_fit
from scipy.special import erf, erfc

from tmfast.errors import ConfigError

if TYPE_CHECKING:
    from tmfast.extraction.candidates import CandidateTable

__all__ = ["RocResult", "estimate_roc", "plot_roc", "score_map_background"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RocResult:
    """Fit of the picked-score histogram and the threshold sweep.

    Attributes
    ----------
    bin_centres, counts, bin_width
        Histogram of the picked scores.
    n_background, background_mean, background_std
        Background Gaussian (``background_std`` fitted).
    particle_amplitude, particle_mean, particle_std
        Particle Gaussian (amplitude in counts per bin).
    n_true_estimate
        Estimated number of true particles among the picks.
    thresholds, recall, fdr, quality
        Threshold sweep; ``quality = recall * (1 - fdr)``.
    best_threshold
        Threshold of maximal quality.
    """

    bin_centres: npt.NDArray[np.float64]
    counts: npt.NDArray[np.float64]
    bin_width: float
    n_background: float
    background_mean: float
    background_std: float
    particle_amplitude: float
    particle_mean: float
    particle_std: float
    n_true_estimate: float
    thresholds: npt.NDArray[np.float64]
    recall: npt.NDArray[np.float64]
    fdr: npt.NDArray[np.float64]
    quality: npt.NDArray[np.float64]
    best_threshold: float


def estimate_roc(
    scores: npt.ArrayLike,
    *,
    n_background: float,
    background_std: float,
    background_mean: float = 0.0,
    n_bins: int = 20,
    gaussian_peak: int | None = None,
    force_peak: bool = False,
    n_thresholds: int = 50,
) -> RocResult:
    """Fit the bimodal model to picked scores and sweep thresholds.

    Parameters
    ----------
    scores
        ``(N,)`` scores of picks extracted without a cutoff.
    n_background
        Number of searched voxels of the score map (background samples).
    background_std, background_mean
        Standard deviation and mean of the score map over searched voxels.
    n_bins
        Histogram bins.
    gaussian_peak
        Expected histogram bin index of the particle peak (start value); default
        the bin of the highest count above the lower quartile.
    force_peak
        Pin the particle mean to ``gaussian_peak``'s bin centre.
    n_thresholds
        Number of thresholds in the sweep.

    Returns
    -------
    RocResult
        Fit and sweep.

    Raises
    ------
    ConfigError
        If there are too few picks or the fit fails.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    s = s[np.isfinite(s)]
    if len(s) < 20:
        raise ConfigError(
            f"ROC estimate: only {len(s)} picks; extract more picks (n_particles "
            "about 3x the expected number of particles)"
        )
    if not (background_std > 0 and n_background > 0):
        raise ConfigError("ROC estimate: background std and count must be > 0")
    if n_bins < 6:
        raise ConfigError(f"n_bins={n_bins} must be at least 6")
    counts, edges = np.histogram(s, bins=n_bins)
    centres = 0.5 * (edges[1:] + edges[:-1])
    bw = float(edges[1] - edges[0])
    y = counts.astype(np.float64)
    sigma0 = float(background_std)
    norm_bg = n_background * bw / math.sqrt(2 * math.pi)
    span = float(edges[-1] - edges[0])
    q25 = min(int(np.searchsorted(centres, np.percentile(s, 25))), n_bins - 2)
    bg0 = (
        norm_bg
        / sigma0
        * np.exp(-((centres - background_mean) ** 2) / (2 * sigma0 * sigma0))
    )
    if gaussian_peak is None:
        # The particle bump is where the counts exceed the background model most.
        peak_i = q25 + int(np.argmax((y - bg0)[q25:]))
    else:
        if not 0 <= gaussian_peak < n_bins:
            raise ConfigError(f"gaussian_peak={gaussian_peak} must be in [0, {n_bins})")
        peak_i = gaussian_peak
    mu_lo = float(centres[q25])
    if force_peak:
        lo_mu = float(centres[peak_i]) - 0.01 * span
        hi_mu = float(centres[peak_i]) + 0.01 * span
    else:
        lo_mu, hi_mu = mu_lo, float(edges[-1])

    lo_e, hi_e = edges[:-1], edges[1:]
    sqrt2 = math.sqrt(2.0)

    def model(
        x: npt.NDArray[np.float64], sd: float, n_p: float, mu: float, sp: float
    ) -> npt.NDArray[np.float64]:
        # x are bin indices (float): the model integrates each bin [a, b).
        k = x.astype(np.int64)
        a, b = lo_e[k], hi_e[k]
        # upper-tail erfc differences stay accurate far out in the background tail
        bg = (
            0.5
            * n_background
            * (
                erfc((a - background_mean) / (sd * sqrt2))
                - erfc((b - background_mean) / (sd * sqrt2))
            )
        )
        pt = 0.5 * n_p * (erf((b - mu) / (sp * sqrt2)) - erf((a - mu) / (sp * sqrt2)))
        out: npt.NDArray[np.float64] = bg + pt
        return out

    # The lowest bin is cut by the pick count (n picks end mid-bin): leave it out.
    xf, yf = np.arange(1, n_bins, dtype=np.float64), y[1:]
    weights = np.sqrt(np.maximum(yf, 1.0))
    lower = (sigma0, 0.0, lo_mu, bw / 50)
    upper = (1.5 * sigma0, 1.5 * float(len(s)) + 1.0, hi_mu, span)
    starts = [float(centres[peak_i])]
    if gaussian_peak is None and not force_peak:
        starts += [float(v) for v in np.linspace(mu_lo, float(edges[-1]), 5)[1:-1]]
    best_fit: tuple[float, npt.NDArray[np.float64]] | None = None
    for m0 in starts:
        m0 = min(max(m0, lo_mu + 1e-12 * span), hi_mu - 1e-12 * span)
        i0 = int(np.clip(np.searchsorted(centres, m0), 0, n_bins - 1))
        # start from the excess over the background around the start bin
        n0 = float(max(np.sum((y - bg0)[max(i0 - 1, 0) : i0 + 2]), 1.0))
        for sp0 in (span / 10, bw / 2):
            p0 = (sigma0 * 1.01, min(n0, upper[1] * 0.99), m0, sp0)
            try:
                p, _ = curve_fit(
                    model,
                    xf,
                    yf,
                    p0=p0,
                    bounds=(lower, upper),
                    sigma=weights,
                    maxfev=20000,
                )
            except (RuntimeError, ValueError):
                continue
            cost = float(np.sum(((model(xf, *p) - yf) / weights) ** 2))
            if best_fit is None or cost < best_fit[0]:
                best_fit = (cost, p)
    if best_fit is None:
        raise ConfigError(
            "ROC estimate: bimodal fit did not converge; try another n_bins or "
            "gaussian_peak"
        )
    p = best_fit[1]
    sd, n_true, mu, sp = (float(v) for v in p)
    amp = n_true * bw / (sp * math.sqrt(2 * math.pi))
    thr = np.linspace(float(edges[0]), float(edges[-1]), n_thresholds)
    recall = 0.5 * erfc((thr - mu) / (sp * math.sqrt(2)))
    fp = 0.5 * n_background * erfc((thr - background_mean) / (sd * math.sqrt(2)))
    tp = n_true * recall
    with np.errstate(invalid="ignore", divide="ignore"):
        fdr = np.where(tp + fp > 0, fp / (tp + fp), 0.0)
    quality = recall * (1.0 - fdr)
    best = float(thr[int(np.argmax(quality))])
    logger.info(
        "ROC: ~%.0f true particles (mean %.4g, std %.4g); best threshold %.4g "
        "(recall %.3f, FDR %.3f)",
        n_true,
        mu,
        sp,
        best,
        float(recall[np.argmax(quality)]),
        float(fdr[np.argmax(quality)]),
    )
    return RocResult(
        bin_centres=centres,
        counts=y,
        bin_width=bw,
        n_background=float(n_background),
        background_mean=float(background_mean),
        background_std=sd,
        particle_amplitude=amp,
        particle_mean=mu,
        particle_std=sp,
        n_true_estimate=float(n_true),
        thresholds=thr,
        recall=recall,
        fdr=fdr,
        quality=quality,
        best_threshold=best,
    )


def plot_roc(
    result: RocResult,
    paths: Sequence[str | os.PathLike[str]],
    *,
    title: str = "",
    crop_plot: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Plot the fitted histogram and the ROC curve (recall vs FDR).

    Returns
    -------
    list of Path
        The files written.
    """
    from tmfast.extraction.plots import pyplot, save_figure

    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    r = result
    a1.bar(
        r.bin_centres,
        r.counts,
        width=r.bin_width * 0.95,
        color="#4c72b0",
        alpha=0.7,
        label="picked scores",
    )
    x = np.linspace(
        r.bin_centres[0] - r.bin_width / 2, r.bin_centres[-1] + r.bin_width / 2, 400
    )
    # expected counts in a bin of width bw centred at x (what the fit matched)
    a, b = x - r.bin_width / 2, x + r.bin_width / 2
    s2 = math.sqrt(2.0)
    sd, m = r.background_std, r.background_mean
    bg = 0.5 * r.n_background * (erfc((a - m) / (sd * s2)) - erfc((b - m) / (sd * s2)))
    sp, mu = r.particle_std, r.particle_mean
    pt = (
        0.5
        * r.n_true_estimate
        * (erf((b - mu) / (sp * s2)) - erf((a - mu) / (sp * s2)))
    )
    a1.plot(
        x,
        bg,
        color="#dd8452",
        lw=2,
        label=f"background ($\\sigma$={r.background_std:.3g})",
    )
    a1.plot(x, pt, color="#55a868", lw=2, label=f"particles (~{r.n_true_estimate:.0f})")
    a1.axvline(
        r.best_threshold,
        color="#c44e52",
        ls="--",
        label=f"best threshold {r.best_threshold:.3g}",
    )
    top = float(r.counts.max()) * 1.3 + 1
    a1.set_ylim(0, max(float(pt.max()) * 1.5, 1.0) if crop_plot else top)
    a1.set_xlabel("LCCmax (score)")
    a1.set_ylabel("picks per bin")
    a1.legend(fontsize=8)
    a2.plot(r.fdr, r.recall, "o-", ms=3, color="#8172b2")
    i = int(np.argmax(r.quality))
    a2.plot(
        [r.fdr[i]],
        [r.recall[i]],
        "o",
        ms=9,
        color="#c44e52",
        label=f"best: recall {r.recall[i]:.2f}, FDR {r.fdr[i]:.2f}",
    )
    a2.set_xlabel("false discovery rate")
    a2.set_ylabel("recall")
    a2.set_xlim(-0.02, 1.02)
    a2.set_ylim(-0.02, 1.02)
    a2.legend(fontsize=8)
    fig.suptitle(title or "ROC estimate")
    return save_figure(fig, paths, overwrite=overwrite)


def score_map_background(
    job: str | os.PathLike[str],
    *,
    n_particles: int,
    particle_diameter_a: float | None = None,
    ignore_tomogram_mask: bool = False,
) -> tuple[tuple[float, float, float], CandidateTable]:
    """Extract ``n_particles`` forced picks and the score map's background stats.

    Returns
    -------
    tuple
        ``((n_voxels, mean, std), picks)`` where the statistics are over searched
        voxels (finite scores inside the tomogram mask).
    """
    from tmfast.extraction.candidates import (
        _load_mask,
        _read_map,
        extract_candidates,
        job_tomogram_mask,
    )
    from tmfast.extraction.pytom_job import load_job, locate_maps

    mjob, jpath = load_job(job)
    table = extract_candidates(
        mjob,
        n_particles=n_particles,
        particle_diameter_a=particle_diameter_a,
        cutoff=-1.0,
        ignore_tomogram_mask=ignore_tomogram_mask,
        job_dir=jpath.parent,
    )
    scores_path, _ = locate_maps(mjob, jpath.parent)
    scores, _ = _read_map(scores_path, "score map")
    mask = None
    # the same mask as the picks: a relative path is resolved as extraction does
    mask_path = None if ignore_tomogram_mask else job_tomogram_mask(mjob, jpath.parent)
    if mask_path is not None:
        mask = _load_mask(mask_path, mjob)
    # Sums slab by slab in float64: no map-sized float64 temporaries.
    n, s1, s2 = 0, 0.0, 0.0
    for z in range(scores.shape[0]):
        sl = np.asarray(scores[z], dtype=np.float64)
        keep = np.isfinite(sl)
        if mask is not None:
            keep &= mask[z] > 0
        v = sl[keep]
        n += int(v.size)
        s1 += float(v.sum())
        s2 += float((v * v).sum())
    if n < 2:
        raise ConfigError(f"{scores_path}: fewer than 2 searched voxels")
    mean = s1 / n
    std = math.sqrt(max(s2 / n - mean * mean, 0.0))
    return (float(n), mean, std), table
