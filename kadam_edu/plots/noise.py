"""Noise and batch size (the book's Chapter 5): the SDEs against discrete Adam, batch scaling by the
square-root and linear rules, and where the square-root rule moves a point of the stability region
(:mod:`kadam_edu.experiments.noise`, :mod:`kadam_edu.scaling`).

Of a multi-seed result (arrays under ``s{seed}/``), the curves are the first seed's and each
summary (mismatch, measured slope) the median over the seeds with a bar from the lowest to the
highest seed (:mod:`kadam_edu.plots.common`)."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from kadam_edu import bounds, scaling
from kadam_edu.plots.common import (CMAP, draw_over_seeds, figure_row, first_seed, over_seeds, region_map, seed_grid,
                                    seed_points, seed_summaries)

__all__ = ["noise_sde", "noise_batch_scaling", "noise_stability", "scaling_view"]


def _seed_arrays(result, seed) -> dict:
    """Base seed ``seed``'s arrays under their single-seed names; a single-seed (or legacy)
    result's arrays as they are."""
    if len(seed_points(result)) <= 1:
        return result.arrays
    from kadam_edu.experiments.common import arrays_of_seed

    return arrays_of_seed(result, seed)


def _runs(result, *keys) -> dict:
    """The result's grid points (:func:`~kadam_edu.plots.common.seed_grid`, ``{seed: summary}``)
    by the values of ``keys`` in their summaries, e.g. ``{("sqrt", 2): {0: ..., 1: ...}}``."""
    return {tuple(next(iter(per_seed.values()))[k] for k in keys): per_seed for per_seed in seed_grid(result)}


def noise_sde(result) -> Figure:
    """Chapter 5, :func:`kadam_edu.experiments.noise.sde_vs_discrete`: (a) E[L] and (b) Var[L] against
    SDE time t = n lr^2 for the Adam SDE and discrete Adam at each lr; (c) the largest relative
    error of E[L] and Var[L] against lr for Adam and RMSprop (log-log, fitted slopes in the legend)."""
    t, arr, lrs = result.arrays["times"], result.arrays, [e["lr"] for e in result.data["errors"]["adam"]]
    fig, (a, b, c) = figure_row(3, width=4.4)
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
    mismatch with kappa = 1, with the seed-to-seed floor. Of a multi-seed result: (a), (b) the first
    seed's curves, with the next seed's kappa = 1 curve as the floor's; (c) the median over the
    seeds with a bar from the lowest to the highest, the floor's median with its range shaded."""
    seeds = list(seed_points(result))
    pts, seed = first_seed(result)
    arrays = _seed_arrays(result, seeds[0])
    kappas = sorted({p["kappa"] for p in pts})
    fig, axes = figure_row(3, width=4.4)
    for ax, rule, title in ((axes[0], "sqrt", "(a) square-root rule"), (axes[1], "linear", "(b) linear rule")):
        for j, k in enumerate(kappas):
            p = next(q for q in pts if q["rule"] == rule and q["kappa"] == k)
            ax.plot(arrays[f"{rule}/k{k}/samples"], arrays[f"{rule}/k{k}/eval_loss"], marker="o", ms=3,
                    color=f"C{j}", label=rf"$\kappa$={k}: batch {p['batch']}, $\eta$={p['lr']:.2g}, "
                                         rf"$\gamma$={p['gamma']:.3g}, $\beta$={p['beta']:.4g}")
        if "floor/eval_loss" in arrays:
            ax.plot(arrays["floor/samples"], arrays["floor/eval_loss"], color="0.5", ls=":", lw=1.0,
                    label=r"$\kappa$=1, another seed")
        elif len(seeds) > 1:  # the floor of a multi-seed result: kappa = 1 in the next seed
            other = _seed_arrays(result, seeds[1])
            ax.plot(other[f"{rule}/k1/samples"], other[f"{rule}/k1/eval_loss"], color="0.5", ls=":", lw=1.0,
                    label=rf"$\kappa$=1, seed {seeds[1]}")
        ax.set(xlabel="samples seen", ylabel="validation loss", title=title + seed)
        ax.legend(fontsize=6)
    lo = min(np.nanmin(ax.get_ylim()[0]) for ax in axes[:2])
    hi = max(np.nanmax(ax.get_ylim()[1]) for ax in axes[:2])
    for ax in axes[:2]:
        ax.set_ylim(lo, hi)
    c = axes[2]
    width = 0.38
    big = [k for k in kappas if k > 1]
    runs = _runs(result, "rule", "kappa")
    for i, (rule, color) in enumerate((("sqrt", "C0"), ("linear", "C3"))):
        label = f"{rule} rule (mean {result.data['mismatch'].get(rule, float('nan')):.3f})"
        x = np.arange(len(big)) + (i - 0.5) * width
        if len(seeds) <= 1:
            vals = [next(q["mismatch"] for q in pts if q["rule"] == rule and q["kappa"] == k) for k in big]
            c.bar(x, vals, width, color=color, label=label)
            continue
        mismatch = seed_summaries([runs[rule, k] for k in big], lambda p: p["mismatch"])
        med = np.array([m.median for m in mismatch])
        c.bar(x, med, width, color=color, label=label, capsize=3, ecolor="k",
              yerr=np.vstack([med - [m.lo for m in mismatch], [m.hi for m in mismatch] - med]))
    if len(seeds) > 1 and "floors" in result.data:  # per seed: its kappa = 1 run against the next seed's
        from kadam_edu.experiments.analysis.seeds import summarise

        floor = summarise(dict(zip(seeds, result.data["floors"])))
        c.axhspan(floor.lo, floor.hi, color="0.4", alpha=0.15, lw=0)
        c.axhline(floor.median, color="0.4", ls="--", lw=1.0, label=f"seed floor {floor:.3f} (shaded)")
    elif "floor" in result.data:
        c.axhline(result.data["floor"], color="0.4", ls="--", lw=1.0, label=f"seed floor {result.data['floor']:.3f}")
    c.set_xticks(np.arange(len(big)), [rf"$\kappa$={k}" for k in big])
    note = over_seeds(result).strip(" ()")
    c.set(ylabel="mean |loss - loss at kappa=1| (nats)",
          title="(c) mismatch at matched samples" + (f"\n{note}" if note else ""))
    c.legend(fontsize=7)
    fig.suptitle(f"Char GPT at batch sizes kappa x {result.data['base_batch']} ({result.scale} scale)", fontsize=9)
    return fig


