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
:func:`adaptive_normalization` is one level; :class:`KAdam` chains it k times.

Notation trap: the paper writes ``beta`` for the second-moment decay and
``gamma`` for the first-moment decay. :class:`KAdam` follows ``torch.optim``:
``betas=(gamma, beta)``. Per-level hyperparameters are always
:class:`Level` named tuples, ``Level(gamma=..., beta=...)``.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.utils.weak import WeakTensorKeyDictionary

from kadam_edu.fused import FUSED_DTYPES, FlatKAdam

__all__ = ["KAdam", "Level", "kadam_levels", "adaptive_normalization", "STRATEGIES", "SparseGradientError"]


class Level(NamedTuple):
    """Hyperparameters of one adaptive-normalization level (Eq. 10).

    gamma: first-moment decay in [0, 1) (torch's ``betas[0]``; 0 is RMSprop).
    beta: second-moment decay in (0, 1) (torch's ``betas[1]``).
    In a population group (``KAdam(..., members=E)``) either may be a tensor [E], one per member.
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
#: They are plain arithmetic, so they map a tensor of per-member decays element by element too.
STRATEGIES: dict[str, Callable[[float, int], float]] = {
    "inverse_exp": _inverse_exp,  # (1 - decay_i)^k = 1 - decay  (App. Q)
    "exp": lambda decay, k: decay**k,
    "scaled": lambda decay, k: decay / k,
    "naive": lambda decay, k: decay,
}

#: The keys every KAdam param group has (a state dict without them is another optimizer's).
_GROUP_KEYS = ("lr", "betas", "k", "strategy", "levels", "weight_decay", "coupled", "eps", "foreach")
_GAMMA_RANGE = "in [0, 1) (first-moment decay, torch's betas[0])"
_BETA_RANGE = "in (0, 1) (second-moment decay, torch's betas[1])"


# ---------------------------------------------------------------------------
# Argument checks: each raises ValueError naming the argument, before any work.
# ---------------------------------------------------------------------------


def _check_real(name: str, value, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number {allowed}; got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must be a real number {allowed}; got nan")
    return value


def _check_nonnegative(name: str, value) -> float:
    """A finite number >= 0 (lr, weight_decay, eps)."""
    v = _check_real(name, value, ">= 0")
    if v < 0:
        raise ValueError(f"{name} must be >= 0; got {value!r}")
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return v


def _check_gamma(value, name: str = "gamma") -> float:
    """First-moment decay: [0, 1)."""
    v = _check_real(name, value, _GAMMA_RANGE)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must lie {_GAMMA_RANGE}; got {value!r}")
    return v


def _check_beta(value, name: str = "beta") -> float:
    """Second-moment decay: (0, 1)."""
    v = _check_real(name, value, _BETA_RANGE)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must lie {_BETA_RANGE}; got {value!r}")
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


def _check_members(members) -> int | None:
    if members is None:
        return None
    if isinstance(members, bool) or not isinstance(members, numbers.Integral) or members < 1:
        raise ValueError(
            "members must be a positive int (the population size E: every parameter of the group "
            f"has shape [E, ...]) or None; got {members!r}"
        )
    return int(members)


def _describe(value) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    return repr(value)


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


def _check_levels_list(levels) -> None:
    if isinstance(levels, Level) or not isinstance(levels, Sequence) or len(levels) == 0:
        raise ValueError(
            "levels must be a non-empty list of kadam_edu.Level(gamma=..., beta=...); "
            f"got {levels!r}"
        )


def _check_levels(levels) -> list[Level]:
    _check_levels_list(levels)
    return [_check_level(lvl, f"levels[{i}]") for i, lvl in enumerate(levels)]


def _check_betas_pair(betas) -> None:
    if not isinstance(betas, Sequence) or len(betas) != 2:
        raise ValueError(
            "betas must be a pair (gamma, beta) = (first-moment, second-moment) decay, "
            f"as in torch.optim.Adam; got {betas!r}"
        )


def _check_betas(betas) -> tuple[float, float]:
    _check_betas_pair(betas)
    return _check_gamma(betas[0], "betas[0]"), _check_beta(betas[1], "betas[1]")


def _check_per_member(name: str, value: Tensor, members: int, *, check_values: bool,
                      ok: Callable[[Tensor], Tensor], allowed: str) -> Tensor:
    """A per-member hyperparameter: a floating tensor [E]. Its values are checked when the group is
    added or loaded (one host copy then), never in ``step()``."""
    if not value.is_floating_point() or value.shape != (members,):
        raise ValueError(
            f"{name} must be a float or a tensor of shape [{members}] (one value per member, "
            f"members={members}); got {_describe(value)}"
        )
    if check_values and value.device.type != "meta":
        bad = ~ok(value.detach())
        if bool(bad.any()):
            raise ValueError(
                f"{name} must {allowed} for every member; got {value[bad].tolist()} at members "
                f"{bad.nonzero().flatten().tolist()}"
            )
    return value


def _is_nonnegative_finite(t: Tensor) -> Tensor:
    return torch.isfinite(t) & (t >= 0)


def _member_decay(value, name: str, kind: str, members: int, check_values: bool):
    if isinstance(value, Tensor):
        if kind == "gamma":
            return _check_per_member(name, value, members, check_values=check_values,
                                     ok=lambda t: (t >= 0) & (t < 1), allowed=f"lie {_GAMMA_RANGE}")
        return _check_per_member(name, value, members, check_values=check_values,
                                 ok=lambda t: (t > 0) & (t < 1), allowed=f"lie {_BETA_RANGE}")
    return _check_gamma(value, name) if kind == "gamma" else _check_beta(value, name)


def _no_tensor(name: str, value) -> None:
    if isinstance(value, Tensor):
        raise ValueError(
            f"{name} is {_describe(value)}: per-member hyperparameters need a population group "
            "(members=E, every parameter of shape [E, ...]); otherwise pass a float"
        )


def _group_levels(group: dict, *, check_values: bool) -> list[Level]:
    """The k Levels of a param group (explicit ``levels``, else betas/k/strategy), checked."""
    members = _check_members(group.get("members"))
    if members is None:
        if group["levels"] is not None:
            _check_levels_list(group["levels"])
            for i, lvl in enumerate(group["levels"]):
                if isinstance(lvl, Level):
                    _no_tensor(f"levels[{i}].gamma", lvl.gamma)
                    _no_tensor(f"levels[{i}].beta", lvl.beta)
            return _check_levels(group["levels"])
        _check_betas_pair(group["betas"])
        _no_tensor("betas[0]", group["betas"][0])
        _no_tensor("betas[1]", group["betas"][1])
        gamma, beta = _check_betas(group["betas"])
        return kadam_levels(group["k"], beta=beta, gamma=gamma, strategy=group["strategy"])

    def decay(value, name, kind):
        return _member_decay(value, name, kind, members, check_values)

    if group["levels"] is not None:
        _check_levels_list(group["levels"])
        out = []
        for i, lvl in enumerate(group["levels"]):
            if not isinstance(lvl, Level):
                _check_level(lvl, f"levels[{i}]")  # raises: a bare pair is ambiguous
            out.append(Level(gamma=decay(lvl.gamma, f"levels[{i}].gamma", "gamma"),
                             beta=decay(lvl.beta, f"levels[{i}].beta", "beta")))
        return out
    _check_betas_pair(group["betas"])
    gamma, beta = decay(group["betas"][0], "betas[0]", "gamma"), decay(group["betas"][1], "betas[1]", "beta")
    k, strategy = _check_k(group["k"]), _check_strategy(group["strategy"])
    rule = STRATEGIES[strategy]
    level = Level(gamma=rule(gamma, k), beta=rule(beta, k))
    if check_values:  # inverse_exp can round a decay to 0 or 1
        name = f"strategy {strategy!r} with k={k} gives level"
        level = Level(gamma=decay(level.gamma, f"{name}.gamma", "gamma"),
                      beta=decay(level.beta, f"{name}.beta", "beta"))
    return [level] * k


def _check_rate(name: str, value, members: int | None, check_values: bool):
    """lr or weight_decay: a finite float >= 0; a per-member tensor [E] in a population group;
    lr may also be a 1-element tensor (as torch.optim.Adam allows)."""
    if not isinstance(value, Tensor):
        return _check_nonnegative(name, value)
    if members is not None:
        return _check_per_member(name, value, members, check_values=check_values,
                                 ok=_is_nonnegative_finite, allowed="be a finite number >= 0")
    if name != "lr":
        _no_tensor(name, value)  # raises: a tensor weight decay is per member
    if value.numel() != 1 or not value.is_floating_point():
        raise ValueError(
            f"lr must be a number or a 1-element tensor (floating; a tensor of shape [E] needs "
            f"members=E); got {_describe(value)}"
        )
    if check_values and value.device.type != "meta":
        _check_nonnegative("lr", value.item())  # once, when the group is added or loaded
    return value


def _check_group(group: dict, *, check_values: bool) -> list[Level]:
    """Validate one param group as it is now; return its levels. ``check_values``: also read the
    values of per-member tensors (a host copy: when a group is added or loaded, never in step())."""
    members = _check_members(group.get("members"))
    _check_rate("lr", group["lr"], members, check_values)
    _check_rate("weight_decay", group["weight_decay"], members, check_values)
    _check_nonnegative("eps", group["eps"])
    if not isinstance(group["coupled"], bool):
        raise ValueError(f"coupled must be True (Adam, L2) or False (AdamW, decoupled); got {group['coupled']!r}")
    if group["foreach"] not in (None, True, False):
        raise ValueError(f"foreach must be None, True or False; got {group['foreach']!r}")
    fused = group.get("fused")
    if fused not in (None, True, False):
        raise ValueError(f"fused must be None, True or False; got {fused!r}")
    if fused and group["foreach"]:
        raise ValueError("fused and foreach cannot both be True: pick one implementation")
    if fused:
        _check_fusable(group, members)
    if members is not None:
        for i, p in enumerate(group["params"]):
            if p.ndim == 0 or p.shape[0] != members:
                raise ValueError(
                    f"members={members} but parameter {i} has shape {tuple(p.shape)}: every parameter of a "
                    f"population group needs the leading dimension {members} (one slice per member)"
                )
    return _group_levels(group, check_values=check_values)


def _check_fusable(group: dict, members: int | None) -> None:
    """Refuse what the fused kernel (:mod:`kadam_edu.fused`) cannot do, as torch.optim.Adam(fused=True)
    does for its kernel: populations, tensor decays, dtypes other than float32/float64, a parameter
    twice, sparse gradients (one already there; a later one is refused at the step)."""
    if members is not None:
        raise ValueError(
            f"fused=True does not support population groups (members={members}): their per-member "
            "hyperparameters need the single-tensor or foreach path; use fused=False"
        )
    if group["levels"] is not None:
        levels = group["levels"] if isinstance(group["levels"], Sequence) else []
        decays = [(f"levels[{i}].{name}", getattr(lvl, name)) for i, lvl in enumerate(levels)
                  if isinstance(lvl, Level) for name in ("gamma", "beta")]
    else:
        betas = group["betas"] if isinstance(group["betas"], Sequence) else []
        decays = [(f"betas[{i}]", b) for i, b in enumerate(betas)]
    for name, value in decays:
        if isinstance(value, Tensor):
            raise ValueError(f"fused=True needs float decays: {name} is {_describe(value)}; pass a float")
    params = group["params"]
    for i, p in enumerate(params):
        if p.dtype not in FUSED_DTYPES:
            allowed = ", ".join(str(d).removeprefix("torch.") for d in FUSED_DTYPES)
            raise ValueError(
                f"fused=True handles {allowed} parameters; parameter {i} of the group is {p.dtype}: "
                "use fused=False for it (e.g. in a param group of its own)"
            )
        if p.grad is not None and p.grad.is_sparse:
            raise SparseGradientError(
                f"fused=True needs dense gradients; parameter {i} of the group has a sparse one "
                "(e.g. nn.Embedding(sparse=True)): use sparse=False"
            )
    if len({id(p) for p in params}) != len(params):
        raise ValueError("fused=True: a param group must not hold the same parameter twice")


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
# The optimizer.
# ---------------------------------------------------------------------------


class KAdam(Optimizer):
    r"""k-Adam (Eq. 10; Algorithm 1 of App. S). ``k=1`` is Adam / AdamW.

    .. code-block:: text

        given lr eta, weight decay lam, coupled, levels (gamma_i, beta_i), i = 1..k, eps
        g <- grad L(theta_n);  if coupled: g <- g + lam theta_n
        g_hat <- g
        for i = 1..k:                                      # adaptive_normalization (App. R)
            m_i <- gamma_i m_i + (1 - gamma_i) g_hat
            v_i <- beta_i v_i + (1 - beta_i) g_hat^2
            c   <- sqrt(1 - beta_i^(n+1)) / (1 - gamma_i^(n+1))
            g_hat <- c m_i / (sqrt(v_i) + eps)            # this is u_n^(i)
        u <- g_hat;  if not coupled: u <- u + lam theta_n
        theta_{n+1} <- theta_n - eta u

    The loop is :func:`adaptive_normalization` chained k times (App. R's operator composed k
    times): optax's ``chain(scale_by_adam(gamma_1, beta_1), ..., scale_by_adam(gamma_k, beta_k),
    add_decayed_weights(lam), scale(-lr))`` up to where eps enters (here on sqrt(v) before bias
    correction, so optax's eps is this eps / sqrt(1 - beta^(n+1)); identical for eps = 0). The
    single-tensor path calls that function's arithmetic for each parameter; the foreach path does
    the same over lists of tensors (tests check both against the chain).

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate eta: a finite number >= 0 (or a 1-element tensor); it must be
            representable in the parameters' dtype (lr=1e300 steps float64, not float32, parameters).
        betas: ``(gamma, beta)`` = (first-moment, second-moment) decay of Adam, as in
            torch. With ``k > 1`` the per-level values come from ``strategy``.
        k: number of adaptive-normalization levels (positive int). Every param group of one
            KAdam has the same k (a group with another k is refused when added).
        strategy: ``"inverse_exp"`` (default), ``"exp"``, ``"scaled"`` or ``"naive"``
            (Section 4.2; see :func:`kadam_levels`).
        levels: explicit list of ``k`` :class:`Level` s; overrides ``k``, ``strategy``
            and ``betas``. ``gamma=0`` at a level is RMSprop there.
        weight_decay: lam, a finite number >= 0.
        coupled: ``True`` adds ``lam theta`` to the gradient (Adam, L2); ``False``
            subtracts ``lr lam theta`` from the parameters (AdamW, decoupled).
        eps: a finite number >= 0, added to ``sqrt(v_i)`` *before* bias correction
            (Algorithm 1), so it acts like torch's eps divided by ``sqrt(1 - beta^(n+1))``. The
            default 1e-30 (Algorithm 1's) differs from torch's 1e-8 on purpose: the max-update
            bounds (Eq. 5 and the exact discrete bound) are proved for eps = 0, and a 1e-8 floor
            visibly damps updates whose gradients are ~1e-8 or smaller (late training, small
            weights), hiding the dynamics the book studies. 1e-30 only guards against 0/0 for
            exactly-zero gradients. It underflows in float16 (not bfloat16), which is refused at
            step time.
        foreach: ``True``: the ``torch._foreach_*`` path; ``False``: the single-tensor
            path (Algorithm 1 line by line); ``None``: the faster one for the device
            (foreach on CUDA, single-tensor on CPU; ``benchmarks/optimizer_step.py``
            measures both).
        fused: ``True``: the whole step as one compiled kernel per param group, device and dtype
            (:class:`~kadam_edu.fused.FlatKAdam`: the group's parameters, gradients and moments live
            in flat buffers, the parameters as views into them). float32/float64 parameters, dense
            gradients, float decays, no ``members``; not with ``foreach=True``. The first step
            compiles the kernel (seconds; needs a C++ compiler on CPU, Triton on CUDA). New
            gradient tensors (``zero_grad()``) are copied into the flat buffer each step;
            ``zero_grad(set_to_none=False)`` lets backward write into it directly. After
            ``model.to(...)`` build a new optimizer (a state dict carries the state over).
            ``None`` (default) or ``False``: not fused, as in torch.
        members: ``E`` makes a *population* group: E models of one architecture trained as one
            batched model, every parameter of shape [E, ...]. Then ``lr`` and ``weight_decay``
            may be tensors [E], and the decays too (``betas=(gamma[E], beta[E])`` or
            ``levels=[Level(gamma=Tensor[E], beta=Tensor[E]), ...]``; one k for all members),
            each applied along dim 0. All groups of one KAdam have the same ``members``.

    Every group and parameter is checked before any parameter moves: a step that raises leaves
    parameters and state as they were. ``step()`` copies nothing to the host.

    After each step, :attr:`last_max_update_tensor` is ``||u_n||_inf`` (the paper's max-update,
    ``||theta_{n+1} - theta_n||_inf / lr``) and :attr:`last_level_max_updates_tensor` is
    ``[||u_n^(i)||_inf for i = 1..k]`` (App. T), both taken over all parameters stepped and kept
    on the parameters' device; :attr:`last_max_update` and :attr:`last_level_max_updates` read
    them on the host. In a population they are per member: [E] and [E, k].

    Population members can be frozen (:meth:`freeze_members`): a frozen member's parameters do
    not move (``masked_fill``, not a product, so nan/inf in its update cannot leak). A member whose
    update u_n is non-finite anywhere is frozen in that step, on the device, before the update is
    applied: its parameters keep their last finite values. A frozen member's moments keep
    absorbing its gradients (they are no longer used); freezing is permanent.
    """

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        k: int = 1,
        strategy: str = "inverse_exp",
        levels: Sequence[Level] | None = None,
        weight_decay: float | Tensor = 0.0,
        coupled: bool = False,
        eps: float = 1e-30,
        foreach: bool | None = None,
        fused: bool | None = None,
        *,
        members: int | None = None,
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
            fused=fused,
            members=members,
        )
        self._max_update: Tensor | None = None
        self._level_max_updates: Tensor | None = None
        self._active: Tensor | None = None  # population: members not frozen, bool [E] on the device
        # Scratch buffers hold u_n^(i) in place, so a step allocates nothing large.
        # They are not optimizer state (nothing carries over between steps).
        self._scratch: WeakTensorKeyDictionary = WeakTensorKeyDictionary()
        # fused groups: group index -> (its params, k, their (device, dtype, shape), its FlatKAdams)
        self._flats: dict[int, tuple[tuple[Tensor, ...], int, list[tuple], list[FlatKAdam]]] = {}
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict) -> None:
        """torch's ``add_param_group``, checked first: a refused group is not added."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif not isinstance(params, set):  # a set is refused by torch below
            params = list(params)
        param_group["params"] = params
        tensors = [p[1] if isinstance(p, tuple) else p for p in params]
        if not all(isinstance(p, Tensor) for p in tensors):
            kinds = ", ".join(sorted({type(p).__name__ for p in tensors}))
            raise TypeError(f"optimizer can only optimize Tensors; got {kinds}")
        candidate = {**self.defaults, **param_group, "params": tensors}
        k = len(_check_group(candidate, check_values=True))
        members = _check_members(candidate["members"])
        for i, group in enumerate(self.param_groups):
            if group["k"] != k:
                raise ValueError(
                    "all param groups of a KAdam must have the same number of levels (last_level_max_updates "
                    f"has one entry per level): this group has k={k}, param group {i} has k={group['k']}; "
                    "use a second KAdam for the other k"
                )
            if group["members"] != members:
                raise ValueError(
                    "all param groups of a KAdam must have the same members (a population steps its E "
                    f"members together): this group has members={members}, param group {i} has "
                    f"members={group['members']}; use a second KAdam"
                )
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["k"] = k
        _place_group_tensors(group)
        if members is not None and self._active is None:
            device = tensors[0].device if tensors else torch.device("cpu")
            self._active = torch.ones(members, dtype=torch.bool, device=device)

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("_scratch", WeakTensorKeyDictionary())
        self.__dict__.setdefault("_max_update", None)
        self.__dict__.setdefault("_level_max_updates", None)
        self.__dict__.setdefault("_active", None)
        self.__dict__.setdefault("_flats", {})
        for group in self.param_groups:  # state dicts from before these options
            group.setdefault("members", None)
            group.setdefault("fused", None)

    @staticmethod
    def group_levels(group: dict) -> list[Level]:
        """The k :class:`Level` s a param group uses now (explicit ``levels``, else from
        betas/k/strategy). In a population group a level's gamma/beta may be a tensor [E]."""
        return _group_levels(group, check_values=False)

    @property
    def members(self) -> int | None:
        """The population size E of a population optimizer (param groups with ``members=E``), else None."""
        return self.param_groups[0]["members"] if self.param_groups else None

    # ------------------------------------------------------------ max-update
    @property
    def last_max_update_tensor(self) -> Tensor | None:
        """||u_n||_inf of the last step on the parameters' device, float64 (MPS: float32): 0-d, or
        [E] per member in a population (nan for members frozen before that step). None before the
        first step. Reading it copies nothing to the host."""
        return self._max_update

    @property
    def last_level_max_updates_tensor(self) -> Tensor | None:
        """[||u_n^(i)||_inf for i = 1..k] of the last step on the device: [k], or [E, k] in a
        population (App. T). None before the first step."""
        return self._level_max_updates

    def _k(self) -> int:
        return self.param_groups[0]["k"] if self.param_groups else 0

    @property
    def last_max_update(self) -> float | np.ndarray:
        """||u_n||_inf of the last step (the paper's max-update) as a float; nan before the first
        step (or on the meta device). In a population: a numpy array [E]. Copies to the host."""
        t, members = self._max_update, self.members
        if t is None or t.device.type == "meta":
            return math.nan if members is None else np.full(members, math.nan)
        return float(t) if members is None else t.cpu().numpy()

    @property
    def last_level_max_updates(self) -> list[float] | np.ndarray:
        """[||u_n^(i)||_inf for i = 1..k] of the last step (App. T); [] before the first step. In a
        population: a numpy array [E, k] (nan before the first step). Copies to the host."""
        t, members = self._level_max_updates, self.members
        if members is not None:
            if t is None or t.device.type == "meta":
                return np.full((members, self._k()), math.nan)
            return t.cpu().numpy()
        if t is None:
            return []
        return [math.nan] * self._k() if t.device.type == "meta" else t.tolist()

    # ------------------------------------------------------------ populations
    @property
    def active_members(self) -> Tensor | None:
        """Population: bool [E] on the device, False for frozen members (read-only: use
        :meth:`freeze_members`). None without members."""
        return self._active

    def freeze_members(self, mask) -> None:
        """Freeze the members where ``mask`` (bool [E]) is True: from the next step on their
        parameters do not move. Runs on the device (no host copy); freezing is permanent."""
        members = self.members
        if members is None:
            raise ValueError("freeze_members needs a population optimizer (param groups with members=E)")
        if not isinstance(mask, Tensor):
            mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool or mask.shape != (members,):
            raise ValueError(
                f"mask must be a bool tensor of shape [{members}] (True = freeze that member); got {_describe(mask)}"
            )
        self._active.logical_and_(~mask.to(self._active.device))

    # ------------------------------------------------------------ state dict
    def state_dict(self) -> dict:
        """torch's state dict, plus ``members_active`` (bool [E]) for a population."""
        sd = super().state_dict()
        if self._active is not None:
            sd["members_active"] = self._active.clone()
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's ``load_state_dict``, after checking that ``state_dict`` is a KAdam state dict
        that fits these parameters: anything else is refused with a ValueError and nothing changes.

        The hyperparameters come from ``state_dict``; ``foreach`` and ``fused`` (how the step is
        computed, not what) stay this optimizer's, so a fused run's checkpoint resumes unfused on a
        machine without a compiler and vice versa (the paths agree to rounding)."""
        self._check_state_dict(state_dict)
        active = state_dict.get("members_active")
        paths = [(group["foreach"], group.get("fused")) for group in self.param_groups]
        super().load_state_dict({key: value for key, value in state_dict.items() if key != "members_active"})
        for group, (foreach, fused) in zip(self.param_groups, paths):
            group.setdefault("members", None)
            group["foreach"], group["fused"] = foreach, fused
            group["k"] = len(_group_levels(group, check_values=False))
            _place_group_tensors(group)
        if self._active is not None:
            self._active = (torch.ones_like(self._active) if active is None
                            else active.to(self._active.device).clone())

    def _check_state_dict(self, sd) -> None:
        if not isinstance(sd, dict) or "state" not in sd or "param_groups" not in sd:
            raise ValueError("not a KAdam state dict: expected a dict with 'state' and 'param_groups' "
                             f"(from KAdam.state_dict()); got {type(sd).__name__}")
        saved_groups, state = sd["param_groups"], sd["state"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, this KAdam has "
                             f"{len(self.param_groups)}")
        ks = set()
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            missing = [key for key in _GROUP_KEYS if key not in saved]
            if missing:
                raise ValueError(
                    f"not a KAdam state dict: param_groups[{i}] lacks KAdam's keys {missing} (it has "
                    f"{sorted(saved)}); a state dict of another optimizer (e.g. torch.optim.Adam) cannot "
                    "be loaded into KAdam"
                )
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"loaded state dict's param group {i} has {len(saved['params'])} parameters, "
                                 f"this KAdam's has {len(group['params'])}")
            if saved.get("members") != group["members"]:
                raise ValueError(f"loaded state dict's param group {i} has members={saved.get('members')}, "
                                 f"this KAdam's has members={group['members']}")
            try:
                k = len(_check_group({**saved, "members": group["members"], "params": group["params"],
                                      "foreach": group["foreach"], "fused": group.get("fused")}, check_values=True))
            except ValueError as err:
                raise ValueError(f"loaded state dict's param group {i}: {err}") from None
            ks.add(k)
            for pid, p in zip(saved["params"], group["params"]):
                _check_param_state(state.get(pid), pid, p, k)
        if len(ks) > 1:
            raise ValueError(f"loaded state dict's param groups have different numbers of levels {sorted(ks)}")
        active = sd.get("members_active")
        members = self.members
        if active is not None:
            if members is None:
                raise ValueError("loaded state dict has members_active but this KAdam has no members")
            if not isinstance(active, Tensor) or active.dtype != torch.bool or active.shape != (members,):
                raise ValueError(f"loaded state dict's members_active must be a bool tensor of shape [{members}]; "
                                 f"got {_describe(active)}")

    # ------------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        """One k-Adam step; ``closure`` re-evaluates the loss (with grad enabled) and returns it.

        Every group and parameter is checked first, so a step that raises moves nothing. No host
        synchronisation: the max-updates stay on the device (see :attr:`last_max_update_tensor`)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        checked = self._plan()
        if not checked:
            return loss
        plan = []  # (group, its parameters with a gradient, its levels, its FlatKAdams if fused)
        for i, group, params, levels in checked:
            flats = None
            if group.get("fused"):  # a FlatKAdam makes the state, as views into its buffers
                flats = self._fused_flats(i, group, len(levels), build=True)
            else:
                for p in params:
                    self._init_state(p, len(levels))
            plan.append((group, params, levels, flats))
        if self.members is None:
            self._step_models(plan)
        else:
            self._step_population(plan)
        return loss

    def _plan(self) -> list[tuple[int, dict, list[Tensor], list[Level]]]:
        """Check every group and parameter that will step; change nothing. Each entry: the group's
        index, the group, its parameters with a gradient and its levels."""
        plan, k = [], None
        for i, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            levels = _check_group(group, check_values=False)
            if k is None:
                k = (i, len(levels))
            elif len(levels) != k[1]:
                raise ValueError(
                    f"all param groups must use the same number of levels: param group {k[0]} has "
                    f"k={k[1]} but param group {i} has k={len(levels)}; build a second KAdam for the other k"
                )
            for dtype in {p.dtype for p in params}:
                _check_fits_dtype(group, dtype)
            for p in params:
                _check_param(p, self.state.get(p), len(levels), group["members"])
            if group.get("fused"):
                self._fused_flats(i, group, len(levels), build=False)
            plan.append((i, group, params, levels))
        return plan

    def _fused_flats(self, i: int, group: dict, k: int, *, build: bool) -> list[FlatKAdam] | None:
        """Fused param group i's :class:`~kadam_edu.fused.FlatKAdam` s, one per device and dtype of its
        parameters (in the order they first appear), kept while the group holds the same parameters
        and k, else built anew (their states are copied over at the next step).

        A parameter whose device, dtype or shape changed since they were built (``model.to(...)``)
        is refused with a ValueError: its state lives in the old buffers. ``build=False`` only
        checks, and returns None where the buffers are still to be built."""
        params = tuple(group["params"])
        cached = self._flats.get(i)
        if cached is not None and cached[1] == k and len(cached[0]) == len(params) and all(
            a is b for a, b in zip(cached[0], params)
        ):
            for j, (p, (device, dtype, shape)) in enumerate(zip(params, cached[2])):
                if (p.device, p.dtype, p.shape) != (device, dtype, shape):
                    raise ValueError(
                        f"parameter {j} of param group {i} is now {p.dtype} of shape {tuple(p.shape)} on "
                        f"{p.device}, but KAdam(fused=True) keeps its state in flat buffers built for {dtype} "
                        f"of shape {tuple(shape)} on {device}: build a new optimizer after model.to(...) (or any "
                        "change of a parameter's device, dtype or shape); new.load_state_dict(old.state_dict()) "
                        "carries the state over"
                    )
            return cached[3]
        if not build:
            return None
        by_kind: dict[tuple, list[Tensor]] = {}
        for p in params:
            by_kind.setdefault((p.device, p.dtype), []).append(p)
        flats = [FlatKAdam(same, k) for same in by_kind.values()]
        self._flats[i] = (params, k, [(p.device, p.dtype, p.shape) for p in params], flats)
        return flats

    def _init_state(self, p: Tensor, k: int) -> None:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["m"] = [torch.zeros_like(p, memory_format=torch.preserve_format) for _ in range(k)]
            state["v"] = [torch.zeros_like(p, memory_format=torch.preserve_format) for _ in range(k)]

    def _scratch_for(self, p: Tensor) -> Tensor:
        buf = self._scratch.get(p)
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype or buf.device != p.device:
            buf = torch.empty_like(p, memory_format=torch.preserve_format)
            self._scratch[p] = buf
        return buf

    def _run(self, group: dict, params: list[Tensor], levels: list[Level], *, apply: bool):
        foreach = group["foreach"]
        if foreach is None:
            foreach = _default_foreach(params)
        kernel = _foreach_kadam if foreach else _single_tensor_kadam
        scratch = [self._scratch_for(p) for p in params]
        lr, wd = (h if isinstance(h, Tensor) else float(h) for h in (group["lr"], group["weight_decay"]))
        maxes, level_maxes = kernel(
            params, [self.state[p] for p in params], scratch, levels=levels, lr=lr, weight_decay=wd,
            coupled=group["coupled"], eps=float(group["eps"]), members=group["members"], apply=apply,
        )
        return scratch, lr, maxes, level_maxes

    def _run_fused(self, group: dict, flats: list[FlatKAdam], levels: list[Level]):
        """A fused group's step: one kernel per FlatKAdam. Returns per-kernel max-updates, as :meth:`_run`."""
        maxes: list[Tensor] = []
        level_maxes: list[list[Tensor]] = [[] for _ in levels]
        for flat in flats:
            states = [self.state[p] if p.grad is not None else self.state.get(p, {}) for p in flat.params]
            out = flat.step(states, levels=levels, lr=group["lr"], weight_decay=group["weight_decay"],
                            coupled=group["coupled"], eps=float(group["eps"]))
            if out is not None:  # None: no parameter of this device and dtype has a gradient
                maxes.append(out[0])
                for acc, t in zip(level_maxes, out[1].unbind()):
                    acc.append(t)
        return maxes, level_maxes

    def _step_models(self, plan) -> None:
        maxes: list[Tensor] = []
        level_maxes: list[list[Tensor]] = [[] for _ in plan[0][2]]
        for group, params, levels, flats in plan:
            if group.get("fused"):
                mx, lmx = self._run_fused(group, flats, levels)
            else:
                _, _, mx, lmx = self._run(group, params, levels, apply=True)
            maxes.extend(mx)
            for acc, lm in zip(level_maxes, lmx):
                acc.extend(lm)
        device = plan[0][1][0].device
        self._max_update = _reduce_max(maxes, device)
        self._level_max_updates = torch.stack([_reduce_max(lm, device) for lm in level_maxes])

    def _step_population(self, plan) -> None:
        """Two passes: every member's update u_n first, then theta -= lr u_n for the members that are
        active and whose u_n is finite everywhere (the others are frozen now, on the device)."""
        device = plan[0][1][0].device
        if self._active.device != device:
            self._active = self._active.to(device)
        maxes: list[Tensor] = []
        level_maxes: list[list[Tensor]] = [[] for _ in plan[0][2]]
        pending = []
        for group, params, levels, _ in plan:
            scratch, lr, mx, lmx = self._run(group, params, levels, apply=False)
            pending.append((params, scratch, lr))
            maxes.extend(mx)
            for acc, lm in zip(level_maxes, lmx):
                acc.extend(lm)
        max_update = _reduce_max(maxes, device)  # [E]
        level_max = torch.stack([_reduce_max(lm, device) for lm in level_maxes], dim=-1)  # [E, k]
        was_frozen = ~self._active
        self._active.logical_and_(torch.isfinite(max_update))
        frozen = ~self._active
        for params, scratch, lr in pending:
            _apply_member_updates(params, scratch, lr, frozen)
        self._max_update = max_update.masked_fill_(was_frozen, math.nan)
        self._level_max_updates = level_max.masked_fill_(was_frozen[:, None], math.nan)


def _place_group_tensors(group: dict) -> None:
    """Move a group's hyperparameter tensors to its parameters' device (once, not per step)."""
    if not group["params"]:
        return
    device = group["params"][0].device

    def put(t):
        return t.to(device) if isinstance(t, Tensor) and t.device != device else t

    for key in ("lr", "weight_decay"):
        group[key] = put(group[key])
    if isinstance(group["betas"], Sequence) and any(isinstance(b, Tensor) for b in group["betas"]):
        group["betas"] = tuple(put(b) for b in group["betas"])
    if group["levels"] is not None and any(isinstance(x, Tensor) for lvl in group["levels"] for x in lvl):
        group["levels"] = [Level(gamma=put(lvl.gamma), beta=put(lvl.beta)) for lvl in group["levels"]]


def _check_fits_dtype(group: dict, dtype: torch.dtype) -> None:
    """lr, weight_decay and eps (numbers) must be finite in the parameters' dtype."""
    top = torch.finfo(dtype).max if dtype.is_floating_point else math.inf
    for name in ("lr", "weight_decay", "eps"):
        value = group[name]
        if not isinstance(value, Tensor) and float(value) > top:
            raise ValueError(
                f"{name}={value!r} does not fit in {dtype} parameters (largest finite value {top:.3g}); "
                f"use a smaller {name} or wider parameters"
            )
    eps = float(group["eps"])
    if dtype == torch.float16 and 0.0 < eps < torch.finfo(torch.float16).tiny:
        raise ValueError(
            f"eps={group['eps']!r} underflows to 0 in float16; use eps >= "
            f"{torch.finfo(torch.float16).tiny:.1e} or float32/bfloat16 parameters"
        )


def _check_param(p: Tensor, state: dict | None, k: int, members: int | None) -> None:
    if p.grad.is_sparse:
        raise SparseGradientError(
            "KAdam does not support sparse gradients; use dense gradients "
            "(e.g. nn.Embedding(sparse=False))"
        )
    if torch.is_complex(p) or not p.is_floating_point():
        raise ValueError(f"KAdam supports real floating-point parameters only; got {p.dtype}")
    if members is not None and (p.ndim == 0 or p.shape[0] != members):
        raise ValueError(f"members={members} but a parameter has shape {tuple(p.shape)}: every parameter "
                         f"of a population group needs the leading dimension {members}")
    if state and len(state["m"]) != k:
        raise ValueError(
            f"this parameter's state has {len(state['m'])} levels but its group now asks "
            f"for k={k}; build a new KAdam to change k"
        )


def _check_param_state(state, pid, p: Tensor, k: int) -> None:
    """A saved per-parameter state must be empty or KAdam's {'step': int, 'm': [k], 'v': [k]}."""
    if not state:
        return
    layout = "{'step': int, 'm': [k tensors], 'v': [k tensors]}"
    if not isinstance(state, dict) or set(state) != {"step", "m", "v"}:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not a KAdam state dict: the state of parameter {pid} does not have KAdam's layout "
                         f"{layout}; got {keys}")
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"not a KAdam state dict: the state of parameter {pid} has step={step!r}, "
                         "KAdam's layout needs an int >= 0")
    for key in ("m", "v"):
        moments = state[key]
        if not isinstance(moments, (list, tuple)) or len(moments) != k:
            n = len(moments) if isinstance(moments, (list, tuple)) else type(moments).__name__
            raise ValueError(f"the state of parameter {pid} holds {n} levels of {key} but its param group "
                             f"uses {k} levels")
        for i, t in enumerate(moments):
            if not isinstance(t, Tensor) or t.shape != p.shape:
                raise ValueError(f"the state of parameter {pid}: {key}[{i}] has shape "
                                 f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}, its parameter "
                                 f"has shape {tuple(p.shape)}")


def _default_foreach(params: list[Tensor]) -> bool:
    """foreach on CUDA (fewer kernel launches); the single-tensor path on CPU, where it
    is faster because it finishes each tensor while it is still in cache
    (``benchmarks/optimizer_step.py`` measures both)."""
    return all(p.device.type == "cuda" for p in params)


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
