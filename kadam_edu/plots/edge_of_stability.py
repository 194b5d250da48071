"""Adam at the edge of stability (the book's Chapter 6): preconditioned sharpness against the
threshold (2 + 2 gamma) / ((1 - gamma) eta) on the char GPT
(:mod:`kadam_edu.experiments.edge_of_stability`) and on a 2-D quadratic."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from kadam_edu.plots.common import (draw_over_seeds, figure_row, first_seed, over_seeds, seed_grid, seed_points,
                                    seed_summaries)

__all__ = ["eos", "eos_quadratic_view", "EOS_QUADRATIC"]


def _eos_label(p) -> str:
    return rf"$\eta$={p['lr']:g} ({p['mode']})"


def eos(result) -> Figure:
    """Chapter 6, from an ``eos`` result (:mod:`kadam_edu.experiments.edge_of_stability`).

    (a) preconditioned sharpness lambda_max(P^{-1} H) on the fixed batch against the step, with
    each run's threshold (2 + 2 gamma) / ((1 - gamma) eta) dashed in the same colour; (b) the
    ratio sharpness / threshold (1 = the edge); (c) the loss on the fixed batch. Of a multi-seed
    result, the first seed's runs, and in (b), right of each run's last measurement, its median
    ratio over the last half (``ratio_tail_median``) as the median over the seeds with a bar from
    the lowest to the highest seed.
    """
    if getattr(result, "figure", None) != "eos":
        raise ValueError(f"plots.eos needs an 'eos' result; got {getattr(result, 'figure', type(result).__name__)!r}")
    fig, (a, b, c) = figure_row(3, width=4.4)
    lr_color = {lr: f"C{j % 10}" for j, lr in enumerate(sorted({p["lr"] for p in result.points}))}
    first, seed = first_seed(result)
    seed = seed and f"\n{seed.strip(' ()')}"  # the titles are long: which seed goes on a line of its own
    for p in first:  # colour: the learning rate; solid: full batch, dotted: minibatch
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
    if len(seed_points(result)) > 1:  # each run's tail ratio over the seeds, right of its curves
        grid = seed_grid(result)
        last = max(result.point_arrays(p["index"])["steps"][-1] for p in first)
        tails = seed_summaries(grid, lambda p: p["ratio_tail_median"])
        for j, (per_seed, tail) in enumerate(zip(grid, tails)):
            p = next(iter(per_seed.values()))
            draw_over_seeds(b, [last * (1 + 0.04 * (j + 1))], [tail], "D", color=lr_color[p["lr"]], ms=4,
                            label=f"last-half median{over_seeds(result)}" if j == 0 else None)
    a.set(yscale="log", xlabel="step n", ylabel=r"$\lambda_{\max}(P^{-1}H)$",
          title=f"(a) preconditioned sharpness; dashed: threshold{seed}")
    b.axhline(1.0, color="k", lw=0.9)
    b.set(yscale="log", xlabel="step n", ylabel="sharpness / threshold",
          title=rf"(b) ratio to $(2+2\gamma)/((1-\gamma)\eta)${seed}")
    c.set(yscale="log", xlabel="step n", ylabel="loss on the fixed batch", title=f"(c) loss{seed}")
    for ax in (a, b, c):
        ax.legend(fontsize=7)
    fig.suptitle(f"Adam at the edge of stability: char GPT ({result.scale} scale), "
                 f"{result.data.get('measured_on', 'fixed batch')}", fontsize=9)
    return fig


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
    fig, (a, b) = figure_row(2, width=4.8)
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
