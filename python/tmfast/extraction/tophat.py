"""Top-hat constraint: keep only sharp score peaks (pytom-match-pick §4.3 idea).

A true particle gives a narrow score peak; broad ridges (membranes, gold, carbon
edges) give wide plateaus. The white top-hat transform (score minus its grey
opening) keeps narrow peaks and flattens plateaus. The top-hat values of the
background are modelled as a Gaussian fitted to the bulk of their histogram; a
voxel is kept when its top-hat value is above the false-alarm cutoff of that
Gaussian.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.optimize import curve_fit
from scipy.special import erfcinv

from tmfast.errors import ConfigError

__all__ = ["TophatResult", "tophat_mask"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TophatResult:
    """The top-hat mask and the fit behind it.

    Attributes
    ----------
    mask
        ``(z, y, x)`` bool array, True where a score peak is sharp enough to keep.
    bin_centres, counts
        Histogram of the top-hat values of searched voxels.
    fit_mean, fit_std, fit_amplitude
        Gaussian fitted to the background part of that histogram (counts per bin).
    cutoff
        Top-hat value above which voxels are kept.
    """

    mask: npt.NDArray[np.bool_]
    bin_centres: npt.NDArray[np.float64]
    counts: npt.NDArray[np.float64]
    fit_mean: float
    fit_std: float
    fit_amplitude: float
    cutoff: float

    def without_mask(self) -> TophatResult:
        """Return the fit alone (an empty mask), small enough to keep around."""
        return dataclasses.replace(self, mask=np.zeros((0, 0, 0), dtype=bool))


def _gauss(
    x: npt.NDArray[np.float64], a: float, mu: float, s: float
) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = a * np.exp(-((x - mu) ** 2) / (2.0 * s * s))
    return out


def _log_gauss(
    x: npt.NDArray[np.float64], a: float, mu: float, s: float
) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = np.log(abs(a)) - (x - mu) ** 2 / (2.0 * s * s)
    return out


def tophat_mask(
    scores: npt.ArrayLike,
    *,
    connectivity: int = 1,
    n_bins: int = 50,
    n_false_positives: float = 1.0,
) -> TophatResult:
    """Return the voxels whose score peak is sharp, with the fit used to decide.

    Parameters
    ----------
    scores
        ``(z, y, x)`` score map; non-finite values (unsearched voxels) count as 0
        and are left out of the histogram.
    connectivity
        Connectivity (1, 2 or 3) of the structuring element of the top-hat.
    n_bins
        Number of histogram bins; the histogram spans the bulk (up to 3x the
        99th percentile of the positive top-hat values); its first bin is dropped.
    n_false_positives
        Expected number of background voxels kept.

    Returns
    -------
    TophatResult
        The mask and the histogram fit.

    Raises
    ------
    ConfigError
        If ``connectivity`` or ``n_bins`` is out of range, or the histogram has too
        few populated bins to fit a Gaussian (the scores are not Gaussian; run
        with tophat_filter=False).
    """
    if connectivity not in (1, 2, 3):
        raise ConfigError(f"connectivity={connectivity} must be 1, 2 or 3")
    if n_bins < 8:
        raise ConfigError(f"n_bins={n_bins} must be at least 8")
    s = np.asarray(scores, dtype=np.float32)
    searched = np.isfinite(s)
    s = np.where(searched, s, np.float32(0.0))
    footprint = ndimage.generate_binary_structure(3, connectivity)
    th = ndimage.white_tophat(s, footprint=footprint)
    values = th[searched].astype(np.float64)
    values = values[values > 0]  # flat regions give exact zeros: not background
    if values.size < 100:
        raise ConfigError(
            "top-hat filter: fewer than 100 voxels with a peak; run with "
            "tophat_filter=False"
        )
    # Bin the bulk only: a few strong peaks would otherwise squeeze it into one bin.
    top = float(np.percentile(values, 99.0)) * 3.0
    counts, edges = np.histogram(values, bins=n_bins, range=(0.0, top))
    centres = 0.5 * (edges[1:] + edges[:-1])
    x, y = centres[1:], counts[1:].astype(np.float64)
    populated = y > 0
    if populated.sum() < 4:
        raise ConfigError(
            "top-hat filter: fewer than 4 populated histogram bins to fit; the "
            "scores are not Gaussian here, run with tophat_filter=False"
        )
    # Fit range: from the start up to where the curvature of log(counts) turns from
    # negative (Gaussian bulk) to positive (the tail of sharp peaks).
    logy = np.log(np.where(populated, y, np.nan))
    d2 = np.diff(logy, 2)
    end = len(x)
    for i in range(1, len(d2)):
        if d2[i - 1] < 0 <= d2[i]:
            end = i + 2
            break
    sel = populated.copy()
    sel[end:] = False
    if sel.sum() < 3:
        sel = populated
    xs, ys = x[sel], y[sel]
    mu0 = float(np.average(xs, weights=ys))
    sd0 = float(math.sqrt(max(np.average((xs - mu0) ** 2, weights=ys), 1e-30)))
    # Fit in normalised units (x in bulk sigma around the bulk mean, y relative to the
    # highest bin) so the optimiser is well conditioned.
    u, v = (xs - mu0) / sd0, ys / ys.max()
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, _ = curve_fit(_gauss, u, v, p0=(1.0, 0.0, 1.0), maxfev=5000)
            p, _ = curve_fit(
                _log_gauss,
                u,
                np.log(v),
                p0=(max(abs(p[0]), 1e-6), p[1], max(abs(p[2]), 1e-3)),
                maxfev=5000,
            )
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"top-hat filter: Gaussian fit failed ({exc}); run with tophat_filter=False"
        ) from None
    if not np.all(np.isfinite(p)):
        raise ConfigError(
            "top-hat filter: Gaussian fit failed; run with tophat_filter=False"
        )
    amp = abs(float(p[0])) * float(ys.max())
    mu = mu0 + float(p[1]) * sd0
    sd = abs(float(p[2])) * sd0
    bin_width = float(edges[1] - edges[0])
    n_eff = amp * sd * math.sqrt(2.0 * math.pi) / bin_width
    ratio = min(2.0 * n_false_positives / max(n_eff, 1.0), 1.0)
    cut = float(erfcinv(ratio) * math.sqrt(2.0) * sd + mu)
    mask = (th > cut) & searched
    logger.info(
        "top-hat filter: background mean %.4g std %.4g, cutoff %.4g keeps %d voxels",
        mu,
        sd,
        cut,
        int(mask.sum()),
    )
    return TophatResult(
        mask=mask,
        bin_centres=centres,
        counts=counts.astype(np.float64),
        fit_mean=mu,
        fit_std=sd,
        fit_amplitude=amp,
        cutoff=cut,
    )
