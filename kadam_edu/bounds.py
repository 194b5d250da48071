r"""Stability theory of Adam's adaptive hyperparameters (Section 3.1, App. E, App. P).

Notation trap: as in the paper, ``beta`` is the *second*-moment decay and
``gamma`` the *first*-moment decay, i.e. torch's ``betas=(gamma, beta)``.
Every function here takes them as (keyword-capable) arguments ``beta=`` and
``gamma=``.

Conventions
-----------
* Array arguments broadcast with numpy rules. All-scalar input returns a
  Python ``float`` (``str`` for :func:`region`), anything else an ``ndarray``.
* No ``RuntimeWarning`` escapes; overflow gives ``+inf``. Every decay in the
  open interval works, subnormal ones included: C and the bounds are computed
  so that ``beta * gamma`` never underflows and log|C| stays finite where C
  overflows.
* Bad input raises ``ValueError`` naming the argument and its allowed range,
  before any work: NaN, strings and bools (``n='5'``, ``n=True``) are refused,
  and array arguments whose shapes do not broadcast are named.
* The step index ``n`` counts from 0 (``u_0`` is the first update); it may be
  ``+inf`` (the limit n -> inf) and need not be an integer (continuous time).

Continuous-time bound (Eq. 5)
-----------------------------
``|u_n| <= sqrt(1-beta^(n+1))/(1-gamma^(n+1)) * (1-gamma)/gamma
* sqrt(beta/(1-beta)) * B_n`` with ``B_n`` piecewise in the sign of
``C(beta, gamma) = (2 beta (1-gamma) - gamma (1-beta)) / (beta gamma)``.

Exact discrete-time bound (not in the paper)
--------------------------------------------
With eps = 0, ``m_n = (1-gamma) sum_j gamma^(n-j) g_j`` and
``v_n = (1-beta) sum_j beta^(n-j) g_j^2`` (j = 0..n). Write
``gamma^(n-j) g_j = (gamma/sqrt(beta))^(n-j) * beta^((n-j)/2) g_j``; Cauchy-Schwarz
gives ``|m_n| <= (1-gamma) sqrt(S_n) sqrt(v_n/(1-beta))`` with
``S_n = sum_{j=0..n} r^j``, ``r = gamma^2/beta``, so
``|u_n| <= sqrt(1-beta^(n+1))/(1-gamma^(n+1)) * (1-gamma)/sqrt(1-beta) * sqrt(S_n)``.
Equality needs ``beta^((n-j)/2) g_j`` proportional to ``(gamma/sqrt(beta))^(n-j)``,
i.e. ``g_j ~ (beta/gamma)^j``, for all n at once. The bound stays finite as
n -> inf iff ``gamma^2 < beta``; otherwise its log grows with slope
``ln(gamma) - ln(beta)/2``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

__all__ = [
    "stability_constant",
    "region",
    "max_update_bound",
    "log_max_update_bound",
    "growth_rate",
    "discrete_max_update_bound",
    "log_discrete_max_update_bound",
    "discrete_growth_rate",
    "normal_curve",
    "level_curve",
    "annealed_lr",
]

_TOL = 1e-12  # default half-width of the band |C| <= tol classified as B0

# ---------------------------------------------------------------------------
# validation and output helpers
# ---------------------------------------------------------------------------

# name -> (lo, hi, lo_closed, hi_closed, meaning)
_DOMAINS = {
    "beta": (0.0, 1.0, False, False, "the paper's second-moment decay, torch's betas[1]"),
    "gamma": (0.0, 1.0, True, False, "the paper's first-moment decay, torch's betas[0]"),
    "n": (0.0, math.inf, True, True, "the step index, counted from 0"),
    "lr0": (0.0, math.inf, True, False, "the learning rate at step 0"),
    "tol": (0.0, math.inf, True, False, "the half-width of the band |C| <= tol called B0"),
    "c": (-math.inf, math.inf, False, False, "the level C(beta, gamma) = c"),
    "beta0": (0.0, 1.0, False, False, "second-moment decay of the point on the normal curve"),
    "gamma0": (0.0, 1.0, False, False, "first-moment decay of the point on the normal curve"),
    "num": (1.0, math.inf, True, False, "the number of points to return"),
}
_SCALAR_ONLY = {"c", "beta0", "gamma0", "num"}
_INTEGER_ONLY = {"num"}


def _check(name: str, value) -> np.ndarray:
    """Validate ``value`` against ``_DOMAINS[name]``; return it as a float array.

    NaN always fails. Raises ``ValueError("<name> must lie in <interval>
    (<meaning>); got <first offending value>")``.
    """
    lo, hi, lo_closed, hi_closed, meaning = _DOMAINS[name]
    interval = f"{'[' if lo_closed else '('}{lo:g}, {hi:g}{']' if hi_closed else ')'}"
    kind = "an integer" if name in _INTEGER_ONLY else "a real number"
    if name not in _SCALAR_ONLY:
        kind += " or array"
    arr = _as_real_array(value)
    wrong_type = arr is None or (name in _INTEGER_ONLY and not (
        isinstance(value, numbers.Integral) and not isinstance(value, bool)))
    if wrong_type or (name in _SCALAR_ONLY and arr.ndim != 0):
        raise ValueError(
            f"{name} must be {kind} in {interval} ({meaning}); got {value!r} ({type(value).__name__})"
        )
    with np.errstate(invalid="ignore"):
        ok = (arr >= lo if lo_closed else arr > lo) & (arr <= hi if hi_closed else arr < hi)
    if not np.all(ok):
        bad = arr[~ok].flat[0]
        bad = int(bad) if name in _INTEGER_ONLY else float(bad)
        raise ValueError(f"{name} must lie in {interval} ({meaning}); got {bad!r}")
    return arr


def _is_real(x) -> bool:
    """A real number that is not a bool, a string or None (those convert to floats silently)."""
    if isinstance(x, (bool, np.bool_, str, bytes, complex, np.complexfloating)) or x is None:
        return False
    try:
        float(x)
    except (TypeError, ValueError):
        return False
    return True


def _as_real_array(value) -> np.ndarray | None:
    """``value`` as a float array, or None if it is not real numbers (str, bool, None, complex)."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):  # ragged nesting
        return None
    if arr.dtype.kind == "O" and all(_is_real(x) for x in arr.flat):
        return arr.astype(float)
    return arr.astype(float) if arr.dtype.kind in "iuf" else None


def _check_broadcast(**arrays: np.ndarray) -> None:
    """Raise ``ValueError`` naming the arguments if their shapes do not broadcast together."""
    try:
        np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        *first, last = arrays
        shapes = ", ".join(str(a.shape) for a in arrays.values())
        names = f"{', '.join(first)} and {last}"
        raise ValueError(f"{names} must broadcast together; got shapes {shapes}") from None


def _check_beta_range(beta_range) -> tuple[float, float]:
    """Validate an optional restriction ``(lo, hi)`` of beta, 0 < lo < hi < 1."""
    try:
        pair = tuple(beta_range)
        lo, hi = (float(x) for x in pair)
        ok = all(_is_real(x) for x in pair) and 0.0 < lo < hi < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            "beta_range must be a pair (lo, hi) with 0 < lo < hi < 1 "
            f"(an interval of the paper's second-moment decay beta); got {beta_range!r}"
        )
    return lo, hi


