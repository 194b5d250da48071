"""The course assignments' self-checks (kadam_edu.assignments): they pass the reference answers,
fail wrong ones with a message that says why, report unanswered (None) functions, and refuse
misuse with TypeError / ValueError. Nothing heavy runs: no notebook, only the checks and a tiny sweep.
"""

import json
import math
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from kadam_edu import KAdam, Level, assignments, bounds
from kadam_edu.assignments import CheckResult, FunctionalOptimizer, NotAnswered

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ reference answers (written here)


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


def adaptive_normalisation(x, m, v, n, *, gamma, beta, eps=1e-30):
    m = gamma * m + (1 - gamma) * x
    v = beta * v + (1 - beta) * x * x
    return math.sqrt(1 - beta ** (n + 1)) / (1 - gamma ** (n + 1)) * m / (v.sqrt() + eps), m, v


def kadam_direction(g, states, n, levels):
    u = g
    for i, level in enumerate(levels):
        m, v = states[i]
        u, m, v = adaptive_normalisation(u, m, v, n, gamma=level.gamma, beta=level.beta)
        states[i] = (m, v)
    return u


def kadam(params, *, lr, levels):
    return FunctionalOptimizer(params, lr=lr, levels=levels, direction=kadam_direction)


def adam(params, *, lr, beta, gamma):
    return kadam(params, lr=lr, levels=[Level(gamma=gamma, beta=beta)])


def rmsprop(params, *, lr, beta):
    return kadam(params, lr=lr, levels=[Level(gamma=0.0, beta=beta)])


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


def _assert_fails(result, *phrases):
    assert isinstance(result, CheckResult)
    assert result.answered and not result.passed and not result, result
    text = result.message.lower()
    for phrase in phrases:
        assert phrase.lower() in text, f"{phrase!r} not in:\n{result}"


def _assert_not_answered(result, name):
    assert not result.passed and not result.answered and result.status == "not answered yet"
    assert name in result.message and "still returns none" in result.message.lower()


# ------------------------------------------------------------------ the result object


def test_check_result_prints_and_renders():
    ok = CheckResult("check_x", True, "fine.\ndetail one\ndetail_two *x*")
    assert bool(ok) and ok.status == "passed"
    assert str(ok).startswith("[PASSED] check_x: fine.") and "  - detail one" in str(ok) and repr(ok) == str(ok)
    md = ok._repr_markdown_()
    assert "**check\\_x: passed.**" in md and "- detail\\_two \\*x\\*" in md
    bad = CheckResult("check_y", False, "nope")
    assert not bad and bad.status == "failed" and "[FAILED]" in str(bad)


# ------------------------------------------------------------------ references agree with the library


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
        np.testing.assert_allclose(assignments._reference_adam(g, beta, gamma), np.array(got), rtol=1e-12)
        np.testing.assert_allclose(adam_updates(g, beta, gamma), np.array(got), rtol=1e-12)


def test_private_chain_reference_matches_kadam_levels():
    grads = assignments._opt_grads()
    levels = [Level(gamma=0.8, beta=0.95), Level(gamma=0.0, beta=0.9), Level(gamma=0.5, beta=0.7)]
    params = assignments._opt_params()
    opt = KAdam(params, lr=0.1, levels=levels)
    rows = []
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.clone()
        before = torch.cat([p.detach().reshape(-1).clone() for p in params])
        opt.step()
        rows.append(((before - torch.cat([p.detach().reshape(-1) for p in params])) / 0.1).numpy())
    np.testing.assert_allclose(assignments._reference_chain(grads, levels), np.array(rows), rtol=1e-10, atol=1e-14)


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


# ------------------------------------------------------------------ Assignment 1


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
    _assert_not_answered(check(lambda *args: None), name)


def _no_bias(n, b, g):
    return discrete_bound(n, b, g) * (1 - g ** (n + 1)) / math.sqrt(1 - b ** (n + 1))


def test_discrete_bound_wrong_answers_are_explained():
    _assert_fails(assignments.check_discrete_bound(_no_bias), "bias correction missing", "at n=0", "the bound is 1")
    _assert_fails(assignments.check_discrete_bound(lambda n, b, g: bounds.max_update_bound(n, b, g)), "continuous-time", "eq. 5")
    # swapped: raises where gamma = 0 plays beta, and the rest matches the notation-trap mistake
    _assert_fails(assignments.check_discrete_bound(lambda n, b, g: discrete_bound(n, g, b)), "raised", "notation trap")
    _assert_fails(assignments.check_discrete_bound(lambda n, b, g: 2 * discrete_bound(n, b, g)), "exactly 2 times")
    _assert_fails(assignments.check_discrete_bound(lambda n, b, g: (1 + b) * discrete_bound(n, b, g)), "not on n")

    def no_r1(n, b, g):  # the closed form without the r = 1 case
        r = g * g / b
        bias = math.sqrt(1 - b ** (n + 1)) / (1 - g ** (n + 1))
        return bias * (1 - g) / math.sqrt(1 - b) * math.sqrt((1 - r ** (n + 1)) / (1 - r))

    _assert_fails(assignments.check_discrete_bound(no_r1), "ZeroDivisionError", "gamma^2 = beta", "number of terms")

    def off_by_one_sum(n, b, g):
        return assignments._bound_raw(n, b, g, terms=0)

    _assert_fails(assignments.check_discrete_bound(off_by_one_sum), "one term too few")
    _assert_fails(assignments.check_discrete_bound(lambda n, b, g: assignments._bound_raw(n, b, g, sqrt_sum=False)),
                  "square root missing")
    _assert_fails(assignments.check_discrete_bound(lambda n, b, g: "1.0"), "returned '1.0'", "expected a number")


