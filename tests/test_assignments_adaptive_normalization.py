"""Assignment 2, adaptive normalization and the optimizers built from it (App. R;
kadam_edu.assignments.adaptive_normalization): FunctionalOptimizer, and checks that pass the reference
answers, explain wrong ones and report unanswered functions."""

import math

import numpy as np
import pytest
import torch

from _assignment_answers import (adam, adaptive_normalization, assert_fails, assert_not_answered,  # tests/
                                 kadam, kadam_direction, rmsprop, with_direction)
from kadam_edu import KAdam, Level, assignments
from kadam_edu.assignments import FunctionalOptimizer, NotAnswered
from kadam_edu.assignments import adaptive_normalization as a2


def test_private_chain_reference_matches_kadam_levels():
    grads = a2._opt_grads()
    levels = [Level(gamma=0.8, beta=0.95), Level(gamma=0.0, beta=0.9), Level(gamma=0.5, beta=0.7)]
    params = a2._opt_params()
    opt = KAdam(params, lr=0.1, levels=levels)
    rows = []
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.clone()
        before = torch.cat([p.detach().reshape(-1).clone() for p in params])
        opt.step()
        rows.append(((before - torch.cat([p.detach().reshape(-1) for p in params])) / 0.1).numpy())
    np.testing.assert_allclose(a2._reference_chain(grads, levels), np.array(rows), rtol=1e-10, atol=1e-14)


def test_a2_reference_answers_pass():
    assert assignments.check_adaptive_normalization(adaptive_normalization)
    assert assignments.check_rmsprop(rmsprop)
    assert assignments.check_adam(adam)
    result = assignments.check_kadam(kadam)
    assert result.passed and "largest parameter difference" in result.message
    assert assignments.check_kadam(lambda params, *, lr, levels: KAdam(params, lr=lr, levels=levels))


def test_a2_unanswered():
    assert_not_answered(assignments.check_adaptive_normalization(lambda *a, **k: None), "adaptive_normalization")
    assert_not_answered(assignments.check_rmsprop(lambda params, *, lr, beta: None), "rmsprop")
    assert_not_answered(assignments.check_adam(lambda params, **kw: None), "adam")
    assert_not_answered(assignments.check_kadam(lambda params, **kw: None), "kadam")
    unanswered_direction = assignments.check_kadam(
        lambda params, *, lr, levels: FunctionalOptimizer(params, lr=lr, levels=levels, direction=lambda *a: None))
    assert_not_answered(unanswered_direction, "kadam_direction")


def test_adaptive_normalization_wrong_answers_are_explained():
    def no_bias(x, m, v, n, *, gamma, beta):
        m, v = gamma * m + (1 - gamma) * x, beta * v + (1 - beta) * x * x
        return m / v.sqrt(), m, v

    def swapped(x, m, v, n, *, gamma, beta):
        return adaptive_normalization(x, m, v, n, gamma=beta, beta=gamma)

    def forgets_state(x, m, v, n, *, gamma, beta):
        return adaptive_normalization(x, m, v, n, gamma=gamma, beta=beta)[0], m, v

    def torch_eps(x, m, v, n, *, gamma, beta):
        m, v = gamma * m + (1 - gamma) * x, beta * v + (1 - beta) * x * x
        return (m / (1 - gamma ** (n + 1))) / ((v / (1 - beta ** (n + 1))).sqrt() + 1e-8), m, v

    def bias_n(x, m, v, n, *, gamma, beta):
        m, v = gamma * m + (1 - gamma) * x, beta * v + (1 - beta) * x * x
        return math.sqrt(1 - beta**n) / (1 - gamma**n) * m / v.sqrt(), m, v

    def float32(x, m, v, n, *, gamma, beta):
        return adaptive_normalization(x.float(), m.float(), v.float(), n, gamma=gamma, beta=beta)

    check = assignments.check_adaptive_normalization
    assert_fails(check(no_bias), "bias correction missing", "at n=0")
    assert_fails(check(swapped), "notation trap", "gamma where beta belongs")
    assert_fails(check(forgets_state), "right at n = 0, wrong later", "return the updated m and v")
    assert_fails(check(torch_eps), "torch.optim.adam", "1e-8")
    assert_fails(check(bias_n), "ZeroDivisionError", "n + 1")
    assert_fails(check(float32), "float32")
    assert_fails(check(lambda x, m, v, n, *, gamma, beta: (x, m)), "return the tuple (u, m, v)")


def test_kadam_wrong_answers_are_explained():
    def no_chain(g, states, n, levels):
        for i, level in enumerate(levels):
            u, *states[i] = adaptive_normalization(g, *states[i], n, gamma=level.gamma, beta=level.beta)
        return u

    check = assignments.check_kadam
    assert_fails(check(with_direction(no_chain)), "matches for k = 1 but not for k >= 2", "previous level's output",
                  "right for: k=1")
    assert_fails(check(with_direction(lambda g, s, n, levels: kadam_direction(g, s, n, levels[::-1]))), "reverse order")
    assert_fails(check(with_direction(lambda g, s, n, levels: kadam_direction(g, s, 0, levels))), "step counter")
    assert_fails(check(with_direction(lambda g, s, n, levels: kadam_direction(g, list(s), n, levels))), "stored back")
    assert_fails(check(with_direction(lambda g, s, n, levels: 2 * kadam_direction(g, s, n, levels))), "2 times", "learning rate")
    assert_fails(check(with_direction(lambda g, s, n, levels: -kadam_direction(g, s, n, levels))), "uphill")

    assert_fails(assignments.check_adam(lambda params, *, lr, beta, gamma: kadam(params, lr=lr, levels=[Level(beta, gamma)])),
                  "notation trap")


def test_rmsprop_and_adam_against_torch_are_explained():
    assert_fails(assignments.check_rmsprop(lambda p, *, lr, beta: torch.optim.RMSprop(p, lr=lr, alpha=beta, eps=1e-30)),
                  "torch.optim.rmsprop", "bias correction")
    assert_fails(assignments.check_adam(lambda p, *, lr, beta, gamma: torch.optim.Adam(p, lr=lr, betas=(gamma, beta))),
                  "close but not exact", "1e-8")
    assert_fails(assignments.check_kadam(lambda p, *, lr, levels: object()), "no step() method")


def test_functional_optimizer_validates_and_reports_none():
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="lr"):
        FunctionalOptimizer([p], lr=-1.0, levels=[Level(0.9, 0.99)], direction=kadam_direction)
    with pytest.raises(ValueError, match="Level"):
        FunctionalOptimizer([p], lr=0.1, levels=[(0.9, 0.99)], direction=kadam_direction)
    with pytest.raises(TypeError, match="direction"):
        FunctionalOptimizer([p], lr=0.1, levels=[Level(0.9, 0.99)], direction=None)
    opt = FunctionalOptimizer([p], lr=0.1, levels=[Level(0.9, 0.99)], direction=lambda *a: None)
    p.grad = torch.ones(2, dtype=torch.float64)
    with pytest.raises(NotAnswered):
        opt.step()
    opt = FunctionalOptimizer([p], lr=0.1, levels=[Level(0.9, 0.99)], direction=lambda g, *a: torch.ones(3))
    with pytest.raises(ValueError, match="shape"):
        opt.step()


def test_a_complex_direction_is_refused_by_functional_optimizer():
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    p.grad = torch.ones(2, dtype=torch.float64)
    opt = FunctionalOptimizer([p], lr=0.1, levels=[Level(0.9, 0.99)], direction=lambda g, *a: g.to(torch.complex128))
    with pytest.raises(TypeError, match="complex"):
        opt.step()
    assert torch.all(p == 0)