def _out(result, *inputs):
    """Python scalar when every input is a scalar, else an ndarray."""
    result = np.asarray(result)
    if all(np.ndim(x) == 0 for x in inputs):
        return result.item()
    return result


# ---------------------------------------------------------------------------
# numerical kernels (validated float arrays in, float arrays out)
# ---------------------------------------------------------------------------


def _log1mexp(x):
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler 2012)."""
    with np.errstate(all="ignore"):
        return np.where(x > -math.log(2.0), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def _log_abs_expm1(x):
    """log|exp(x) - 1| for any x (finite for finite nonzero x, +inf at +inf)."""
    with np.errstate(all="ignore"):
        return np.maximum(x, 0.0) + _log1mexp(-np.abs(x))


def _log_geometric_sum(n, log_ratio):
    """log S_n, S_n = sum_{j=0..n} r^j with ``log_ratio = ln r`` (may be -inf)."""
    with np.errstate(all="ignore"):
        generic = _log_abs_expm1((n + 1.0) * log_ratio) - _log_abs_expm1(log_ratio)
        return np.where(log_ratio == 0.0, np.log(n + 1.0), generic)


def _log_bias_correction(n, beta, gamma):
    """log of Adam's bias correction sqrt(1 - beta^(n+1)) / (1 - gamma^(n+1))."""
    with np.errstate(all="ignore"):
        return 0.5 * _log1mexp((n + 1.0) * np.log(beta)) - _log1mexp((n + 1.0) * np.log(gamma))