def test_discrete_bound_overflow_is_a_note_not_a_failure():
    result = assignments.check_discrete_bound(discrete_bound)  # naive powers overflow at n = 2000
    assert result.passed and "not required" in result.message.lower()
    result = assignments.check_discrete_bound(lambda n, b, g: bounds.discrete_max_update_bound(n, b, g))
    assert result.passed and "stays finite" in result.message


def test_adam_updates_wrong_answers_are_explained():
    _assert_fails(assignments.check_adam_updates(lambda G, b, g: adam_updates(G, g, b)), "notation trap")
    _assert_fails(assignments.check_adam_updates(lambda G, b, g: assignments._adam_raw(G, b, g, bias="none")),
                  "bias correction missing")
    _assert_fails(assignments.check_adam_updates(lambda G, b, g: np.abs(adam_updates(G, b, g))), "signed")

    def one_coordinate_only(grads, beta, gamma):
        return np.array([adam_updates([float(g) for g in grads], beta, gamma)]).reshape(-1)

    _assert_fails(assignments.check_adam_updates(one_coordinate_only), "shape [n, p]")

    def forgets(grads, beta, gamma):  # every step starts from zero state
        grads = np.asarray(grads, float)
        n = np.arange(len(grads)).reshape((-1,) + (1,) * (grads.ndim - 1))
        bias = np.sqrt(1 - beta ** (n + 1)) / (1 - gamma ** (n + 1))
        return np.sign(grads) * bias * (1 - gamma) / math.sqrt(1 - beta)

    _assert_fails(assignments.check_adam_updates(forgets), "right at n = 0, wrong later")


def test_extremal_wrong_answers_are_explained():
    _assert_fails(assignments.check_extremal_sequence(lambda s, b, g: np.ones(s)), "does not attain", "constant gradient")
    _assert_fails(assignments.check_extremal_sequence(lambda s, b, g: (g / b) ** np.arange(s)), "does not attain",
                  "proportional")
    _assert_fails(assignments.check_extremal_sequence(lambda s, b, g: np.zeros(s)), "g_0 = 0")
    _assert_fails(assignments.check_extremal_sequence(lambda s, b, g: np.ones(s + 1)), "shape (61,)")
    assert assignments.check_extremal_sequence(lambda s, b, g: -3.0 * extremal_gradients(s, b, g))  # any scale works


def test_discrete_rate_wrong_answers_are_explained():
    _assert_fails(assignments.check_discrete_rate(lambda b, g: bounds.growth_rate(b, g)), "continuous-time", "max(0, -c)/2")
    _assert_fails(assignments.check_discrete_rate(lambda b, g: 2 * discrete_rate(b, g)), "twice the slope")
    _assert_fails(assignments.check_discrete_rate(lambda b, g: discrete_rate(g, b) if g else 0.0), "notation trap")
    no_max = assignments.check_discrete_rate(lambda b, g: math.log(g) - 0.5 * math.log(b))
    _assert_fails(no_max, "math domain error", "negative in the bounded region", "gamma = 0")
    _assert_fails(assignments.check_discrete_rate(lambda b, g: discrete_rate(b, g) if g else float("nan")),
                  "except at gamma = 0")


@pytest.mark.parametrize("check", [assignments.check_discrete_bound, assignments.check_adam_updates,
                                   assignments.check_extremal_sequence, assignments.check_discrete_rate,
                                   assignments.check_adaptive_normalisation, assignments.check_rmsprop,
                                   assignments.check_adam, assignments.check_kadam, assignments.check_make_optimizer,
                                   assignments.check_log_slope])
def test_checks_refuse_a_value_instead_of_a_function(check):
    with pytest.raises(TypeError, match="itself"):
        check(1.25)


# ------------------------------------------------------------------ Assignment 2


def test_a2_reference_answers_pass():
    assert assignments.check_adaptive_normalisation(adaptive_normalisation)
    assert assignments.check_rmsprop(rmsprop)
    assert assignments.check_adam(adam)
    result = assignments.check_kadam(kadam)
    assert result.passed and "largest parameter difference" in result.message
    assert assignments.check_kadam(lambda params, *, lr, levels: KAdam(params, lr=lr, levels=levels))


def test_a2_unanswered():
    _assert_not_answered(assignments.check_adaptive_normalisation(lambda *a, **k: None), "adaptive_normalisation")
    _assert_not_answered(assignments.check_rmsprop(lambda params, *, lr, beta: None), "rmsprop")
    _assert_not_answered(assignments.check_adam(lambda params, **kw: None), "adam")
    _assert_not_answered(assignments.check_kadam(lambda params, **kw: None), "kadam")
    unanswered_direction = assignments.check_kadam(
        lambda params, *, lr, levels: FunctionalOptimizer(params, lr=lr, levels=levels, direction=lambda *a: None))
    _assert_not_answered(unanswered_direction, "kadam_direction")


