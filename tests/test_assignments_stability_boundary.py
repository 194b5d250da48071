"""Assignment 3, the stability boundary measured (kadam_edu.assignments.stability_boundary): its checks
pass the reference answers, explain wrong ones (labels, boundary estimates, a sweep run with wrong
settings), report unanswered ones and refuse misuse by name."""

import math

import numpy as np
import pytest
import torch

from _assignment_answers import (GAMMAS, SWEEP_GRID, assert_fails, assert_not_answered, classify,  # tests/
                                 estimate_boundary, log_slope, make_optimizer)
from kadam_edu import KAdam, Level, assignments, bounds


@pytest.fixture(scope="module")
def sweep():
    return assignments.boundary_sweep(make_optimizer, **SWEEP_GRID)


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
    assert_not_answered(assignments.check_make_optimizer(lambda p, **kw: None), "make_optimizer")
    assert_not_answered(assignments.check_log_slope(lambda mu, a, b: None), "log_slope")
    assert_not_answered(assignments.check_classification(sweep, [[None] * 11] * 2), "classify")
    assert_not_answered(assignments.check_boundary(None), "estimate_boundary")
    partial = assignments.check_classification(sweep, [["stable"] * 11, [None] * 11])
    assert not partial.answered and "11 of 22 points" in partial.message


def test_make_optimizer_wrong_answers_are_explained():
    check = assignments.check_make_optimizer
    assert_fails(check(lambda p, *, beta, gamma, lr: KAdam(p, lr=lr, betas=(beta, gamma), eps=0.0)), "notation trap")
    assert_fails(check(lambda p, *, beta, gamma, lr: KAdam(p, lr=lr, betas=(gamma, beta))), "eps", "use eps=0")
    assert_fails(check(lambda p, *, beta, gamma, lr: torch.optim.Adam(p, lr=lr)), "return a kadam_edu.kadam")
    assert_fails(check(lambda p, *, beta, gamma, lr: KAdam(p, lr=lr, k=2, betas=(gamma, beta), eps=0.0)), "k = 1")
    assert_fails(check(lambda p, *, beta, gamma, lr: KAdam(p, lr=1e-3, betas=(gamma, beta), eps=0.0)), "lr you are given")
    assert check(lambda p, *, beta, gamma, lr: KAdam(p, lr=lr, levels=[Level(gamma=gamma, beta=beta)], eps=0.0))


def test_log_slope_wrong_answers_are_explained():
    check = assignments.check_log_slope
    assert_fails(check(lambda mu, a, b: log_slope(mu, a, b) / math.log(10)), "natural logarithm")
    assert_fails(check(lambda mu, a, b: (math.log(mu[b - 1]) - math.log(mu[a])) / (b - 1 - a)), "just the two ends")
    assert_fails(check(lambda mu, a, b: log_slope(mu, 0, len(mu))), "outside the window")
    assert_fails(check(lambda mu, a, b: float(np.polyfit(np.arange(a, b), mu[a:b], 1)[0])), "not max_update itself")
    assert_fails(check(lambda mu, a, b: float(np.polyfit(np.arange(a, b), np.log(mu[a:b]), 1)[0])), "nan")


def test_classification_wrong_answers_are_explained(sweep):
    slopes = sweep.log_slopes(log_slope)
    too_low = [[classify(s, -0.01) for s in row] for row in slopes]
    assert_fails(assignments.check_classification(sweep, too_low), "labelled unstable where gamma^2 < beta", "threshold")
    too_high = [[classify(s, 0.3) for s in row] for row in slopes]
    assert_fails(assignments.check_classification(sweep, too_high), "labelled stable where gamma^2 > beta", "too high")
    from_c = [[("unstable" if bounds.stability_constant(b, g) < 0 else "stable") for g in sweep.gammas] for b in sweep.betas]
    assert_fails(assignments.check_classification(sweep, from_c), "exactly c's prediction")


def test_classification_flags_a_sweep_run_with_wrong_settings():
    grid = dict(betas=[0.3, 0.6], gammas=GAMMAS, steps=80, window=(40, 80))
    swapped = assignments.boundary_sweep(lambda p, *, beta, gamma, lr: KAdam(p, lr=lr, betas=(beta, gamma), eps=0.0), **grid)
    labels = [[classify(s) for s in row] for row in swapped.log_slopes(log_slope)]
    assert_fails(assignments.check_classification(swapped, labels), "exchanged")
    with_eps = assignments.boundary_sweep(lambda p, *, beta, gamma, lr: KAdam(p, lr=lr, betas=(gamma, beta), eps=1e-3),
                                          **grid)
    labels = [[classify(s) for s in row] for row in with_eps.log_slopes(log_slope)]
    assert_fails(assignments.check_classification(with_eps, labels), "eps=0.001", "use eps=0")


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
    assert_fails(check({b: 2 * b / (1 + b) for b in betas}, tolerance=0.03), "exactly c = 0's prediction")
    assert_fails(check({math.sqrt(b): b for b in betas}, tolerance=0.03), "{gamma: beta} instead of {beta: gamma}")
    assert_fails(check({0.3: 0.65, 0.5: 0.72, 0.9: 0.96}, tolerance=0.03), "too high", "lower threshold")
    assert_fails(check({0.3: 0.48, 0.5: 0.70, 0.9: 0.95}, tolerance=0.03), "too low", "exact discrete bound is finite")
    # a threshold moves the detectable boundary up to sqrt(beta) exp(threshold): allowed when declared
    shifted = {b: math.sqrt(b) * math.exp(0.05) for b in betas}
    assert_fails(check(shifted, tolerance=0.01), "too high", "pass it as threshold")
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


def test_boundary_refuses_complex_and_nan_estimates_by_name():
    # check_classification and check_boundary take answers as data (they call no student code): a bad
    # value is misuse (ValueError), and the message says what is wrong with it
    for bad, phrase in [({0.5: 0.7 + 0j}, "complex"), ({0.5 + 0j: 0.7}, "complex"), ({0.5: math.nan}, "nan"),
                        ({0.5: np.complex128(0.7)}, "complex")]:
        with pytest.raises(ValueError, match=phrase):
            assignments.check_boundary(bad)