def _c_and_log_abs(beta, gamma):
    """C(beta, gamma) and log|C|, accurate down to subnormal decays.

    C = top / beta / gamma (minus 1 for gamma < 1/2), dividing in turn so that beta*gamma never
    underflows. For gamma >= 1/2, ``top = 2 beta (1-gamma) - gamma (1-beta)`` (the
    paper's form: 1 - gamma is exact, well conditioned near (1, 1)); for
    gamma < 1/2, ``C + 1 = (2 beta - gamma) / (beta gamma)``, whose numerator
    is exact near C = 0 and never underflows. Where C overflows, log|C| =
    log|top| - log(beta) - log(gamma) stays finite (the -1 is negligible there).
    """
    with np.errstate(all="ignore"):
        small = gamma < 0.5
        top = np.where(small, 2.0 * beta - gamma, 2.0 * beta * (1.0 - gamma) - gamma * (1.0 - beta))
        ratio = top / beta / gamma
        c = np.where(small, ratio - 1.0, ratio)
        log_abs_c = np.where(
            np.isfinite(c), np.log(np.abs(c)), np.log(np.abs(top)) - np.log(beta) - np.log(gamma)
        )
    return c, log_abs_c


def _c(beta, gamma):
    """C(beta, gamma) (see :func:`_c_and_log_abs`); +inf at gamma = 0."""
    return _c_and_log_abs(beta, gamma)[0]


def _half_n_abs_c(n, c, log_abs_c):
    """n |C| / 2, also where |C| overflows (0 at n = 0, finite for tiny continuous n)."""
    with np.errstate(all="ignore"):
        return 0.5 * np.where(np.isfinite(c), n * np.abs(c), np.exp(np.log(n) + log_abs_c))


# ---------------------------------------------------------------------------
# public API: Section 3.1 / Eq. 5
# ---------------------------------------------------------------------------


def stability_constant(beta, gamma):
    """C(beta, gamma) = (2 beta (1-gamma) - gamma (1-beta)) / (beta gamma) (Eq. 5).

    Equal to ``2/gamma - 1/beta - 1``; dimensionless, shape = broadcast of the
    inputs. ``gamma = 0`` gives ``+inf``.
    """
    beta, gamma = _check("beta", beta), _check("gamma", gamma)
    _check_broadcast(beta=beta, gamma=gamma)
    return _out(_c(beta, gamma), beta, gamma)


def region(beta, gamma, *, tol=_TOL):
    """Region of (beta, gamma) (Section 3.1): "B+" if C > tol, "B-" if C < -tol, else "B0".

    Returns a ``str`` for scalar input, else an ndarray of str.
    """
    beta, gamma, tol = _check("beta", beta), _check("gamma", gamma), _check("tol", tol)
    _check_broadcast(beta=beta, gamma=gamma, tol=tol)
    c = _c(beta, gamma)
    return _out(np.where(c > tol, "B+", np.where(c < -tol, "B-", "B0")), beta, gamma, tol)


