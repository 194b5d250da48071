"""Continuous-time Adam: kernels, EMAs, the Eq. 4 ODE against discrete Adam, and Eq. 8/12."""

import math

import numpy as np
import pytest
import torch

from kadam_edu import continuous as ct


def quadratic(R=20, seed=0, cond=1e3):
    gen = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(R, R, generator=gen, dtype=torch.float64))[0]
    H = Q @ torch.diag(torch.logspace(0, math.log10(cond), R, dtype=torch.float64) / cond * 10) @ Q.T
    theta0 = torch.randn(R, generator=gen, dtype=torch.float64)
    return theta0, (lambda th, n: 0.5 * th @ H @ th)


# --------------------------------------------------------------------------- kernel and EMAs
def test_kernel_matches_eq3_and_integrates_to_one():
    lr, alpha = 1e-2, 0.9
    a = (1 - alpha) / (lr * alpha)
    assert ct.ema_rate(alpha, lr=lr) == pytest.approx(a)
    assert ct.kernel(0.3, 0.5, alpha, lr=lr) == pytest.approx(a * math.exp(-a * 0.2))
    assert ct.kernel(0.6, 0.5, alpha, lr=lr) == 0.0  # causal
    tau = np.linspace(0, 50, 200001)
    assert np.trapezoid(ct.kernel(tau, 50.0, alpha, lr=lr), tau) == pytest.approx(1.0, rel=1e-6)


def test_bias_correction_at_step_times_is_eq1():
    n = np.arange(10)
    expected = np.sqrt(1 - 0.99 ** (n + 1)) / (1 - 0.8 ** (n + 1))
    np.testing.assert_allclose(ct.bias_correction(n * 1e-3, beta=0.99, gamma=0.8, lr=1e-3), expected, rtol=1e-12)


def test_continuous_ema_is_the_kernel_integral():
    """Against an independent quadrature of Eq. 2 on the same piecewise-linear signal."""
    lr, alpha, N = 1e-2, 0.95, 40
    rng = np.random.default_rng(0)
    x = rng.normal(size=N)
    got = ct.continuous_ema(x, alpha, lr=lr)
    for n in (0, 7, N - 1):
        t = n * lr
        tau = np.linspace(-lr, t, 40001)
        signal = np.interp(tau, np.arange(N) * lr, x)  # held at x_0 on [-lr, 0]
        expected = np.trapezoid(ct.kernel(tau, t, alpha, lr=lr) * signal, tau)
        assert got[n] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("alpha", [0.9, 0.99, 0.999])
def test_continuous_ema_tracks_discrete_ema_to_leading_order(alpha):
    """Bias-corrected continuous and discrete EMAs of a slowly varying signal differ by O(1 - alpha)."""
    N = 2000
    x = np.sin(np.arange(N) / 300.0) + 2.0
    disc = np.empty(N)
    m = 0.0
    for n in range(N):
        m = alpha * m + (1 - alpha) * x[n]
        disc[n] = m / (1 - alpha ** (n + 1))
    cont = ct.continuous_ema(x, alpha, lr=1e-3) / (1 - alpha ** (np.arange(N) + 1))
    err = np.abs(cont - disc).max() / np.abs(x).max()
    assert err < 2 * (1 - alpha)


def test_continuous_update_of_constant_gradient_is_its_sign():
    """Discrete Adam gives exactly sign(g) for a constant g; Eq. 3 does to leading order in
    (1 - gamma): the kernel weight e^{-(1-gamma)/gamma} per step is not gamma (5% at gamma = 0.9)."""
    g = torch.full((30, 3), -0.5, dtype=torch.float64)
    for gamma, tol in ((0.9, 0.06), (0.99, 0.006)):
        u = ct.continuous_update(g, beta=0.999, gamma=gamma, lr=1e-3)
        assert u[0].tolist() == pytest.approx([-1.0] * 3, rel=tol)
        assert u[-1].tolist() == pytest.approx([-1.0] * 3, rel=tol)


# --------------------------------------------------------------------------- Eq. 4 against discrete Adam
def test_euler_tracks_discrete_adam_on_an_ill_conditioned_quadratic():
    """App. I's setting (K = 100, p = 1): measured 0.87% of the total displacement."""
    theta0, loss = quadratic()
    kw = dict(steps=100, lr=1e-2, beta=0.999, gamma=0.9)
    ref = ct.discrete_adam_trajectory(theta0, loss, **kw)
    ode = ct.solve_adam_ode(theta0, loss, substeps=100, **kw)
    assert ode.theta.shape == (101, 20) and ode.grad_evals == 100 * 100 + 1
    assert ode.relative_error(ref) < 0.02


def test_error_shrinks_with_lr_over_a_fixed_time():
    """The ODE is an O(lr) model: over t in [0, 1] the error halves when lr halves."""
    theta0, loss = quadratic()
    errors = []
    for lr in (2e-2, 1e-2, 5e-3):
        kw = dict(steps=round(1 / lr), lr=lr, beta=0.999, gamma=0.9)
        ref = ct.discrete_adam_trajectory(theta0, loss, **kw)
        errors.append(ct.solve_adam_ode(theta0, loss, substeps=4, method="exp", **kw).relative_error(ref))
    assert errors[1] < 0.7 * errors[0] and errors[2] < 0.7 * errors[1], errors


