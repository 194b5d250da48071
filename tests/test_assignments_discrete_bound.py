"""Assignment 1, the exact discrete-time bound (kadam_edu.assignments.discrete_bound): its checks pass
the reference answers, fail wrong ones with a message that says why and report unanswered functions;
its private references agree with the library."""

import math

import numpy as np
import pytest
import torch

from _assignment_answers import (adam_updates, assert_fails, assert_not_answered, discrete_bound,  # tests/
                                 discrete_rate, extremal_gradients)
from kadam_edu import KAdam, assignments, bounds
from kadam_edu.assignments import discrete_bound as a1


def test_private_adam_reference_matches_kadam():
    g = np.random.default_rng(0).normal(size=(15, 3))
    for beta, gamma in [(0.999, 0.9), (0.9, 0.99), (0.6, 0.0)]:
        p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        opt = KAdam([p], lr=1.0, betas=(gamma, beta), eps=0.0)
        got = []
        for row in g:
            p.grad = torch.tensor(row)
            before = p.detach().clone()
            opt.step()
            got.append((before - p.detach()).numpy())
        np.testing.assert_allclose(a1._reference_adam(g, beta, gamma), np.array(got), rtol=1e-12)
        np.testing.assert_allclose(adam_updates(g, beta, gamma), np.array(got), rtol=1e-12)


def test_reference_bound_is_attained_and_never_exceeded():
    for beta, gamma in [(0.999, 0.9), (0.9, 0.99), (0.25, 0.5)]:
        D = np.array([discrete_bound(n, beta, gamma) for n in range(40)])
        np.testing.assert_allclose(D, bounds.discrete_max_update_bound(np.arange(40), beta, gamma), rtol=1e-12)
        worst = np.abs(adam_updates(extremal_gradients(40, beta, gamma), beta, gamma))
        np.testing.assert_allclose(worst, D, rtol=1e-10)
        for g in assignments.gradient_families(steps=40, p=3, seed=1).values():
            assert np.all(np.abs(adam_updates(g, beta, gamma)) <= D[:, None] * (1 + 1e-12))


def test_gradient_families_validate():
    fam = assignments.gradient_families(steps=5, p=2)
    assert set(fam) >= {"gaussian", "heavy-tailed", "sparse"} and all(g.shape == (5, 2) and np.all(g[0] != 0) for g in fam.values())
    for kwargs in [dict(steps=0), dict(p=1.5), dict(seed=-1)]:
        with pytest.raises(ValueError):
            assignments.gradient_families(**kwargs)


def test_a1_reference_answers_pass():
    for check, fn in [(assignments.check_discrete_bound, discrete_bound), (assignments.check_adam_updates, adam_updates),
                      (assignments.check_extremal_sequence, extremal_gradients),
                      (assignments.check_discrete_rate, discrete_rate)]:
        result = check(fn)
        assert result.passed and result.answered and bool(result), result


def test_a1_library_functions_pass_too():
    assert assignments.check_discrete_bound(lambda n, b, g: bounds.discrete_max_update_bound(n, b, g))
    assert assignments.check_discrete_rate(lambda b, g: bounds.discrete_growth_rate(b, g))


@pytest.mark.parametrize("check,name", [
    (assignments.check_discrete_bound, "discrete_bound"), (assignments.check_adam_updates, "adam_updates"),
    (assignments.check_extremal_sequence, "extremal_gradients"), (assignments.check_discrete_rate, "discrete_rate"),
])
def test_a1_unanswered(check, name):
    assert_not_answered(check(lambda *args: None), name)


def _no_bias(n, b, g):
    return discrete_bound(n, b, g) * (1 - g ** (n + 1)) / math.sqrt(1 - b ** (n + 1))


