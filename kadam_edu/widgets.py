"""ipywidgets explorers for the book: live in Jupyter and Colab, a frozen snapshot in the static book.

Each explorer is a small function that builds sliders and calls one drawing function from
:mod:`kadam_edu.plots` (or a `draw_*` function here) whenever a slider moves. The same drawing
function, called with a few preset values, gives the static figure that follows every explorer
in the book (a static page has no kernel).

Pattern (see :func:`explorer`)::

    def stability_explorer(beta=0.999, gamma=0.9):
        controls = {"beta": float_slider(...), "gamma": float_slider(...)}
        return explorer(plots.stability_view, controls)

ipywidgets is imported lazily, so `import kadam_edu` never needs it.
"""

from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from kadam_edu import validate


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the explorers need ipywidgets: pip install ipywidgets (or kadam-edu[book])") from err
    return ipywidgets


def float_slider(description: str, value: float, lo: float, hi: float, step: float, *, readout_format: str = ".4f"):
    """A FloatSlider that updates on release (training-backed explorers are not instant)."""
    if not lo <= value <= hi:
        raise ValueError(f"{description}: initial value {value} is outside the slider's range [{lo}, {hi}]")
    w = _ipywidgets()
    return w.FloatSlider(value=value, min=lo, max=hi, step=step, description=description,
                         readout_format=readout_format, continuous_update=False,
                         style={"description_width": "initial"})


def log_slider(description: str, value: float, lo: float, hi: float, *, readout_format: str = ".1e"):
    """A FloatLogSlider over [lo, hi] (both > 0), updating on release."""
    if not (0 < lo <= value <= hi):
        raise ValueError(f"{description}: need 0 < lo <= value <= hi, got lo={lo}, value={value}, hi={hi}")
    import math

    w = _ipywidgets()
    return w.FloatLogSlider(value=value, base=10, min=math.log10(lo), max=math.log10(hi), step=0.05,
                            description=description, readout_format=readout_format,
                            continuous_update=False, style={"description_width": "initial"})


def explorer(draw: Callable[..., Figure], controls: dict, *, fixed: dict | None = None):
    """Wire `controls` (name -> widget) to `draw(**values, **fixed) -> Figure`; return the widget box.

    The figure is redrawn into an Output widget whenever a control changes; errors from `draw`
    (for example a value a bound refuses) are shown in the output instead of breaking the widget.
    """
    if not controls:
        raise ValueError("explorer needs at least one control")
    w = _ipywidgets()
    from IPython.display import display

    fixed = dict(fixed or {})
    out = w.Output()

    def redraw(_change=None):
        values = {name: c.value for name, c in controls.items()}
        with out:
            out.clear_output(wait=True)
            try:
                fig = draw(**values, **fixed)
            except ValueError as err:
                print(f"not drawn: {err}")
                return
            display(fig)
            plt.close(fig)

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox(list(controls.values()), layout=w.Layout(flex_flow="row wrap")), out])


def stability_explorer(beta=0.999, gamma=0.9, *, n_max=1000):
    """Sliders for beta (second moment) and gamma (first moment) driving :func:`kadam_edu.plots.stability_view`.

    Shows the point on the region map, C(beta, gamma), Eq. 5 and the exact discrete bound against n,
    and both predicted slopes (Section 3.1). Initial values must lie on the sliders:
    beta in [0.5, 0.9999], gamma in [0.5, 0.9999]; n_max (fixed) is an integer >= 1.
    """
    from kadam_edu import plots

    beta, gamma = (validate.finite_real(name, value, lo=0.5, hi=0.9999, meaning="the slider's range")
                   for name, value in (("beta", beta), ("gamma", gamma)))
    n_max = validate.positive_int("n_max", n_max)
    controls = {
        "beta": float_slider("beta (2nd moment)", beta, 0.5, 0.9999, 0.0001),
        "gamma": float_slider("gamma (1st moment)", gamma, 0.5, 0.9999, 0.0001),
    }
    return explorer(plots.stability_view, controls, fixed={"n_max": n_max})


def levels_explorer(k=2, strategy="inverse_exp", beta=0.999, gamma=0.9, *, k_max=10):
    """Chapter 4 (Section 4.2, App. Q, App. T): pick k and a strategy (and Adam's beta, gamma) and
    see k-Adam's level pair on the region map and its per-level max-update bound
    (:func:`kadam_edu.plots.levels_view`)."""
    from kadam_edu import plots
    from kadam_edu.optim import STRATEGIES

    k_max = validate.positive_int("k_max", k_max)
    k = validate.integer("k", k, lo=1, hi=k_max, meaning="up to k_max")
    strategy = validate.choice("strategy", strategy, STRATEGIES, meaning="Section 4.2")
    w = _ipywidgets()
    controls = {
        "k": w.IntSlider(value=k, min=1, max=k_max, step=1, description="k (levels)", continuous_update=False,
                         style={"description_width": "initial"}),
        "strategy": w.Dropdown(options=list(STRATEGIES), value=strategy, description="strategy",
                               style={"description_width": "initial"}),
        "beta": float_slider("beta (2nd moment)", float(beta), 0.5, 0.9999, 0.0001),
        "gamma": float_slider("gamma (1st moment)", float(gamma), 0.0, 0.99, 0.01),
    }
    return explorer(plots.levels_view, controls, fixed={"k_max": k_max})


