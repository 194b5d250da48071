r"""Kernel-free live charts for the book's static pages: the closed-form explorers of
:mod:`kadam_edu.widgets` as Vega-Lite specs (through Altair), recomputed in the reader's browser.

Each chart function returns an ``altair`` chart whose sliders are Vega-Lite params named in the
paper's notation (``beta`` second moment, ``gamma`` first moment, ``k``, ``strategy``, ``kappa``,
``steps``). Every number drawn is a Vega expression evaluated by the browser when a slider moves;
the expressions live here once, next to the library function each mirrors (:data:`MIRRORS`), in the
same numerically careful form (log space for Eq. 5, ``log1p``/``expm1`` written as Goldberg's and
Kahan's accurate forms, since Vega's expression language has neither), so that
``tests/test_live.py`` can evaluate each spec headless with Node and the ``vega`` package and find
the library's numbers to 1e-9.

    kernel_chart      Chapter 1 (Eq. 1-3): the kernels K_gamma, K_beta and Adam's EMA weights
    stability_chart   Chapter 2 (Section 3.1, Eq. 5, App. E): C, the region, both max-update bounds
    levels_chart      Chapter 4 (Section 4.2, App. Q, App. T): a strategy's level pair and its bounds
    scaling_chart     Chapter 5: the square-root rule's ray, C and both growth rates against kappa

Each chart names its marks (``<chart>_<what>_marks`` in the compiled Vega spec): the rows a mark
draws, with every computed field, are what the test reads. Altair is imported only when a chart
is built (it is in the ``book`` extra), so ``import kadam_edu`` never needs it.

The expressions and :data:`MIRRORS` live in :mod:`kadam_edu.live.expressions`.
"""

from __future__ import annotations

import numpy as np

from kadam_edu import validate
from kadam_edu.live.expressions import (  # noqa: F401  (the mirrors, re-exported)
    MIRRORS,
    STRATEGY_EXPRESSIONS,
    Steps,
    TOL,
    crossing_kappa,
    discrete_crossing_kappa,
    discrete_growth_rate,
    discrete_max_update_bound,
    discrete_weights,
    growth_rate,
    kappa_limit,
    kernel,
    level_curve,
    level_pair,
    log_discrete_max_update_bound,
    log_max_update_bound,
    max_update_bound,
    normal_curve,
    region,
    scaled_decays,
    stability_constant,
)
from kadam_edu.optim import STRATEGIES

__all__ = [
    "MIRRORS",
    "STRATEGY_EXPRESSIONS",
    "kernel_chart",
    "stability_chart",
    "levels_chart",
    "scaling_chart",
]

_C = {"C0": "#1f77b4", "C1": "#ff7f0e", "C2": "#2ca02c", "C3": "#d62728"}
_B_MINUS, _B_MINUS_TEXT, _B_PLUS_TEXT = "#f4cccc", "#a33", "#336"
_STAR = ("M0,-1L0.24,-0.33L0.95,-0.31L0.38,0.12L0.59,0.81L0"
         ",0.4L-0.59,0.81L-0.38,0.12L-0.95,-0.31L-0.24,-0.33Z")  # a five-pointed star


def _altair():
    try:
        import altair
    except ImportError as err:
        raise ImportError('the live charts need altair: pip install "kadam-edu[book]"') from err
    return altair




# --------------------------------------------------------------------------- chart helpers
def _calc(chart, *groups: Steps):
    for steps in groups:
        for field, expr in steps:
            chart = chart.transform_calculate(as_=field, calculate=expr)
    return chart


def _slider(alt, name: str, value, lo, hi, step, label: str):
    return alt.param(name=name, value=value, bind=alt.binding_range(min=lo, max=hi, step=step, name=label))


def _linspace(alt, lo: str, hi: str, num: int, *, as_: str):
    """A sequence of ``num`` points from ``lo`` to ``hi`` (Vega expressions), as np.linspace computes them."""
    seq = alt.Chart(alt.sequence(0, num, as_="i"))
    return seq.transform_calculate(
        as_=as_, calculate=f"datum.i == {num - 1} ? {hi} : datum.i * " f"(({hi} - {lo}) / {num - 1}) + {lo}"
    )


