"""The boundary sweep of Assignment 3 (kadam_edu.experiments.boundary): the rare-feature problem, the
sweep over a (beta, gamma) grid and what it records, its presets and its argument checks."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _assignment_answers import SWEEP_GRID, log_slope, make_optimizer  # tests/
from kadam_edu.experiments import boundary


@pytest.fixture(scope="module")
def sweep():
    return boundary.boundary_sweep(make_optimizer, **SWEEP_GRID)


def test_rare_feature_problem_and_sweep_follow_the_discrete_law(sweep):
    assert sweep.max_updates.shape == (2, 11, 80) and sweep.settings["betas_passed"] == (0.4, 0.3)
    assert sweep.settings["eps"] == 0.0 and not sweep.settings["reference"]
    slopes = sweep.log_slopes(log_slope)
    np.testing.assert_allclose(slopes, sweep.log_slopes(), rtol=1e-9, atol=1e-12)  # the library's fit
    discrete, _ = sweep.predicted_rates()
    growing = discrete * 40 >= 1
    assert growing.sum() >= 4
    np.testing.assert_allclose(slopes[growing], discrete[growing], rtol=0.05)  # rare weights: exact geometric decay
    assert np.all(np.abs(slopes[discrete * 40 <= -1]) < 0.005)  # dense weights keep the max-update of order 1
    assert math.isclose(sweep.gamma_spacing, 0.05, rel_tol=1e-6)


def test_problem_validates_and_gradient_is_the_mse_gradient():
    with pytest.raises(ValueError, match="dense"):
        boundary.RareFeatureProblem(dense=0)
    with pytest.raises(ValueError, match="lr"):
        boundary.RareFeatureProblem(lr=-1.0)
    problem = boundary.RareFeatureProblem()
    x, y = problem.batches(12, seed=3)[11]
    assert torch.all(x[:, problem.dense:] == 0)
    w = problem.initial_weights(3)
    loss = ((x @ w - y) ** 2).mean()
    (grad,) = torch.autograd.grad(loss, w)
    torch.testing.assert_close(problem.gradient(w, (x, y)), grad)


def test_sweep_validates_and_falls_back_when_unanswered(capsys):
    small = dict(betas=[0.5], gammas=[0.6, 0.8], steps=20, window=(10, 20))
    sw = boundary.boundary_sweep(lambda p, **kw: None, **small)
    assert sw.settings["reference"] and "not answered yet" in capsys.readouterr().out
    with pytest.raises(TypeError, match="KAdam"):
        boundary.boundary_sweep(lambda p, *, beta, gamma, lr: torch.optim.Adam(p, lr=lr), **small)
    for bad in [dict(small, window=(10, 30)), dict(small, betas=[1.0]), dict(small, gammas=[0.8, 0.6]),
                dict(small, steps=1)]:
        with pytest.raises(ValueError):
            boundary.boundary_sweep(make_optimizer, **bad)
    slopes = sw.log_slopes(lambda mu, a, b: None)
    assert "not answered yet" in capsys.readouterr().out and np.all(np.isfinite(slopes))
    assert set(boundary.boundary_settings("smoke")) == {"betas", "gammas", "steps", "window"}


def test_the_sweep_imports_nothing_above_experiments():
    code = ("import sys, kadam_edu.experiments.boundary; "
            "up = [m for m in sys.modules if m.startswith(('kadam_edu.assignments', 'kadam_edu.plots'))]; "
            "assert not up, up")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_the_sweep_shows_one_progress_bar_step_per_point(monkeypatch):
    bars = []

    class Bar:  # stands in for tqdm.auto.tqdm, which kadam_edu.progress.bar builds
        def __init__(self, *, total, desc, leave):
            self.total, self.desc, self.leave, self.n, self.closed = total, desc, leave, 0, False
            bars.append(self)

        def update(self, n=1):
            self.n += n

        def close(self):
            self.closed = True

    monkeypatch.setattr("tqdm.auto.tqdm", Bar)
    small = dict(betas=[0.3, 0.5], gammas=[0.6, 0.7, 0.8], steps=10, window=(5, 10))
    boundary.boundary_sweep(make_optimizer, progress=True, **small)
    (bar,) = bars
    assert (bar.total, bar.n, bar.desc, bar.leave, bar.closed) == (6, 6, "sweep", False, True)
    boundary.boundary_sweep(make_optimizer, **small)  # no bar unless asked for
    assert len(bars) == 1
    calls = []
    with pytest.raises(ValueError, match="progress"):  # refused before anything runs
        boundary.boundary_sweep(lambda *a, **k: calls.append(1), progress="yes", **small)
    assert len(bars) == 1 and not calls


def test_label_grid_is_the_labels_as_an_array_or_a_clear_error(sweep):
    rows = [["stable"] * 11, ["unstable"] * 10 + [None]]
    grid = boundary.label_grid(sweep, rows)
    assert grid.shape == (2, 11) and grid.dtype == object and grid[1, 0] == "unstable" and grid[1, 10] is None
    assert boundary.LABELS == ("stable", "unstable")
    with pytest.raises(TypeError, match="BoundarySweep"):
        boundary.label_grid("sweep", rows)
    with pytest.raises(ValueError, match=r"shape \(2, 11\); got 1 rows of lengths \[1\]"):
        boundary.label_grid(sweep, [["stable"]])
    with pytest.raises(ValueError, match="'stable' or 'unstable'"):
        boundary.label_grid(sweep, [["Stable"] * 11] * 2)


@pytest.mark.parametrize("scale", ["smoke", "cpu", "gpu", "paper"])
def test_every_scale_has_a_grid(scale):
    """'auto' resolves to 'gpu' on a CUDA machine (Colab): the A3 notebook must get a grid there too."""
    settings = boundary.boundary_settings(scale)
    assert settings["betas"].ndim == 1 and settings["gammas"].ndim == 1 and settings["steps"] > 0


def test_boundary_settings_takes_overrides_of_its_keys_only():
    assert boundary.boundary_settings("smoke", steps=200, window=(100, 200))["steps"] == 200
    assert boundary.boundary_settings("smoke")["steps"] == boundary.BOUNDARY_PRESETS["smoke"]["steps"]
    with pytest.raises(ValueError, match=r"unknown settings \['stepz'\].*'steps'"):
        boundary.boundary_settings("smoke", stepz=200)


def test_reference_log_slope_is_the_least_squares_slope_or_nan():
    mu = np.exp(0.25 * np.arange(20.0))
    assert boundary.reference_log_slope(mu, 5, 15) == pytest.approx(0.25, rel=1e-12)
    mu[6:] = np.nan
    assert math.isnan(boundary.reference_log_slope(mu, 5, 15))
