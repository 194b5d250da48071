"""kadam_edu.sde: Euler-Maruyama, the Adam / RMSprop SDEs, discrete Adam with injected noise.

References written out here: the Ornstein-Uhlenbeck process (exact continuous moments and the
exact moments of its Euler-Maruyama recursion), linear SDEs solved with matrix exponentials
(Van Loan's block formula for the covariance), and KAdam itself for the discrete algorithm.
Notation: beta = second-moment decay, gamma = first-moment decay (the paper's).
"""

import math

import numpy as np
import pytest
import torch

from kadam_edu import KAdam, sde

PROBLEM = sde.NoisyQuadratic([1.0, 4.0], [1.0, 0.25])


def mc_tol(std, paths, k=5.0):
    """k standard errors of a Monte-Carlo mean."""
    return k * std / math.sqrt(paths)


# --------------------------------------------------------------------------- Euler-Maruyama on OU


def test_euler_maruyama_ou_matches_the_exact_moments_of_its_recursion_and_of_the_sde():
    lam, s, x0, dt, steps, paths = 2.0, 0.7, 1.5, 0.01, 150, 40_000
    times, xs = sde.euler_maruyama(lambda t, x: -lam * x, lambda t, x: s * torch.ones_like(x),
                                   np.full((paths, 1), x0), dt=dt, steps=steps, seed=3, record_every=50)
    assert times.tolist() == pytest.approx([0.0, 0.5, 1.0, 1.5]) and xs.shape == (4, paths, 1)
    for t, x in zip(times[1:], xs[1:]):
        k = round(t / dt)
        a = 1 - lam * dt
        em_mean = x0 * a**k  # X_{k+1} = a X_k + s dW
        em_var = s * s * dt * sum(a ** (2 * j) for j in range(k))
        ou_mean = x0 * math.exp(-lam * t)
        ou_var = s * s / (2 * lam) * (1 - math.exp(-2 * lam * t))
        x = x[:, 0]
        assert abs(x.mean() - em_mean) < mc_tol(math.sqrt(em_var), paths)
        assert abs(x.var() - em_var) < mc_tol(em_var * math.sqrt(2), paths)
        # and the scheme is within O(dt) of the SDE itself
        assert abs(em_mean - ou_mean) < 2 * lam * dt * ou_mean * lam * t + 1e-12
        assert abs(em_var - ou_var) / ou_var < 3 * lam * dt


def test_euler_maruyama_without_noise_is_euler_and_converges_at_first_order():
    errors = []
    for dt in (0.02, 0.01, 0.005):
        _, xs = sde.euler_maruyama(lambda t, x: -x + torch.sin(torch.tensor(t)), lambda t, x: torch.zeros_like(x),
                                   np.ones((3, 2)), dt=dt, steps=round(1 / dt), seed=0, record_every=round(1 / dt))
        # x' = -x + sin t, x(0) = 1: x(t) = 1.5 e^-t + (sin t - cos t)/2
        exact = 1.5 * math.exp(-1) + (math.sin(1) - math.cos(1)) / 2
        assert np.ptp(xs[-1]) == 0.0
        errors.append(abs(xs[-1, 0, 0] - exact))
    assert errors[0] / errors[1] == pytest.approx(2, rel=0.1) and errors[1] / errors[2] == pytest.approx(2, rel=0.1)


def test_euler_maruyama_rejects_bad_input():
    f = lambda t, x: x  # noqa: E731
    with pytest.raises(ValueError, match="dt"):
        sde.euler_maruyama(f, f, np.zeros((2, 1)), dt=0.0, steps=3)
    with pytest.raises(ValueError, match="steps"):
        sde.euler_maruyama(f, f, np.zeros((2, 1)), dt=0.1, steps=2.5)
    with pytest.raises(ValueError, match="paths, dim"):
        sde.euler_maruyama(f, f, np.zeros(3), dt=0.1, steps=3)
    with pytest.raises(ValueError, match="callable"):
        sde.euler_maruyama(f, 1.0, np.zeros((2, 1)), dt=0.1, steps=3)
    with pytest.raises(ValueError, match="shape"):
        sde.euler_maruyama(lambda t, x: x[:, :1], f, np.zeros((2, 2)), dt=0.1, steps=3)


