"""kadam_edu.plots.kadam: level_bounds on the App. T training check (kadam_edu.experiments.level_bounds),
levels_view and widgets.levels_explorer."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from kadam_edu import Level, kadam_levels, levels, plots
from kadam_edu.experiments.level_bounds import level_bounds as level_bounds_run
from kadam_edu.optim import STRATEGIES


# --------------------------------------------------------------------------- App. T on a run
@pytest.fixture(scope="module")
def run_smoke():
    return level_bounds_run("smoke", steps=12, progress=False)


def test_level_bounds_run_holds_every_bound(run_smoke):
    r = run_smoke
    assert r.figure == "level_bounds" and r.scale == "smoke"
    assert [p["strategy"] for p in r.points] == list(STRATEGIES)
    for p in r.points:
        arr = r.point_arrays(p["index"])
        mu = arr["level_max_updates"]
        assert mu.shape == (12, 3) and p["steps_done"] == 12 and p["diverged_at"] is None
        lv = [Level(gamma=g, beta=b) for g, b in zip(p["level_gamma"], p["level_beta"])]
        np.testing.assert_allclose(arr["bound_discrete"], levels.level_bounds(np.arange(12), lv))
        # float32 rounding allows a few ulps above 1 where the bound is met (step 0: u = sign(x))
        assert max(p["max_ratio_discrete"]) <= 1 + 1e-6
        assert max(p["max_ratio_continuous"]) <= 1 + 1e-6
        assert p["max_ratio_discrete"] == pytest.approx(list((mu / arr["bound_discrete"]).max(axis=0)))
        # step 0 at every level is the sign of its input: the bound (1 at n = 0) is met
        np.testing.assert_allclose(mu[0], 1.0, rtol=1e-6)
    fig = plots.plot(r)
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * len(r.points)


def test_level_bounds_run_bad_config():
    with pytest.raises(ValueError, match="strategies must be among"):
        level_bounds_run("smoke", strategies=["linear"])
    with pytest.raises(ValueError, match="steps must be"):
        level_bounds_run("smoke", steps=0)
    with pytest.raises(ValueError, match="unknown settings"):
        level_bounds_run("smoke", epochs=3)
    with pytest.raises(ValueError, match="k must be"):
        level_bounds_run("smoke", k=0)


# --------------------------------------------------------------------------- views and explorer
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_levels_view_builds(strategy):
    fig = plots.levels_view(3, strategy)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    lv = kadam_levels(3, strategy=strategy)[0]
    assert f"{lv.beta:.4g}" in fig._suptitle.get_text()
    # the chosen level pair is drawn on the region map
    xs = [tuple(np.ravel(line.get_xdata())) for line in fig.axes[0].lines]
    assert (lv.beta,) in xs


def test_levels_view_extremes():
    assert isinstance(plots.levels_view(1, "naive", beta=0.6, gamma=0.9), Figure)  # B-: the bound explodes
    assert isinstance(plots.levels_view(2, "inverse_exp", gamma=0.0), Figure)  # gamma = 0: Eq. 5 is inf
    assert isinstance(plots.levels_view(10, "scaled", n_max=50), Figure)


@pytest.mark.parametrize("kwargs, match", [
    (dict(k=0, strategy="exp"), "k must be"),
    (dict(k=11, strategy="exp"), "k must be in 1..k_max"),
    (dict(k=2.0, strategy="exp"), "k must be"),
    (dict(k=2, strategy="linear"), "strategy must be"),
    (dict(k=2, strategy="exp", beta=1.5), "beta"),
    (dict(k=2, strategy="exp", gamma=1.0), "gamma"),
    (dict(k=2, strategy="exp", n_max=5), "n_max"),
    (dict(k=2, strategy="exp", k_max=0), "k_max"),
])
def test_levels_view_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plots.levels_view(**kwargs)


def test_levels_explorer_builds():
    pytest.importorskip("ipywidgets")
    from kadam_edu import widgets

    box = widgets.levels_explorer(k=3, strategy="exp")
    controls = box.children[0].children
    assert [c.description for c in controls][:2] == ["k (levels)", "strategy"]
    assert controls[0].value == 3 and controls[1].value == "exp"
    assert list(controls[1].options) == list(STRATEGIES)
    controls[0].value = 5  # redraws without raising
    with pytest.raises(ValueError, match="strategy must be"):
        widgets.levels_explorer(k=2, strategy="linear")
    with pytest.raises(ValueError, match="k must be"):
        widgets.levels_explorer(k=20)
