r"""The arithmetic of k-Adam as flat functions (App. R, Eq. 10; Algorithm 1 of App. S).

One level is :func:`adaptive_normalization`, App. R's operator A_{gamma,beta}: it updates the
level's moments in place and returns the normalized input,

.. math::

    m \leftarrow \gamma m + (1-\gamma) x, \qquad
    v \leftarrow \beta v + (1-\beta) x^2, \qquad
    u = \frac{\sqrt{1-\beta^{n+1}}}{1-\gamma^{n+1}} \frac{m}{\sqrt{v} + \epsilon}

(the factor is :func:`bias_correction`, Eq. 1). A k-Adam step chains it k times,
``u^(0) = g``, ``u^(i) = A_i(u^(i-1))``, then ``theta <- theta - lr u^(k)``, as optax chains
``scale_by_adam``. Two step functions do this for a list of parameters, as ``torch/optim/adam.py``
does: :func:`_single_tensor_kadam` (Algorithm 1 line by line, one parameter at a time) and
:func:`_foreach_kadam` (the same arithmetic over lists with ``torch._foreach_*``). Max-norms
||u_n^(i)||_inf (App. T) stay on the device.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from kadam_edu.optim.levels import Level, _check_beta, _check_gamma, _check_nonnegative, _describe

__all__ = ["adaptive_normalization", "bias_correction"]


# ---------------------------------------------------------------------------
# One level: App. R's adaptive normalization.
# ---------------------------------------------------------------------------


def bias_correction(n, *, beta, gamma):
    """c_n = sqrt(1 - beta^(n+1)) / (1 - gamma^(n+1)) at step n = 0, 1, ... (Eq. 1, App. D).

    The one definition of Adam's bias correction. ``n``: an int, or a real n > -1 (continuous time,
    Eq. 3: n = t / eta^p), a numpy array or a tensor;
    ``beta``, ``gamma``: numbers or arrays/tensors broadcasting against ``n``. Python numbers in,
    a float out, computed as Algorithm 1 computes it; arrays in, an array out (same formula).
    """
    if isinstance(n, Tensor) or isinstance(beta, Tensor) or isinstance(gamma, Tensor):
        return torch.sqrt(1 - beta ** (n + 1)) / (1 - gamma ** (n + 1))
    if isinstance(n, np.ndarray) or isinstance(beta, np.ndarray) or isinstance(gamma, np.ndarray):
        return np.sqrt(1.0 - np.asarray(beta, dtype=float) ** (n + 1)) / (1.0 - np.asarray(gamma, dtype=float) ** (n + 1))
    return math.sqrt(1.0 - beta ** (n + 1)) / (1.0 - gamma ** (n + 1))


class _Coefficients(NamedTuple):
    """The constants of one level at step n: floats, or tensors (per member) in the data's dtype."""

    one_minus_gamma: float | Tensor  # m <- lerp(m, x, 1 - gamma)
    beta: float | Tensor
    one_minus_beta: float | Tensor
    c: float | Tensor  # sqrt(1 - beta^(n+1)) / (1 - gamma^(n+1))

    def along_members(self, ndim: int) -> _Coefficients:
        return _Coefficients(*(_along_members(t, ndim) for t in self))


def _wide_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def _coefficients(gamma, beta, step, like: Tensor) -> _Coefficients:
    """Floats when gamma, beta and step are numbers (as Algorithm 1 computes them); otherwise
    tensors on ``like``'s device, computed in float64 and cast to ``like``'s dtype."""
    if not isinstance(gamma, Tensor) and not isinstance(beta, Tensor) and not isinstance(step, Tensor):
        return _Coefficients(1 - gamma, beta, 1 - beta, bias_correction(step, beta=beta, gamma=gamma))
    wide = _wide_dtype(like.device)
    g = torch.as_tensor(gamma, dtype=wide, device=like.device)
    b = torch.as_tensor(beta, dtype=wide, device=like.device)
    e = step.to(device=like.device, dtype=wide) + 1 if isinstance(step, Tensor) else step + 1
    c = bias_correction(e - 1, beta=b, gamma=g)
    return _Coefficients(*(t.to(like.dtype) for t in (1 - g, b, 1 - b, c)))


def _along_members(t, ndim: int):
    """A per-member tensor [E] as [E, 1, ..., 1], to broadcast along dim 0 of an ndim-d tensor."""
    if isinstance(t, Tensor) and t.ndim == 1:
        return t.view((-1,) + (1,) * (ndim - 1))
    return t


