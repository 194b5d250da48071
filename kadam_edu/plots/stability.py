"""Section 3, the stability region of (beta, gamma) (Eq. 5, App. E): Fig. 1, 3, 9-12 from their
results (:mod:`kadam_edu.experiments.stability`), the measured max-update over its bounds, and the
views of one (beta, gamma) point and of the level and normal curves.

A multi-seed result draws the first seed's trajectories, a statistic per grid point (Fig. 1's
slope, Figs. 9-11's best test loss) as the median over the seeds with a bar from the lowest to the
highest seed, and in :func:`bound_ratio` every run of every seed (see :mod:`kadam_edu.plots.common`)."""

from __future__ import annotations

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from kadam_edu import bounds, validate
from kadam_edu.plots.common import (CMAP, c_norm, draw_over_seeds, figure_row, first_seed, over_seeds, region_map,
                                    seed_grid, seed_points, seed_summaries)

__all__ = ["fig1", "fig3", "fig9", "fig10", "fig11", "fig12", "bound_ratio", "stability_view", "curves_map"]


def _points(result):
    """The grid points (the first seed's summaries): beta, gamma, C as arrays, and the summaries."""
    pts, _ = first_seed(result)
    return (np.array([p["beta"] for p in pts]), np.array([p["gamma"] for p in pts]),
            np.array([p["C"] for p in pts]), pts)


def _zoom(betas, gammas, pad=0.15):
    lo = (max(0.0, betas.min() - pad * np.ptp(betas) - 1e-3), max(0.0, gammas.min() - pad * np.ptp(gammas) - 1e-3))
    hi = (min(1.0, betas.max() + pad * np.ptp(betas) + 1e-3), min(1.0, gammas.max() + pad * np.ptp(gammas) + 1e-3))
    return lo, hi


def _trajectories(ax, result, key, *, bound=None, logy=True) -> str:
    """The first seed's runs of array ``key`` coloured by C (with ``bound`` dotted); returns the
    words for the panel's title (:func:`~kadam_edu.plots.common.first_seed`)."""
    betas, gammas, cs, pts = _points(result)
    norm = c_norm(cs)
    for p, c in zip(pts, cs):
        y = result.point_arrays(p["index"]).get(key)
        if y is None or len(y) == 0:
            continue
        x = np.arange(len(y)) if key != "eval_loss" else result.point_arrays(p["index"])["eval_steps"]
        ax.plot(x, y, color=CMAP(norm(c)), lw=1.0)
        if bound is not None:
            n = np.arange(result.config["steps"])
            ax.plot(n, bound(n, p["beta"], p["gamma"]), color=CMAP(norm(c)), lw=0.8, ls=":")
        if p.get("diverged_at") is not None:
            ax.plot(x[-1], y[-1], "x", color=CMAP(norm(c)))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("iteration n")
    return first_seed(result)[1]


def fig1(result) -> Figure:
    """Fig. 1: (a) ||u_n||_inf with Eq. 5 (dotted), (b) measured slope against both laws, (c) the points."""
    fig, (a, b, c) = figure_row(3)
    seed = _trajectories(a, result, "max_update", bound=bounds.max_update_bound)
    betas, gammas, cs, pts = _points(result)
    top = max(np.nanmax(result.point_arrays(p["index"])["max_update"]) for p in pts)
    a.set(ylabel=r"max-update $\|u_n\|_\infty$", ylim=(None, top * 10), title=f"(a) max-update; Eq. 5 dotted{seed}")
    grid = seed_grid(result)
    grid_cs = np.array([next(iter(per_seed.values()))["C"] for per_seed in grid])
    slopes = seed_summaries(grid, lambda p: p["measured_slope"])
    measured = np.array([s.median for s in slopes])
    # both laws along the same stretch of the curve, densely
    dense_b, dense_g = bounds.normal_curve(*result.data.get("reference", (0.999, 0.9)), 400,
                                           beta_range=tuple(result.config["beta_range"]))
    dense_c = bounds.stability_constant(dense_b, dense_g)
    b.plot(dense_c, bounds.discrete_growth_rate(dense_b, dense_g), "-", color="C2",
           label=r"discrete: $\ln\gamma-\frac{1}{2}\ln\beta$")
    b.plot(dense_c, bounds.growth_rate(dense_b, dense_g), "--", color="k", label=r"paper: $|C|/2$")
    if any(s.total > 1 for s in slopes):  # the range over the seeds, under the medians
        draw_over_seeds(b, grid_cs, slopes, "none", ecolor="0.3", elinewidth=0.8, zorder=2)
    b.scatter(grid_cs, measured, c=grid_cs, cmap=CMAP, norm=c_norm(cs), zorder=3,
              label=f"measured{over_seeds(result)}", edgecolors="0.3", linewidths=0.4)
    n0 = pts[0].get("slope_at")
    b.set(xlabel=r"$C(\beta,\gamma)$", ylabel=rf"slope of $\log\|u_n\|_\infty$ at n={n0}", title="(b) growth rate")
    b.legend(fontsize=8)
    lo, hi = _zoom(betas, gammas)
    region_map(c, betas, gammas, cs, lo=lo, hi=hi)
    bb, gg = bounds.normal_curve(*result.data.get("reference", (0.999, 0.9)), 400)
    c.plot(bb, gg, color="0.4", lw=0.8)
    c.set_title("(c) points on the normal curve")
    fig.suptitle(f"Fig. 1 ({result.scale} scale)")
    return fig