# --------------------------------------------------------------------------- the Brownian path


def test_brownian_path_is_the_same_however_it_is_consumed():
    a, b = sde.BrownianPath(5, 2, 0.01, seed=9), sde.BrownianPath(5, 2, 0.01, seed=9)
    sums = [a.increment(3), a.increment(70), a.increment(1), a.increment(200)]  # crosses block boundaries
    singles = [sum(b.increment() for _ in range(k)) for k in (3, 70, 1, 200)]
    for x, y in zip(sums, singles):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
    c = sde.BrownianPath(5, 2, 0.01, seed=10)
    assert not torch.equal(c.increment(3), sums[0])


def test_brownian_increments_have_variance_k_dt():
    w = sde.BrownianPath(20_000, 1, 0.01, seed=1)
    x = w.increment(25).numpy()
    assert x.var() == pytest.approx(0.25, rel=0.05) and abs(x.mean()) < 0.02


# --------------------------------------------------------------------------- the SDEs against exact solutions


def test_rmsprop_sde_at_stationary_u_is_an_ou_process():
    # u0 = diag Sigma and no bias correction: P = sigma0 sqrt(Sigma) + eps0 is constant and
    # d theta = -(h/P) theta dt - (sigma0 sqrt(Sigma)/P) dW, an OU process per coordinate.
    c2, sigma0, eps0, dt, steps, paths = 1.0, 0.8, 0.1, 0.002, 500, 20_000
    theta0 = np.array([1.0, -2.0])
    run = sde.rmsprop_sde(PROBLEM, theta0, c2=c2, sigma0=sigma0, eps0=eps0, dt=dt, steps=steps, paths=paths,
                          seed=4, record_every=steps, bias_correction=False, u0=PROBLEM.noise_var.numpy())
    t = steps * dt
    h, s = PROBLEM.curvature.numpy(), PROBLEM.noise_var.numpy()
    p = sigma0 * np.sqrt(s) + eps0
    rate, diff = h / p, sigma0 * np.sqrt(s) / p
    mean = theta0 * np.exp(-rate * t)
    var = diff**2 / (2 * rate) * (1 - np.exp(-2 * rate * t))
    th = run.theta[-1]
    assert run.times[-1] == pytest.approx(t)
    np.testing.assert_allclose(th.mean(0), mean, atol=mc_tol(np.sqrt(var).max(), paths) + 0.01 * np.abs(mean).max())
    np.testing.assert_allclose(th.var(0), var, rtol=0.05)
    # the loss is recorded from theta
    np.testing.assert_allclose(run.loss, 0.5 * (run.theta**2 * h).sum(-1))


def _linear_moments(a, bbt, x0, t):
    """Mean and covariance at t of dx = A x dt + B dW (Van Loan: expm([[-A, BB^T], [0, A^T]] t))."""
    a, bbt = torch.tensor(a, dtype=torch.float64), torch.tensor(bbt, dtype=torch.float64)
    n = a.shape[0]
    m = torch.zeros(2 * n, 2 * n, dtype=torch.float64)
    m[:n, :n], m[:n, n:], m[n:, n:] = -a, bbt, a.T
    f = torch.linalg.matrix_exp(m * t)
    e_at = f[n:, n:].T
    cov = e_at @ f[:n, n:]
    return (e_at @ torch.tensor(x0, dtype=torch.float64)).numpy(), cov.numpy()


