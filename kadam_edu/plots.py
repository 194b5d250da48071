"""The book's figures. Every function takes a :class:`~kadam_edu.experiments.Result` and returns
a matplotlib Figure; :func:`plot` picks the right one for a result.
"""

from __future__ import annotations

import numbers

import numpy as np
from matplotlib import colormaps, colors
from matplotlib.figure import Figure

from kadam_edu import bounds

__all__ = ["plot", "region_map", "fig1", "fig2", "fig3", "fig4", "fig5", "fig7", "fig9", "fig10", "fig11", "fig12", "stability_view", "curves_map", "bound_ratio"]

_CMAP = colormaps["coolwarm_r"]  # blue: B+ (C > 0), red: B- (C < 0)


def _c_norm(cs) -> colors.Normalize:
    lim = max(1e-3, float(np.max(np.abs(cs)))) if len(cs) else 1.0
    return colors.TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim)


def _figure(ncols: int, width: float = 4.6, height: float = 3.6) -> tuple[Figure, list]:
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, list(np.atleast_1d(fig.subplots(1, ncols)))


def region_map(ax, betas=None, gammas=None, cs=None, *, lo=(0.0, 0.0), hi=(1.0, 1.0), label=None):
    """Shade B- on the (beta, gamma) plane, draw B0 (C = 0) and the discrete boundary gamma^2 = beta,
    and optionally scatter points coloured by C."""
    b = np.linspace(max(lo[0], 1e-3), min(hi[0], 0.99999), 400)
    g = np.linspace(lo[1], min(hi[1], 0.99999), 400)
    B, G = np.meshgrid(b, g)
    C = bounds.stability_constant(B, G)
    ax.contourf(B, G, C, levels=[-np.inf, 0.0], colors=["#f4cccc"])
    ax.contour(B, G, C, levels=[0.0], colors="k", linewidths=1.0)
    ax.plot(b, np.sqrt(b), color="k", ls=":", lw=1.0, label=r"$\gamma^2=\beta$ (discrete)")
    if betas is not None:
        sc = ax.scatter(betas, gammas, c=cs, cmap=_CMAP, norm=_c_norm(cs), s=18, zorder=3, label=label,
                        edgecolors="0.3", linewidths=0.4)  # pale points near C = 0 stay visible
        ax.figure.colorbar(sc, ax=ax, label=r"$C(\beta,\gamma)$")
    ax.set(xlabel=r"$\beta$ (second moment)", ylabel=r"$\gamma$ (first moment)",
           xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]))
    ax.text(0.03, 0.95, r"$\mathcal{B}_-$", transform=ax.transAxes, va="top", color="#a33")
    ax.text(0.85, 0.05, r"$\mathcal{B}_+$", transform=ax.transAxes, color="#336")
    return ax


def _points(result):
    pts = result.points
    return (np.array([p["beta"] for p in pts]), np.array([p["gamma"] for p in pts]),
            np.array([p["C"] for p in pts]), pts)


def _zoom(betas, gammas, pad=0.15):
    lo = (max(0.0, betas.min() - pad * np.ptp(betas) - 1e-3), max(0.0, gammas.min() - pad * np.ptp(gammas) - 1e-3))
    hi = (min(1.0, betas.max() + pad * np.ptp(betas) + 1e-3), min(1.0, gammas.max() + pad * np.ptp(gammas) + 1e-3))
    return lo, hi


def _trajectories(ax, result, key, *, bound=None, logy=True):
    betas, gammas, cs, pts = _points(result)
    norm = _c_norm(cs)
    for p, c in zip(pts, cs):
        y = result.point_arrays(p["index"]).get(key)
        if y is None or len(y) == 0:
            continue
        x = np.arange(len(y)) if key != "eval_loss" else result.point_arrays(p["index"])["eval_steps"]
        ax.plot(x, y, color=_CMAP(norm(c)), lw=1.0)
        if bound is not None:
            n = np.arange(result.config["steps"])
            ax.plot(n, bound(n, p["beta"], p["gamma"]), color=_CMAP(norm(c)), lw=0.8, ls=":")
        if p.get("diverged_at") is not None:
            ax.plot(x[-1], y[-1], "x", color=_CMAP(norm(c)))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("iteration n")


def fig1(result) -> Figure:
    """Fig. 1: (a) ||u_n||_inf with Eq. 5 (dotted), (b) measured slope against both laws, (c) the points."""
    fig, (a, b, c) = _figure(3)
    _trajectories(a, result, "max_update", bound=bounds.max_update_bound)
    top = max(np.nanmax(result.point_arrays(p["index"])["max_update"]) for p in result.points)
    a.set(ylabel=r"max-update $\|u_n\|_\infty$", ylim=(None, top * 10), title="(a) max-update; Eq. 5 dotted")
    betas, gammas, cs, pts = _points(result)
    measured = np.array([np.nan if p["measured_slope"] is None else p["measured_slope"] for p in pts])
    # both laws along the same stretch of the curve, densely
    dense_b, dense_g = bounds.normal_curve(*result.data.get("reference", (0.999, 0.9)), 400,
                                           beta_range=tuple(result.config["beta_range"]))
    dense_c = bounds.stability_constant(dense_b, dense_g)
    b.plot(dense_c, bounds.discrete_growth_rate(dense_b, dense_g), "-", color="C2",
           label=r"discrete: $\ln\gamma-\frac{1}{2}\ln\beta$")
    b.plot(dense_c, bounds.growth_rate(dense_b, dense_g), "--", color="k", label=r"paper: $|C|/2$")
    b.scatter(cs, measured, c=cs, cmap=_CMAP, norm=_c_norm(cs), zorder=3, label="measured",
              edgecolors="0.3", linewidths=0.4)
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
    fig, (a, c) = _figure(2)
    _trajectories(a, result, "max_update", bound=bounds.max_update_bound)
    a.set(ylabel=r"$\|u_n\|_\infty$", title=r"(a) max-update on $\mathcal{B}_0$; Eq. 5 ($\sqrt{n}$) dotted")
    betas, gammas, cs, _ = _points(result)
    lo, hi = _zoom(betas, gammas)
    region_map(c, betas, gammas, cs, lo=lo, hi=hi)
    c.set_title(r"(b) points on $C=0$")
    fig.suptitle(f"Fig. 3 ({result.scale} scale)")
    return fig