def _region_map(alt, name: str, *, title: str):
    """The (beta, gamma) plane as plots.common.region_map draws it: B- shaded above the level curve C = 0,
    C = 0 in black, the discrete boundary gamma^2 = beta dotted, the regions labelled."""
    x = alt.X("beta:Q", title="β (second moment)", scale=alt.Scale(domain=[0, 1], nice=False))
    y = alt.Y("gamma:Q", title="γ (first moment)", scale=alt.Scale(domain=[0, 1], nice=False))
    grid = _calc(
        _linspace(alt, "0.001", "0.99999", 400, as_="beta"),
        level_curve("0", "datum.beta", out="gamma"),
        [("top", "1"), ("root", "sqrt(datum.beta)")],
    )
    shade = grid.mark_area(color=_B_MINUS).encode(x=x, y=y, y2="top:Q").properties(name=f"{name}_b0")
    b0 = grid.mark_line(color="black", strokeWidth=1).encode(x=x, y=y)
    root = grid.mark_line(color="black", strokeDash=[1, 2], strokeWidth=1).encode(x=x, y=alt.Y("root:Q"))
    labels = alt.Chart(
        alt.Data(
            values=[
                {"beta": 0.03, "gamma": 0.93, "text": "B−", "color": _B_MINUS_TEXT},
                {"beta": 0.85, "gamma": 0.05, "text": "B+", "color": _B_PLUS_TEXT},
            ]
        )
    )
    text = labels.mark_text(align="left", fontSize=14).encode(
        x=x, y=y, text="text:N", color=alt.Color("color:N", scale=None)
    )
    return [shade.properties(title=title), b0, root, text], x, y


def _width(chart, width=300, height=260):
    return chart.properties(width=width, height=height)


