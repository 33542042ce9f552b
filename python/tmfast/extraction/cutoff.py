"""The automatic score cutoff from a false-alarm rate (Rickgauer et al. 2017).

Under the background model every searched (voxel, rotation) pair yields a
zero-mean Gaussian correlation with standard deviation ``sigma``. Among ``N``
such pairs the expected number exceeding ``theta`` is ``N * P(X > theta)
= N/2 * erfc(theta / (sigma * sqrt(2)))``. Setting that equal to the accepted
number of false positives ``n_fp`` gives::

    theta = sqrt(2) * sigma * erfcinv(2 * n_fp / N)

which is pytom-match-pick's cutoff (``extract.extract_particles``).
"""

from __future__ import annotations

import math

from scipy.special import erfcinv

from tmfast.errors import ConfigError

__all__ = ["false_alarm_cutoff"]


def false_alarm_cutoff(
    search_std: float, search_space: int, *, n_false_positives: float = 1.0
) -> float:
    """Return the score above which ``n_false_positives`` background picks are expected.

    Parameters
    ----------
    search_std
        Standard deviation ``sigma`` of the background scores (the job's
        ``stats.std``), in score units.
    search_space
        Number ``N`` of (voxel, rotation) pairs searched (the job's
        ``stats.search_space``).
    n_false_positives
        Expected number of background picks above the cutoff; values below 1 are
        stricter.

    Returns
    -------
    float
        ``sqrt(2) * search_std * erfcinv(2 * n_false_positives / search_space)``.

    Raises
    ------
    ConfigError
        If ``search_std`` is not finite and positive, ``search_space`` is not
        positive, or ``n_false_positives`` is not in ``(0, search_space / 2]``.
    """
    if not (math.isfinite(search_std) and search_std > 0):
        raise ConfigError(
            f"search std {search_std} must be finite and > 0; the job's statistics "
            "are broken, rerun matching or give a manual cutoff=VALUE"
        )
    if search_space <= 0:
        raise ConfigError(
            f"search space {search_space} must be > 0; rerun matching or give a "
            "manual cutoff=VALUE"
        )
    if not (0.0 < n_false_positives <= search_space / 2):
        raise ConfigError(
            f"n_false_positives={n_false_positives} must be in "
            f"(0, {search_space / 2:g}] (half the search space)"
        )
    return float(
        math.sqrt(2.0) * search_std * erfcinv(2.0 * n_false_positives / search_space)
    )