def test_exponential_integrator_matches_euler_at_a_tenth_of_the_gradients():
    theta0, loss = quadratic()
    kw = dict(steps=100, lr=1e-2, beta=0.999, gamma=0.9, weight_decay=0.1)
    ref = ct.discrete_adam_trajectory(theta0, loss, **kw)
    euler = ct.solve_adam_ode(theta0, loss, substeps=100, **kw)
    cheap = ct.solve_adam_ode(theta0, loss, substeps=4, method="exp", **kw)
    assert cheap.grad_evals * 10 <= euler.grad_evals
    assert cheap.relative_error(ref) <= 1.05 * euler.relative_error(ref)
    # and both solve the same ODE: they agree with each other better than with discrete Adam
    assert cheap.relative_error(euler) < 0.5 * euler.relative_error(ref)


@pytest.mark.parametrize("method", ct.METHODS)
def test_coupled_decay_and_rmsprop_level(method):
    theta0, loss = quadratic(R=8, seed=3)
    for kw in (dict(gamma=0.9, weight_decay=0.5, coupled=True), dict(gamma=0.0, weight_decay=0.0)):
        kw.update(steps=60, lr=1e-2, beta=0.99)
        ref = ct.discrete_adam_trajectory(theta0, loss, **kw)
        ode = ct.solve_adam_ode(theta0, loss, substeps=20, method=method, **kw)
        assert ode.relative_error(ref) < 0.05, kw


def mlp_problem(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    gen = torch.Generator().manual_seed(1)
    X, Y = torch.randn(400, 5, generator=gen, dtype=torch.float64), torch.randn(400, 1, generator=gen, dtype=torch.float64)

    def loss_fn(m, n):  # a different minibatch of 16 each step
        idx = torch.arange(16) + (16 * n) % 384
        return torch.nn.functional.mse_loss(m(X[idx]), Y[idx])

    return model, loss_fn


@pytest.mark.parametrize("method,substeps", [("euler", 100), ("exp", 4)])
def test_mlp_with_minibatches_tracks_discrete_and_leaves_model_alone(method, substeps):
    model, loss_fn = mlp_problem()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = dict(steps=30, lr=1e-3, beta=0.999, gamma=0.9, weight_decay=1e-2)
    record = [0, 5, 17, 80, 100, 112]
    ref = ct.discrete_adam_trajectory(model, loss_fn, record=record, **kw)
    ode = ct.solve_adam_ode(model, loss_fn, substeps=substeps, method=method, record=record, **kw)
    assert ode.theta.shape == ref.theta.shape == (31, len(record))
    assert ode.relative_error(ref) < 0.04  # measured 2.7% (Euler, K = 100) and 2.8% (exp, K = 4)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


# --------------------------------------------------------------------------- norm dynamics
class ScaleInvariant(torch.nn.Module):
    """y = head(tanh(x (W / ||W||)^T)): the loss is invariant to W -> c W (Eq. 6 holds)."""

    def __init__(self):
        super().__init__()
        self.W = torch.nn.Parameter(torch.randn(12, 6, dtype=torch.float64))
        self.head = torch.nn.Linear(12, 1).double()

    def forward(self, x):
        return self.head(torch.tanh(x @ (self.W / self.W.norm()).T))


def test_eq12_and_eq8_predict_the_norm_of_a_scale_invariant_weight():
    torch.manual_seed(0)
    model = ScaleInvariant()
    gen = torch.Generator().manual_seed(2)
    X, Y = torch.randn(256, 6, generator=gen, dtype=torch.float64), torch.randn(256, 1, generator=gen, dtype=torch.float64)

    def loss_fn(m, n):
        idx = torch.arange(32) + (32 * n) % 224
        return torch.nn.functional.mse_loss(m(X[idx]), Y[idx])

    # Eq. 6: <W, grad_W> = 0
    loss_fn(model, 0).backward()
    assert (model.W * model.W.grad).sum().abs() < 1e-12 * model.W.norm() * model.W.grad.norm() + 1e-15

    lr, wd = 1e-2, 0.5
    W_idx = list(range(72))  # W is the first parameter
    traj = ct.discrete_adam_trajectory(model, loss_fn, steps=200, lr=lr, beta=0.999, gamma=0.9,
                                       weight_decay=wd, record=W_idx)
    true = (traj.theta**2).sum(1).numpy()
    u_sq, w_dot_u = ct.update_terms(traj.theta, lr=lr, weight_decay=wd)
    eq12 = ct.sq_norm_eq12(true[0], u_sq, w_dot_u, lr=lr, weight_decay=wd)
    eq8 = ct.sq_norm_eq8(true[0], u_sq, lr=lr, weight_decay=wd)
    err12 = np.abs(eq12 - true).max() / true.max()
    err8 = np.abs(eq8 - true).max() / true.max()
    # measured: Eq. 12 0.09%, Eq. 8 0.88% of max ||W||^2 over 200 steps
    assert err12 < 2e-3  # only the O((lr wd)^2) gap per step between e^{-2 lam dt} and (1 - lr lam)^2
    assert err8 < 0.02  # Eq. 8 also drops <W, u_W>, small for a scale-invariant W (App. G)
    assert true[-1] < 0.9 * true[0]  # the weight decay is doing something to predict


# --------------------------------------------------------------------------- bad input
BAD = [
    (dict(substeps=0), "substeps must be a positive int; got 0"),
    (dict(lr=0.0), "lr must be a finite real > 0; got 0.0"),
    (dict(steps=-1), "steps must be a non-negative int; got -1"),
    (dict(p=0.0), "p must be a finite real > 0; got 0.0"),
    (dict(beta=1.0), r"beta must be a real in \(0, 1\) \(the paper's second-moment decay.*\); got 1.0"),
    (dict(gamma=1.0), r"gamma must be a real in \[0, 1\) \(the paper's first-moment decay.*\); got 1.0"),
    (dict(weight_decay=-1.0), "weight_decay must be a real >= 0; got -1.0"),
    (dict(method="rk4"), "method must be one of"),
    (dict(record=[99]), "record must be indices"),
]


@pytest.mark.parametrize("kwargs,message", BAD)
def test_bad_input(kwargs, message):
    theta0, loss = quadratic(R=4)
    args = dict(steps=3, lr=1e-2, beta=0.999, gamma=0.9)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ct.solve_adam_ode(theta0, loss, **args)


def test_bad_model_and_signal():
    with pytest.raises(ValueError, match="model must be an nn.Module or a 1-D"):
        ct.solve_adam_ode(torch.zeros(2, 2), lambda t, n: t.sum(), steps=1, lr=1e-2, beta=0.9, gamma=0.5)
    with pytest.raises(ValueError, match="loss_fn must be callable"):
        ct.discrete_adam_trajectory(torch.zeros(2), None, steps=1, lr=1e-2, beta=0.9, gamma=0.5)
    with pytest.raises(ValueError, match=r"alpha must be a real in \(0, 1\) \(a moving-average decay\); got 1.0"):
        ct.kernel(0.0, 1.0, 1.0, lr=1e-2)
    with pytest.raises(ValueError, match="leading time axis"):
        ct.continuous_ema(np.zeros(0), 0.9, lr=1e-2)


def test_continuous_update_names_the_decay_that_is_wrong():
    """gamma is checked as gamma (not as the alpha of the EMA it feeds), before any work."""
    g = np.ones(4)
    with pytest.raises(ValueError, match=r"^gamma must be a real in \[0, 1\) .*; got 1.5$"):
        ct.continuous_update(g, beta=0.99, gamma=1.5, lr=1e-2)
    with pytest.raises(ValueError, match=r"^beta must be a real in \(0, 1\) .*; got 0.0$"):
        ct.continuous_update(g, beta=0.0, gamma=0.9, lr=1e-2)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.9])