def log_max_update_bound(n, beta, gamma):
    """Natural log of the continuous-time max-update bound, Eq. 5, computed in log space.

    ``log B_n`` is ``-log(C)/2`` (B+), ``log(n)/2`` (B0, ``|C| <= 1e-12`` as in
    :func:`region`) or ``n|C|/2 - log|C|/2`` (B-), so the result is finite for
    every finite n > 0 (``-inf`` at n = 0 in B0, where ``B_0 = sqrt(0)``) unless
    ``n|C|/2`` itself passes 1.8e308 (``+inf``; |C| ~ 1/beta for subnormal beta).
    ``gamma = 0`` gives ``+inf``: the kernel K_gamma of Eq. 3 collapses to a
    delta and the Cauchy-Schwarz bound degenerates.
    """
    n, beta, gamma = _check("n", n), _check("beta", beta), _check("gamma", gamma)
    _check_broadcast(n=n, beta=beta, gamma=gamma)
    c, log_abs_c = _c_and_log_abs(beta, gamma)
    with np.errstate(all="ignore"):
        log_b = np.where(
            c > _TOL,
            -0.5 * log_abs_c,
            np.where(c < -_TOL, _half_n_abs_c(n, c, log_abs_c) - 0.5 * log_abs_c, 0.5 * np.log(n)),
        )
        res = (
            _log_bias_correction(n, beta, gamma)
            + np.log1p(-gamma)
            - np.log(gamma)
            + 0.5 * (np.log(beta) - np.log1p(-beta))
            + log_b
        )
        res = np.where(gamma == 0.0, np.inf, res)
    return _out(res, n, beta, gamma)


def max_update_bound(n, beta, gamma):
    """Continuous-time bound on the max-update ||u_n||_inf at step n, Eq. 5.

    ``sqrt(1-beta^(n+1))/(1-gamma^(n+1)) * (1-gamma)/gamma * sqrt(beta/(1-beta)) * B_n``,
    ``B_n = 1/sqrt(C)`` (C > 0), ``sqrt(n)`` (C = 0) or ``exp(n|C|/2)/sqrt(|C|)``
    (C < 0), with ``|C| <= 1e-12`` treated as C = 0 (as :func:`region`).
    Units of u (i.e. of the parameter step divided by the learning rate).
    ``+inf`` instead of overflow, and for ``gamma = 0`` where the continuous-time
    bound degenerates (see :func:`log_max_update_bound`).
    """
    with np.errstate(over="ignore"):
        return _out(np.exp(log_max_update_bound(n, beta, gamma)), n, beta, gamma)


def growth_rate(beta, gamma):
    """Predicted slope of log ||u_n||_inf per step, ``max(0, -C)/2`` (Eq. 5, Fig. 1b)."""
    beta, gamma = _check("beta", beta), _check("gamma", gamma)
    _check_broadcast(beta=beta, gamma=gamma)
    return _out(np.maximum(0.0, -_c(beta, gamma)) / 2.0, beta, gamma)


# ---------------------------------------------------------------------------
# public API: exact discrete-time bound (module docstring has the derivation)
# ---------------------------------------------------------------------------


def log_discrete_max_update_bound(n, beta, gamma):
    """Natural log of :func:`discrete_max_update_bound`, finite for every finite n."""
    n, beta, gamma = _check("n", n), _check("beta", beta), _check("gamma", gamma)
    _check_broadcast(n=n, beta=beta, gamma=gamma)
    with np.errstate(all="ignore"):
        log_ratio = 2.0 * np.log(gamma) - np.log(beta)  # ln(gamma^2/beta); -inf at gamma=0
        res = (
            _log_bias_correction(n, beta, gamma)
            + np.log1p(-gamma)
            - 0.5 * np.log1p(-beta)
            + 0.5 * _log_geometric_sum(n, log_ratio)
        )
    return _out(res, n, beta, gamma)