def fig3(result) -> Figure:
    """Fig. 3: max-update on B0 with Eq. 5's sqrt(n) bound (dotted)."""
    fig, (a, c) = figure_row(2)
    seed = _trajectories(a, result, "max_update", bound=bounds.max_update_bound)
    a.set(ylabel=r"$\|u_n\|_\infty$", title=r"(a) max-update on $\mathcal{B}_0$; Eq. 5 ($\sqrt{n}$) dotted" + seed)
    betas, gammas, cs, _ = _points(result)
    lo, hi = _zoom(betas, gammas)
    region_map(c, betas, gammas, cs, lo=lo, hi=hi)
    c.set_title(r"(b) points on $C=0$")
    fig.suptitle(f"Fig. 3 ({result.scale} scale)")
    return fig


def _generalisation(result, title) -> Figure:
    fig, (a, b, c) = figure_row(3)
    seed = _trajectories(a, result, "eval_loss", logy=False)
    a.set(ylabel="test loss", title=f"(a) test loss{seed}")
    betas, gammas, cs, pts = _points(result)
    grid = seed_grid(result)
    keys = sorted({k for p in result.points for k in p if k.startswith("best_test_loss_")},
                  key=lambda k: int(k.rsplit("_", 1)[1]))
    level = result.data.get("curve") == "level"  # C is constant there: use beta instead
    first = [next(iter(per_seed.values())) for per_seed in grid]
    x = np.array([p["beta"] for p in first]) if level else np.array([p["C"] for p in first])
    xlabel = r"$\beta$ (along the level curve)" if level else r"$C(\beta,\gamma)$"
    for key, marker in zip(keys, "os"):
        draw_over_seeds(b, x, seed_summaries(grid, lambda p: p.get(key)), marker, ls="-",
                        label=f"best by n={key.rsplit('_', 1)[1]}{over_seeds(result)}")
    b.set(xlabel=xlabel, ylabel="best test loss", title="(b) best test loss")
    b.legend(fontsize=8)
    lo, hi = _zoom(betas, gammas)
    region_map(c, betas, gammas, cs, lo=lo, hi=hi)
    c.set_title("(c) the points")
    fig.suptitle(f"{title} ({result.scale} scale)")
    return fig


def fig9(result) -> Figure:
    """Fig. 9: test loss along the normal curve through (0.999, 0.9)."""
    return _generalisation(result, "Fig. 9: normal curve through (0.999, 0.9)")


def fig10(result) -> Figure:
    """Fig. 10: test loss along the normal curve through (0.95, 0.9)."""
    return _generalisation(result, "Fig. 10: normal curve through (0.95, 0.9)")


def fig11(result) -> Figure:
    """Fig. 11: test loss along the level curve through (0.999, 0.9)."""
    return _generalisation(result, "Fig. 11: level curve through (0.999, 0.9)")


def fig12(result) -> Figure:
    """Fig. 12: Eq. 15 annealing in B-: max-update (Eq. 5 dotted is for a constant lr) and test loss."""
    fig, (a, b) = figure_row(2)
    seed = _trajectories(a, result, "max_update")
    a.set(ylabel=r"$\|u_n\|_\infty$", title=f"(a) max-update with Eq. 15 annealing{seed}")
    _trajectories(b, result, "eval_loss", logy=False)
    b.set(ylabel="test loss", title=f"(b) test loss{seed}")
    fig.suptitle(f"Fig. 12 ({result.scale} scale)")
    return fig


# --------------------------------------------------------------------------- one point, and the curves (App. E)
def _g4(x: float) -> str:
    """4 significant digits; values within the B0 tolerance of bounds.region print as 0."""
    return "0" if abs(x) <= 1e-12 else f"{x:.4g}"


_BETA = validate.Real(lo=0.0, hi=1.0, lo_open=True, hi_open=True,
                      meaning="the paper's second-moment decay, torch's betas[1]")
_GAMMA = validate.Real(lo=0.0, hi=1.0, lo_open=True, hi_open=True,
                       meaning="the paper's first-moment decay, torch's betas[0]; Eq. 5 degenerates at gamma = 0")
