"""The book's closed forms as Vega expressions, each next to the library function it mirrors
(:data:`MIRRORS`), for :mod:`kadam_edu.live`'s charts.

A mirror takes Vega expressions for its arguments (a param name such as ``"beta"``, a field such
as ``"datum.n"``) and an ``out`` field name, and returns the ``(field, expression)`` steps of
``transform_calculate`` that compute ``datum[out]`` (helper fields are named ``out + "_..."``).
The forms are the library's numerically careful ones (log space for Eq. 5; ``log1p``/``expm1`` as
Goldberg's and Kahan's accurate forms, which Vega's expression language lacks).
"""

from __future__ import annotations

from collections.abc import Callable

from kadam_edu import bounds, continuous, ema, scaling

Steps = list[tuple[str, str]]

TOL = bounds._TOL  # the B0 band |C| <= tol of bounds.region and Eq. 5


def _log1p(x: str) -> str:
    """log(1 + x), accurate for tiny x (Goldberg 1991): x log(1+x) / ((1+x) - 1)."""
    return f"((1 + {x}) == 1 ? {x} : log(1 + {x}) * {x} / ((1 + {x}) - 1))"


def _expm1(x: str) -> str:
    """exp(x) - 1, accurate for tiny x (Kahan): (e^x - 1) x / log(e^x)."""
    return f"(exp({x}) == 1 ? {x} : exp({x}) - 1 == -1 ? -1 : (exp({x}) - 1) * {x} / log(exp({x})))"


def _log1mexp(x: str) -> str:
    """log(1 - exp(x)) for x <= 0, as bounds._log1mexp (Maechler 2012)."""
    return f"({x} > -LN2 ? log(-{_expm1(x)}) : {_log1p(f'(-exp({x}))')})"


def _log_abs_expm1(x: str) -> str:
    """log|exp(x) - 1|, as bounds._log_abs_expm1."""
    return f"(max({x}, 0) + {_log1mexp(f'(-abs({x}))')})"


def _field(name: str) -> str:
    return f"datum.{name}"


# --------------------------------------------------------------------------- mirrors of kadam_edu.bounds
def stability_constant(beta: str, gamma: str, *, out: str) -> Steps:
    """C(beta, gamma) of Eq. 5 into ``out`` and log|C| into ``out + "_log_abs"``, as bounds._c_and_log_abs:
    ``top / beta / gamma`` (minus 1 for gamma < 1/2, where top = 2 beta - gamma), log|C| finite where C
    overflows; +Infinity at gamma = 0."""
    top, c = f"{out}_top", f"{out}"
    return [
        (top, f"{gamma} < 0.5 ? 2 * {beta} - {gamma} : 2 * {beta} * (1 - {gamma}) - {gamma} * (1 - {beta})"),
        (c, f"{gamma} < 0.5 ? {_field(top)} / {beta} / {gamma} - 1 : {_field(top)} / {beta} / {gamma}"),
        (
            f"{out}_log_abs",
            f"isFinite({_field(c)}) ? log(abs({_field(c)})) "
            f": log(abs({_field(top)})) - log({beta}) - log({gamma})",
        ),
    ]


def region(c: str, *, out: str) -> Steps:
    """ "B+", "B0" or "B-" from C (the field or expression ``c``), as bounds.region (|C| <= 1e-12 is B0)."""
    return [(out, f"{c} > {TOL!r} ? 'B+' : {c} < {-TOL!r} ? 'B-' : 'B0'")]


def growth_rate(c: str, *, out: str) -> Steps:
    """max(0, -C)/2, the predicted slope of log ||u_n||_inf (Eq. 5), as bounds.growth_rate."""
    return [(out, f"max(0, -{c}) / 2")]


def discrete_growth_rate(beta: str, gamma: str, *, out: str) -> Steps:
    """max(0, ln gamma - ln(beta)/2), the exact discrete bound's slope, as bounds.discrete_growth_rate."""
    return [(out, f"max(0, log({gamma}) - 0.5 * log({beta}))")]


def _log_bias_correction(n: str, beta: str, gamma: str, *, out: str) -> Steps:
    """log sqrt(1 - beta^(n+1)) / (1 - gamma^(n+1)), as bounds._log_bias_correction."""
    xb, xg = f"{out}_xb", f"{out}_xg"
    return [
        (xb, f"({n} + 1) * log({beta})"),
        (xg, f"({n} + 1) * log({gamma})"),
        (out, f"0.5 * {_log1mexp(_field(xb))} - {_log1mexp(_field(xg))}"),
    ]