def discrete_max_update_bound(n, beta, gamma):
    """Exact discrete-time bound on |u_n| (element-wise, eps = 0; not in the paper).

    ``sqrt(1-beta^(n+1))/(1-gamma^(n+1)) * (1-gamma)/sqrt(1-beta) * sqrt(S_n)``,
    ``S_n = sum_{j=0..n} (gamma^2/beta)^j``; attained by ``g_j ~ (beta/gamma)^j``.
    ``gamma = 0`` (RMSprop) gives ``S_n = 1``. ``+inf`` instead of overflow.
    """
    with np.errstate(over="ignore"):
        return _out(np.exp(log_discrete_max_update_bound(n, beta, gamma)), n, beta, gamma)


def discrete_growth_rate(beta, gamma):
    """Slope of the log discrete bound as n -> inf: ``max(0, ln(gamma) - ln(beta)/2)``."""
    beta, gamma = _check("beta", beta), _check("gamma", gamma)
    _check_broadcast(beta=beta, gamma=gamma)
    with np.errstate(divide="ignore"):
        rate = np.maximum(0.0, np.log(gamma) - 0.5 * np.log(beta))
    return _out(rate, beta, gamma)


# ---------------------------------------------------------------------------
# public API: level and normal curves (App. E)
# ---------------------------------------------------------------------------


class _Graph(NamedTuple):
    """A monotone curve gamma = gamma_of(beta) through the open unit square.

    ``start``/``end`` are ``(beta, gamma, is_open)`` at its low-/high-beta end;
    an open end lies on the square's boundary and is not sampled.
    """

    gamma_of: Callable
    beta_of: Callable
    slope: Callable  # d gamma / d beta, as a function of beta
    start: tuple
    end: tuple


def _restrict(graph: _Graph, beta_range) -> _Graph:
    """Intersect ``graph`` with beta in [beta_range[0], beta_range[1]] (closed ends)."""
    if beta_range is None:
        return graph
    lo, hi = _check_beta_range(beta_range)
    (b0, _, _), (b1, _, _) = graph.start, graph.end
    if lo >= b1 or hi <= b0:
        raise ValueError(
            f"beta_range {beta_range!r} does not intersect the curve, which lies in the open "
            f"unit square for beta in ({b0:.6g}, {b1:.6g})"
        )
    start = (lo, float(graph.gamma_of(lo)), False) if lo > b0 else graph.start
    end = (hi, float(graph.gamma_of(hi)), False) if hi < b1 else graph.end
    return graph._replace(start=start, end=end)


def _sample_by_arc_length(graph: _Graph, num: int):
    """``num`` points uniformly spaced in arc length along ``graph`` (betas increasing).

    The arc length comes from a dense polyline merging beta-uniform and
    gamma-uniform samples (accurate where the curve is steep); an open end is
    kept half a spacing away. Points are projected back onto the curve.
    """
    (b0, g0, open0), (b1, g1, open1) = graph.start, graph.end
    m = max(4096, 16 * num)
    with np.errstate(all="ignore"):
        b_grid = np.linspace(b0, b1, m)[1:-1]
        g_grid = np.linspace(g0, g1, m)[1:-1]
        bs = np.concatenate([[b0], b_grid, np.clip(graph.beta_of(g_grid), b0, b1), [b1]])
        gs = np.concatenate([[g0], graph.gamma_of(b_grid), g_grid, [g1]])
    order = np.argsort(bs, kind="stable")
    bs, gs = bs[order], gs[order]
    s = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(bs), np.diff(gs)))])
    denom = num - 1 + 0.5 * open0 + 0.5 * open1
    if denom == 0:  # one point, both ends closed: the arc's midpoint
        targets = np.array([0.5 * s[-1]])
    else:
        targets = np.minimum((0.5 * open0 + np.arange(num)) * (s[-1] / denom), s[-1])
    betas, gammas = np.interp(targets, s, bs), np.interp(targets, s, gs)
    with np.errstate(all="ignore"):
        steep = np.abs(graph.slope(betas)) > 1.0
        gammas = np.where(steep, gammas, graph.gamma_of(betas))
        betas = np.where(steep, graph.beta_of(gammas), betas)
    if denom > 0 and not open0:
        betas[0], gammas[0] = b0, g0
    if denom > 0 and not open1:
        betas[-1], gammas[-1] = b1, g1
    return betas, gammas