def test_equilibrium_angle_matches_a_simulation_with_momentum(gamma):
    """AdamW-like updates u_n = EMA_gamma of unit-norm noise g_n orthogonal to W_n (Eq. 6), decoupled
    weight decay: at the norm's equilibrium eta ||u_n|| / ||W_n|| is sqrt(2 lam eta (1-gamma)/(1+gamma)),
    not sqrt(2 lam eta) (Chapter 3's erratum: a factor 0.23 at gamma = 0.9)."""
    lr, lam, dim, steps = 0.1, 0.03, 4000, 3000  # eta lam = 0.003: the O(eta lam) corrections stay small
    rng = np.random.default_rng(0)
    W = rng.standard_normal(dim)
    W *= math.sqrt(lr / (2 * lam)) / np.linalg.norm(W)  # start near the equilibrium ||W||^2 = eta G / (2 lam)
    u, angles = np.zeros(dim), []
    for n in range(steps):
        g = rng.standard_normal(dim)
        g -= (g @ W) / (W @ W) * W  # orthogonal to the current weight
        g /= np.linalg.norm(g)
        u = gamma * u + (1 - gamma) * g
        if n >= steps // 2:
            angles.append(lr * np.linalg.norm(u) / np.linalg.norm(W))
        W = (1 - lr * lam) * W - lr * u
    predicted = ct.equilibrium_angle(lr, lam, gamma)
    assert np.mean(angles) == pytest.approx(predicted, rel=0.03)
    if gamma > 0:
        assert abs(np.mean(angles) - ct.equilibrium_angle(lr, lam)) > 0.2 * predicted


def test_equilibrium_angle_refuses_bad_input():
    with pytest.raises(ValueError, match="lr"):
        ct.equilibrium_angle(0.0, 0.1)
    with pytest.raises(ValueError, match="weight_decay"):
        ct.equilibrium_angle(0.1, -1.0)
    with pytest.raises(ValueError, match="gamma"):
        ct.equilibrium_angle(0.1, 0.1, 1.0)
