"""The book's figures. Every function takes a :class:`~kadam_edu.experiments.Result` and returns
a matplotlib Figure; :func:`plot` picks the right one for a result.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps, colors
from matplotlib.figure import Figure

from kadam_edu import bounds

__all__ = ["plot", "region_map", "fig1", "fig2", "fig3", "fig4", "fig5", "fig7", "fig9", "fig10", "fig11", "fig12"]

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
        sc = ax.scatter(betas, gammas, c=cs, cmap=_CMAP, norm=_c_norm(cs), s=18, zorder=3, label=label)
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
    b.scatter(cs, measured, c=cs, cmap=_CMAP, norm=_c_norm(cs), zorder=3, label="measured")
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