def test_adaptive_normalisation_wrong_answers_are_explained():
    def no_bias(x, m, v, n, *, gamma, beta):
        m, v = gamma * m + (1 - gamma) * x, beta * v + (1 - beta) * x * x
        return m / v.sqrt(), m, v

    def swapped(x, m, v, n, *, gamma, beta):
        return adaptive_normalisation(x, m, v, n, gamma=beta, beta=gamma)

    def forgets_state(x, m, v, n, *, gamma, beta):
        return adaptive_normalisation(x, m, v, n, gamma=gamma, beta=beta)[0], m, v

    def torch_eps(x, m, v, n, *, gamma, beta):
        m, v = gamma * m + (1 - gamma) * x, beta * v + (1 - beta) * x * x
        return (m / (1 - gamma ** (n + 1))) / ((v / (1 - beta ** (n + 1))).sqrt() + 1e-8), m, v

    def bias_n(x, m, v, n, *, gamma, beta):
        m, v = gamma * m + (1 - gamma) * x, beta * v + (1 - beta) * x * x
        return math.sqrt(1 - beta**n) / (1 - gamma**n) * m / v.sqrt(), m, v

    def float32(x, m, v, n, *, gamma, beta):
        return adaptive_normalisation(x.float(), m.float(), v.float(), n, gamma=gamma, beta=beta)

    check = assignments.check_adaptive_normalisation
    _assert_fails(check(no_bias), "bias correction missing", "at n=0")
    _assert_fails(check(swapped), "notation trap", "gamma where beta belongs")
    _assert_fails(check(forgets_state), "right at n = 0, wrong later", "return the updated m and v")
    _assert_fails(check(torch_eps), "torch.optim.adam", "1e-8")
    _assert_fails(check(bias_n), "ZeroDivisionError", "n + 1")
    _assert_fails(check(float32), "float32")
    _assert_fails(check(lambda x, m, v, n, *, gamma, beta: (x, m)), "return the tuple (u, m, v)")


def _with(direction):
    return lambda params, *, lr, levels: FunctionalOptimizer(params, lr=lr, levels=levels, direction=direction)


def test_kadam_wrong_answers_are_explained():
    def no_chain(g, states, n, levels):
        for i, level in enumerate(levels):
            u, *states[i] = adaptive_normalisation(g, *states[i], n, gamma=level.gamma, beta=level.beta)
        return u

    check = assignments.check_kadam
    _assert_fails(check(_with(no_chain)), "matches for k = 1 but not for k >= 2", "previous level's output",
                  "right for: k=1")
    _assert_fails(check(_with(lambda g, s, n, levels: kadam_direction(g, s, n, levels[::-1]))), "reverse order")
    _assert_fails(check(_with(lambda g, s, n, levels: kadam_direction(g, s, 0, levels))), "step counter")
    _assert_fails(check(_with(lambda g, s, n, levels: kadam_direction(g, list(s), n, levels))), "stored back")
    _assert_fails(check(_with(lambda g, s, n, levels: 2 * kadam_direction(g, s, n, levels))), "2 times", "learning rate")
    _assert_fails(check(_with(lambda g, s, n, levels: -kadam_direction(g, s, n, levels))), "uphill")

    _assert_fails(assignments.check_adam(lambda params, *, lr, beta, gamma: kadam(params, lr=lr, levels=[Level(beta, gamma)])),
                  "notation trap")


def test_rmsprop_and_adam_against_torch_are_explained():
    _assert_fails(assignments.check_rmsprop(lambda p, *, lr, beta: torch.optim.RMSprop(p, lr=lr, alpha=beta, eps=1e-30)),
                  "torch.optim.rmsprop", "bias correction")
    _assert_fails(assignments.check_adam(lambda p, *, lr, beta, gamma: torch.optim.Adam(p, lr=lr, betas=(gamma, beta))),
                  "close but not exact", "1e-8")
    _assert_fails(assignments.check_kadam(lambda p, *, lr, levels: object()), "no step() method")


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


# ------------------------------------------------------------------ Assignment 3


GAMMAS = np.round(np.arange(0.40, 0.91, 0.05), 2)  # 11 values


@pytest.fixture(scope="module")
def sweep():
    return assignments.boundary_sweep(make_optimizer, betas=[0.3, 0.6], gammas=GAMMAS, steps=80, window=(40, 80))


def test_rare_feature_problem_and_sweep_follow_the_discrete_law(sweep):
    assert sweep.max_updates.shape == (2, 11, 80) and sweep.settings["betas_passed"] == (0.4, 0.3)
    assert sweep.settings["eps"] == 0.0 and not sweep.settings["reference"]
    slopes = sweep.log_slopes(log_slope)
    np.testing.assert_allclose(slopes, sweep.log_slopes(), rtol=1e-9, atol=1e-12)  # the library's fit
    discrete, _ = sweep.predicted_rates()
    growing = discrete * 40 >= 1
    assert growing.sum() >= 4
    np.testing.assert_allclose(slopes[growing], discrete[growing], rtol=0.05)  # rare weights: exact geometric decay
    assert np.all(np.abs(slopes[discrete * 40 <= -1]) < 0.005)  # dense weights keep the max-update of order 1
    assert math.isclose(sweep.gamma_spacing, 0.05, rel_tol=1e-6)


