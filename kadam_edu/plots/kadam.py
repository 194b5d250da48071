"""Section 4.2, k-Adam (App. Q, App. T): Fig. 2 from its result
(:mod:`kadam_edu.experiments.kadam_cifar`; of several seeds: medians with their range, see
:func:`fig2`), each level's max-update against its bound on a run
(:mod:`kadam_edu.experiments.level_bounds`), and the view of a strategy's level pair."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from kadam_edu import bounds, levels, validate
from kadam_edu.optim import kadam_levels
from kadam_edu.plots.common import (draw_over_seeds, figure_row, first_seed, over_seeds, region_map, seed_points,
                                    seed_summaries)

__all__ = ["fig2", "level_bounds", "levels_view"]


def fig2(result) -> Figure:
    """Fig. 2: best test accuracy over the lr/wd sweep against k, per strategy (k = 1, Adam, in red).

    (a) each (strategy, k)'s best accuracy (:func:`~kadam_edu.experiments.kadam_cifar.best_by_k`);
    of a multi-seed result, the best within each seed, drawn as the median over the seeds with a
    bar from the lowest to the highest seed; (b) the test accuracy of each row's best run (of the
    first seed of a multi-seed result).
    """
    from kadam_edu.experiments.kadam_cifar import best_by_k

    tables = {s: {(r["strategy"], r["k"]): r for r in best_by_k(points)}
              for s, points in seed_points(result).items()}
    keys = list(dict.fromkeys(key for table in tables.values() for key in table))
    by_row = {key: {s: table[key] for s, table in tables.items() if key in table} for key in keys}

    def accuracy(rows):
        return seed_summaries(rows, lambda r: r["best_test_accuracy"])

    fig, (a, b) = figure_row(2)
    for i, strategy in enumerate(dict.fromkeys(strategy for strategy, _ in keys)):
        ks = [k for st, k in keys if st == strategy]
        drawn = [(k, acc) for k, acc in zip(ks, accuracy([by_row[strategy, k] for k in ks])) if acc.n]
        draw_over_seeds(a, [k for k, _ in drawn], [acc for _, acc in drawn], "o-", color=f"C{i}", label=strategy)
    adam = [acc for acc in accuracy([by_row[key] for key in keys if key[1] == 1]) if acc.n]
    if adam:
        draw_over_seeds(a, [1], adam[:1], "o", color="red", ms=9, zorder=3, label="k = 1 (Adam)")
    note = over_seeds(result)
    a.set(xlabel="k", ylabel="best test accuracy",
          title="(a) best over the lr/wd sweep" + (f"\n{note.strip(' ()')}" if note else ""))
    a.legend(fontsize=8)
    first, seed = first_seed(result)
    for i, r in enumerate(x for x in best_by_k(first) if x["index"] is not None):
        arr = result.point_arrays(r["index"])
        b.plot(arr["eval_epochs"], arr["test_accuracy"], color=f"C{i % 10}", lw=1.0,
               label=f"{r['strategy']}, k={r['k']}")
    b.set(xlabel="epoch", ylabel="test accuracy", title=f"(b) the best run of each row{seed}")
    b.legend(fontsize=7, ncol=2)
    data = result.data.get("dataset", "")
    fig.suptitle(f"Fig. 2 ({result.scale} scale): {data}", fontsize=9)
    return fig


# --------------------------------------------------------------------------- the levels and their bounds (App. T)
_N_MAX = validate.Real(lo=10.0, meaning="the last step drawn")


def _yscale(ax, values) -> None:
    """Log y when the finite positive values span more than a factor 30, else linear."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) and v.max() / v.min() > 30:
        ax.set_yscale("log")


def _ratio(r: float) -> str:
    """A measured/bound ratio: '1 + 1.2e-07' just above 1 (rounding), else 4 decimals."""
    return f"1 + {r - 1:.1e}" if 1.0 < r < 1.001 else f"{r:.4f}"


