r"""k-Adam's whole step as one fused kernel per device and dtype (Algorithm 1, App. S).

A k-Adam step is memory-bound: per parameter it reads ``g, theta, m_i, v_i`` and writes
``theta, m_i, v_i``, i.e. ``3 + 4k`` parameter-sized passes, and does a few flops per byte.
The single-tensor and foreach paths of :class:`~kadam_edu.KAdam` make many passes per level
(one per ``torch`` op). Here a device's and dtype's parameters, gradients and moments live
in flat 1-D buffers (each parameter re-homed as a view, ``p.data = flat[a:b].view_as(p)``)
and one ``torch.compile``-d function runs every level of Algorithm 1 over them; inductor
emits one loop for it (one C++ kernel on CPU, one Triton kernel on CUDA) that also reduces
the max-updates ``||u_n^(i)||_inf`` (App. T) and ``||u_n||_inf``.

The step's scalars (learning rate, weight decay, eps and each level's bias correction, formed
in float64 on the host exactly as the single-tensor path forms them) reach the kernel as one
small tensor copied to the device without synchronising, so a new learning rate or another
step never recompiles. One compilation per (device, dtype, k) serves every model size
(dynamic shapes; the first step in which some parameter has no gradient compiles once more,
for ranges of the buffers). Compilation needs a working C++ compiler on CPU (Triton on CUDA)
and takes a few seconds per kernel, plus ~10 s for the first one in a process on 2 cores.

``benchmarks/optimizer_step.py`` times it against ``torch.optim.Adam(fused=True)``, which
makes Adam's 7 passes in one kernel: on the paper's 10.8M-parameter GPT (2 CPU threads)
k = 1, 2, 3 take 0.94x, 1.58x, 2.21x its time, the ratios of the bytes moved (1, 11/7, 15/7).

``KAdam(..., fused=True)`` keeps one ``FlatKAdam`` per param group, device and dtype and
calls it in ``step()``; by hand::

    flat = FlatKAdam(params, k=2)          # params now live in flat.theta
    states = [{} for _ in params]          # per-parameter state, as KAdam keeps it
    max_update, level_max = flat.step(states, levels=kadam_levels(2), lr=1e-3,
                                      weight_decay=0.0, coupled=False, eps=1e-30)
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from kadam_edu import validate
from kadam_edu.optim.functional import bias_correction
from kadam_edu.optim.levels import _check_beta, _check_coupled, _check_gamma, _check_k

__all__ = ["FlatKAdam", "FUSED_DTYPES"]

#: Parameter dtypes the fused kernel handles.
FUSED_DTYPES = (torch.float32, torch.float64)


def _kadam_flat(theta: Tensor, grad: Tensor, m: list[Tensor], v: list[Tensor], hyper: Tensor) -> Tensor:
    """Algorithm 1 (App. S) over flat buffers, in place: one k-Adam step of ``k = len(m)`` levels.

    theta, grad, m[i], v[i]: 1-D, same length and dtype. hyper (float64, from :func:`_hyper`):
    ``[lr, lam_coupled, lam_decoupled, eps]`` then ``[c_i, 1 - gamma_i, beta_i, 1 - beta_i]`` for
    each level, ``c_i`` the bias correction of this step.
    Returns ``[||u^(1)||_inf, ..., ||u^(k)||_inf, ||u||_inf]`` in theta's dtype.

    The arithmetic is the single-tensor path's, op for op: scalars formed in float64 and cast
    to the dtype, ``lerp`` switching formula at weight 0.5 as torch's does. They agree to
    rounding, not bit for bit: torch's vectorised CPU kernels fuse some multiply-adds.
    """
    dtype = theta.dtype
    lr, lam_coupled, lam_decoupled, eps = (hyper[j].to(dtype) for j in range(4))
    # 0 * g is +0, or NaN exactly where every u^(i) is already NaN (g = +-inf or NaN), so adding
    # it to each |u^(i)| changes no max-update. It makes every reduction read g, which lets
    # inductor fuse all k + 1 reductions into the one loop instead of one extra pass for each.
    zero = grad * 0.0
    g_hat = torch.where(lam_coupled != 0, grad + lam_coupled * theta, grad)  # g <- g + lam theta_n
    maxes = []
    for i in range(len(m)):
        c, w, beta, w2 = (hyper[4 + 4 * i + j].to(dtype) for j in range(4))
        # m_i <- gamma_i m_i + (1 - gamma_i) g_hat, as torch's lerp with weight w = 1 - gamma_i:
        # m + w (g - m) for w < 0.5, else g - (1 - w) (g - m)
        small = w < 0.5
        m_i = torch.where(small, m[i], g_hat) + torch.where(small, w, w - 1) * (g_hat - m[i])
        v_i = v[i] * beta + w2 * g_hat * g_hat  # v_i <- beta_i v_i + (1 - beta_i) g_hat^2
        m[i].copy_(m_i)
        v[i].copy_(v_i)
        g_hat = m_i / (torch.sqrt(v_i) + eps) * c  # u_n^(i) = c m_i / (sqrt(v_i) + eps)
        maxes.append((g_hat.abs() + zero).amax())
    u = torch.where(lam_decoupled != 0, g_hat + lam_decoupled * theta, g_hat)  # u <- g_hat + lam theta_n
    maxes.append((u.abs() + zero).amax())
    theta.copy_(theta - lr * u)  # theta_{n+1} <- theta_n - eta u
    return torch.stack(maxes)


def _hyper(levels: list[tuple[float, float]], n: int, lr: float, weight_decay: float, coupled: bool,
           eps: float) -> list[float]:
    """The scalars of step n for :func:`_kadam_flat`, in float64 exactly as the single-tensor path
    forms them; ``c_i`` is :func:`~kadam_edu.optim.bias_correction` (Eq. 1, App. D)."""
    out = [lr, weight_decay if coupled else 0.0, 0.0 if coupled else weight_decay, eps]
    for gamma, beta in levels:
        out += [bias_correction(n, beta=beta, gamma=gamma), 1 - gamma, beta, 1 - beta]
    return out


_KERNELS: dict[int, Callable] = {}
_COMPILED: set[tuple] = set()


def _kernel(k: int) -> Callable:
    """The compiled :func:`_kadam_flat` for k levels.

    Each k gets its own code object, so dynamo's per-function recompile limit (8) counts only
    the (device, dtype) pairs of one k.
    """
    if k not in _KERNELS:
        code = _kadam_flat.__code__
        fn = types.FunctionType(code.replace(co_name=f"{code.co_name}_k{k}"), _kadam_flat.__globals__)
        _KERNELS[k] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _KERNELS[k]


def _run_kernel(theta, grad, m, v, hyper) -> Tensor:
    key = (theta.device, theta.dtype, len(m))
    if key in _COMPILED:
        return _kernel(len(m))(theta, grad, m, v, hyper)
    try:
        out = _kernel(len(m))(theta, grad, m, v, hyper)
    except Exception as err:  # the first call compiles; nothing has been written yet
        raise RuntimeError(
            f"KAdam(fused=True) could not compile its kernel for {theta.dtype} on {theta.device}: "
            "it needs torch.compile with a working C++ compiler (CPU) or Triton (CUDA); "
            f"use fused=False instead. The compiler said: {type(err).__name__}: {err}"
        ) from err
    _COMPILED.add(key)
    return out


_NONNEGATIVE = validate.Real(0.0)
_NONNEGATIVE_OR_TENSOR = validate.Real(0.0, meaning="or a 1-element floating-point tensor")


def _check_nonnegative(name: str, value, tensor_ok: bool = False) -> float | Tensor:
    """A finite real number >= 0, or (where ``tensor_ok``) a 1-element floating-point tensor, whose
    value is not read (that would synchronise)."""
    if tensor_ok and isinstance(value, Tensor):
        if value.numel() != 1 or not value.is_floating_point():
            raise ValueError(f"{name} as a tensor must hold one floating-point value; got {value.dtype} "
                             f"of shape {tuple(value.shape)}")
        return value
    return float((_NONNEGATIVE_OR_TENSOR if tensor_ok else _NONNEGATIVE)(name, value))


class FlatKAdam:
    """k-Adam state of parameters that share one device and dtype, in flat buffers.

    Building it re-homes every parameter as a view into one flat buffer (``p.data =
    flat[a:b].view_as(p)``; values unchanged) and existing gradients likewise. :meth:`step`
    then runs Algorithm 1 for all of them as one compiled kernel (see the module docstring).

    Args:
        params: parameters (leaf tensors) of one device and one dtype in :data:`FUSED_DTYPES`,
            no tensor twice. 0-element parameters are allowed.
        k: number of adaptive-normalization levels (positive int).

    Attributes ``theta``, ``grad`` (shape ``[N]``) and ``m``, ``v`` (k buffers of shape ``[N]``)
    are the flat buffers, ``N`` the total number of elements.

    Gradients: a step reads each ``p.grad`` in place when it is the view into ``grad``. A
    gradient autograd created anew (after ``zero_grad(set_to_none=True)``, torch's default) is
    copied in, one extra read and write of it, and ``p.grad`` becomes the view; with
    ``zero_grad(set_to_none=False)`` backward then accumulates straight into the flat buffer.
    """

    def __init__(self, params: Sequence[Tensor], k: int):
        if isinstance(params, Tensor) or not isinstance(params, Sequence) or len(params) == 0:
            raise ValueError(f"params must be a non-empty list of tensors; got {params!r}")
        k = _check_k(k)
        for j, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise ValueError(f"params[{j}] must be a tensor; got {type(p).__name__}")
        device, dtype = params[0].device, params[0].dtype
        for j, p in enumerate(params):
            if p.dtype not in FUSED_DTYPES:
                raise ValueError(
                    f"params[{j}] has dtype {p.dtype}; the fused k-Adam kernel handles {list(FUSED_DTYPES)}"
                )
            if (p.device, p.dtype) != (device, dtype):
                raise ValueError(
                    f"params[{j}] is {p.dtype} on {p.device} but params[0] is {dtype} on {device}: "
                    "one FlatKAdam holds one device and dtype"
                )
        if len({id(p) for p in params}) != len(params):
            raise ValueError("params must not hold the same tensor twice")

        self.params = tuple(params)
        self.k = k
        self.device, self.dtype = device, dtype
        bounds, n = [], 0
        for p in self.params:
            bounds.append((n, n + p.numel()))
            n += p.numel()
        self._bounds = bounds
        self.numel = n
        self.theta = torch.empty(n, dtype=dtype, device=device)
        self.grad = torch.zeros(n, dtype=dtype, device=device)
        self.m = [torch.zeros(n, dtype=dtype, device=device) for _ in range(self.k)]
        self.v = [torch.zeros(n, dtype=dtype, device=device) for _ in range(self.k)]
        self._theta_views = [self.theta[a:b].view(p.shape) for p, (a, b) in zip(self.params, bounds)]
        self._grad_views = [self.grad[a:b].view(p.shape) for p, (a, b) in zip(self.params, bounds)]
        self._m_views = [[buf[a:b].view(p.shape) for buf in self.m] for p, (a, b) in zip(self.params, bounds)]
        self._v_views = [[buf[a:b].view(p.shape) for buf in self.v] for p, (a, b) in zip(self.params, bounds)]
        with torch.no_grad():
            for j, p in enumerate(self.params):
                self._rehome(j)
                if p.grad is not None and not p.grad.is_sparse:
                    self._grad_views[j].copy_(p.grad)
                    p.grad = self._grad_views[j]

    def _rehome(self, j: int) -> None:
        p, view = self.params[j], self._theta_views[j]
        view.copy_(p.detach())
        p.data = view

    # ------------------------------------------------------------------- step
    @torch.no_grad()
    def step(
        self,
        states: Sequence[dict],
        *,
        levels: Sequence[tuple[float, float]],
        lr: float | Tensor,
        weight_decay: float | Tensor,
        coupled: bool,
        eps: float,
    ) -> tuple[Tensor, Tensor] | None:
        """One k-Adam step (Algorithm 1) for every parameter that has a gradient.

        states: one dict per parameter (``KAdam``'s per-parameter state), ``{}`` for a fresh
            one; filled with ``step`` (int) and ``m``, ``v`` (lists of k views into the flat
            buffers). Other tensors found there (a loaded state dict) are copied in first.
        levels: k ``Level(gamma, beta)`` tuples (Python numbers).
        lr, weight_decay: numbers >= 0, or 1-element tensors (best on the parameters' device:
            they are copied into the kernel's scalars there, unread).
        coupled: True adds ``lam theta`` to the gradient, False to the update (Algorithm 1).
        eps: number >= 0, added to ``sqrt(v_i)`` before the bias correction.

        Parameters without a gradient do not move, keep their step count and get no state,
        as in torch.
        Returns ``(||u_n||_inf, [||u_n^(i)||_inf for i = 1..k])`` as a 0-d and a ``[k]``
        tensor on the device (no host synchronisation), or None when no parameter has a gradient.
        """
        levels, lr, weight_decay, eps = self._check_hyperparameters(levels, lr, weight_decay, coupled, eps)
        if isinstance(states, (dict, str)) or not isinstance(states, Sequence) or len(states) != len(self.params):
            raise ValueError(f"states must be a list of {len(self.params)} dicts, one per parameter; got {states!r}")
        for j, (p, state) in enumerate(zip(self.params, states)):
            self._check(j, p, state)

        stepped = [j for j, p in enumerate(self.params) if p.grad is not None]
        if not stepped:
            return None
        fresh = [j for j in stepped if not states[j]]
        for j in stepped:
            self._adopt(j, states[j])
        foreign = [j for j in stepped if self.params[j].grad is not self._grad_views[j]]
        if foreign:
            views = [self._grad_views[j] for j in foreign]
            torch._foreach_copy_(views, [self.params[j].grad for j in foreign])
            for j, view in zip(foreign, views):
                self.params[j].grad = view

        outs = []
        try:
            for a, b, n in self._runs(stepped, states):
                outs.append(_run_kernel(
                    self.theta[a:b], self.grad[a:b], [buf[a:b] for buf in self.m], [buf[a:b] for buf in self.v],
                    self._scalars(levels, n, lr, weight_decay, coupled, eps),
                ))
        except RuntimeError:  # the kernel did not compile: nothing moved, the new states were not used
            for j in fresh:
                states[j].clear()
            raise
        for j in stepped:
            states[j]["step"] += 1
        if not outs:  # only 0-element parameters had gradients
            out = torch.zeros(self.k + 1, dtype=self.dtype, device=self.device)
        else:
            out = outs[0] if len(outs) == 1 else torch.stack(outs).amax(dim=0)
        return out[self.k], out[: self.k]

    def _scalars(self, levels, n, lr, weight_decay, coupled, eps) -> Tensor:
        """:func:`_hyper` of step n on the device: c_i changes every step, so a few bytes are copied
        each step, without synchronising (nothing at all on CPU). Tensor lr / weight decay are
        copied in on the device."""
        numbers_only = [0.0 if isinstance(h, Tensor) else h for h in (lr, weight_decay)]
        host = torch.tensor(_hyper(levels, n, *numbers_only, coupled, eps), dtype=torch.float64)
        hyper = host.to(self.device, non_blocking=True)
        for slot, h in ((0, lr), (1 if coupled else 2, weight_decay)):
            if isinstance(h, Tensor):
                hyper[slot].copy_(h.reshape(()))
        return hyper

    def _check_hyperparameters(self, levels, lr, weight_decay, coupled, eps):
        one_level = isinstance(levels, tuple) and hasattr(levels, "_fields")
        if one_level or not isinstance(levels, Sequence) or len(levels) != self.k:
            raise ValueError(f"levels must be a list of k={self.k} Level(gamma, beta) tuples; got {levels!r}")
        pairs = []
        for i, level in enumerate(levels):
            if not isinstance(level, tuple) or len(level) != 2:
                raise ValueError(f"levels[{i}] must be a Level(gamma, beta) tuple; got {level!r}")
            pairs.append((_check_gamma(level[0], f"levels[{i}].gamma"), _check_beta(level[1], f"levels[{i}].beta")))
        _check_coupled(coupled)
        return (pairs, _check_nonnegative("lr", lr, tensor_ok=True),
                _check_nonnegative("weight_decay", weight_decay, tensor_ok=True), _check_nonnegative("eps", eps))

    def _check(self, j: int, p: Tensor, state) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"states[{j}] must be a dict (the parameter's state); got {type(state).__name__}")
        if (p.device, p.dtype, p.shape) != (self.device, self.dtype, self._theta_views[j].shape):
            raise ValueError(
                f"parameter {j} is now {p.dtype} {tuple(p.shape)} on {p.device}, not the {self.dtype} "
                f"{tuple(self._theta_views[j].shape)} on {self.device} it had when its flat buffers were "
                "built; build a new optimizer after moving or reshaping the model"
            )
        if p.grad is not None and p.grad.is_sparse:
            raise ValueError(f"parameter {j} has a sparse gradient; fused k-Adam needs dense gradients")
        if state:
            validate.integer(f"states[{j}]['step']", state.get("step"), lo=0)
            for name in ("m", "v"):
                bufs = state.get(name)
                if not isinstance(bufs, Sequence) or len(bufs) != self.k or any(
                    not isinstance(t, Tensor) or t.shape != p.shape for t in bufs
                ):
                    raise ValueError(
                        f"states[{j}][{name!r}] must be a list of k={self.k} tensors shaped like the "
                        f"parameter {tuple(p.shape)}; got {bufs!r}"
                    )

    def _adopt(self, j: int, state: dict) -> None:
        """Make ``state`` hold views into the flat buffers (copying in any other tensors)."""
        p = self.params[j]
        if p.data_ptr() != self._theta_views[j].data_ptr():  # p.data was replaced since
            self._rehome(j)
        m, v = self._m_views[j], self._v_views[j]
        if not state:
            for t in m + v:
                t.zero_()
            state.update(step=0, m=list(m), v=list(v))
            return
        if any(a is not b for a, b in zip(state["m"], m)) or any(a is not b for a, b in zip(state["v"], v)):
            torch._foreach_copy_(m + v, list(state["m"]) + list(state["v"]))
            state["m"], state["v"] = list(m), list(v)

    def _runs(self, stepped: list[int], states: Sequence[dict]) -> list[tuple[int, int, int]]:
        """Maximal ranges ``(a, b, n)`` of the flat buffers whose parameters all have a gradient
        and have taken n steps: one range, the whole buffer, unless some parameter lacks a
        gradient or lags behind."""
        runs: list[list[int]] = []
        for j in stepped:
            a, b = self._bounds[j]
            if a == b:
                continue
            n = states[j]["step"]
            if runs and runs[-1][1] == a and runs[-1][2] == n:
                runs[-1][1] = b
            else:
                runs.append([a, b, n])
        return [tuple(r) for r in runs]
