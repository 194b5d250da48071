"""The checking engine of the course assignments (kadam_edu.assignments.engine): the result object,
the callable check, and how student code is run: a time limit for all of a check's calls together,
anything it raises reported as a failed check, non-real or ill-shaped answers explained (issue 10, item 11).
Every check that runs student code is exercised, so each rule holds for all of them."""

import math
import signal
import threading
import time

import numpy as np
import pytest
import torch

from _assignment_answers import (adam, adam_updates, adaptive_normalization, assert_fails, discrete_bound,  # tests/
                                 discrete_rate, extremal_gradients, kadam, kadam_direction, log_slope, make_optimizer,
                                 rmsprop, with_direction)
from kadam_edu import Level, assignments
from kadam_edu.assignments import CheckResult, FunctionalOptimizer


def test_check_result_prints_and_renders():
    ok = CheckResult("check_x", True, "fine.\ndetail one\ndetail_two *x*")
    assert bool(ok) and ok.status == "passed"
    assert str(ok).startswith("[PASSED] check_x: fine.") and "  - detail one" in str(ok) and repr(ok) == str(ok)
    md = ok._repr_markdown_()
    assert "**check\\_x: passed.**" in md and "- detail\\_two \\*x\\*" in md
    bad = CheckResult("check_y", False, "nope")
    assert not bad and bad.status == "failed" and "[FAILED]" in str(bad)


@pytest.mark.parametrize("check", [assignments.check_discrete_bound, assignments.check_adam_updates,
                                   assignments.check_extremal_sequence, assignments.check_discrete_rate,
                                   assignments.check_adaptive_normalization, assignments.check_rmsprop,
                                   assignments.check_adam, assignments.check_kadam, assignments.check_make_optimizer,
                                   assignments.check_log_slope])
def test_checks_refuse_a_value_instead_of_a_function(check):
    with pytest.raises(TypeError, match="itself"):
        check(1.25)


def forever(*args, **kwargs):
    while True:
        pass


def _complex_direction(g, states, n, levels):
    return kadam_direction(g, states, n, levels).to(torch.complex128)


def _complex_step(x, m, v, n, *, gamma, beta):
    u, m, v = adaptive_normalization(x, m, v, n, gamma=gamma, beta=beta)
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
    "check_adaptive_normalization": (assignments.check_adaptive_normalization, adaptive_normalization, _complex_step),
    "check_rmsprop": (assignments.check_rmsprop, rmsprop,
                      lambda p, *, lr, beta: FunctionalOptimizer(p, lr=lr, levels=[Level(0.0, beta)],
                                                                 direction=_complex_direction)),
    "check_adam": (assignments.check_adam, adam,
                   lambda p, *, lr, beta, gamma: FunctionalOptimizer(p, lr=lr, levels=[Level(gamma, beta)],
                                                                     direction=_complex_direction)),
    "check_kadam": (assignments.check_kadam, kadam, with_direction(_complex_direction)),
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
    assert_fails(result, "took longer than 0.5 s", "timeout=")
    assert elapsed < 1.5, elapsed


@pytest.mark.parametrize("check,fn,where", [
    (assignments.check_discrete_bound, lambda n, b, g: forever() if n == 1000 else discrete_bound(n, b, g),
     "discrete_bound(n=1000, beta=0.999, gamma=0.9)"),
    (assignments.check_discrete_bound, lambda n, b, g: forever() if n == 2000 else discrete_bound(n, b, g),
     "discrete_bound(n=2000, beta=0.5, gamma=0.9)"),  # only the overflow note calls n = 2000
    (assignments.check_kadam, with_direction(lambda g, s, n, levels: forever() if n == 3 else kadam_direction(g, s, n, levels)),
     "kadam"),
    (assignments.check_adaptive_normalization,
     lambda x, m, v, n, *, gamma, beta: (forever() if n == 5
                                         else adaptive_normalization(x, m, v, n, gamma=gamma, beta=beta)),
     "n=5"),
])
def test_a_loop_that_starts_late_is_stopped_too(check, fn, where):
    result, elapsed = _timed(check, fn, timeout=0.5)
    assert_fails(result, "took longer than 0.5 s", where)
    assert elapsed < 1.5, elapsed


def test_the_time_limit_covers_all_calls_together():
    def slow(n, beta, gamma):  # 16 test points at 0.1 s each: every call is short, all of them are not
        time.sleep(0.1)
        return discrete_bound(n, beta, gamma)

    result, elapsed = _timed(assignments.check_discrete_bound, slow, timeout=0.5)
    assert_fails(result, "took longer than 0.5 s", "all")
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
        assert_fails(result, "took longer than 0.5 s")
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
    assert_fails(box["result"], "took longer than 0.5 s", "still running")
    assert box["elapsed"] < 1.5, box["elapsed"]


def test_the_time_limit_restores_the_previous_alarm():
    fired = []
    handler = lambda signum, frame: fired.append(signum)  # noqa: E731
    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        assert_fails(assignments.check_discrete_rate(forever, timeout=0.3), "took longer than 0.3 s")
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
    assert_fails(result, shown)