def test_problem_validates_and_gradient_is_the_mse_gradient():
    with pytest.raises(ValueError, match="dense"):
        assignments.RareFeatureProblem(dense=0)
    with pytest.raises(ValueError, match="lr"):
        assignments.RareFeatureProblem(lr=-1.0)
    problem = assignments.RareFeatureProblem()
    x, y = problem.batches(12, seed=3)[11]
    assert torch.all(x[:, problem.dense:] == 0)
    w = problem.initial_weights(3)
    loss = ((x @ w - y) ** 2).mean()
    (grad,) = torch.autograd.grad(loss, w)
    torch.testing.assert_close(problem.gradient(w, (x, y)), grad)


def test_sweep_validates_and_falls_back_when_unanswered(capsys):
    small = dict(betas=[0.5], gammas=[0.6, 0.8], steps=20, window=(10, 20))
    sw = assignments.boundary_sweep(lambda p, **kw: None, **small)
    assert sw.settings["reference"] and "not answered yet" in capsys.readouterr().out
    with pytest.raises(TypeError, match="KAdam"):
        assignments.boundary_sweep(lambda p, *, beta, gamma, lr: torch.optim.Adam(p, lr=lr), **small)
    for bad in [dict(small, window=(10, 30)), dict(small, betas=[1.0]), dict(small, gammas=[0.8, 0.6]),
                dict(small, steps=1)]:
        with pytest.raises(ValueError):
            assignments.boundary_sweep(make_optimizer, **bad)
    slopes = sw.log_slopes(lambda mu, a, b: None)
    assert "not answered yet" in capsys.readouterr().out and np.all(np.isfinite(slopes))
    assert set(assignments.boundary_settings("smoke")) == {"betas", "gammas", "steps", "window"}


def test_a3_reference_answers_pass(sweep):
    assert assignments.check_make_optimizer(make_optimizer)
    assert assignments.check_log_slope(log_slope)
    labels = [[classify(s) for s in row] for row in sweep.log_slopes(log_slope)]
    result = assignments.check_classification(sweep, labels)
    assert result.passed and "between c = 0 and gamma^2 = beta" in result.message.lower()
    estimates = estimate_boundary(sweep.betas, sweep.gammas, labels)
    result = assignments.check_boundary(estimates, tolerance=sweep.gamma_spacing, threshold=0.005)
    assert result.passed and "c = 0 misses your boundary" in result.message.lower()


def test_a3_unanswered(sweep):
    _assert_not_answered(assignments.check_make_optimizer(lambda p, **kw: None), "make_optimizer")
    _assert_not_answered(assignments.check_log_slope(lambda mu, a, b: None), "log_slope")
    _assert_not_answered(assignments.check_classification(sweep, [[None] * 11] * 2), "classify")
    _assert_not_answered(assignments.check_boundary(None), "estimate_boundary")
    partial = assignments.check_classification(sweep, [["stable"] * 11, [None] * 11])
    assert not partial.answered and "11 of 22 points" in partial.message


def test_make_optimizer_wrong_answers_are_explained():
    check = assignments.check_make_optimizer
    _assert_fails(check(lambda p, *, beta, gamma, lr: KAdam(p, lr=lr, betas=(beta, gamma), eps=0.0)), "notation trap")
    _assert_fails(check(lambda p, *, beta, gamma, lr: KAdam(p, lr=lr, betas=(gamma, beta))), "eps", "use eps=0")
    _assert_fails(check(lambda p, *, beta, gamma, lr: torch.optim.Adam(p, lr=lr)), "return a kadam_edu.kadam")
    _assert_fails(check(lambda p, *, beta, gamma, lr: KAdam(p, lr=lr, k=2, betas=(gamma, beta), eps=0.0)), "k = 1")
    _assert_fails(check(lambda p, *, beta, gamma, lr: KAdam(p, lr=1e-3, betas=(gamma, beta), eps=0.0)), "lr you are given")
    assert check(lambda p, *, beta, gamma, lr: KAdam(p, lr=lr, levels=[Level(gamma=gamma, beta=beta)], eps=0.0))


def test_log_slope_wrong_answers_are_explained():
    check = assignments.check_log_slope
    _assert_fails(check(lambda mu, a, b: log_slope(mu, a, b) / math.log(10)), "natural logarithm")
    _assert_fails(check(lambda mu, a, b: (math.log(mu[b - 1]) - math.log(mu[a])) / (b - 1 - a)), "just the two ends")
    _assert_fails(check(lambda mu, a, b: log_slope(mu, 0, len(mu))), "outside the window")
    _assert_fails(check(lambda mu, a, b: float(np.polyfit(np.arange(a, b), mu[a:b], 1)[0])), "not max_update itself")
    _assert_fails(check(lambda mu, a, b: float(np.polyfit(np.arange(a, b), np.log(mu[a:b]), 1)[0])), "nan")


