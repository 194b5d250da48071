"""Argument checks: one place for "is this value allowed here?".

Each check returns the value, normalized (numpy scalars become Python ones), or raises a
ValueError that names the argument, says what is allowed and what was given::

    validate.positive_int("steps", 0)      # ValueError: steps must be a positive int; got 0
    validate.decay("beta", 0.999)          # 0.999
    validate.seed("seed", "0")             # ValueError: seed must be a non-negative int <= 2**63 - 1 ...

The same rules exist as small objects (:class:`Int`, :class:`Real`, :class:`Bool`,
:class:`Choice`, :class:`ListOf`, :class:`Pair`, :class:`Optional`, :class:`Dict`,
:class:`Seed`), called as ``rule(name, value)``, so that a table of settings can be declared
key by key (``kadam_edu.experiments.common.Presets``). Nothing here imports from kadam_edu.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "MAX_SEED",
    "student_function",
    "Check",
    "Int",
    "Real",
    "Bool",
    "Choice",
    "ListOf",
    "Pair",
    "Optional",
    "Dict",
    "Seed",
    "integer",
    "positive_int",
    "real",
    "finite_real",
    "decay",
    "probability",
    "seed",
    "boolean",
    "choice",
    "positive_real",
    "second_moment_decay",
    "first_moment_decay",
    "generator",
]

#: The largest seed accepted: torch.manual_seed takes a signed 64-bit int.
MAX_SEED = 2**63 - 1


class Check(ABC):
    """A rule for one value. ``check(name, value)`` returns the value (normalized) or raises
    ``ValueError("<name> must <rule>; got <value>")``.

    Subclasses give ``noun`` (one value: "a positive int") and ``nouns`` (several: "positive
    ints"), and implement ``__call__``.
    """

    noun = "a value"
    nouns = "values"

    def rule(self) -> str:
        """What a value must satisfy, as a verb phrase: "be a positive int"."""
        return f"be {self.noun}"

    def many(self) -> str:
        """The rule for a list of such values: "hold positive ints"."""
        return f"hold {self.nouns}"

    def fail(self, name: str, value, detail: str = ""):
        """Raise the ValueError for ``name = value`` (``detail``: what exactly is wrong, if useful)."""
        raise ValueError(f"{name} must {self.rule()}; got {value!r}{detail}")

    @abstractmethod
    def __call__(self, name: str, value):
        """The value, normalized; ValueError (via :meth:`fail`) if it breaks the rule."""


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _same_kind(value, option) -> bool:
    """``value`` is of ``option``'s type (a subclass counts), and a bool only where ``option`` is one."""
    return isinstance(value, type(option)) and isinstance(value, bool) == isinstance(option, bool)


def _suffix(meaning: str) -> str:
    return f" ({meaning})" if meaning else ""


def _a(text: str) -> str:
    return ("an " if text[0] in "aeiou" else "a ") + text


class _Worded(Check):
    """A check whose description is built by ``_words(plural)``: "an int >= 2", "ints >= 2"."""

    @abstractmethod
    def _words(self, plural: bool) -> str:
        """The rule in words, singular or plural (each subclass words its own)."""

    @property
    def noun(self) -> str:
        return _a(self._words(False))

    @property
    def nouns(self) -> str:
        return self._words(True)


@dataclass(frozen=True)
class Int(_Worded):
    """An int (not a bool, not a float such as 2.0) in [lo, hi]; None leaves a side open."""

    lo: int | None = None
    hi: int | None = None
    meaning: str = ""

    def _words(self, plural: bool) -> str:
        s = "s" if plural else ""
        lo, hi = self.lo, self.hi
        if hi is None:
            named = {0: f"non-negative int{s}", 1: f"positive int{s}"}
            text = named.get(lo, f"int{s}" if lo is None else f"int{s} >= {lo}")
        elif lo is None:
            text = f"int{s} <= {hi}"
        else:
            text = f"int{s} in [{lo}, {hi}]"
        return text + _suffix(self.meaning)

    def __call__(self, name: str, value) -> int:
        if not _is_int(value) or (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            self.fail(name, value)
        return int(value)


@dataclass(frozen=True)
class Seed(Int):
    """A random seed: an int in [0, 2**63 - 1] (what torch.manual_seed takes), not a bool or str."""

    lo: int | None = 0
    hi: int | None = MAX_SEED

    @property
    def noun(self) -> str:
        return "a non-negative int <= 2**63 - 1 (an int, not a bool or a string)"

    @property
    def nouns(self) -> str:
        return "non-negative ints <= 2**63 - 1"


@dataclass(frozen=True)
class Real(_Worded):
    """A real number (an int or float, not a bool, never NaN) with optional bounds.

    lo / hi: bounds (None: open to -inf / +inf); lo_open / hi_open: exclude the bound itself.
    finite: refuse +-inf. A Python int is returned as it is (a preset's 2 stays 2 in a saved
    config); any other real as a float.
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    finite: bool = True
    meaning: str = ""

    def _words(self, plural: bool) -> str:
        s = "s" if plural else ""
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            text = f"real{s} in {'(' if self.lo_open else '['}{lo:g}, {hi:g}{')' if self.hi_open else ']'}"
        else:
            text = ("finite " if self.finite else "") + f"real{s}"
            if lo is not None:
                text += f" {'>' if self.lo_open else '>='} {lo:g}"
            elif hi is not None:
                text += f" {'<' if self.hi_open else '<='} {hi:g}"
        return text + _suffix(self.meaning)

    def __call__(self, name: str, value):
        if not _is_real(value):
            self.fail(name, value)
        x = float(value)
        ok = not math.isnan(x) and not (self.finite and math.isinf(x))
        if ok and self.lo is not None:
            ok = x > self.lo if self.lo_open else x >= self.lo
        if ok and self.hi is not None:
            ok = x < self.hi if self.hi_open else x <= self.hi
        if not ok:
            self.fail(name, value)
        return value if type(value) is int else x


@dataclass(frozen=True)
class Bool(Check):
    """True or False (not 0/1, not "True"); a numpy bool is returned as a Python bool."""

    meaning: str = ""

    @property
    def noun(self) -> str:
        return "True or False" + _suffix(self.meaning)

    nouns = "bools"

    def __call__(self, name: str, value) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            self.fail(name, value)
        return bool(value)


@dataclass(frozen=True)
class Choice(Check):
    """One of ``options``: equal to it and of its type (so 1 is not "1", and True is not 1)."""

    options: tuple
    meaning: str = ""

    def __post_init__(self):
        object.__setattr__(self, "options", tuple(self.options))

    @property
    def noun(self) -> str:
        return f"one of {list(self.options)}" + _suffix(self.meaning)

    @property
    def nouns(self) -> str:
        return f"values among {list(self.options)}"

    def many(self) -> str:
        return f"be among {list(self.options)}" + _suffix(self.meaning)

    def __call__(self, name: str, value):
        if not any(_same_kind(value, o) and value == o for o in self.options):
            self.fail(name, value)
        return value


@dataclass(frozen=True)
class ListOf(Check):
    """A list (or tuple) of at least ``min_len`` values that each pass ``item``; returned as a list.

    unique: refuse repeats. A string is not a list of characters.
    """

    item: Check
    min_len: int = 1
    unique: bool = False

    def rule(self) -> str:
        size = "a non-empty list" if self.min_len == 1 else "a list" if self.min_len == 0 else (
            f"a list of at least {self.min_len}")
        return f"{self.item.many()}, as {size}{' without repeats' if self.unique else ''}"

    @property
    def noun(self) -> str:
        return f"a list of {self.item.nouns}"

    @property
    def nouns(self) -> str:
        return f"lists of {self.item.nouns}"

    def __call__(self, name: str, value) -> list:
        if not isinstance(value, (list, tuple)) or len(value) < self.min_len:
            self.fail(name, value)
        out = []
        for i, v in enumerate(value):
            try:
                out.append(self.item(f"{name}[{i}]", v))
            except ValueError:
                self.fail(name, value, f" (entry {i} is {v!r})")
        if self.unique and len(set(out)) != len(out):
            self.fail(name, value, " (it has repeats)")
        return out


@dataclass(frozen=True)
class Pair(Check):
    """Two values (lo, hi) that each pass ``item``, with lo < hi; returned as a tuple."""

    item: Check

    @property
    def noun(self) -> str:
        return f"a pair (lo, hi) of {self.item.nouns} with lo < hi"

    @property
    def nouns(self) -> str:
        return f"pairs (lo, hi) of {self.item.nouns} with lo < hi"

    def __call__(self, name: str, value) -> tuple:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            self.fail(name, value)
        try:
            lo, hi = self.item(name, value[0]), self.item(name, value[1])
        except ValueError:
            self.fail(name, value)
        if not lo < hi:
            self.fail(name, value)
        return lo, hi


@dataclass(frozen=True)
class Optional(Check):
    """None (with ``meaning``, e.g. "all") or a value that passes ``item``."""

    item: Check
    meaning: str = ""

    @property
    def noun(self) -> str:
        return f"None{_suffix(self.meaning)} or {self.item.noun}"

    @property
    def nouns(self) -> str:
        return f"Nones or {self.item.nouns}"

    def __call__(self, name: str, value):
        if value is None:
            return None
        try:
            return self.item(name, value)
        except ValueError:
            self.fail(name, value)


@dataclass(frozen=True)
class Dict(Check):
    """A dict with str keys (its values are for the caller to check); returned as a new dict."""

    meaning: str = ""

    @property
    def noun(self) -> str:
        return "a dict" + (f" of {self.meaning}" if self.meaning else "")

    nouns = "dicts"

    def __call__(self, name: str, value) -> dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            self.fail(name, value)
        return dict(value)


# --------------------------------------------------------------------------- functions
# ``meaning``: what the value is, added to the message in parentheses ("lr must be a finite
# real > 0 (the learning rate); got 0.0").
def integer(name: str, value, *, lo: int | None = None, hi: int | None = None, meaning: str = "") -> int:
    """An int in [lo, hi] (None: unbounded on that side)."""
    return Int(lo, hi, meaning)(name, value)


def positive_int(name: str, value, *, meaning: str = "") -> int:
    """An int >= 1."""
    return Int(1, meaning=meaning)(name, value)


def real(name: str, value, *, lo=None, hi=None, lo_open=False, hi_open=False, meaning: str = "") -> float:
    """A real number in the given bounds; +-inf allowed where the bounds allow it, NaN never."""
    return float(Real(lo, hi, lo_open, hi_open, finite=False, meaning=meaning)(name, value))


def finite_real(name: str, value, *, lo=None, hi=None, lo_open=False, hi_open=False, meaning: str = "") -> float:
    """A finite real number in the given bounds."""
    return float(Real(lo, hi, lo_open, hi_open, meaning=meaning)(name, value))


def positive_real(name: str, value, *, meaning: str = "") -> float:
    """A finite real number > 0 (a learning rate, a time step, a tolerance)."""
    return finite_real(name, value, lo=0.0, lo_open=True, meaning=meaning)


def decay(name: str, value, *, allow_zero: bool = False, meaning: str = "") -> float:
    """A decay rate in the open interval (0, 1), such as the paper's beta; in [0, 1) with
    ``allow_zero`` (the paper's gamma: gamma = 0 is RMSprop, no first moment)."""
    return float(Real(0.0, 1.0, lo_open=not allow_zero, hi_open=True, meaning=meaning)(name, value))


def second_moment_decay(name: str, value, *, allow_zero: bool = False) -> float:
    """The paper's beta (torch's ``betas[1]``): a decay in (0, 1), or [0, 1) with ``allow_zero``."""
    return decay(name, value, allow_zero=allow_zero, meaning="the paper's second-moment decay, torch's betas[1]")


def first_moment_decay(name: str, value) -> float:
    """The paper's gamma (torch's ``betas[0]``): a decay in [0, 1); gamma = 0 keeps no first moment."""
    return decay(name, value, allow_zero=True, meaning="the paper's first-moment decay, torch's betas[0]")


def probability(name: str, value, *, meaning: str = "") -> float:
    """A probability in [0, 1]."""
    return float(Real(0.0, 1.0, meaning=meaning)(name, value))


def seed(name: str, value) -> int:
    """A random seed: an int in [0, 2**63 - 1] (not a bool, float or string)."""
    return Seed()(name, value)


def boolean(name: str, value, *, meaning: str = "") -> bool:
    """True or False (a numpy bool too, returned as a Python bool)."""
    return Bool(meaning)(name, value)


def choice(name: str, value, options, *, meaning: str = ""):
    """One of ``options``."""
    return Choice(tuple(options), meaning)(name, value)


def generator(name: str, value, *, optional: bool = False, cpu: bool = False, meaning: str = ""):
    """A ``torch.Generator``; None too if ``optional``; with ``cpu``, one on the CPU (so that a
    seed gives the same draws on every device). Returned as it is."""
    kind = "a seeded CPU torch.Generator, e.g. torch.Generator().manual_seed(0)" if cpu else "a torch.Generator"
    rule = ("None or " if optional else "") + kind + _suffix(meaning)
    if value is None and optional:
        return None
    if not isinstance(value, torch.Generator):
        raise ValueError(f"{name} must be {rule}; got {value!r}")
    if cpu and value.device.type != "cpu":
        raise ValueError(f"{name} must be {rule}; got one on {value.device}")
    return value


def student_function(caller: str, fn, what: str):
    """``fn`` when it is callable; else TypeError saying that ``caller`` wants the function ``what``
    itself (a student's common slip: passing its result, or forgetting to define it)."""
    if not callable(fn):
        raise TypeError(
            f"{caller} expects your function {what} itself (a callable, without calling it); "
            f"got {fn!r} of type {type(fn).__name__}"
        )
    return fn