def _normalize(x: Tensor, m: Tensor, v: Tensor, co: _Coefficients, eps: float, out: Tensor) -> Tensor:
    """One level of Eq. 10 on unchecked arguments; m, v in place; the result in ``out`` (may be x)."""
    m.lerp_(x, co.one_minus_gamma)  # m <- gamma m + (1 - gamma) x
    if isinstance(co.one_minus_beta, Tensor):
        v.mul_(co.beta).addcmul_(x * co.one_minus_beta, x)  # v <- beta v + (1 - beta) x^2
    else:
        v.mul_(co.beta).addcmul_(x, x, value=co.one_minus_beta)
    torch.sqrt(v, out=out).add_(eps)  # sqrt(v) + eps   (eps before bias correction, Algorithm 1)
    return torch.div(m, out, out=out).mul_(co.c)  # c m / (sqrt(v) + eps)


def _check_decay_arg(name: str, value, x: Tensor) -> None:
    if isinstance(value, Tensor):
        try:
            fits = value.is_floating_point() and torch.broadcast_shapes(value.shape, x.shape) == x.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"{name} must broadcast against x (shape {list(x.shape)}) as a floating tensor; "
                f"got {_describe(value)}"
            )
    elif name == "gamma":
        _check_gamma(value, "gamma")
    else:
        _check_beta(value, "beta")


def _check_like_x(name: str, t, x: Tensor) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a tensor like x; got {t!r}")
    for what, a, b in (("shape", tuple(t.shape), tuple(x.shape)), ("dtype", t.dtype, x.dtype),
                       ("device", t.device, x.device)):
        if a != b:
            raise ValueError(f"{name} must have x's {what} {b}; got {a}")