def normal_curve(beta0, gamma0, num, beta_range=None):
    """Normal curve to the level curves of C through (beta0, gamma0), App. E.

    The curve is ``gamma^3 = k - 2 beta^3`` with ``k = 2 beta0^3 + gamma0^3``;
    C varies monotonically along it. Returns ``(betas, gammas)``, 1-D float
    arrays of length ``num``, betas increasing, spaced uniformly in arc length
    along the part inside the open unit square (and, if given, with beta in
    ``[beta_range[0], beta_range[1]]``). Ends on the square's boundary are
    excluded by half a spacing; ends cut by ``beta_range`` are included.
    """
    beta0, gamma0 = float(_check("beta0", beta0)), float(_check("gamma0", gamma0))
    _check("num", num)
    k = 2.0 * beta0**3 + gamma0**3

    def gamma_of(b):
        return np.cbrt(k - 2.0 * np.asarray(b) ** 3)

    def beta_of(g):
        return np.cbrt((k - np.asarray(g) ** 3) / 2.0)

    def slope(b):
        return -2.0 * np.asarray(b) ** 2 / gamma_of(b) ** 2

    start = (math.cbrt((k - 1.0) / 2.0), 1.0, True) if k > 1.0 else (0.0, math.cbrt(k), True)
    end = (1.0, math.cbrt(k - 2.0), True) if k >= 2.0 else (math.cbrt(k / 2.0), 0.0, True)
    graph = _restrict(_Graph(gamma_of, beta_of, slope, start, end), beta_range)
    return _sample_by_arc_length(graph, int(num))


def level_curve(c, num, beta_range=None):
    """Level curve C(beta, gamma) = c (App. E): ``gamma = 2 beta / ((c+1) beta + 1)``.

    Same sampling as :func:`normal_curve`: ``(betas, gammas)`` of length ``num``,
    uniform in arc length inside the open unit square, boundary ends excluded
    by half a spacing. The curve runs from (0, 0) to gamma = 1 (c <= 0) or to
    beta = 1 (c > 0).
    """
    c = float(_check("c", c))
    _check("num", num)

    def gamma_of(b):
        b = np.asarray(b)
        return 2.0 * b / ((c + 1.0) * b + 1.0)

    def beta_of(g):
        g = np.asarray(g)
        return g / (2.0 - (c + 1.0) * g)

    def slope(b):
        return 2.0 / ((c + 1.0) * np.asarray(b) + 1.0) ** 2

    end = (1.0 / (1.0 - c), 1.0, True) if c <= 0.0 else (1.0, 2.0 / (c + 2.0), True)
    graph = _restrict(_Graph(gamma_of, beta_of, slope, (0.0, 0.0, True), end), beta_range)
    return _sample_by_arc_length(graph, int(num))


# ---------------------------------------------------------------------------
# public API: App. P
# ---------------------------------------------------------------------------


def annealed_lr(n, lr0, beta, gamma):
    """Learning rate at step n that cancels the B- growth of Eq. 5, Eq. 15.

    ``lr0 * exp(-n |C| / 2)`` in B- (C < -1e-12); in B+ and B0 nothing grows,
    so it returns ``lr0`` unchanged (the paper defines Eq. 15 only for B-).
    Same units as ``lr0``.
    """
    n, lr0 = _check("n", n), _check("lr0", lr0)
    beta, gamma = _check("beta", beta), _check("gamma", gamma)
    _check_broadcast(n=n, lr0=lr0, beta=beta, gamma=gamma)
    c, log_abs_c = _c_and_log_abs(beta, gamma)
    with np.errstate(all="ignore"):
        lr = np.where(c < -_TOL, lr0 * np.exp(-_half_n_abs_c(n, c, log_abs_c)), lr0)
    return _out(lr, n, lr0, beta, gamma)
