r"""k-Adam's levels and their bounds (Section 4.2, App. Q, App. R, App. T).

Every level ``i`` of k-Adam is an adaptive normalization with its own pair
``Level(gamma_i, beta_i)`` (paper notation: ``beta`` second moment, ``gamma`` first moment).
Since ``u_n^(i)`` is an adaptive normalization of ``u_{0:n}^(i-1)`` (App. R), the max-update
bound of Eq. 5 holds for every level with that level's pair (App. T, Eq. 16):

.. math::

    \|u_n^{(i)}\|_\infty \le \frac{\sqrt{1-\beta_i^{n+1}}}{1-\gamma_i^{n+1}}
    \frac{1-\gamma_i}{\gamma_i}\sqrt{\frac{\beta_i}{1-\beta_i}}\, B_n(\beta_i, \gamma_i),

and so does the exact discrete-time bound of :func:`kadam_edu.bounds.discrete_max_update_bound`
(which needs nothing about the input sequence either).

Functions here take plain numbers and :class:`~kadam_edu.optim.Level` lists and return numpy
arrays or dicts; :mod:`kadam_edu.plots` draws them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from kadam_edu import bounds, validate
from kadam_edu.optim import STRATEGIES, Level, kadam_levels

__all__ = ["BOUND_KINDS", "level_table", "level_bounds", "bound_ratios", "first_moment_lag", "strategy_path"]

#: The two per-level bounds: "discrete" (exact, Cauchy-Schwarz on the finite sums) and
#: "continuous" (Eq. 5 / Eq. 16 with the level's pair).
BOUND_KINDS = ("discrete", "continuous")


def _check_levels(levels) -> list[Level]:
    if isinstance(levels, Level) or not isinstance(levels, Sequence) or len(levels) == 0:
        raise ValueError(f"levels must be a non-empty list of kadam_edu.Level(gamma=..., beta=...); got {levels!r}")
    out = []
    for i, lv in enumerate(levels):
        if not isinstance(lv, Level):
            raise ValueError(
                f"levels[{i}] must be a kadam_edu.Level(gamma=..., beta=...), not a bare "
                f"{type(lv).__name__} (the order of (gamma, beta) is ambiguous); got {lv!r}"
            )
        bounds.stability_constant(lv.beta, lv.gamma)  # validates beta in (0, 1), gamma in [0, 1)
        out.append(Level(gamma=float(lv.gamma), beta=float(lv.beta)))
    return out


def level_table(k: int, strategy: str = "inverse_exp", beta: float = 0.999, gamma: float = 0.9) -> list[dict]:
    """One row per level of ``kadam_levels(k, beta, gamma, strategy)`` (Section 4.2, App. Q, App. T).

    Each row: ``level`` (1..k), ``gamma``, ``beta`` (the level's pair, paper notation), ``C``
    (stability constant, Eq. 5), ``region`` ("B+", "B0" or "B-"), ``sup_bound`` (the limit
    n -> inf of the Eq. 5 bound: finite in B+, +inf otherwise), ``sup_discrete_bound`` (the same
    for the exact discrete bound: finite iff gamma^2 < beta) and ``growth_rate`` (predicted slope
    of log ||u_n^(i)||_inf, max(0, -C)/2). All values are plain Python floats / str.
    """
    levels = kadam_levels(k, beta=beta, gamma=gamma, strategy=strategy)
    rows = []
    for i, lv in enumerate(levels, start=1):
        rows.append(dict(
            level=i, gamma=lv.gamma, beta=lv.beta,
            C=float(bounds.stability_constant(lv.beta, lv.gamma)),
            region=str(bounds.region(lv.beta, lv.gamma)),
            sup_bound=float(bounds.max_update_bound(math.inf, lv.beta, lv.gamma)),
            sup_discrete_bound=float(bounds.discrete_max_update_bound(math.inf, lv.beta, lv.gamma)),
            growth_rate=float(bounds.growth_rate(lv.beta, lv.gamma)),
        ))
    return rows


def level_bounds(n, levels: Sequence[Level], *, kind: str = "discrete") -> np.ndarray:
    """Per-level max-update bounds at steps ``n`` (App. T): array of shape ``[len(n), k]``.

    ``n``: step indices (counted from 0; a scalar or 1-d array of numbers >= 0); ``levels``: the
    k :class:`Level` s; ``kind``: ``"discrete"`` (exact, :func:`bounds.discrete_max_update_bound`)
    or ``"continuous"`` (Eq. 5 / Eq. 16, :func:`bounds.max_update_bound`). Column ``i`` bounds
    ``||u_n^(i+1)||_inf`` for every input sequence. ``+inf`` where a bound overflows (or for
    ``gamma_i = 0`` under Eq. 5, whose kernel degenerates).
    """
    levels = _check_levels(levels)
    kind = validate.choice("kind", kind, BOUND_KINDS, meaning="which per-level bound")
    fn = bounds.discrete_max_update_bound if kind == "discrete" else bounds.max_update_bound
    n = np.atleast_1d(np.asarray(n, dtype=float))
    if n.ndim != 1:
        raise ValueError(f"n must be a scalar or a 1-d array of step indices; got shape {n.shape}")
    betas = np.array([lv.beta for lv in levels])
    gammas = np.array([lv.gamma for lv in levels])
    return np.asarray(fn(n[:, None], betas[None, :], gammas[None, :]), dtype=float).reshape(len(n), len(levels))


def bound_ratios(level_max_updates, levels: Sequence[Level], *, kind: str = "discrete") -> np.ndarray:
    """Measured over bound, ``||u_n^(i)||_inf / bound_n^(i)``, shape ``[steps, k]`` (App. T).

    ``level_max_updates``: ``[steps, k]`` array of :attr:`KAdam.last_level_max_updates`, row n
    recorded after step n (n = 0, 1, ...), as in ``TrainRecord.level_max_updates``. A ratio
    <= 1 means the bound held (up to floating-point rounding: the first update at every level is
    sign(x_0), which meets the bound exactly, so ratios of 1 + a few ulps are equality).
    """
    levels = _check_levels(levels)
    mu = np.asarray(level_max_updates, dtype=float)
    if mu.ndim != 2 or mu.shape[1] != len(levels):
        raise ValueError(
            f"level_max_updates must have shape [steps, k={len(levels)}] (one column per level); got {mu.shape}"
        )
    if np.any(mu < 0) or not np.all(np.isfinite(mu)):
        raise ValueError("level_max_updates must be finite and >= 0 (they are max-norms)")
    bound = level_bounds(np.arange(mu.shape[0]), levels, kind=kind)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isinf(bound), 0.0, mu / bound)


def first_moment_lag(levels: Sequence[Level]) -> float:
    """Mean delay, in steps, of the chain of the levels' first-moment EMAs: sum_i gamma_i / (1 - gamma_i).

    A single EMA ``m_n = gamma m_{n-1} + (1 - gamma) x_n`` (long after the start) weights
    ``x_{n-j}`` by ``(1 - gamma) gamma^j``, whose mean j is ``gamma / (1 - gamma)``; delays of
    filters applied one after another add. This ignores the normalization between levels
    (a linear heuristic for Section 4.2's strategies, not a theorem of the paper).
    """
    levels = _check_levels(levels)
    return float(sum(lv.gamma / (1.0 - lv.gamma) for lv in levels))


def strategy_path(strategy: str, k_max: int = 10, beta: float = 0.999, gamma: float = 0.9) -> list[Level]:
    """The level pair of ``strategy`` for k = 1..k_max (every level shares it): list of k_max Levels."""
    k_max = validate.positive_int("k_max", k_max)
    strategy = validate.choice("strategy", strategy, sorted(STRATEGIES), meaning="Section 4.2")
    return [kadam_levels(k, beta=beta, gamma=gamma, strategy=strategy)[0] for k in range(1, k_max + 1)]

