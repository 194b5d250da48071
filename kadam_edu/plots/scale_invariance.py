"""Section 2 and Section 4.1, continuous time and scale invariance (App. G, K): Fig. 4, 5, 7 from
their results (:mod:`kadam_edu.experiments.scale_invariance`), the Eq. 4 ODE against AdamW, the
kernels of Eq. 3, and the modelled norm dynamics of a scale-invariant weight (Eq. 8, 9)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from kadam_edu import validate
from kadam_edu.plots.common import figure_row

__all__ = ["fig4", "fig5", "fig7", "ode_vs_adam", "kernel_view", "norm_presets", "norm_view"]


def fig4(result) -> Figure:
    """Fig. 4: sim(W_N, g_n) for every query/key head, (a) with qk-norm, (b) without (App. G)."""
    fig, axes = figure_row(2)
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
    fig, (ax,) = figure_row(1, width=6.0)
    t = np.arange(result.arrays["adam/theta"].shape[0])
    _paired_trajectories(ax, t, result.arrays["adam/theta"], result.arrays["coarse/theta"], "Adam", "coarse-grained $v_W$")
    ax.set(xlabel="iteration n", ylabel="parameter value",
           title=f"Fig. 5 ({result.scale} scale): difference {result.data['relative_difference']:.1%} of the displacement")
    return fig


def fig7(result) -> Figure:
    """Fig. 7: (a) Eq. 4 ODE (dashed) against Adam (solid); (b) ||W||^2 against Eq. 12 and Eq. 8."""
    fig, (a, b) = figure_row(2, width=5.0)
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


# --------------------------------------------------------------------------- continuous time (Eq. 2-4, App. K)
_GAMMA = validate.Real(lo=0.0, hi=1.0, lo_open=True, hi_open=True, meaning="gamma = 0 has no kernel: m_n = g_n")
_STEPS = validate.Int(lo=2, meaning="length of the toy gradient signal")


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

    beta, gamma, steps = validate.decay("beta", beta), _GAMMA("gamma", gamma), _STEPS("steps", steps)
    g = ema.sample_gradients(steps, noise=noise, seed=seed)
    n = np.arange(steps)

    fig, (a, b, c) = figure_row(3, width=4.4, height=3.5)
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
    fig, (a, b) = figure_row(2, width=5.0)
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


# --------------------------------------------------------------------------- norm dynamics (Eq. 8, 9)
def _norm_runs(settings, u_change, update_rms, n_entries, w0_rms, steps):
    """One :func:`kadam_edu.continuous.orthogonal_norm_dynamics` run per (lr, weight_decay) in ``settings``."""
    from kadam_edu.continuous import orthogonal_norm_dynamics

    u_change, update_rms, w0_rms = (validate.finite_real(n, v, lo=0.0, lo_open=True) for n, v in
                                    (("u_change", u_change), ("update_rms", update_rms), ("w0_rms", w0_rms)))
    n_entries, steps = validate.positive_int("n_entries", n_entries), validate.integer("steps", steps, lo=2)
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
    runs, switch = _norm_runs(settings, u_change, update_rms, n_entries, w0_rms, steps)
    fig, (a, b, c) = figure_row(3, width=4.4, height=3.4)
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
