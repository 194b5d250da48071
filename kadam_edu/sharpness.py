r"""Sharpness and Adam's preconditioned sharpness: the edge of stability (beyond the paper).

The paper's analysis (Eq. 4, Section 3) describes Adam's *average* motion; it says nothing
about the fast oscillations that appear when a step is too large for the local curvature.
Cohen et al. (2022, "Adaptive gradient methods at the edge of stability") measure this with
the *preconditioned sharpness*. Write Adam's step (k = 1, paper notation: gamma = first
moment = torch's ``betas[0]``, beta = second moment) as

.. math::

    \theta_{n+1} = \theta_n - \eta\, P_n^{-1} \hat m_n, \qquad
    \hat m_n = \frac{m_n}{1-\gamma^{n+1}}, \qquad
    P_n = \mathrm{diag}\Big(\sqrt{\hat v_n} + \epsilon\Big), \quad
    \hat v_n = \frac{v_n}{1-\beta^{n+1}}

(:func:`adam_preconditioner`). With P frozen, Adam on a quadratic with Hessian H is heavy-ball
momentum on ``P^{-1} H``; it is stable iff every eigenvalue of ``P^{-1} H`` lies below

.. math::

    \frac{2 + 2\gamma}{(1-\gamma)\,\eta} \qquad (= 38/\eta \text{ at } \gamma = 0.9)

(:func:`adam_stability_threshold`). The eigenvalues of ``P^{-1} H`` are those of the
symmetric ``P^{-1/2} H P^{-1/2}``, whose top one is the preconditioned sharpness
(:func:`preconditioned_sharpness`). Hessian-vector products come from ``torch.func``
(:func:`hvp`), the top eigenvalue from Lanczos with full reorthogonalisation
(:func:`lanczos`) or from power iteration (:func:`power_iteration`).
:func:`adam_on_quadratic` runs Adam on a small quadratic and records both quantities.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from kadam_edu import validate
from kadam_edu.optim import KAdam

__all__ = [
    "adam_stability_threshold",
    "hvp",
    "lanczos",
    "power_iteration",
    "sharpness",
    "adam_preconditioner",
    "preconditioned_sharpness",
    "adam_on_quadratic",
    "QuadraticRun",
    "HVP_MODES",
]

#: "reverse": reverse-over-reverse (``vjp`` of ``grad``, built once and reused for every
#: product); "forward": forward-over-reverse (``jvp`` of ``grad``, rebuilt per product).
HVP_MODES = ("reverse", "forward")
#: how the top eigenvalue is found: :func:`lanczos` or :func:`power_iteration`
_EIGEN_METHODS = ("lanczos", "power")


# --------------------------------------------------------------------------- threshold
def adam_stability_threshold(lr, gamma: float = 0.9):
    r"""(2 + 2 gamma) / ((1 - gamma) eta): the largest stable eigenvalue of ``P^{-1} H``.

    Heavy-ball momentum with an EMA first moment, ``m_n = gamma m_{n-1} + (1-gamma) lambda x_n``,
    ``x_{n+1} = x_n - eta m_n``, on a 1-D quadratic of curvature lambda has the characteristic
    polynomial ``z^2 - (1 + gamma - eta (1-gamma) lambda) z + gamma``; a root crosses z = -1
    exactly at this lambda. lr: eta > 0 (float or array); gamma: first-moment decay in [0, 1)
    (the paper's gamma, torch's ``betas[0]``). Units: 1/lr. 38/eta at gamma = 0.9.
    """
    gamma = validate.first_moment_decay("gamma", gamma)
    lr_arr = np.asarray(lr, dtype=float)
    if lr_arr.size == 0 or not np.all(np.isfinite(lr_arr)) or np.any(lr_arr <= 0):
        raise ValueError(f"lr must be finite and > 0 (a number or an array of them); got {lr!r}")
    out = (2.0 + 2.0 * gamma) / ((1.0 - gamma) * lr_arr)
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------- Hessian-vector products
class _FlatHVP:
    """``x [dim] -> H x [dim]`` (float64 in, float64 out) over the concatenated parameters."""

    def __init__(self, loss_fn, params: dict[str, Tensor], mode: str):
        self.names = list(params)
        self.params = {k: v.detach() for k, v in params.items()}
        self.shapes = [t.shape for t in self.params.values()]
        self.sizes = [t.numel() for t in self.params.values()]
        self.dim = sum(self.sizes)
        self.mode = mode
        ref = next(iter(self.params.values()))
        self.dtype, self.device = ref.dtype, ref.device
        self._grad = torch.func.grad(lambda p: _scalar(loss_fn(p)))
        self._vjp = None
        if mode == "reverse":
            with _math_attention():
                _, self._vjp = torch.func.vjp(self._grad, self.params)

    def _unflatten(self, x: Tensor) -> dict[str, Tensor]:
        x = x.to(device=self.device, dtype=self.dtype)
        return {k: c.view(s) for k, c, s in zip(self.names, x.split(self.sizes), self.shapes)}

    def __call__(self, x: Tensor) -> Tensor:
        if not torch.is_tensor(x) or x.shape != (self.dim,):
            raise ValueError(f"the Hessian-vector product takes a vector of shape ({self.dim},); got "
                             + (f"{tuple(x.shape)}" if torch.is_tensor(x) else type(x).__name__))
        v = self._unflatten(x)
        with _math_attention():
            if self.mode == "reverse":
                out = self._vjp(v)[0]
            else:
                out = torch.func.jvp(self._grad, (self.params,), (v,))[1]
        return torch.cat([out[k].reshape(-1) for k in self.names]).to(torch.float64)


def _scalar(loss) -> Tensor:
    if not torch.is_tensor(loss) or loss.numel() != 1:
        raise ValueError("loss_fn must return a scalar tensor (one element); got "
                         + (f"shape {tuple(loss.shape)}" if torch.is_tensor(loss) else type(loss).__name__))
    return loss.reshape(())


def _math_attention():
    """Scaled-dot-product attention's fused CPU/GPU kernels have no second derivative (and
    no forward-mode AD); the math backend has both. Other ops are unaffected."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def hvp(loss_fn: Callable[[dict[str, Tensor]], Tensor], params, *, mode: str = "reverse") -> _FlatHVP:
    r"""The Hessian-vector product ``x -> H x`` of ``loss_fn`` at ``params``, via ``torch.func``.

    params: a mapping name -> tensor (e.g. ``dict(model.named_parameters())``) or one tensor;
    loss_fn(params) -> scalar tensor (same mapping, or the tensor, as argument).
    Returns a callable on flat float64 vectors of length ``.dim`` (the parameters concatenated
    in the mapping's order, each flattened); it evaluates in the parameters' dtype.
    mode: ``"reverse"`` (``vjp`` of ``grad``: one forward/backward graph built here and reused,
    the faster on CPU) or ``"forward"`` (``jvp`` of ``grad`` per product: forward-over-reverse,
    less memory). Attention runs on its math backend inside (the fused kernels cannot be
    differentiated twice).
    """
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable (params -> scalar loss); got {loss_fn!r}")
    mode = validate.choice("mode", mode, HVP_MODES)
    single = torch.is_tensor(params)
    named = {"x": params} if single else params
    if not isinstance(named, Mapping) or not named:
        raise ValueError("params must be a tensor or a non-empty mapping name -> tensor; got "
                         f"{type(params).__name__}")
    for k, t in named.items():
        if not torch.is_tensor(t) or not t.is_floating_point():
            raise ValueError(f"params[{k!r}] must be a floating-point tensor; got "
                             + (str(t.dtype) if torch.is_tensor(t) else type(t).__name__))
    dtypes = {t.dtype for t in named.values()}
    devices = {t.device for t in named.values()}
    if len(dtypes) > 1 or len(devices) > 1:
        raise ValueError(f"params must share one dtype and device; got {sorted(map(str, dtypes))} "
                         f"on {sorted(map(str, devices))}")
    fn = (lambda p: loss_fn(p["x"])) if single else loss_fn
    return _FlatHVP(fn, dict(named), mode)


