r"""Self-checks and helpers for the book's course assignments (``book/assignments/``).

Each assignment asks students to implement a few equations of the paper. The ``check_*``
functions test an implementation against :mod:`kadam_edu` on several random and adversarial
inputs and say what is wrong (which input, which value, which likely mistake) without
showing the formula.

==========================  ==============================================================
Assignment 1 (discrete      :func:`check_discrete_bound`, :func:`check_adam_updates`,
bound)                      :func:`check_extremal_sequence`, :func:`check_discrete_rate`,
                            :func:`gradient_families`
Assignment 2 (adaptive      :func:`check_adaptive_normalisation`, :func:`check_rmsprop`,
normalisation, App. R)      :func:`check_adam`, :func:`check_kadam`, :class:`FunctionalOptimizer`
Assignment 3 (stability     :func:`check_make_optimizer`, :func:`check_log_slope`,
boundary)                   :func:`check_classification`, :func:`check_boundary`,
                            :func:`boundary_settings`, :func:`boundary_sweep`,
                            :func:`plot_boundary`
==========================  ==============================================================

Conventions
-----------
* A check returns a :class:`CheckResult` (``passed``, ``message``, ``answered``); it never
  raises because of the student's code, only for misuse of the check itself (``TypeError`` /
  ``ValueError``, e.g. a number where a function is expected, or a bad ``timeout``).
  Everything the student's code raises is reported as a failed check, ``SystemExit``,
  ``RecursionError``, ``MemoryError`` and other ``BaseException`` subclasses included;
  only ``KeyboardInterrupt`` (the student pressing stop) is passed on.
* Time limit: every check that calls the student's code takes ``timeout=`` (seconds, for all
  of its calls together; default 10 s, 30 s for the optimizer checks of Assignment 2). Code
  that runs longer fails the check with "your function took longer than N s". In the main
  thread on Unix (a Jupyter kernel, a script) SIGALRM stops the code: a Python loop stops at
  once, but a single C call that never returns to the interpreter (one huge numpy or torch
  operation) cannot be interrupted this way. A previous SIGALRM handler and timer are put
  back afterwards (an earlier timer still goes off on time). Elsewhere (another thread,
  Windows) the code runs in a daemon thread that the check stops waiting for: that thread
  cannot be stopped and keeps running until the code returns.
* An answer must be real: complex numbers, arrays or tensors (often a fractional power of
  a negative number), booleans, strings, ``None`` entries and wrong shapes fail with an
  explanation, and so do nan or inf where the right answer is finite.
* A student function that returns ``None`` (the notebooks' placeholder body) counts as
  "not answered yet": the result says so and what to do, and ``passed`` is False.
* Notation trap: ``beta`` is the paper's second-moment decay and ``gamma`` the first-moment
  decay; :class:`~kadam_edu.KAdam` takes ``betas=(gamma, beta)`` like torch.
"""

from __future__ import annotations

import functools
import math
import numbers
import signal
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from kadam_edu import bounds
from kadam_edu.optim import KAdam, Level, _check_levels, kadam_levels

__all__ = [
    "CheckResult",
    "NotAnswered",
    # Assignment 1
    "check_discrete_bound",
    "check_adam_updates",
    "check_extremal_sequence",
    "check_discrete_rate",
    "gradient_families",
    # Assignment 2
    "FunctionalOptimizer",
    "check_adaptive_normalisation",
    "check_rmsprop",
    "check_adam",
    "check_kadam",
    # Assignment 3
    "RareFeatureProblem",
    "BoundarySweep",
    "BOUNDARY_PRESETS",
    "boundary_settings",
    "boundary_sweep",
    "check_make_optimizer",
    "check_log_slope",
    "check_classification",
    "check_boundary",
    "plot_boundary",
]


# =====================================================================================
# results
# =====================================================================================


class NotAnswered(Exception):
    """Raised inside a helper when a student function returned ``None`` (its placeholder)."""


@dataclass(frozen=True)
class CheckResult:
    """What a self-check found.

    check: the name of the function checked; passed: True only for a correct answer;
    message: a headline, then details one per line; answered: False while the student
    function still returns ``None``. ``bool(result)`` is ``passed``; Jupyter shows it as
    markdown, ``print`` as text.
    """

    check: str
    passed: bool
    message: str
    answered: bool = True

    @property
    def status(self) -> str:
        """"passed", "failed" or "not answered yet"."""
        if not self.answered:
            return "not answered yet"
        return "passed" if self.passed else "failed"

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        head, *rest = self.message.split("\n")
        lines = [f"[{self.status.upper()}] {self.check}: {head}"] + [f"  - {line}" for line in rest]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_markdown_(self) -> str:
        icon = {"passed": "\u2705", "failed": "\u274c", "not answered yet": "\u23f3"}[self.status]
        head, *rest = self.message.split("\n")
        md = f"{icon} **{_md(self.check)}: {self.status}.** {_md(head)}"
        if rest:
            md += "\n\n" + "\n".join(f"- {_md(line)}" for line in rest)
        return md


def _md(text: str) -> str:
    """Escape the characters that markdown would read as emphasis or markup."""
    for ch in ("\\", "*", "_", "`", "<", ">", "#", "|", "$"):
        text = text.replace(ch, "\\" + ch)
    return text


def _result(check: str, passed: bool, headline: str, details=(), answered: bool = True) -> CheckResult:
    return CheckResult(check=check, passed=passed, message="\n".join([headline, *details]), answered=answered)


def _not_answered(check: str, what: str) -> CheckResult:
    return _result(check, False, f"{what} still returns None. Replace the placeholder body with your code, "
                   "run the cell, then run this check again.", answered=False)


def _g(x) -> str:
    """A number for a message (6 significant digits; nan/inf spelled out)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return repr(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.6g}"


def _pair(a, b) -> tuple[str, str]:
    """Two numbers for "yours X, expected Y", with enough digits to tell them apart."""
    for digits in (6, 10, 14, 17):
        fa, fb = (f"{float(x):.{digits}g}" if np.isfinite(x) else _g(x) for x in (a, b))
        if fa != fb:
            return fa, fb
    return fa, fb


def _require_callable(check: str, fn, what: str) -> None:
    if not callable(fn):
        raise TypeError(
            f"{check} expects your function {what} itself (a callable, without calling it); "
            f"got {fn!r} of type {type(fn).__name__}"
        )


def _describe_exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _exception_hints(exc: BaseException) -> list[str]:
    """What an exception of the student's code usually means, for the kinds a check cannot guess from context."""
    if isinstance(exc, SystemExit):
        return ["SystemExit comes from sys.exit(), exit() or quit(): a function under test returns its answer (or "
                "raises an exception); it does not end the program."]
    if isinstance(exc, RecursionError):
        return ["Your function calls itself without end: does the recursion have a base case that every call "
                "reaches? A loop is safer for long sequences."]
    if isinstance(exc, MemoryError):
        return ["Your code ran out of memory: is an array or list much bigger than it needs to be (e.g. one entry "
                "per step up to a large n, or a matrix where a vector does)?"]
    if isinstance(exc, OverflowError):
        return ["A number became too large for a float (beyond about 1.8e308), e.g. in math.exp or a power of a "
                "large number. Working with logarithms avoids it."]
    return []


def _agree(a, b, rtol: float = 1e-9, atol: float = 0.0) -> bool:
    """Element-wise agreement of two float arrays, nan matching nan and inf matching inf."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return False
    both_nan = np.isnan(a) & np.isnan(b)
    same_inf = np.isinf(a) & np.isinf(b) & (np.sign(a) == np.sign(b))
    with np.errstate(invalid="ignore"):
        close = np.isfinite(a) & np.isfinite(b) & (np.abs(a - b) <= atol + rtol * np.abs(b))
    return bool(np.all(both_nan | same_inf | close))


def _nonfinite_note(value) -> list[str]:
    """Why the student's value is nan or inf where the right answer is finite ([] when it is finite)."""
    value = np.asarray(value, dtype=float)
    if np.isnan(value).any():
        return ["nan where a finite number belongs: nan comes from 0/0, inf - inf, 0 * inf or a nan that went in "
                "(e.g. an np.empty entry never written). Look for a division by a quantity that is 0 there."]
    if np.isinf(value).any():
        return ["inf where a finite number belongs: inf comes from a division by zero or an overflow (a float "
                "beyond about 1.8e308, e.g. a large power); working with logarithms avoids overflow."]
    return []


_COMPLEX_HINT = ("complex numbers come from a fractional power of a negative number (in Python (-0.5) ** 0.5 is "
                 "complex, where math.sqrt raises an error) or from complex inputs: check the sign of what you take "
                 "a root or power of")


def _refuse_complex_or_bool(value: str, dtype) -> None:
    """TypeError when ``dtype`` is complex or boolean; ``value`` says what was returned."""
    if np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"returned {value}, but the answer is real: {_COMPLEX_HINT}")
    if np.issubdtype(dtype, np.bool_):
        raise TypeError(f"returned {value}, but the answer is a number, not a bool")


def _to_float(value) -> float:
    """A student's scalar answer as a float.

    None -> NotAnswered; anything but one real number (a str, a bool, a complex number, a
    tensor/array/list of another size, an int beyond float range) -> TypeError saying what
    was returned. nan and inf pass (they are values; the checks explain them).
    """
    if value is None:
        raise NotAnswered
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"returned a tensor of shape {tuple(value.shape)}, expected one number")
        value = value.item()
    elif isinstance(value, (np.ndarray, list, tuple)):
        arr = value if isinstance(value, np.ndarray) else np.asarray(value, dtype=object)
        if arr.size != 1:
            raise TypeError(f"returned a {type(value).__name__} of shape {arr.shape}, expected one number")
        value = arr.reshape(-1)[0]
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        _refuse_complex_or_bool(f"the complex number {value}", np.complex128)
    if isinstance(value, (bool, np.bool_)):
        _refuse_complex_or_bool(repr(value), np.bool_)
    if not isinstance(value, numbers.Real):
        raise TypeError(f"returned {value!r} of type {type(value).__name__}, expected a number")
    try:
        return float(value)
    except OverflowError:
        raise TypeError("returned a number too large to be a float (beyond about 1.8e308): work with floats "
                        "(or logarithms) rather than exact integers") from None


def _to_array(value, shape) -> np.ndarray:
    """A student's array answer as float64 numpy of ``shape``.

    None -> NotAnswered; anything but real numbers of that shape (complex, bool or str
    entries, None entries, a ragged list, another shape) -> TypeError saying what was returned.
    """
    if value is None:
        raise NotAnswered
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        arr = (value.double() if value.dtype == torch.bfloat16 else value).numpy()
    else:
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"returned a {type(value).__name__} that is not an array of numbers ({exc})") from None
    what = f"an array of dtype {arr.dtype}"
    _refuse_complex_or_bool(what, arr.dtype)
    if arr.dtype == object:
        for item in arr.flat:
            if item is None:
                raise TypeError("returned an array with None in it, where every entry must be a number")
            if isinstance(item, numbers.Complex) and not isinstance(item, numbers.Real):
                _refuse_complex_or_bool(f"an array with the complex entry {item}", np.complex128)
            if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Real):
                raise TypeError(f"returned an array with the entry {item!r} of type {type(item).__name__}, where "
                                "every entry must be a number")
        try:
            arr = arr.astype(float)
        except OverflowError:
            raise TypeError("returned numbers too large to be floats (beyond about 1.8e308)") from None
    elif arr.dtype.kind not in "fiu":
        kind = "str" if arr.dtype.kind in "US" else arr.dtype.kind
        raise TypeError(f"returned {what} ({kind}), expected numbers")
    if arr.shape != tuple(shape):
        raise TypeError(f"returned an array of shape {arr.shape}, expected shape {tuple(shape)}")
    return arr.astype(float)


