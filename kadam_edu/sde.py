r"""SDEs for RMSprop and Adam with minibatch noise, after Malladi et al. (2022), and an Euler-Maruyama integrator.

Notation trap: as everywhere in ``kadam_edu`` (and in the paper), ``beta`` is the
*second*-moment decay and ``gamma`` the *first*-moment decay (torch's ``betas=(gamma, beta)``).

Minibatch noise
---------------
A minibatch of B samples whose per-sample gradients have covariance ``Sigma`` gives
``g = grad L(theta) + sigma * Sigma^(1/2) z`` with ``z ~ N(0, I)`` and ``sigma = 1/sqrt(B)``
(a mean of B independent samples). :class:`NoisyQuadratic` is the test problem:
``L(theta) = 1/2 sum_i h_i theta_i^2`` with diagonal ``Sigma = diag(noise_var)``.

From discrete Adam to the SDE (the scaling of Malladi et al. 2022)
-------------------------------------------------------------------
Adam (Eq. 1 of Gould & Tanaka, eps placed as in :class:`kadam_edu.KAdam`) is
``m_n = gamma m_{n-1} + (1-gamma) g_n``, ``v_n = beta v_{n-1} + (1-beta) g_n^2``,
``theta_{n+1} = theta_n - lr * b_n * m_n / (sqrt(v_n) + eps)``,
``b_n = sqrt(1-beta^(n+1)) / (1-gamma^(n+1))``. With learning rate ``eta = lr`` define the
SDE constants (:func:`sde_constants`)

    c1 = (1-gamma)/eta^2,  c2 = (1-beta)/eta^2,  sigma0 = sigma*eta,  eps0 = eps*eta,

SDE time ``t = n eta^2`` (one step lasts ``dt = eta^2``) and the rescaled second moment
``u = v / sigma^2``. Because ``eta z_n ~ N(0, eta^2)`` is a Brownian increment ``dW`` over one
step, one Adam step reads

    m_n - m_{n-1}       = c1 (grad L - m_{n-1}) dt + c1 sigma0 Sigma^(1/2) dW
    u_n - u_{n-1}       = c2 (diag Sigma - u_{n-1}) dt
                          + c2 dt [eta^2 (grad L)^2 / sigma0^2 + 2 eta (grad L / sigma0) (Sigma^(1/2) z)
                                   + (Sigma^(1/2) z)^2 - diag Sigma]
    theta_{n+1} - theta_n = - b_n m_n / (sigma0 sqrt(u_n) + eps0) dt

exactly (squares and products element-wise). The bracket in the u line vanishes as eta -> 0: its
mean is O(eta^2) (the cross term, of order eta, has mean zero), and its zero-mean part adds
variance of order ``c2^2 Sigma^2 dt^2`` per step, ``O(eta^2)`` over a unit of time. Dropping it,
and using ``beta^n = (1 - c2 eta^2)^(t/eta^2) -> exp(-c2 t)``, gives the **Adam SDE**

    d theta = - b(t) m / (sigma0 sqrt(u) + eps0) dt,     b(t) = sqrt(1 - e^(-c2 t)) / (1 - e^(-c1 t))
    d m     = c1 (grad L(theta) - m) dt + c1 sigma0 Sigma^(1/2) dW
    d u     = c2 (diag Sigma - u) dt

and, for gamma = 0 (no first moment, ``m_n = g_n``), the **RMSprop SDE**

    d theta = - s(t) / (sigma0 sqrt(u) + eps0) (grad L(theta) dt + sigma0 Sigma^(1/2) dW),  s(t) = sqrt(1 - e^(-c2 t))
    d u     = c2 (diag Sigma - u) dt

This is the form of Malladi et al.'s RMSprop and Adam SDEs as reconstructed here from their
scaling (the derivation above), in the paper's notation, with Adam's bias correction written
as b(t) and eps added to ``sigma0 sqrt(u)`` as KAdam adds it to ``sqrt(v)`` (torch's placement
would multiply eps0 by ``sqrt(1 - e^(-c2 t))``). The SDE is a small-learning-rate approximation: discrete Adam at learning rate
eta with the hyperparameters of :func:`discrete_hyperparameters` approaches it as eta -> 0.

Batch size enters only through ``sigma0 = eta / sqrt(B)``: keeping c1, c2, sigma0 and eps0
fixed while B -> kappa B gives the square-root scaling rule (:mod:`kadam_edu.scaling`).

Numerics
--------
:func:`euler_maruyama` is the plain Euler-Maruyama scheme for ``dX = a(t, X) dt + b(t, X) dW``
with diagonal noise. :func:`adam_sde` and :func:`rmsprop_sde` use the partitioned variant that
Adam itself uses: the moment equations take an Euler-Maruyama step first and theta then moves
with the updated moments and the bias correction at the end of the step. This keeps the step at
t = 0 finite (``b(t)`` diverges there while ``m(0) = u(0) = 0``) and, like the plain scheme, has
weak order one in dt.

Shapes: ``paths`` independent runs (seeds) along dimension 0, parameters along the last:
``theta [paths, dim]``; records are ``[R, paths, dim]`` at R recorded times. Everything is float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from kadam_edu import optim, validate

__all__ = [
    "NoisyQuadratic",
    "BrownianPath",
    "Paths",
    "euler_maruyama",
    "sde_constants",
    "discrete_hyperparameters",
    "adam_sde",
    "rmsprop_sde",
    "discrete_adam",
    "moment_errors",
    "substeps_for",
]

_DTYPE = torch.float64


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _vector(name: str, value, *, positive: bool, dim: int | None = None) -> Tensor:
    """A 1-D float64 tensor of finite entries (> 0 if ``positive``, else >= 0)."""
    try:
        t = torch.as_tensor(np.asarray(value, dtype=float), dtype=_DTYPE)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D array of real numbers; got {value!r}") from None
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array (one entry per coordinate); got shape {tuple(t.shape)}")
    if dim is not None and t.numel() != dim:
        raise ValueError(f"{name} must have {dim} entries (one per coordinate); got {t.numel()}")
    bad = ~torch.isfinite(t) | ((t <= 0) if positive else (t < 0))
    if bool(bad.any()):
        raise ValueError(f"{name} must be finite and {'> 0' if positive else '>= 0'}; got {t[bad][0].item()!r}")
    return t


def _theta0(theta0, dim: int, paths: int) -> Tensor:
    """theta0 as [paths, dim]: a vector of length dim (shared by every path) or a [paths, dim] array."""
    try:
        t = torch.as_tensor(np.asarray(theta0, dtype=float), dtype=_DTYPE)
    except (TypeError, ValueError):
        raise ValueError(f"theta0 must be an array of real numbers; got {theta0!r}") from None
    if t.shape == (dim,):
        t = t.expand(paths, dim)
    if t.shape != (paths, dim):
        raise ValueError(f"theta0 must have shape ({dim},) or ({paths}, {dim}) (paths, dim); got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("theta0 must be finite")
    return t.clone()


def substeps_for(lr: float, dt: float) -> int:
    """The integer ``lr^2 / dt``: how many Brownian increments of length dt make one step of length lr^2.

    Raises ValueError unless lr^2 is a whole multiple of dt (to a relative 1e-9).
    """
    lr = validate.positive_real("lr", lr, meaning="the learning rate")
    dt = validate.positive_real("dt", dt, meaning="the Brownian time step")
    ratio = lr * lr / dt
    k = round(ratio)
    if k < 1 or abs(ratio - k) > 1e-9 * max(1.0, ratio):
        raise ValueError(f"lr^2 / dt must be a positive integer to share one Brownian path; got {lr}^2 / {dt} = {ratio!r}")
    return int(k)


# ---------------------------------------------------------------------------
# the test problem and the noise
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NoisyQuadratic:
    """L(theta) = 1/2 sum_i h_i theta_i^2 with per-sample gradient noise N(0, diag(noise_var)).

    curvature: [dim] the diagonal Hessian h (> 0). noise_var: [dim] the diagonal of the
    per-sample gradient covariance Sigma (>= 0); a batch of B samples has covariance Sigma / B.
    """

    curvature: Tensor
    noise_var: Tensor

    def __init__(self, curvature, noise_var):
        h = _vector("curvature", curvature, positive=True)
        s = _vector("noise_var", noise_var, positive=False, dim=h.numel())
        object.__setattr__(self, "curvature", h)
        object.__setattr__(self, "noise_var", s)

    @property
    def dim(self) -> int:
        return self.curvature.numel()

    def loss(self, theta: Tensor) -> Tensor:
        """L(theta) = 1/2 sum_i h_i theta_i^2 over the last dimension: [..., dim] -> [...]."""
        return 0.5 * (self.curvature * theta * theta).sum(-1)

    def grad(self, theta: Tensor) -> Tensor:
        """grad L = h * theta, same shape as theta ([..., dim])."""
        return self.curvature * theta


class BrownianPath:
    """Increments of ``paths`` independent ``dim``-dimensional Brownian motions on a grid of step dt.

    ``increment(k)`` returns the sum of the next k grid increments, shape [paths, dim], each
    entry N(0, k dt). Numbers are drawn in fixed blocks from a seeded generator, so two
    BrownianPaths with the same (paths, dim, dt, seed) yield the same path however they are
    consumed: a discrete run taking k increments per step and an SDE taking one share the noise.
    """

    BLOCK = 64

    def __init__(self, paths: int, dim: int, dt: float, *, seed: int = 0):
        self.paths, self.dim = validate.positive_int("paths", paths), validate.positive_int("dim", dim)
        self.dt = validate.positive_real("dt", dt, meaning="the grid step of the Brownian path")
        self._gen = torch.Generator().manual_seed(validate.seed("seed", seed))
        self._scale = math.sqrt(self.dt)
        self._buf = torch.empty(0, self.paths, self.dim, dtype=_DTYPE)
        self._pos = 0

    def _refill(self):
        self._buf = torch.randn(self.BLOCK, self.paths, self.dim, generator=self._gen, dtype=_DTYPE) * self._scale
        self._pos = 0

    def increment(self, k: int = 1) -> Tensor:
        """W(t + k dt) - W(t) for the next k grid steps: [paths, dim]."""
        k = validate.positive_int("k", k)
        total = torch.zeros(self.paths, self.dim, dtype=_DTYPE)
        while k > 0:
            if self._pos >= len(self._buf):
                self._refill()
            take = min(k, len(self._buf) - self._pos)
            total += self._buf[self._pos:self._pos + take].sum(0)
            self._pos += take
            k -= take
        return total


@dataclass
class Paths:
    """Recorded trajectories of many independent runs.

    times: [R] SDE time of each record (discrete runs: ``t = n lr^2``); steps: [R] the step
    index n; theta: [R, paths, dim]; loss: [R, paths].
    """

    times: np.ndarray
    steps: np.ndarray
    theta: np.ndarray
    loss: np.ndarray

    @property
    def mean_loss(self) -> np.ndarray:
        """E[L] over paths at each recorded time: [R]."""
        return self.loss.mean(axis=1)

    @property
    def var_loss(self) -> np.ndarray:
        """Var[L] over paths (unbiased) at each recorded time: [R]."""
        return self.loss.var(axis=1, ddof=1) if self.loss.shape[1] > 1 else np.zeros(len(self.times))


class _Recorder:
    def __init__(self, problem: NoisyQuadratic | None, every: int):
        self.problem, self.every = problem, every
        self.times, self.steps, self.theta = [], [], []

    def __call__(self, step: int, t: float, theta: Tensor):
        if step % self.every == 0:
            self.times.append(t)
            self.steps.append(step)
            self.theta.append(theta.clone())

    def paths(self) -> Paths:
        theta = torch.stack(self.theta)
        loss = self.problem.loss(theta) if self.problem is not None else torch.zeros(theta.shape[:2], dtype=_DTYPE)
        return Paths(times=np.array(self.times, dtype=float), steps=np.array(self.steps), theta=theta.numpy(),
                     loss=loss.numpy())


# ---------------------------------------------------------------------------
# the generic integrator
# ---------------------------------------------------------------------------


def euler_maruyama(
    drift: Callable[[float, Tensor], Tensor],
    diffusion: Callable[[float, Tensor], Tensor],
    x0,
    *,
    dt: float,
    steps: int,
    seed: int = 0,
    record_every: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Euler-Maruyama for ``dX = a(t, X) dt + b(t, X) * dW`` with diagonal noise.

    x0: [paths, dim]; drift(t, x) and diffusion(t, x) return [paths, dim] (the diffusion acts
    element-wise on independent Brownian motions). ``X_{k+1} = X_k + a(t_k, X_k) dt +
    b(t_k, X_k) * (W(t_{k+1}) - W(t_k))``, t_k = k dt. Returns ``(times [R], states [R, paths, dim])``
    recorded every ``record_every`` steps, step 0 and (if a multiple) the last included.
    """
    dt = validate.positive_real("dt", dt, meaning="the time step")
    steps, every = validate.integer("steps", steps, lo=0), validate.positive_int("record_every", record_every)
    for name, fn in (("drift", drift), ("diffusion", diffusion)):
        if not callable(fn):
            raise ValueError(f"{name} must be callable (t, x) -> tensor of x's shape; got {fn!r}")
    x = torch.as_tensor(np.asarray(x0, dtype=float), dtype=_DTYPE).clone()
    if x.ndim != 2:
        raise ValueError(f"x0 must have shape (paths, dim); got {tuple(x.shape)}")
    noise = BrownianPath(x.shape[0], x.shape[1], dt, seed=seed)
    times, states = [], []
    for k in range(steps + 1):
        t = k * dt
        if k % every == 0:
            times.append(t)
            states.append(x.clone())
        if k == steps:
            break
        a, b = drift(t, x), diffusion(t, x)
        if a.shape != x.shape or b.shape != x.shape:
            raise ValueError(f"drift and diffusion must return shape {tuple(x.shape)}; got {tuple(a.shape)}, {tuple(b.shape)}")
        x = x + a * dt + b * noise.increment()
    return np.array(times), torch.stack(states).numpy()


