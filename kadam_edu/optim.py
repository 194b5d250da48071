r"""The k-Adam optimizer (Eq. 10, App. R, Algorithm 1 in App. S).

k-Adam applies the *adaptive normalization* operator of App. R k times:

.. math::

    u_n^{(0)} = g_n, \qquad
    u_n^{(i)} = \frac{\sqrt{1-\beta_i^{n+1}}}{1-\gamma_i^{n+1}}
                \frac{m_n^{(i)}}{\sqrt{v_n^{(i)}} + \epsilon}, \qquad
    \theta_{n+1} = \theta_n - \eta\, u_n^{(k)}

where level ``i`` keeps the moving averages
``m^(i) <- gamma_i m^(i) + (1 - gamma_i) u^(i-1)`` and
``v^(i) <- beta_i v^(i) + (1 - beta_i) (u^(i-1))^2``.
``k = 1`` is Adam (coupled weight decay) or AdamW (decoupled).

Notation trap: the paper writes ``beta`` for the second-moment decay and
``gamma`` for the first-moment decay. :class:`KAdam` follows ``torch.optim``:
``betas=(gamma, beta)``. Per-level hyperparameters are always
:class:`Level` named tuples, ``Level(gamma=..., beta=...)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.utils.weak import WeakTensorKeyDictionary

__all__ = ["KAdam", "Level", "kadam_levels", "STRATEGIES", "SparseGradientError"]


class Level(NamedTuple):
    """Hyperparameters of one adaptive-normalization level (Eq. 10).

    gamma: first-moment decay in [0, 1) (torch's ``betas[0]``; 0 is RMSprop).
    beta: second-moment decay in (0, 1) (torch's ``betas[1]``).
    """

    gamma: float
    beta: float


# A state_dict of KAdam(levels=[Level(...)]) holds Level tuples: let torch.load(weights_only=True) read them.
torch.serialization.add_safe_globals([Level])


class SparseGradientError(ValueError, RuntimeError):
    """Raised for sparse gradients (a ValueError and a RuntimeError, like torch's)."""


def _inverse_exp(decay: float, k: int) -> float:
    return 1.0 - (1.0 - decay) ** (1.0 / k)


#: Section 4.2's strategies, each mapping (Adam's decay, k) to the decay used at every level.
STRATEGIES: dict[str, Callable[[float, int], float]] = {
    "inverse_exp": _inverse_exp,  # (1 - decay_i)^k = 1 - decay  (App. Q)
    "exp": lambda decay, k: decay**k,
    "scaled": lambda decay, k: decay / k,
    "naive": lambda decay, k: decay,
}


def _check_real(name: str, value, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number {allowed}; got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must be a real number {allowed}; got nan")
    return value


def _check_gamma(value, name: str = "gamma") -> float:
    """First-moment decay: [0, 1)."""
    v = _check_real(name, value, "in [0, 1) (first-moment decay, torch's betas[0])")
    if not 0.0 <= v < 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1) (first-moment decay, torch's betas[0]); got {value!r}"
        )
    return v


def _check_beta(value, name: str = "beta") -> float:
    """Second-moment decay: (0, 1)."""
    v = _check_real(name, value, "in (0, 1) (second-moment decay, torch's betas[1])")
    if not 0.0 < v < 1.0:
        raise ValueError(
            f"{name} must lie in (0, 1) (second-moment decay, torch's betas[1]); got {value!r}"
        )
    return v


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive int (the number of levels); got {k!r}")
    return int(k)


def _check_strategy(strategy) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {sorted(STRATEGIES)} (Section 4.2); got {strategy!r}"
        )
    return strategy


def kadam_levels(
    k: int, beta: float = 0.999, gamma: float = 0.9, strategy: str = "inverse_exp"
) -> list[Level]:
    """Per-level hyperparameters for k-Adam from Adam's (beta, gamma) (Section 4.2, App. Q).

    The same rule is applied to beta and gamma, and every level gets the same pair:
    ``inverse_exp``: 1 - (1 - x)^(1/k); ``exp``: x^k; ``scaled``: x/k; ``naive``: x.
    Returns a list of ``k`` :class:`Level` s.
    """
    k = _check_k(k)
    beta, gamma = _check_beta(beta), _check_gamma(gamma)
    rule = STRATEGIES[_check_strategy(strategy)]
    level = Level(gamma=rule(gamma, k), beta=rule(beta, k))
    # inverse_exp can round beta_i to 0 or 1 for extreme inputs; say so rather than divide by 0.
    _check_level(level, f"strategy {strategy!r} with k={k} gives level")
    return [level] * k


def _check_level(level, name: str) -> Level:
    if not isinstance(level, Level):
        raise ValueError(
            f"{name} must be a kadam_edu.Level(gamma=..., beta=...), not a bare "
            f"{type(level).__name__}: the order of (gamma, beta) is ambiguous; got {level!r}"
        )
    return Level(gamma=_check_gamma(level.gamma, f"{name}.gamma"), beta=_check_beta(level.beta, f"{name}.beta"))


def _check_levels(levels) -> list[Level]:
    if isinstance(levels, Level) or not isinstance(levels, Sequence) or len(levels) == 0:
        raise ValueError(
            "levels must be a non-empty list of kadam_edu.Level(gamma=..., beta=...); "
            f"got {levels!r}"
        )
    return [_check_level(lvl, f"levels[{i}]") for i, lvl in enumerate(levels)]


def bias_correction(n: int, level: Level) -> float:
    """c_n = sqrt(1 - beta^(n+1)) / (1 - gamma^(n+1)) for step n = 0, 1, ... (Eq. 1, App. D)."""
    return math.sqrt(1.0 - level.beta ** (n + 1)) / (1.0 - level.gamma ** (n + 1))


def _max_abs(t: Tensor) -> Tensor:
    """||t||_inf as a 0-d tensor. aminmax is ~15x faster than vector_norm(ord=inf) on CPU."""
    lo, hi = torch.aminmax(t)
    return torch.maximum(hi, -lo)


def _global_max(values: list[Tensor]) -> Tensor:
    """Max of 0-d tensors that may live on several devices and dtypes, as a float64 CPU tensor.

    One stack per device keeps a GPU step free of per-parameter synchronisation.
    """
    per_device: dict[torch.device, list[Tensor]] = {}
    for t in values:
        per_device.setdefault(t.device, []).append(t)
    wide = {"mps": torch.float32}  # MPS has no float64
    maxes = [
        torch.stack([t.to(wide.get(dev.type, torch.float64)) for t in ts]).max().cpu().double()
        for dev, ts in per_device.items()
    ]
    return torch.stack(maxes).max()


class KAdam(Optimizer):
    r"""k-Adam (Eq. 10; Algorithm 1 of App. S). ``k=1`` is Adam / AdamW.

    .. code-block:: text

        given lr eta, weight decay lam, coupled, levels (gamma_i, beta_i), i = 1..k, eps
        g <- grad L(theta_n);  if coupled: g <- g + lam theta_n
        g_hat <- g
        for i = 1..k:
            m_i <- gamma_i m_i + (1 - gamma_i) g_hat
            v_i <- beta_i v_i + (1 - beta_i) g_hat^2
            c   <- sqrt(1 - beta_i^(n+1)) / (1 - gamma_i^(n+1))
            g_hat <- c m_i / (sqrt(v_i) + eps)            # this is u_n^(i)
        u <- g_hat;  if not coupled: u <- u + lam theta_n
        theta_{n+1} <- theta_n - eta u

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate eta >= 0.
        betas: ``(gamma, beta)`` = (first-moment, second-moment) decay of Adam, as in
            torch. With ``k > 1`` the per-level values come from ``strategy``.
        k: number of adaptive-normalization levels (positive int).
        strategy: ``"inverse_exp"`` (default), ``"exp"``, ``"scaled"`` or ``"naive"``
            (Section 4.2; see :func:`kadam_levels`).
        levels: explicit list of ``k`` :class:`Level` s; overrides ``k``, ``strategy``
            and ``betas``. ``gamma=0`` at a level is RMSprop there.
        weight_decay: lam >= 0.
        coupled: ``True`` adds ``lam theta`` to the gradient (Adam, L2); ``False``
            subtracts ``lr lam theta`` from the parameters (AdamW, decoupled).
        eps: added to ``sqrt(v_i)`` *before* bias correction (Algorithm 1), so it acts
            like torch's eps divided by ``sqrt(1 - beta^(n+1))``. The default 1e-30
            (Algorithm 1's) differs from torch's 1e-8 on purpose: the max-update bounds
            (Eq. 5 and the exact discrete bound) are proved for eps = 0, and a 1e-8 floor
            visibly damps updates whose gradients are ~1e-8 or smaller (late training,
            small weights), hiding the dynamics the book studies. 1e-30 only guards
            against 0/0 for exactly-zero gradients. It underflows in float16 (not bfloat16),
            which is refused at step time.
        foreach: ``True``: the ``torch._foreach_*`` path; ``False``: the single-tensor
            path (Algorithm 1 line by line); ``None``: the faster one for the device
            (foreach on CUDA, single-tensor on CPU; ``benchmarks/optimizer_step.py``
            measures both).

    After each step, :attr:`last_max_update` is ``||u_n||_inf`` (the paper's max-update,
    ``||theta_{n+1} - theta_n||_inf / lr``) and :attr:`last_level_max_updates` is
    ``[||u_n^(i)||_inf for i = 1..k]`` (App. T), both taken over all parameters stepped.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        k: int = 1,
        strategy: str = "inverse_exp",
        levels: Sequence[Level] | None = None,
        weight_decay: float = 0.0,
        coupled: bool = False,
        eps: float = 1e-30,
        foreach: bool | None = None,
    ):
        defaults = dict(
            lr=lr,
            betas=betas,
            k=k,
            strategy=strategy,
            levels=levels,
            weight_decay=weight_decay,
            coupled=coupled,
            eps=eps,
            foreach=foreach,
        )
        self._max_update: Tensor | None = None
        self._level_max_updates: list[Tensor] | None = None
        # Scratch buffers hold u_n^(i) in place, so a step allocates nothing large.
        # They are not optimizer state (nothing carries over between steps).
        self._scratch: WeakTensorKeyDictionary = WeakTensorKeyDictionary()
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_group(group)

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("_scratch", WeakTensorKeyDictionary())
        self.__dict__.setdefault("_max_update", None)
        self.__dict__.setdefault("_level_max_updates", None)

    @staticmethod
    def group_levels(group: dict) -> list[Level]:
        """The k :class:`Level` s a param group uses now (explicit ``levels``, else from betas/k/strategy)."""
        if group["levels"] is not None:
            return _check_levels(group["levels"])
        gamma, beta = _check_betas(group["betas"])
        return kadam_levels(group["k"], beta=beta, gamma=gamma, strategy=group["strategy"])

    # ------------------------------------------------------------ max-update
    @property
    def last_max_update(self) -> float:
        """||u_n||_inf of the last step (the paper's max-update); nan before the first step."""
        if self._max_update is None:
            return math.nan
        return float(self._max_update)

    @property
    def last_level_max_updates(self) -> list[float]:
        """[||u_n^(i)||_inf for i = 1..k] of the last step (App. T); [] before the first step."""
        if self._level_max_updates is None:
            return []
        return torch.stack(self._level_max_updates).tolist()

    # ------------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        """One k-Adam step; ``closure`` re-evaluates the loss (with grad enabled) and returns it."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        level_max: list[list[Tensor]] | None = None
        step_max: list[Tensor] = []
        for group in self.param_groups:
            levels = self.group_levels(group)
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                self._init_state(p, group, len(levels))
            if level_max is None:
                level_max = [[] for _ in levels]
            elif len(level_max) != len(levels):
                raise ValueError(
                    "all param groups must use the same number of levels k to report "
                    f"last_level_max_updates; got {len(level_max)} and {len(levels)}"
                )
            foreach = group["foreach"]
            if foreach is None:
                foreach = _default_foreach(params)
            kernel = _foreach_kadam if foreach else _single_tensor_kadam
            maxes, lmaxes = kernel(
                params,
                [self.state[p] for p in params],
                [self._scratch_for(p) for p in params],
                levels=levels,
                lr=float(group["lr"]),
                weight_decay=float(group["weight_decay"]),
                coupled=bool(group["coupled"]),
                eps=float(group["eps"]),
            )
            step_max.extend(maxes)
            for acc, lm in zip(level_max, lmaxes):
                acc.extend(lm)
        if step_max:
            self._max_update = _global_max(step_max)
            self._level_max_updates = [_global_max(lm) for lm in level_max]
        return loss

    def _init_state(self, p: Tensor, group: dict, k: int) -> None:
        if p.grad.is_sparse:
            raise SparseGradientError(
                "KAdam does not support sparse gradients; use dense gradients "
                "(e.g. nn.Embedding(sparse=False))"
            )
        if torch.is_complex(p):
            raise ValueError("KAdam supports real floating-point parameters only; got a complex parameter")
        if p.dtype == torch.float16 and 0.0 < group["eps"] < torch.finfo(torch.float16).tiny:
            raise ValueError(
                f"eps={group['eps']!r} underflows to 0 in float16; use eps >= "
                f"{torch.finfo(torch.float16).tiny:.1e} or float32/bfloat16 parameters"
            )
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["m"] = [torch.zeros_like(p, memory_format=torch.preserve_format) for _ in range(k)]
            state["v"] = [torch.zeros_like(p, memory_format=torch.preserve_format) for _ in range(k)]
        elif len(state["m"]) != k:
            raise ValueError(
                f"this parameter's state has {len(state['m'])} levels but its group now asks "
                f"for k={k}; build a new KAdam to change k"
            )

    def _scratch_for(self, p: Tensor) -> Tensor:
        buf = self._scratch.get(p)
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype or buf.device != p.device:
            buf = torch.empty_like(p, memory_format=torch.preserve_format)
            self._scratch[p] = buf
        return buf


def _default_foreach(params: list[Tensor]) -> bool:
    """foreach on CUDA (fewer kernel launches); the single-tensor path on CPU, where it
    is faster because it finishes each tensor while it is still in cache
    (``benchmarks/optimizer_step.py`` measures both)."""
    return all(p.device.type == "cuda" for p in params)


def _check_betas(betas) -> tuple[float, float]:
    if not isinstance(betas, Sequence) or len(betas) != 2:
        raise ValueError(
            "betas must be a pair (gamma, beta) = (first-moment, second-moment) decay, "
            f"as in torch.optim.Adam; got {betas!r}"
        )
    return _check_gamma(betas[0], "betas[0]"), _check_beta(betas[1], "betas[1]")


def _check_group(group: dict) -> None:
    """Validate one param group's hyperparameters (raises ValueError naming the argument)."""
    lr = group["lr"]
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise ValueError(f"lr must be a number or a 1-element tensor; got shape {tuple(lr.shape)}")
        lr = lr.item()
    lr = _check_real("lr", lr, ">= 0")
    if lr < 0:
        raise ValueError(f"lr must be >= 0; got {lr!r}")
    eps = _check_real("eps", group["eps"], ">= 0")
    if eps < 0:
        raise ValueError(f"eps must be >= 0; got {eps!r}")
    wd = _check_real("weight_decay", group["weight_decay"], ">= 0")
    if wd < 0:
        raise ValueError(f"weight_decay must be >= 0; got {wd!r}")
    if not isinstance(group["coupled"], bool):
        raise ValueError(f"coupled must be True (Adam, L2) or False (AdamW, decoupled); got {group['coupled']!r}")
    if group["foreach"] not in (None, True, False):
        raise ValueError(f"foreach must be None, True or False; got {group['foreach']!r}")
    if group["levels"] is not None:
        group["k"] = len(_check_levels(group["levels"]))
    else:
        _check_k(group["k"])
        _check_strategy(group["strategy"])
        _check_betas(group["betas"])
    KAdam.group_levels(group)


# ---------------------------------------------------------------------------
# The two code paths. Same arithmetic; tests check they agree.
# ---------------------------------------------------------------------------


def _single_tensor_kadam(
    params: list[Tensor],
    states: list[dict],
    scratch: list[Tensor],
    *,
    levels: list[Level],
    lr: float,
    weight_decay: float,
    coupled: bool,
    eps: float,
) -> tuple[list[Tensor], list[list[Tensor]]]:
    """Algorithm 1 (App. S), one parameter at a time, line by line.

    Returns the per-parameter ||u_n||_inf and, per level, the ||u_n^(i)||_inf.
    """
    maxes: list[Tensor] = []
    level_maxes: list[list[Tensor]] = [[] for _ in levels]
    for theta, state, u in zip(params, states, scratch):
        n = state["step"]
        g = theta.grad
        if coupled and weight_decay != 0:
            g = g.add(theta, alpha=weight_decay)  # g <- g + lam theta_n
        g_hat = g
        for i, level in enumerate(levels):
            m, v = state["m"][i], state["v"][i]
            m.lerp_(g_hat, 1 - level.gamma)  # m_i <- gamma_i m_i + (1 - gamma_i) g_hat
            v.mul_(level.beta).addcmul_(g_hat, g_hat, value=1 - level.beta)  # v_i <- beta_i v_i + (1 - beta_i) g_hat^2
            c = bias_correction(n, level)  # c <- sqrt(1 - beta_i^(n+1)) / (1 - gamma_i^(n+1))
            torch.sqrt(v, out=u).add_(eps)  # g_hat <- c m_i / (sqrt(v_i) + eps)
            torch.div(m, u, out=u).mul_(c)
            g_hat = u
            level_maxes[i].append(_max_abs(g_hat))
        if not coupled and weight_decay != 0:
            u.add_(theta, alpha=weight_decay)  # u <- g_hat + lam theta_n
        theta.add_(u, alpha=-lr)  # theta_{n+1} <- theta_n - eta u
        maxes.append(_max_abs(u) if (not coupled and weight_decay != 0) else level_maxes[-1][-1])
        state["step"] = n + 1
    return maxes, level_maxes


def _foreach_kadam(
    params: list[Tensor],
    states: list[dict],
    scratch: list[Tensor],
    *,
    levels: list[Level],
    lr: float,
    weight_decay: float,
    coupled: bool,
    eps: float,
) -> tuple[list[Tensor], list[list[Tensor]]]:
    """Algorithm 1 over lists of tensors with ``torch._foreach_*`` ops.

    Parameters are bucketed by (device, dtype, step) so each bucket shares one bias
    correction. ``U`` (the scratch list) holds u_n^(i) in place.
    """
    maxes: list[Tensor] = []
    level_maxes: list[list[Tensor]] = [[] for _ in levels]
    buckets: dict[tuple, list[int]] = {}
    for j, (p, s) in enumerate(zip(params, states)):
        buckets.setdefault((p.device, p.dtype, s["step"]), []).append(j)
    for (_, _, n), idx in buckets.items():
        theta = [params[j] for j in idx]
        U = [scratch[j] for j in idx]
        X = [params[j].grad for j in idx]
        if coupled and weight_decay != 0:
            torch._foreach_copy_(U, X)
            torch._foreach_add_(U, theta, alpha=weight_decay)  # g <- g + lam theta_n
            X = U
        for i, level in enumerate(levels):
            M = [states[j]["m"][i] for j in idx]
            V = [states[j]["v"][i] for j in idx]
            torch._foreach_lerp_(M, X, 1 - level.gamma)
            torch._foreach_mul_(V, level.beta)
            torch._foreach_addcmul_(V, X, X, value=1 - level.beta)
            c = bias_correction(n, level)
            torch._foreach_copy_(U, V)  # no out= for foreach sqrt; copying beats allocating
            torch._foreach_sqrt_(U)
            torch._foreach_add_(U, eps)
            torch._foreach_reciprocal_(U)
            torch._foreach_mul_(U, M)
            torch._foreach_mul_(U, c)
            X = U
            level_maxes[i].extend(_max_abs(t) for t in U)
        if not coupled and weight_decay != 0:
            torch._foreach_add_(U, theta, alpha=weight_decay)
            maxes.extend(_max_abs(t) for t in U)
        else:
            maxes.extend(level_maxes[-1][-len(idx):])
        torch._foreach_add_(theta, U, alpha=-lr)
        for j in idx:
            states[j]["step"] = n + 1
    return maxes, level_maxes