# --------------------------------------------------------------------------- Chapter 1
def kernel_chart(beta: float = 0.999, gamma: float = 0.9, steps: int = 300):
    """Chapter 1 (Eq. 1-3): eta^p K_alpha against the lag in steps (lines) with Adam's weights
    (1 - alpha) alpha^j
    (dots) for alpha = gamma (first moment, C0) and beta (second moment, C1), the mean lags alpha/(1-alpha)
    dotted; log weight axis, as panel (a) of :func:`kadam_edu.plots.kernel_view`. The moving averages of the
    noisy toy signal (its panels b, c) need the kernel: they are in the explorer, not here.

    Sliders (the explorer's ranges): ``beta`` in [0.5, 0.9999], ``gamma`` in [0.01, 0.99], ``steps`` in
    [20, 1000]; ValueError outside them. Marks: ``kernel_curves_marks`` (lag, alpha, weight),
    ``kernel_weights_marks`` (j, alpha, weight), ``kernel_lags_marks``.
    """
    beta = validate.finite_real("beta", beta, lo=0.5, hi=0.9999, meaning="the slider's range")
    gamma = validate.finite_real("gamma", gamma, lo=0.01, hi=0.99, meaning="the slider's range")
    steps = validate.integer("steps", steps, lo=20, hi=1000, meaning="the slider's range")
    alt = _altair()
    params = [
        _slider(alt, "beta", beta, 0.5, 0.9999, 0.0001, "β (2nd moment) "),
        _slider(alt, "gamma", gamma, 0.01, 0.99, 0.01, "γ (1st moment) "),
        _slider(alt, "steps", steps, 20, 1000, 10, "steps n "),
    ]
    top = "max((1 - gamma) / gamma, (1 - beta) / beta)"  # the largest weight, K at lag 0
    x = alt.X("lag:Q", title="lag j = (t − τ)/η^p (steps)", scale=alt.Scale(domain=alt.ExprRef("[0, steps]")))
    y = alt.Y(
        "weight:Q",
        title="weight per step",
        scale=alt.Scale(type="log", domain=alt.ExprRef(f"[{top} * 1e-4, {top} * 2]")),
    )
    label = (
        "datum.label == 'gamma' ? 'η^p K_γ and (1−γ)γ^j, γ = ' + format(gamma, '.4g') "
        ": 'η^p K_β and (1−β)β^j, β = ' + format(beta, '.4g')"
    )
    color = alt.Color(
        "alpha:N",
        scale=alt.Scale(domain=["gamma", "beta"], range=[_C["C0"], _C["C1"]]),
        legend=alt.Legend(title=None, labelExpr=label, orient="top-right", labelLimit=400),
    )

    def per_decay(chart):  # one row per (point, alpha): "alpha" names the decay, "decay" is its value
        return chart.transform_fold(["gamma", "beta"], as_=["alpha", "unused"]).transform_calculate(
            decay="datum.alpha == 'gamma' ? gamma : beta"
        )

    curve = per_decay(_linspace(alt, "0", "steps", 800, as_="lag"))
    curve = _calc(curve, kernel("datum.lag", "datum.decay", out="weight")).transform_filter(
        "datum.weight > 0"
    )
    curve = curve.mark_line(strokeWidth=1.4, clip=True).encode(x=x, y=y, color=color, detail="alpha:N")
    marks = per_decay(
        alt.Chart(alt.sequence(-1, 40, as_="i")).transform_calculate(
            lag="datum.i < 0 ? 0 : floor(pow(steps, datum.i / 39))"
        )
    ).transform_filter("datum.lag < steps")
    marks = _calc(marks, discrete_weights("datum.decay", "datum.lag", out="weight"))
    marks = marks.mark_point(size=20, filled=False, clip=True).encode(x=x, y=y, color=color)
    lags = (
        per_decay(alt.Chart(alt.Data(values=[{}])))
        .transform_calculate(lag="datum.decay / (1 - datum.decay)")
        .transform_filter("datum.lag <= steps")
    )
    lags = lags.mark_rule(strokeDash=[2, 2]).encode(x=x, color=color)
    title = alt.TitleParams(
        alt.ExprRef(
            "'kernels of Eq. 3 (lines) and Adam\\'s weights (1−α)α^j (dots); "
            "mean lags ' + format(gamma / (1 - gamma), '.3g') + ' and ' + "
            "format(beta / (1 - beta), '.3g') + ' steps'"
        ),
        fontSize=11,
    )
    chart = alt.layer(
        curve.properties(name="kernel_curves"),
        marks.properties(name="kernel_weights"),
        lags.properties(name="kernel_lags"),
    )
    return _width(chart, 520, 300).add_params(*params).properties(title=title)