# ---------------------------------------------------------------------------
# discrete hyperparameters <-> SDE constants
# ---------------------------------------------------------------------------


def sde_constants(*, lr: float, beta: float, gamma: float, sigma: float, eps: float = 0.0) -> dict[str, float]:
    """Malladi et al.'s constants of the SDE that discrete Adam approximates (module docstring).

    ``{"c1": (1-gamma)/lr^2, "c2": (1-beta)/lr^2, "sigma0": sigma*lr, "eps0": eps*lr}``;
    ``sigma`` is the noise multiplier (1/sqrt(batch size)). The SDE's time step is lr^2.
    """
    lr = validate.positive_real("lr", lr, meaning="the learning rate")
    beta = validate.second_moment_decay("beta", beta, allow_zero=True)
    gamma = validate.first_moment_decay("gamma", gamma)
    sigma = validate.finite_real("sigma", sigma, lo=0, meaning="noise multiplier, 1/sqrt(batch size)")
    eps = validate.finite_real("eps", eps, lo=0)
    return {"c1": (1.0 - gamma) / lr**2, "c2": (1.0 - beta) / lr**2, "sigma0": sigma * lr, "eps0": eps * lr}


def discrete_hyperparameters(*, lr: float, c1: float, c2: float, sigma0: float, eps0: float = 0.0) -> dict[str, float]:
    """Inverse of :func:`sde_constants`: the discrete Adam whose SDE has these constants at this lr.

    ``{"beta": 1 - c2 lr^2, "gamma": 1 - c1 lr^2, "sigma": sigma0/lr, "eps": eps0/lr}``;
    ValueError if lr is so large that a decay leaves [0, 1).
    """
    lr = validate.positive_real("lr", lr, meaning="the learning rate")
    c1 = validate.positive_real("c1", c1, meaning="(1-gamma)/lr^2")
    c2 = validate.positive_real("c2", c2, meaning="(1-beta)/lr^2")
    sigma0 = validate.finite_real("sigma0", sigma0, lo=0, meaning="sigma*lr")
    eps0 = validate.finite_real("eps0", eps0, lo=0, meaning="eps*lr")
    beta, gamma = 1.0 - c2 * lr**2, 1.0 - c1 * lr**2
    if beta < 0.0 or gamma < 0.0:
        raise ValueError(f"lr={lr} is too large for c1={c1}, c2={c2}: need lr <= {math.sqrt(1 / max(c1, c2)):.6g} "
                         f"so that beta = 1 - c2 lr^2 and gamma = 1 - c1 lr^2 stay in [0, 1)")
    return {"beta": beta, "gamma": gamma, "sigma": sigma0 / lr, "eps": eps0 / lr}