_HALF_WIDTH = validate.Real(lo=0.0, hi=0.5, lo_open=True, meaning="the zoom window's half-width")
_LEVELS = validate.ListOf(validate.Real(meaning="a level c of C(beta, gamma)"), min_len=0)


def stability_view(beta, gamma, n_max=1000, *, half_width=0.05) -> Figure:
    """Where (beta, gamma) lies and what its max-update bounds do over n steps (Section 3.1, Eq. 5).

    Three panels: (a) the unit square from :func:`region_map` with the point; (b) a window of
    half-width ``half_width`` around it with level curves of C (App. E), the level curve and the
    normal curve through the point; (c) the natural log of Eq. 5 (continuous time) and of the exact
    discrete bound for n = 0..n_max, labelled with their predicted slopes per step,
    ``bounds.growth_rate`` = max(0, -C)/2 and ``bounds.discrete_growth_rate`` =
    max(0, ln gamma - ln(beta)/2). beta, gamma in (0, 1); n_max an integer >= 1.
    """
    beta, gamma = _BETA("beta", beta), _GAMMA("gamma", gamma)
    n_max = validate.positive_int("n_max", n_max)
    half_width = _HALF_WIDTH("half_width", half_width)

    c = bounds.stability_constant(beta, gamma)
    where = bounds.region(beta, gamma)
    rate_c, rate_d = bounds.growth_rate(beta, gamma), bounds.discrete_growth_rate(beta, gamma)
    c_txt, rate_c_txt, rate_d_txt = (_g4(x) for x in (c, rate_c, rate_d))
    fig, (a, b, d) = figure_row(3, width=4.5, height=3.7)
    mark = dict(marker="*", s=160, color="gold", edgecolor="k", zorder=5)

    # (a) the whole square
    region_map(a)
    a.scatter([beta], [gamma], **mark)
    a.set_title(rf"(a) $C={c_txt}$: {where}")

    # (b) the window around the point: level curves of C, and the two curves through the point
    blo, glo = (min(max(1e-3, x - half_width), 1.0 - 1e-6 - 2 * half_width) for x in (beta, gamma))
    blo, glo = max(blo, 1e-3), max(glo, 1e-3)
    bhi, ghi = min(blo + 2 * half_width, 1.0 - 1e-6), min(glo + 2 * half_width, 1.0 - 1e-6)
    B, G = np.meshgrid(np.linspace(blo, bhi, 300), np.linspace(glo, ghi, 300))
    C = bounds.stability_constant(B, G)
    if C.min() < 0:
        b.contourf(B, G, C, levels=[C.min() - 1.0, 0.0], colors=["#f4cccc"])
    if C.min() < 0 < C.max():
        b.contour(B, G, C, levels=[0.0], colors="k", linewidths=1.0)
    others = b.contour(B, G, C, levels=9, colors="0.6", linewidths=0.6)
    b.clabel(others, fontsize=7, fmt="%.2g")
    root = np.linspace(blo, bhi, 200)
    in_window = (np.sqrt(root) >= glo) & (np.sqrt(root) <= ghi)
    b.plot(root[in_window], np.sqrt(root[in_window]), color="k", ls=":", lw=1.0, label=r"$\gamma^2=\beta$")
    lb, lg = bounds.level_curve(c, 200, beta_range=(blo, bhi))
    nb, ng = bounds.normal_curve(beta, gamma, 200, beta_range=(blo, bhi))
    b.plot(lb, lg, color="C0", lw=1.5, label=rf"level curve $C={c_txt}$")
    b.plot(nb, ng, color="C1", lw=1.5, label="normal curve")
    b.scatter([beta], [gamma], **mark)
    b.set(xlim=(blo, bhi), ylim=(glo, ghi), xlabel=r"$\beta$", ylabel=r"$\gamma$",
          title="(b) curves through the point", aspect="equal")
    b.legend(fontsize=7, loc="lower left")

    # (c) both bounds, in log space so nothing overflows
    n = np.arange(n_max + 1, dtype=float)
    log_c = np.asarray(bounds.log_max_update_bound(n, beta, gamma))
    log_d = np.asarray(bounds.log_discrete_max_update_bound(n, beta, gamma))
    ok = np.isfinite(log_c)
    d.plot(n[ok], log_c[ok], "--", color="k", label=rf"Eq. 5; slope $\to$ {rate_c_txt}")
    d.plot(n, log_d, "-", color="C2", label=rf"exact discrete; slope $\to$ {rate_d_txt}")
    d.set(xlabel="iteration n", ylabel=r"$\ln$ of the bound on $\|u_n\|_\infty$",
          title="(c) max-update bounds")
    d.legend(fontsize=8)
    fig.suptitle(rf"$(\beta, \gamma) = ({beta:.4g}, {gamma:.4g})$:  $C = {c_txt}$ ({where}),  "
                 rf"slopes $\max(0,-C)/2 = {rate_c_txt}$,  $\max(0, \ln\gamma - \frac{{1}}{{2}}\ln\beta) = {rate_d_txt}$",
                 fontsize=10)
    return fig