def norm_explorer(lr=1e-3, weight_decay=0.1, u_change=0.25, *, update_rms=0.3, n_entries=1024, w0_rms=0.02,
                  steps=40_000):
    """Chapter 3 (Section 4.1, Eq. 8, 9): sliders for the learning rate eta, the decoupled weight decay lam
    and a change of the update size ||u_W|| half-way, driving :func:`kadam_edu.plots.norm_view`.

    Shows ||W||^2 of a modelled scale-invariant weight (updates orthogonal to W), its effective learning
    rate eta/||W|| and its angular update against Eq. 8's equilibrium sqrt(2 lam eta). Slider ranges:
    lr in [1e-4, 1e-2], weight_decay in [0, 1], u_change in [0.1, 10]; the keyword-only values are fixed
    (see :func:`kadam_edu.plots.norm_presets`) and are checked by the first drawing.
    """
    from kadam_edu import plots

    controls = {
        "lr": log_slider("lr (eta)", lr, 1e-4, 1e-2),
        "weight_decay": float_slider("weight decay (lambda)", weight_decay, 0.0, 1.0, 0.01, readout_format=".2f"),
        "u_change": log_slider("||u_W|| factor at half-way", u_change, 0.1, 10.0, readout_format=".2f"),
    }
    plots.norm_view(lr, weight_decay, u_change, update_rms=update_rms, n_entries=n_entries, w0_rms=w0_rms,
                    steps=2)  # checks the fixed values now, with a two-step run
    return explorer(plots.norm_view, controls, fixed=dict(update_rms=update_rms, n_entries=n_entries,
                                                           w0_rms=w0_rms, steps=steps))


def kernel_explorer(beta=0.999, gamma=0.9, steps=300, noise=0.3):
    """Chapter 1 (Eq. 1-3): sliders for beta (second moment), gamma (first moment), the number of
    steps n of a toy gradient signal and its noise, driving :func:`kadam_edu.plots.kernel_view`.

    Shows the kernels K_gamma and K_beta against Adam's discrete weights, and the continuous against
    the discrete moving averages and update. Slider ranges: beta in [0.5, 0.9999], gamma in
    [0.01, 0.99], steps in [20, 1000], noise in [0, 2]; values outside them raise ValueError.
    """
    from kadam_edu import plots

    steps = validate.integer("steps", steps, lo=20, hi=1000, meaning="the slider's range")
    w = _ipywidgets()
    controls = {
        "beta": float_slider("beta (2nd moment)", float(beta), 0.5, 0.9999, 0.0001),
        "gamma": float_slider("gamma (1st moment)", float(gamma), 0.01, 0.99, 0.01, readout_format=".2f"),
        "steps": w.IntSlider(value=steps, min=20, max=1000, step=10, description="steps n",
                             continuous_update=False, style={"description_width": "initial"}),
        "noise": float_slider("gradient noise", float(noise), 0.0, 2.0, 0.05, readout_format=".2f"),
    }
    return explorer(plots.kernel_view, controls)


def eos_quadratic_explorer(lr=0.1, gamma=0.9, beta=0.999, *, steps=10_000, eps=0.0):
    """Chapter 6 (edge of stability): sliders for Adam's lr eta, gamma (first moment) and beta (second
    moment) on a 2-D quadratic, driving :func:`kadam_edu.plots.eos_quadratic_view`.

    Shows the preconditioned sharpness lambda_max(P_n^{-1} H) against the threshold
    (2 + 2 gamma) / ((1 - gamma) eta), and the loss. Slider ranges: lr in [1e-3, 1], gamma in
    [0, 0.99], beta in [0.9, 0.9999]; steps (int >= 1) and eps (>= 0) are fixed and checked by a
    short first run.
    """
    from kadam_edu import plots

    controls = {
        "lr": log_slider("lr (eta)", lr, 1e-3, 1.0),
        "gamma": float_slider("gamma (1st moment)", gamma, 0.0, 0.99, 0.01, readout_format=".2f"),
        "beta": float_slider("beta (2nd moment)", beta, 0.9, 0.9999, 0.0001),
    }
    plots.eos_quadratic_view(lr, gamma, beta, steps=min(steps, 2) if isinstance(steps, int) else steps,
                             eps=eps)  # checks the fixed values now, with a two-step run
    return explorer(plots.eos_quadratic_view, controls, fixed={"steps": steps, "eps": eps})


def scaling_explorer(kappa=4.0, beta=0.95, gamma=0.97):
    """Chapter 5 (noise and batch size): sliders for the batch-size multiplier kappa and the base point
    (beta second moment, gamma first moment), driving :func:`kadam_edu.plots.scaling_view`.

    Shows where the square-root rule moves (beta, gamma) on the region map and C after the rule
    against kappa. Slider ranges: kappa in [0.25, 40], beta in [0.5, 0.9995], gamma in [0, 0.9995];
    a kappa the rule refuses for the chosen point (a decay pushed below 0) is reported, not drawn.
    """
    from kadam_edu import plots

    controls = {
        "kappa": float_slider("kappa (batch multiplier)", float(kappa), 0.25, 40.0, 0.25, readout_format=".2f"),
        "beta": float_slider("beta (2nd moment)", float(beta), 0.5, 0.9995, 0.0005),
        "gamma": float_slider("gamma (1st moment)", float(gamma), 0.0, 0.9995, 0.0005),
    }
    plots.scaling_view(kappa, beta, gamma)  # checks the initial values now
    return explorer(plots.scaling_view, controls)
