"""Extraction plots: score histogram of the picks against the background model.

matplotlib is imported lazily with the Agg backend, so importing tmfast never
loads it and plots work on headless batch nodes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tmfast._fileio import atomic_path
from tmfast.errors import ConfigError

if TYPE_CHECKING:
    from tmfast.extraction.candidates import CandidateTable
    from tmfast.extraction.tophat import TophatResult

__all__ = [
    "background_gaussian",
    "plot_extraction",
    "plot_tophat",
    "pyplot",
    "save_figure",
]


def pyplot() -> Any:
    """Return ``matplotlib.pyplot`` with the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(
    fig: Any, paths: Sequence[str | os.PathLike[str]], *, overwrite: bool = False
) -> list[Path]:
    """Save ``fig`` to each path atomically (format from the suffix) and close it."""
    out = []
    try:
        for p in paths:
            p = Path(p)
            with atomic_path(p, overwrite=overwrite) as tmp:
                fig.savefig(
                    tmp, format=p.suffix.lstrip("."), dpi=150, bbox_inches="tight"
                )
            out.append(p)
    finally:
        pyplot().close(fig)
    return out


def background_gaussian(
    x: npt.ArrayLike,
    *,
    n_samples: float,
    std: float,
    bin_width: float,
    mean: float = 0.0,
) -> npt.NDArray[np.float64]:
    """Expected background count per bin.

    ``N / (sigma sqrt(2 pi)) * bw * exp(-(x - mean)^2 / (2 sigma^2))``.
    """
    xx = np.asarray(x, dtype=np.float64)
    out: npt.NDArray[np.float64] = (
        n_samples
        / (std * math.sqrt(2 * math.pi))
        * bin_width
        * np.exp(-((xx - mean) ** 2) / (2 * std * std))
    )
    return out


def plot_extraction(
    table: CandidateTable,
    paths: Sequence[str | os.PathLike[str]],
    *,
    n_bins: int = 20,
    overwrite: bool = False,
) -> list[Path]:
    """Plot the histogram of picked scores, the background Gaussian and the cutoff.

    Parameters
    ----------
    table
        The picks.
    paths
        Output files (``.svg``, ``.png``).
    n_bins
        Histogram bins.
    overwrite
        Replace existing files.

    Returns
    -------
    list of Path
        The files written.
    """
    if n_bins < 1:
        raise ConfigError(f"n_bins={n_bins} must be at least 1")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    s = table.scores.astype(np.float64)
    std = table.search_std
    has_bg = table.search_space > 0 and math.isfinite(std) and std > 0
    cut = table.cutoff if math.isfinite(table.cutoff) else None
    # x range: the picks, the cutoff and 3 sigma of the background tail below it,
    # so the plot shows where the background sits relative to the cutoff.
    pts = [float(v) for v in s] + ([cut] if cut is not None else [])
    lo = min(pts) if pts else 0.0
    hi = max(pts) if pts else 1.0
    if has_bg:
        # score above which one background sample is expected (the tail's end)
        from scipy.special import erfcinv

        tail = std * math.sqrt(2.0) * float(erfcinv(2.0 / table.search_space))
        ref = min(cut if cut is not None else lo, tail)
        lo = min(lo, max(0.0, ref - 3.0 * std))
        hi = max(hi, lo + 6.0 * std)
    if hi <= lo:
        hi = lo + 1.0
    pad = 0.02 * (hi - lo)
    edges = np.linspace(lo - pad, hi + pad, n_bins + 1)
    bw = float(edges[1] - edges[0])
    top = 1.0
    if len(s):
        counts, _, _ = ax.hist(
            s, bins=edges, color="#4c72b0", alpha=0.8, label=f"picks (n={len(s)})"
        )
        top = max(float(counts.max()), 1.0)
    else:
        ax.text(
            0.5,
            0.5,
            "no picks",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=14,
        )
    floor = 0.1
    if has_bg:
        x = np.linspace(float(edges[0]), float(edges[-1]), 400)
        y = background_gaussian(x, n_samples=table.search_space, std=std, bin_width=bw)
        shown = y >= floor  # the expected count curve where it can be read
        if shown.any():
            ax.plot(
                x[shown],
                y[shown],
                color="#dd8452",
                lw=2,
                label=f"background N(0, $\\sigma$={std:.3g}), expected per bin",
            )
            top = max(top, float(y[shown].max()))
    ax.set_yscale("log")
    ax.set_ylim(floor * 0.8, top * 3)
    ax.set_xlim(float(edges[0]), float(edges[-1]))
    if cut is not None:
        ax.axvline(
            cut,
            color="#c44e52",
            ls="--",
            lw=2,
            label=f"cutoff {cut:.3g} ({cut / std:.1f} $\\sigma$)"
            if has_bg
            else f"cutoff {cut:.3g}",
        )
    ax.set_xlabel("LCCmax (score)")
    ax.set_ylabel("number of picks per bin")
    ax.set_title(f"{table.tomo_id}: extracted scores")
    ax.legend(loc="upper right", fontsize=8)
    return save_figure(fig, paths, overwrite=overwrite)


def plot_tophat(
    result: TophatResult,
    paths: Sequence[str | os.PathLike[str]],
    *,
    title: str = "",
    overwrite: bool = False,
) -> list[Path]:
    """Plot the top-hat histogram, the fitted background Gaussian and the cutoff.

    Returns
    -------
    list of Path
        The files written.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    r = result
    width = float(r.bin_centres[1] - r.bin_centres[0]) if len(r.bin_centres) > 1 else 1
    ax.bar(
        r.bin_centres,
        r.counts,
        width=width * 0.95,
        color="#4c72b0",
        alpha=0.7,
        label="top-hat values",
    )
    x = np.linspace(float(r.bin_centres[0]), float(r.bin_centres[-1]), 300)
    y = r.fit_amplitude * np.exp(-((x - r.fit_mean) ** 2) / (2 * r.fit_std**2))
    ax.plot(x, y, color="#dd8452", lw=2, label="background fit")
    ax.axvline(r.cutoff, color="#c44e52", ls="--", lw=2, label=f"cutoff {r.cutoff:.3g}")
    ax.set_yscale("log")
    ax.set_ylim(0.5, max(float(r.counts.max()), 1.0) * 3)
    ax.set_xlabel("white top-hat of the score")
    ax.set_ylabel("voxels per bin")
    ax.set_title(title or "top-hat filter")
    ax.legend(fontsize=8)
    return save_figure(fig, paths, overwrite=overwrite)


def display_available() -> bool:
    """Whether a window can be opened (an X11/Wayland display, or macOS/Windows)."""
    import sys

    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def show_image(path: str | os.PathLike[str]) -> bool:
    """Open a saved PNG in a matplotlib window (blocks until it is closed).

    Returns
    -------
    bool
        ``False`` (and nothing shown) when no display or no interactive
        matplotlib backend is available.
    """
    if not display_available():
        return False
    import matplotlib.pyplot as plt

    for backend in ("QtAgg", "TkAgg", "GTK4Agg", "GTK3Agg", "MacOSX"):
        try:
            plt.switch_backend(backend)
            break
        except (ImportError, ValueError, RuntimeError):
            continue
    else:
        return False
    try:
        img = plt.imread(Path(path))
        _fig, ax = plt.subplots()
        ax.imshow(img)
        ax.set_axis_off()
        plt.show()
    except Exception:  # a failing window must not fail the command
        return False
    finally:
        plt.switch_backend("Agg")
    return True
