"""kadam_edu.plots.scale_invariance: kernel_view, ode_vs_adam, norm_view / norm_presets, and their explorers
(widgets.kernel_explorer, widgets.norm_explorer); with the model they draw (continuous.orthogonal_norm_dynamics,
Eq. 8, 9) and the scale invariance under qk-norm (Eq. 6)."""

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from kadam_edu import continuous as ct
from kadam_edu import plots
from kadam_edu.experiments.result import Result


# --------------------------------------------------------------------------- kernels (Eq. 3) and the Eq. 4 ODE
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


# --------------------------------------------------------------------------- orthogonal_norm_dynamics
def test_discrete_matches_an_independent_vector_simulation():
    """Simulate W in R^N with random updates projected orthogonal to W, of prescribed norms."""
    rng = np.random.default_rng(0)
    N, steps, lr, lam = 50, 300, 1e-2, 0.7
    u_sq = rng.uniform(0.5, 4.0, steps) * N
    W = rng.normal(size=N) * 0.1
    norms = [W @ W]
    for un in u_sq:
        d = rng.normal(size=N)
        d -= (d @ W) / (W @ W) * W  # orthogonal to W
        u = d / np.linalg.norm(d) * math.sqrt(un)
        W = (1 - lr * lam) * W - lr * u
        norms.append(W @ W)
    r = ct.orthogonal_norm_dynamics(norms[0], u_sq, lr=lr, weight_decay=lam)
    np.testing.assert_allclose(r.discrete, norms, rtol=1e-10)
    np.testing.assert_allclose(r.effective_lr, lr / np.sqrt(norms[:-1]), rtol=1e-10)
    np.testing.assert_allclose(r.angular_update, lr * np.sqrt(u_sq) / np.sqrt(norms[:-1]), rtol=1e-10)


@pytest.mark.parametrize("lam", [0.0, 0.05, 2.0])
def test_eq8_is_the_closed_form_for_constant_updates(lam):
    phi0, U, lr, steps = 0.4, 120.0, 1e-3, 5000
    r = ct.orthogonal_norm_dynamics(phi0, np.full(steps, U), lr=lr, weight_decay=lam)
    t = np.arange(steps + 1) * lr
    if lam > 0:
        closed = phi0 * np.exp(-2 * lam * t) + lr * U * (1 - np.exp(-2 * lam * t)) / (2 * lam)
        assert r.equilibrium[0] == pytest.approx(lr * U / (2 * lam))
        assert r.equilibrium_angular_update == pytest.approx(math.sqrt(2 * lam * lr))
    else:
        closed = phi0 + lr * U * t  # phi' = eta U
        assert np.all(np.isinf(r.equilibrium)) and r.equilibrium_angular_update == 0.0
    np.testing.assert_allclose(r.eq8, closed, rtol=1e-10)
    # the discrete recursion differs from Eq. 8 only at order eta * lam (and exactly agrees at lam = 0)
    np.testing.assert_allclose(r.discrete, r.eq8, rtol=2 * lr * lam + 1e-12)


def test_long_run_reaches_the_discrete_and_continuous_fixed_points():
    lr, lam, U = 1e-2, 1.0, 10.0
    r = ct.orthogonal_norm_dynamics(5.0, np.full(20_000, U), lr=lr, weight_decay=lam)
    assert r.discrete[-1] == pytest.approx(lr * U / (lam * (2 - lr * lam)), rel=1e-9)
    assert r.eq8[-1] == pytest.approx(lr * U / (2 * lam), rel=1e-9)
    assert r.angular_update[-1] == pytest.approx(math.sqrt(2 * lam * lr), rel=lr * lam)


def test_eq8_agrees_with_sq_norm_eq8_to_order_eta_lambda():
    """sq_norm_eq8 (a left Riemann sum of the same integral) and the exact per-step solution."""
    rng = np.random.default_rng(1)
    lr, lam = 1e-3, 0.3
    u_sq = rng.uniform(10, 100, 400)
    r = ct.orthogonal_norm_dynamics(0.5, u_sq, lr=lr, weight_decay=lam)
    np.testing.assert_allclose(r.eq8, ct.sq_norm_eq8(0.5, u_sq, lr=lr, weight_decay=lam), rtol=2 * lr * lam)