def curves_map(levels=(-0.5, 0.0, 0.2, 1.0), through=((0.999, 0.9), (0.95, 0.9)), *, num=300) -> Figure:
    """Level curves C = c and normal curves through given points (Section 3.1, App. E; cf. Fig. 1c).

    (a) the unit square, (b) the corner beta, gamma in [0.85, 1) where practical values lie.
    ``levels``: finite numbers c; ``through``: (beta, gamma) pairs in the open unit square.
    """
    levels = tuple(levels)
    through = tuple(tuple(p) for p in through)
    if not levels and not through:
        raise ValueError("curves_map needs at least one level or one point to draw a curve through")
    _LEVELS("levels", levels)
    for p in through:
        if len(p) != 2:
            raise ValueError(f"through must hold (beta, gamma) pairs; got {p!r}")
        _BETA("beta", p[0])
        _GAMMA("gamma", p[1])
    validate.integer("num", num, lo=2)
    fig, axes = figure_row(2, width=5.0, height=4.2)
    for ax, lo, hi in ((axes[0], (0.0, 0.0), (1.0, 1.0)), (axes[1], (0.85, 0.85), (1.0, 1.0))):
        region_map(ax, lo=lo, hi=hi)
        for i, c in enumerate(levels):
            lb, lg = bounds.level_curve(float(c), num)
            ax.plot(lb, lg, color=f"C{i % 10}", lw=1.2, label=f"level $C={c:g}$")
        for j, (b0, g0) in enumerate(through):
            nb, ng = bounds.normal_curve(b0, g0, num)
            ax.plot(nb, ng, color="0.25", lw=1.4, ls=("-", "--", "-.")[j % 3],
                    label=f"normal through ({b0:g}, {g0:g})")
            ax.plot([b0], [g0], "o", color="k", ms=4)
    for t in axes[1].texts[:]:  # region_map's B-/B+ labels sit at fixed corners; in the zoom they may mislead
        t.remove()
    axes[0].set_title("(a) the unit square")
    axes[1].set_title("(b) the corner near (1, 1)")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.suptitle(r"Level curves of $C(\beta,\gamma)$ and normal curves (Fig. 1c, App. E); $\mathcal{B}_-$ shaded")
    return fig


def bound_ratio(result) -> Figure:
    """Measured max-update over each bound, ||u_n||_inf / bound(n), for every point of a sweep.

    (a) over the exact discrete bound (at most 1 for every gradient sequence when eps = 0),
    (b) over Eq. 5. ``result``: a sweep whose points record ``max_update`` (fig1, fig3, fig12); of a
    multi-seed sweep, every run of every seed (thinner lines).
    """
    pts = getattr(result, "points", None)
    if not pts or any("beta" not in p or "gamma" not in p for p in pts):
        raise ValueError(f"bound_ratio needs a sweep result whose points carry beta and gamma; got {result!r}")
    if any("max_update" not in result.point_arrays(p["index"]) for p in pts):
        raise ValueError(f"bound_ratio needs max_update trajectories (fig1, fig3 or fig12); "
                         f"{getattr(result, 'figure', '?')} has none")
    fig, (a, b) = figure_row(2)
    cs = np.array([p["C"] for p in pts])
    norm = c_norm(cs)
    n_seeds = len(seed_points(result))
    for p, c in zip(pts, cs):
        mu = np.asarray(result.point_arrays(p["index"])["max_update"], dtype=float)
        n = np.arange(len(mu))
        for ax, bound in ((a, bounds.discrete_max_update_bound), (b, bounds.max_update_bound)):
            ax.plot(n, mu / bound(n, p["beta"], p["gamma"]), color=CMAP(norm(c)), lw=0.9 if n_seeds <= 1 else 0.6)
    for ax, title in ((a, "(a) over the exact discrete bound"), (b, "(b) over Eq. 5")):
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set(xlabel="iteration n", ylabel=r"$\|u_n\|_\infty$ / bound", yscale="log", title=title)
    sm = ScalarMappable(norm=norm, cmap=CMAP)
    fig.colorbar(sm, ax=[a, b], label=r"$C(\beta,\gamma)$")
    every = "" if n_seeds <= 1 else f", every run of all {n_seeds} seeds"
    fig.suptitle(f"{result.figure}: measured max-update relative to the bounds ({result.scale} scale{every})")
    return fig