def test_classification_wrong_answers_are_explained(sweep):
    slopes = sweep.log_slopes(log_slope)
    too_low = [[classify(s, -0.01) for s in row] for row in slopes]
    _assert_fails(assignments.check_classification(sweep, too_low), "labelled unstable where gamma^2 < beta", "threshold")
    too_high = [[classify(s, 0.3) for s in row] for row in slopes]
    _assert_fails(assignments.check_classification(sweep, too_high), "labelled stable where gamma^2 > beta", "too high")
    from_c = [[("unstable" if bounds.stability_constant(b, g) < 0 else "stable") for g in sweep.gammas] for b in sweep.betas]
    _assert_fails(assignments.check_classification(sweep, from_c), "exactly c's prediction")


def test_classification_flags_a_sweep_run_with_wrong_settings():
    grid = dict(betas=[0.3, 0.6], gammas=GAMMAS, steps=80, window=(40, 80))
    swapped = assignments.boundary_sweep(lambda p, *, beta, gamma, lr: KAdam(p, lr=lr, betas=(beta, gamma), eps=0.0), **grid)
    labels = [[classify(s) for s in row] for row in swapped.log_slopes(log_slope)]
    _assert_fails(assignments.check_classification(swapped, labels), "exchanged")
    with_eps = assignments.boundary_sweep(lambda p, *, beta, gamma, lr: KAdam(p, lr=lr, betas=(gamma, beta), eps=1e-3),
                                          **grid)
    labels = [[classify(s) for s in row] for row in with_eps.log_slopes(log_slope)]
    _assert_fails(assignments.check_classification(with_eps, labels), "eps=0.001", "use eps=0")


def test_classification_refuses_bad_input(sweep):
    with pytest.raises(TypeError, match="BoundarySweep"):
        assignments.check_classification("sweep", [])
    with pytest.raises(ValueError, match="shape"):
        assignments.check_classification(sweep, [["stable"]])
    with pytest.raises(ValueError, match="'stable' or 'unstable'"):
        assignments.check_classification(sweep, [["Stable"] * 11] * 2)


def test_boundary_wrong_answers_are_explained():
    betas = (0.3, 0.5, 0.9)
    check = assignments.check_boundary
    _assert_fails(check({b: 2 * b / (1 + b) for b in betas}, tolerance=0.03), "exactly c = 0's prediction")
    _assert_fails(check({math.sqrt(b): b for b in betas}, tolerance=0.03), "{gamma: beta} instead of {beta: gamma}")
    _assert_fails(check({0.3: 0.65, 0.5: 0.72, 0.9: 0.96}, tolerance=0.03), "too high", "lower threshold")
    _assert_fails(check({0.3: 0.48, 0.5: 0.70, 0.9: 0.95}, tolerance=0.03), "too low", "exact discrete bound is finite")
    # a threshold moves the detectable boundary up to sqrt(beta) exp(threshold): allowed when declared
    shifted = {b: math.sqrt(b) * math.exp(0.05) for b in betas}
    _assert_fails(check(shifted, tolerance=0.01), "too high", "pass it as threshold")
    result = check(shifted, tolerance=0.01, threshold=0.05)
    assert result.passed and "moves the detectable boundary up" in result.message
    partial = check({0.3: 0.55, 0.5: None, 0.9: 0.95}, tolerance=0.03)
    assert partial.passed and "no estimate (none) at beta in [0.5]" in partial.message.lower()
    assert not check({0.3: None}).answered


def test_boundary_refuses_bad_input():
    for bad, err in [([0.3, 0.5], TypeError), ({}, ValueError), ({1.5: 0.5}, ValueError), ({0.5: "x"}, ValueError),
                     ({0.5: 1.5}, ValueError)]:
        with pytest.raises(err):
            assignments.check_boundary(bad)
    for tol in (0, 1.5, "0.1", True):
        with pytest.raises(ValueError, match="tolerance"):
            assignments.check_boundary({0.5: 0.7}, tolerance=tol)
    for thr in (-0.01, "0.005", 2.0):
        with pytest.raises(ValueError, match="threshold"):
            assignments.check_boundary({0.5: 0.7}, threshold=thr)


def test_plot_boundary_draws_with_or_without_answers(sweep):
    slopes = sweep.log_slopes(log_slope)
    labels = [[classify(s) for s in row] for row in slopes]
    for kwargs in [{}, dict(slopes=slopes), dict(slopes=slopes, labels=[[None] * 11] * 2),
                   dict(slopes=slopes, labels=labels, estimates=estimate_boundary(sweep.betas, sweep.gammas, labels))]:
        fig = assignments.plot_boundary(sweep, **kwargs)
        assert len(fig.axes) >= 2
    with pytest.raises(TypeError):
        assignments.plot_boundary("sweep")


# ------------------------------------------------------------------ the notebooks as files (nothing executed)

PAIRS = ["a1_discrete_bound", "a2_adaptive_normalisation", "a3_stability_boundary"]


def _cells(name):
    nb = json.loads((ROOT / "book" / "assignments" / f"{name}.ipynb").read_text())
    return [(c["cell_type"], "".join(c["source"]), c.get("metadata", {}).get("tags", [])) for c in nb["cells"]]