def _generalisation(result, title) -> Figure:
    fig, (a, b, c) = _figure(3)
    _trajectories(a, result, "eval_loss", logy=False)
    a.set(ylabel="test loss", title="(a) test loss")
    betas, gammas, cs, pts = _points(result)
    keys = sorted({k for p in pts for k in p if k.startswith("best_test_loss_")}, key=lambda k: int(k.rsplit("_", 1)[1]))
    level = result.data.get("curve") == "level"  # C is constant there: use beta instead
    x, xlabel = (betas, r"$\beta$ (along the level curve)") if level else (cs, r"$C(\beta,\gamma)$")
    for key, marker in zip(keys, "os"):
        vals = np.array([np.nan if p.get(key) is None else p[key] for p in pts])
        b.plot(x, vals, marker, ls="-", label=f"best by n={key.rsplit('_', 1)[1]}")
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
    fig, (a, b) = _figure(2)
    _trajectories(a, result, "max_update")
    a.set(ylabel=r"$\|u_n\|_\infty$", title="(a) max-update with Eq. 15 annealing")
    _trajectories(b, result, "eval_loss", logy=False)
    b.set(ylabel="test loss", title="(b) test loss")
    fig.suptitle(f"Fig. 12 ({result.scale} scale)")
    return fig


def fig4(result) -> Figure:
    """Fig. 4: sim(W_N, g_n) for every query/key head, (a) with qk-norm, (b) without (App. G)."""
    fig, axes = _figure(2)
    for ax, setting, title in zip(axes, ("qk_norm", "no_qk_norm"), ("(a) qk-norm", "(b) no qk-norm")):
        cos = result.arrays[f"{setting}/cosine"]
        for row in cos:
            ax.plot(np.arange(cos.shape[1]), row, lw=0.7, alpha=0.7)
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set(xlabel="iteration n", ylabel=rf"sim$(W_{{{cos.shape[1]}}}, g_n)$", title=title)
    lim = max(np.abs(result.arrays[f"{s}/cosine"]).max() for s in ("qk_norm", "no_qk_norm")) * 1.1
    for ax in axes:
        ax.set_ylim(-lim, lim)
    fig.suptitle(f"Fig. 4: query/key weights against past gradients ({result.scale} scale)")
    return fig


def _paired_trajectories(ax, t, a, b, label_a, label_b):
    for j in range(a.shape[1]):
        color = f"C{j % 10}"
        ax.plot(t, a[:, j], color=color, lw=1.0)
        ax.plot(t, b[:, j], color=color, lw=1.0, ls="--")
    ax.plot([], [], color="k", label=label_a)
    ax.plot([], [], color="k", ls="--", label=label_b)
    ax.legend(fontsize=8)


def fig5(result) -> Figure:
    """Fig. 5: 16 query/key parameters under Adam (solid) and with coarse-grained v_W (dashed)."""
    fig, (ax,) = _figure(1, width=6.0)
    t = np.arange(result.arrays["adam/theta"].shape[0])
    _paired_trajectories(ax, t, result.arrays["adam/theta"], result.arrays["coarse/theta"], "Adam", "coarse-grained $v_W$")
    ax.set(xlabel="iteration n", ylabel="parameter value",
           title=f"Fig. 5 ({result.scale} scale): difference {result.data['relative_difference']:.1%} of the displacement")
    return fig


def fig7(result) -> Figure:
    """Fig. 7: (a) Eq. 4 ODE (dashed) against Adam (solid); (b) ||W||^2 against Eq. 12 and Eq. 8."""
    fig, (a, b) = _figure(2, width=5.0)
    t = np.arange(result.arrays["adam/theta"].shape[0])
    _paired_trajectories(a, t, result.arrays["adam/theta"], result.arrays["ode/theta"], "Adam",
                         f"ODE ({result.data['method']}, K={result.data['substeps']})")
    a.set(xlabel="iteration n", ylabel="parameter value",
          title=f"(a) error {result.data['ode_relative_error']:.1%} of the displacement")
    true, eq12, eq8 = (result.arrays[f"norms/{k}"] for k in ("true", "eq12", "eq8"))
    tt = np.arange(true.shape[1])
    for j in range(true.shape[0]):
        b.plot(tt, true[j], color=f"C{j % 10}", lw=1.2)
        b.plot(tt, eq12[j], color=f"C{j % 10}", lw=0.8, ls="--")
        b.plot(tt, eq8[j], color=f"C{j % 10}", lw=0.8, ls=":")
    for ls, lab in (("-", r"$\|W_n\|^2$"), ("--", "Eq. 12"), (":", "Eq. 8")):
        b.plot([], [], color="k", ls=ls, label=lab)
    b.legend(fontsize=8)
    b.set(xlabel="iteration n", ylabel=r"$\|W\|^2$", title="(b) query/key squared norms")
    fig.suptitle(f"Fig. 7 ({result.scale} scale)")
    return fig


def fig2(result) -> Figure:
    """Fig. 2: best test accuracy over the lr/wd sweep against k, per strategy (k = 1, Adam, in red)."""
    from kadam_edu.experiments.kadam_cifar import best_by_k

    rows = best_by_k(result.points)
    fig, (a, b) = _figure(2)
    for i, strategy in enumerate(dict.fromkeys(r["strategy"] for r in rows)):
        rs = [r for r in rows if r["strategy"] == strategy and r["best_test_accuracy"] is not None]
        a.plot([r["k"] for r in rs], [r["best_test_accuracy"] for r in rs], "o-", color=f"C{i}", label=strategy)
    adam = [r for r in rows if r["k"] == 1 and r["best_test_accuracy"] is not None]
    if adam:
        a.plot([1], [adam[0]["best_test_accuracy"]], "o", color="red", ms=9, zorder=3, label="k = 1 (Adam)")
    a.set(xlabel="k", ylabel="best test accuracy", title="(a) best over the lr/wd sweep")
    a.legend(fontsize=8)
    for i, r in enumerate(x for x in rows if x["index"] is not None):
        arr = result.point_arrays(r["index"])
        b.plot(arr["eval_epochs"], arr["test_accuracy"], color=f"C{i % 10}", lw=1.0,
               label=f"{r['strategy']}, k={r['k']}")
    b.set(xlabel="epoch", ylabel="test accuracy", title="(b) the best run of each row")
    b.legend(fontsize=7, ncol=2)
    data = result.data.get("dataset", "")
    fig.suptitle(f"Fig. 2 ({result.scale} scale): {data}", fontsize=9)
    return fig


PLOTTERS = {"fig1": fig1, "fig2": fig2, "fig3": fig3, "fig4": fig4, "fig5": fig5, "fig7": fig7, "fig9": fig9, "fig10": fig10, "fig11": fig11, "fig12": fig12}


def plot(result) -> Figure:
    """The figure for any result."""
    if result.figure not in PLOTTERS:
        raise ValueError(f"no plot for {result.figure!r}; plots exist for {sorted(PLOTTERS)}")
    return PLOTTERS[result.figure](result)