# ---------------------------------------------------------------------------
# the SDEs and the discrete algorithm
# ---------------------------------------------------------------------------


def _initial_u(u0, problem: NoisyQuadratic, paths: int) -> Tensor:
    if u0 is None:
        return torch.zeros(paths, problem.dim, dtype=_DTYPE)
    return _vector("u0", u0, positive=False, dim=problem.dim).expand(paths, -1).clone()


def _sde_bias_correction(t: float, *, c1: float, c2: float) -> float:
    """b(t) = sqrt(1 - e^(-c2 t)) / (1 - e^(-c1 t)) (module docstring), t > 0: Eq. 1's bias correction
    in the SDE's limit (beta^n -> e^(-c2 t), gamma^n -> e^(-c1 t)); c1 = inf (gamma = 0) gives s(t)."""
    return math.sqrt(-math.expm1(-c2 * t)) / -math.expm1(-c1 * t)


def _check_common(problem, steps, paths, record_every, seed):
    if not isinstance(problem, NoisyQuadratic):
        raise ValueError(f"problem must be a NoisyQuadratic; got {type(problem).__name__}")
    return (validate.integer("steps", steps, lo=0), validate.positive_int("paths", paths),
            validate.positive_int("record_every", record_every), validate.seed("seed", seed))


def adam_sde(
    problem: NoisyQuadratic,
    theta0,
    *,
    c1: float,
    c2: float,
    sigma0: float,
    eps0: float = 0.0,
    dt: float,
    steps: int,
    paths: int,
    seed: int = 0,
    record_every: int = 1,
    bias_correction: bool = True,
    u0=None,
) -> Paths:
    """Integrate the Adam SDE (module docstring) for ``steps`` steps of length dt, ``paths`` paths at once.

    ``m(0) = 0``; ``u(0) = u0`` (default 0, as Adam starts with v = 0). ``bias_correction=False``
    replaces b(t) by 1 (then start from u0 > 0). Partitioned Euler-Maruyama: m and u step first,
    then theta with the new m, u and b(t_{k+1}). Returns :class:`Paths` at t = k dt, k a multiple
    of ``record_every``.
    """
    steps, paths, every, seed = _check_common(problem, steps, paths, record_every, seed)
    c1 = validate.positive_real("c1", c1, meaning="(1-gamma)/lr^2")
    c2 = validate.positive_real("c2", c2, meaning="(1-beta)/lr^2")
    sigma0 = validate.finite_real("sigma0", sigma0, lo=0, meaning="sigma*lr")
    eps0 = validate.finite_real("eps0", eps0, lo=0, meaning="eps*lr")
    dt = validate.positive_real("dt", dt, meaning="the SDE time step")
    theta = _theta0(theta0, problem.dim, paths)
    m = torch.zeros_like(theta)
    u = _initial_u(u0, problem, paths)
    noise = BrownianPath(paths, problem.dim, dt, seed=seed)
    root_sigma = problem.noise_var.sqrt()
    record = _Recorder(problem, every)
    for k in range(steps + 1):
        record(k, k * dt, theta)
        if k == steps:
            break
        t_next = (k + 1) * dt
        m = m + c1 * (problem.grad(theta) - m) * dt + c1 * sigma0 * root_sigma * noise.increment()
        u = u + c2 * (problem.noise_var - u) * dt
        b = _sde_bias_correction(t_next, c1=c1, c2=c2) if bias_correction else 1.0
        theta = theta - b * m / (sigma0 * u.sqrt() + eps0) * dt
    return record.paths()


