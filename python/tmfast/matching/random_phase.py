"""Phase-randomised noise template for the random-phase correction (pytom 0.14, §3.6).

The noise template has the template's amplitude spectrum under the mask and random
phases, refined by Gerchberg-Saxton iterations so that it is (nearly) supported by
the mask: it correlates with the tomogram like an unrelated particle of the same
power spectrum. The result is fully determined by ``seed``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.fft as sfft

from tmfast.types import Volume

__all__ = ["phase_randomised_template"]


def phase_randomised_template(
    template: npt.ArrayLike,
    mask: npt.ArrayLike,
    *,
    seed: int,
    iterations: int = 40,
) -> Volume:
    """Return a noise template with the amplitude spectrum of ``template * mask``.

    Steps: amplitude ``A = |rfftn(T M)|``; starting phases from ``rfftn`` of seeded
    Gaussian white noise; ``iterations`` Gerchberg-Saxton rounds alternating
    "multiply by the (soft) mask ``M``" in real space with "restore the amplitude
    ``A``" in Fourier space, as pytom-match-pick 0.14 does (multiplying by the
    support ``M > 0`` instead leaves a soft-mask result's amplitude spectrum about
    three times further from ``A``); finally multiplied by the mask and its sign
    chosen so that ``sign(sum) == sign(sum(T M))``.

    Parameters
    ----------
    template, mask
        ``(n, n, n)`` arrays.
    seed
        Seed of ``numpy.random.default_rng``.
    iterations
        Number of Gerchberg-Saxton rounds (pytom uses 40).

    Returns
    -------
    numpy.ndarray
        ``(n, n, n)`` float32 noise template.

    Raises
    ------
    ValueError
        If the shapes differ or ``iterations`` is negative.
    """
    t = np.asarray(template, dtype=np.float64)
    m = np.asarray(mask, dtype=np.float64)
    if t.shape != m.shape or t.ndim != 3:
        raise ValueError(
            f"template {t.shape} and mask {m.shape} must be equal 3-D boxes"
        )
    if iterations < 0:
        raise ValueError("iterations must be >= 0")
    tm = t * m
    amp = np.abs(sfft.rfftn(tm))
    rng = np.random.default_rng(seed)
    phase = sfft.rfftn(rng.standard_normal(t.shape))
    phase /= np.maximum(np.abs(phase), 1e-300)
    x = sfft.irfftn(amp * phase, s=t.shape)
    for _ in range(iterations):
        x *= m
        f = sfft.rfftn(x)
        f *= amp / np.maximum(np.abs(f), 1e-300)
        x = sfft.irfftn(f, s=t.shape)
    x *= m
    if np.sign(x.sum()) != np.sign(tm.sum()) and tm.sum() != 0:
        x = -x
    return np.ascontiguousarray(x, dtype=np.float32)
