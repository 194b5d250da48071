"""kadam_edu.plots.stability: stability_view, curves_map, bound_ratio, and widgets.stability_explorer.

The drawn curves are checked against formulas written out here (Eq. 5 and the exact discrete
bound), not against the library functions the view calls.
"""

import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from kadam_edu import plots, widgets


def eq5_log(n, beta, gamma):
    """ln of Eq. 5 for C < 0 (the B- branch), in plain floating point."""
    c = (2 * beta * (1 - gamma) - gamma * (1 - beta)) / (beta * gamma)
    assert c < 0
    return (0.5 * math.log(1 - beta ** (n + 1)) - math.log(1 - gamma ** (n + 1)) + math.log((1 - gamma) / gamma)
            + 0.5 * math.log(beta / (1 - beta)) + n * abs(c) / 2 - 0.5 * math.log(abs(c)))


def discrete_log(n, beta, gamma):
    """ln of the exact discrete bound with S_n summed term by term."""
    s_n = sum((gamma * gamma / beta) ** j for j in range(n + 1))
    return (0.5 * math.log(1 - beta ** (n + 1)) - math.log(1 - gamma ** (n + 1))
            + math.log((1 - gamma) / math.sqrt(1 - beta)) + 0.5 * math.log(s_n))


def _line(ax, label_start):
    hits = [ln for ln in ax.get_lines() if ln.get_label().startswith(label_start)]
    assert len(hits) == 1, [ln.get_label() for ln in ax.get_lines()]
    return hits[0]


def test_stability_view_draws_both_bounds_exactly():
    beta, gamma, n_max = 0.9, 0.99, 300
    fig = plots.stability_view(beta, gamma, n_max=n_max)
    assert isinstance(fig, Figure)
    a, b, d = fig.axes[:3]
    cont, disc = _line(d, "Eq. 5"), _line(d, "exact discrete")
    n = np.asarray(cont.get_xdata())
    assert n[0] == 0 and n[-1] == n_max
    for k in (1, 50, 300):
        assert cont.get_ydata()[k] == pytest.approx(eq5_log(k, beta, gamma), rel=1e-9)
        assert disc.get_ydata()[k] == pytest.approx(discrete_log(k, beta, gamma), rel=1e-9)
    # the legend carries the two predicted slopes
    c = 2 / gamma - 1 / beta - 1
    assert f"{-c / 2:.4g}" in cont.get_label()
    assert f"{math.log(gamma) - math.log(beta) / 2:.4g}" in disc.get_label()
    # the point is marked on the region map and in the window, which contains it
    for ax in (a, b):
        offsets = [coll.get_offsets() for coll in ax.collections if len(coll.get_offsets()) == 1]
        assert any(np.allclose(o[0], (beta, gamma)) for o in offsets)
    lo, hi = b.get_xlim()
    assert lo < beta < hi


@pytest.mark.parametrize("beta,gamma", [(0.999, 0.9), (0.95, 2 * 0.95 / 1.95), (0.5, 0.9), (0.9999, 0.9999), (0.01, 0.02)])
def test_stability_view_in_every_region_and_near_edges(beta, gamma):
    fig = plots.stability_view(beta, gamma, n_max=50)
    region = {(0.999, 0.9): "B+", (0.5, 0.9): "B-"}.get((beta, gamma))
    if region is not None:
        assert region in fig.axes[0].get_title()
    if gamma == 2 * 0.95 / 1.95:  # on B0 the title prints C = 0, not rounding noise
        assert "C=0$" in fig.axes[0].get_title() and "B0" in fig.axes[0].get_title()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(beta=1.0, gamma=0.9), "beta"),
        (dict(beta=0.0, gamma=0.9), "beta"),
        (dict(beta=0.9, gamma=0.0), "gamma"),
        (dict(beta=0.9, gamma=float("nan")), "gamma"),
        (dict(beta="0.9", gamma=0.9), "beta"),
        (dict(beta=0.9, gamma=0.9, n_max=0), "n_max"),
        (dict(beta=0.9, gamma=0.9, n_max=10.5), "n_max"),
        (dict(beta=0.9, gamma=0.9, half_width=0.0), "half_width"),
    ],
)
def test_stability_view_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plots.stability_view(**kwargs)


