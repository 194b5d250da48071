"""Chapter 1's figures and explorer: plots.kernel_view, plots.ode_vs_adam, widgets.kernel_explorer."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from kadam_edu import plots
from kadam_edu.experiments.result import Result


def test_kernel_view_draws_kernels_and_averages():
    fig = plots.kernel_view(0.999, 0.9, steps=50)
    assert isinstance(fig, Figure)
    a, b, c = fig.axes[:3]
    # panel (a): per kernel one line and one set of discrete weights; the line starts at (1 - alpha) / alpha
    line_gamma = a.get_lines()[0]
    assert line_gamma.get_ydata()[0] == pytest.approx(0.1 / 0.9)
    assert a.get_yscale() == "log"
    # panel (c): the discrete update starts at sign(g_0) exactly
    u_d = c.get_lines()[0].get_ydata()
    assert len(u_d) == 50 and abs(u_d[0]) == pytest.approx(1.0)


def test_kernel_view_discrete_weights_are_adams():
    fig = plots.kernel_view(0.99, 0.8, steps=40)
    dots = fig.axes[0].get_lines()[1]  # (1 - gamma) gamma^j
    j, w = dots.get_xdata(), dots.get_ydata()
    np.testing.assert_allclose(w, 0.2 * 0.8**j, rtol=1e-12)


@pytest.mark.parametrize("kwargs", [
    dict(beta=1.0, gamma=0.9), dict(beta=0.0, gamma=0.9), dict(beta=0.999, gamma=0.0),
    dict(beta=0.999, gamma=1.0), dict(beta=0.999, gamma=0.9, steps=1), dict(beta=0.999, gamma=0.9, steps=10.5),
    dict(beta=0.999, gamma=0.9, noise=-0.1), dict(beta="0.9", gamma=0.9),
])
def test_kernel_view_bad_input(kwargs):
    with pytest.raises(ValueError):
        plots.kernel_view(**kwargs)


def _fake_fig7(lr=1e-3, err=0.1):
    t = np.linspace(0, 1, 11)[:, None]
    adam = np.hstack([t, -2 * t])
    ode = adam + err * np.hstack([t, t])
    return Result(figure="fig7", scale="smoke", config={"lr": lr},
                  data={"method": "exp", "substeps": 2, "ode_relative_error": 0.0},
                  arrays={"adam/theta": adam, "ode/theta": ode})


def test_ode_vs_adam_error_curve():
    fig = plots.ode_vs_adam(_fake_fig7(), compare=[_fake_fig7(lr=1e-4, err=0.01)])
    assert isinstance(fig, Figure)
    curves = fig.axes[1].get_lines()
    # ||(err t, err t)|| / max ||(t, -2t)|| = err sqrt(2) t / sqrt(5)
    np.testing.assert_allclose(curves[0].get_ydata(), 0.1 * np.sqrt(2 / 5) * np.linspace(0, 1, 11), rtol=1e-12)
    np.testing.assert_allclose(curves[1].get_ydata().max(), 0.01 * np.sqrt(2 / 5), rtol=1e-12)


def test_ode_vs_adam_refuses_other_results():
    with pytest.raises(ValueError):
        plots.ode_vs_adam(Result(figure="fig5", scale="smoke", config={}))
    with pytest.raises(ValueError):
        plots.ode_vs_adam(_fake_fig7(), compare=[object()])


def test_kernel_explorer_builds():
    pytest.importorskip("ipywidgets")
    from kadam_edu import widgets

    box = widgets.kernel_explorer(beta=0.99, gamma=0.8, steps=100)
    sliders = box.children[0].children
    assert [s.value for s in sliders[:3]] == [pytest.approx(0.99), pytest.approx(0.8), 100]
    sliders[1].value = 0.5  # redraws without error


@pytest.mark.parametrize("kwargs", [dict(beta=1.5), dict(gamma=0.0), dict(steps=5), dict(steps=100.0), dict(noise=3.0)])
def test_kernel_explorer_bad_input(kwargs):
    pytest.importorskip("ipywidgets")
    from kadam_edu import widgets

    with pytest.raises(ValueError):
        widgets.kernel_explorer(**kwargs)