def test_no_weight_decay_sums_the_updates():
    u_sq = np.array([1.0, 2.0, 3.0])
    r = ct.orthogonal_norm_dynamics(1.0, u_sq, lr=0.1)
    np.testing.assert_allclose(r.discrete, [1.0, 1.01, 1.03, 1.06])
    np.testing.assert_allclose(r.eq8, r.discrete)
    assert r.steps.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "phi0, u_sq, kw, match",
    [
        (0.0, [1.0], dict(lr=1e-3), "phi0"),
        (-1.0, [1.0], dict(lr=1e-3), "phi0"),
        (1.0, [1.0], dict(lr=0.0), "lr"),
        (1.0, [1.0], dict(lr=1e-3, weight_decay=-0.1), "weight_decay"),
        (1.0, [1.0], dict(lr=0.1, weight_decay=10.0), "weight_decay"),
        (1.0, [1.0], dict(lr=1e-3, weight_decay=math.inf), "weight_decay"),
        (1.0, [], dict(lr=1e-3), "u_sq"),
        (1.0, [[1.0]], dict(lr=1e-3), "u_sq"),
        (1.0, [1.0, -2.0], dict(lr=1e-3), "u_sq"),
        (1.0, [1.0, math.nan], dict(lr=1e-3), "u_sq"),
        (1.0, ["a"], dict(lr=1e-3), "u_sq"),
    ],
)
def test_orthogonal_norm_dynamics_refuses_bad_input(phi0, u_sq, kw, match):
    with pytest.raises(ValueError, match=match):
        ct.orthogonal_norm_dynamics(phi0, u_sq, **kw)


# --------------------------------------------------------------------------- scale invariance under qk-norm (Eq. 6)
def test_qk_norm_head_is_scale_invariant_with_orthogonal_gradient():
    from kadam_edu.models import GPT, gpt_config

    torch.manual_seed(0)
    model = GPT(gpt_config("smoke", qk_norm=True)).double()
    x = torch.randint(65, (2, 16))
    head = model.query_key_heads()[1]

    def loss_and_grad():
        model.zero_grad()
        loss = model(x, x)[1]
        loss.backward()
        return float(loss.detach()), head.param.grad[head.rows].clone()

    l1, g1 = loss_and_grad()
    W = head.weight().detach().clone()
    with torch.no_grad():
        head.param[head.rows] *= 3.0
    l3, g3 = loss_and_grad()
    assert l3 == pytest.approx(l1, rel=1e-12)
    assert abs(float((W * g1).sum())) < 1e-12 * float(W.norm() * g1.norm()) + 1e-15
    torch.testing.assert_close(g3 * 3.0, g1, rtol=1e-9, atol=1e-14)


# --------------------------------------------------------------------------- plots and explorer
def test_norm_view_and_presets_draw():
    fig = plots.norm_view(1e-3, 0.1, 0.5, steps=200)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    fig = plots.norm_presets([(1e-3, 0.0), (2e-3, 0.2)], steps=100)
    assert len(fig.axes[0].get_lines()) >= 4


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(u_change=0.0), "u_change"),
        (dict(update_rms=-1.0), "update_rms"),
        (dict(w0_rms=math.nan), "w0_rms"),
        (dict(n_entries=0), "n_entries"),
        (dict(steps=1), "steps"),
        (dict(steps=10.5), "steps"),
    ],
)
def test_norm_view_refuses_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        plots.norm_view(1e-3, 0.1, **kw)
    with pytest.raises(ValueError, match="weight_decay"):
        plots.norm_view(1e-3, -1.0, steps=10)
    with pytest.raises(ValueError, match="settings"):
        plots.norm_presets([(1e-3,)], steps=10)


def test_norm_explorer_builds_sliders_and_refuses_values_off_the_sliders():
    pytest.importorskip("ipywidgets")
    from kadam_edu import widgets

    box = widgets.norm_explorer(2e-3, 0.2, 0.5, steps=50)
    sliders = box.children[0].children
    assert [s.value for s in sliders] == pytest.approx([2e-3, 0.2, 0.5], rel=1e-9)
    with pytest.raises(ValueError):
        widgets.norm_explorer(lr=1.0)
    with pytest.raises(ValueError):
        widgets.norm_explorer(weight_decay=2.0)
    with pytest.raises(ValueError, match="update_rms"):
        widgets.norm_explorer(update_rms=0.0)