def rmsprop_sde(
    problem: NoisyQuadratic,
    theta0,
    *,
    c2: float,
    sigma0: float,
    eps0: float = 0.0,
    dt: float,
    steps: int,
    paths: int,
    seed: int = 0,
    record_every: int = 1,
    bias_correction: bool = True,
    u0=None,
) -> Paths:
    """Integrate the RMSprop SDE (module docstring; Adam with gamma = 0), ``paths`` paths at once.

    ``s(t) = sqrt(1 - exp(-c2 t))`` is the bias correction of KAdam with gamma = 0
    (``bias_correction=False``: s = 1, then start from u0 > 0). u steps first, then theta with
    ``(grad L(theta_k) dt + sigma0 Sigma^(1/2) dW) / (sigma0 sqrt(u_{k+1}) + eps0)``.
    """
    steps, paths, every, seed = _check_common(problem, steps, paths, record_every, seed)
    c2 = validate.positive_real("c2", c2, meaning="(1-beta)/lr^2")
    sigma0 = validate.finite_real("sigma0", sigma0, lo=0, meaning="sigma*lr")
    eps0 = validate.finite_real("eps0", eps0, lo=0, meaning="eps*lr")
    dt = validate.positive_real("dt", dt, meaning="the SDE time step")
    theta = _theta0(theta0, problem.dim, paths)
    u = _initial_u(u0, problem, paths)
    noise = BrownianPath(paths, problem.dim, dt, seed=seed)
    root_sigma = problem.noise_var.sqrt()
    record = _Recorder(problem, every)
    for k in range(steps + 1):
        record(k, k * dt, theta)
        if k == steps:
            break
        u = u + c2 * (problem.noise_var - u) * dt
        s = _sde_bias_correction((k + 1) * dt, c1=math.inf, c2=c2) if bias_correction else 1.0
        theta = theta - s * (problem.grad(theta) * dt + sigma0 * root_sigma * noise.increment()) / (sigma0 * u.sqrt() + eps0)
    return record.paths()