def test_adam_sde_at_stationary_u_matches_the_exact_linear_sde():
    # u0 = diag Sigma, no bias correction: (theta_i, m_i) is linear,
    # d theta = -m/P dt, dm = c1 (h theta - m) dt + c1 sigma0 sqrt(Sigma) dW.
    c1, c2, sigma0, eps0, dt, steps, paths = 5.0, 1.0, 1.0, 0.0, 0.001, 1500, 20_000
    theta0 = np.array([1.0, -2.0])
    run = sde.adam_sde(PROBLEM, theta0, c1=c1, c2=c2, sigma0=sigma0, eps0=eps0, dt=dt, steps=steps, paths=paths,
                       seed=5, record_every=steps, bias_correction=False, u0=PROBLEM.noise_var.numpy())
    t = steps * dt
    expected_loss = 0.0
    for i in range(2):
        h, s = float(PROBLEM.curvature[i]), float(PROBLEM.noise_var[i])
        p = sigma0 * math.sqrt(s) + eps0
        a = [[0.0, -1.0 / p], [c1 * h, -c1]]
        bbt = [[0.0, 0.0], [0.0, (c1 * sigma0) ** 2 * s]]
        mean, cov = _linear_moments(a, bbt, [theta0[i], 0.0], t)
        th = run.theta[-1][:, i]
        assert abs(th.mean() - mean[0]) < mc_tol(math.sqrt(cov[0, 0]), paths) + 0.01 * abs(mean[0])
        assert th.var() == pytest.approx(cov[0, 0], rel=0.05)
        expected_loss += 0.5 * h * (mean[0] ** 2 + cov[0, 0])
    assert run.mean_loss[-1] == pytest.approx(expected_loss, rel=0.05)


def test_adam_sde_without_noise_converges_to_the_ode_at_first_order():
    # sigma0 = 0, eps0 = 1: d theta = -m dt, dm = c1 (h theta - m) dt (exact: a matrix exponential).
    c1, h, theta0, t = 3.0, float(PROBLEM.curvature[0]), 1.0, 2.0
    exact, _ = _linear_moments([[0.0, -1.0], [c1 * h, -c1]], [[0.0, 0.0], [0.0, 0.0]], [theta0, 0.0], t)
    errors = []
    for dt in (0.01, 0.005, 0.0025):
        run = sde.adam_sde(PROBLEM, [theta0, theta0], c1=c1, c2=1.0, sigma0=0.0, eps0=1.0, dt=dt, steps=round(t / dt),
                           paths=2, seed=0, record_every=round(t / dt), bias_correction=False)
        assert np.ptp(run.theta[-1][:, 0]) == 0.0
        errors.append(abs(run.theta[-1][0, 0] - exact[0]))
    assert errors[0] / errors[1] == pytest.approx(2, rel=0.15) and errors[1] / errors[2] == pytest.approx(2, rel=0.15)


# --------------------------------------------------------------------------- discrete Adam against KAdam


@pytest.mark.parametrize("gamma", [0.9, 0.0])
def test_discrete_adam_is_kadam_with_the_injected_noise(gamma):
    lr, beta, sigma, eps, steps, seed = 0.05, 0.99, 3.0, 1e-6, 40, 11
    theta0 = np.array([1.0, -0.5])
    run = sde.discrete_adam(PROBLEM, theta0, lr=lr, beta=beta, gamma=gamma, sigma=sigma, eps=eps, steps=steps,
                            paths=1, seed=seed)
    p = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
    opt = KAdam([p], lr=lr, betas=(gamma, beta), eps=eps)
    noise = sde.BrownianPath(1, 2, lr * lr, seed=seed)
    traj = [p.detach().clone()]
    for _ in range(steps):
        z = noise.increment()[0] / lr
        p.grad = PROBLEM.grad(p.detach()) + sigma * PROBLEM.noise_var.sqrt() * z
        opt.step()
        traj.append(p.detach().clone())
    np.testing.assert_allclose(run.theta[:, 0, :], torch.stack(traj).numpy(), rtol=1e-12, atol=1e-12)
    assert run.times == pytest.approx(np.arange(steps + 1) * lr * lr)