# --------------------------------------------------------------------------- Chapter 2
def stability_chart(beta: float = 0.999, gamma: float = 0.9, n_max: int = 1000):
    """Chapter 2 (Section 3.1, Eq. 5, App. E), as :func:`kadam_edu.plots.stability_view`: (a) the region map
    with the point (a gold star) and the level curve (C0) and normal curve (C1) through it; (b) ln of
    Eq. 5's bound (black, dashed) and of the exact discrete bound (C2) for n = 0..n_max, their slopes
    max(0, -C)/2 and max(0, ln gamma - ln(beta)/2) in the legend; C and the region in the title.

    Sliders: ``beta``, ``gamma`` in [0.5, 0.9999] (the explorer's); ``n_max`` (fixed) an integer in
    [1, 10**6]. Marks: ``stability_point_marks`` (C, region, both rates), ``stability_bounds_marks``
    (n, log_bound, log_discrete_bound), ``stability_level_curve_marks``, ``stability_normal_curve_marks``.
    """
    beta = validate.finite_real("beta", beta, lo=0.5, hi=0.9999, meaning="the slider's range")
    gamma = validate.finite_real("gamma", gamma, lo=0.5, hi=0.9999, meaning="the slider's range")
    n_max = validate.integer("n_max", n_max, lo=1, hi=10**6, meaning="the last step drawn")
    alt = _altair()
    params = [
        _slider(alt, "beta", beta, 0.5, 0.9999, 0.0001, "β (2nd moment) "),
        _slider(alt, "gamma", gamma, 0.5, 0.9999, 0.0001, "γ (1st moment) "),
    ]
    summary = [
        *stability_constant("beta", "gamma", out="C"),
        *region("datum.C", out="region"),
        *growth_rate("datum.C", out="rate"),
        *discrete_growth_rate("beta", "gamma", out="discrete_rate"),
    ]
    layers, x, y = _region_map(
        alt, "stability_map", title="(a) the region map and the curves through the point"
    )
    point = _calc(alt.Chart(alt.Data(values=[{}])).transform_calculate(beta="beta", gamma="gamma"), summary)
    point = point.mark_point(
        shape=_STAR,
        size=250,
        filled=True,
        color="gold",
        stroke="black",
        strokeWidth=0.8,
    ).encode(x=x, y=y)
    curves = _calc(
        _linspace(alt, "0.001", "0.99999", 400, as_="beta"),
        stability_constant("beta", "gamma", out="C0"),
        level_curve("datum.C0", "datum.beta", out="level_gamma"),
        normal_curve("beta", "gamma", "datum.beta", out="normal_gamma"),
    )
    inside = "datum.{0} > 0 && datum.{0} < 1"
    level = (
        curves.transform_filter(inside.format("level_gamma"))
        .mark_line(color=_C["C0"], strokeWidth=1.5)
        .encode(x=x, y=alt.Y("level_gamma:Q"))
    )
    normal = (
        curves.transform_filter(inside.format("normal_gamma"))
        .mark_line(color=_C["C1"], strokeWidth=1.5)
        .encode(x=x, y=alt.Y("normal_gamma:Q"))
    )
    region_panel = _width(
        alt.layer(
            *layers,
            level.properties(name="stability_level_curve"),
            normal.properties(name="stability_normal_curve"),
            point.properties(name="stability_point"),
        )
    )
    n = alt.Chart(alt.sequence(0, n_max + 1, as_="n"))
    n = _calc(
        n,
        log_max_update_bound("datum.n", "beta", "gamma", out="log_bound"),
        log_discrete_max_update_bound("datum.n", "beta", "gamma", out="log_discrete_bound"),
        growth_rate("datum.log_bound_C", out="rate"),
        discrete_growth_rate("beta", "gamma", out="discrete_rate"),
    )
    n = n.transform_fold(["log_bound", "log_discrete_bound"], as_=["bound", "value"]).transform_filter(
        "isFinite(datum.value)"
    )
    series = alt.Scale(domain=["log_bound", "log_discrete_bound"], range=["black", _C["C2"]])
    label = (
        "datum.label == 'log_bound' ? 'Eq. 5; slope → ' + format(max(0, -C) / 2, '.4g') : "
        "'exact discrete; slope → ' + format(max(0, log(gamma) - 0.5 * log(beta)), '.4g')"
    )
    bounds_panel = (
        n.mark_line(strokeWidth=1.4)
        .encode(
            x=alt.X("n:Q", title="iteration n"),
            y=alt.Y("value:Q", title="ln of the bound on ‖u_n‖_∞"),
            color=alt.Color(
                "bound:N", scale=series, legend=alt.Legend(title=None, labelExpr=label, orient="top-left")
            ),
            strokeDash=alt.StrokeDash(
                "bound:N",
                scale=alt.Scale(domain=["log_bound", "log_discrete_bound"], range=[[6, 3], [1, 0]]),
                legend=None,
            ),
        )
        .properties(name="stability_bounds", title="(b) max-update bounds")
    )
    c_param = alt.param(name="C", expr=_inline(stability_constant("beta", "gamma", out="C"), "C"))
    title = alt.TitleParams(
        alt.ExprRef(
            "'(β, γ) = (' + format(beta, '.4g') + ', ' + format(gamma, '.4g') + '):  C = ' + "
            f"(abs(C) <= {TOL!r} ? '0' : format(C, '.4g')) + ' (' + "
            f"(C > {TOL!r} ? 'B+' : C < {-TOL!r} ? 'B−' : 'B0') + ')'"
        ),
        fontSize=13,
    )
    chart = alt.hconcat(region_panel, _width(bounds_panel)).resolve_scale(color="independent")
    chart = chart.add_params(*params, c_param)
    return chart.properties(title=title)