@pytest.mark.parametrize("stem", PAIRS)
def test_student_and_solution_notebooks_differ_only_in_answers(stem):
    student, solution = _cells(stem), _cells(f"{stem}_solution")
    assert "instructor's version" in solution[0][1].lower()
    student_code = {src for kind, src, _ in student if kind == "code"}
    answers = [(src, tags) for kind, src, tags in solution if kind == "code" and src not in student_code]
    assert answers and all("hide-input" in tags for _, tags in answers), "solution code cells must be folded"
    placeholders = [src for kind, src, _ in student if kind == "code" and "return None  # your code here" in src]
    assert placeholders, "student notebooks keep placeholder bodies"
    assert not any("return None  # your code here" in src for kind, src, _ in solution)
    checks = [src for kind, src, _ in student if kind == "code" and "assignments.check_" in src]
    assert checks and all(src in {s for k, s, _ in solution if k == "code"} for src in checks)
    written = [src for kind, src, _ in student if kind == "markdown" and "*Your answer to" in src]
    models = [src for kind, src, _ in solution if kind == "markdown" and src.startswith(":::{admonition} Model answer")]
    assert len(written) == len(models) >= 1 and all(":class: dropdown" in m for m in models)


# ------------------------------------------------------------------ student code: time limit, anything raised,
# non-real answers (issue 10, item 11)


def forever(*args, **kwargs):
    while True:
        pass


def _complex_direction(g, states, n, levels):
    return kadam_direction(g, states, n, levels).to(torch.complex128)


def _complex_step(x, m, v, n, *, gamma, beta):
    u, m, v = adaptive_normalisation(x, m, v, n, gamma=gamma, beta=beta)
    return u.to(torch.complex128), m, v


# every check that runs student code: (check, the reference answer, an answer with complex values)
STUDENT_CHECKS = {
    "check_discrete_bound": (assignments.check_discrete_bound, discrete_bound,
                             lambda n, b, g: np.array([discrete_bound(n, b, g)], dtype=complex)),
    "check_adam_updates": (assignments.check_adam_updates, adam_updates,
                           lambda G, b, g: adam_updates(G, b, g).astype(complex)),
    "check_extremal_sequence": (assignments.check_extremal_sequence, extremal_gradients,
                                lambda s, b, g: extremal_gradients(s, b, g).astype(complex)),
    "check_discrete_rate": (assignments.check_discrete_rate, discrete_rate,
                            lambda b, g: np.array([discrete_rate(b, g)], dtype=complex)),
    "check_adaptive_normalisation": (assignments.check_adaptive_normalisation, adaptive_normalisation, _complex_step),
    "check_rmsprop": (assignments.check_rmsprop, rmsprop,
                      lambda p, *, lr, beta: FunctionalOptimizer(p, lr=lr, levels=[Level(0.0, beta)],
                                                                 direction=_complex_direction)),
    "check_adam": (assignments.check_adam, adam,
                   lambda p, *, lr, beta, gamma: FunctionalOptimizer(p, lr=lr, levels=[Level(gamma, beta)],
                                                                     direction=_complex_direction)),
    "check_kadam": (assignments.check_kadam, kadam, _with(_complex_direction)),
    "check_make_optimizer": (assignments.check_make_optimizer, make_optimizer,
                             lambda p, *, beta, gamma, lr: complex(beta, gamma)),
    "check_log_slope": (assignments.check_log_slope, log_slope,
                        lambda mu, a, b: np.array([log_slope(mu, a, b)], dtype=complex)),
}