def _quiet(fn, *args, **kwargs):
    """Call a student's function with numpy/python warnings silenced (they become values)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ---- running the student's code: a time limit, everything it raises caught ----------------


class _TimeUp(BaseException):
    """The time limit went off inside the student's code. A BaseException, so that the student's own
    ``except Exception:`` does not swallow it. ``still_running``: the code could not be stopped."""

    def __init__(self, still_running: bool = False):
        super().__init__()
        self.still_running = still_running


class _Raised(Exception):
    """The student's code, called as ``what``, raised ``error`` (anything but KeyboardInterrupt)."""

    def __init__(self, what: str, error: BaseException):
        super().__init__(f"{what} raised {_describe_exception(error)}")
        self.what = what
        self.error = error


class _TimedOut(Exception):
    """The student's code ran past the check's time limit; ``result`` is the failed check to return."""

    def __init__(self, result: CheckResult):
        super().__init__(result.message)
        self.result = result


_ALARM_REPEAT = 0.05  # s: the alarm goes off again until the call ends, in case the code swallowed it


def _with_alarm(fn, args, kwargs, seconds: float, outer: tuple[float, float]):
    """(value, None) or (None, what it raised) of ``fn(*args, **kwargs)``, stopped by SIGALRM after
    ``seconds`` (raises _TimeUp); main thread only.

    A Python loop stops at its next bytecode; a C call that never returns to the interpreter
    cannot be interrupted. ``outer``: the (delay, interval) of a timer set before, due after
    ``seconds``; it gets its handler back and its remaining time.
    """
    state = {"armed": True, "fired": False}

    def on_alarm(signum, frame):
        if state["armed"]:
            state["fired"] = True
            raise _TimeUp

    outer_handler = signal.signal(signal.SIGALRM, on_alarm)
    start = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds, _ALARM_REPEAT)
        try:
            value, error = fn(*args, **kwargs), None
        except _TimeUp:
            raise
        except BaseException as exc:  # noqa: BLE001 - the student's; the caller decides
            value, error = None, exc
        finally:
            state["armed"] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, outer_handler)
        if outer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, max(outer[0] - (time.monotonic() - start), 1e-6), outer[1])
    if state["fired"]:  # the code caught the alarm and returned late
        raise _TimeUp
    return value, error


def _in_thread(fn, args, kwargs, seconds: float):
    """(value, None) or (None, what it raised) of ``fn(*args, **kwargs)`` run in a daemon thread, waited
    for ``seconds`` at most (then _TimeUp with ``still_running``: a thread cannot be stopped from
    outside, it runs until the code returns). What interrupts the wait (another SIGALRM handler,
    KeyboardInterrupt) propagates."""
    box = {}

    def target():
        try:
            with np.errstate(all="ignore"):
                box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=target, name="kadam_edu student code", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise _TimeUp(still_running=True)
    return box.get("value"), box.get("error")


def _time_limited(fn, args, kwargs, seconds: float):
    """(value, None) or (None, what it raised) of ``fn(*args, **kwargs)`` within ``seconds`` (else
    _TimeUp): SIGALRM where it can interrupt the code and be given back afterwards (Unix, main thread,
    no earlier timer due first), a thread otherwise. Anything else raised is not the student's."""
    if (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGALRM) is not None):  # None: a handler not set from Python
        outer = signal.getitimer(signal.ITIMER_REAL)
        if not 0 < outer[0] <= seconds:
            return _with_alarm(fn, args, kwargs, seconds, outer)
    return _in_thread(fn, args, kwargs, seconds)


