r"""Adam's discrete moving averages (Eq. 1), the counterparts of :mod:`kadam_edu.continuous`.

* :func:`discrete_ema`: m_n = alpha m_{n-1} + (1 - alpha) x_n with m_{-1} = 0 (Eq. 1).
* :func:`discrete_update`: Adam's update u_n of Eq. 1 for a sequence of gradients.
* :func:`discrete_weights`: the weight (1 - alpha) alpha^j that m_n gives to x_{n-j}, the
  discrete kernel that :func:`kadam_edu.continuous.kernel` (Eq. 3) approximates.
* :func:`sample_gradients`: a reproducible toy gradient signal for Chapter 1's pictures.

These act on recorded sequences (numpy arrays or torch tensors with the time axis first); the
optimizer itself is :class:`kadam_edu.KAdam`.
"""

from __future__ import annotations

import numpy as np
import torch

from kadam_edu import optim, validate

__all__ = ["discrete_ema", "discrete_update", "discrete_weights", "sample_gradients"]


def _as_sequence(x, name: str):
    xs = x if torch.is_tensor(x) else np.asarray(x, dtype=float)
    if xs.ndim == 0 or xs.shape[0] == 0:
        raise ValueError(f"{name} must have a leading time axis with at least one sample; got shape {tuple(xs.shape)}")
    if torch.is_tensor(xs) and not xs.is_floating_point():
        xs = xs.double()
    return xs


def discrete_ema(x, alpha: float):
    """m_n = alpha m_{n-1} + (1 - alpha) x_n, m_{-1} = 0 (Eq. 1's m with alpha = gamma, v with beta, x = g^2).

    x: samples [N, ...] (numpy or torch). Returns m [N, ...] of the same kind, without bias
    correction: m_n = (1 - alpha) sum_{j<=n} alpha^(n-j) x_j.
    """
    alpha = validate.decay("alpha", alpha, allow_zero=True, meaning="a moving-average decay")
    xs = _as_sequence(x, "x")
    out = xs.clone() if torch.is_tensor(xs) else xs.copy()
    m = 0.0
    for n in range(xs.shape[0]):
        m = alpha * m + (1.0 - alpha) * xs[n]
        out[n] = m
    return out


def discrete_update(g, *, beta: float, gamma: float, eps: float = 0.0):
    """Adam's update of Eq. 1: u_n = sqrt(1 - beta^(n+1)) / (1 - gamma^(n+1)) * m_n / (sqrt(v_n) + eps).

    g: gradients [N, ...] (numpy or torch). Returns u [N, ...]; theta_{n+1} = theta_n - eta u_n
    (no weight decay). ``eps`` is added to sqrt(v_n) as in Algorithm 1.
    """
    beta, gamma = validate.second_moment_decay("beta", beta), validate.first_moment_decay("gamma", gamma)
    eps = validate.real("eps", eps, lo=0)
    gs = _as_sequence(g, "g")
    m, v = discrete_ema(gs, gamma), discrete_ema(gs * gs, beta)
    n = np.arange(gs.shape[0], dtype=float)
    c = optim.bias_correction(n, beta=beta, gamma=gamma).reshape((-1,) + (1,) * (gs.ndim - 1))
    if torch.is_tensor(gs):
        return torch.as_tensor(c, dtype=gs.dtype) * m / (v.sqrt() + eps)
    return c * m / (np.sqrt(v) + eps)


def discrete_weights(alpha: float, lags):
    """(1 - alpha) alpha^j: the weight of x_{n-j} in m_n (Eq. 1), for lags j >= 0 (numpy, broadcasts).

    Summed over j = 0..n it is 1 - alpha^(n+1), the factor Adam's bias correction divides out.
    """
    alpha = validate.decay("alpha", alpha, allow_zero=True, meaning="a moving-average decay")
    j = np.asarray(lags, dtype=float)
    if np.any(j < 0) or not np.all(np.isfinite(j)):
        raise ValueError("lags must be finite and >= 0 (steps into the past)")
    out = (1.0 - alpha) * alpha**j
    return out if out.ndim else float(out)


def sample_gradients(steps: int, *, mean: float = 0.2, amplitude: float = 1.0, period: float = 100.0,
                     noise: float = 0.3, seed: int = 0) -> np.ndarray:
    """A toy scalar gradient signal g_n = mean + amplitude sin(2 pi n / period) + noise xi_n, xi_n ~ N(0, 1).

    A slow drift (the loss landscape changing as theta moves) plus minibatch noise; seeded, so
    the same arguments give the same [steps] float64 array.
    """
    steps = validate.positive_int("steps", steps)
    mean, amplitude = validate.finite_real("mean", mean), validate.finite_real("amplitude", amplitude)
    period = validate.positive_real("period", period, meaning="in steps")
    noise = validate.finite_real("noise", noise, lo=0)
    seed = validate.seed("seed", seed)
    n = np.arange(steps, dtype=float)
    xi = np.random.default_rng(seed).standard_normal(steps)
    return mean + amplitude * np.sin(2.0 * np.pi * n / period) + noise * xi
