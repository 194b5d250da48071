"""k-Adam's levels: :class:`Level`, Section 4.2's strategies (:func:`kadam_levels`), and the checks
of the optimizer's hyperparameters (decays, lr, eps, k), each raising a ValueError that names the
argument before any work.

Notation trap: the paper writes ``beta`` for the second-moment decay and ``gamma`` for the
first-moment decay; a :class:`Level` names both, ``Level(gamma=..., beta=...)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from kadam_edu import validate

__all__ = ["Level", "STRATEGIES", "kadam_levels", "check_levels"]


class Level(NamedTuple):
    """Hyperparameters of one adaptive-normalization level (Eq. 10).

    gamma: first-moment decay in [0, 1) (torch's ``betas[0]``; 0 is RMSprop).
    beta: second-moment decay in (0, 1) (torch's ``betas[1]``).
    In a population group (``KAdam(..., members=E)``) either may be a tensor [E], one per member.
    """

    gamma: float
    beta: float


# Pickled as kadam_edu.optim.Level, its public path: checkpoints written before the optim package
# keep loading, and torch.load(weights_only=True) reads the Level tuples of a state_dict of
# KAdam(levels=[Level(...)]) (the safe global is registered under this name).
Level.__module__ = "kadam_edu.optim"
torch.serialization.add_safe_globals([Level])


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

_GAMMA_RANGE = "in [0, 1) (first-moment decay, torch's betas[0])"
_BETA_RANGE = "in (0, 1) (second-moment decay, torch's betas[1])"
_K = validate.Int(1, meaning="the number of levels")
_STRATEGY = validate.Choice(tuple(sorted(STRATEGIES)), meaning="Section 4.2")
_COUPLED = validate.Bool(meaning="True: Adam, L2 added to the gradient; False: AdamW, decoupled")


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
    return _K("k", k)


def _check_strategy(strategy) -> str:
    return _STRATEGY("strategy", strategy)


def _check_coupled(coupled) -> bool:
    return _COUPLED("coupled", coupled)


def _describe(value) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    return repr(value)


# ---------------------------------------------------------------------------
# Levels.
# ---------------------------------------------------------------------------


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


def check_levels(levels) -> list[Level]:
    """``levels`` checked: a non-empty list of :class:`Level` s (not bare pairs: the order of
    (gamma, beta) is ambiguous), each with gamma in [0, 1) and beta in (0, 1) (Eq. 10).
    Returns them as Levels of floats; a ValueError naming ``levels[i]`` otherwise."""
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