def test_discrete_adam_shares_the_sde_path_with_substeps():
    # one Adam step of length lr^2 = 4 dt uses the sum of 4 SDE increments: with sigma0 dominant and
    # tiny lr, the two agree path by path, not just in distribution.
    dt, lr = 1e-4, 0.02
    consts = dict(c1=10.0, c2=1.0, sigma0=1.0, eps0=0.0)
    hp = sde.discrete_hyperparameters(lr=lr, **consts)
    ref = sde.adam_sde(PROBLEM, [1.0, 1.0], **consts, dt=dt, steps=4000, paths=64, seed=2, record_every=400)
    coupled = sde.discrete_adam(PROBLEM, [1.0, 1.0], lr=lr, **hp, steps=1000, paths=64, seed=2, record_every=100,
                                substeps=sde.substeps_for(lr, dt))
    other = sde.discrete_adam(PROBLEM, [1.0, 1.0], lr=lr, **hp, steps=1000, paths=64, seed=3, record_every=100)
    np.testing.assert_allclose(coupled.times, ref.times)
    d_coupled = np.abs(coupled.theta[-1] - ref.theta[-1]).mean()
    d_other = np.abs(other.theta[-1] - ref.theta[-1]).mean()
    assert d_coupled < 0.2 * d_other


def test_sde_approximation_improves_as_lr_shrinks():
    consts = dict(c1=10.0, c2=1.0, sigma0=1.0, eps0=0.0)
    dt, horizon = 0.05**2 / 2, 1.2
    ref = sde.adam_sde(PROBLEM, [2.0, 2.0], **consts, dt=dt, steps=round(horizon / dt), paths=512, seed=0,
                       record_every=round(0.4 / dt))
    errs = []
    for lr in (0.2, 0.1, 0.05):
        hp = sde.discrete_hyperparameters(lr=lr, **consts)
        run = sde.discrete_adam(PROBLEM, [2.0, 2.0], lr=lr, **hp, steps=round(horizon / lr**2), paths=512, seed=0,
                                record_every=round(0.4 / lr**2), substeps=sde.substeps_for(lr, dt))
        e = sde.moment_errors(ref, run)
        assert e["times"] == pytest.approx([0.4, 0.8, 1.2])
        errs.append(max(e["max_mean"], e["max_var"]))
    assert errs[0] > errs[1] > errs[2]


# --------------------------------------------------------------------------- constants, reproducibility, shapes


def test_sde_constants_round_trip():
    c = sde.sde_constants(lr=0.1, beta=0.99, gamma=0.9, sigma=10.0, eps=1e-3)
    assert c == pytest.approx({"c1": 10.0, "c2": 1.0, "sigma0": 1.0, "eps0": 1e-4})
    back = sde.discrete_hyperparameters(lr=0.1, **c)
    assert back == pytest.approx({"beta": 0.99, "gamma": 0.9, "sigma": 10.0, "eps": 1e-3})