def levels_view(k, strategy="inverse_exp", beta=0.999, gamma=0.9, *, k_max=10, n_max=100_000) -> Figure:
    """Section 4.2 / App. Q / App. T: the level pair of ``kadam_levels(k, beta, gamma, strategy)``
    on the region map, and its max-update bound against the step n.

    (a) the (beta, gamma) plane (:func:`region_map`): Adam's pair (a star), the strategy's level
    pair for k = 1..k_max (a path, every level of a given k shares the pair) and the chosen k
    (a large dot). (b) the bound on every ``||u_n^(i)||_inf`` for n = 1..n_max: Eq. 5 / Eq. 16
    (solid) and the exact discrete bound (dashed), with Adam's (k = 1) in grey.
    ``k``: 1..k_max levels; ``strategy``: one of :data:`kadam_edu.optim.STRATEGIES`;
    ``beta``, ``gamma``: Adam's pair (paper notation). ValueError for anything else.
    """
    k_max, k = validate.positive_int("k_max", k_max), validate.positive_int("k", k)
    if k > k_max:
        raise ValueError(f"k must be in 1..k_max={k_max}; got {k}")
    n_max = _N_MAX("n_max", n_max)
    level = kadam_levels(k, beta=beta, gamma=gamma, strategy=strategy)[0]  # validates strategy, beta, gamma
    path = levels.strategy_path(strategy, k_max, beta=beta, gamma=gamma)
    adam = path[0]
    c = float(bounds.stability_constant(level.beta, level.gamma))

    fig, (a, b) = figure_row(2, width=4.8, height=3.8)
    region_map(a)
    pb, pg = np.array([p.beta for p in path]), np.array([p.gamma for p in path])
    a.plot(pb, pg, "-", color="0.5", lw=0.8, zorder=2)
    a.scatter(pb, pg, c=np.arange(1, k_max + 1), cmap="viridis", s=14, zorder=3, label=f"{strategy}, k = 1..{k_max}")
    a.plot([adam.beta], [adam.gamma], "*", color="k", ms=12, zorder=4, label=r"Adam $(\beta, \gamma)$")
    a.plot([level.beta], [level.gamma], "o", mfc="none", mec="C3", mew=2.0, ms=12, zorder=5,
           label=rf"k = {k}: $(\beta_i, \gamma_i)$")
    a.annotate("k = 1", (pb[0], pg[0]), textcoords="offset points", xytext=(-30, -12), fontsize=7)
    if k_max > 1:
        a.annotate(f"k = {k_max}", (pb[-1], pg[-1]), textcoords="offset points", xytext=(6, -10), fontsize=7)
    a.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, 0.9))
    a.set_title(f"(a) the level pair of '{strategy}'")

    n = np.unique(np.round(np.logspace(0, np.log10(n_max), 300)))
    drawn = []
    for lv, color, who in ((adam, "0.6", "Adam (k = 1)"), (level, "C3", f"k = {k}, each level")):
        for kind, ls, lw, name in (("continuous", "-", 1.6, "Eq. 5"), ("discrete", "--", 1.4, "discrete")):
            y = levels.level_bounds(n, [lv], kind=kind)[:, 0]
            y = np.where(y > 1e12, np.nan, y)  # B-: the bound explodes; stop drawing it past 1e12
            b.plot(n, y, ls, color=color, lw=lw, label=f"{who}: {name}")
            drawn.append(y)
    _yscale(b, np.concatenate(drawn))
    b.set(xscale="log", xlabel="step n", ylabel=r"bound on $\|u_n^{(i)}\|_\infty$")
    b.legend(fontsize=7)
    b.set_title(r"(b) the per-level bound (App. T)")
    sup_c = float(bounds.max_update_bound(np.inf, level.beta, level.gamma))
    sup_d = float(bounds.discrete_max_update_bound(np.inf, level.beta, level.gamma))
    fig.suptitle(
        rf"'{strategy}', k = {k}: every level has $\gamma_i$ = {level.gamma:.4g}, $\beta_i$ = {level.beta:.4g}, "
        rf"C = {c:.3g} ({bounds.region(level.beta, level.gamma)}); "
        rf"bound as n$\to\infty$: {sup_c:.3g} (Eq. 5), {sup_d:.3g} (discrete)",
        fontsize=9,
    )
    return fig


def level_bounds(result) -> Figure:
    """App. T on a training run (:func:`kadam_edu.experiments.level_bounds.level_bounds`).

    One column per strategy. Top: each level's measured ``||u_n^(i)||_inf`` (solid) and its
    exact discrete bound (dashed) and Eq. 5 bound (dotted) against the step n. Bottom: measured
    over discrete bound; the bound holds where the curve stays at or below 1.
    """
    pts = result.points
    if not pts:
        raise ValueError("this result has no points to draw")
    fig = Figure(figsize=(3.7 * len(pts), 5.6), layout="constrained")
    axes = np.array(fig.subplots(2, len(pts), sharex=True, squeeze=False))
    for j, p in enumerate(pts):
        arr = result.point_arrays(p["index"])
        mu, bd, bc = arr["level_max_updates"], arr["bound_discrete"], arr["bound_continuous"]
        n = np.arange(len(mu))
        top, bottom = axes[0, j], axes[1, j]
        shared = np.array_equal(bd, np.repeat(bd[:, :1], bd.shape[1], axis=1))  # one pair for every level
        for i in range(mu.shape[1]):
            color = f"C{i}"
            top.plot(n, mu[:, i], color=color, lw=1.0, label=f"level {i + 1}")
            if not shared or i == 0:
                top.plot(n, bd[:, i], color="k" if shared else color, ls="--", lw=1.0)
                top.plot(n, bc[:, i], color="k" if shared else color, ls=":", lw=1.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                bottom.plot(n, mu[:, i] / bd[:, i], color=color, lw=1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            low = np.nanmin(np.where(bd > 0, mu / bd, np.nan)) if mu.size else 1.0
        top.plot([], [], "k--", lw=1.0, label="discrete bound")
        top.plot([], [], "k:", lw=1.0, label="Eq. 5 bound")
        _yscale(top, np.concatenate([mu.ravel(), bd.ravel(), bc.ravel()]))
        top.set(title=f"{p['strategy']}, k = {p['k']}\n"
                rf"$\gamma_i$ = {p['level_gamma'][0]:.3g}, $\beta_i$ = {p['level_beta'][0]:.3g}")
        bottom.axhline(1.0, color="k", lw=0.8)
        bottom.set(xlabel="step n", ylim=(max(0.0, min(0.8, low - 0.05)), 1.03))
        bottom.text(0.97, 0.05, f"max ratio {_ratio(max(p['max_ratio_discrete']))}", transform=bottom.transAxes,
                    ha="right", fontsize=8)
    axes[0, 0].set_ylabel(r"$\|u_n^{(i)}\|_\infty$")
    axes[1, 0].set_ylabel("measured / discrete bound")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Per-level max-update against its bound (App. T), char GPT, {result.scale} scale", fontsize=10)
    return fig