class _StudentCode:
    """One check's calls of the student's code, all through :meth:`call`: warnings silenced, all calls
    together within ``timeout`` seconds, anything raised caught (KeyboardInterrupt is passed on).

    ``timeout`` is validated here, before any student code runs (ValueError).
    """

    def __init__(self, check: str, timeout):
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not 0 < timeout < math.inf:
            raise ValueError(f"{check}: timeout must be a positive, finite number of seconds (the time your code "
                             f"gets for all of the check's calls together); got {timeout!r}")
        self.check = check
        self.timeout = float(timeout)
        self.spent = 0.0

    def call(self, what: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``: its value, or _Raised (it raised) or _TimedOut (the time is up).

        ``what``: the call as a message shows it, e.g. ``"discrete_bound(n=0, beta=0.9, gamma=0.99)"``.
        """
        earlier = self.spent
        if earlier >= self.timeout:
            raise _TimedOut(self._late(what, earlier, still_running=False))
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                value, error = _time_limited(fn, args, kwargs, self.timeout - earlier)
        except _TimeUp as up:
            raise _TimedOut(self._late(what, earlier, up.still_running)) from None
        finally:
            self.spent += time.perf_counter() - start
        if error is None:
            return value
        if isinstance(error, KeyboardInterrupt):  # the student pressed stop
            raise error
        raise _Raised(what, error) from error  # SystemExit and the like included

    def _late(self, what: str, earlier: float, still_running: bool) -> CheckResult:
        share = f" ({earlier:.2g} s of them went to earlier calls)" if earlier >= 0.01 else ""
        details = ["Is there a loop that never ends (a while loop whose condition stays true, a recursion without "
                   "a base case), or a wait for input?",
                   f"The {_g(self.timeout)} s cover all of this check's calls of your code together{share}. If your "
                   f"code is only slow, give it more time: {self.check}(..., timeout=SECONDS)."]
        if still_running:
            details.append("The check could not stop your code (it was not run from the main thread), so it is still "
                           "running in the background, using a CPU core: restart the kernel to stop it.")
        return _result(self.check, False, f"your function took longer than {_g(self.timeout)} s and was stopped, "
                       f"in {what}.", details)


def _stops_at_time_limit(check_fn):
    """Decorator: a check whose student code ran out of time returns the failed result (see _StudentCode)."""

    @functools.wraps(check_fn)
    def check(*args, **kwargs):
        try:
            return check_fn(*args, **kwargs)
        except _TimedOut as late:
            return late.result

    return check


def _args(names, values) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(names, values))


def _collect(run, what, fn, cases, convert, names):
    """Call ``fn(*case)`` for every case through ``run`` (a _StudentCode); returns (values, raised, early)
    where ``early`` is a CheckResult to return at once (not answered, or a result of the wrong type),
    else None. ``raised`` lists (index, exception); those values are None. A timeout propagates."""
    values, raised, nones = [], [], []
    for i, case in enumerate(cases):
        call = f"{what}({_args(names, _shown(case))})"
        try:
            value = run.call(call, fn, *case)
        except _Raised as err:
            raised.append((i, err.error))
            values.append(None)
            continue
        if value is None:
            nones.append(i)
            values.append(None)
            continue
        try:
            values.append(convert(value, case))
        except TypeError as err:
            return None, None, _result(run.check, False, f"{call} {err}.")
    if len(nones) == len(cases):
        return None, None, _not_answered(run.check, what)
    if nones:
        return None, None, _result(run.check, False, f"{what} returns None for {_args(names, _shown(cases[nones[0]]))} "
                                   f"({len(nones)} of {len(cases)} test inputs): every input needs a number.")
    return values, raised, None


def _shown(case):
    """A case for a message: arrays are shown by shape."""
    return tuple(f"<array of shape {c.shape}>" if isinstance(c, np.ndarray) else c for c in case)


@dataclass(frozen=True)
class _Mistake:
    """A plausible wrong answer: ``value(*case)`` computes it; ``hint`` explains it."""

    name: str
    value: Callable
    hint: str


def _match_mistake(mistakes, cases, student, reference, compute=None, skip=()):
    """The first mistake whose values agree with the student's on every case, else None.

    A mistake only counts when it differs from the reference somewhere the student does too.
    ``compute(mistake, case)`` returns the mistake's value (default ``mistake.value(*case)``);
    cases whose index is in ``skip`` (where the student's code raised) are left out.
    """
    wrong = [not _agree(s, r) for s, r in zip(student, reference)]
    for mistake in mistakes:
        values = []
        for k, case in enumerate(cases):
            if k in skip:
                values.append(None)
                continue
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    values.append(compute(mistake, case) if compute else mistake.value(*case))
            except (ArithmeticError, ValueError):
                values.append(None)
        usable = [i for i, v in enumerate(values) if v is not None]
        if len(usable) < 2:
            continue
        same = all(_agree(student[i], values[i]) for i in usable)
        if same and any(wrong[i] and not _agree(values[i], reference[i]) for i in usable):
            return mistake
    return None


# =====================================================================================
# Assignment 1: the exact discrete-time max-update bound
# =====================================================================================

_A1_BOUND = "discrete_bound"


def _bias(n, beta, gamma, shift=1):
    """Adam's bias correction sqrt(1 - beta^(n+shift)) / (1 - gamma^(n+shift)) (Eq. 1), raw."""
    return np.sqrt(1.0 - np.float64(beta) ** (n + shift)) / (1.0 - np.float64(gamma) ** (n + shift))


def _geometric(terms, r):
    """sum_{j=0}^{terms-1} r^j in float64 (inf on overflow), exact at r = 1."""
    r = np.float64(r)
    if r == 1.0:
        return np.float64(terms)
    return (r ** terms - 1.0) / (r - 1.0)


def _bound_raw(n, beta, gamma, *, bias="right", ratio="right", sqrt_sum=True, terms=1, prefactor=True):
    """The discrete bound with one ingredient changed (for diagnosing wrong answers)."""
    beta, gamma = np.float64(beta), np.float64(gamma)
    with np.errstate(all="ignore"):
        c = {"right": lambda: _bias(n, beta, gamma), "none": lambda: 1.0, "n": lambda: _bias(n, beta, gamma, shift=0),
             "inverted": lambda: 1.0 / _bias(n, beta, gamma)}[bias]()
    r = {"right": gamma ** 2 / beta, "gamma_over_beta": gamma / beta, "sqrt": gamma / np.sqrt(beta)}[ratio]
    s = _geometric(n + terms, r)
    k = (1.0 - gamma) / np.sqrt(1.0 - beta) if prefactor else 1.0
    return float(c * k * (np.sqrt(s) if sqrt_sum else s))


def _reference_bound(n, beta, gamma) -> float:
    return float(bounds.discrete_max_update_bound(n, beta, gamma))


_BOUND_MISTAKES = [
    _Mistake("continuous", lambda n, b, g: float(bounds.max_update_bound(n, b, g)),
             "This is the continuous-time bound of Eq. 5 (with B_n and C). The task asks for the exact bound "
             "that Cauchy-Schwarz gives on the finite sums m_n and v_n, with no continuous-time approximation."),
    _Mistake("swapped", lambda n, b, g: _bound_raw(n, g, b),
             "Notation trap: you used gamma where beta belongs (and beta where gamma belongs). In the paper "
             "beta is the second-moment decay (the one inside v_n) and gamma the first-moment decay (m_n)."),
    _Mistake("no_bias", lambda n, b, g: _bound_raw(n, b, g, bias="none"),
             "Bias correction missing: u_n carries Adam's bias-correction factor (Eq. 1), so the bound does too."),
    _Mistake("bias_n", lambda n, b, g: _bound_raw(n, b, g, bias="n"),
             "Off by one in the bias correction: steps are counted from n = 0 (u_0 is the first update), so the "
             "exponents in the bias correction are n + 1, not n; with n the factor is 0/0 at n = 0."),
    _Mistake("bias_inverted", lambda n, b, g: _bound_raw(n, b, g, bias="inverted"),
             "The bias-correction factor is upside down: the beta part multiplies, the gamma part divides."),
    _Mistake("ratio_gamma_over_beta", lambda n, b, g: _bound_raw(n, b, g, ratio="gamma_over_beta"),
             "The ratio of your geometric sum is off: after splitting gamma^(n-j) g_j into a part that pairs "
             "with v_n's weights and a remainder, square the remainder (Cauchy-Schwarz squares both factors)."),
    _Mistake("ratio_sqrt", lambda n, b, g: _bound_raw(n, b, g, ratio="sqrt"),
             "The ratio of your geometric sum is off: Cauchy-Schwarz puts the square of the leftover factor "
             "inside the sum, and the square root outside the whole sum."),
    _Mistake("no_sqrt", lambda n, b, g: _bound_raw(n, b, g, sqrt_sum=False),
             "Square root missing: Cauchy-Schwarz bounds |sum a_j b_j| by the square roots of sum a_j^2 and "
             "sum b_j^2, so the geometric sum enters under a square root."),
    _Mistake("terms_n", lambda n, b, g: _bound_raw(n, b, g, terms=0),
             "Your geometric sum has one term too few: at step n the averages hold the n + 1 gradients g_0..g_n."),
    _Mistake("terms_n_plus_2", lambda n, b, g: _bound_raw(n, b, g, terms=2),
             "Your geometric sum has one term too many: at step n the averages hold the n + 1 gradients g_0..g_n."),
    _Mistake("no_prefactor", lambda n, b, g: _bound_raw(n, b, g, prefactor=False),
             "A constant factor is missing: the weights (1 - gamma) of m_n and (1 - beta) of v_n leave a factor "
             "behind that does not depend on n."),
]

# (n, beta, gamma): ordinary points, B- (gamma^2 > beta), gamma^2 = beta exactly, gamma = 0 (RMSprop),
# n = 0 and large n.
_BOUND_CASES = [
    (0, 0.999, 0.9), (1, 0.999, 0.9), (10, 0.999, 0.9), (1000, 0.999, 0.9),
    (0, 0.9, 0.99), (5, 0.9, 0.99), (300, 0.9, 0.99),
    (0, 0.25, 0.5), (7, 0.25, 0.5), (100, 0.25, 0.5),
    (0, 0.3, 0.0), (9, 0.3, 0.0),
    (3, 0.5, 0.6), (50, 0.95, 0.97), (20, 0.6, 0.3), (2, 0.7, 0.95),
]
# beta = 0.5, gamma = 0.9, n = 2000: the bound is finite (about 1e209) but (gamma^2/beta)^(n+1) overflows.
_BOUND_OVERFLOW_CASE = (2000, 0.5, 0.9)


def _category_hint(cases, wrong, *, exclusive: bool = True) -> str | None:
    """A hint when the wrong cases share one feature (gamma^2 = beta, gamma = 0, n = 0, B-).

    ``exclusive``: the feature must also be absent from every right case ("wrong only
    where ..."); otherwise it is enough that every wrong case has it ("fails at every ...").
    """
    groups = {
        "gamma^2 = beta": (lambda n, b, g: g * g == b,
                           "the ratio of the geometric sum is exactly 1 there, so a closed form like "
                           "(1 - r^(n+1)) / (1 - r) is 0/0; that sum is just the number of terms."),
        "gamma = 0": (lambda n, b, g: g == 0.0,
                      "only the newest gradient counts at gamma = 0 (RMSprop). Check what your code does with "
                      "0 ** 0 (it is 1) and with divisions by gamma."),
        "n = 0": (lambda n, b, g: n == 0,
                  "with a single gradient g_0 there is nothing to sum over; check the step count (steps start at "
                  "n = 0) and the bias correction at n = 0."),
        "gamma^2 > beta": (lambda n, b, g: g * g > b,
                           "does your formula assume the ratio of the geometric sum is below 1 (e.g. an "
                           "infinite-sum limit)?"),
    }
    bad = [c for c, w in zip(cases, wrong) if w]
    good = [c for c, w in zip(cases, wrong) if not w]
    for name, (member, advice) in groups.items():
        if not bad or not all(member(*c) for c in bad):
            continue
        if exclusive and good and not any(member(*c) for c in good):
            return f"Wrong only where {name}: {advice}"
        if not exclusive:
            return f"It fails at points with {name}: {advice}"
    return None


@_stops_at_time_limit
def check_discrete_bound(fn, *, timeout: float = 10.0) -> CheckResult:
    """Check ``fn(n, beta, gamma) -> float``, the exact discrete-time bound on |u_n| (eps = 0).

    Compares with :func:`kadam_edu.bounds.discrete_max_update_bound` at n = 0, small and
    large n, in B+ and B-, at gamma^2 = beta and gamma = 0 (relative tolerance 1e-9), and
    notes (without failing) whether very large n overflows. ``timeout``: seconds for all
    calls of ``fn`` together (default 10).
    """
    check = "check_discrete_bound"
    _require_callable(check, fn, "discrete_bound(n, beta, gamma)")
    run = _StudentCode(check, timeout)
    cases = _BOUND_CASES
    values, raised, early = _collect(run, "discrete_bound", fn, cases, lambda v, c: _to_float(v),
                                     ("n", "beta", "gamma"))
    if early is not None:
        return early
    student = [math.nan if v is None else v for v in values]
    reference = [_reference_bound(*case) for case in cases]
    wrong = [not _agree(s, r) for s, r in zip(student, reference)]
    if not any(wrong):
        details = [f"Agrees with the library to 1e-9 at {len(cases)} points: n from 0 to 1000, bounded "
                   "and growing cases, gamma^2 = beta and gamma = 0.", _overflow_note(run, fn)]
        return _result(check, True, "your bound is exact.", details)
    skip = {i for i, _ in raised}
    mistake = _match_mistake(_BOUND_MISTAKES, cases, student, reference, skip=skip)
    hint = mistake.hint if mistake else (_category_hint(cases, wrong)
                                         or _constant_factor_hint(cases, student, reference))
    shown = [i for i, w in enumerate(wrong) if w and i not in skip]
    example = []
    if shown:
        n, b, g = cases[shown[0]]
        yours, right = _pair(student[shown[0]], reference[shown[0]])
        example = [f"At n={n}, beta={b}, gamma={g}: yours is {yours}, the bound is {right}.",
                   *_nonfinite_note(student[shown[0]])]
    if raised:
        i, exc = raised[0]
        more = f" (and at {len(raised) - 1} more test points)" if len(raised) > 1 else ""
        if not mistake:
            hint = _category_hint(cases, [k in skip for k in range(len(cases))], exclusive=False) or hint
        return _result(check, False, f"discrete_bound({_args(('n', 'beta', 'gamma'), cases[i])}) raised "
                       f"{_describe_exception(exc)}{more}.", _exception_hints(exc) + ([hint] if hint else []) + example)
    details = example + ([] if mistake else [f"{sum(wrong)} of {len(wrong)} test points disagree."])
    return _result(check, False, hint or "your bound does not match the exact discrete bound.", details)


def _constant_factor_hint(cases, student, reference) -> str | None:
    """A hint when student/reference is a constant per (beta, gamma) (prefactor) or overall."""
    ratios: dict[tuple, list] = {}
    for (n, b, g), s, r in zip(cases, student, reference):
        if np.isfinite(s) and np.isfinite(r) and r != 0:
            ratios.setdefault((b, g), []).append(s / r)
    if not ratios:
        return None
    flat = [x for v in ratios.values() for x in v]
    if np.allclose(flat, flat[0], rtol=1e-9):
        return (f"Yours is exactly {_g(flat[0])} times the bound at every test point: a constant factor is "
                "off.")
    per_point = [v for v in ratios.values() if len(v) > 1]
    if per_point and all(np.allclose(v, v[0], rtol=1e-9) for v in per_point):
        return ("Yours is off by a factor that depends on beta and gamma but not on n: the n-dependent parts "
                "are right; check the constant factor in front.")
    return None


def _overflow_note(run: _StudentCode, fn) -> str:
    """A note (never a failure) on ``fn`` at a point where naive powers overflow; a timeout propagates."""
    n, b, g = _BOUND_OVERFLOW_CASE
    try:
        value = _to_float(run.call(f"discrete_bound(n={n}, beta={b}, gamma={g})", fn, n, b, g))
        gives = f"gives {_g(value)}"
    except _Raised as err:
        value, gives = math.nan, f"raises {_describe_exception(err.error)}"
    except (NotAnswered, TypeError):
        value, gives = math.nan, "gives no number"
    expected = _reference_bound(n, b, g)
    if _agree(value, expected):
        return f"It even stays finite at n={n}, beta={b}, gamma={g}, where naive powers overflow."
    return (f"Not required, but worth knowing: at n={n}, beta={b}, gamma={g} yours {gives} although "
            f"the bound is finite ({_g(expected)}): a power overflows before the square root brings it back. "
            "Working with logarithms avoids that.")


# ---- Adam's updates on a gradient sequence (eps = 0) -----------------------------------


def _adam_raw(grads, beta, gamma, *, bias="right", square=True, root=True, weights="right", absolute=False):
    """Adam's u_n (Eq. 1, eps = 0) along axis 0 of ``grads``, with one ingredient changeable."""
    grads = np.asarray(grads, dtype=float)
    m = np.zeros(grads.shape[1:])
    v = np.zeros(grads.shape[1:])
    out = np.empty_like(grads)
    for n, g in enumerate(grads):
        if weights == "right":
            m = gamma * m + (1.0 - gamma) * g
            v = beta * v + (1.0 - beta) * (g * g if square else g)
        else:  # the weights of old and new swapped
            m = (1.0 - gamma) * m + gamma * g
            v = (1.0 - beta) * v + beta * (g * g if square else g)
        with np.errstate(all="ignore"):
            c = 1.0 if bias == "none" else _bias(n, beta, gamma, shift=0 if bias == "n" else 1)
            out[n] = c * m / (np.sqrt(v) if root else v)
    return np.abs(out) if absolute else out


_ADAM_MISTAKES = [
    _Mistake("swapped", lambda G, b, g: _adam_raw(G, g, b),
             "Notation trap: you used gamma where beta belongs. In the paper gamma is the first-moment decay "
             "(m_n) and beta the second-moment decay (v_n); torch's betas=(gamma, beta)."),
    _Mistake("no_bias", lambda G, b, g: _adam_raw(G, b, g, bias="none"),
             "Bias correction missing: Eq. 1 multiplies m_n / sqrt(v_n) by a factor that depends on n."),
    _Mistake("bias_n", lambda G, b, g: _adam_raw(G, b, g, bias="n"),
             "Off by one in the bias correction: the first step is n = 0, so the exponents are n + 1."),
    _Mistake("no_square", lambda G, b, g: _adam_raw(G, b, g, square=False),
             "v_n averages the squared gradients, element-wise."),
    _Mistake("no_root", lambda G, b, g: _adam_raw(G, b, g, root=False),
             "Square root missing: u_n divides by the square root of v_n."),
    _Mistake("weights", lambda G, b, g: _adam_raw(G, b, g, weights="swapped"),
             "The weights of your moving averages are swapped: the decay multiplies the old average, its "
             "complement multiplies the new gradient."),
    _Mistake("absolute", lambda G, b, g: _adam_raw(G, b, g, absolute=True),
             "You return |u_n|; return the signed update u_n (the check takes absolute values itself)."),
]


def _adam_cases():
    rng = np.random.default_rng(1)
    return [
        (rng.normal(size=(12, 3)), 0.999, 0.9),
        (rng.normal(size=(10, 2)) * np.exp(-0.3 * np.arange(10))[:, None], 0.9, 0.99),
        (np.abs(rng.standard_cauchy(size=(9, 4))) + 0.1, 0.25, 0.5),
        (rng.normal(size=(8, 1)), 0.6, 0.0),
        (rng.normal(size=(7,)), 0.95, 0.8),
    ]


def _reference_adam(grads, beta, gamma):
    return _adam_raw(grads, beta, gamma)


@_stops_at_time_limit
def check_adam_updates(fn, *, timeout: float = 10.0) -> CheckResult:
    """Check ``fn(grads, beta, gamma) -> u``: Adam's signed updates u_n (Eq. 1, eps = 0).

    ``grads`` has shape [N] or [N, p] (step n along axis 0); the answer must have the same
    shape and be real. Compared with a float64 reference (itself tested against :class:`KAdam`).
    ``timeout``: seconds for all calls of ``fn`` together (default 10).
    """
    check = "check_adam_updates"
    _require_callable(check, fn, "adam_updates(grads, beta, gamma)")
    run = _StudentCode(check, timeout)
    cases = _adam_cases()
    calls = [(grads.copy(), b, g) for grads, b, g in cases]
    values, raised, early = _collect(run, "adam_updates", fn, calls, lambda v, c: _to_array(v, c[0].shape),
                                     ("grads", "beta", "gamma"))
    if early is not None:
        if early.answered and "expected shape" in early.message and any(c[0].ndim == 2 for c in cases):
            return _result(check, False, early.message.split("\n")[0],
                           ["Work element-wise (one column per coordinate) so that grads of shape [N, p] work too."])
        return early
    if raised:
        i, exc = raised[0]
        grads, b, g = cases[i]
        only_2d = all(cases[j][0].ndim == 2 for j, _ in raised) and any(
            c[0].ndim == 1 for k, c in enumerate(cases) if k not in {j for j, _ in raised})
        return _result(check, False, f"adam_updates raised {_describe_exception(exc)} for grads of shape "
                       f"{grads.shape}, beta={b}, gamma={g}.",
                       _exception_hints(exc) + (["It works for one coordinate (shape [N]) but not for shape [N, p]: "
                                                 "work element-wise, one column per coordinate."] if only_2d else []))
    student = values
    reference = [_reference_adam(grads, b, g) for grads, b, g in cases]
    wrong = [not _agree(s, r, rtol=1e-9, atol=1e-300) for s, r in zip(student, reference)]
    if not any(wrong):
        return _result(check, True, "your updates match Adam's (Eq. 1, eps = 0) to 1e-9.",
                       [f"{len(cases)} gradient sequences, 1-D and 2-D, in B+ and B-, and gamma = 0."])
    mistake = _match_mistake(_ADAM_MISTAKES, cases, student, reference)
    i = wrong.index(True)
    grads, b, g = cases[i]
    with np.errstate(all="ignore"):
        bad = ~np.isclose(student[i], reference[i], rtol=1e-9, atol=1e-300)
    idx = tuple(np.argwhere(bad)[0])
    yours, right = _pair(student[i][idx], reference[i][idx])
    example = [f"For the sequence with beta={b}, gamma={g}, the first difference is at step n={idx[0]}: yours "
               f"{yours}, Adam's {right}.", *_nonfinite_note(student[i][idx])]
    if mistake is not None:
        return _result(check, False, mistake.hint, example)
    if idx[0] > 0 and all(_agree(s[:1], r[:1], rtol=1e-9) for s, r in zip(student, reference)):
        return _result(check, False, "right at n = 0, wrong later: are m and v carried from one step to the "
                       "next (and started at zero)?", example)
    return _result(check, False, "your updates differ from Adam's.", example)


# ---- the extremal sequence -------------------------------------------------------------

_EXTREMAL_CASES = [(0.999, 0.9), (0.9, 0.99), (0.25, 0.5), (0.5, 0.3), (0.95, 0.97)]
_EXTREMAL_STEPS = 60


@_stops_at_time_limit
def check_extremal_sequence(fn, *, timeout: float = 10.0) -> CheckResult:
    """Check ``fn(steps, beta, gamma) -> g`` (shape [steps], real): a gradient sequence whose Adam
    updates attain the discrete bound at every step n = 0..steps-1 (ratio 1 to 1e-9).
    ``timeout``: seconds for all calls of ``fn`` together (default 10)."""
    check = "check_extremal_sequence"
    _require_callable(check, fn, "extremal_gradients(steps, beta, gamma)")
    run = _StudentCode(check, timeout)
    cases = [(_EXTREMAL_STEPS, b, g) for b, g in _EXTREMAL_CASES]
    values, raised, early = _collect(run, "extremal_gradients", fn, cases,
                                     lambda v, c: _to_array(v, (c[0],)), ("steps", "beta", "gamma"))
    if early is not None:
        return early
    if raised:
        i, exc = raised[0]
        return _result(check, False, f"extremal_gradients({_args(('steps', 'beta', 'gamma'), cases[i])}) raised "
                       f"{_describe_exception(exc)}.", _exception_hints(exc))
    for (steps, b, g), grads in zip(cases, values):
        if not np.all(np.isfinite(grads)) or grads[0] == 0:
            problem = "non-finite values" if not np.all(np.isfinite(grads)) else "g_0 = 0"
            return _result(check, False, f"for beta={b}, gamma={g} your sequence has {problem}.",
                           ["Every gradient must be a finite number, and g_0 nonzero (u_0 is 0/0 otherwise)."])
        with np.errstate(all="ignore"):
            u = np.abs(_reference_adam(grads, b, g))
            ratio = u / np.array([_reference_bound(n, b, g) for n in range(steps)])
        off = np.flatnonzero(~np.isclose(ratio, 1.0, rtol=0, atol=1e-9))
        if len(off):
            n = int(off[0])
            details = [f"|u_n| / bound is 1 for n < {n} and {_g(ratio[n])} at n = {n}; at n = {steps - 1} "
                       f"it is {_g(ratio[-1])}."]
            if n == 1:
                details.append("Any nonzero g_0 attains the bound at n = 0; the point is to attain it at every n "
                               "at once.")
            if np.allclose(grads, grads[0]):
                details.append("A constant gradient makes m_n and v_n settle down; it is not the worst case.")
            details.append("Equality in Cauchy-Schwarz needs the two sequences it pairs to be proportional, for "
                           "every n at the same time. Write both as functions of j and solve for g_j.")
            return _result(check, False, f"for beta={b}, gamma={g} your sequence does not attain the bound at "
                           "every step.", details)
    return _result(check, True, "your sequence attains the bound at every step (ratio 1 to 1e-9).",
                   [f"{len(cases)} (beta, gamma) pairs, in B+ and B- and at gamma^2 = beta, "
                    f"{_EXTREMAL_STEPS} steps each."])


# ---- the slope of the log bound --------------------------------------------------------

_RATE_CASES = [(0.999, 0.9), (0.9, 0.99), (0.25, 0.5), (0.3, 0.0), (0.5, 0.9), (0.95, 0.99), (0.999, 0.9995),
               (0.6, 0.7), (0.8, 0.95), (0.2, 0.9)]


def _continuous_rate(b, g):
    return float(bounds.growth_rate(b, g))


_RATE_MISTAKES = [  # math.log(0) raises ValueError: gamma = 0 is then left out of the comparison
    _Mistake("continuous", _continuous_rate,
             "This is the continuous-time prediction max(0, -C)/2 of Eq. 5. It agrees with the exact "
             "discrete slope only near (1, 1); the task asks for the slope of the exact discrete bound."),
    _Mistake("swapped", lambda b, g: max(0.0, math.log(b) - 0.5 * math.log(g)),
             "Notation trap: you used gamma where beta belongs."),
    _Mistake("no_max", lambda b, g: math.log(g) - 0.5 * math.log(b),
             "Negative in the bounded region: there the bound tends to a constant, so the slope of its log "
             "tends to 0, not to a negative number."),
    _Mistake("abs", lambda b, g: abs(math.log(g) - 0.5 * math.log(b)),
             "Positive in the bounded region: there the bound tends to a constant, so the slope of its log "
             "tends to 0."),
    _Mistake("factor2", lambda b, g: max(0.0, 2 * math.log(g) - math.log(b)),
             "Twice the slope: the geometric sum sits under a square root, which halves the exponent."),
    _Mistake("log10", lambda b, g: max(0.0, math.log10(g) - 0.5 * math.log10(b)),
             "Your slopes are 1/ln(10) times too small: use the natural logarithm (the slope of ln |u_n|)."),
]


@_stops_at_time_limit
def check_discrete_rate(fn, *, timeout: float = 10.0) -> CheckResult:
    """Check ``fn(beta, gamma) -> float``: the slope of ln(discrete bound) per step as n -> inf
    (finite everywhere, 0 at gamma = 0). ``timeout``: seconds for all calls of ``fn`` together (default 10)."""
    check = "check_discrete_rate"
    _require_callable(check, fn, "discrete_rate(beta, gamma)")
    run = _StudentCode(check, timeout)
    cases = _RATE_CASES
    values, raised, early = _collect(run, "discrete_rate", fn, cases, lambda v, c: _to_float(v), ("beta", "gamma"))
    if early is not None:
        return early
    student = [math.nan if v is None else v for v in values]
    reference = [float(bounds.discrete_growth_rate(b, g)) for b, g in cases]
    wrong = [not _agree(s, r, rtol=1e-9, atol=1e-15) for s, r in zip(student, reference)]
    if not any(wrong):
        return _result(check, True, "your slopes are exact.",
                       [f"{len(cases)} points, bounded and growing, near (1, 1) and far from it, and gamma = 0."])
    skip = {i for i, _ in raised}
    mistake = _match_mistake(_RATE_MISTAKES, cases, student, reference, skip=skip)
    shown = [i for i, w in enumerate(wrong) if w and i not in skip]
    example = []
    if shown:
        b, g = cases[shown[0]]
        yours, right = _pair(student[shown[0]], reference[shown[0]])
        example = [f"At beta={b}, gamma={g}: yours {yours}, expected {right}.", *_nonfinite_note(student[shown[0]])]
    only_g0 = all(cases[i][1] == 0 for i, w in enumerate(wrong) if w)
    g0_hint = "At gamma = 0, ln(gamma) is -inf: what does the bound do there (and so its slope)?"
    if raised:
        i, exc = raised[0]
        b, g = cases[i]
        hints = _exception_hints(exc) + ([mistake.hint] if mistake else [])
        if g == 0:
            hints.append(g0_hint)
        return _result(check, False, f"discrete_rate(beta={b}, gamma={g}) raised {_describe_exception(exc)}.",
                       hints + example)
    if mistake is not None:
        return _result(check, False, mistake.hint, example)
    if only_g0:
        return _result(check, False, "right except at gamma = 0. " + g0_hint,
                       [f"At gamma = 0 yours is {_g(student[wrong.index(True)])}."])
    return _result(check, False, "your slopes differ from the exact discrete bound's.", example)


# ---- gradient sequences for the stress test --------------------------------------------


def gradient_families(steps: int = 200, p: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Random gradient sequences of several kinds, each of shape [steps, p] (float64).

    "gaussian", "heavy-tailed" (Cauchy), "growing" and "shrinking" (geometric trends with
    noise), "sparse" (mostly zero after a nonzero g_0), "alternating" (sign flips) and
    "one spike" (a single large gradient among small ones). g_0 is nonzero everywhere, so
    u_n is defined with eps = 0.
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be a positive int (the sequence length); got {steps!r}")
    if isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 1:
        raise ValueError(f"p must be a positive int (coordinates per gradient); got {p!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    rng = np.random.default_rng(seed)
    n = np.arange(steps)[:, None]
    fam = {
        "gaussian": rng.normal(size=(steps, p)),
        "heavy-tailed": rng.standard_cauchy(size=(steps, p)),
        "growing": rng.normal(size=(steps, p)) * np.exp(0.05 * n),
        "shrinking": rng.normal(size=(steps, p)) * np.exp(-0.05 * n),
        "sparse": rng.normal(size=(steps, p)) * (rng.random((steps, p)) < 0.05),
        "alternating": (-1.0) ** n * (1.0 + 0.1 * rng.normal(size=(steps, p))),
        "one spike": 0.01 * rng.normal(size=(steps, p)),
    }
    fam["one spike"][min(steps - 1, steps // 3)] += 100.0
    for g in fam.values():
        g[0] = np.where(g[0] == 0.0, 1.0, g[0])
    return fam


# =====================================================================================
# Assignment 2: one adaptive-normalisation step (App. R) -> RMSprop, Adam, k-Adam
# =====================================================================================


class FunctionalOptimizer(torch.optim.Optimizer):
    """A torch optimizer built from a direction function: theta <- theta - lr * u_n (App. R).

    ``direction(g, states, n, levels) -> u_n`` gets one parameter's gradient ``g`` (a tensor),
    ``states`` (a list with one ``(m, v)`` pair of tensors per level, zeros at the start;
    store the new pair back into ``states[i]``), the step index ``n`` (0 at the first step)
    and ``levels`` (a list of :class:`~kadam_edu.Level`). A direction that returns ``None``
    raises :class:`NotAnswered`.
    """

    def __init__(self, params, *, lr: float, levels: Sequence[Level], direction: Callable):
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr < 0:
            raise ValueError(f"lr must be a finite number >= 0; got {lr!r}")
        if not callable(direction):
            raise TypeError(f"direction must be a function (g, states, n, levels) -> u; got {direction!r}")
        self.levels = _check_levels(list(levels) if isinstance(levels, (list, tuple)) else levels)
        self.direction = direction
        super().__init__(params, dict(lr=float(lr)))

    @torch.no_grad()
    def step(self, closure=None):
        """One step for every parameter with a gradient; returns the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["n"] = 0
                    state["levels"] = [(torch.zeros_like(p), torch.zeros_like(p)) for _ in self.levels]
                u = self.direction(p.grad, state["levels"], state["n"], self.levels)
                if u is None:
                    raise NotAnswered("the direction function returned None (it is not answered yet)")
                u = self._real_tensor(u)
                if u.shape != p.shape:
                    raise ValueError(f"the direction has shape {tuple(u.shape)} but the parameter has shape "
                                     f"{tuple(p.shape)}")
                p.add_(u.to(dtype=p.dtype, device=p.device), alpha=-group["lr"])
                state["n"] += 1
        return loss

    @staticmethod
    def _real_tensor(u) -> torch.Tensor:
        """The direction's value as a real tensor (TypeError for a str, a complex or boolean tensor, ...)."""
        if not isinstance(u, torch.Tensor):
            try:
                u = torch.as_tensor(u)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"the direction returned {u!r} of type {type(u).__name__}; return a tensor shaped "
                                "like the gradient g") from None
        if u.is_complex():
            raise TypeError(f"the direction returned complex values (dtype {u.dtype}), but the update of a real "
                            f"parameter is real: {_COMPLEX_HINT}")
        if u.dtype == torch.bool:
            raise TypeError("the direction returned booleans (dtype torch.bool); return real numbers shaped like g")
        return u


def _an_step(x, m, v, n, gamma, beta, *, eps=1e-30, mistake=None):
    """One adaptive-normalisation step (App. R, Algorithm 1's inner loop), optionally wrong."""
    if mistake == "swapped":
        gamma, beta = beta, gamma
    if mistake == "weights":
        m = (1 - gamma) * m + gamma * x
        v = (1 - beta) * v + beta * x * x
    else:
        m = gamma * m + (1 - gamma) * x
        v = beta * v + (1 - beta) * (x if mistake == "no_square" else x * x)
    if mistake == "no_bias":
        c = 1.0
    elif mistake == "bias_no_sqrt":
        c = (1 - beta ** (n + 1)) / (1 - gamma ** (n + 1))
    else:  # the right factor, or with exponent n instead of n + 1 (0/0 at n = 0)
        k = n if mistake == "bias_n" else n + 1
        c = math.sqrt(1 - beta**k) / (1 - gamma**k) if gamma**k != 1 else math.inf
    root = v if mistake == "no_root" else torch.sqrt(v)
    if mistake == "eps_torch":  # torch.optim.Adam: eps = 1e-8 added after bias correction
        u = (m / (1 - gamma ** (n + 1))) / (root / math.sqrt(1 - beta ** (n + 1)) + 1e-8)
    else:
        u = c * m / (root + eps)
    return u, m, v


_AN_HINTS = {
    "swapped": "Notation trap: you used gamma where beta belongs. gamma is the first-moment decay (m), beta "
               "the second-moment decay (v); Level(gamma=..., beta=...) and torch's betas=(gamma, beta).",
    "no_bias": "Bias correction missing: your u at n = 0 should already be a properly weighted average, so "
               "the moving averages need App. R's bias correction (Eq. 1's factor).",
    "bias_n": "Off by one in the bias correction: the first step is n = 0, so the exponents are n + 1 "
              "(with n, the factor is 0/0 at n = 0).",
    "bias_no_sqrt": "The beta part of the bias correction belongs under a square root (v is a mean of squares).",
    "no_square": "v averages the element-wise squares of x.",
    "no_root": "Square root missing: divide by the square root of v.",
    "weights": "The weights of your moving averages are swapped: the decay multiplies the old average and its "
               "complement the new element.",
    "stateless": "Right at n = 0, wrong later: return the updated m and v (the next call receives them), "
                 "rather than the ones you were given.",
    "eps_torch": "Close but not exact: this looks like torch.optim.Adam's eps = 1e-8 added after the bias "
                 "correction. App. R / Algorithm 1 add eps (1e-30) to sqrt(v) before it.",
}

_AN_CASES = [(0.9, 0.999), (0.0, 0.9), (0.99, 0.9), (0.5, 0.7)]  # (gamma, beta)
_AN_STEPS = 8


def _an_inputs(seed=3):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, generator=gen, dtype=torch.float64) * (1 + n) for n in range(_AN_STEPS)]


def _an_sequence(xs, gamma, beta, mistake=None):
    m = torch.zeros_like(xs[0])
    v = torch.zeros_like(xs[0])
    out = []
    for n, x in enumerate(xs):
        if mistake == "stateless":
            m, v = torch.zeros_like(x), torch.zeros_like(x)
        u, m, v = _an_step(x, m, v, n, gamma, beta, mistake=None if mistake == "stateless" else mistake)
        out.append(u.numpy().copy())
    return np.stack(out)


@_stops_at_time_limit
def check_adaptive_normalisation(step_fn, *, timeout: float = 10.0) -> CheckResult:
    """Check ``step_fn(x, m, v, n, *, gamma, beta) -> (u, m, v)``: one step of App. R's operator
    A_{gamma,beta} on the newest element ``x`` (float64 tensors), fed its own ``m, v`` back.

    Runs 8 steps for (gamma, beta) in {(0.9, 0.999), (0, 0.9), (0.99, 0.9), (0.5, 0.7)} and
    compares u with the reference (App. R with eps = 1e-30 added to sqrt(v), as KAdam does);
    u, m and v must be real and shaped like x. ``timeout``: seconds for all calls of
    ``step_fn`` together (default 10).
    """
    check = "check_adaptive_normalisation"
    _require_callable(check, step_fn, "adaptive_normalisation(x, m, v, n, *, gamma, beta)")
    run = _StudentCode(check, timeout)
    xs = _an_inputs()
    student, reference = [], []
    for gamma, beta in _AN_CASES:
        m = torch.zeros_like(xs[0])
        v = torch.zeros_like(xs[0])
        us = []
        for n, x in enumerate(xs):
            where = f"at n={n} with gamma={gamma}, beta={beta}"
            try:
                out = run.call(f"adaptive_normalisation(x, m, v, n={n}, gamma={gamma}, beta={beta})", step_fn,
                               x.clone(), m, v, n, gamma=gamma, beta=beta)
            except _Raised as err:
                exc = err.error
                hints = _exception_hints(exc) or [
                    "At n = 0 (the first step) check the exponents of the bias correction: they are n + 1."
                    if n == 0 and isinstance(exc, ArithmeticError) else
                    "It is called as adaptive_normalisation(x, m, v, n, gamma=..., beta=...) with float64 "
                    "tensors x, m, v and an int n."]
                return _result(check, False, f"adaptive_normalisation raised {_describe_exception(exc)} {where}.",
                               hints)
            if out is None:
                return _not_answered(check, "adaptive_normalisation")
            if not isinstance(out, (tuple, list)) or len(out) != 3:
                got = (f"a {type(out).__name__} of {len(out)} items" if isinstance(out, (tuple, list))
                       else type(out).__name__)
                return _result(check, False, f"adaptive_normalisation returned {got} {where}; return the tuple "
                               "(u, m, v): the update and the new moving averages.")
            parts = []
            for name, part in zip("umv", out):
                try:
                    parts.append(_to_array(part, x.shape))
                except (NotAnswered, TypeError) as exc:
                    got = "returned None" if isinstance(exc, NotAnswered) else str(exc)
                    return _result(check, False, f"adaptive_normalisation {where}, as its {name}: {got}.",
                                   ["Return (u, m, v), each a real tensor shaped like x."])
            u, m, v = parts[0], torch.from_numpy(parts[1]), torch.from_numpy(parts[2])
            us.append(u)
        student.append(np.stack(us))
        reference.append(_an_sequence(xs, gamma, beta))
    wrong = [not _agree(s, r, rtol=1e-10, atol=1e-300) for s, r in zip(student, reference)]
    if not any(wrong):
        return _result(check, True, "your step is App. R's adaptive normalisation.",
                       [f"{_AN_STEPS} steps for (gamma, beta) = " + ", ".join(f"({g}, {b})" for g, b in _AN_CASES)
                        + ", including gamma = 0 (RMSprop) and gamma^2 > beta."])
    i = wrong.index(True)
    gamma, beta = _AN_CASES[i]
    with np.errstate(all="ignore"):
        bad = ~np.isclose(student[i], reference[i], rtol=1e-10, atol=1e-300)
    n, *idx = (int(k) for k in np.argwhere(bad)[0])
    where = ", ".join(map(str, idx))
    yours, right = _pair(student[i][(n, *idx)], reference[i][(n, *idx)])
    example = [f"With gamma={gamma}, beta={beta} at n={n}: your u[{where}] is {yours}, it should be {right}.",
               *_nonfinite_note(student[i][(n, *idx)])]
    compute = lambda mk, case: _an_sequence(xs, case[0], case[1], mistake=mk.name)  # noqa: E731
    mistakes = [_Mistake(name, None, hint) for name, hint in _AN_HINTS.items()]
    mistake = _match_mistake(mistakes, _AN_CASES, student, reference, compute)
    if mistake is not None:
        return _result(check, False, mistake.hint, example)
    if n == 0 and not np.all(np.isfinite(student[i][0])):
        return _result(check, False, "your u is not finite at n = 0: check the bias correction's exponents "
                       "(the first step is n = 0).", example)
    if all(np.allclose(s, r, rtol=1e-5, atol=1e-7) for s, r in zip(student, reference)):
        return _result(check, False, "close but not float64-exact: are some tensors float32 (e.g. torch.zeros "
                       "without dtype), or is eps different from 1e-30?", example)
    return _result(check, False, "your step differs from App. R's adaptive normalisation.", example)


# ---- optimizers built from the step ----------------------------------------------------

_OPT_LR = 0.1
_OPT_STEPS = 6


def _opt_grads(seed=5):
    """A fixed gradient sequence for two parameters of shapes (3, 4) and (5,), float64."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.tensor([1.0, 0.5, 2.0, 0.1, 1.0, 3.0], dtype=torch.float64)
    return [[torch.randn(3, 4, generator=gen, dtype=torch.float64) * scale[t],
             torch.randn(5, generator=gen, dtype=torch.float64) * scale[t]] for t in range(_OPT_STEPS)]


def _opt_params(seed=6):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 4, generator=gen, dtype=torch.float64).requires_grad_(),
            torch.randn(5, generator=gen, dtype=torch.float64).requires_grad_()]


def _reference_chain(grads_seq, levels, mistake=None):
    """u_n^(k) for every step and parameter of a fixed gradient sequence (App. R), optionally wrong.

    Returns an array [steps, total parameter size].
    """
    levels = list(levels)
    if mistake == "reversed":
        levels = levels[::-1]
    if mistake == "last_only":
        levels = levels[-1:]
    if mistake == "first_only":
        levels = levels[:1]
    n_params = len(grads_seq[0])
    states = [[(torch.zeros_like(g), torch.zeros_like(g)) for _ in levels] for g in grads_seq[0]]
    out = []
    step_mistake = {"swapped": "swapped", "no_bias": "no_bias", "eps_torch": "eps_torch"}.get(mistake)
    for t, grads in enumerate(grads_seq):
        row = []
        for j in range(n_params):
            g = grads[j]
            x = g
            for i, level in enumerate(levels):
                m, v = states[j][i]
                if mistake == "stateless":
                    m, v = torch.zeros_like(g), torch.zeros_like(g)
                n = 0 if mistake == "n_fixed" else t
                inp = g if mistake == "no_chain" else x
                u, m, v = _an_step(inp, m, v, n, level.gamma, level.beta, mistake=step_mistake)
                states[j][i] = (m, v)
                x = u
            row.append(x.reshape(-1))
        out.append(torch.cat(row).numpy().copy())
    return np.stack(out)


_CHAIN_HINTS = {
    "no_chain": "Matches for k = 1 but not for k >= 2: is each level fed the previous level's output u^(i-1)? "
                "(Feeding every level the raw gradient g is not k-Adam.)",
    "reversed": "Your levels run in reverse order: level 1 acts on the gradient, level k produces the update.",
    "last_only": "Only one level acts (the last): k-Adam applies all k levels in turn.",
    "first_only": "Only one level acts (the first): k-Adam applies all k levels in turn.",
    "n_fixed": "Right at the first step, wrong later: the bias correction needs the current step n; is the step "
               "counter passed on and advanced?",
    "stateless": "Right at the first step, wrong later: each level's (m, v) must be stored back into states[i] "
                 "so the next step continues from it.",
    "swapped": "Notation trap: you used gamma where beta belongs. A Level is Level(gamma=first moment, "
               "beta=second moment); use level.gamma and level.beta by name.",
    "no_bias": "Bias correction missing at some level (App. R's M_gamma is the bias-corrected average).",
    "eps_torch": "Close but not exact: this looks like torch.optim.Adam's eps = 1e-8 after the bias correction. "
                 "Use eps = 1e-30 added to sqrt(v), as Algorithm 1.",
}


@functools.cache
def _preload_torch_optim() -> None:
    """Build and step one optimizer: torch imports torch._dynamo at the first optimizer (seconds on a
    CPU). Done before the student's time limit starts, so that it neither counts nor gets interrupted."""
    p = torch.zeros(1, requires_grad=True)
    p.grad = torch.zeros(1)
    KAdam([p], lr=0.0).step()


def _run_student_optimizer(run: _StudentCode, what: str, make, grads_seq, lr=_OPT_LR):
    """Run ``make(params)`` through ``run`` on a fixed gradient sequence; return u per step [steps, size].

    ``what``: the call ``make(params)`` in messages. Raises NotAnswered (make returned None),
    TypeError (no step() method, or a parameter that stopped being a real float64 tensor of its
    shape), _Raised or _TimedOut.
    """
    params = _opt_params()
    opt = run.call(what, make, params)
    if opt is None:
        raise NotAnswered
    if not callable(getattr(opt, "step", None)):
        raise TypeError(f"returned {type(opt).__name__}, which has no step() method; return a torch optimizer")
    rows = []
    for t, grads in enumerate(grads_seq):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        before = torch.cat([p.detach().reshape(-1).clone() for p in params])
        run.call(f"step {t} of the optimizer from {what}", opt.step)
        for p, g in zip(params, grads):
            if p.dtype != torch.float64 or p.shape != g.shape:
                kind = f"complex ({p.dtype})" if p.is_complex() else f"of dtype {p.dtype} and shape {tuple(p.shape)}"
                raise TypeError(f"made a parameter {kind} at step {t}; parameters stay real float64 tensors of their "
                                "shape, and so do their updates")
        after = torch.cat([p.detach().reshape(-1) for p in params])
        rows.append(((before - after) / lr).numpy().copy())
    return np.stack(rows)


def _compare_optimizer(run: _StudentCode, what, make_for, cases, extra_hints=None):
    """Shared logic of check_rmsprop / check_adam / check_kadam.

    ``cases``: list of (label, levels, kwargs); ``make_for(kwargs)`` returns a function
    params -> optimizer, called through ``run``.
    """
    check = run.check
    _preload_torch_optim()
    grads_seq = _opt_grads()
    student, reference = [], []
    for label, levels, kwargs in cases:
        call = f"{what}(params, {_kw(kwargs)})"
        try:
            student.append(_run_student_optimizer(run, call, make_for(kwargs), grads_seq))
        except NotAnswered:
            return _not_answered(check, what), None
        except TypeError as exc:
            return _result(check, False, f"{call} {exc}."), None
        except _Raised as err:
            if isinstance(err.error, NotAnswered):  # raised by FunctionalOptimizer.step
                inner = "the direction function given to FunctionalOptimizer (kadam_direction)"
                return _not_answered(check, inner), None
            return _result(check, False, f"{label}: {err.what} raised {_describe_exception(err.error)}.",
                           _exception_hints(err.error)), None
        reference.append(_reference_chain(grads_seq, levels))
    wrong = [not _agree(s, r, rtol=1e-9, atol=1e-12) for s, r in zip(student, reference)]
    if not any(wrong):
        return None, (student, reference)
    i = wrong.index(True)
    label = cases[i][0]
    bad = np.flatnonzero(~np.all(np.isclose(student[i], reference[i], rtol=1e-9, atol=1e-12), axis=1))
    t = int(bad[0])
    worst = float(np.max(np.abs(student[i][t] - reference[i][t])))
    example = (f"{label}: the first step that differs is step {t} (counting from 0); the largest difference in "
               f"the update is {_g(worst)}.")
    ok_labels = [c[0] for c, w in zip(cases, wrong) if not w]
    if ok_labels:
        example += " Right for: " + ", ".join(ok_labels) + "."
    example = [example, *_nonfinite_note(student[i][t])]
    compute = lambda mk, case: _reference_chain(grads_seq, case[1], mistake=mk.name)  # noqa: E731
    hints = dict(_CHAIN_HINTS, **(extra_hints or {}))
    mistakes = [_Mistake(name, None, hint) for name, hint in hints.items()]
    mistake = _match_mistake(mistakes, cases, student, reference, compute)
    if mistake is not None:
        return _result(check, False, mistake.hint, example), None
    ratio = _constant_ratio(student, reference)
    if ratio is not None:
        if np.isclose(ratio, -1.0):
            return _result(check, False, "your optimizer moves uphill: theta <- theta - lr * u.", example), None
        return _result(check, False, f"your updates are {_g(ratio)} times k-Adam's at every step: is the "
                       "learning rate applied exactly once (theta <- theta - lr * u)?", example), None
    if all(np.allclose(s, r, rtol=1e-5, atol=1e-7) for s, r in zip(student, reference)):
        return _result(check, False, "close but not float64-exact: are some tensors float32 (e.g. torch.zeros "
                       "without dtype), or is eps different from 1e-30?", example), None
    return _result(check, False, "your updates differ from k-Adam's.", example), None


def _constant_ratio(student, reference):
    num = np.concatenate([s.ravel() for s in student])
    den = np.concatenate([r.ravel() for r in reference])
    mask = np.abs(den) > 1e-8
    if not mask.any():
        return None
    q = num[mask] / den[mask]
    if np.all(np.isfinite(q)) and np.allclose(q, q[0], rtol=1e-8) and not np.isclose(q[0], 1.0):
        return float(q[0])
    return None


def _kw(kwargs) -> str:
    return ", ".join(f"{k}={v}" for k, v in kwargs.items())


def _small_model_match(make, levels, steps=5, lr=0.05):
    """Train a small float64 MLP with ``make(params)`` and with KAdam; the largest parameter difference."""
    gen = torch.Generator().manual_seed(11)
    X = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    Y = torch.randn(16, 2, generator=gen, dtype=torch.float64)

    def model():
        torch.manual_seed(12)
        return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).double()

    a, b = model(), model()
    opt_a = KAdam(a.parameters(), lr=lr, levels=list(levels))
    opt_b = make(list(b.parameters()))
    for _ in range(steps):
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            ((net(X) - Y) ** 2).mean().backward()
            opt.step()
    return max(float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters()))


@_stops_at_time_limit
def check_rmsprop(factory, *, timeout: float = 30.0) -> CheckResult:
    """Check ``factory(params, *, lr, beta) -> optimizer``: RMSprop as App. R's adaptive
    normalisation with gamma = 0 (bias-corrected; equal to ``KAdam(betas=(0, beta))``).
    ``timeout``: seconds for building and stepping your optimizers, all together (default 30)."""
    check = "check_rmsprop"
    _require_callable(check, factory, "rmsprop(params, *, lr, beta)")
    run = _StudentCode(check, timeout)
    cases = [(f"RMSprop beta={b}", [Level(gamma=0.0, beta=b)], dict(lr=_OPT_LR, beta=b)) for b in (0.9, 0.5)]
    extra = {"no_bias": "Bias correction missing: that is torch.optim.RMSprop's update. App. R's RMSprop is A with "
                        "gamma = 0, which keeps the factor from the bias-corrected average of the squares."}
    failed, _ = _compare_optimizer(run, "rmsprop", lambda kw: (lambda params: factory(params, **kw)), cases, extra)
    if failed is not None:
        return failed
    return _result(check, True, "your RMSprop matches KAdam(betas=(0, beta)) step by step.",
                   [f"beta = 0.9 and 0.5, {_OPT_STEPS} steps on a fixed gradient sequence, float64."])


@_stops_at_time_limit
def check_adam(factory, *, timeout: float = 30.0) -> CheckResult:
    """Check ``factory(params, *, lr, beta, gamma) -> optimizer``: Adam in the paper's notation
    (beta: second moment, gamma: first moment), against ``KAdam(betas=(gamma, beta))``.
    ``timeout``: seconds for building and stepping your optimizers, all together (default 30)."""
    check = "check_adam"
    _require_callable(check, factory, "adam(params, *, lr, beta, gamma)")
    run = _StudentCode(check, timeout)
    pairs = [(0.999, 0.9), (0.9, 0.99), (0.7, 0.5)]
    cases = [(f"Adam beta={b}, gamma={g}", [Level(gamma=g, beta=b)], dict(lr=_OPT_LR, beta=b, gamma=g))
             for b, g in pairs]
    failed, _ = _compare_optimizer(run, "adam", lambda kw: (lambda params: factory(params, **kw)), cases)
    if failed is not None:
        return failed
    return _result(check, True, "your Adam matches KAdam(betas=(gamma, beta)) step by step.",
                   [f"(beta, gamma) = " + ", ".join(map(str, pairs)) + f", {_OPT_STEPS} steps, float64."])


@_stops_at_time_limit
def check_kadam(opt_factory, *, timeout: float = 30.0) -> CheckResult:
    """Check ``opt_factory(params, *, lr, levels) -> optimizer``: k-Adam (Eq. 10, App. R) for
    k = 1, 2, 3 (including a gamma = 0 level), step by step on a fixed gradient sequence, then
    against :class:`KAdam` (float64) over 5 training steps of a small model.
    ``timeout``: seconds for building, stepping and training with your optimizers, all together
    (default 30)."""
    check = "check_kadam"
    _require_callable(check, opt_factory, "kadam(params, *, lr, levels)")
    run = _StudentCode(check, timeout)
    cases = [
        ("k=1 (Adam)", [Level(gamma=0.9, beta=0.999)]),
        ("k=2", [Level(gamma=0.8, beta=0.95), Level(gamma=0.5, beta=0.9)]),
        ("k=2 with gamma_2 = 0", [Level(gamma=0.9, beta=0.99), Level(gamma=0.0, beta=0.9)]),
        ("k=3 (inverse_exp)", kadam_levels(3, beta=0.999, gamma=0.9)),
    ]
    cases = [(label, levels, dict(lr=_OPT_LR, levels=levels)) for label, levels in cases]
    failed, _ = _compare_optimizer(run, "kadam", lambda kw: (lambda params: opt_factory(params, **kw)), cases)
    if failed is not None:
        return failed
    levels = [Level(gamma=0.8, beta=0.95), Level(gamma=0.5, beta=0.9)]
    try:
        diff = run.call("5 training steps of a small model with kadam(params, lr=0.05, levels=...)",
                        _small_model_match, lambda params: opt_factory(params, lr=0.05, levels=levels), levels)
    except _Raised as err:
        return _result(check, False, f"right on the fixed gradients, but training a small model raised "
                       f"{_describe_exception(err.error)}.",
                       _exception_hints(err.error) + ["The optimizer must work with zero_grad(), backward() and "
                                                      "step() on the parameters of an nn.Module."])
    if not diff <= 1e-10:
        return _result(check, False, f"right on the fixed gradients, but training a small model drifts from "
                       f"KAdam by {_g(diff)} in 5 steps.", ["Does every parameter keep its own state?"])
    return _result(check, True, "your k-Adam matches KAdam.",
                   ["k = 1, 2, 3 step by step on fixed gradients (including a gamma = 0 level), and 5 training "
                    f"steps of a small float64 MLP 2-Adam: largest parameter difference {_g(diff)}."])


# =====================================================================================
# Assignment 3: the stability boundary, measured
# =====================================================================================


@dataclass(frozen=True)
class RareFeatureProblem:
    """Least squares with ``dense`` features in every batch and ``rare`` ones seen only early.

    Step n draws a batch of ``batch_size`` inputs x ~ N(0, I) (float64) and targets
    y = <w*, x> + noise; for n >= ``rare_until`` the rare columns are zero, so from then on
    the rare weights get exactly zero gradient and Adam's state for them only decays: the
    worst case of the discrete bound. The model is a linear map w (no bias) trained on the
    mean squared error with learning rate ``lr``; rare features stand for tokens or inputs
    that stop appearing (a character seen only at the start of a corpus, a dead unit).
    """

    dense: int = 8
    rare: int = 4
    batch_size: int = 16
    rare_until: int = 10
    noise: float = 0.1
    lr: float = 0.01

    def __post_init__(self):
        for name in ("dense", "rare", "batch_size", "rare_until"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        for name in ("noise", "lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")

    def batches(self, steps: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The batches (x [batch, dense + rare], y [batch]) of steps 0..steps-1; the same for the same seed."""
        d = self.dense + self.rare
        gen = torch.Generator().manual_seed(seed)
        w_star = torch.randn(d, generator=gen, dtype=torch.float64)
        out = []
        for n in range(steps):
            x = torch.randn(self.batch_size, d, generator=gen, dtype=torch.float64)
            if n >= self.rare_until:
                x[:, self.dense:] = 0.0
            y = x @ w_star + self.noise * torch.randn(self.batch_size, generator=gen, dtype=torch.float64)
            out.append((x, y))
        return out

    def initial_weights(self, seed: int = 0) -> torch.Tensor:
        """The weights w [dense + rare] at step 0 (a leaf tensor that requires grad), float64."""
        gen = torch.Generator().manual_seed(10_000 + seed)
        return (0.1 * torch.randn(self.dense + self.rare, generator=gen, dtype=torch.float64)).requires_grad_()

    @staticmethod
    def gradient(w: torch.Tensor, batch) -> torch.Tensor:
        """Gradient of the mean squared error at w: (2 / batch) x^T (x w - y), computed in closed form."""
        x, y = batch
        with torch.no_grad():
            return (2.0 / x.shape[0]) * (x.T @ (x @ w - y))


def _reference_optimizer(params, *, beta, gamma, lr):
    return KAdam(params, lr=lr, betas=(gamma, beta), eps=0.0)


#: A3 sweep settings per scale: a grid of betas x gammas, steps per run and the fit window.
#: The toy runs on the CPU at every scale (it is tiny); "paper" only refines the grid.
BOUNDARY_PRESETS = {
    "smoke": dict(betas=(0.3, 0.5, 0.9), gammas=tuple(np.round(np.arange(0.40, 0.995, 0.03), 3)),
                  steps=120, window=(60, 120)),
    "cpu": dict(betas=(0.2, 0.35, 0.5, 0.65, 0.8, 0.9), gammas=tuple(np.round(np.arange(0.30, 0.995, 0.015), 3)),
                steps=300, window=(150, 300)),
    "paper": dict(betas=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                  gammas=tuple(np.round(np.arange(0.30, 0.998, 0.0075), 4)), steps=300, window=(150, 300)),
}


def boundary_settings(scale: str = "auto") -> dict:
    """The A3 sweep settings for ``scale`` (see :data:`BOUNDARY_PRESETS`): betas, gammas, steps, window."""
    from kadam_edu.scale import resolve_scale

    preset = BOUNDARY_PRESETS[resolve_scale(scale)]
    return dict(preset, betas=np.array(preset["betas"]), gammas=np.array(preset["gammas"]))


@dataclass
class BoundarySweep:
    """Max-update trajectories of the rare-feature problem on a (beta, gamma) grid.

    betas [B], gammas [G]; max_updates [B, G, steps]: ||u_n||_inf per step (nan after a run
    stopped being finite); window: (start, stop), the steps to fit slopes on; settings: what
    the optimizer used (``betas_passed`` as given to KAdam for the first point, ``eps``,
    ``lr``, ``reference``: True when make_optimizer was not answered and the library's was used).
    """

    betas: np.ndarray
    gammas: np.ndarray
    max_updates: np.ndarray
    window: tuple[int, int]
    steps: int
    settings: dict = field(default_factory=dict)

    @property
    def gamma_spacing(self) -> float:
        """The largest gap between neighbouring gammas of the grid (the boundary's resolution)."""
        return float(np.max(np.diff(self.gammas))) if len(self.gammas) > 1 else 1.0

    def log_slopes(self, fn=None) -> np.ndarray:
        """Slope of ln ||u_n||_inf over the window, per grid point: ``fn(max_update, start, stop)``.

        With ``fn=None``, or while ``fn`` returns None (not answered), the library's
        least-squares fit is used (and a note printed). Returns [B, G] floats (nan: no fit).
        """
        start, stop = self.window
        out = np.full(self.max_updates.shape[:2], np.nan)
        if fn is not None:
            _require_callable("log_slopes", fn, "log_slope(max_update, start, stop)")
            first = _quiet(fn, self.max_updates[0, 0].copy(), start, stop)
            if first is None:
                print("log_slope is not answered yet: using the library's least-squares fit for now, so that "
                      "the later tasks can run.")
                fn = None
        for i in range(len(self.betas)):
            for j in range(len(self.gammas)):
                mu = self.max_updates[i, j]
                if fn is None:
                    out[i, j] = _reference_log_slope(mu, start, stop)
                else:
                    value = _quiet(fn, mu.copy(), start, stop)
                    out[i, j] = math.nan if value is None else float(value)
        return out

    def predicted_rates(self) -> tuple[np.ndarray, np.ndarray]:
        """(discrete, continuous) predicted slopes on the grid, [B, G] each:
        ``ln(gamma) - ln(beta)/2`` (signed) and ``-C/2`` (signed)."""
        B, G = np.meshgrid(self.betas, self.gammas, indexing="ij")
        with np.errstate(divide="ignore"):
            return np.log(G) - 0.5 * np.log(B), -0.5 * bounds.stability_constant(B, G)


def _reference_log_slope(mu, start, stop) -> float:
    mu = np.asarray(mu, dtype=float)
    n = np.arange(len(mu))
    keep = (n >= start) & (n < stop) & np.isfinite(mu) & (mu > 0)
    if keep.sum() < 2:
        return math.nan
    x, y = n[keep], np.log(mu[keep])
    x = x - x.mean()
    return float(np.sum(x * (y - y.mean())) / np.sum(x * x))


def _check_grid(name, values, lo, hi, lo_closed=False) -> np.ndarray:
    arr = np.asarray(values, dtype=float).reshape(-1)
    ok = (arr >= lo if lo_closed else arr > lo) & (arr < hi)
    if arr.size == 0 or not np.all(ok) or np.any(np.diff(arr) <= 0):
        interval = f"{'[' if lo_closed else '('}{lo}, {hi})"
        raise ValueError(f"{name} must be a non-empty increasing list of numbers in {interval}; got {values!r}")
    return arr


def boundary_sweep(make_optimizer=None, *, betas, gammas, steps: int, window, seed: int = 0,
                   problem: RareFeatureProblem | None = None, progress: bool = False) -> BoundarySweep:
    """Train the rare-feature problem with Adam at every (beta, gamma) of the grid; record ||u_n||_inf.

    ``make_optimizer(params, *, beta, gamma, lr)`` builds the optimizer (a :class:`KAdam`, whose
    ``last_max_update`` is recorded). If it is None or returns None (not answered yet), the
    library's ``KAdam(params, lr=lr, betas=(gamma, beta), eps=0)`` is used and a note printed.
    ``window = (start, stop)`` with 0 <= start < stop <= steps: the steps where slopes are fitted.
    """
    betas = _check_grid("betas", betas, 0.0, 1.0)
    gammas = _check_grid("gammas", gammas, 0.0, 1.0, lo_closed=True)
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 2:
        raise ValueError(f"steps must be an int >= 2; got {steps!r}")
    try:
        start, stop = (int(w) for w in window)
    except (TypeError, ValueError):
        raise ValueError(f"window must be a pair (start, stop) of ints; got {window!r}") from None
    if not 0 <= start < stop <= steps:
        raise ValueError(f"window must satisfy 0 <= start < stop <= steps={steps}; got {window!r}")
    problem = problem or RareFeatureProblem()
    batches = problem.batches(int(steps), seed)

    use_reference = make_optimizer is None
    if not use_reference:
        _require_callable("boundary_sweep", make_optimizer, "make_optimizer(params, *, beta, gamma, lr)")
        probe = make_optimizer([torch.zeros(1, dtype=torch.float64, requires_grad=True)],
                               beta=float(betas[0]), gamma=float(gammas[0]), lr=problem.lr)
        if probe is None:
            print("make_optimizer is not answered yet: this sweep uses the library's optimizer for now.")
            use_reference = True
        elif not isinstance(probe, KAdam):
            raise TypeError(f"make_optimizer must return a kadam_edu.KAdam (its last_max_update is what the sweep "
                            f"records); got {type(probe).__name__}")
    make = _reference_optimizer if use_reference else make_optimizer

    mu = np.full((len(betas), len(gammas), int(steps)), np.nan)
    settings = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(betas) * len(gammas), desc="sweep", leave=False)
    for i, b in enumerate(betas):
        for j, g in enumerate(gammas):
            w = problem.initial_weights(seed)
            opt = make([w], beta=float(b), gamma=float(g), lr=problem.lr)
            if not settings:
                group = opt.param_groups[0]
                settings = dict(betas_passed=tuple(float(x) for x in group["betas"]), first_point=(float(b), float(g)),
                                eps=float(group["eps"]), lr=float(group["lr"]), reference=use_reference,
                                levels=[tuple(lv) for lv in KAdam.group_levels(group)])
            for n, batch in enumerate(batches):
                w.grad = problem.gradient(w, batch)
                opt.step()
                value = opt.last_max_update
                if not math.isfinite(value):
                    break
                mu[i, j, n] = value
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return BoundarySweep(betas=betas, gammas=gammas, max_updates=mu, window=(start, stop), steps=int(steps),
                         settings=settings)


# ---- checks ----------------------------------------------------------------------------


@_stops_at_time_limit
def check_make_optimizer(fn, *, timeout: float = 10.0) -> CheckResult:
    """Check ``fn(params, *, beta, gamma, lr) -> KAdam``: Adam at the paper's (beta, gamma),
    eps = 0 (the setting of the bound), no weight decay, k = 1. ``timeout``: seconds for all
    calls of ``fn`` together (default 10)."""
    check = "check_make_optimizer"
    _require_callable(check, fn, "make_optimizer(params, *, beta, gamma, lr)")
    run = _StudentCode(check, timeout)
    _preload_torch_optim()
    for beta, gamma, lr in [(0.5, 0.8, 0.01), (0.999, 0.9, 0.001), (0.3, 0.0, 0.1)]:
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


def _slope_cases():
    rng = np.random.default_rng(7)
    n = np.arange(200)
    exact = 0.7 * np.exp(0.03 * n)
    noisy = np.exp(-0.02 * n + 0.2 * rng.normal(size=200))
    prefix = np.where(n < 100, 50.0 * np.exp(-0.1 * n), np.exp(0.05 * (n - 100)))
    stopped = np.concatenate([np.exp(0.08 * n[:150]), np.full(50, np.nan)])
    flat = 1.0 + 0.01 * rng.normal(size=200)
    return [
        ("an exact exponential", exact, 100, 200),
        ("a noisy decay", noisy, 50, 200),
        ("a sequence with a different start", prefix, 100, 200),
        ("a run that stopped at step 150 (nan after)", stopped, 100, 200),
        ("a flat noisy sequence", flat, 20, 180),
    ]


@_stops_at_time_limit
def check_log_slope(fn, *, timeout: float = 10.0) -> CheckResult:
    """Check ``fn(max_update, start, stop) -> float``: the least-squares slope of
    ln(max_update[n]) over start <= n < stop, using only positive finite values (the slope
    is finite on every test sequence). ``timeout``: seconds for all calls of ``fn`` together
    (default 10)."""
    check = "check_log_slope"
    _require_callable(check, fn, "log_slope(max_update, start, stop)")
    run = _StudentCode(check, timeout)
    student, reference = [], []
    cases = _slope_cases()
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
        reference.append(_reference_log_slope(mu, start, stop))
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
        return _result(check, False, "wrong even on an exact exponential 0.7 exp(0.03 n): fit ln(max_update) "
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


_LABELS = ("stable", "unstable")


def _check_labels(sweep, labels):
    """labels as an object array [B, G] of 'stable' / 'unstable' / None (ValueError otherwise)."""
    if not isinstance(sweep, BoundarySweep):
        raise TypeError(f"sweep must be the BoundarySweep from boundary_sweep(...); got {type(sweep).__name__}")
    shape = (len(sweep.betas), len(sweep.gammas))
    try:
        arr = np.empty(shape, dtype=object)
        rows = list(labels)
        if len(rows) != shape[0] or any(len(list(r)) != shape[1] for r in rows):
            raise ValueError
        for i, row in enumerate(rows):
            for j, lab in enumerate(row):
                arr[i, j] = lab
    except (TypeError, ValueError):
        raise ValueError(f"labels must be a nested list with one row per beta and one entry per gamma, i.e. shape "
                         f"{shape}; got {_shape_of(labels)}") from None
    for lab in arr.flat:
        if lab is not None and lab not in _LABELS:
            raise ValueError(f"each label must be 'stable' or 'unstable' (or None while not answered); got {lab!r}")
    return arr


def _shape_of(labels) -> str:
    try:
        rows = list(labels)
        return f"{len(rows)} rows of lengths {sorted({len(list(r)) for r in rows})}"
    except TypeError:
        return f"{type(labels).__name__}"


def check_classification(sweep: BoundarySweep, labels) -> CheckResult:
    """Check stable/unstable labels of a sweep's grid against the exact discrete law and explain
    where they differ from C's prediction (C < 0: unstable).

    ``labels[i][j]`` labels (sweep.betas[i], sweep.gammas[j]). The law: ||u_n|| grows like
    exp(rate * n) with rate = ln(gamma) - ln(beta)/2 when the gradient of some weights stops.
    A point counts as a clear case when its growth over the fit window is at least a factor e
    (|rate| * window length >= 1); closer to the boundary either label is accepted.
    """
    check = "check_classification"
    arr = _check_labels(sweep, labels)
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
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be a number in (0, 1) (the resolution in gamma); got {tolerance!r}")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
                                  or not 0 <= threshold < 1):
        raise ValueError(f"threshold must be None or a growth rate per step in [0, 1) (the slope above which you "
                         f"call a point unstable); got {threshold!r}")
    shift = math.exp(threshold or 0.0)
    if estimates is None:
        return _not_answered(check, "estimate_boundary")
    if not isinstance(estimates, Mapping):
        raise TypeError(f"estimates must be a dict {{beta: gamma}}; got {type(estimates).__name__}")
    if not estimates:
        raise ValueError("estimates is empty: give one entry per beta of your sweep, {beta: gamma where growth starts}")
    items = []
    def complex_note(x) -> str:
        return (", a complex number: beta and gamma are real" if isinstance(x, numbers.Complex)
                and not isinstance(x, numbers.Real) else "")

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


# ---- figure ------------------------------------------------------------------------------


def plot_boundary(sweep: BoundarySweep, slopes=None, labels=None, estimates=None):
    """Two panels: (a) the (beta, gamma) grid coloured by measured slope, with your labels
    (filled: unstable, open: stable), your boundary estimates (stars), C = 0 and gamma^2 = beta;
    (b) measured slope against gamma for each beta, with both predictions.

    Any of ``slopes`` / ``labels`` / ``estimates`` may be None (not answered yet): that part is
    left out. Returns a matplotlib Figure.
    """
    from matplotlib import colormaps
    from matplotlib import colors as mcolors
    from matplotlib.figure import Figure

    from kadam_edu import plots

    if not isinstance(sweep, BoundarySweep):
        raise TypeError(f"sweep must be a BoundarySweep (from boundary_sweep); got {type(sweep).__name__}")
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    lo = (max(0.0, sweep.betas.min() - 0.05), max(0.0, sweep.gammas.min() - 0.02))
    hi = (min(1.0, sweep.betas.max() + 0.05), 1.0)
    plots.region_map(ax, lo=lo, hi=hi)
    b = np.linspace(lo[0] + 1e-3, hi[0] - 1e-4, 200)
    ax.plot(b, 2 * b / (1 + b), color="k", lw=1.0, label="C = 0 (continuous)")
    B, G = np.meshgrid(sweep.betas, sweep.gammas, indexing="ij")
    if slopes is not None:
        s = np.asarray(slopes, dtype=float)
        lim = max(0.02, float(np.nanmax(np.abs(s))) if np.isfinite(s).any() else 0.02)
        norm = mcolors.TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim)
        arr = None if labels is None else _check_labels(sweep, labels)
        if arr is None or all(lab is None for lab in arr.flat):
            sc = ax.scatter(B.ravel(), G.ravel(), c=s.ravel(), cmap="coolwarm", norm=norm, s=16, zorder=3,
                            label="not labelled yet")
        else:
            unstable, stable = arr == "unstable", arr == "stable"
            sc = ax.scatter(B[unstable], G[unstable], c=s[unstable], cmap="coolwarm", norm=norm, s=18, zorder=3,
                            label="labelled unstable")
            ax.scatter(B[stable], G[stable], facecolors="none", edgecolors="0.4", s=16, lw=0.6, zorder=3,
                       label="labelled stable")
            if (~unstable & ~stable).any():
                ax.scatter(B[~unstable & ~stable], G[~unstable & ~stable], marker="x", color="0.5", s=12, zorder=3,
                           label="no label")
        fig.colorbar(sc, ax=ax, label="measured slope of ln||u_n|| per step")
    else:
        ax.scatter(B.ravel(), G.ravel(), color="0.6", s=6, zorder=3, label="grid")
    if estimates:
        pts = [(float(k), float(v)) for k, v in estimates.items() if v is not None]
        if pts:
            ax.scatter(*zip(*pts), marker="*", s=140, color="gold", edgecolors="k", zorder=4, label="your boundary")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title("(a) measured slopes on the grid")
    disc, cont = sweep.predicted_rates()
    if slopes is not None:
        s = np.asarray(slopes, dtype=float)
        cmap = colormaps["viridis"]
        for i, beta in enumerate(sweep.betas):
            color = cmap(0.9 * i / max(1, len(sweep.betas) - 1))
            bx.plot(sweep.gammas, s[i], "o", ms=3, color=color, label=f"beta={beta:g}")
            bx.plot(sweep.gammas, np.maximum(0, disc[i]), "-", lw=1, color=color)
            bx.plot(sweep.gammas, np.maximum(0, cont[i]), ":", lw=1, color=color)
        bx.set_ylim(min(-0.02, float(np.nanmin(s)) - 0.005) if np.isfinite(s).any() else -0.02,
                    max(0.05, float(np.nanmax(s)) * 1.1) if np.isfinite(s).any() else 0.05)
        bx.plot([], [], "k-", lw=1, label="discrete: max(0, ln g - ln(b)/2)")
        bx.plot([], [], "k:", lw=1, label="continuous: max(0, -C)/2")
        bx.legend(fontsize=7, ncol=2)
    else:
        bx.text(0.5, 0.5, "no slopes yet", ha="center", va="center", transform=bx.transAxes)
    bx.axhline(0, color="0.7", lw=0.8)
    bx.set(xlabel=r"$\gamma$ (first moment)", ylabel="slope of ln||u_n|| per step",
           title="(b) measured slope (dots) against both laws")
    return fig
