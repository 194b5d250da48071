"""kadam_edu.levels: k-Adam's level pairs and their max-update bounds (Section 4.2, App. Q, App. T)."""

import math

import numpy as np
import pytest
import torch

from kadam_edu import KAdam, Level, kadam_levels, levels
from kadam_edu.optim import STRATEGIES


def _discrete_bound(n, beta, gamma):
    """The exact discrete bound written out term by term (DESIGN.md), independent of bounds.py."""
    s = sum((gamma**2 / beta) ** j for j in range(n + 1))
    return math.sqrt(1 - beta ** (n + 1)) / (1 - gamma ** (n + 1)) * (1 - gamma) / math.sqrt(1 - beta) * math.sqrt(s)


def _eq5_sup(beta, gamma):
    """Eq. 5 as n -> inf in B+: (1-gamma)/gamma * sqrt(beta/(1-beta)) / sqrt(C)."""
    c = (2 * beta * (1 - gamma) - gamma * (1 - beta)) / (beta * gamma)
    return (1 - gamma) / gamma * math.sqrt(beta / (1 - beta)) / math.sqrt(c)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_level_table_matches_section_4_2(strategy, k):
    rule = {"inverse_exp": lambda x: 1 - (1 - x) ** (1 / k), "exp": lambda x: x**k,
            "scaled": lambda x: x / k, "naive": lambda x: x}[strategy]
    rows = levels.level_table(k, strategy, beta=0.999, gamma=0.9)
    assert [r["level"] for r in rows] == list(range(1, k + 1))
    for r in rows:
        assert r["beta"] == pytest.approx(rule(0.999), rel=1e-12)
        assert r["gamma"] == pytest.approx(rule(0.9), rel=1e-12)
        assert r["C"] == pytest.approx(2 / r["gamma"] - 1 / r["beta"] - 1, rel=1e-9)
        assert r["region"] == "B+"  # App. Q: beta_i > gamma_i for every strategy
        assert r["sup_bound"] == pytest.approx(_eq5_sup(r["beta"], r["gamma"]), rel=1e-9)
        assert r["sup_discrete_bound"] == pytest.approx(
            (1 - r["gamma"]) / math.sqrt(1 - r["beta"]) / math.sqrt(1 - r["gamma"] ** 2 / r["beta"]), rel=1e-9)
        assert r["growth_rate"] == 0.0


def test_inverse_exp_keeps_adams_prefactor():
    # App. Q: (1 - beta_i)^k = 1 - beta, and the same for gamma
    for k in (2, 3, 5):
        lv = kadam_levels(k, strategy="inverse_exp")[0]
        assert (1 - lv.beta) ** k == pytest.approx(1 - 0.999, rel=1e-9)
        assert (1 - lv.gamma) ** k == pytest.approx(1 - 0.9, rel=1e-9)


def test_level_bounds_against_term_by_term_formula():
    lv = [Level(gamma=0.9, beta=0.999), Level(gamma=0.5, beta=0.9), Level(gamma=0.0, beta=0.99)]
    n = np.arange(0, 40)
    got = levels.level_bounds(n, lv, kind="discrete")
    assert got.shape == (40, 3)
    for j, level in enumerate(lv):
        want = [_discrete_bound(int(i), level.beta, level.gamma) for i in n]
        np.testing.assert_allclose(got[:, j], want, rtol=1e-10)
    cont = levels.level_bounds(n, lv, kind="continuous")
    assert np.all(np.isinf(cont[:, 2]))  # gamma = 0: Eq. 5's kernel degenerates
    assert cont[-1, 0] == pytest.approx(
        math.sqrt(1 - 0.999**40) / (1 - 0.9**40) * _eq5_sup(0.999, 0.9), rel=1e-9)
    assert levels.level_bounds(5, lv[:1]).shape == (1, 1)


def test_discrete_bound_is_attained_by_the_worst_sequence():
    # Cauchy-Schwarz is an equality for x_j proportional to (beta/gamma)^j: KAdam's measured
    # max-update then equals the discrete bound at every step.
    level = Level(gamma=0.6, beta=0.9)
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = KAdam([p], lr=0.0, levels=[level])
    measured = []
    for j in range(30):
        p.grad = torch.tensor([(level.beta / level.gamma) ** j], dtype=torch.float64)
        opt.step()
        measured.append(opt.last_level_max_updates)
    ratios = levels.bound_ratios(np.array(measured), [level])
    np.testing.assert_allclose(ratios[:, 0], 1.0, rtol=1e-12)


def test_bound_ratios_and_lag():
    lv = kadam_levels(2, strategy="scaled")
    mu = np.ones((5, 2))
    r = levels.bound_ratios(mu, lv)
    np.testing.assert_allclose(r, 1.0 / levels.level_bounds(np.arange(5), lv))
    assert levels.first_moment_lag(kadam_levels(3, strategy="naive")) == pytest.approx(27.0)
    assert levels.first_moment_lag([Level(gamma=0.5, beta=0.9)]) == pytest.approx(1.0)
    path = levels.strategy_path("exp", 4)
    assert [p.beta for p in path] == pytest.approx([0.999**k for k in range(1, 5)])


@pytest.mark.parametrize("call, match", [
    (lambda: levels.level_table(0), "k must be"),
    (lambda: levels.level_table(2, "linear"), "strategy must be"),
    (lambda: levels.level_table(2, beta=1.0), "beta"),
    (lambda: levels.level_bounds(3, [(0.9, 0.999)]), "bare tuple"),
    (lambda: levels.level_bounds(3, []), "non-empty"),
    (lambda: levels.level_bounds(3, [Level(0.9, 0.999)], kind="exact"), "kind must be"),
    (lambda: levels.level_bounds(-1, [Level(0.9, 0.999)]), "n must"),
    (lambda: levels.level_bounds(np.ones((2, 2)), [Level(0.9, 0.999)]), "1-d"),
    (lambda: levels.bound_ratios(np.ones((4, 3)), kadam_levels(2)), r"shape \[steps, k=2\]"),
    (lambda: levels.bound_ratios(-np.ones((4, 2)), kadam_levels(2)), ">= 0"),
    (lambda: levels.strategy_path("exp", 0), "k_max"),
    (lambda: levels.strategy_path("other", 3), "strategy must be"),
    (lambda: levels.first_moment_lag(Level(0.9, 0.999)), "non-empty list"),
])
def test_levels_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