def discrete_adam(
    problem: NoisyQuadratic,
    theta0,
    *,
    lr: float,
    beta: float,
    gamma: float,
    sigma: float,
    eps: float = 0.0,
    steps: int,
    paths: int,
    seed: int = 0,
    record_every: int = 1,
    substeps: int = 1,
    bias_correction: bool = True,
    v0=None,
) -> Paths:
    """Discrete Adam (KAdam's update, eps on sqrt(v)) on ``problem`` with injected Gaussian noise.

    ``g_n = h * theta_n + sigma * Sigma^(1/2) z_n`` with ``z_n = (W(t_{n+1}) - W(t_n)) / lr`` from a
    :class:`BrownianPath` of grid step ``lr^2 / substeps`` (so z_n ~ N(0, I)). With the SDE's seed
    and ``substeps = lr^2 / dt`` (:func:`substeps_for`) the run shares the SDE's Brownian path.
    gamma = 0 is RMSprop (KAdam with gamma = 0). ``v0``: initial v (default 0). Records at
    ``t = n lr^2`` every ``record_every`` steps.
    """
    steps, paths, every, seed = _check_common(problem, steps, paths, record_every, seed)
    lr = validate.positive_real("lr", lr, meaning="the learning rate")
    beta = validate.second_moment_decay("beta", beta, allow_zero=True)
    gamma = validate.first_moment_decay("gamma", gamma)
    sigma = validate.finite_real("sigma", sigma, lo=0, meaning="noise multiplier, 1/sqrt(batch size)")
    eps = validate.finite_real("eps", eps, lo=0)
    substeps = validate.positive_int("substeps", substeps)
    theta = _theta0(theta0, problem.dim, paths)
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta) if v0 is None else _vector("v0", v0, positive=False, dim=problem.dim).expand(paths, -1).clone()
    noise = BrownianPath(paths, problem.dim, lr * lr / substeps, seed=seed)
    root_sigma = problem.noise_var.sqrt()
    record = _Recorder(problem, every)
    for n in range(steps + 1):
        record(n, n * lr * lr, theta)
        if n == steps:
            break
        g = problem.grad(theta) + sigma * root_sigma * (noise.increment(substeps) / lr)
        m = gamma * m + (1.0 - gamma) * g
        v = beta * v + (1.0 - beta) * g * g
        c = optim.bias_correction(n, beta=beta, gamma=gamma) if bias_correction else 1.0
        theta = theta - lr * c * m / (v.sqrt() + eps)
    return record.paths()