def log_max_update_bound(n: str, beta: str, gamma: str, *, out: str) -> Steps:
    """ln of Eq. 5's bound on ||u_n||_inf, in log space as bounds.log_max_update_bound: finite for every
    finite n > 0, +Infinity at gamma = 0 (also writes C into ``out + "_C"``)."""
    c, la, bc = f"{out}_C", f"{out}_C_log_abs", f"{out}_bc"
    half_n_abs_c = f"0.5 * (isFinite({_field(c)}) ? {n} * abs({_field(c)}) : exp(log({n}) + {_field(la)}))"
    log_b = (
        f"{_field(c)} > {TOL!r} ? -0.5 * {_field(la)} : {_field(c)} < {-TOL!r} "
        f"? {half_n_abs_c} - 0.5 * {_field(la)} : 0.5 * log({n})"
    )
    return [
        *stability_constant(beta, gamma, out=c),
        *_log_bias_correction(n, beta, gamma, out=bc),
        (f"{out}_b", log_b),
        (
            out,
            f"{gamma} == 0 ? 1 / 0 : {_field(bc)} + {_log1p(f'(-{gamma})')} - log({gamma}) "
            f"+ 0.5 * (log({beta}) - {_log1p(f'(-{beta})')}) + {_field(out + '_b')}",
        ),
    ]


def log_discrete_max_update_bound(n: str, beta: str, gamma: str, *, out: str) -> Steps:
    """ln of the exact discrete bound, as bounds.log_discrete_max_update_bound (finite for every finite n)."""
    bc, lr, gs = f"{out}_bc", f"{out}_log_ratio", f"{out}_log_sum"
    generic = f"{_log_abs_expm1(f'(({n} + 1) * {_field(lr)})')} - {_log_abs_expm1(_field(lr))}"
    return [
        *_log_bias_correction(n, beta, gamma, out=bc),
        (lr, f"2 * log({gamma}) - log({beta})"),
        (gs, f"{_field(lr)} == 0 ? log({n} + 1) : {generic}"),
        (out, f"{_field(bc)} + {_log1p(f'(-{gamma})')} - 0.5 * {_log1p(f'(-{beta})')} + 0.5 * {_field(gs)}"),
    ]


def max_update_bound(n: str, beta: str, gamma: str, *, out: str) -> Steps:
    """Eq. 5's bound, exp of :func:`log_max_update_bound` (+Infinity instead of overflow)."""
    return [*log_max_update_bound(n, beta, gamma, out=f"{out}_log"), (out, f"exp({_field(out + '_log')})")]


def discrete_max_update_bound(n: str, beta: str, gamma: str, *, out: str) -> Steps:
    """The exact discrete bound, exp of :func:`log_discrete_max_update_bound`."""
    return [
        *log_discrete_max_update_bound(n, beta, gamma, out=f"{out}_log"),
        (out, f"exp({_field(out + '_log')})"),
    ]


def level_curve(c: str, beta: str, *, out: str) -> Steps:
    """gamma on the level curve C = c at ``beta``: 2 beta / ((c + 1) beta + 1), as bounds.level_curve
    (App. E)."""
    return [(out, f"2 * {beta} / (({c} + 1) * {beta} + 1)")]


def normal_curve(beta0: str, gamma0: str, beta: str, *, out: str) -> Steps:
    """gamma on the normal curve through (beta0, gamma0) at ``beta``: cbrt(k - 2 beta^3), k = 2 beta0^3 +
    gamma0^3, as bounds.normal_curve (App. E)."""
    k = f"{out}_k"
    x = f"({_field(k)} - 2 * pow({beta}, 3))"
    return [
        (k, f"2 * pow({beta0}, 3) + pow({gamma0}, 3)"),
        (out, f"{x} < 0 ? -pow(-{x}, 1 / 3) : pow({x}, 1 / 3)"),
    ]


