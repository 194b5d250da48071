"""The checking engine of the course assignments: what every ``check_*`` of
:mod:`kadam_edu.assignments` shares.

* :class:`CheckResult` (what a check found) and :class:`NotAnswered`;
* running the student's code: :class:`_StudentCode` calls it with warnings silenced, within a time
  limit for all of a check's calls together (SIGALRM in the main thread on Unix, a daemon thread
  elsewhere), and turns anything it raises into a failed check (only ``KeyboardInterrupt`` passes);
* turning its answers into numbers (:func:`_to_float`, :func:`_to_array`: None is "not answered",
  complex, boolean, str or ill-shaped answers are explained);
* comparing (:func:`_agree`), formatting numbers for messages (:func:`_g`, :func:`_pair`) and
  recognising a plausible wrong answer (:class:`_Mistake`, :func:`_match_mistake`).

The assignment modules import the private helpers from here (one package).
"""

from __future__ import annotations

import functools
import math
import numbers
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from kadam_edu import validate
from kadam_edu.optim import KAdam

__all__ = ["CheckResult", "NotAnswered"]


# ---- results -----------------------------------------------------------------------------


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
        validate.Real(0.0, lo_open=True, meaning="seconds: the time your code gets for all of the check's calls "
                      "together")(f"{check}: timeout", timeout)
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


def _hidden_rng(seed) -> np.random.Generator | None:
    """The generator of a check's drawn inputs: None for ``seed=None`` (the published inputs), else a
    numpy Generator seeded from ``seed`` in a stream of its own (no seed reproduces the published inputs).
    Autograders pass a seed in hidden tests, so that students never see those inputs."""
    if seed is None:
        return None
    return np.random.default_rng([16, validate.seed("seed", seed)])


def _torch_seed(rng: np.random.Generator | None, published: int) -> int:
    """A torch seed: ``published`` without a generator, else one drawn from it."""
    return published if rng is None else int(rng.integers(2**31))


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


# ---- before a time limit starts ----------------------------------------------------------


@functools.cache
def _preload_torch_optim() -> None:
    """Build and step one optimizer: torch imports torch._dynamo at the first optimizer (seconds on a
    CPU). Done before the student's time limit starts, so that it neither counts nor gets interrupted."""
    p = torch.zeros(1, requires_grad=True)
    p.grad = torch.zeros(1)
    KAdam([p], lr=0.0).step()