def _model_hvp(model: nn.Module, loss_fn: Callable[[nn.Module], Tensor], mode: str) -> _FlatHVP:
    """hvp of ``loss_fn(model)`` with respect to the model's trainable parameters (tied ones once)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable (model -> scalar loss); got {loss_fn!r}")
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("model has no trainable parameters")
    if model.training and any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()):
        raise ValueError("the model has active dropout: the loss is random and has no Hessian; "
                         "call model.eval() or use dropout=0")

    wrapper = _LossModule(model, loss_fn)
    return hvp(lambda p: torch.func.functional_call(wrapper, {f"model.{k}": v for k, v in p.items()}, ()),
               params, mode=mode)


class _LossModule(nn.Module):
    """Wraps ``loss_fn(model)`` as a module, so ``functional_call`` can swap the parameters
    (tied parameters, such as the GPT's embedding and ``lm_head``, stay tied)."""

    def __init__(self, model: nn.Module, loss_fn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self):
        return self.loss_fn(self.model)


# --------------------------------------------------------------------------- eigenvalues
def _start_vector(dim: int, generator, dtype, device) -> Tensor:
    q = torch.randn(dim, generator=generator, dtype=dtype)
    return (q / torch.linalg.vector_norm(q)).to(device)


def _check_operator(matvec, dim) -> int:
    if not callable(matvec):
        raise ValueError(f"matvec must be callable (vector [dim] -> vector [dim]); got {matvec!r}")
    return validate.positive_int("dim", dim)


def lanczos(
    matvec: Callable[[Tensor], Tensor],
    dim: int,
    *,
    iters: int = 20,
    k: int = 1,
    generator: torch.Generator | None = None,
    device=None,
) -> Tensor:
    """The ``k`` largest (algebraic) eigenvalues of a symmetric operator, by Lanczos.

    matvec: float64 vector [dim] -> vector [dim], symmetric (e.g. :func:`hvp`). ``iters``
    Krylov steps (capped at ``dim``), each one ``matvec``, with full reorthogonalisation
    (memory ``iters * dim`` float64); the basis ends early when the Krylov space is invariant.
    The start vector is Gaussian from ``generator`` (CPU; None: torch's global one).
    Returns the Ritz values, largest first, a float64 tensor [k] (``k <= iters``). With
    ``iters = dim`` they are the exact top eigenvalues up to rounding; with fewer, the top
    one is a lower bound that converges fastest when it is well separated.
    """
    dim = _check_operator(matvec, dim)
    iters = min(validate.positive_int("iters", iters), dim)
    k = validate.positive_int("k", k)
    if k > iters:
        raise ValueError(f"k={k} eigenvalues need iters >= k (and dim >= k); got iters={iters}, dim={dim}")
    validate.generator("generator", generator, optional=True)
    device = torch.device("cpu") if device is None else torch.device(device)
    Q = torch.zeros(iters, dim, dtype=torch.float64, device=device)
    alphas, betas = [], []
    q = _start_vector(dim, generator, torch.float64, device)
    scale = 0.0
    for j in range(iters):
        Q[j] = q
        w = matvec(q).to(device=device, dtype=torch.float64)
        if w.shape != (dim,):
            raise ValueError(f"matvec must return a vector of shape ({dim},); got {tuple(w.shape)}")
        if not torch.isfinite(w).all():
            raise ValueError("matvec returned non-finite values (is the loss finite at these parameters?)")
        alpha = float(q @ w)
        alphas.append(alpha)
        # full reorthogonalisation, twice ("twice is enough")
        for _ in range(2):
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        b = float(torch.linalg.vector_norm(w))
        scale = max(scale, abs(alpha), b)
        if j == iters - 1 or b <= 1e-12 * max(scale, 1e-300):
            break  # the last step, or an invariant Krylov space: its Ritz values are exact
        betas.append(b)
        q = w / b
    m = len(alphas)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if m > 1:
        off = torch.tensor(betas[: m - 1], dtype=torch.float64)
        T = T + torch.diag(off, 1) + torch.diag(off, -1)
    ritz = torch.linalg.eigvalsh(T).flip(0)
    if k > m:
        raise ValueError(f"the Krylov space became invariant after {m} steps: only {m} eigenvalues "
                         f"are available, asked for k={k}")
    return ritz[:k]


def power_iteration(
    matvec: Callable[[Tensor], Tensor],
    dim: int,
    *,
    iters: int = 100,
    tol: float = 1e-10,
    generator: torch.Generator | None = None,
    device=None,
) -> float:
    """The eigenvalue of largest *magnitude* of a symmetric operator, by power iteration.

    Returns the Rayleigh quotient after at most ``iters`` products, stopping when it changes
    by less than ``tol`` (relative). For a symmetric operator the Rayleigh quotient's error falls
    like (lambda_2 / lambda_1)^(2n) after n products, slower than :func:`lanczos`, and for an indefinite operator whose most negative eigenvalue is the largest
    in magnitude it returns that one (Lanczos returns the largest algebraic).
    """
    dim = _check_operator(matvec, dim)
    iters = validate.positive_int("iters", iters)
    tol = validate.positive_real("tol", tol)
    validate.generator("generator", generator, optional=True)
    device = torch.device("cpu") if device is None else torch.device(device)
    q = _start_vector(dim, generator, torch.float64, device)
    rayleigh = math.nan
    for _ in range(iters):
        w = matvec(q).to(device=device, dtype=torch.float64)
        if w.shape != (dim,) or not torch.isfinite(w).all():
            raise ValueError(f"matvec must return a finite vector of shape ({dim},)")
        new = float(q @ w)
        norm = float(torch.linalg.vector_norm(w))
        if norm == 0.0:
            return 0.0
        q = w / norm
        if math.isfinite(rayleigh) and abs(new - rayleigh) <= tol * max(abs(new), 1e-300):
            return new
        rayleigh = new
    return rayleigh


def _top(matvec, dim: int, method: str, iters: int, generator, device) -> float:
    """The top eigenvalue of ``matvec`` by ``method`` (one of ``_EIGEN_METHODS``, checked by the caller)."""
    if method == "lanczos":
        return float(lanczos(matvec, dim, iters=iters, generator=generator, device=device)[0])
    return power_iteration(matvec, dim, iters=iters, generator=generator, device=device)


def sharpness(
    model: nn.Module,
    loss_fn: Callable[[nn.Module], Tensor],
    *,
    iters: int = 20,
    method: str = "lanczos",
    generator: torch.Generator | None = None,
    mode: str = "reverse",
) -> float:
    """lambda_max of the Hessian of ``loss_fn(model)`` in the model's trainable parameters.

    loss_fn(model) -> scalar tensor (close over a fixed batch). The sharpness of plain
    gradient descent, whose threshold is 2/eta. See :func:`preconditioned_sharpness`.
    """
    method, iters = validate.choice("method", method, _EIGEN_METHODS), validate.positive_int("iters", iters)
    validate.generator("generator", generator, optional=True)
    op = _model_hvp(model, loss_fn, validate.choice("mode", mode, HVP_MODES))
    return _top(op, op.dim, method, iters, generator, op.device)


# --------------------------------------------------------------------------- Adam's preconditioner
def adam_preconditioner(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    r"""The diagonal ``P = sqrt(v_hat) + eps`` of Adam's last step, per trainable parameter.

    Adam's step is ``theta <- theta - eta P^{-1} m_hat`` with ``m_hat = m / (1 - gamma^s)``
    and ``v_hat = v / (1 - beta^s)``, s the number of steps taken. Reads
    ``torch.optim.Adam`` / ``AdamW`` (state ``exp_avg_sq``, ``step``; ``P = sqrt(v_hat) + eps``)
    and :class:`kadam_edu.KAdam` with k = 1 (state ``v[0]``, ``step``; its eps sits inside the
    bias correction, so ``P = (sqrt(v) + eps) / sqrt(1 - beta^s)``). Weight decay must be 0
    (it would add to the Hessian), and every trainable parameter needs optimizer state (take a
    step first). Returns name -> P (same shape as the parameter, > 0).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    is_kadam = isinstance(optimizer, KAdam)
    if not (is_kadam or isinstance(optimizer, torch.optim.Adam)):
        raise ValueError("optimizer must be torch.optim.Adam, torch.optim.AdamW or kadam_edu.KAdam (k=1); "
                         f"got {type(optimizer).__name__}")
    group_of = {}
    for group in optimizer.param_groups:
        if float(group.get("weight_decay", 0.0)) != 0.0:
            raise ValueError("weight_decay must be 0: decay changes the update's Jacobian, which this "
                             f"preconditioner does not include; got {group['weight_decay']!r}")
        if is_kadam:
            levels = KAdam.group_levels(group)
            if len(levels) != 1:
                raise ValueError(f"k-Adam with k={len(levels)} levels has no diagonal preconditioner "
                                 "of this form; use k=1")
        elif group.get("amsgrad", False) or group.get("maximize", False):
            raise ValueError("amsgrad=True and maximize=True are not supported")
        for p in group["params"]:
            group_of[p] = group
    out = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p not in group_of:
            raise ValueError(f"parameter {name!r} is not in the optimizer's param groups")
        state = optimizer.state.get(p, {})
        if not state:
            raise ValueError(f"parameter {name!r} has no optimizer state yet: take at least one step")
        group = group_of[p]
        s = int(state["step"])
        eps = float(group["eps"])
        if is_kadam:
            beta = KAdam.group_levels(group)[0].beta
            P = (state["v"][0].sqrt() + eps) / math.sqrt(1.0 - beta**s)
        else:
            beta = float(group["betas"][1])
            P = (state["exp_avg_sq"] / (1.0 - beta**s)).sqrt() + eps
        out[name] = P.detach().clone()
    return out


def preconditioned_sharpness(
    model: nn.Module,
    loss_fn: Callable[[nn.Module], Tensor],
    preconditioner,
    *,
    iters: int = 20,
    method: str = "lanczos",
    generator: torch.Generator | None = None,
    mode: str = "reverse",
) -> float:
    r"""lambda_max(P^{-1} H) = lambda_max(P^{-1/2} H P^{-1/2}) (Cohen et al. 2022).

    H: Hessian of ``loss_fn(model)`` (a scalar; close over a fixed batch) in the trainable
    parameters. preconditioner: an Adam / AdamW / KAdam(k=1) optimizer (read with
    :func:`adam_preconditioner`) or a mapping name -> P (positive, the parameter's shape).
    Compare with :func:`adam_stability_threshold`. iters: Lanczos steps (or power-iteration
    steps with ``method="power"``), one Hessian-vector product each. Units: 1/lr.
    """
    if isinstance(preconditioner, torch.optim.Optimizer):
        P = adam_preconditioner(model, preconditioner)
    elif isinstance(preconditioner, Mapping):
        P = dict(preconditioner)
    else:
        raise ValueError("preconditioner must be an Adam/AdamW/KAdam optimizer or a mapping name -> P; "
                         f"got {type(preconditioner).__name__}")
    method, iters = validate.choice("method", method, _EIGEN_METHODS), validate.positive_int("iters", iters)
    validate.generator("generator", generator, optional=True)
    op = _model_hvp(model, loss_fn, validate.choice("mode", mode, HVP_MODES))
    if set(P) != set(op.names):
        raise ValueError(f"the preconditioner must have one entry per trainable parameter: missing "
                         f"{sorted(set(op.names) - set(P))}, unexpected {sorted(set(P) - set(op.names))}")
    chunks = []
    for name, shape in zip(op.names, op.shapes):
        t = P[name]
        if not torch.is_tensor(t) or t.shape != shape:
            raise ValueError(f"preconditioner[{name!r}] must be a tensor of shape {tuple(shape)}")
        chunks.append(t.detach().reshape(-1).to(device=op.device, dtype=torch.float64))
    p = torch.cat(chunks)
    if not (torch.isfinite(p).all() and (p > 0).all()):
        raise ValueError("the preconditioner must be finite and > 0 everywhere (eps = 0 with a zero "
                         "second moment gives P = 0)")
    inv_sqrt = p.rsqrt()

    def matvec(x: Tensor) -> Tensor:  # P^{-1/2} H P^{-1/2} x
        return inv_sqrt * op(inv_sqrt * x.to(inv_sqrt.device))

    return _top(matvec, op.dim, method, iters, generator, op.device)


# --------------------------------------------------------------------------- a quadratic toy
@dataclass
class QuadraticRun:
    """Adam on ``L = theta^T H theta / 2``: per step n, loss [N] and preconditioned sharpness [N]
    (``lambda_max(P_n^{-1} H)``, P_n the preconditioner of step n), the parameters [N + 1, d],
    and :func:`adam_stability_threshold` (a float, 1/lr units)."""

    loss: np.ndarray
    sharpness: np.ndarray
    theta: np.ndarray
    threshold: float


def adam_on_quadratic(
    hessian,
    *,
    lr: float,
    beta: float = 0.999,
    gamma: float = 0.9,
    steps: int = 2000,
    theta0=None,
    eps: float = 0.0,
) -> QuadraticRun:
    r"""Adam (bias-corrected, k = 1; paper notation) on ``L(theta) = theta^T H theta / 2``, in numpy.

    hessian: symmetric positive-definite [d, d]. With a constant lr, Adam does not settle at the
    minimum: as the gradients shrink, ``P = sqrt(v_hat) + eps`` shrinks, the preconditioned sharpness
    ``lambda_max(P^{-1} H)`` grows to :func:`adam_stability_threshold`, and the iterates oscillate
    there (unless eps keeps P away from 0). theta0: start [d] (default all ones).
    """
    H = np.asarray(hessian, dtype=float)
    if H.ndim != 2 or H.shape[0] != H.shape[1] or H.shape[0] < 1:
        raise ValueError(f"hessian must be a square [d, d] array; got shape {H.shape}")
    if not np.all(np.isfinite(H)) or not np.allclose(H, H.T):
        raise ValueError("hessian must be finite and symmetric")
    if np.linalg.eigvalsh(H)[0] <= 0:
        raise ValueError("hessian must be positive definite (a bowl)")
    lr = validate.positive_real("lr", lr)
    beta, gamma = validate.second_moment_decay("beta", beta), validate.first_moment_decay("gamma", gamma)
    steps = validate.positive_int("steps", steps)
    eps = validate.finite_real("eps", eps, lo=0)
    d = H.shape[0]
    theta = np.ones(d) if theta0 is None else np.asarray(theta0, dtype=float).copy()
    if theta.shape != (d,) or not np.all(np.isfinite(theta)):
        raise ValueError(f"theta0 must be a finite vector of shape ({d},)")
    m, v = np.zeros(d), np.zeros(d)
    losses, sharp, thetas = np.empty(steps), np.empty(steps), np.empty((steps + 1, d))
    thetas[0] = theta
    for n in range(steps):
        g = H @ theta
        losses[n] = 0.5 * theta @ g
        m = gamma * m + (1 - gamma) * g
        v = beta * v + (1 - beta) * g * g
        P = np.sqrt(v / (1 - beta ** (n + 1))) + eps
        if np.any(P <= 0):
            sharp[n] = np.inf
            theta = theta - lr * np.where(P > 0, m / (1 - gamma ** (n + 1)) / np.where(P > 0, P, 1.0), 0.0)
        else:
            s = 1.0 / np.sqrt(P)
            sharp[n] = np.linalg.eigvalsh(s[:, None] * H * s[None, :])[-1]
            theta = theta - lr * (m / (1 - gamma ** (n + 1))) / P
        thetas[n + 1] = theta
    return QuadraticRun(losses, sharp, thetas, adam_stability_threshold(lr, gamma))
