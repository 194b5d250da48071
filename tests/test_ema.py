"""Adam's discrete moving averages (kadam_edu.ema) against closed forms and against KAdam itself."""

import math

import numpy as np
import pytest
import torch

from kadam_edu import KAdam, continuous, ema


def test_discrete_ema_is_the_weighted_sum():
    """m_n = (1 - alpha) sum_j alpha^(n-j) x_j, written out independently."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 3))
    alpha = 0.8
    got = ema.discrete_ema(x, alpha)
    for n in (0, 1, 17, 29):
        w = (1 - alpha) * alpha ** (n - np.arange(n + 1))
        np.testing.assert_allclose(got[n], (w[:, None] * x[: n + 1]).sum(0), rtol=1e-12)
    assert got.shape == x.shape


def test_discrete_ema_of_a_constant_needs_bias_correction():
    n = np.arange(50)
    np.testing.assert_allclose(ema.discrete_ema(np.full(50, 2.0), 0.9), 2.0 * (1 - 0.9 ** (n + 1)), rtol=1e-12)


def test_discrete_ema_torch_matches_numpy():
    x = np.linspace(-1, 1, 20)
    out = ema.discrete_ema(torch.tensor(x), 0.7)
    assert torch.is_tensor(out)
    np.testing.assert_allclose(out.numpy(), ema.discrete_ema(x, 0.7), rtol=1e-12)


def test_discrete_weights_are_adams_and_sum_to_the_bias():
    j = np.arange(10)
    np.testing.assert_allclose(ema.discrete_weights(0.9, j), 0.1 * 0.9**j, rtol=1e-12)
    assert ema.discrete_weights(0.9, j).sum() == pytest.approx(1 - 0.9**10)
    assert ema.discrete_weights(0.5, 0) == pytest.approx(0.5)


@pytest.mark.parametrize("gamma,beta", [(0.9, 0.999), (0.0, 0.99), (0.99, 0.9)])
def test_discrete_update_is_kadams_step(gamma, beta):
    """u_n from the formula equals (theta_n - theta_{n+1}) / lr of KAdam (k = 1) fed the same gradients."""
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(25, 4, generator=gen, dtype=torch.float64)
    u = ema.discrete_update(g, beta=beta, gamma=gamma, eps=1e-8)
    theta = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    lr = 0.1
    opt = KAdam([theta], lr=lr, betas=(gamma, beta), eps=1e-8)
    for n in range(25):
        before = theta.detach().clone()
        theta.grad = g[n].clone()
        opt.step()
        torch.testing.assert_close((before - theta.detach()) / lr, u[n], rtol=1e-10, atol=1e-12)


def test_discrete_update_first_step_and_scale_invariance():
    g = np.array([0.3, -2.0, 5.0])
    u = ema.discrete_update(g, beta=0.999, gamma=0.9)
    assert u[0] == pytest.approx(1.0)  # sign(g_0): bias corrections cancel at n = 0
    np.testing.assert_allclose(ema.discrete_update(7.0 * g, beta=0.999, gamma=0.9), u, rtol=1e-12)


def test_continuous_ema_approaches_discrete_as_alpha_to_one():
    """Eq. 2 against Eq. 1 on a slow signal: the gap shrinks with 1 - alpha."""
    x = ema.sample_gradients(3000, period=2000.0, noise=0.0)
    gaps = []
    for alpha in (0.9, 0.99):
        d, c = ema.discrete_ema(x, alpha), continuous.continuous_ema(x, alpha, lr=1.0)
        gaps.append(np.abs(d - c).max() / np.abs(d).max())
    assert gaps[1] < gaps[0] / 3


def test_sample_gradients_is_seeded():
    a = ema.sample_gradients(100, seed=3)
    np.testing.assert_array_equal(a, ema.sample_gradients(100, seed=3))
    assert not np.array_equal(a, ema.sample_gradients(100, seed=4))
    clean = ema.sample_gradients(4, mean=1.0, amplitude=2.0, period=4.0, noise=0.0)
    np.testing.assert_allclose(clean, [1.0, 3.0, 1.0, -1.0], atol=1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda: ema.discrete_ema([1.0, 2.0], 1.0), r"^alpha must be a real in \[0, 1\) \(a moving-average decay\); got 1.0$"),
    (lambda: ema.discrete_ema([1.0, 2.0], -0.1), r"^alpha must be a real in \[0, 1\) .*; got -0.1$"),
    (lambda: ema.discrete_ema([], 0.9), "^x must have a leading time axis"),
    (lambda: ema.discrete_ema(3.0, 0.9), "^x must have a leading time axis"),
    (lambda: ema.discrete_update([1.0], beta=1.0, gamma=0.9), r"^beta must be a real in \(0, 1\) .*; got 1.0$"),
    (lambda: ema.discrete_update([1.0], beta=0.999, gamma=1.0), r"^gamma must be a real in \[0, 1\) .*; got 1.0$"),
    (lambda: ema.discrete_update([1.0], beta=0.999, gamma=0.9, eps=-1.0), "^eps must be a real >= 0; got -1.0$"),
    (lambda: ema.discrete_weights(0.9, [-1]), "^lags must be finite and >= 0"),
    (lambda: ema.discrete_weights(True, [1]), r"^alpha must be a real in \[0, 1\) .*; got True$"),
    (lambda: ema.sample_gradients(0), "^steps must be a positive int; got 0$"),
    (lambda: ema.sample_gradients(10, noise=-1.0), "^noise must be a finite real >= 0; got -1.0$"),
    (lambda: ema.sample_gradients(10, period=0.0), r"^period must be a finite real > 0 \(in steps\); got 0.0$"),
    (lambda: ema.sample_gradients(10, mean=math.inf), "^mean must be a finite real; got inf$"),
    (lambda: ema.sample_gradients(10, seed=1.5), "^seed must be a non-negative int .*; got 1.5$"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