def test_curves_map_draws_curves_on_their_equations():
    fig = plots.curves_map(levels=(0.2,), through=((0.95, 0.9),))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    lb, lg = (np.asarray(x) for x in _line(ax, "level").get_data())
    np.testing.assert_allclose(lg, 2 * lb / (1.2 * lb + 1), rtol=1e-9)
    nb, ng = (np.asarray(x) for x in _line(ax, "normal").get_data())
    np.testing.assert_allclose(2 * nb**3 + ng**3, 2 * 0.95**3 + 0.9**3, rtol=1e-9)


@pytest.mark.parametrize(
    "kwargs", [dict(levels=(), through=()), dict(levels=(float("inf"),)), dict(through=((1.0, 0.5),)),
               dict(through=((0.5,),)), dict(num=1)]
)
def test_curves_map_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        plots.curves_map(**kwargs)


def test_stability_explorer_builds_and_redraws(monkeypatch):
    pytest.importorskip("ipywidgets")
    box = widgets.stability_explorer(beta=0.95, gamma=0.99, n_max=100)  # the real view, drawn once
    sliders = box.children[0].children
    assert [s.value for s in sliders] == [0.95, 0.99]

    calls, view = [], plots.stability_view

    def record(**kwargs):
        calls.append(kwargs)
        return view(**kwargs)

    monkeypatch.setattr(plots, "stability_view", record)
    box = widgets.stability_explorer(beta=0.95, gamma=0.99, n_max=100)
    assert calls == [dict(beta=0.95, gamma=0.99, n_max=100)]
    box.children[0].children[1].value = 0.6  # moving a slider redraws with the new value
    assert calls[-1] == dict(beta=0.95, gamma=0.6, n_max=100)


@pytest.mark.parametrize("kwargs", [dict(beta=0.2), dict(gamma=1.0), dict(beta=True), dict(n_max=0)])
def test_stability_explorer_rejects_bad_input(kwargs):
    pytest.importorskip("ipywidgets")
    with pytest.raises(ValueError):
        widgets.stability_explorer(**kwargs)


class _Sweep:
    """A minimal stand-in for a sweep Result with known max-update trajectories."""

    figure, scale = "fig1", "smoke"

    def __init__(self, points, arrays):
        self.points, self._arrays = points, arrays

    def point_arrays(self, index):
        return self._arrays[index]


def test_bound_ratio_divides_by_the_exact_bound():
    beta, gamma = 0.9, 0.99
    n = np.arange(40)
    mu = np.array([0.5 * math.exp(discrete_log(k, beta, gamma)) for k in n])  # half the discrete bound
    c = 2 / gamma - 1 / beta - 1
    res = _Sweep([dict(index=0, beta=beta, gamma=gamma, C=c)], {0: {"max_update": mu}})
    fig = plots.bound_ratio(res)
    a, b = fig.axes[:2]
    ratio = [ln for ln in a.get_lines() if len(ln.get_xdata()) == len(n)][0].get_ydata()
    np.testing.assert_allclose(ratio, 0.5, rtol=1e-9)
    ratio_eq5 = [ln for ln in b.get_lines() if len(ln.get_xdata()) == len(n)][0].get_ydata()
    assert ratio_eq5[30] == pytest.approx(mu[30] / math.exp(eq5_log(30, beta, gamma)), rel=1e-9)


def test_bound_ratio_rejects_results_without_trajectories():
    with pytest.raises(ValueError, match="beta and gamma"):
        plots.bound_ratio(_Sweep([], {}))
    res = _Sweep([dict(index=0, beta=0.9, gamma=0.9, C=0.1)], {0: {"eval_loss": np.ones(3)}})
    with pytest.raises(ValueError, match="max_update"):
        plots.bound_ratio(res)