def moment_errors(reference: Paths, other: Paths, *, skip_first: bool = True) -> dict[str, np.ndarray | float]:
    """Relative errors of E[L] and Var[L] of ``other`` against ``reference`` at their common record times.

    Returns ``{"times", "mean" [R], "var" [R], "max_mean", "max_var"}`` with
    ``mean = |E_other - E_ref| / E_ref`` (likewise for var); ``skip_first`` drops t = 0, where
    every path starts at the same point and the variance is 0. ValueError if no time matches.
    """
    if not isinstance(reference, Paths) or not isinstance(other, Paths):
        raise ValueError("moment_errors compares two Paths objects")
    common, i_ref, i_oth = np.intersect1d(np.round(reference.times, 12), np.round(other.times, 12), return_indices=True)
    if skip_first:
        keep = common > 0
        common, i_ref, i_oth = common[keep], i_ref[keep], i_oth[keep]
    if len(common) == 0:
        raise ValueError("the two Paths share no record time (t > 0); record both on a common grid")
    em, er = other.mean_loss[i_oth], reference.mean_loss[i_ref]
    vm, vr = other.var_loss[i_oth], reference.var_loss[i_ref]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.abs(em - er) / np.abs(er)
        var = np.abs(vm - vr) / np.abs(vr)
    return {"times": common, "mean": mean, "var": var, "max_mean": float(np.max(mean)), "max_var": float(np.max(var))}