def test_same_seed_same_paths_and_shapes():
    kw = dict(c1=10.0, c2=1.0, sigma0=1.0, dt=0.01, steps=30, paths=7, record_every=10)
    a = sde.adam_sde(PROBLEM, [1.0, 2.0], seed=3, **kw)
    b = sde.adam_sde(PROBLEM, [1.0, 2.0], seed=3, **kw)
    c = sde.adam_sde(PROBLEM, [1.0, 2.0], seed=4, **kw)
    assert a.theta.shape == (4, 7, 2) and a.loss.shape == (4, 7) and a.times.shape == (4,)
    assert a.steps.tolist() == [0, 10, 20, 30]
    np.testing.assert_array_equal(a.theta, b.theta)
    assert not np.array_equal(a.theta[-1], c.theta[-1])
    assert a.mean_loss.shape == (4,) and a.var_loss[0] == 0.0
    d = sde.discrete_adam(PROBLEM, np.ones((7, 2)), lr=0.1, beta=0.99, gamma=0.9, sigma=10.0, steps=5, paths=7)
    assert d.theta.shape == (6, 7, 2)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="curvature"):
        sde.NoisyQuadratic([1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="noise_var"):
        sde.NoisyQuadratic([1.0, 1.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="2 entries"):
        sde.NoisyQuadratic([1.0, 1.0], [1.0])
    kw = dict(c1=10.0, c2=1.0, sigma0=1.0, dt=0.01, steps=3, paths=2)
    with pytest.raises(ValueError, match="theta0"):
        sde.adam_sde(PROBLEM, [1.0, 2.0, 3.0], **kw)
    with pytest.raises(ValueError, match="c1"):
        sde.adam_sde(PROBLEM, [1.0, 2.0], **{**kw, "c1": -1.0})
    with pytest.raises(ValueError, match="paths"):
        sde.adam_sde(PROBLEM, [1.0, 2.0], **{**kw, "paths": 0})
    with pytest.raises(ValueError, match="seed"):
        sde.rmsprop_sde(PROBLEM, [1.0, 2.0], c2=1.0, sigma0=1.0, dt=0.01, steps=3, paths=2, seed=-1)
    with pytest.raises(ValueError, match="problem"):
        sde.adam_sde("quadratic", [1.0, 2.0], **kw)
    with pytest.raises(ValueError, match="beta"):
        sde.discrete_adam(PROBLEM, [1.0, 2.0], lr=0.1, beta=1.0, gamma=0.9, sigma=1.0, steps=3, paths=2)
    with pytest.raises(ValueError, match="gamma"):
        sde.sde_constants(lr=0.1, beta=0.9, gamma=-0.1, sigma=1.0)
    with pytest.raises(ValueError, match="too large"):
        sde.discrete_hyperparameters(lr=0.5, c1=10.0, c2=1.0, sigma0=1.0)
    with pytest.raises(ValueError, match="integer"):
        sde.substeps_for(0.1, 0.003)
    assert sde.substeps_for(0.1, 0.0025) == 4
    a = sde.adam_sde(PROBLEM, [1.0, 2.0], **{**kw, "record_every": 3})
    b = sde.discrete_adam(PROBLEM, [1.0, 2.0], lr=0.3, beta=0.9, gamma=0.9, sigma=1.0, steps=2, paths=2)
    with pytest.raises(ValueError, match="share no record time"):
        sde.moment_errors(a, b)


def test_bad_input_messages_say_what_is_allowed_and_what_was_given():
    f = lambda t, x: x  # noqa: E731
    with pytest.raises(ValueError, match=r"^dt must be a finite real > 0 \(the time step\); got 0.0$"):
        sde.euler_maruyama(f, f, np.zeros((2, 1)), dt=0.0, steps=3)
    with pytest.raises(ValueError, match=r"^beta must be a real in \[0, 1\) \(the paper's second-moment decay, "
                                         r"torch's betas\[1\]\); got 1.0$"):
        sde.sde_constants(lr=0.1, beta=1.0, gamma=0.9, sigma=1.0)
    with pytest.raises(ValueError, match=r"^sigma must be a finite real >= 0 \(noise multiplier, 1/sqrt\(batch size\)\); "
                                         r"got -1.0$"):
        sde.sde_constants(lr=0.1, beta=0.9, gamma=0.9, sigma=-1.0)
    kw = dict(c1=10.0, c2=1.0, sigma0=1.0, dt=0.01, paths=2)
    with pytest.raises(ValueError, match="^steps must be a non-negative int; got -1$"):
        sde.adam_sde(PROBLEM, [1.0, 2.0], steps=-1, **kw)
    with pytest.raises(ValueError, match=r"^seed must be a non-negative int <= 2\*\*63 - 1 .*; got -1$"):
        sde.adam_sde(PROBLEM, [1.0, 2.0], steps=1, seed=-1, **kw)
    with pytest.raises(ValueError, match="^substeps must be a positive int; got 0$"):
        sde.discrete_adam(PROBLEM, [1.0, 2.0], lr=0.1, beta=0.9, gamma=0.9, sigma=1.0, steps=1, paths=2, substeps=0)