def adaptive_normalization(x: Tensor, m: Tensor, v: Tensor, *, gamma, beta, step, eps: float = 1e-30,
                           out: Tensor | None = None) -> Tensor:
    r"""One level of App. R's adaptive normalization A_{gamma,beta} (Eq. 10), as Algorithm 1 computes it.

    Updates the level's moving averages in place and returns the normalized update:

    .. code-block:: text

        m <- gamma m + (1 - gamma) x
        v <- beta v + (1 - beta) x^2
        u  = sqrt(1 - beta^(n+1)) / (1 - gamma^(n+1)) * m / (sqrt(v) + eps),   n = step

    With eps = 0 this is App. R's M_gamma(x_{0:n}) / sqrt(M_beta(x_{0:n}^2)) for the sequence of
    x passed at steps 0..n. eps sits on sqrt(v) before the bias correction, as in Algorithm 1
    (App. S) and :class:`KAdam`: it equals torch's/optax's eps (added to sqrt of the
    bias-corrected v) divided by sqrt(1 - beta^(n+1)). k-Adam is this function chained k times,
    ``u^(0) = g``, ``u^(i) = adaptive_normalization(u^(i-1), m_i, v_i, ...)``.

    Args:
        x: the input at step n (a real floating tensor of any shape).
        m, v: the level's first and second moments, x's shape/dtype/device; zeros before step 0.
        gamma: first-moment decay in [0, 1); beta: second-moment decay in (0, 1). Floats, or
            floating tensors that broadcast against x (e.g. [E, 1, ..., 1] for one value per
            member along dim 0); a tensor's values are not checked (that would copy it to the host).
        step: the 0-based step index n: an int >= 0, or a 0-dim tensor on any device (so a
            training loop can keep it there; its value is not checked, for the same reason).
        eps: a finite number >= 0 (default 1e-30, Algorithm 1's).
        out: where to write u (x's shape/dtype/device; may be x itself, not m or v);
            default a new tensor.

    Returns u, x's shape and dtype.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a real floating-point tensor; got {_describe(x)}")
    _check_like_x("m", m, x)
    _check_like_x("v", v, x)
    _check_decay_arg("gamma", gamma, x)
    _check_decay_arg("beta", beta, x)
    if isinstance(step, Tensor):
        if step.ndim != 0 or step.dtype == torch.bool or step.is_complex():
            raise ValueError("step must be the 0-based step index: an int >= 0 or a 0-dim tensor; "
                             f"got {_describe(step)}")
    elif isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step must be the 0-based step index: an int >= 0 or a 0-dim tensor; got {step!r}")
    eps = _check_nonnegative("eps", eps)
    if out is None:
        out = torch.empty_like(x, memory_format=torch.preserve_format)
    else:
        _check_like_x("out", out, x)
        if out is m or out is v:
            raise ValueError("out must not be m or v (they are the level's state); pass x, a buffer, or None")
    return _normalize(x, m, v, _coefficients(gamma, beta, step, x), eps, out)


# ---------------------------------------------------------------------------
# Max-norms, kept on the device.
# ---------------------------------------------------------------------------


def _max_abs(t: Tensor) -> Tensor:
    """||t||_inf as a 0-d tensor (0 for an empty tensor). aminmax is ~15x faster than
    vector_norm(ord=inf) on CPU."""
    if t.numel() == 0:
        return t.new_zeros(())
    lo, hi = torch.aminmax(t)
    return torch.maximum(hi, -lo)


def _member_max_abs(t: Tensor, members: int) -> Tensor:
    """||t[e]||_inf for each member e: [E] (nan where a member's slice holds a nan)."""
    if t.numel() == 0:
        return t.new_zeros(members)
    lo, hi = torch.aminmax(t.reshape(members, -1), dim=1)
    return torch.maximum(hi, -lo)


def _reduce_max(values: list[Tensor], device: torch.device) -> Tensor:
    """Max over per-parameter max-norms (each 0-d, or [E]) that may live on several devices and
    dtypes, as a float64 (MPS: float32) tensor on ``device``. Nothing is copied to the host."""
    by_kind: dict[tuple, list[Tensor]] = {}
    for t in values:
        by_kind.setdefault((t.device, t.dtype), []).append(t)
    wide = _wide_dtype(device)
    parts = [torch.stack(ts).amax(0).to(device=device, dtype=wide) for ts in by_kind.values()]
    return parts[0] if len(parts) == 1 else torch.stack(parts).amax(0)


# ---------------------------------------------------------------------------
# The two code paths. Same arithmetic; tests check they agree with the chain.
# ---------------------------------------------------------------------------


def _operand(h, like: Tensor):
    """lr / weight decay as an operand for ``like``: a float, or a tensor in like's dtype and device
    (0-d for one value, [E] per member)."""
    if not isinstance(h, Tensor):
        return h
    h = h.to(device=like.device, dtype=like.dtype)
    return h.reshape(()) if h.numel() == 1 and h.ndim <= 1 else h


def _has(h) -> bool:
    return isinstance(h, Tensor) or h != 0


def _level_coefficients(levels: list[Level], n: int, like: Tensor) -> list[_Coefficients]:
    return [_coefficients(level.gamma, level.beta, n, like) for level in levels]


def _add_scaled(t: Tensor, theta: Tensor, scale, *, inplace: bool) -> Tensor:
    """t + scale theta (scale a float or a tensor broadcasting against theta)."""
    if isinstance(scale, Tensor):
        return t.addcmul_(theta, scale) if inplace else torch.addcmul(t, theta, scale)
    return t.add_(theta, alpha=scale) if inplace else t.add(theta, alpha=scale)


def _descend(theta: Tensor, u: Tensor, lr) -> None:
    """theta <- theta - lr u."""
    if isinstance(lr, Tensor):
        theta.addcmul_(u, lr, value=-1)
    else:
        theta.add_(u, alpha=-lr)


def _apply_member_updates(params: list[Tensor], updates: list[Tensor], lr, frozen: Tensor) -> None:
    """theta <- theta - lr u for active members; a frozen member's slice of u is zeroed with
    masked_fill (a selection, not a product: nan/inf in u never reaches theta)."""
    cache: dict[tuple, tuple] = {}
    for theta, u in zip(params, updates):
        key = (theta.device, theta.dtype)
        if key not in cache:
            cache[key] = (frozen.to(theta.device), _operand(lr, theta))
        mask, lr_t = cache[key]
        u.masked_fill_(_along_members(mask, theta.ndim), 0)
        _descend(theta, u, _along_members(lr_t, theta.ndim))


def _single_tensor_kadam(
    params: list[Tensor],
    states: list[dict],
    scratch: list[Tensor],
    *,
    levels: list[Level],
    lr: float | Tensor,
    weight_decay: float | Tensor,
    coupled: bool,
    eps: float,
    members: int | None = None,
    apply: bool = True,
) -> tuple[list[Tensor], list[list[Tensor]]]:
    """Algorithm 1 (App. S), one parameter at a time: the k levels are :func:`adaptive_normalization`
    chained, writing u_n^(i) into the parameter's scratch buffer.

    ``levels``/``lr``/``weight_decay`` hold floats, or tensors [E] applied along dim 0 (``members=E``).
    ``apply=False`` leaves theta alone (u_n stays in ``scratch``). Returns the per-parameter
    ||u_n||_inf and, per level, the ||u_n^(i)||_inf: 0-d each, or [E] per member.
    """
    norm = _max_abs if members is None else functools.partial(_member_max_abs, members=members)
    maxes: list[Tensor] = []
    level_maxes: list[list[Tensor]] = [[] for _ in levels]
    decoupled, has_wd = not coupled, _has(weight_decay)
    constants: dict[tuple, tuple] = {}
    for theta, state, u in zip(params, states, scratch):
        n = state["step"]
        key = (n, theta.dtype, theta.device)
        if key not in constants:
            constants[key] = (_level_coefficients(levels, n, theta), _operand(lr, theta), _operand(weight_decay, theta))
        cos, lr_t, wd_t = constants[key]
        d = theta.ndim
        g = theta.grad
        if coupled and has_wd:
            g = _add_scaled(g, theta, _along_members(wd_t, d), inplace=False)  # g <- g + lam theta_n
        g_hat = g
        for i, (co, m, v) in enumerate(zip(cos, state["m"], state["v"])):
            g_hat = _normalize(g_hat, m, v, co.along_members(d), eps, u)  # g_hat <- u_n^(i)
            level_maxes[i].append(norm(g_hat))
        if decoupled and has_wd:
            _add_scaled(u, theta, _along_members(wd_t, d), inplace=True)  # u <- g_hat + lam theta_n
        if apply:
            _descend(theta, u, _along_members(lr_t, d))  # theta_{n+1} <- theta_n - eta u
        maxes.append(norm(u) if (decoupled and has_wd) else level_maxes[-1][-1])
        state["step"] = n + 1
    return maxes, level_maxes


def _foreach_kadam(
    params: list[Tensor],
    states: list[dict],
    scratch: list[Tensor],
    *,
    levels: list[Level],
    lr: float | Tensor,
    weight_decay: float | Tensor,
    coupled: bool,
    eps: float,
    members: int | None = None,
    apply: bool = True,
) -> tuple[list[Tensor], list[list[Tensor]]]:
    """Algorithm 1 over lists of tensors with ``torch._foreach_*`` ops.

    Parameters are bucketed by (device, dtype, step) so each bucket shares one bias
    correction. ``U`` (the scratch list) holds u_n^(i) in place. Arguments and returns as
    :func:`_single_tensor_kadam`.
    """
    norm = _max_abs if members is None else functools.partial(_member_max_abs, members=members)
    maxes: list[Tensor] = []
    level_maxes: list[list[Tensor]] = [[] for _ in levels]
    decoupled, has_wd = not coupled, _has(weight_decay)
    buckets: dict[tuple, list[int]] = {}
    for j, (p, s) in enumerate(zip(params, states)):
        buckets.setdefault((p.device, p.dtype, s["step"]), []).append(j)
    for (_, _, n), idx in buckets.items():
        theta = [params[j] for j in idx]
        U = [scratch[j] for j in idx]
        X = [params[j].grad for j in idx]

        def each(h):  # a float as is; a tensor as one view per parameter (along dim 0 if [E])
            return [_along_members(h, t.ndim) for t in theta] if isinstance(h, Tensor) else h

        lr_t, wd_t = each(_operand(lr, theta[0])), each(_operand(weight_decay, theta[0]))
        if coupled and has_wd:
            torch._foreach_copy_(U, X)
            if isinstance(wd_t, list):
                torch._foreach_addcmul_(U, theta, wd_t)  # g <- g + lam theta_n
            else:
                torch._foreach_add_(U, theta, alpha=wd_t)
            X = U
        for i, co in enumerate(_level_coefficients(levels, n, theta[0])):
            M = [states[j]["m"][i] for j in idx]
            V = [states[j]["v"][i] for j in idx]
            torch._foreach_lerp_(M, X, each(co.one_minus_gamma))
            torch._foreach_mul_(V, each(co.beta))
            if isinstance(co.one_minus_beta, Tensor):
                torch._foreach_addcmul_(V, torch._foreach_mul(X, each(co.one_minus_beta)), X)
            else:
                torch._foreach_addcmul_(V, X, X, value=co.one_minus_beta)
            torch._foreach_copy_(U, V)  # no out= for foreach sqrt; copying beats allocating
            torch._foreach_sqrt_(U)
            torch._foreach_add_(U, eps)
            torch._foreach_reciprocal_(U)
            torch._foreach_mul_(U, M)
            torch._foreach_mul_(U, each(co.c))
            X = U
            level_maxes[i].extend(norm(t) for t in U)
        if decoupled and has_wd:
            if isinstance(wd_t, list):
                torch._foreach_addcmul_(U, theta, wd_t)
            else:
                torch._foreach_add_(U, theta, alpha=wd_t)
            maxes.extend(norm(t) for t in U)
        else:
            maxes.extend(level_maxes[-1][-len(idx):])
        if apply:
            if isinstance(lr_t, list):
                torch._foreach_addcmul_(theta, U, lr_t, value=-1)
            else:
                torch._foreach_add_(theta, U, alpha=-lr_t)
        for j in idx:
            states[j]["step"] = n + 1
    return maxes, level_maxes
