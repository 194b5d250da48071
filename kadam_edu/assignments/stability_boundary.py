r"""Assignment 3: the stability boundary, measured (``book/assignments/a3_stability_boundary``).

Students build Adam at the paper's (beta, gamma) with eps = 0, run the sweep of
:mod:`kadam_edu.experiments.boundary` over a (beta, gamma) grid, fit the slope of ln ||u_n||_inf,
label every point stable or unstable and estimate the boundary, then compare it with C = 0 (Eq. 5,
continuous time) and with the exact discrete law gamma^2 = beta (Assignment 1). The checks here
test each step and explain where the two laws disagree.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np
import torch

from kadam_edu import validate
from kadam_edu.assignments.engine import (CheckResult, NotAnswered, _agree, _describe_exception, _exception_hints,
                                          _g, _nonfinite_note, _not_answered, _pair, _preload_torch_optim, _Raised,
                                          _result, _stops_at_time_limit, _StudentCode, _to_float, _hidden_rng)
from kadam_edu.experiments.boundary import BoundarySweep, label_grid, reference_log_slope
from kadam_edu.optim import KAdam

__all__ = ["check_make_optimizer", "check_log_slope", "check_classification", "check_boundary"]


@_stops_at_time_limit
def check_make_optimizer(fn, *, timeout: float = 10.0, seed: int | None = None) -> CheckResult:
    """Check ``fn(params, *, beta, gamma, lr) -> KAdam``: Adam at the paper's (beta, gamma),
    eps = 0 (the setting of the bound), no weight decay, k = 1. ``timeout``: seconds for all
    calls of ``fn`` together (default 10). ``seed``: None for the published settings, an int
    for other ones of the same kinds (an autograder's hidden tests)."""
    check = "check_make_optimizer"
    validate.student_function(check, fn, "make_optimizer(params, *, beta, gamma, lr)")
    rng = _hidden_rng(seed)
    if rng is None:
        settings = [(0.5, 0.8, 0.01), (0.999, 0.9, 0.001), (0.3, 0.0, 0.1)]
    else:
        u = lambda lo, hi: round(float(rng.uniform(lo, hi)), 4)  # noqa: E731
        settings = [(u(0.05, 0.9), u(0.05, 0.99), u(1e-3, 0.1)), (u(0.9, 0.9999), u(0.5, 0.99), u(1e-4, 1e-2)),
                    (u(0.05, 0.99), 0.0, u(1e-3, 0.3))]
    run = _StudentCode(check, timeout)
    _preload_torch_optim()
    for beta, gamma, lr in settings:
        params = [torch.zeros(3, dtype=torch.float64, requires_grad=True)]
        call = f"make_optimizer(params, beta={beta}, gamma={gamma}, lr={lr})"
        try:
            opt = run.call(call, fn, params, beta=beta, gamma=gamma, lr=lr)
        except _Raised as err:
            return _result(check, False, f"{call} raised {_describe_exception(err.error)}.",
                           _exception_hints(err.error))
        if opt is None:
            return _not_answered(check, "make_optimizer")
        if isinstance(opt, numbers.Number):
            kind = "complex " if isinstance(opt, numbers.Complex) and not isinstance(opt, numbers.Real) else ""
            return _result(check, False, f"make_optimizer returned the {kind}number {opt!r}, not an optimizer: "
                           "return a kadam_edu.KAdam built from the real numbers beta, gamma and lr it is given.")
        if not isinstance(opt, KAdam):
            return _result(check, False, f"make_optimizer returned {type(opt).__name__}; return a kadam_edu.KAdam "
                           "(its last_max_update is what the sweep records).")
        group = opt.param_groups[0]
        levels = KAdam.group_levels(group)
        where = f"for beta={beta}, gamma={gamma}"
        if len(levels) != 1:
            return _result(check, False, f"your optimizer has k={len(levels)} levels; this sweep is about Adam "
                           "(k = 1).")
        level = levels[0]
        if np.isclose(level.gamma, beta) and np.isclose(level.beta, gamma) and beta != gamma and gamma > 0:
            return _result(check, False, f"notation trap {where}: your KAdam got the first-moment decay {level.gamma} "
                           f"and the second-moment decay {level.beta}, i.e. beta and gamma exchanged.",
                           ["KAdam follows torch: betas=(first moment, second moment); in the paper's letters the "
                            "first moment is gamma and the second beta."])
        if not (np.isclose(level.gamma, gamma) and np.isclose(level.beta, beta)):
            return _result(check, False, f"{where} your KAdam uses Level(gamma={level.gamma}, beta={level.beta}).")
        if group["lr"] != lr:
            return _result(check, False, f"pass the lr you are given (got lr={group['lr']}, asked for {lr}).")
        if group["eps"] != 0.0:
            return _result(check, False, f"eps is {group['eps']!r}; use eps=0.",
                           ["The bound holds for eps = 0. With any eps > 0 the update stops growing once sqrt(v_n) "
                            "falls below eps, which happens within a few hundred steps when beta is small: the sweep "
                            "would then miss real growth."])
        if group["weight_decay"] != 0.0:
            return _result(check, False, "use no weight decay here (weight_decay=0): it adds a term the bound does "
                           "not cover.")
    return _result(check, True, "Adam at the paper's (beta, gamma), eps = 0.",
                   ["KAdam received betas in torch's order (first moment gamma, second moment beta)."])


def _slope_cases(drawn=None):
    """(label, max_update, start, stop): the published sequences without a generator ``drawn``, else
    sequences of the same kinds with drawn rates and noise."""
    rng = np.random.default_rng(7) if drawn is None else drawn
    a, r = (0.7, 0.03) if drawn is None else (round(float(rng.uniform(0.1, 5)), 3), round(float(rng.uniform(0.005, 0.05)), 4))
    n = np.arange(200)
    exact = a * np.exp(r * n)
    noisy = np.exp(-0.02 * n + 0.2 * rng.normal(size=200))
    prefix = np.where(n < 100, 50.0 * np.exp(-0.1 * n), np.exp(0.05 * (n - 100)))
    stopped = np.concatenate([np.exp(0.08 * n[:150]), np.full(50, np.nan)])
    flat = 1.0 + 0.01 * rng.normal(size=200)
    return [
        (f"an exact exponential {a} exp({r} n)", exact, 100, 200),
        ("a noisy decay", noisy, 50, 200),
        ("a sequence with a different start", prefix, 100, 200),
        ("a run that stopped at step 150 (nan after)", stopped, 100, 200),
        ("a flat noisy sequence", flat, 20, 180),
    ]


@_stops_at_time_limit
def check_log_slope(fn, *, timeout: float = 10.0, seed: int | None = None) -> CheckResult:
    """Check ``fn(max_update, start, stop) -> float``: the least-squares slope of
    ln(max_update[n]) over start <= n < stop, using only positive finite values (the slope
    is finite on every test sequence). ``timeout``: seconds for all calls of ``fn`` together
    (default 10). ``seed``: None for the published sequences, an int for other ones of the same
    kinds (an autograder's hidden tests)."""
    check = "check_log_slope"
    validate.student_function(check, fn, "log_slope(max_update, start, stop)")
    cases = _slope_cases(_hidden_rng(seed))
    run = _StudentCode(check, timeout)
    student, reference = [], []
    for label, mu, start, stop in cases:
        where = f"on {label} (start={start}, stop={stop})"
        try:
            student.append(_to_float(run.call(f"log_slope {where}", fn, mu.copy(), start, stop)))
        except NotAnswered:
            return _not_answered(check, "log_slope")
        except _Raised as err:
            return _result(check, False, f"log_slope raised {_describe_exception(err.error)} {where}.",
                           _exception_hints(err.error))
        except TypeError as err:
            return _result(check, False, f"log_slope {where} {err}.")
        reference.append(reference_log_slope(mu, start, stop))
    wrong = [not _agree(s, r, rtol=1e-6, atol=1e-12) for s, r in zip(student, reference)]
    if not any(wrong):
        return _result(check, True, "your slopes are the least-squares slopes of ln ||u_n||.",
                       ["Exact and noisy exponentials, a window that skips a transient, and a run that stopped early."])
    i = wrong.index(True)
    label, mu, start, stop = cases[i]
    yours, right = _pair(student[i], reference[i])
    example = [f"On {label} (start={start}, stop={stop}): yours {yours}, expected {right}.",
               *_nonfinite_note(student[i])]
    s, r = np.array(student), np.array(reference)
    with np.errstate(all="ignore"):
        q = s / r
    q = q[np.isfinite(q)]
    for base, name in ((10, "ln(10)"), (2, "ln(2)")):
        if len(q) >= 3 and np.allclose(q, 1 / math.log(base), rtol=1e-6):
            return _result(check, False, f"your slopes are 1/{name} of the true ones: use the natural logarithm.",
                           example)

    def ex(k):
        yours, right = _pair(student[k], reference[k])
        return [f"On {cases[k][0]} (start={cases[k][2]}, stop={cases[k][3]}): yours {yours}, expected {right}.",
                *_nonfinite_note(student[k])]

    if wrong[0]:
        return _result(check, False, f"wrong even on {cases[0][0]}: fit ln(max_update) "
                       "(not max_update itself, and in the natural log) against the step n.", ex(0))
    if wrong[2]:
        return _result(check, False, "your slope includes steps outside the window: use only start <= n < stop.",
                       ex(2))
    if wrong[1]:
        _, mu, start, stop = cases[1]
        two_point = (math.log(mu[stop - 1]) - math.log(mu[start])) / (stop - 1 - start)
        if abs(student[1] - two_point) < 1e-9:
            return _result(check, False, "right on an exact exponential, not on noisy data: fit every point of the "
                           "window by least squares, not just the two ends.", ex(1))
        return _result(check, False, "right on an exact exponential, not on noisy data: is it a least-squares fit "
                       "of ln(max_update) against n over the whole window?", ex(1))
    if wrong[3]:
        return _result(check, False, "a run that stopped early leaves nan in max_update: fit only the finite, "
                       "positive values inside the window.", ex(3))
    return _result(check, False, "your slopes differ from the least-squares slopes of ln ||u_n||.", example)


def check_classification(sweep: BoundarySweep, labels) -> CheckResult:
    """Check stable/unstable labels of a sweep's grid against the exact discrete law and explain
    where they differ from C's prediction (C < 0: unstable).

    ``labels[i][j]`` labels (sweep.betas[i], sweep.gammas[j]). The law: ||u_n|| grows like
    exp(rate * n) with rate = ln(gamma) - ln(beta)/2 when the gradient of some weights stops.
    A point counts as a clear case when its growth over the fit window is at least a factor e
    (|rate| * window length >= 1); closer to the boundary either label is accepted.
    """
    check = "check_classification"
    arr = label_grid(sweep, labels)
    missing = sum(lab is None for lab in arr.flat)
    if missing == arr.size:
        return _not_answered(check, "classify")
    if missing:
        return _result(check, False, f"{missing} of {arr.size} points have no label yet (None).", answered=False)
    unstable = arr == "unstable"
    disc, cont = sweep.predicted_rates()
    if np.array_equal(unstable, cont > 0) and np.any((cont > 0) & (disc < 0)):
        return _result(check, False, "your labels are exactly C's prediction (unstable where C < 0): label each "
                       "point from its measured slope instead.")
    length = sweep.window[1] - sweep.window[0]
    clear_up = disc * length >= 1.0
    clear_down = disc * length <= -1.0
    false_alarm = unstable & clear_down
    missed = ~unstable & clear_up
    details = []
    sets = sweep.settings or {}
    if sets.get("betas_passed") and sets.get("first_point"):
        b0, g0 = sets["first_point"]
        if np.allclose(sets["betas_passed"], (b0, g0)) and b0 != g0:
            details.append("Your sweep ran with beta and gamma exchanged (KAdam got betas=(beta, gamma)); fix "
                           "make_optimizer and run the sweep again.")
    if sets.get("eps", 0.0) != 0.0:
        details.append(f"Your sweep ran with eps={sets['eps']}: at small beta sqrt(v_n) falls below eps inside the "
                       "window and stops the growth. Use eps=0 and run the sweep again.")
    # labels that fit the mirrored law (beta and gamma exchanged) better
    B, G = np.meshgrid(sweep.betas, sweep.gammas, indexing="ij")
    with np.errstate(divide="ignore", invalid="ignore"):
        mirrored = np.where(G > 0, np.log(B) - 0.5 * np.log(np.where(G > 0, G, 1.0)), np.inf)
    m_errors = int(np.sum(unstable & (mirrored * length <= -1)) + np.sum(~unstable & (mirrored * length >= 1)))
    errors = int(false_alarm.sum() + missed.sum())
    band = (cont > 0) & (disc < 0)  # C < 0 but gamma^2 < beta
    c_disagree = int(np.sum(~unstable & (cont > 0)) + np.sum(unstable & (cont <= 0)))
    in_band_stable = int(np.sum(~unstable & band))
    summary = (f"{int(unstable.sum())} of {arr.size} points labelled unstable; C = 0 predicts a different label "
               f"at {c_disagree} of the {arr.size} points")
    if errors == 0:
        expl = [summary + "."]
        if in_band_stable:
            expl.append(f"{in_band_stable} of those are stable points with C < 0: they lie between C = 0 and "
                        "gamma^2 = beta, where the continuous-time law predicts growth but the exact discrete bound "
                        "stays finite. C comes from a first-order expansion in 1 - beta and 1 - gamma, accurate only "
                        "near (1, 1).")
        if c_disagree > in_band_stable:
            expl.append(f"The remaining {c_disagree - in_band_stable} point(s) lie so close to the boundary that "
                        "they grow or shrink by less than a factor e over the window.")
        near = int(np.sum(~(clear_up | clear_down)))
        if near:
            expl.append(f"{near} points in all are that close to the boundary; either label is accepted there.")
        return _result(check, True, "your labels agree with the exact discrete law at every clear point.",
                       details + expl)
    if m_errors * 2 < errors and errors >= 3:
        details.insert(0, "Your labels fit the law much better with beta and gamma exchanged: check the notation "
                          "(paper: beta second moment, gamma first; KAdam betas=(gamma, beta)).")
    if false_alarm.any():
        i, j = np.argwhere(false_alarm)[0]
        details.append(f"{int(false_alarm.sum())} point(s) labelled unstable where gamma^2 < beta, e.g. beta="
                       f"{_g(sweep.betas[i])}, gamma={_g(sweep.gammas[j])}: the exact discrete bound (Assignment 1) is "
                       "finite there, so ||u_n|| cannot keep growing. Is your threshold above the noise of the "
                       "measured slopes, and does the window skip the start of training?")
    if missed.any():
        i, j = np.argwhere(missed)[0]
        details.append(f"{int(missed.sum())} point(s) labelled stable where gamma^2 > beta and the growth over the "
                       f"window is at least a factor e, e.g. beta={_g(sweep.betas[i])}, gamma={_g(sweep.gammas[j])} "
                       f"(expected rate {_g(disc[i, j])} per step): is the threshold too high?")
    return _result(check, False, f"{errors} clear point(s) labelled against the evidence; " + summary + ".", details)


def check_boundary(estimates, *, tolerance: float = 0.02, threshold: float | None = None) -> CheckResult:
    """Check boundary estimates ``{beta: gamma*}`` (gamma* where growth starts at that beta) against
    C = 0 (gamma = 2 beta / (1 + beta)) and the exact discrete law, and explain disagreements.

    ``tolerance``: the resolution of your estimates (e.g. the grid spacing in gamma).
    ``threshold``: the slope per step above which you called a point unstable, if you used one;
    growth faster than it starts at gamma = sqrt(beta) exp(threshold), a little above the law's
    boundary gamma = sqrt(beta). An estimate passes when it lies within ``tolerance`` of the
    stretch between these two. A value of None for a beta means "no boundary found" and is
    reported, not failed.
    """
    check = "check_boundary"
    validate.Real(0.0, 1.0, lo_open=True, hi_open=True, meaning="the resolution in gamma")("tolerance", tolerance)
    validate.Optional(validate.Real(0.0, 1.0, hi_open=True, meaning="a growth rate per step: the slope above which "
                                    "you call a point unstable"))("threshold", threshold)
    shift = math.exp(threshold or 0.0)
    if estimates is None:
        return _not_answered(check, "estimate_boundary")
    if not isinstance(estimates, Mapping):
        raise TypeError(f"estimates must be a dict {{beta: gamma}}; got {type(estimates).__name__}")
    if not estimates:
        raise ValueError("estimates is empty: give one entry per beta of your sweep, {beta: gamma where growth starts}")

    def complex_note(x) -> str:
        return (", a complex number: beta and gamma are real" if isinstance(x, numbers.Complex)
                and not isinstance(x, numbers.Real) else "")

    items = []
    for b, g in estimates.items():
        if isinstance(b, bool) or not isinstance(b, numbers.Real) or not 0 < b < 1:
            raise ValueError(f"each key must be a beta in (0, 1); got {b!r}{complex_note(b)}")
        if g is not None and (isinstance(g, bool) or not isinstance(g, numbers.Real) or not 0 <= g <= 1):
            raise ValueError(f"each value must be a gamma in [0, 1] or None; got {g!r}{complex_note(g)} for beta={b}")
        items.append((float(b), None if g is None else float(g)))
    items.sort()
    found = [(b, g) for b, g in items if g is not None]
    if not found:
        return _result(check, False, "every estimate is still None.", answered=False)
    g_c = {b: 2 * b / (1 + b) for b, _ in found}
    g_d = {b: math.sqrt(b) for b, _ in found}
    g_t = {b: min(1.0, math.sqrt(b) * shift) for b, _ in found}  # where growth faster than the threshold starts
    lines, bad_low, bad_high = [], [], []
    for b, g in found:
        line = f"beta={_g(b)}: yours {g:.3f}, C = 0 gives {g_c[b]:.3f}, gamma^2 = beta gives {g_d[b]:.3f}"
        if threshold:
            line += f" (growth faster than your threshold from {g_t[b]:.3f})"
        lines.append(line + ".")
        if g < g_d[b] - tolerance:
            bad_low.append(b)
        elif g > g_t[b] + tolerance:
            bad_high.append(b)
    # the notation trap: {gamma: beta} instead of {beta: gamma} puts the values on beta = gamma^2
    if len(found) >= 2 and all(abs(g - b * b) <= tolerance for b, g in found):
        return _result(check, False, "your estimates lie on beta = gamma^2 read the other way round: did you give "
                       "{gamma: beta} instead of {beta: gamma}? (Notation trap: beta is the second-moment decay.)",
                       lines)
    if all(abs(g - g_c[b]) < 1e-6 for b, g in found) and any(abs(g_c[b] - g_d[b]) > tolerance for b, _ in found):
        return _result(check, False, "your estimates are exactly C = 0's prediction: read the boundary off your "
                       "measured labels instead of computing it from C.", lines)
    if bad_low or bad_high:
        details = list(lines)
        if bad_low:
            details.append("Below gamma^2 = beta the exact discrete bound is finite, so no run can grow there for "
                           f"long: at beta in {[round(b, 3) for b in bad_low]} your boundary is too low. Look at the "
                           "slopes you called unstable there: are they above the noise?")
        if bad_high:
            details.append(f"At beta in {[round(b, 3) for b in bad_high]} your boundary is too high: points above "
                           "gamma^2 = beta grow like exp(rate n) with a small rate just above it. A lower threshold "
                           "(or a longer window) finds them."
                           + ("" if threshold is not None else " If you used a threshold, pass it as threshold=... "
                              "so the check can allow for it."))
        return _result(check, False, "your boundary disagrees with the exact discrete law by more than the tolerance "
                       f"({tolerance:g}).", details)
    explain = []
    if threshold and max(g_t[b] - g_d[b] for b, _ in found) > 2 * tolerance:
        explain.append(f"Your threshold {threshold:g} per step moves the detectable boundary up by as much as "
                       f"{max(g_t[b] - g_d[b] for b, _ in found):.3f}: a threshold closer to the noise of the "
                       "measured slopes gives a sharper estimate.")
    far = [b for b, _ in found if abs(g_c[b] - g_d[b]) > tolerance]
    close = [b for b, _ in found if abs(g_c[b] - g_d[b]) <= tolerance]
    if far:
        explain.append(f"C = 0 misses your boundary at beta in {[round(b, 3) for b in far]}: between the two curves "
                       "C < 0, yet gamma^2 < beta, so the exact discrete bound is finite and nothing grows. C is the "
                       "first-order (continuous-time) version of the discrete law; its error grows as beta moves away "
                       "from 1.")
    if close:
        explain.append(f"At beta in {[round(b, 3) for b in close]} the two laws are closer than your resolution: "
                       "there C = 0 predicts the boundary as well as the exact law.")
    missing = [b for b, g in items if g is None]
    if missing:
        explain.append(f"No estimate (None) at beta in {[round(b, 3) for b in missing]}.")
    return _result(check, True, f"your boundary follows the exact discrete law gamma^2 = beta within {tolerance:g}.",
                   lines + explain)