@pytest.fixture(scope="module", autouse=True)
def _torch_optim_imported():
    """torch imports torch._dynamo at the first optimizer (seconds): not part of any timing below."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def _timed(check, fn, **kwargs):
    start = time.perf_counter()
    result = check(fn, **kwargs)
    return result, time.perf_counter() - start


@pytest.mark.parametrize("name", STUDENT_CHECKS)
def test_every_check_stops_an_infinite_loop(name):
    check = STUDENT_CHECKS[name][0]
    result, elapsed = _timed(check, forever, timeout=0.5)
    _assert_fails(result, "took longer than 0.5 s", "timeout=")
    assert elapsed < 1.5, elapsed


@pytest.mark.parametrize("check,fn,where", [
    (assignments.check_discrete_bound, lambda n, b, g: forever() if n == 1000 else discrete_bound(n, b, g),
     "discrete_bound(n=1000, beta=0.999, gamma=0.9)"),
    (assignments.check_discrete_bound, lambda n, b, g: forever() if n == 2000 else discrete_bound(n, b, g),
     "discrete_bound(n=2000, beta=0.5, gamma=0.9)"),  # only the overflow note calls n = 2000
    (assignments.check_kadam, _with(lambda g, s, n, levels: forever() if n == 3 else kadam_direction(g, s, n, levels)),
     "kadam"),
    (assignments.check_adaptive_normalisation,
     lambda x, m, v, n, *, gamma, beta: (forever() if n == 5
                                         else adaptive_normalisation(x, m, v, n, gamma=gamma, beta=beta)),
     "n=5"),
])
def test_a_loop_that_starts_late_is_stopped_too(check, fn, where):
    result, elapsed = _timed(check, fn, timeout=0.5)
    _assert_fails(result, "took longer than 0.5 s", where)
    assert elapsed < 1.5, elapsed


def test_the_time_limit_covers_all_calls_together():
    def slow(n, beta, gamma):  # 16 test points at 0.1 s each: every call is short, all of them are not
        time.sleep(0.1)
        return discrete_bound(n, beta, gamma)

    result, elapsed = _timed(assignments.check_discrete_bound, slow, timeout=0.5)
    _assert_fails(result, "took longer than 0.5 s", "all")
    assert elapsed < 1.5, elapsed
    assert assignments.check_discrete_bound(slow, timeout=10.0).passed  # just slow: more time is enough


def test_the_time_limit_cannot_be_swallowed_by_student_code():
    def catches_exception(*args):
        while True:
            try:
                time.sleep(0.01)
            except Exception:  # noqa: BLE001 - what a student might write
                pass

    def catches_everything_once(*args):
        try:
            forever()
        except BaseException:  # noqa: BLE001
            return 0.0  # returns, but after the limit

    for fn in (catches_exception, catches_everything_once):
        result, elapsed = _timed(assignments.check_discrete_rate, fn, timeout=0.5)
        _assert_fails(result, "took longer than 0.5 s")
        assert elapsed < 1.5, elapsed


def test_the_time_limit_works_off_the_main_thread():
    stop = threading.Event()

    def spins(*args):  # an infinite loop that the test can end afterwards
        while not stop.is_set():
            pass

    box = {}

    def run():
        box["result"], box["elapsed"] = _timed(assignments.check_discrete_rate, spins, timeout=0.5)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(10)
    stop.set()
    _assert_fails(box["result"], "took longer than 0.5 s", "still running")
    assert box["elapsed"] < 1.5, box["elapsed"]


def test_the_time_limit_restores_the_previous_alarm():
    fired = []
    handler = lambda signum, frame: fired.append(signum)  # noqa: E731
    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        _assert_fails(assignments.check_discrete_rate(forever, timeout=0.3), "took longer than 0.3 s")
        assert signal.getsignal(signal.SIGALRM) is handler
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 4.0 < left < 4.8, left
        assert assignments.check_discrete_rate(discrete_rate).passed
        assert signal.getsignal(signal.SIGALRM) is handler and 3.5 < signal.getitimer(signal.ITIMER_REAL)[0] < 4.8
        assert not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert assignments.check_discrete_rate(discrete_rate).passed
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0) and signal.getsignal(signal.SIGALRM) is previous


def test_an_earlier_outside_alarm_still_goes_off():
    class OutsideTimeout(Exception):
        pass

    def handler(signum, frame):
        raise OutsideTimeout

    stop = threading.Event()

    def spins(*args):  # the check waits for it in a thread, which the test ends afterwards
        while not stop.is_set():
            pass

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        start = time.perf_counter()
        with pytest.raises(OutsideTimeout):  # e.g. pytest-timeout's alarm, due before the check's own limit
            assignments.check_discrete_rate(spins, timeout=5.0)
        assert time.perf_counter() - start < 1.5
        assert signal.getsignal(signal.SIGALRM) is handler
    finally:
        stop.set()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("timeout", [0, -1.0, math.nan, math.inf, True, "5"])
def test_a_bad_timeout_is_refused_before_any_student_code_runs(timeout):
    calls = []
    with pytest.raises(ValueError, match="timeout"):
        assignments.check_discrete_rate(lambda b, g: calls.append(1), timeout=timeout)
    assert not calls


def _exits(*args, **kwargs):
    raise SystemExit(3)


def _overflows(*args, **kwargs):
    return math.exp(1000.0)


def _recurses(*args, **kwargs):
    return _recurses(*args, **kwargs)


def _out_of_memory(*args, **kwargs):
    raise MemoryError


class _StrangeError(BaseException):
    pass


def _strange(*args, **kwargs):
    raise _StrangeError("not an Exception")


@pytest.mark.parametrize("name", STUDENT_CHECKS)
@pytest.mark.parametrize("fn,shown", [(_exits, "SystemExit"), (_overflows, "OverflowError"),
                                      (_recurses, "RecursionError"), (_out_of_memory, "MemoryError"),
                                      (_strange, "_StrangeError")])
def test_anything_student_code_raises_is_a_failed_check(name, fn, shown):
    result = STUDENT_CHECKS[name][0](fn)
    _assert_fails(result, shown)


@pytest.mark.parametrize("check", [assignments.check_rmsprop, assignments.check_adam, assignments.check_kadam])
@pytest.mark.parametrize("fn,shown", [(_exits, "SystemExit"), (_overflows, "OverflowError")])
def test_anything_raised_inside_step_is_a_failed_check(check, fn, shown):
    def factory(params, *, lr, **hyper):
        levels = hyper.get("levels") or [Level(gamma=hyper.get("gamma", 0.0), beta=hyper["beta"])]
        return FunctionalOptimizer(params, lr=lr, levels=levels, direction=fn)

    _assert_fails(check(factory), shown)


def test_exit_hints_say_what_happened():
    _assert_fails(assignments.check_discrete_bound(_exits), "SystemExit", "sys.exit")
    _assert_fails(assignments.check_discrete_rate(_recurses), "RecursionError", "base case")
    _assert_fails(assignments.check_log_slope(_out_of_memory), "MemoryError", "memory")


@pytest.mark.parametrize("name", STUDENT_CHECKS)
def test_keyboard_interrupt_is_the_student_pressing_stop(name):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        STUDENT_CHECKS[name][0](stop)


@pytest.mark.parametrize("name", STUDENT_CHECKS)
def test_complex_answers_are_refused(name):
    check, _, complex_fn = STUDENT_CHECKS[name]
    result = check(complex_fn)
    _assert_fails(result, "complex")
    assert "real" in result.message.lower()


@pytest.mark.parametrize("name", STUDENT_CHECKS)
def test_reference_answers_still_pass_with_a_time_limit(name):
    check, reference, _ = STUDENT_CHECKS[name]
    assert check(reference).passed
    assert check(reference, timeout=20.0).passed


def test_complex_tensors_and_scalars_are_refused_too():
    _assert_fails(assignments.check_discrete_rate(lambda b, g: torch.tensor(discrete_rate(b, g)).to(torch.complex128)),
                  "complex", "real")
    _assert_fails(assignments.check_discrete_bound(lambda n, b, g: discrete_bound(n, b, g) + 0j), "complex", "real")
    _assert_fails(assignments.check_log_slope(lambda mu, a, b: np.complex128(log_slope(mu, a, b))), "complex", "real")
    _assert_fails(assignments.check_adam_updates(lambda G, b, g: torch.tensor(adam_updates(G, b, g)).to(torch.cfloat)),
                  "complex", "real")

    def complex_moments(x, m, v, n, *, gamma, beta):
        u, m, v = adaptive_normalisation(x, m, v, n, gamma=gamma, beta=beta)
        return u, m.to(torch.complex128), v

    _assert_fails(assignments.check_adaptive_normalisation(complex_moments), "complex", "real", "m")


def test_wrong_types_and_shapes_are_explained():
    shape = (12, 3)
    _assert_fails(assignments.check_adam_updates(lambda G, b, g: adam_updates(G, b, g).astype(str)), "str")
    _assert_fails(assignments.check_adam_updates(lambda G, b, g: [None] * len(G)), "none")
    _assert_fails(assignments.check_adam_updates(lambda G, b, g: adam_updates(G, b, g) > 0), "bool")
    _assert_fails(assignments.check_adam_updates(lambda G, b, g: adam_updates(G, b, g).reshape(-1)), "shape",
                  str(shape))
    _assert_fails(assignments.check_discrete_bound(lambda n, b, g: np.array([str(discrete_bound(n, b, g))])), "str")
    _assert_fails(assignments.check_discrete_bound(lambda n, b, g: 10**400), "too large")  # float() overflows
    _assert_fails(assignments.check_discrete_rate(lambda b, g: 10**400), "too large")
    _assert_fails(assignments.check_discrete_rate(lambda b, g: torch.tensor(True)), "bool")
    _assert_fails(assignments.check_log_slope(lambda mu, a, b: [log_slope(mu, a, b)] * 2), "shape")

    def scalar_m(x, m, v, n, *, gamma, beta):
        u, m, v = adaptive_normalisation(x, m, v, n, gamma=gamma, beta=beta)
        return u, m.sum(), v

    _assert_fails(assignments.check_adaptive_normalisation(scalar_m), "m", "shape")
    _assert_fails(assignments.check_kadam(_with(lambda g, s, n, levels: "u")), "str", "tensor")
    _assert_fails(assignments.check_make_optimizer(lambda p, *, beta, gamma, lr: "KAdam"), "str", "kadam")


def test_nan_and_inf_where_a_finite_value_is_required_are_explained():
    _assert_fails(assignments.check_discrete_bound(lambda n, b, g: math.nan), "nan", "0/0")
    _assert_fails(assignments.check_discrete_bound(lambda n, b, g: math.inf), "inf", "overflow")
    _assert_fails(assignments.check_discrete_rate(lambda b, g: math.nan), "nan", "0/0")
    _assert_fails(assignments.check_adam_updates(lambda G, b, g: np.full(np.shape(G), np.nan)), "nan", "0/0")
    _assert_fails(assignments.check_adaptive_normalisation(
        lambda x, m, v, n, *, gamma, beta: (x / 0.0, *adaptive_normalisation(x, m, v, n, gamma=gamma, beta=beta)[1:])),
        "inf", "division by zero")
    _assert_fails(assignments.check_log_slope(lambda mu, a, b: math.inf), "inf", "overflow")
    _assert_fails(assignments.check_kadam(_with(lambda g, s, n, levels: kadam_direction(g, s, n, levels) * math.nan)),
                  "nan", "0/0")


def test_a_complex_direction_is_refused_by_functional_optimizer():
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    p.grad = torch.ones(2, dtype=torch.float64)
    opt = FunctionalOptimizer([p], lr=0.1, levels=[Level(0.9, 0.99)], direction=lambda g, *a: g.to(torch.complex128))
    with pytest.raises(TypeError, match="complex"):
        opt.step()
    assert torch.all(p == 0)


def test_boundary_refuses_complex_and_nan_estimates_by_name():
    # check_classification and check_boundary take answers as data (they call no student code): a bad
    # value is misuse (ValueError), and the message says what is wrong with it
    for bad, phrase in [({0.5: 0.7 + 0j}, "complex"), ({0.5 + 0j: 0.7}, "complex"), ({0.5: math.nan}, "nan"),
                        ({0.5: np.complex128(0.7)}, "complex")]:
        with pytest.raises(ValueError, match=phrase):
            assignments.check_boundary(bad)