@pytest.mark.parametrize("check", [assignments.check_rmsprop, assignments.check_adam, assignments.check_kadam])
@pytest.mark.parametrize("fn,shown", [(_exits, "SystemExit"), (_overflows, "OverflowError")])
def test_anything_raised_inside_step_is_a_failed_check(check, fn, shown):
    def factory(params, *, lr, **hyper):
        levels = hyper.get("levels") or [Level(gamma=hyper.get("gamma", 0.0), beta=hyper["beta"])]
        return FunctionalOptimizer(params, lr=lr, levels=levels, direction=fn)

    assert_fails(check(factory), shown)


def test_exit_hints_say_what_happened():
    assert_fails(assignments.check_discrete_bound(_exits), "SystemExit", "sys.exit")
    assert_fails(assignments.check_discrete_rate(_recurses), "RecursionError", "base case")
    assert_fails(assignments.check_log_slope(_out_of_memory), "MemoryError", "memory")


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
    assert_fails(result, "complex")
    assert "real" in result.message.lower()


@pytest.mark.parametrize("name", STUDENT_CHECKS)
def test_reference_answers_still_pass_with_a_time_limit(name):
    check, reference, _ = STUDENT_CHECKS[name]
    assert check(reference).passed
    assert check(reference, timeout=20.0).passed


def test_complex_tensors_and_scalars_are_refused_too():
    assert_fails(assignments.check_discrete_rate(lambda b, g: torch.tensor(discrete_rate(b, g)).to(torch.complex128)),
                  "complex", "real")
    assert_fails(assignments.check_discrete_bound(lambda n, b, g: discrete_bound(n, b, g) + 0j), "complex", "real")
    assert_fails(assignments.check_log_slope(lambda mu, a, b: np.complex128(log_slope(mu, a, b))), "complex", "real")
    assert_fails(assignments.check_adam_updates(lambda G, b, g: torch.tensor(adam_updates(G, b, g)).to(torch.cfloat)),
                  "complex", "real")

    def complex_moments(x, m, v, n, *, gamma, beta):
        u, m, v = adaptive_normalization(x, m, v, n, gamma=gamma, beta=beta)
        return u, m.to(torch.complex128), v

    assert_fails(assignments.check_adaptive_normalization(complex_moments), "complex", "real", "m")


def test_wrong_types_and_shapes_are_explained():
    shape = (12, 3)
    assert_fails(assignments.check_adam_updates(lambda G, b, g: adam_updates(G, b, g).astype(str)), "str")
    assert_fails(assignments.check_adam_updates(lambda G, b, g: [None] * len(G)), "none")
    assert_fails(assignments.check_adam_updates(lambda G, b, g: adam_updates(G, b, g) > 0), "bool")
    assert_fails(assignments.check_adam_updates(lambda G, b, g: adam_updates(G, b, g).reshape(-1)), "shape",
                  str(shape))
    assert_fails(assignments.check_discrete_bound(lambda n, b, g: np.array([str(discrete_bound(n, b, g))])), "str")
    assert_fails(assignments.check_discrete_bound(lambda n, b, g: 10**400), "too large")  # float() overflows
    assert_fails(assignments.check_discrete_rate(lambda b, g: 10**400), "too large")
    assert_fails(assignments.check_discrete_rate(lambda b, g: torch.tensor(True)), "bool")
    assert_fails(assignments.check_log_slope(lambda mu, a, b: [log_slope(mu, a, b)] * 2), "shape")

    def scalar_m(x, m, v, n, *, gamma, beta):
        u, m, v = adaptive_normalization(x, m, v, n, gamma=gamma, beta=beta)
        return u, m.sum(), v

    assert_fails(assignments.check_adaptive_normalization(scalar_m), "m", "shape")
    assert_fails(assignments.check_kadam(with_direction(lambda g, s, n, levels: "u")), "str", "tensor")
    assert_fails(assignments.check_make_optimizer(lambda p, *, beta, gamma, lr: "KAdam"), "str", "kadam")


def test_nan_and_inf_where_a_finite_value_is_required_are_explained():
    assert_fails(assignments.check_discrete_bound(lambda n, b, g: math.nan), "nan", "0/0")
    assert_fails(assignments.check_discrete_bound(lambda n, b, g: math.inf), "inf", "overflow")
    assert_fails(assignments.check_discrete_rate(lambda b, g: math.nan), "nan", "0/0")
    assert_fails(assignments.check_adam_updates(lambda G, b, g: np.full(np.shape(G), np.nan)), "nan", "0/0")
    assert_fails(assignments.check_adaptive_normalization(
        lambda x, m, v, n, *, gamma, beta: (x / 0.0, *adaptive_normalization(x, m, v, n, gamma=gamma, beta=beta)[1:])),
        "inf", "division by zero")
    assert_fails(assignments.check_log_slope(lambda mu, a, b: math.inf), "inf", "overflow")
    assert_fails(assignments.check_kadam(with_direction(lambda g, s, n, levels: kadam_direction(g, s, n, levels) * math.nan)),
                  "nan", "0/0")