def test_discrete_bound_wrong_answers_are_explained():
    assert_fails(assignments.check_discrete_bound(_no_bias), "bias correction missing", "at n=0", "the bound is 1")
    assert_fails(assignments.check_discrete_bound(lambda n, b, g: bounds.max_update_bound(n, b, g)), "continuous-time", "eq. 5")
    # swapped: raises where gamma = 0 plays beta, and the rest matches the notation-trap mistake
    assert_fails(assignments.check_discrete_bound(lambda n, b, g: discrete_bound(n, g, b)), "raised", "notation trap")
    assert_fails(assignments.check_discrete_bound(lambda n, b, g: 2 * discrete_bound(n, b, g)), "exactly 2 times")
    assert_fails(assignments.check_discrete_bound(lambda n, b, g: (1 + b) * discrete_bound(n, b, g)), "not on n")

    def no_r1(n, b, g):  # the closed form without the r = 1 case
        r = g * g / b
        bias = math.sqrt(1 - b ** (n + 1)) / (1 - g ** (n + 1))
        return bias * (1 - g) / math.sqrt(1 - b) * math.sqrt((1 - r ** (n + 1)) / (1 - r))

    assert_fails(assignments.check_discrete_bound(no_r1), "ZeroDivisionError", "gamma^2 = beta", "number of terms")

    def off_by_one_sum(n, b, g):
        return a1._bound_raw(n, b, g, terms=0)

    assert_fails(assignments.check_discrete_bound(off_by_one_sum), "one term too few")
    assert_fails(assignments.check_discrete_bound(lambda n, b, g: a1._bound_raw(n, b, g, sqrt_sum=False)),
                  "square root missing")
    assert_fails(assignments.check_discrete_bound(lambda n, b, g: "1.0"), "returned '1.0'", "expected a number")


def test_discrete_bound_overflow_is_a_note_not_a_failure():
    result = assignments.check_discrete_bound(discrete_bound)  # naive powers overflow at n = 2000
    assert result.passed and "not required" in result.message.lower()
    result = assignments.check_discrete_bound(lambda n, b, g: bounds.discrete_max_update_bound(n, b, g))
    assert result.passed and "stays finite" in result.message


def test_adam_updates_wrong_answers_are_explained():
    assert_fails(assignments.check_adam_updates(lambda G, b, g: adam_updates(G, g, b)), "notation trap")
    assert_fails(assignments.check_adam_updates(lambda G, b, g: a1._adam_raw(G, b, g, bias="none")),
                  "bias correction missing")
    assert_fails(assignments.check_adam_updates(lambda G, b, g: np.abs(adam_updates(G, b, g))), "signed")

    def one_coordinate_only(grads, beta, gamma):
        return np.array([adam_updates([float(g) for g in grads], beta, gamma)]).reshape(-1)

    assert_fails(assignments.check_adam_updates(one_coordinate_only), "shape [n, p]")

    def forgets(grads, beta, gamma):  # every step starts from zero state
        grads = np.asarray(grads, float)
        n = np.arange(len(grads)).reshape((-1,) + (1,) * (grads.ndim - 1))
        bias = np.sqrt(1 - beta ** (n + 1)) / (1 - gamma ** (n + 1))
        return np.sign(grads) * bias * (1 - gamma) / math.sqrt(1 - beta)

    assert_fails(assignments.check_adam_updates(forgets), "right at n = 0, wrong later")


def test_extremal_wrong_answers_are_explained():
    assert_fails(assignments.check_extremal_sequence(lambda s, b, g: np.ones(s)), "does not attain", "constant gradient")
    assert_fails(assignments.check_extremal_sequence(lambda s, b, g: (g / b) ** np.arange(s)), "does not attain",
                  "proportional")
    assert_fails(assignments.check_extremal_sequence(lambda s, b, g: np.zeros(s)), "g_0 = 0")
    assert_fails(assignments.check_extremal_sequence(lambda s, b, g: np.ones(s + 1)), "shape (61,)")
    assert assignments.check_extremal_sequence(lambda s, b, g: -3.0 * extremal_gradients(s, b, g))  # any scale works


def test_discrete_rate_wrong_answers_are_explained():
    assert_fails(assignments.check_discrete_rate(lambda b, g: bounds.growth_rate(b, g)), "continuous-time", "max(0, -c)/2")
    assert_fails(assignments.check_discrete_rate(lambda b, g: 2 * discrete_rate(b, g)), "twice the slope")
    assert_fails(assignments.check_discrete_rate(lambda b, g: discrete_rate(g, b) if g else 0.0), "notation trap")
    no_max = assignments.check_discrete_rate(lambda b, g: math.log(g) - 0.5 * math.log(b))
    assert_fails(no_max, "math domain error", "negative in the bounded region", "gamma = 0")
    assert_fails(assignments.check_discrete_rate(lambda b, g: discrete_rate(b, g) if g else float("nan")),
                  "except at gamma = 0")
