r"""Batch-size scaling rules for Adam and where they move (beta, gamma) in the stability picture.

Notation trap: ``beta`` is the paper's *second*-moment decay, ``gamma`` the *first*-moment decay
(torch's ``betas=(gamma, beta)``).

Square-root rule (Malladi et al. 2022)
--------------------------------------
Multiplying the batch size by ``kappa`` divides the gradient-noise covariance by kappa, so the
noise multiplier becomes ``sigma / sqrt(kappa)``. The SDE of :mod:`kadam_edu.sde` depends on the
hyperparameters only through ``c1 = (1-gamma)/lr^2``, ``c2 = (1-beta)/lr^2``,
``sigma0 = sigma lr`` and ``eps0 = eps lr``. Keeping all four fixed gives

    lr -> lr sqrt(kappa),  1-beta -> kappa (1-beta),  1-gamma -> kappa (1-gamma),  eps -> eps / sqrt(kappa)

One step then covers SDE time ``lr^2 kappa``: with batch ``kappa B`` take ``1/kappa`` as many
steps to process the same number of samples (:func:`scaled_steps`) and follow the same SDE.
The linear rule (``lr -> kappa lr``, decays and eps unchanged) is the SGD habit it replaces.

Where the rule moves (beta, gamma)
----------------------------------
Write ``a = 1-gamma``, ``b = 1-beta``. The rule moves the point along the ray
``(beta', gamma') = (1 - kappa b, 1 - kappa a)`` out of (1, 1). The stability constant of Eq. 5,
``C = (2 beta (1-gamma) - gamma (1-beta)) / (beta gamma)``, becomes

    C(kappa) = kappa a b (kappa_c - kappa) / (beta' gamma'),   kappa_c = 2/b - 1/a

so the scaled point is in B+ exactly when ``kappa < kappa_c`` (:func:`crossing_kappa`). The exact
discrete bound (see :mod:`kadam_edu.bounds`) stays bounded iff ``gamma'^2 < beta'``, and
``gamma'^2 - beta' = kappa a^2 (kappa - kappa_d)`` with ``kappa_d = (2a - b)/a^2``
(:func:`discrete_crossing_kappa`). The rule is allowed while both decays stay in [0, 1):
``kappa <= 1/max(a, b)`` (:func:`kappa_limit`). A point of B+ reaches B- inside that range iff
``gamma > beta`` (then ``1 < kappa_c < kappa_d < 1/b``); for ``gamma <= beta``, e.g. PyTorch's
(0.999, 0.9), the decays run out first.
"""

from __future__ import annotations

import math

import numpy as np

from kadam_edu import bounds, validate

__all__ = [
    "square_root_rule",
    "linear_rule",
    "scaled_steps",
    "kappa_limit",
    "scaled_decays",
    "scaled_stability_constant",
    "crossing_kappa",
    "discrete_crossing_kappa",
]


def _kappa(kappa) -> float:
    return validate.positive_real("kappa", kappa, meaning="the batch-size multiplier")


def _decays(beta, gamma) -> tuple[float, float]:
    """beta and gamma, each in [0, 1) (a scaled decay may reach 0)."""
    return validate.second_moment_decay("beta", beta, allow_zero=True), validate.first_moment_decay("gamma", gamma)


def _common(kappa, lr, beta, gamma, eps):
    """The arguments the two rules share."""
    return (_kappa(kappa), validate.positive_real("lr", lr, meaning="the learning rate"), *_decays(beta, gamma),
            validate.finite_real("eps", eps, lo=0))


def kappa_limit(*, beta: float, gamma: float) -> float:
    """Largest kappa the square-root rule allows: ``1 / max(1-beta, 1-gamma)`` (both decays stay >= 0)."""
    beta, gamma = _decays(beta, gamma)
    return 1.0 / max(1.0 - beta, 1.0 - gamma)


def square_root_rule(kappa: float, *, lr: float, beta: float, gamma: float, eps: float) -> dict[str, float]:
    """Adam's hyperparameters for batch size ``kappa * B`` under the square-root rule (Malladi et al. 2022).

    Returns ``{"lr": lr sqrt(kappa), "beta": 1 - kappa (1-beta), "gamma": 1 - kappa (1-gamma),
    "eps": eps / sqrt(kappa)}`` (paper's notation: beta second moment, gamma first moment; pass
    ``betas=(d["gamma"], d["beta"])`` to KAdam). ValueError for kappa <= 0, lr <= 0, a decay
    outside [0, 1), eps < 0, or a kappa that pushes a scaled decay below 0 (kappa > :func:`kappa_limit`).
    """
    kappa, lr, beta, gamma, eps = _common(kappa, lr, beta, gamma, eps)
    new_beta, new_gamma = 1.0 - kappa * (1.0 - beta), 1.0 - kappa * (1.0 - gamma)
    for name, old, new in (("beta", beta, new_beta), ("gamma", gamma, new_gamma)):
        if new < 0.0:
            raise ValueError(
                f"kappa={kappa:g} pushes {name} = 1 - kappa (1 - {old:g}) = {new:.6g} out of [0, 1); "
                f"the square-root rule allows kappa <= {1.0 / max(1.0 - beta, 1.0 - gamma):.6g} here"
            )
    return {"lr": lr * math.sqrt(kappa), "beta": new_beta, "gamma": new_gamma, "eps": eps / math.sqrt(kappa)}


