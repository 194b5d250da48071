"""Reference answers to the course assignments, written here (not taken from the library), and the
assertions on a CheckResult (shared by the tests/test_assignments*.py files and the boundary tests)."""

import math

import numpy as np

from kadam_edu import KAdam, Level
from kadam_edu.assignments import CheckResult, FunctionalOptimizer

# ------------------------------------------------------------------ Assignment 1


def discrete_bound(n, beta, gamma):
    bias = math.sqrt(1 - beta ** (n + 1)) / (1 - gamma ** (n + 1))
    r = gamma**2 / beta
    s = n + 1 if r == 1 else (1 - r ** (n + 1)) / (1 - r)
    return bias * (1 - gamma) / math.sqrt(1 - beta) * math.sqrt(s)


def adam_updates(grads, beta, gamma):
    grads = np.asarray(grads, dtype=float)
    m, v = np.zeros(grads.shape[1:]), np.zeros(grads.shape[1:])
    u = np.empty_like(grads)
    for n, g in enumerate(grads):
        m = gamma * m + (1 - gamma) * g
        v = beta * v + (1 - beta) * g**2
        u[n] = math.sqrt(1 - beta ** (n + 1)) / (1 - gamma ** (n + 1)) * m / np.sqrt(v)
    return u


def extremal_gradients(steps, beta, gamma):
    return (beta / gamma) ** np.arange(steps)


def discrete_rate(beta, gamma):
    return 0.0 if gamma == 0 else max(0.0, math.log(gamma) - 0.5 * math.log(beta))


# ------------------------------------------------------------------ Assignment 2


def adaptive_normalization(x, m, v, n, *, gamma, beta, eps=1e-30):
    m = gamma * m + (1 - gamma) * x
    v = beta * v + (1 - beta) * x * x
    return math.sqrt(1 - beta ** (n + 1)) / (1 - gamma ** (n + 1)) * m / (v.sqrt() + eps), m, v


def kadam_direction(g, states, n, levels):
    u = g
    for i, level in enumerate(levels):
        m, v = states[i]
        u, m, v = adaptive_normalization(u, m, v, n, gamma=level.gamma, beta=level.beta)
        states[i] = (m, v)
    return u


def kadam(params, *, lr, levels):
    return FunctionalOptimizer(params, lr=lr, levels=levels, direction=kadam_direction)


def adam(params, *, lr, beta, gamma):
    return kadam(params, lr=lr, levels=[Level(gamma=gamma, beta=beta)])


def rmsprop(params, *, lr, beta):
    return kadam(params, lr=lr, levels=[Level(gamma=0.0, beta=beta)])


def with_direction(direction):
    """A k-Adam factory built on FunctionalOptimizer with the given direction function."""
    return lambda params, *, lr, levels: FunctionalOptimizer(params, lr=lr, levels=levels, direction=direction)


# ------------------------------------------------------------------ Assignment 3


def make_optimizer(params, *, beta, gamma, lr):
    return KAdam(params, lr=lr, betas=(gamma, beta), eps=0.0)


def log_slope(mu, start, stop):
    mu = np.asarray(mu, dtype=float)
    n = np.arange(len(mu))
    keep = (n >= start) & (n < stop) & np.isfinite(mu) & (mu > 0)
    return float(np.polyfit(n[keep], np.log(mu[keep]), 1)[0]) if keep.sum() >= 2 else float("nan")


def classify(slope, threshold=0.005):
    return "unstable" if slope > threshold else "stable"


def estimate_boundary(betas, gammas, labels):
    out = {}
    for beta, row in zip(betas, labels):
        unstable = [g for g, lab in zip(gammas, row) if lab == "unstable"]
        if not unstable:
            out[float(beta)] = None
            continue
        below = [g for g, lab in zip(gammas, row) if lab == "stable" and g < min(unstable)]
        out[float(beta)] = float((max(below) + min(unstable)) / 2) if below else float(min(unstable))
    return out


#: The small sweep grid the A3 tests share: 2 betas x 11 gammas, 80 steps, slopes fitted on steps 40..79.
GAMMAS = np.round(np.arange(0.40, 0.91, 0.05), 2)  # 11 values
SWEEP_GRID = dict(betas=[0.3, 0.6], gammas=GAMMAS, steps=80, window=(40, 80))


# ------------------------------------------------------------------ assertions on a CheckResult


def assert_fails(result, *phrases):
    assert isinstance(result, CheckResult)
    assert result.answered and not result.passed and not result, result
    text = result.message.lower()
    for phrase in phrases:
        assert phrase.lower() in text, f"{phrase!r} not in:\n{result}"


def assert_not_answered(result, name):
    assert not result.passed and not result.answered and result.status == "not answered yet"
    assert name in result.message and "still returns none" in result.message.lower()