# ---------------------------------------------------------------------------
# Chapter 2: one point of the (beta, gamma) plane, and the level/normal curves (Section 3.1, App. E)
# ---------------------------------------------------------------------------


def _ch2_decay(name: str, value, meaning: str) -> float:
    """A scalar in the open interval (0, 1), else ValueError naming it and its meaning."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 < float(value) < 1.0
    if not ok:
        raise ValueError(f"{name} must be a real number in (0, 1) ({meaning}); got {value!r}")
    return float(value)


def _ch2_count(name: str, value, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}; got {value!r}")
    return int(value)


def _ch2_g4(x: float) -> str:
    """4 significant digits; values within the B0 tolerance of bounds.region print as 0."""
    return "0" if abs(x) <= 1e-12 else f"{x:.4g}"


_CH2_BETA = "the paper's second-moment decay, torch's betas[1]"
_CH2_GAMMA = "the paper's first-moment decay, torch's betas[0]; Eq. 5 degenerates at gamma = 0"


def stability_view(beta, gamma, n_max=1000, *, half_width=0.05) -> Figure:
    """Where (beta, gamma) lies and what its max-update bounds do over n steps (Section 3.1, Eq. 5).

    Three panels: (a) the unit square from :func:`region_map` with the point; (b) a window of
    half-width ``half_width`` around it with level curves of C (App. E), the level curve and the
    normal curve through the point; (c) the natural log of Eq. 5 (continuous time) and of the exact
    discrete bound for n = 0..n_max, labelled with their predicted slopes per step,
    ``bounds.growth_rate`` = max(0, -C)/2 and ``bounds.discrete_growth_rate`` =
    max(0, ln gamma - ln(beta)/2). beta, gamma in (0, 1); n_max an integer >= 1.
    """
    beta = _ch2_decay("beta", beta, _CH2_BETA)
    gamma = _ch2_decay("gamma", gamma, _CH2_GAMMA)
    n_max = _ch2_count("n_max", n_max, 1)
    try:
        half_width = float(half_width)
        ok = 0.0 < half_width <= 0.5
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"half_width must be a number in (0, 0.5] (the zoom window's half-width); got {half_width!r}")

    c = bounds.stability_constant(beta, gamma)
    where = bounds.region(beta, gamma)
    rate_c, rate_d = bounds.growth_rate(beta, gamma), bounds.discrete_growth_rate(beta, gamma)
    c_txt, rate_c_txt, rate_d_txt = (_ch2_g4(x) for x in (c, rate_c, rate_d))
    fig, (a, b, d) = _figure(3, width=4.5, height=3.7)
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
    for c in levels:
        if isinstance(c, bool) or not isinstance(c, (int, float, np.integer, np.floating)) or not np.isfinite(c):
            raise ValueError(f"levels must be finite numbers c (curves C(beta, gamma) = c); got {c!r}")
    for p in through:
        if len(p) != 2:
            raise ValueError(f"through must hold (beta, gamma) pairs; got {p!r}")
        _ch2_decay("beta", p[0], _CH2_BETA)
        _ch2_decay("gamma", p[1], _CH2_GAMMA)
    _ch2_count("num", num, 2)
    fig, axes = _figure(2, width=5.0, height=4.2)
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


# ----------------------------------------------------------------------------- Chapter 4: k-Adam's levels
def _ch4_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


def _ch4_yscale(ax, values) -> None:
    """Log y when the finite positive values span more than a factor 30, else linear."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) and v.max() / v.min() > 30:
        ax.set_yscale("log")


def _ch4_ratio(r: float) -> str:
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
    from kadam_edu.levels import level_bounds as _lb, strategy_path
    from kadam_edu.optim import kadam_levels

    k_max = _ch4_positive_int("k_max", k_max)
    k = _ch4_positive_int("k", k)
    if k > k_max:
        raise ValueError(f"k must be in 1..k_max={k_max}; got {k}")
    if isinstance(n_max, bool) or not isinstance(n_max, (int, float)) or not np.isfinite(n_max) or n_max < 10:
        raise ValueError(f"n_max must be a finite number >= 10 (the last step drawn); got {n_max!r}")
    level = kadam_levels(k, beta=beta, gamma=gamma, strategy=strategy)[0]  # validates strategy, beta, gamma
    path = strategy_path(strategy, k_max, beta=beta, gamma=gamma)
    adam = path[0]
    c = float(bounds.stability_constant(level.beta, level.gamma))

    fig, (a, b) = _figure(2, width=4.8, height=3.8)
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
            y = _lb(n, [lv], kind=kind)[:, 0]
            y = np.where(y > 1e12, np.nan, y)  # B-: the bound explodes; stop drawing it past 1e12
            b.plot(n, y, ls, color=color, lw=lw, label=f"{who}: {name}")
            drawn.append(y)
    _ch4_yscale(b, np.concatenate(drawn))
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
        _ch4_yscale(top, np.concatenate([mu.ravel(), bd.ravel(), bc.ravel()]))
        top.set(title=f"{p['strategy']}, k = {p['k']}\n"
                rf"$\gamma_i$ = {p['level_gamma'][0]:.3g}, $\beta_i$ = {p['level_beta'][0]:.3g}")
        bottom.axhline(1.0, color="k", lw=0.8)
        bottom.set(xlabel="step n", ylim=(max(0.0, min(0.8, low - 0.05)), 1.03))
        bottom.text(0.97, 0.05, f"max ratio {_ch4_ratio(max(p['max_ratio_discrete']))}", transform=bottom.transAxes,
                    ha="right", fontsize=8)
    axes[0, 0].set_ylabel(r"$\|u_n^{(i)}\|_\infty$")
    axes[1, 0].set_ylabel("measured / discrete bound")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Per-level max-update against its bound (App. T), char GPT, {result.scale} scale", fontsize=10)
    return fig


PLOTTERS["level_bounds"] = level_bounds
__all__ += ["levels_view", "level_bounds"]


# =========================================================================== Chapter 3: norm dynamics (Eq. 8, 9)
def _ch3_positive(name: str, value) -> float:
    import math
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 < float(value) < math.inf):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return float(value)


def _ch3_count(name: str, value, least: int) -> int:
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{name} must be an int >= {least}; got {value!r}")
    return int(value)