# ------------------------------------------------------------ mirrors of continuous, ema, optim, scaling
def kernel(lag: str, alpha: str, *, out: str) -> Steps:
    """eta^p K_alpha at the lag t - tau = ``lag`` steps (eta^p = 1), a exp(-a lag), a = (1 - alpha)/alpha
    (Eq. 3),
    as continuous.kernel(0, lag, alpha, lr=1)."""
    a = f"{out}_rate"
    return [
        (a, f"(1 - {alpha}) / {alpha}"),
        (out, f"{lag} >= 0 ? {_field(a)} * exp(-{_field(a)} * max({lag}, 0)) : 0"),
    ]


def discrete_weights(alpha: str, lag: str, *, out: str) -> Steps:
    """(1 - alpha) alpha^j, the weight of x_{n-j} in Adam's EMA (Eq. 1), as ema.discrete_weights."""
    return [(out, f"(1 - {alpha}) * pow({alpha}, {lag})")]


#: Section 4.2's strategies as Vega expressions of the decay ``{x}`` and the number of levels ``{k}``
#: (kadam_edu.optim.STRATEGIES, the same arithmetic).
STRATEGY_EXPRESSIONS = {
    "inverse_exp": "1 - pow(1 - {x}, 1 / {k})",
    "exp": "pow({x}, {k})",
    "scaled": "{x} / {k}",
    "naive": "{x}",
}


def level_pair(strategy: str, k: str, beta: str, gamma: str, *, out: str) -> Steps:
    """The pair (gamma_i, beta_i) of kadam_levels(k, beta, gamma, strategy) into ``out + "_gamma"`` and
    ``out + "_beta"``; ``strategy`` is an expression giving one of STRATEGY_EXPRESSIONS' names."""

    def rule(x):
        expr = "NaN"
        for name, form in reversed(STRATEGY_EXPRESSIONS.items()):
            expr = f"{strategy} == '{name}' ? {form.format(x=f'({x})', k=f'({k})')} : {expr}"
        return expr

    return [(f"{out}_gamma", rule(gamma)), (f"{out}_beta", rule(beta))]


def scaled_decays(kappa: str, beta: str, gamma: str, *, out: str) -> Steps:
    """(beta', gamma') = (1 - kappa (1-beta), 1 - kappa (1-gamma)) into ``out + "_beta"``, ``out + "_gamma"``
    (the square-root rule, as scaling.scaled_decays)."""
    return [(f"{out}_beta", f"1 - {kappa} * (1 - {beta})"), (f"{out}_gamma", f"1 - {kappa} * (1 - {gamma})")]


def kappa_limit(beta: str, gamma: str, *, out: str) -> Steps:
    """1 / max(1-beta, 1-gamma), the largest kappa the square-root rule allows (scaling.kappa_limit)."""
    return [(out, f"1 / max(1 - {beta}, 1 - {gamma})")]


def crossing_kappa(beta: str, gamma: str, *, out: str) -> Steps:
    """kappa_c = 2/(1-beta) - 1/(1-gamma) (scaling.crossing_kappa)."""
    return [(out, f"2 / (1 - {beta}) - 1 / (1 - {gamma})")]


def discrete_crossing_kappa(beta: str, gamma: str, *, out: str) -> Steps:
    """kappa_d = (2a - b)/a^2, a = 1-gamma, b = 1-beta (scaling.discrete_crossing_kappa)."""
    return [(out, f"(2 * (1 - {gamma}) - (1 - {beta})) / ((1 - {gamma}) * (1 - {gamma}))")]


#: library function -> its Vega mirror here (what tests/test_live.py checks one against the other)
MIRRORS: dict[Callable, Callable[..., Steps]] = {
    bounds.stability_constant: stability_constant,
    bounds.region: region,
    bounds.growth_rate: growth_rate,
    bounds.discrete_growth_rate: discrete_growth_rate,
    bounds.log_max_update_bound: log_max_update_bound,
    bounds.max_update_bound: max_update_bound,
    bounds.log_discrete_max_update_bound: log_discrete_max_update_bound,
    bounds.discrete_max_update_bound: discrete_max_update_bound,
    bounds.level_curve: level_curve,
    bounds.normal_curve: normal_curve,
    continuous.kernel: kernel,
    ema.discrete_weights: discrete_weights,
    scaling.scaled_decays: scaled_decays,
    scaling.kappa_limit: kappa_limit,
    scaling.crossing_kappa: crossing_kappa,
    scaling.discrete_crossing_kappa: discrete_crossing_kappa,
}