def linear_rule(kappa: float, *, lr: float, beta: float, gamma: float, eps: float) -> dict[str, float]:
    """The linear scaling rule carried over from SGD: ``{"lr": kappa lr}``, beta, gamma and eps unchanged.

    Same keys and validation as :func:`square_root_rule`.
    """
    kappa, lr, beta, gamma, eps = _common(kappa, lr, beta, gamma, eps)
    return {"lr": lr * kappa, "beta": beta, "gamma": gamma, "eps": eps}


def scaled_steps(steps: int, kappa: float) -> int:
    """Steps at batch ``kappa * B`` that see as many samples as ``steps`` at batch B: ``steps / kappa``.

    ValueError unless that is a whole number (to 1e-9).
    """
    steps = validate.integer("steps", steps, lo=0)
    kappa = _kappa(kappa)
    ratio = steps / kappa
    if abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio):
        raise ValueError(f"steps / kappa must be a whole number of steps; got {steps} / {kappa:g} = {ratio!r}")
    return int(round(ratio))


def scaled_decays(kappa, *, beta: float, gamma: float):
    """(beta', gamma') = (1 - kappa (1-beta), 1 - kappa (1-gamma)), numpy-vectorised over kappa.

    Scalar kappa gives floats, an array gives arrays. ValueError for kappa <= 0 or beyond
    :func:`kappa_limit`.
    """
    beta, gamma = _decays(beta, gamma)
    k = _kappa_array(kappa, beta, gamma)
    new_beta, new_gamma = 1.0 - k * (1.0 - beta), 1.0 - k * (1.0 - gamma)
    if np.ndim(kappa) == 0:
        return float(new_beta), float(new_gamma)
    return new_beta, new_gamma


def _kappa_array(kappa, beta, gamma) -> np.ndarray:
    try:
        k = np.asarray(kappa, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"kappa must be a positive real number or array; got {kappa!r}") from None
    limit = 1.0 / max(1.0 - beta, 1.0 - gamma)
    bad = ~(np.isfinite(k) & (k > 0) & (k <= limit * (1 + 1e-12)))
    if np.any(bad):
        raise ValueError(f"kappa must lie in (0, {limit:.6g}] (the batch-size multiplier, up to kappa_limit for "
                         f"beta={beta:g}, gamma={gamma:g}); got {float(k[bad].flat[0])!r}")
    return k


def scaled_stability_constant(kappa, *, beta: float, gamma: float):
    """C(beta', gamma') of Eq. 5 after the square-root rule, numpy-vectorised over kappa.

    Equals ``kappa a b (kappa_c - kappa) / (beta' gamma')`` (module docstring). Needs beta' > 0:
    ValueError for kappa >= 1/(1-beta) (where the second-moment decay reaches 0) or beyond
    :func:`kappa_limit`.
    """
    new_beta, new_gamma = scaled_decays(kappa, beta=beta, gamma=gamma)
    if np.any(np.asarray(new_beta) <= 0.0):
        raise ValueError(f"C needs beta' = 1 - kappa (1 - beta) > 0, i.e. kappa < {1.0 / (1.0 - beta):.6g}")
    return bounds.stability_constant(new_beta, new_gamma)


def crossing_kappa(*, beta: float, gamma: float) -> float:
    """kappa_c = 2/(1-beta) - 1/(1-gamma): the square-root rule's point is in B+ iff kappa < kappa_c.

    For a point of B+ (C > 0) kappa_c > 1; it lies inside the rule's range (< :func:`kappa_limit`)
    iff gamma > beta. kappa_c <= 0 means every kappa > 0 lands in B-. Dimensionless (a batch-size
    multiplier). ValueError for a decay outside [0, 1).
    """
    beta, gamma = _decays(beta, gamma)
    return 2.0 / (1.0 - beta) - 1.0 / (1.0 - gamma)


def discrete_crossing_kappa(*, beta: float, gamma: float) -> float:
    """kappa_d = (2a - b)/a^2 (a = 1-gamma, b = 1-beta): the scaled point has gamma'^2 > beta' iff kappa > kappa_d.

    Beyond kappa_d the exact discrete max-update bound grows geometrically (slope
    ``ln gamma' - ln(beta')/2``, :func:`kadam_edu.bounds.discrete_growth_rate`).
    ValueError for a decay outside [0, 1).
    """
    beta, gamma = _decays(beta, gamma)
    a, b = 1.0 - gamma, 1.0 - beta
    return (2.0 * a - b) / (a * a)