def _ch3_norm_runs(settings, u_change, update_rms, n_entries, w0_rms, steps):
    """One :func:`kadam_edu.continuous.orthogonal_norm_dynamics` run per (lr, weight_decay) in ``settings``."""
    from kadam_edu.continuous import orthogonal_norm_dynamics

    u_change, update_rms, w0_rms = (_ch3_positive(n, v) for n, v in
                                    (("u_change", u_change), ("update_rms", update_rms), ("w0_rms", w0_rms)))
    n_entries, steps = _ch3_count("n_entries", n_entries, 1), _ch3_count("steps", steps, 2)
    settings = [tuple(s) for s in settings]
    if not settings or any(len(s) != 2 for s in settings):
        raise ValueError(f"settings must be a non-empty list of (lr, weight_decay) pairs; got {settings!r}")
    switch = steps // 2
    u_sq = np.full(steps, n_entries * update_rms**2)
    u_sq[switch:] *= u_change**2  # ||u_W|| changes by the factor u_change half-way
    phi0 = n_entries * w0_rms**2
    return [orthogonal_norm_dynamics(phi0, u_sq, lr=lr, weight_decay=wd) for lr, wd in settings], switch


def norm_presets(settings=((1e-3, 0.0), (1e-3, 0.1), (1e-3, 0.5)), *, u_change=0.25, update_rms=0.3,
                 n_entries=1024, w0_rms=0.02, steps=40_000) -> Figure:
    r"""||W||^2, eta/||W|| and the angular update of a modelled scale-invariant weight, one colour per (lr, wd).

    The weight has ``n_entries`` entries of initial size ``w0_rms`` (||W_0||^2 = N w0_rms^2); AdamW's update
    u_W is orthogonal to W with ||u_W||^2 = N update_rms^2, multiplied by ``u_change``^2 half-way
    (:func:`kadam_edu.continuous.orthogonal_norm_dynamics`). Solid: the exact discrete recursion; dashed:
    Eq. 8; dotted: Eq. 8's equilibrium eta ||u||^2 / (2 lam) and the angular update sqrt(2 lam eta) it implies.
    """
    runs, switch = _ch3_norm_runs(settings, u_change, update_rms, n_entries, w0_rms, steps)
    fig, (a, b, c) = _figure(3, width=4.4, height=3.4)
    for i, r in enumerate(runs):
        color = f"C{i}"
        label = rf"$\eta$={r.lr:.1e}, $\lambda$={r.weight_decay:.3g}"
        a.plot(r.steps, r.discrete, color=color, lw=1.4, label=label)
        a.plot(r.steps, r.eq8, color="k", lw=0.7, ls="--")
        b.plot(r.steps[:-1], r.effective_lr, color=color, lw=1.4)
        c.plot(r.steps[:-1], r.angular_update, color=color, lw=1.4)
        if r.weight_decay > 0:
            a.plot(r.steps[:-1], r.equilibrium, color=color, lw=1.0, ls=":")
            c.axhline(r.equilibrium_angular_update, color=color, lw=1.0, ls=":")
    a.plot([], [], "k--", lw=0.7, label="Eq. 8")
    a.plot([], [], "k:", lw=1.0, label=r"equilibrium $\eta\|u\|^2/2\lambda$")
    c.plot([], [], "k:", lw=1.0, label=r"$\sqrt{2\lambda\eta}$")
    for ax in (a, b, c):
        ax.axvline(switch, color="0.6", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("step n")
    top = max(float(np.max(r.discrete)) for r in runs)
    bottom = min(float(np.min(r.discrete)) for r in runs)
    a.set_ylim(bottom / 1.5, top * 1.5)
    a.set(ylabel=r"$\|W_n\|^2$", title=r"(a) squared norm")
    b.set(ylabel=r"$\eta / \|W_n\|$", title="(b) effective learning rate (Eq. 9)")
    c.set(ylabel=r"$\eta \|u_n\| / \|W_n\|$ (rad / step)", title="(c) angular update of the direction")
    a.legend(fontsize=7)
    c.legend(fontsize=7)
    fig.suptitle(rf"Modelled scale-invariant weight: $\|u_W\|$ changes by $\times${u_change:g} at step {switch} (grey line)",
                 fontsize=10)
    return fig


def norm_view(lr, weight_decay, u_change=0.25, *, update_rms=0.3, n_entries=1024, w0_rms=0.02,
              steps=40_000) -> Figure:
    """:func:`norm_presets` for one (lr, weight_decay): the drawing function of ``widgets.norm_explorer``."""
    return norm_presets([(lr, weight_decay)], u_change=u_change, update_rms=update_rms, n_entries=n_entries,
                        w0_rms=w0_rms, steps=steps)


__all__ += ["norm_view", "norm_presets"]


def bound_ratio(result) -> Figure:
    """Measured max-update over each bound, ||u_n||_inf / bound(n), for every point of a sweep.

    (a) over the exact discrete bound (at most 1 for every gradient sequence when eps = 0),
    (b) over Eq. 5. ``result``: a sweep whose points record ``max_update`` (fig1, fig3, fig12).
    """
    pts = getattr(result, "points", None)
    if not pts or any("beta" not in p or "gamma" not in p for p in pts):
        raise ValueError(f"bound_ratio needs a sweep result whose points carry beta and gamma; got {result!r}")
    if any("max_update" not in result.point_arrays(p["index"]) for p in pts):
        raise ValueError(f"bound_ratio needs max_update trajectories (fig1, fig3 or fig12); "
                         f"{getattr(result, 'figure', '?')} has none")
    fig, (a, b) = _figure(2)
    cs = np.array([p["C"] for p in pts])
    norm = _c_norm(cs)
    for p, c in zip(pts, cs):
        mu = np.asarray(result.point_arrays(p["index"])["max_update"], dtype=float)
        n = np.arange(len(mu))
        for ax, bound in ((a, bounds.discrete_max_update_bound), (b, bounds.max_update_bound)):
            ax.plot(n, mu / bound(n, p["beta"], p["gamma"]), color=_CMAP(norm(c)), lw=0.9)
    for ax, title in ((a, "(a) over the exact discrete bound"), (b, "(b) over Eq. 5")):
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set(xlabel="iteration n", ylabel=r"$\|u_n\|_\infty$ / bound", yscale="log", title=title)
    from matplotlib.cm import ScalarMappable

    sm = ScalarMappable(norm=norm, cmap=_CMAP)
    fig.colorbar(sm, ax=[a, b], label=r"$C(\beta,\gamma)$")
    fig.suptitle(f"{result.figure}: measured max-update relative to the bounds ({result.scale} scale)")
    return fig


# --------------------------------------------------------------------------- Chapter 1: kernels and Fig. 7a
__all__ += ["kernel_view", "ode_vs_adam"]


def kernel_view(beta: float = 0.999, gamma: float = 0.9, *, steps: int = 300, noise: float = 0.3,
                seed: int = 0) -> Figure:
    """Chapter 1: the kernels of Eq. 3 and the moving averages they define, continuous against discrete.

    (a) eta^p K_alpha against the lag j = (t - tau) / eta^p in steps (lines) with Adam's weights
        (1 - alpha) alpha^j (dots), for alpha = gamma (first moment) and alpha = beta (second moment);
    (b) a toy gradient signal g_n (:func:`kadam_edu.ema.sample_gradients` with ``noise``, ``seed``),
        Adam's m_n and sqrt(v_n) (Eq. 1, solid) and m(t_n), sqrt(v(t_n)) (Eq. 2, dashed), no bias correction;
    (c) the update u_n (Eq. 1, solid) and u(t_n) (Eq. 3, dashed).
    Time is measured in steps (eta^p = 1): all three panels depend on eta and p only through t / eta^p.
    beta in (0, 1); gamma in (0, 1) (gamma = 0 has no kernel: m_n = g_n); steps: int >= 2.
    """
    from kadam_edu import continuous, ema
    from kadam_edu.optim import _check_beta, _check_real

    beta = _check_beta(beta)
    gamma = _check_real("gamma", gamma, "in (0, 1)")
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma must lie in (0, 1) here (gamma = 0 has no kernel: m_n = g_n); got {gamma!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise ValueError(f"steps must be an int >= 2 (length of the toy gradient signal); got {steps!r}")
    g = ema.sample_gradients(int(steps), noise=noise, seed=seed)
    n = np.arange(steps)

    fig, (a, b, c) = _figure(3, width=4.4, height=3.5)
    lag = np.linspace(0.0, steps, 800)
    marks = np.unique(np.geomspace(1, steps, 40).astype(int))
    marks = np.concatenate([[0], marks[marks < steps]])
    top = 0.0
    for alpha, name, color in ((gamma, r"\gamma", "C0"), (beta, r"\beta", "C1")):
        k = continuous.kernel(0.0, lag, alpha, lr=1.0)  # eta^p K_alpha(t - j eta^p, t) with eta^p = 1
        a.plot(lag, k, color=color, lw=1.4, label=rf"$\eta^p K_{{{name}}}$, ${name}={alpha:g}$ (Eq. 3)")
        a.plot(marks, ema.discrete_weights(alpha, marks), "o", color=color, ms=3.5, mfc="none",
               label=rf"$(1-{name})\,{name}^j$ (Eq. 1)")
        memory = alpha / (1.0 - alpha)
        if memory <= steps:
            a.axvline(memory, color=color, ls=":", lw=1.0)
        top = max(top, float(k[0]))
    a.set_yscale("log")
    a.set_ylim(top * 1e-4, top * 2.0)
    a.set(xlabel="lag $j=(t-\\tau)/\\eta^p$ (steps)", ylabel="weight per step",
          title=f"(a) kernels; mean lags {gamma / (1 - gamma):.3g} and {beta / (1 - beta):.3g} steps")
    a.legend(fontsize=7)

    m_d, v_d = ema.discrete_ema(g, gamma), ema.discrete_ema(g * g, beta)
    m_c, v_c = continuous.continuous_ema(g, gamma, lr=1.0), continuous.continuous_ema(g * g, beta, lr=1.0)
    b.plot(n, g, ".", color="0.6", ms=2.5, label="$g_n$")
    b.plot(n, m_d, color="C0", lw=1.3, label="$m_n$")
    b.plot(n, m_c, color="C0", lw=1.3, ls="--", label="$m(t_n)$")
    b.plot(n, np.sqrt(v_d), color="C1", lw=1.3, label=r"$\sqrt{v_n}$")
    b.plot(n, np.sqrt(v_c), color="C1", lw=1.3, ls="--", label=r"$\sqrt{v(t_n)}$")
    b.set(xlabel="step n", title="(b) moving averages (no bias correction)")
    b.legend(fontsize=7, ncol=2)

    u_d = ema.discrete_update(g, beta=beta, gamma=gamma)
    u_c = continuous.continuous_update(g, beta=beta, gamma=gamma, lr=1.0)
    c.plot(n, u_d, color="C2", lw=1.3, label="$u_n$ (Eq. 1)")
    c.plot(n, u_c, color="k", lw=1.0, ls="--", label="$u(t_n)$ (Eq. 3)")
    c.axhline(0.0, color="0.5", lw=0.6)
    gap = float(np.max(np.abs(u_d - u_c)))
    c.set(xlabel="step n", title=f"(c) update; max $|u_n-u(t_n)|$ = {gap:.3g}")
    c.legend(fontsize=7)
    fig.suptitle(rf"$(\beta, \gamma) = ({beta:g}, {gamma:g})$: continuous (dashed) against discrete (solid)")
    return fig


def ode_vs_adam(result, *, compare=None) -> Figure:
    """Fig. 7a and the error behind it, from fig7 results (App. K).

    (a) the recorded parameters under AdamW (solid) and the Eq. 4 ODE (dashed), as in Fig. 7a;
    (b) ||theta(t_n) - theta_n|| / max_n ||theta_n - theta_0|| against n: the curve whose maximum
        is ``result.data["ode_relative_error"]``, for ``result`` and each result in ``compare``
        (other fig7 runs, e.g. a smaller learning rate), labelled by learning rate and integrator.
    """
    results = [result] + list(compare or [])
    for r in results:
        if getattr(r, "figure", None) != "fig7":
            raise ValueError(f"ode_vs_adam needs fig7 results; got {getattr(r, 'figure', type(r).__name__)!r}")
    fig, (a, b) = _figure(2, width=5.0)
    adam, ode = result.arrays["adam/theta"], result.arrays["ode/theta"]
    _paired_trajectories(a, np.arange(adam.shape[0]), adam, ode, "AdamW (Eq. 1)",
                         f"ODE (Eq. 4; {result.data['method']}, K={result.data['substeps']})")
    a.set(xlabel="iteration n", ylabel="parameter value", title=f"(a) {adam.shape[1]} parameters (Fig. 7a)")
    for i, r in enumerate(results):
        ad, od = r.arrays["adam/theta"], r.arrays["ode/theta"]
        err = np.linalg.norm(od - ad, axis=1) / np.linalg.norm(ad - ad[0], axis=1).max()
        b.plot(np.arange(len(err)), err, color=f"C{i}", lw=1.3,
               label=rf"$\eta$={r.config['lr']:g}, {r.data['method']} K={r.data['substeps']}: max {err.max():.1%}")
    b.set(xlabel="iteration n", ylabel="error / max displacement",
          title="(b) distance between ODE and AdamW")
    b.legend(fontsize=8)
    fig.suptitle(f"The Eq. 4 ODE against AdamW on the char GPT ({result.scale} scale)")
    return fig


# --------------------------------------------------------------------------- Chapter 6: the edge of stability
__all__ += ["eos", "eos_quadratic_view", "EOS_QUADRATIC"]


def _eos_label(p) -> str:
    return rf"$\eta$={p['lr']:g} ({p['mode']})"


def eos(result) -> Figure:
    """Chapter 6, from an ``eos`` result (:mod:`kadam_edu.experiments.edge_of_stability`).

    (a) preconditioned sharpness lambda_max(P^{-1} H) on the fixed batch against the step, with
    each run's threshold (2 + 2 gamma) / ((1 - gamma) eta) dashed in the same colour; (b) the
    ratio sharpness / threshold (1 = the edge); (c) the loss on the fixed batch.
    """
    if getattr(result, "figure", None) != "eos":
        raise ValueError(f"plots.eos needs an 'eos' result; got {getattr(result, 'figure', type(result).__name__)!r}")
    fig, (a, b, c) = _figure(3, width=4.4)
    lr_color = {lr: f"C{j % 10}" for j, lr in enumerate(sorted({p["lr"] for p in result.points}))}
    for p in result.points:  # colour: the learning rate; solid: full batch, dotted: minibatch
        arr = result.point_arrays(p["index"])
        color, ls = lr_color[p["lr"]], ("-" if p["mode"] == "full-batch" else ":")
        steps, sharp = arr["steps"], arr["sharpness"]
        a.plot(steps, sharp, ls, marker="o", ms=3, color=color, label=_eos_label(p))
        a.axhline(p["threshold"], color=color, ls="--", lw=0.9)
        b.plot(steps, sharp / p["threshold"], ls, marker="o", ms=3, color=color, label=_eos_label(p))
        if p["mode"] == "full-batch":
            c.plot(np.arange(1, len(arr["loss"]) + 1), arr["loss"], ls, color=color, lw=1.0, label=_eos_label(p))
        else:
            c.plot(steps, arr["fixed_loss"], ls, marker="o", ms=3, color=color, label=_eos_label(p))
    a.set(yscale="log", xlabel="step n", ylabel=r"$\lambda_{\max}(P^{-1}H)$",
          title="(a) preconditioned sharpness; dashed: threshold")
    b.axhline(1.0, color="k", lw=0.9)
    b.set(yscale="log", xlabel="step n", ylabel="sharpness / threshold", title=r"(b) ratio to $(2+2\gamma)/((1-\gamma)\eta)$")
    c.set(yscale="log", xlabel="step n", ylabel="loss on the fixed batch", title="(c) loss")
    for ax in (a, b, c):
        ax.legend(fontsize=7)
    fig.suptitle(f"Adam at the edge of stability: char GPT ({result.scale} scale), "
                 f"{result.data.get('measured_on', 'fixed batch')}", fontsize=9)
    return fig


PLOTTERS["eos"] = eos

#: The 2-D quadratic of Chapter 6's explorer: curvatures 1 and 20, axes turned by 0.5 rad, start (1, 1).
EOS_QUADRATIC = {"curvatures": (1.0, 20.0), "angle": 0.5, "theta0": (1.0, 1.0)}


def eos_quadratic_view(lr, gamma, beta=0.999, *, steps=10_000, eps=0.0) -> Figure:
    """Adam on the 2-D quadratic :data:`EOS_QUADRATIC` (:func:`kadam_edu.sharpness.adam_on_quadratic`):
    (a) lambda_max(P_n^{-1} H) against n with the threshold (2 + 2 gamma) / ((1 - gamma) eta);
    (b) the loss. lr > 0, gamma in [0, 1), beta in (0, 1) (paper notation), steps >= 1, eps >= 0."""
    from kadam_edu.sharpness import adam_on_quadratic

    c, s = np.cos(EOS_QUADRATIC["angle"]), np.sin(EOS_QUADRATIC["angle"])
    R = np.array([[c, -s], [s, c]])
    H = R @ np.diag(EOS_QUADRATIC["curvatures"]) @ R.T
    run = adam_on_quadratic(H, lr=lr, beta=beta, gamma=gamma, steps=steps, eps=eps,
                            theta0=np.array(EOS_QUADRATIC["theta0"]))
    n = np.arange(steps)
    ratio = run.sharpness / run.threshold
    tail = ratio[-max(1, steps // 4):]
    fig, (a, b) = _figure(2, width=4.8)
    a.plot(n, run.sharpness, color="C0", lw=0.8, label=r"$\lambda_{\max}(P_n^{-1}H)$")
    a.axhline(run.threshold, color="C3", ls="--", label=rf"$(2+2\gamma)/((1-\gamma)\eta)$ = {run.threshold:.4g}")
    a.set(yscale="log", xlabel="step n", ylabel="preconditioned sharpness",
          title=f"(a) last quarter: median ratio {np.median(tail):.3f}")
    a.legend(fontsize=8)
    b.plot(n, np.maximum(run.loss, 1e-40), color="C2", lw=0.8)
    b.set(yscale="log", xlabel="step n", ylabel=r"$L(\theta_n)$", title="(b) loss (floored at 1e-40)")
    fig.suptitle(rf"Adam on a 2-D quadratic: $\eta$={lr:g}, $\gamma$={gamma:g}, $\beta$={beta:g}, eps={eps:g}",
                 fontsize=9)
    return fig


# --------------------------------------------------------------------------- Chapter 5: noise and batch size
__all__ += ["noise_sde", "noise_batch_scaling", "noise_stability", "scaling_view"]


def noise_sde(result) -> Figure:
    """Chapter 5, :func:`kadam_edu.experiments.noise.sde_vs_discrete`: (a) E[L] and (b) Var[L] against
    SDE time t = n lr^2 for the Adam SDE and discrete Adam at each lr; (c) the largest relative
    error of E[L] and Var[L] against lr for Adam and RMSprop (log-log, fitted slopes in the legend)."""
    t, arr, lrs = result.arrays["times"], result.arrays, [e["lr"] for e in result.data["errors"]["adam"]]
    fig, (a, b, c) = _figure(3, width=4.4)
    for ax, key, label in ((a, "mean", r"$E[L]$"), (b, "var", r"$\mathrm{Var}[L]$")):
        keep = t > 0 if key == "var" else np.ones(len(t), bool)  # every run starts at theta0: Var[L](0) = 0
        for i, lr in enumerate(lrs):
            ax.plot(t[keep], arr[f"adam/lr{i}_{key}"][keep], color=f"C{i}", lw=1.0, marker="o", ms=2.5,
                    label=rf"discrete Adam, $\eta$={lr:g}")
        ax.plot(t[keep], arr[f"adam/sde_{key}"][keep], color="k", lw=1.6, ls="--", label="Adam SDE")
        ax.set(xlabel=r"SDE time $t = n\eta^2$", ylabel=label, yscale="log")
    a.set_title(f"(a) mean over {result.config['paths']} runs")
    b.set_title("(b) variance over the same runs")
    a.legend(fontsize=7)
    for alg, marker in (("adam", "o"), ("rmsprop", "s")):
        errs = result.data["errors"][alg]
        order = result.data.get("order", {}).get(alg, {})
        for key, ls in (("mean", "-"), ("var", ":")):
            slope = order.get(key)
            tag = f", slope {slope:.2f}" if slope is not None else ""
            c.plot(lrs, [e[f"max_rel_err_{key}"] for e in errs], marker=marker, ls=ls,
                   color="C0" if alg == "adam" else "C3", label=f"{alg}: {key}{tag}")
    c.set(xscale="log", yscale="log", xlabel=r"learning rate $\eta$", ylabel="max relative error over t > 0",
          title="(c) discrete vs SDE")
    c.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
    c.minorticks_off()
    c.legend(fontsize=7)
    fig.suptitle(f"SDE against discrete Adam on a noisy quadratic ({result.scale} scale)", fontsize=9)
    return fig


def noise_batch_scaling(result) -> Figure:
    """Chapter 5, :func:`kadam_edu.experiments.noise.batch_scaling`: validation loss against samples
    seen at batch kappa*B under (a) the square-root rule and (b) the linear rule; (c) each run's
    mismatch with kappa = 1, with the seed-to-seed floor."""
    pts = result.points
    kappas = sorted({p["kappa"] for p in pts})
    fig, axes = _figure(3, width=4.4)
    for ax, rule, title in ((axes[0], "sqrt", "(a) square-root rule"), (axes[1], "linear", "(b) linear rule")):
        for j, k in enumerate(kappas):
            p = next(q for q in pts if q["rule"] == rule and q["kappa"] == k)
            ax.plot(result.arrays[f"{rule}/k{k}/samples"], result.arrays[f"{rule}/k{k}/eval_loss"], marker="o", ms=3,
                    color=f"C{j}", label=rf"$\kappa$={k}: batch {p['batch']}, $\eta$={p['lr']:.2g}, "
                                         rf"$\gamma$={p['gamma']:.3g}, $\beta$={p['beta']:.4g}")
        if "floor/eval_loss" in result.arrays:
            ax.plot(result.arrays["floor/samples"], result.arrays["floor/eval_loss"], color="0.5", ls=":", lw=1.0,
                    label=r"$\kappa$=1, another seed")
        ax.set(xlabel="samples seen", ylabel="validation loss", title=title)
        ax.legend(fontsize=6)
    lo = min(np.nanmin(ax.get_ylim()[0]) for ax in axes[:2])
    hi = max(np.nanmax(ax.get_ylim()[1]) for ax in axes[:2])
    for ax in axes[:2]:
        ax.set_ylim(lo, hi)
    c = axes[2]
    width = 0.38
    big = [k for k in kappas if k > 1]
    for i, (rule, color) in enumerate((("sqrt", "C0"), ("linear", "C3"))):
        vals = [next(q["mismatch"] for q in pts if q["rule"] == rule and q["kappa"] == k) for k in big]
        c.bar(np.arange(len(big)) + (i - 0.5) * width, vals, width, color=color,
              label=f"{rule} rule (mean {result.data['mismatch'].get(rule, float('nan')):.3f})")
    if "floor" in result.data:
        c.axhline(result.data["floor"], color="0.4", ls="--", lw=1.0, label=f"seed floor {result.data['floor']:.3f}")
    c.set_xticks(np.arange(len(big)), [rf"$\kappa$={k}" for k in big])
    c.set(ylabel="mean |loss - loss at kappa=1| (nats)", title="(c) mismatch at matched samples")
    c.legend(fontsize=7)
    fig.suptitle(f"Char GPT at batch sizes kappa x {result.data['base_batch']} ({result.scale} scale)", fontsize=9)
    return fig


def _scaling_ray(ax, beta, gamma, kappas, *, label_points=True):
    """Draw the square-root rule's ray from (1, 1) through (beta, gamma) and the scaled points."""
    from kadam_edu import scaling

    limit = scaling.kappa_limit(beta=beta, gamma=gamma)
    ks = np.linspace(0.0, limit, 200)
    ax.plot(1 - ks * (1 - beta), 1 - ks * (1 - gamma), color="C2", lw=1.0, label="square-root rule's ray")
    kc = scaling.crossing_kappa(beta=beta, gamma=gamma)
    kd = scaling.discrete_crossing_kappa(beta=beta, gamma=gamma)
    for k, mk, name in ((kc, "X", r"$\kappa_c$"), (kd, "P", r"$\kappa_d$")):
        if 0 < k < limit:
            ax.plot(1 - k * (1 - beta), 1 - k * (1 - gamma), mk, color="k", ms=7, label=f"{name} = {k:.3g}")
    kappas = np.atleast_1d(np.asarray(kappas, dtype=float))
    kappas = kappas[(kappas > 0) & (kappas < min(limit, 1 / (1 - beta)))]
    if len(kappas):
        nb, ng = scaling.scaled_decays(kappas, beta=beta, gamma=gamma)
        cs = bounds.stability_constant(nb, ng)
        ax.scatter(nb, ng, c=np.sign(cs), cmap=_CMAP, vmin=-1, vmax=1, s=28, zorder=4, edgecolors="k", linewidths=0.5)
        if label_points:
            for k, x, y in zip(kappas, nb, ng):
                ax.annotate(rf"$\kappa$={k:g}", (x, y), textcoords="offset points", xytext=(5, -9), fontsize=7)


def scaling_view(kappa, beta=0.95, gamma=0.97, *, kappa_max=None) -> Figure:
    """Chapter 5 explorer: the square-root rule moves (beta, gamma) (paper notation) to
    (1 - kappa (1-beta), 1 - kappa (1-gamma)). (a) the region map with the rule's ray and the scaled
    point; (b) C after the rule against kappa and both predicted growth rates, kappa_c and kappa_d
    marked. ValueError for a base point or kappa the rule refuses (:mod:`kadam_edu.scaling`)."""
    from kadam_edu import scaling

    d = scaling.square_root_rule(kappa, lr=1.0, beta=beta, gamma=gamma, eps=0.0)  # validates everything
    if d["beta"] <= 0.0:
        raise ValueError(f"kappa={kappa:g} sends beta' to 0, where C is undefined; take kappa < {1 / (1 - beta):.4g}")
    limit = min(scaling.kappa_limit(beta=beta, gamma=gamma), 1 / (1 - beta))
    kmax = min(limit, kappa_max if kappa_max is not None else limit)
    fig, (a, b) = _figure(2, width=4.8, height=3.8)
    region_map(a)
    _scaling_ray(a, beta, gamma, [1.0, kappa], label_points=True)
    c_now = float(bounds.stability_constant(d["beta"], d["gamma"]))
    a.set_title(rf"(a) $\kappa$={kappa:g}: ($\beta'$, $\gamma'$) = ({d['beta']:.4g}, {d['gamma']:.4g}), "
                rf"C = {c_now:.3g} ({bounds.region(d['beta'], d['gamma'])})", fontsize=8)
    a.legend(fontsize=6, loc="lower left")
    ks = np.linspace(kmax / 400, kmax * (1 - 1e-6), 400)
    cs = scaling.scaled_stability_constant(ks, beta=beta, gamma=gamma)
    nb, ng = scaling.scaled_decays(ks, beta=beta, gamma=gamma)
    b.plot(ks, cs, color="k", lw=1.2, label=r"$C(\beta', \gamma')$")
    b.plot(ks, bounds.growth_rate(nb, ng), color="C3", ls="--", lw=1.0, label=r"continuous rate $\max(0,-C)/2$")
    b.plot(ks, bounds.discrete_growth_rate(nb, ng), color="C1", ls=":", lw=1.4,
           label=r"discrete rate $\max(0, \ln\gamma' - \ln\beta'/2)$")
    b.axhline(0.0, color="0.6", lw=0.6)
    b.axvline(kappa, color="C2", lw=1.0, label=rf"$\kappa$ = {kappa:g}")
    kc, kd = scaling.crossing_kappa(beta=beta, gamma=gamma), scaling.discrete_crossing_kappa(beta=beta, gamma=gamma)
    title = r"(b) along the ray: "
    title += rf"$\kappa_c$ = {kc:.3g}, " if 0 < kc < limit else r"never in $\mathcal{B}_-$, "
    title += rf"$\kappa_d$ = {kd:.3g}" if 0 < kd < limit else r"$\gamma'^2 < \beta'$ throughout"
    b.set(xlabel=r"batch-size multiplier $\kappa$", ylabel="C, or growth rate per step", title=title,
          ylim=(max(-1.0, float(np.min(cs))) - 0.02,
                max(0.3, 1.5 * float(bounds.stability_constant(beta, gamma)), 1.3 * c_now)))
    b.title.set_fontsize(8)
    b.legend(fontsize=6)
    fig.suptitle(rf"Square-root rule from ($\beta$, $\gamma$) = ({beta:g}, {gamma:g})", fontsize=9)
    return fig


def noise_stability(result) -> Figure:
    """Chapter 5, :func:`kadam_edu.experiments.noise.scaling_stability`: (a) the rule's ray through the
    base point; (b) the toy's max-update against step for each kappa; (c) measured slopes of
    log ||u_n||_inf (char GPT, toy) against kappa with both predicted growth rates."""
    from kadam_edu import scaling

    beta, gamma = result.data["base"]
    pts = result.points
    fig, (a, b, c) = _figure(3, width=4.4, height=3.7)
    region_map(a)
    kappas = sorted({p["kappa"] for p in pts})
    _scaling_ray(a, beta, gamma, kappas, label_points=False)
    a.set_title(rf"(a) base ({beta:g}, {gamma:g}) and its scaled points", fontsize=8)
    a.legend(fontsize=6, loc="lower left")
    toy = [p for p in pts if p["model"] == "toy"]
    viridis = colormaps["viridis"]
    for j, p in enumerate(toy):
        mu = result.arrays[f"toy/k{p['kappa']:g}/max_update"]
        b.plot(np.arange(len(mu)), mu, color=viridis(j / max(1, len(toy) - 1)), lw=1.0,
               ls="-" if p["C"] > 0 else "--", label=rf"$\kappa$={p['kappa']:g} ({p['region']})")
    b.axvline(result.config["toy_off_at"], color="0.5", ls=":", lw=0.8)
    b.set(yscale="log", xlabel="step n", ylabel=r"$\|u_n\|_\infty$",
          title="(b) toy: half the features switch off at the dotted line")
    b.title.set_fontsize(8)
    b.legend(fontsize=6, ncol=2)
    limit = min(result.data["kappa_limit"], 1 / (1 - beta))
    ks = np.linspace(0.5, limit * (1 - 1e-6), 300)
    nb, ng = scaling.scaled_decays(ks, beta=beta, gamma=gamma)
    c.plot(ks, bounds.growth_rate(nb, ng), color="C3", ls="--", lw=1.0, label=r"continuous $\max(0,-C)/2$")
    c.plot(ks, bounds.discrete_growth_rate(nb, ng), color="C1", ls=":", lw=1.4, label="exact discrete bound")
    for model, marker, color in (("gpt", "o", "C0"), ("toy", "s", "C2")):
        sel = [p for p in pts if p["model"] == model and p["measured_slope"] is not None]
        c.plot([p["kappa"] for p in sel], [p["measured_slope"] for p in sel], marker, color=color, ms=6, mfc="none",
               label="measured: char GPT" if model == "gpt" else "measured: toy")
    for k, name in ((result.data["kappa_c"], r"$\kappa_c$"), (result.data["kappa_d"], r"$\kappa_d$")):
        c.axvline(k, color="0.4", lw=0.8, ls="-.")
        c.annotate(name, (k, 0.94), xycoords=("data", "axes fraction"), fontsize=8, xytext=(2, 0),
                   textcoords="offset points")
    top = max([0.05] + [p["measured_slope"] or 0.0 for p in pts] + [p["predicted_slope_discrete"] for p in pts])
    c.set(xlabel=r"batch-size multiplier $\kappa$", ylabel=r"slope of $\log\|u_n\|_\infty$ per step",
          ylim=(-0.02, 1.5 * top), title="(c) growth after the rule")
    c.legend(fontsize=6, loc="center left")
    fig.suptitle(f"The square-root rule and the stability region ({result.scale} scale)", fontsize=9)
    return fig


PLOTTERS["noise_sde"] = noise_sde
PLOTTERS["noise_batch_scaling"] = noise_batch_scaling
PLOTTERS["noise_stability"] = noise_stability