def _inline(steps: Steps, out: str) -> str:
    """One expression for ``out`` from steps naming earlier fields datum.<field> (for a param's expr)."""
    exprs: dict[str, str] = {}
    for field, expr in steps:
        for name in sorted(exprs, key=len, reverse=True):
            expr = expr.replace(f"datum.{name}", f"({exprs[name]})")
        exprs[field] = expr
    return exprs[out]


# --------------------------------------------------------------------------- Chapter 4
def levels_chart(
    k: int = 2,
    strategy: str = "inverse_exp",
    beta: float = 0.999,
    gamma: float = 0.9,
    *,
    k_max: int = 10,
    n_max: int = 100_000,
):
    """Chapter 4 (Section 4.2, App. Q, App. T), as :func:`kadam_edu.plots.levels_view`: (a) the region map
    with
    Adam's pair (black star), the strategy's level pair for k = 1..k_max (viridis dots on a grey path) and
    the chosen k (red ring); (b) the bound on every ||u_n^(i)||_inf for n = 1..n_max on log-log axes, Eq. 5 /
    Eq. 16 (solid) and the exact discrete bound (dashed), Adam's in grey and k levels' in C3 (not drawn
    past 1e12). The matplotlib view picks a linear y axis when the bounds span less than 30x; here it is log.

    Sliders: ``k`` in 1..k_max, ``strategy`` (a select over kadam_edu.optim.STRATEGIES), ``beta`` in
    [0.5, 0.9999], ``gamma`` in [0, 0.99] (the explorer's); ``k_max`` an integer in [1, 100], ``n_max`` a
    number >= 10 (fixed). Marks: ``levels_path_marks`` (k, level_gamma, level_beta),
    ``levels_pair_marks`` (the chosen pair: C, region, sup bounds), ``levels_bounds_marks`` (n, pair, kind,
    bound).
    """
    k_max = validate.integer("k_max", k_max, lo=1, hi=100, meaning="the largest k on the slider")
    k = validate.integer("k", k, lo=1, hi=k_max, meaning="up to k_max")
    strategy = validate.choice("strategy", strategy, list(STRATEGIES), meaning="Section 4.2")
    beta = validate.finite_real("beta", beta, lo=0.5, hi=0.9999, meaning="the slider's range")
    gamma = validate.finite_real("gamma", gamma, lo=0.0, hi=0.99, meaning="the slider's range")
    n_max = validate.finite_real("n_max", n_max, lo=10.0, meaning="the last step drawn")
    alt = _altair()
    params = [
        _slider(alt, "k", k, 1, k_max, 1, "k (levels) "),
        alt.param(
            name="strategy",
            value=strategy,
            bind=alt.binding_select(options=list(STRATEGIES), name="strategy "),
        ),
        _slider(alt, "beta", beta, 0.5, 0.9999, 0.0001, "β (2nd moment) "),
        _slider(alt, "gamma", gamma, 0.0, 0.99, 0.01, "γ (1st moment) "),
    ]
    layers, x, y = _region_map(alt, "levels_map", title="(a) the level pair of the strategy")
    path = alt.Chart(alt.sequence(1, k_max + 1, as_="k"))
    path = _calc(path, level_pair("strategy", "datum.k", "beta", "gamma", out="level")).transform_calculate(
        beta="datum.level_beta", gamma="datum.level_gamma"
    )
    path_line = path.mark_line(color="#808080", strokeWidth=0.8).encode(x=x, y=y, order="k:Q")
    path_dots = path.mark_circle(size=30, opacity=1).encode(
        x=x, y=y, color=alt.Color("k:Q", scale=alt.Scale(scheme="viridis"), legend=alt.Legend(title="k"))
    )
    adam = (
        alt.Chart(alt.Data(values=[{}]))
        .transform_calculate(beta="beta", gamma="gamma")
        .mark_point(
            shape=_STAR,
            size=180,
            filled=True,
            color="black",
        )
        .encode(x=x, y=y)
    )
    pair = _calc(
        alt.Chart(alt.Data(values=[{}])),
        level_pair("strategy", "k", "beta", "gamma", out="level"),
        stability_constant("datum.level_beta", "datum.level_gamma", out="C"),
        region("datum.C", out="region"),
        max_update_bound("1 / 0", "datum.level_beta", "datum.level_gamma", out="sup_bound"),
        discrete_max_update_bound("1 / 0", "datum.level_beta", "datum.level_gamma", out="sup_discrete_bound"),
    )
    pair = (
        pair.transform_calculate(beta="datum.level_beta", gamma="datum.level_gamma")
        .mark_point(size=220, filled=False, color=_C["C3"], strokeWidth=2)
        .encode(x=x, y=y)
    )
    region_panel = _width(
        alt.layer(
            *layers,
            path_line,
            path_dots.properties(name="levels_path"),
            adam,
            pair.properties(name="levels_pair"),
        )
    )

    n_grid = np.unique(np.round(np.logspace(0, np.log10(n_max), 300)))
    rows = alt.Chart(alt.Data(values=[{"n": float(v)} for v in n_grid]))
    rows = rows.transform_fold(["adam", "levels"], as_=["pair", "unused"]).transform_fold(
        ["continuous", "discrete"], as_=["kind", "unused"]
    )
    rows = _calc(
        rows,
        level_pair("strategy", "datum.pair == 'levels' ? k : 1", "beta", "gamma", out="level"),
        max_update_bound("datum.n", "datum.level_beta", "datum.level_gamma", out="eq5"),
        discrete_max_update_bound("datum.n", "datum.level_beta", "datum.level_gamma", out="discrete"),
    )
    rows = rows.transform_calculate(
        bound="datum.kind == 'continuous' ? datum.eq5 : datum.discrete"
    ).transform_calculate(drawn="datum.bound > 1e12 ? NaN : datum.bound")
    bounds_panel = (
        rows.mark_line(strokeWidth=1.5)
        .encode(
            x=alt.X("n:Q", title="step n", scale=alt.Scale(type="log")),
            y=alt.Y("drawn:Q", title="bound on ‖u_n^(i)‖_∞", scale=alt.Scale(type="log")),
            color=alt.Color(
                "pair:N",
                scale=alt.Scale(domain=["adam", "levels"], range=["#999999", _C["C3"]]),
                legend=alt.Legend(
                    title=None,
                    labelExpr=("datum.label == 'adam' ? 'Adam (k = 1)' : 'k = ' + k + ', each level'"),
                ),
            ),
            strokeDash=alt.StrokeDash(
                "kind:N",
                scale=alt.Scale(domain=["continuous", "discrete"], range=[[1, 0], [6, 3]]),
                legend=alt.Legend(
                    title=None, labelExpr=("datum.label == 'continuous' ? 'Eq. 5' : 'exact discrete'")
                ),
            ),
            detail="kind:N",
        )
        .properties(name="levels_bounds", title="(b) the per-level bound (App. T)")
    )
    title = alt.TitleParams(
        alt.ExprRef(
            "'\\'' + strategy + '\\', k = ' + k + ': every level has its own pair (γ_i, β_i) of the strategy'"
        ),
        fontSize=12,
    )
    chart = alt.hconcat(region_panel, _width(bounds_panel)).resolve_scale(color="independent")
    return chart.add_params(*params).properties(title=title)