def _scaling_ray(ax, beta, gamma, kappas, *, label_points=True):
    """Draw the square-root rule's ray from (1, 1) through (beta, gamma) and the scaled points."""
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
        ax.scatter(nb, ng, c=np.sign(cs), cmap=CMAP, vmin=-1, vmax=1, s=28, zorder=4, edgecolors="k", linewidths=0.5)
        if label_points:
            for k, x, y in zip(kappas, nb, ng):
                ax.annotate(rf"$\kappa$={k:g}", (x, y), textcoords="offset points", xytext=(5, -9), fontsize=7)


def scaling_view(kappa, beta=0.95, gamma=0.97, *, kappa_max=None) -> Figure:
    """Chapter 5 explorer: the square-root rule moves (beta, gamma) (paper notation) to
    (1 - kappa (1-beta), 1 - kappa (1-gamma)). (a) the region map with the rule's ray and the scaled
    point; (b) C after the rule against kappa and both predicted growth rates, kappa_c and kappa_d
    marked. ValueError for a base point or kappa the rule refuses (:mod:`kadam_edu.scaling`)."""
    d = scaling.square_root_rule(kappa, lr=1.0, beta=beta, gamma=gamma, eps=0.0)  # validates everything
    if d["beta"] <= 0.0:
        raise ValueError(f"kappa={kappa:g} sends beta' to 0, where C is undefined; take kappa < {1 / (1 - beta):.4g}")
    limit = min(scaling.kappa_limit(beta=beta, gamma=gamma), 1 / (1 - beta))
    kmax = min(limit, kappa_max if kappa_max is not None else limit)
    fig, (a, b) = figure_row(2, width=4.8, height=3.8)
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
    log ||u_n||_inf (char GPT, toy) against kappa with both predicted growth rates. Of a multi-seed
    result: (b) the first seed's runs; (c) the median slope over the seeds with a bar from the
    lowest to the highest seed."""
    beta, gamma = result.data["base"]
    pts = result.points
    first, seed = first_seed(result)
    arrays = _seed_arrays(result, list(seed_points(result))[0])  # the first seed's
    fig, (a, b, c) = figure_row(3, width=4.4, height=3.7)
    region_map(a)
    kappas = sorted({p["kappa"] for p in pts})
    _scaling_ray(a, beta, gamma, kappas, label_points=False)
    a.set_title(rf"(a) base ({beta:g}, {gamma:g}) and its scaled points", fontsize=8)
    a.legend(fontsize=6, loc="lower left")
    toy = [p for p in first if p["model"] == "toy"]
    viridis = colormaps["viridis"]
    for j, p in enumerate(toy):
        mu = arrays[f"toy/k{p['kappa']:g}/max_update"]
        b.plot(np.arange(len(mu)), mu, color=viridis(j / max(1, len(toy) - 1)), lw=1.0,
               ls="-" if p["C"] > 0 else "--", label=rf"$\kappa$={p['kappa']:g} ({p['region']})")
    b.axvline(result.config["toy_off_at"], color="0.5", ls=":", lw=0.8)
    b.set(yscale="log", xlabel="step n", ylabel=r"$\|u_n\|_\infty$",
          title=f"(b) toy: half the features switch off at the dotted line{seed}")
    b.title.set_fontsize(8)
    b.legend(fontsize=6, ncol=2)
    limit = min(result.data["kappa_limit"], 1 / (1 - beta))
    ks = np.linspace(0.5, limit * (1 - 1e-6), 300)
    nb, ng = scaling.scaled_decays(ks, beta=beta, gamma=gamma)
    c.plot(ks, bounds.growth_rate(nb, ng), color="C3", ls="--", lw=1.0, label=r"continuous $\max(0,-C)/2$")
    c.plot(ks, bounds.discrete_growth_rate(nb, ng), color="C1", ls=":", lw=1.4, label="exact discrete bound")
    runs = _runs(result, "model", "kappa")
    for model, marker, color in (("gpt", "o", "C0"), ("toy", "s", "C2")):
        run_ks = [k for m, k in runs if m == model]
        measured = seed_summaries([runs[model, k] for k in run_ks], lambda p: p["measured_slope"])
        slopes = [(k, s) for k, s in zip(run_ks, measured) if s.n]
        draw_over_seeds(c, [k for k, _ in slopes], [s for _, s in slopes], marker, color=color, ms=6, mfc="none",
                        label=f"measured: {'char GPT' if model == 'gpt' else 'toy'}{over_seeds(result)}")
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
