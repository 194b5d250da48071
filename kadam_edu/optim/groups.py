"""Checks of KAdam's param groups and of the parameters that step (torch.optim validates in the
optimizer class; here they are flat functions the class calls). Each raises a ValueError that names
the hyperparameter before anything changes. A param group's levels are explicit ``levels``, or
``betas``/``k``/``strategy`` through Section 4.2's strategies; in a population group
(``members=E``) lr, weight decay and the decays may be tensors [E], one value per member.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from kadam_edu import validate
from kadam_edu.optim.fused import FUSED_DTYPES
from kadam_edu.optim.levels import (
    _BETA_RANGE,
    _GAMMA_RANGE,
    STRATEGIES,
    Level,
    _check_beta,
    _check_betas,
    _check_betas_pair,
    _check_coupled,
    _check_gamma,
    _check_k,
    _check_level,
    _check_levels_list,
    _check_nonnegative,
    _check_strategy,
    _describe,
    check_levels,
    kadam_levels,
)

__all__ = ["SparseGradientError"]

_MEMBERS = validate.Int(1, meaning="the population size E, every parameter of the group of shape [E, ...]; "
                                   "None: no population")


class SparseGradientError(ValueError, RuntimeError):
    """Raised for sparse gradients (a ValueError and a RuntimeError, like torch's)."""


def _check_members(members) -> int | None:
    return None if members is None else _MEMBERS("members", members)


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
            return check_levels(group["levels"])
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
    _check_coupled(group["coupled"])
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
    """Refuse what the fused kernel (:mod:`kadam_edu.optim.fused`) cannot do, as torch.optim.Adam(fused=True)
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