# --------------------------------------------------------------------------- Chapter 5
def scaling_chart(kappa: float = 4.0, beta: float = 0.95, gamma: float = 0.97):
    """Chapter 5, as :func:`kadam_edu.plots.scaling_view`: the square-root rule moves (beta, gamma) to
    (1 - kappa (1-beta), 1 - kappa (1-gamma)). (a) the region map with the rule's ray (C2) from (1, 1), the
    points at kappa = 1 and kappa (blue in B+, red in B-) and kappa_c, kappa_d where the ray crosses C = 0
    and gamma'^2 = beta'; (b) C(beta', gamma') (black), the continuous rate max(0, -C)/2 (C3, dashed) and the
    discrete rate max(0, ln gamma' - ln(beta')/2) (C1, dotted) against kappa up to the rule's limit, kappa
    marked (C2). The y axis runs from -1.02 (the matplotlib view: the lowest C drawn, at least -1,
    minus 0.02).

    Sliders (the explorer's): ``kappa`` in [0.25, 40], ``beta`` in [0.5, 0.9995], ``gamma`` in [0, 0.9995];
    a kappa beyond the rule's limit hides the scaled point and says so in the title. Marks:
    ``scaling_curve_marks`` (kappa, scaled_beta, scaled_gamma, C, rate, discrete_rate, long format),
    ``scaling_ray_marks``, ``scaling_points_marks``, ``scaling_crossings_marks``.
    """
    kappa = validate.finite_real("kappa", kappa, lo=0.25, hi=40.0, meaning="the slider's range")
    beta = validate.finite_real("beta", beta, lo=0.5, hi=0.9995, meaning="the slider's range")
    gamma = validate.finite_real("gamma", gamma, lo=0.0, hi=0.9995, meaning="the slider's range")
    alt = _altair()
    params = [
        _slider(alt, "kappa", kappa, 0.25, 40.0, 0.25, "κ (batch multiplier) "),
        _slider(alt, "beta", beta, 0.5, 0.9995, 0.0005, "β (2nd moment) "),
        _slider(alt, "gamma", gamma, 0.0, 0.9995, 0.0005, "γ (1st moment) "),
    ]
    limit = _inline(kappa_limit("beta", "gamma", out="limit"), "limit")
    kmax = f"min({limit}, 1 / (1 - beta))"
    derived = [
        alt.param(name="kappa_max", expr=kmax),
        alt.param(name="kappa_c", expr=_inline(crossing_kappa("beta", "gamma", out="kc"), "kc")),
        alt.param(name="kappa_d", expr=_inline(discrete_crossing_kappa("beta", "gamma", out="kd"), "kd")),
        alt.param(name="C_base", expr=_inline(stability_constant("beta", "gamma", out="C"), "C")),
        alt.param(
            name="C_now",
            expr=_inline(
                [
                    *scaled_decays("kappa", "beta", "gamma", out="s"),
                    *stability_constant("datum.s_beta", "datum.s_gamma", out="C"),
                ],
                "C",
            ),
        ),
    ]
    layers, x, y = _region_map(alt, "scaling_map", title="(a) the rule's ray and the scaled points")
    ray = (
        _calc(
            _linspace(
                alt, "0", _inline(kappa_limit("beta", "gamma", out="limit"), "limit"), 200, as_="kappa"
            ),
            scaled_decays("datum.kappa", "beta", "gamma", out="s"),
        )
        .transform_calculate(beta="datum.s_beta", gamma="datum.s_gamma")
        .mark_line(color=_C["C2"], strokeWidth=1)
        .encode(x=x, y=y)
    )
    points = (
        alt.Chart(alt.Data(values=[{"which": 1}, {"which": 2}]))
        .transform_calculate(kappa="datum.which == 1 ? 1 : kappa")
        .transform_filter("datum.kappa > 0 && datum.kappa < kappa_max")
    )
    points = _calc(
        points,
        scaled_decays("datum.kappa", "beta", "gamma", out="s"),
        stability_constant("datum.s_beta", "datum.s_gamma", out="C"),
        region("datum.C", out="region"),
    )
    points = points.transform_calculate(
        beta="datum.s_beta", gamma="datum.s_gamma", sign="datum.C > 0 ? 1 : -1"
    )
    points = points.mark_point(filled=True, size=60, stroke="black", strokeWidth=0.5).encode(
        x=x,
        y=y,
        color=alt.Color("sign:O", scale=alt.Scale(domain=[1, -1], range=["#3b4cc0", "#b40426"]), legend=None),
    )
    crossings = (
        alt.Chart(alt.Data(values=[{"name": "κ_c"}, {"name": "κ_d"}]))
        .transform_calculate(kappa="datum.name == 'κ_c' ? kappa_c : kappa_d")
        .transform_filter(f"datum.kappa > 0 && datum.kappa < {limit}")
    )
    crossings = _calc(crossings, scaled_decays("datum.kappa", "beta", "gamma", out="s")).transform_calculate(
        beta="datum.s_beta", gamma="datum.s_gamma"
    )
    crossings = crossings.mark_point(filled=True, size=70, color="black").encode(
        x=x,
        y=y,
        shape=alt.Shape(
            "name:N",
            scale=alt.Scale(domain=["κ_c", "κ_d"], range=["cross", "square"]),
            legend=alt.Legend(title=None, orient="bottom-left"),
        ),
    )
    region_panel = _width(
        alt.layer(
            *layers,
            ray.properties(name="scaling_ray"),
            points.properties(name="scaling_points"),
            crossings.properties(name="scaling_crossings"),
        )
    )

    curve = _linspace(alt, "kappa_max / 400", "kappa_max * (1 - 1e-6)", 400, as_="kappa")
    curve = _calc(
        curve,
        scaled_decays("datum.kappa", "beta", "gamma", out="scaled"),
        stability_constant("datum.scaled_beta", "datum.scaled_gamma", out="C"),
        growth_rate("datum.C", out="rate"),
        discrete_growth_rate("datum.scaled_beta", "datum.scaled_gamma", out="discrete_rate"),
    )
    names = ["C", "rate", "discrete_rate"]
    curve = curve.transform_fold(names, as_=["quantity", "value"])
    top = "max(0.3, 1.5 * C_base, 1.3 * C_now)"
    lines = (
        curve.mark_line(clip=True)
        .encode(
            x=alt.X("kappa:Q", title="batch-size multiplier κ"),
            y=alt.Y(
                "value:Q",
                title="C, or growth rate per step",
                scale=alt.Scale(domain=alt.ExprRef(f"[-1.02, {top}]"), nice=False),
            ),
            color=alt.Color(
                "quantity:N",
                scale=alt.Scale(domain=names, range=["black", _C["C3"], _C["C1"]]),
                legend=alt.Legend(
                    title=None,
                    labelExpr=(
                        "datum.label == 'C' ? 'C(β′, γ′)' : datum.label == 'rate' ? "
                        "'continuous rate max(0, −C)/2' : 'discrete rate max(0, ln γ′ − ln β′/2)'"
                    ),
                ),
            ),
            strokeDash=alt.StrokeDash(
                "quantity:N", scale=alt.Scale(domain=names, range=[[1, 0], [6, 3], [1, 2]]), legend=None
            ),
        )
        .properties(name="scaling_curve")
    )
    zero = (
        alt.Chart(alt.Data(values=[{"value": 0}]))
        .mark_rule(color="#999999", strokeWidth=0.6)
        .encode(y="value:Q")
    )
    now = (
        alt.Chart(alt.Data(values=[{}]))
        .transform_calculate(kappa="kappa")
        .transform_filter("kappa < kappa_max")
        .mark_rule(color=_C["C2"])
        .encode(x="kappa:Q")
    )
    title_b = alt.TitleParams(
        alt.ExprRef(
            f"'(b) along the ray: ' + (kappa_c > 0 && kappa_c < {limit} "
            "? 'κ_c = ' + format(kappa_c, '.3g') : 'never in B−') + ', ' + "
            f"(kappa_d > 0 && kappa_d < {limit} ? 'κ_d = ' + format(kappa_d, '.3g') : "
            "'γ′² < β′ throughout')"
        ),
        fontSize=11,
    )
    curve_panel = _width(alt.layer(lines, zero, now).properties(title=title_b))
    title = alt.TitleParams(
        alt.ExprRef(
            "'Square-root rule from (β, γ) = (' + format(beta, '.4g') + ', ' + "
            "format(gamma, '.4g') + '): ' + "
            "(kappa < kappa_max ? 'κ = ' + format(kappa, '.3g') + ' gives C = ' + format(C_now, '.3g') : "
            "'κ = ' + format(kappa, '.3g') + ' is beyond the rule\\'s range (κ < ' + "
            "format(kappa_max, '.4g') + ')')"
        ),
        fontSize=13,
    )
    chart = alt.hconcat(region_panel, curve_panel).resolve_scale(
        color="independent", strokeDash="independent"
    )
    return chart.add_params(*params, *derived).properties(title=title)
