r"""Adam in continuous time (Section 2, App. E, I, J).

Time runs at the scale eta^p: discrete step n sits at t_n = n eta^p (p = 1 by default).

* :func:`ema_rate`, :func:`kernel`: the exponential kernel K_alpha(tau, t) of Eq. 3.
* :func:`continuous_ema`, :func:`continuous_update`: the moving averages m(t), v(t) of
  Eq. 2 and the update u(t) of Eq. 3 for a signal sampled at the step times.
* :func:`solve_adam_ode`: the second-order ODE of Eq. 4 (App. I), for an ``nn.Module`` or a
  flat parameter tensor, with App. I's Euler scheme or a cheaper exponential integrator.
* :func:`discrete_adam_trajectory`: the discrete trajectory with the same arguments.
* :func:`sq_norm_eq12`, :func:`sq_norm_eq8`: the norm dynamics of a weight (Eq. 12, Eq. 8)
  computed from a recorded trajectory, as in App. I ("Empirically validating phi(t)").
* :func:`orthogonal_norm_dynamics`: ||W||^2 and the effective learning rate of a scale-invariant
  weight whose updates are modelled as orthogonal to it (Eq. 8's setting, Eq. 9).

Starting values. Eq. 2 integrates from tau = 0, which leaves u(0) = 0/0. Adam's first
average m_0 = (1 - gamma) g_0 covers one sample, so here the averages start from the
window [-eta^p, 0] with the gradient held at g(theta_0): m(0) = (1 - e^{-a_gamma eta^p}) g_0,
v(0) = (1 - e^{-a_beta eta^p}) g_0^2. This is what the "1 +" in the bias-correction exponent
1 + t/eta^p of Eq. 3 counts, and it gives u(0) = sign(g_0) to leading order in (1 - gamma),
as in discrete Adam (1.05 sign(g_0) at (beta, gamma) = (0.999, 0.9)). In the same way the
sample g_n of step n's batch is integrated over the window (t_{n-1}, t_n], so that m(t_n) and
v(t_n) contain g_n as Adam's m_n, v_n do (the last window reuses batch ``steps - 1``, so
``loss_fn`` is called with n = 0..steps-1, as for discrete Adam). The ODE's
velocity starts on its slow manifold, psi(0) = -eta^(1-p) (u(0) + lam theta_0).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from kadam_edu import optim, validate
from kadam_edu.optim import KAdam

__all__ = [
    "ema_rate",
    "kernel",
    "bias_correction",
    "equilibrium_angle",
    "continuous_ema",
    "continuous_update",
    "Trajectory",
    "solve_adam_ode",
    "discrete_adam_trajectory",
    "update_terms",
    "sq_norm_eq12",
    "sq_norm_eq8",
    "NormDynamics",
    "orthogonal_norm_dynamics",
    "METHODS",
]

#: integrators for Eq. 4: App. I's Euler scheme, and the exponential integrator (beyond the paper).
METHODS = ("euler", "exp")
#: the exponential integrator takes this many times more substeps in the first window
FIRST_WINDOW_REFINEMENT = 8


# --------------------------------------------------------------------------- kernels (Eq. 2-3)
def ema_rate(alpha: float, *, lr: float, p: float = 1.0) -> float:
    """a_alpha = (1 - alpha) / (eta^p alpha): the decay rate of K_alpha in Eq. 3 (per unit of t)."""
    alpha = validate.decay("alpha", alpha, meaning="a moving-average decay")
    lr, p = validate.positive_real("lr", lr), validate.positive_real("p", p)
    return (1.0 - alpha) / (lr**p * alpha)


def kernel(tau, t, alpha: float, *, lr: float, p: float = 1.0):
    """K_alpha(tau, t) = a exp(-a (t - tau)) for tau <= t, 0 for tau > t (Eq. 3).

    ``tau`` and ``t`` broadcast (numpy arrays or floats, in units of t = n eta^p).
    """
    a = ema_rate(alpha, lr=lr, p=p)
    tau, t = np.asarray(tau, dtype=float), np.asarray(t, dtype=float)
    lag = t - tau
    out = np.where(lag >= 0, a * np.exp(-a * np.maximum(lag, 0.0)), 0.0)
    return out if out.ndim else float(out)


def bias_correction(t, *, beta: float, gamma: float, lr: float, p: float = 1.0):
    """sqrt(1 - beta^(1 + t/eta^p)) / (1 - gamma^(1 + t/eta^p)) (Eq. 3): Eq. 1's
    :func:`kadam_edu.optim.bias_correction` at the real step n = t / eta^p (t: a float or an array)."""
    beta, gamma = validate.second_moment_decay("beta", beta), validate.first_moment_decay("gamma", gamma)
    n = np.asarray(t, dtype=float) / validate.positive_real("lr", lr) ** validate.positive_real("p", p)
    out = optim.bias_correction(n, beta=beta, gamma=gamma)
    return out if np.ndim(out) else float(out)


def _ema_coefficients(a: float, h: float) -> tuple[float, float, float]:
    """Exact step of da/dt-type EMA  m' = a (x - m)  over length h with x linear from x0 to x1:

    m(h) = E m0 + c0 x0 + c1 x1,  E = e^{-ah}. (App. E's linear ODE, integrated exactly.)
    """
    ah = a * h
    one_minus_e = -math.expm1(-ah)
    c1 = 1.0 - one_minus_e / ah
    return 1.0 - one_minus_e, one_minus_e - c1, c1


def continuous_ema(x, alpha: float, *, lr: float, p: float = 1.0):
    """m(t_n) = integral of K_alpha(tau, t_n) x(tau) dtau (Eq. 2) at the step times t_n = n eta^p.

    ``x``: samples [N, ...] at t_0..t_{N-1} (numpy or torch), joined linearly in between and
    held at x_0 over the starting window [-eta^p, 0] (see the module docstring).
    Returns an array like ``x``, [N, ...]. Compare with the discrete EMA
    m_n = alpha m_{n-1} + (1 - alpha) x_n: they agree to leading order in (1 - alpha).
    """
    a = ema_rate(alpha, lr=lr, p=p)
    h = lr**p
    as_torch = torch.is_tensor(x)
    xs = x if as_torch else np.asarray(x, dtype=float)
    if xs.ndim == 0 or xs.shape[0] == 0:
        raise ValueError(f"x must have a leading time axis with at least one sample; got shape {tuple(xs.shape)}")
    e, c0, c1 = _ema_coefficients(a, h)
    out = xs.clone() if as_torch else xs.copy()
    out[0] = (1.0 - e) * xs[0]
    for n in range(1, xs.shape[0]):
        out[n] = e * out[n - 1] + c0 * xs[n - 1] + c1 * xs[n]
    return out


def continuous_update(g, *, beta: float, gamma: float, lr: float, p: float = 1.0, eps: float = 0.0):
    """u(t_n) of Eq. 3 for sampled gradients ``g`` [N, ...]: bias correction x m / (sqrt(v) + eps)."""
    beta, gamma = validate.second_moment_decay("beta", beta), validate.first_moment_decay("gamma", gamma)
    m = continuous_ema(g, gamma, lr=lr, p=p) if gamma > 0 else g
    v = continuous_ema(g**2, beta, lr=lr, p=p)
    n = np.arange(len(g)) * lr**p
    c = bias_correction(n, beta=beta, gamma=gamma, lr=lr, p=p).reshape((-1,) + (1,) * (g.ndim - 1))
    if torch.is_tensor(g):
        return torch.as_tensor(c, dtype=g.dtype) * m / (v.sqrt() + eps)
    return c * m / (np.sqrt(v) + eps)


# --------------------------------------------------------------------------- parameters as one vector
class _FlatProblem:
    """Evaluates loss_fn's gradient at a flat parameter vector, never touching the caller's model."""

    def __init__(self, model, loss_fn: Callable):
        if not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable as loss_fn(model_or_theta, n); got {loss_fn!r}")
        self.loss_fn = loss_fn
        if isinstance(model, nn.Module):
            self.module = copy.deepcopy(model)  # parameters, buffers and all
            self.params = [q for q in self.module.parameters() if q.requires_grad]
            if not self.params:
                raise ValueError("model has no parameters that require grad")
            self.theta0 = torch.cat([q.detach().reshape(-1) for q in self.params]).clone()
        elif torch.is_tensor(model):
            if model.ndim != 1 or not model.is_floating_point():
                raise ValueError(
                    f"model must be an nn.Module or a 1-D floating tensor of parameters; got a "
                    f"{model.dtype} tensor of shape {tuple(model.shape)}"
                )
            self.module = None
            self.theta0 = model.detach().clone()
        else:
            raise ValueError(f"model must be an nn.Module or a 1-D tensor; got {type(model).__name__}")
        self.grad_evals = 0

    def grad(self, theta: Tensor, n: int) -> Tensor:
        self.grad_evals += 1
        if self.module is None:
            th = theta.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(self.loss_fn(th, n), th)
            return g.detach()
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(theta, self.params)
        for q in self.params:
            q.grad = None
        with torch.enable_grad():
            self.loss_fn(self.module, n).backward()
        return torch.cat(
            [(q.grad if q.grad is not None else torch.zeros_like(q)).reshape(-1) for q in self.params]
        )


def _record_index(record, size: int) -> Tensor | None:
    if record is None:
        return None
    idx = torch.as_tensor(record, dtype=torch.long).reshape(-1)
    if idx.numel() == 0 or idx.min() < 0 or idx.max() >= size:
        raise ValueError(f"record must be indices into the {size} flattened parameters; got {record!r}")
    return idx


@dataclass
class Trajectory:
    """A parameter trajectory at the step times.

    theta: [steps + 1, R] flattened parameters at t_n = n eta^p (R = all, or the ``record``ed ones).
    times: [steps + 1] the t_n. grad_evals: gradient evaluations spent. indices: the recorded
    indices (None = all). method, substeps: how it was computed ("discrete" for Adam itself).
    """

    theta: Tensor
    times: Tensor
    grad_evals: int
    indices: Tensor | None
    method: str
    substeps: int

    def relative_error(self, reference: "Trajectory") -> float:
        """max_n ||theta_n - ref_n||_2 / max_n ||ref_n - ref_0||_2: error as a fraction of the total displacement."""
        if self.theta.shape != reference.theta.shape:
            raise ValueError(f"trajectories differ in shape: {tuple(self.theta.shape)} vs {tuple(reference.theta.shape)}")
        err = (self.theta - reference.theta).norm(dim=1).max()
        scale = (reference.theta - reference.theta[0]).norm(dim=1).max()
        return float(err / scale)


def _check_common(steps, lr, beta, gamma, weight_decay, p):
    """The arguments :func:`solve_adam_ode` and :func:`discrete_adam_trajectory` share."""
    return (
        validate.integer("steps", steps, lo=0),
        validate.positive_real("lr", lr),
        validate.second_moment_decay("beta", beta),
        validate.first_moment_decay("gamma", gamma),
        validate.real("weight_decay", weight_decay, lo=0),
        validate.positive_real("p", p),
    )


# --------------------------------------------------------------------------- Eq. 4
def solve_adam_ode(
    model,
    loss_fn: Callable,
    *,
    steps: int,
    lr: float,
    beta: float,
    gamma: float,
    weight_decay: float = 0.0,
    coupled: bool = False,
    substeps: int = 100,
    p: float = 1.0,
    method: str = "euler",
    eps: float = 1e-30,
    record=None,
) -> Trajectory:
    r"""Integrate Adam's second-order ODE (Eq. 4) from t = 0 to t = steps eta^p.

    lam eta theta + eta^p theta' + eta^{2p}/2 theta'' = -eta u(t), with u(t) of Eq. 3 and the
    averages m, v advanced alongside (m' = a_gamma (g - m), v' = a_beta (g^2 - v), App. E).

    model: an ``nn.Module`` (a private copy is integrated; the model is never changed) or a
        1-D tensor of initial parameters. loss_fn(model_or_theta, n): the loss of discrete
        step n's batch; the averages integrate it over the window (t_{n-1}, t_n], so m(t_n), v(t_n)
        contain g_n as Adam's m_n, v_n do, and the ODE and Adam see the same data.
    weight_decay, coupled: decoupled (AdamW) as in Eq. 4; coupled (Adam) as in App. E,
        g -> g + lam theta inside the averages and no lam term in Eq. 4.
    substeps: K, with dt = eta^p / K. p: the timescale exponent.
    method: ``"euler"``: App. I (forward Euler for theta, psi = theta'; m, v by
        m <- e^{-a dt} (m + dt a g)); K gradients per step.
        ``"exp"``: exponential integrator (beyond the paper): the linear part of Eq. 4 is
        integrated exactly for u linear over the substep (a 4x4 matrix exponential), the
        averages exactly for g linear over the substep; K + 1 gradients per step (each
        substep's end, reused as the next one's start, plus each window's first). It
        tracks discrete Adam as well as Euler with 100 substeps at a few substeps
        (``benchmarks/ode_accuracy.py``).
    eps: added to sqrt(v) as in Algorithm 1 (1e-30 guards 0/0 only).
    record: indices into the flattened parameters to keep (default: all).

    Returns a :class:`Trajectory` with ``theta`` [steps + 1, R] at t_n = n eta^p.
    """
    steps, lr, beta, gamma, wd, p = _check_common(steps, lr, beta, gamma, weight_decay, p)
    substeps = validate.positive_int("substeps", substeps)
    method = validate.choice("method", method, METHODS)
    coupled = validate.boolean("coupled", coupled)
    eps = validate.real("eps", eps, lo=0)
    prob = _FlatProblem(model, loss_fn)
    idx = _record_index(record, prob.theta0.numel())

    T = lr**p
    a_m = (1.0 - gamma) / (T * gamma) if gamma > 0 else math.inf
    a_v = (1.0 - beta) / (T * beta)
    lam_term = 0.0 if coupled else wd  # the lam eta theta term of Eq. 4

    def grad(theta, n):
        g = prob.grad(theta, n)
        return g + wd * theta if coupled else g

    def update(m, v, t):
        return optim.bias_correction(t / T, beta=beta, gamma=gamma) * m / (v.sqrt() + eps)

    def first_moment_window(g, a):  # the starting window [-eta^p, 0] (module docstring)
        return -math.expm1(-a * T) * g if math.isfinite(a) else g

    theta = prob.theta0.clone()
    g = grad(theta, 0)
    m, v = first_moment_window(g, a_m), first_moment_window(g * g, a_v)
    u = update(m, v, 0.0)
    psi = -(lr ** (1.0 - p)) * (u + lam_term * theta)
    out = [theta if idx is None else theta[idx]]

    force = -2.0 * lr ** (1.0 - 2.0 * p)  # theta'' + (2/eta^p) theta' + 2 lam eta^{1-2p} theta = force u

    def exp_constants(h):  # the exponential integrator's coefficients for a substep of length h
        return (
            _linear_propagator(lr=lr, p=p, lam=lam_term, dt=h),
            _ema_coefficients(a_m, h) if math.isfinite(a_m) else (0.0, 0.0, 1.0),
            _ema_coefficients(a_v, h),
        )

    for n in range(steps):
        batch = min(n + 1, steps - 1)  # the sample integrated over the window (t_n, t_{n+1}]
        g = grad(theta, batch)
        K = substeps
        if method == "exp":
            # In the first window u(t) can behave like sqrt(t) (a coordinate with g_0 ~ 0 but
            # g_1 != 0 has v(t) ~ t), which costs the method its order; refine that window only.
            K = substeps * FIRST_WINDOW_REFINEMENT if n == 0 else substeps
            if n <= 1:
                prop, (em, em0, em1), (ev, ev0, ev1) = exp_constants(T / K)
        h = T / K
        for j in range(K):
            t = n * T + j * h
            if method == "euler":  # App. I
                psi_dot = -(2.0 / T**2) * (lam_term * lr * theta + T * psi + lr * u)
                theta = theta + h * psi
                psi = psi + h * psi_dot
                v = math.exp(-a_v * h) * (v + h * a_v * g * g)
                if math.isfinite(a_m):
                    m = math.exp(-a_m * h) * (m + h * a_m * g)
                if j < K - 1:
                    g = grad(theta, batch)
                if not math.isfinite(a_m):  # gamma = 0: m(t) = g(t)
                    m = g
            else:  # exponential integrator
                m_pred, v_pred = em * m + (em0 + em1) * g, ev * v + (ev0 + ev1) * g * g
                theta, psi = prop(theta, psi, force * u, force * (update(m_pred, v_pred, t + h) - u))
                g_next = grad(theta, batch)
                m = em * m + em0 * g + em1 * g_next
                v = ev * v + ev0 * g * g + ev1 * g_next * g_next
                g = g_next
            u = update(m, v, t + h)
        out.append(theta if idx is None else theta[idx])
    return Trajectory(
        theta=torch.stack(out),
        times=torch.arange(steps + 1, dtype=torch.float64) * T,
        grad_evals=prob.grad_evals,
        indices=idx,
        method=method,
        substeps=substeps,
    )


def _linear_propagator(*, lr: float, p: float, lam: float, dt: float):
    """Exact flow over dt of theta'' + c1 theta' + c0 theta = F(s), F linear: F0 + s dF/dt.

    c1 = 2/eta^p, c0 = 2 lam eta^{1-2p} (Eq. 4 divided by eta^{2p}/2). The 4x4 augmented
    matrix [[0,1,0,0],[-c0,-c1,1,0],[0,0,0,1],[0,0,0,0]] carries (theta, psi, F, F dt)
    through one substep; the same scalar coefficients apply to every coordinate.
    """
    c1, c0 = 2.0 / lr**p, 2.0 * lam * lr ** (1.0 - 2.0 * p)
    M = torch.tensor(
        [[0, 1, 0, 0], [-c0, -c1, 1, 0], [0, 0, 0, 1 / dt], [0, 0, 0, 0]], dtype=torch.float64
    )
    E = torch.linalg.matrix_exp(M * dt).tolist()

    def step(theta, psi, F0, dF):
        """dF: change of F over the substep."""
        return (
            E[0][0] * theta + E[0][1] * psi + E[0][2] * F0 + E[0][3] * dF,
            E[1][0] * theta + E[1][1] * psi + E[1][2] * F0 + E[1][3] * dF,
        )

    return step


def discrete_adam_trajectory(
    model,
    loss_fn: Callable,
    *,
    steps: int,
    lr: float,
    beta: float,
    gamma: float,
    weight_decay: float = 0.0,
    coupled: bool = False,
    p: float = 1.0,
    eps: float = 1e-30,
    record=None,
) -> Trajectory:
    """Discrete Adam/AdamW (Eq. 1; KAdam with k = 1) with the same arguments as :func:`solve_adam_ode`.

    Step n uses loss_fn(model_or_theta, n). Returns theta [steps + 1, R] at t_n = n eta^p;
    the caller's model is not changed.
    """
    steps, lr, beta, gamma, wd, p = _check_common(steps, lr, beta, gamma, weight_decay, p)
    prob = _FlatProblem(model, loss_fn)
    idx = _record_index(record, prob.theta0.numel())
    theta = torch.nn.Parameter(prob.theta0.clone())
    opt = KAdam([theta], lr=lr, betas=(gamma, beta), weight_decay=wd, coupled=coupled, eps=eps)
    out = [theta.detach().clone() if idx is None else theta.detach()[idx].clone()]
    for n in range(steps):
        theta.grad = prob.grad(theta.detach(), n)
        opt.step()
        out.append(theta.detach().clone() if idx is None else theta.detach()[idx].clone())
    return Trajectory(
        theta=torch.stack(out),
        times=torch.arange(steps + 1, dtype=torch.float64) * lr**p,
        grad_evals=prob.grad_evals,
        indices=idx,
        method="discrete",
        substeps=1,
    )


# --------------------------------------------------------------------------- norm dynamics (Eq. 8, 12)
def update_terms(W, *, lr: float, weight_decay: float = 0.0):
    """||u_W,n||^2 and <W_n, u_W,n> from a recorded AdamW trajectory of one weight (App. I).

    W: [N + 1, R] the weight's entries at steps 0..N. With decoupled decay,
    W_{n+1} = W_n - eta (u_W,n + lam W_n), so u_W,n = (W_n - W_{n+1}) / eta - lam W_n.
    Returns two float64 arrays of length N.
    """
    lr = validate.positive_real("lr", lr)
    W = torch.as_tensor(W, dtype=torch.float64)
    if W.ndim != 2 or W.shape[0] < 2:
        raise ValueError(f"W must be [steps + 1, R] with at least two steps recorded; got shape {tuple(W.shape)}")
    u = (W[:-1] - W[1:]) / lr - weight_decay * W[:-1]
    return (u * u).sum(1).numpy(), (W[:-1] * u).sum(1).numpy()


def _decayed_integral(phi0: float, f, *, lr: float, weight_decay: float):
    """phi_n = phi0 e^{-2 lam t_n} + dt sum_{m<n} e^{-2 lam (t_n - t_m)} f_m, dt = eta (p = 1), App. I."""
    f = np.asarray(f, dtype=float)
    decay = math.exp(-2.0 * weight_decay * lr)
    out = np.empty(len(f) + 1)
    out[0] = phi0
    for n in range(len(f)):
        out[n + 1] = decay * (out[n] + lr * f[n])
    return out


def sq_norm_eq12(phi0: float, u_sq, w_dot_u, *, lr: float, weight_decay: float = 0.0):
    """Eq. 12: ||W(t)||^2 = ||W(0)||^2 e^{-2 lam t} + int e^{-2 lam (t - tau)} (eta ||u_W||^2 - 2 <W, u_W>) dtau.

    phi0 = ||W_0||^2; u_sq, w_dot_u: [N] per step (see :func:`update_terms`). Returns [N + 1] at t_n.
    """
    f = lr * np.asarray(u_sq, dtype=float) - 2.0 * np.asarray(w_dot_u, dtype=float)
    return _decayed_integral(phi0, f, lr=lr, weight_decay=weight_decay)


def sq_norm_eq8(phi0: float, u_sq, *, lr: float, weight_decay: float = 0.0):
    """Eq. 8: Eq. 12 without the <W, u_W> term (valid when <W, u_W> ~ 0, App. J). Returns [N + 1]."""
    return _decayed_integral(phi0, lr * np.asarray(u_sq, dtype=float), lr=lr, weight_decay=weight_decay)


# --------------------------------------------------------------------------- a modelled scale-invariant weight (Eq. 8, 9)
def equilibrium_angle(lr: float, weight_decay: float, gamma: float = 0.0) -> float:
    """Angle turned per step (radians) by a scale-invariant weight at its norm's equilibrium under AdamW
    (Eq. 8 with Eq. 9): sqrt(2 lam eta (1 - gamma) / (1 + gamma)).

    gamma = 0 (updates orthogonal to W, Eq. 8's setting): sqrt(2 lam eta), whatever the update size.
    With momentum gamma and noise-dominated gradients the norm grows by eta^2 G / s^2 per step (the
    <W, u_W> term Eq. 8 drops adds 2 gamma / (1 - gamma) times the kept one) while ||u||^2 is only
    (1 - gamma) / (1 + gamma) G / s^2: hence the factor. lr: eta > 0; weight_decay: lam >= 0 (per unit
    of t); gamma: the first-moment decay in [0, 1).
    """
    lr = validate.positive_real("lr", lr)
    lam = validate.finite_real("weight_decay", weight_decay, lo=0.0)
    gamma = validate.first_moment_decay("gamma", gamma)
    return math.sqrt(2.0 * lam * lr * (1.0 - gamma) / (1.0 + gamma))


@dataclass
class NormDynamics:
    """Norm dynamics of a scale-invariant weight W with modelled update sizes (see :func:`orthogonal_norm_dynamics`).

    steps: [N + 1] step indices n. discrete, eq8: [N + 1] ||W_n||^2 from the exact AdamW recursion and from
    Eq. 8. effective_lr: [N] eta / ||W_n|| (discrete), the step size with which the direction W/||W||
    follows u_W (Eq. 9). angular_update: [N] eta ||u_n|| / ||W_n|| (radians per step, to first order).
    equilibrium: [N] Eq. 8's fixed point eta ||u_n||^2 / (2 lam) for the current update size (inf when
    lam = 0). equilibrium_angular_update: sqrt(2 lam eta) (:func:`equilibrium_angle` without momentum),
    the angular update at that fixed point (0 when lam = 0). lr, weight_decay: eta and lam.
    """

    steps: np.ndarray
    discrete: np.ndarray
    eq8: np.ndarray
    effective_lr: np.ndarray
    angular_update: np.ndarray
    equilibrium: np.ndarray
    equilibrium_angular_update: float
    lr: float
    weight_decay: float


def orthogonal_norm_dynamics(phi0: float, u_sq, *, lr: float, weight_decay: float = 0.0) -> NormDynamics:
    r"""||W_n||^2 of a scale-invariant weight under AdamW when every update is orthogonal to W (Eq. 8, 9).

    The model: W_{n+1} = (1 - eta lam) W_n - eta u_n with <W_n, u_n> = 0 (Eq. 6 carried over to
    u_W, App. J) and ||u_n||^2 = ``u_sq[n]`` given (e.g. N rho^2 for N entries of typical size rho).

    - ``discrete``: the exact recursion ||W_{n+1}||^2 = (1 - eta lam)^2 ||W_n||^2 + eta^2 ||u_n||^2.
    - ``eq8``: Eq. 8, phi' = -2 lam phi + eta ||u(t)||^2 (t = n eta, p = 1), solved exactly with
      ||u||^2 held at ``u_sq[n]`` over step n:
      phi_{n+1} = e^{-2 lam eta} phi_n + eta ||u_n||^2 (1 - e^{-2 lam eta}) / (2 lam)  (eta^2 ||u_n||^2 at lam = 0).
      For constant ||u||^2 = U: phi(t) = phi0 e^{-2 lam t} + eta U (1 - e^{-2 lam t}) / (2 lam), which tends
      to eta U / (2 lam); the discrete fixed point is eta U / (lam (2 - eta lam)).

    phi0: ||W_0||^2 > 0. u_sq: [N] squared update norms (>= 0, finite, N >= 1). lr: eta > 0.
    weight_decay: lam >= 0 (decoupled, per unit of t, as in Eq. 4), with eta lam < 1.
    Returns a :class:`NormDynamics`.
    """
    phi0 = validate.positive_real("phi0", phi0, meaning="the squared norm ||W_0||^2")
    lr = validate.positive_real("lr", lr)
    lam = validate.real("weight_decay", weight_decay)
    if not (0.0 <= lam < math.inf) or lam * lr >= 1.0:
        raise ValueError(f"weight_decay must be >= 0, finite and below 1/lr = {1.0 / lr:g} (so that 1 - lr*weight_decay > 0); "
                         f"got {weight_decay!r}")
    try:
        u = np.asarray(u_sq, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"u_sq must be a 1-D sequence of squared update norms; got {u_sq!r}") from err
    if u.ndim != 1 or u.size == 0:
        raise ValueError(f"u_sq must be a 1-D sequence with at least one step; got shape {u.shape}")
    if not np.all(np.isfinite(u)) or np.any(u < 0):
        raise ValueError("u_sq must hold finite values >= 0 (squared norms ||u_n||^2)")

    shrink = (1.0 - lr * lam) ** 2  # the discrete recursion's decay per step
    decay = math.exp(-2.0 * lam * lr)  # Eq. 8's decay over one step, t: n eta -> (n + 1) eta
    gain = lr * -math.expm1(-2.0 * lam * lr) / (2.0 * lam) if lam > 0 else lr * lr
    discrete, eq8 = np.empty(u.size + 1), np.empty(u.size + 1)
    d = e = phi0
    discrete[0] = eq8[0] = phi0
    for n, un in enumerate(u.tolist()):  # plain floats: a scalar recursion, fast enough for 1e5+ steps
        d = shrink * d + lr * lr * un
        e = decay * e + gain * un
        discrete[n + 1], eq8[n + 1] = d, e
    norm = np.sqrt(discrete[:-1])
    equilibrium = lr * u / (2.0 * lam) if lam > 0 else np.full(u.size, math.inf)
    return NormDynamics(
        steps=np.arange(u.size + 1),
        discrete=discrete,
        eq8=eq8,
        effective_lr=lr / norm,
        angular_update=lr * np.sqrt(u) / norm,
        equilibrium=equilibrium,
        equilibrium_angular_update=equilibrium_angle(lr, lam),
        lr=lr,
        weight_decay=lam,
    )
