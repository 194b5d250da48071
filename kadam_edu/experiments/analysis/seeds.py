"""Seeds and grid points of a Result, statistics over seeds, and claims counted seed by seed.

A multi-seed experiment (``experiments.reproduce(name, seeds=S)``) holds one point summary per
(seed, grid point), each with ``"seed"`` and ``"point"``: :func:`by_seed` and :func:`by_point`
group them. A result written before seeds (no such keys) is one seed, ``provenance["seed"]`` (0
when that is missing too), whose grid points are its points in order.

A statistic measured in each seed is a :class:`SeedSummary` (median and range over the seeds); a
claim tested in each seed is a :class:`SeedVerdict`, established under the rule of
:data:`MIN_SEEDS` (see :class:`SeedVerdict`).
"""

from __future__ import annotations

import math
import numbers
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kadam_edu.experiments.result import Result

__all__ = ["MIN_SEEDS", "seeds_of", "by_seed", "by_point", "SeedSummary", "summarise", "SeedVerdict", "verdict",
           "rank_corr"]

#: A claim is established only when it holds in every seed and there are at least this many.
MIN_SEEDS = 3


# --------------------------------------------------------------------------- seeds and grid points


def _check_result(result, figures: Sequence[str] | None = None, *, what: str = "result") -> None:
    if not isinstance(result, Result):
        raise TypeError(f"{what} must be a Result; got {type(result).__name__}")
    if figures is not None and result.figure not in figures:
        names = ", ".join(figures[:-1]) + (" or " if len(figures) > 1 else "") + figures[-1]
        raise ValueError(f"{what} must be a {names} result; got figure {result.figure!r}")


def _as_seed(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{where}: a seed must be an int; got {value!r}")
    return int(value)


def _legacy_seed(result: Result) -> int:
    seed = result.provenance.get("seed") if isinstance(result.provenance, dict) else None
    return 0 if seed is None else _as_seed(seed, "provenance['seed']")


def by_seed(result: Result) -> dict[int, list[dict]]:
    """The result's point summaries grouped by seed: ``{seed: [summary, ...]}``, seeds in the
    order of ``data["seeds"]`` (else of first appearance), each list in grid-point order.

    Each summary is a copy with ``"seed"``, ``"point"`` and ``"index"`` filled in: a legacy point
    (no such keys) belongs to ``provenance["seed"]`` and its grid point and index are its
    position. The same (seed, point) twice is a ValueError.
    """
    _check_result(result)
    legacy = _legacy_seed(result)
    groups: dict[int, list[tuple[int, dict]]] = {
        _as_seed(s, "data['seeds']"): [] for s in (result.data.get("seeds") or [])}
    for i, p in enumerate(result.points):
        if not isinstance(p, Mapping):
            raise TypeError(f"point {i} of {result.figure} is a {type(p).__name__}, not a summary (a dict)")
        s = legacy if p.get("seed") is None else _as_seed(p["seed"], f"point {i} of {result.figure}")
        groups.setdefault(s, []).append((i, p))
    out = {}
    for s, items in groups.items():
        if not items:
            continue
        filled = [dict(p, seed=s, point=k if p.get("point") is None else p["point"],
                       index=i if p.get("index") is None else p["index"]) for k, (i, p) in enumerate(items)]
        filled.sort(key=lambda q: q["point"])
        ids = [q["point"] for q in filled]
        for a, b in zip(ids, ids[1:]):
            if a == b:
                raise ValueError(f"{result.figure} holds seed {s}'s grid point {a} twice")
        out[s] = filled
    return out


def seeds_of(result: Result) -> list[int]:
    """The seeds whose points the result holds (a legacy result: ``[provenance["seed"]]``)."""
    return list(by_seed(result)) or [_legacy_seed(result)]


def by_point(result: Result) -> dict[int, dict[int, dict]]:
    """The point summaries grouped by grid point: ``{point: {seed: summary}}``, in grid order."""
    out: dict[int, dict[int, dict]] = {}
    for s, points in by_seed(result).items():
        for p in points:
            out.setdefault(p["point"], {})[s] = p
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- summaries and verdicts


def _number(value) -> float:
    """A summary value as a float: None (JSON's missing or non-finite number) is NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"a per-seed value must be a number or None; got {value!r}")
    return float(value)


def _finite(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class SeedSummary:
    """One statistic measured in each seed: ``values[i]`` in seed ``seeds[i]`` (NaN: undefined there).

    ``median``, ``lo``, ``hi`` over the finite values (NaN when there is none), ``n`` how many
    there are, ``total`` the seeds. ``str``: ``"0.52 [0.31, 0.60] (3 seeds)"``; one value where
    the seeds agree; ``"(2 of 3 seeds)"`` where one has none. :meth:`format` formats each number;
    ``f"{summary:.2f}"`` is the compact form, without the seed count when every seed has a value.
    """

    seeds: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self):
        if len(self.seeds) != len(self.values):
            raise ValueError(f"a SeedSummary needs one of values per seed; got {len(self.values)} values for "
                             f"seeds {list(self.seeds)}")
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "values", tuple(_number(v) for v in self.values))

    @property
    def _finite_values(self) -> np.ndarray:
        v = np.asarray(self.values, dtype=float)
        return v[np.isfinite(v)]

    @property
    def n(self) -> int:
        return len(self._finite_values)

    @property
    def total(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float:
        v = self._finite_values
        return float(np.median(v)) if len(v) else math.nan

    @property
    def lo(self) -> float:
        v = self._finite_values
        return float(v.min()) if len(v) else math.nan

    @property
    def hi(self) -> float:
        v = self._finite_values
        return float(v.max()) if len(v) else math.nan

    def format(self, spec: str = ".4g", *, counts: bool = True) -> str:
        """``"median [lo, hi]"`` with each number formatted by ``spec`` (one number where the seeds
        agree), then ``"(n of total seeds)"`` when a seed has no value, else with ``counts`` the
        number of seeds."""
        seeds = f"seed{'' if self.total == 1 else 's'}"
        if self.n == 0:
            return f"n/a ({self.n} of {self.total} {seeds})"
        lo, hi = format(self.lo, spec), format(self.hi, spec)
        text = lo if lo == hi else f"{format(self.median, spec)} [{lo}, {hi}]"
        if self.n < self.total:
            return f"{text} ({self.n} of {self.total} {seeds})"
        return f"{text} ({self.total} {seeds})" if counts else text

    def __format__(self, spec: str) -> str:
        """The compact form, as in a table: ``f"{summary:.2f}"`` is ``summary.format(".2f", counts=False)``."""
        return self.format(spec or ".4g", counts=False)

    def __str__(self) -> str:
        return self.format()


def summarise(values: Mapping[int, float | None]) -> SeedSummary:
    """A :class:`SeedSummary` from ``{seed: value}`` (None: no value in that seed)."""
    return SeedSummary(seeds=tuple(values), values=tuple(values.values()))


@dataclass(frozen=True)
class SeedVerdict:
    """In which seeds a claim holds: ``holds[i]`` True, False, or None (undecided: the claim could
    not be tested in seed ``seeds[i]``). ``str``: the claim and :attr:`wording`.

    Established (the rule of :mod:`kadam_edu.experiments.analysis`): it holds in every seed and there are at least
    :data:`MIN_SEEDS`; an undecided seed counts against it.
    """

    claim: str
    seeds: tuple[int, ...]
    holds: tuple[bool | None, ...]

    def __post_init__(self):
        if len(self.seeds) != len(self.holds):
            raise ValueError(f"a SeedVerdict needs one of holds per seed; got {len(self.holds)} for seeds "
                             f"{list(self.seeds)}")
        for h in self.holds:
            if h is not None and not isinstance(h, (bool, np.bool_)):
                raise TypeError(f"each entry of holds must be True, False or None; got {h!r}")
        object.__setattr__(self, "holds", tuple(None if h is None else bool(h) for h in self.holds))

    @property
    def n_seeds(self) -> int:
        return len(self.holds)

    @property
    def n_holds(self) -> int:
        return sum(h is True for h in self.holds)

    @property
    def n_decided(self) -> int:
        return sum(h is not None for h in self.holds)

    @property
    def established(self) -> bool:
        return self.n_holds == self.n_seeds >= MIN_SEEDS

    @property
    def wording(self) -> str:
        k, n, undecided = self.n_holds, self.n_seeds, self.n_seeds - self.n_decided
        if undecided == n:
            return f"undecided in all {n} seed{'' if n == 1 else 's'}: not testable at this scale"
        if k == n:
            if n >= MIN_SEEDS:
                return f"holds in {n} of {n} seeds"
            return (f"holds in {k} of {n} seed{'' if n == 1 else 's'}: too few seeds to establish it "
                    f"({MIN_SEEDS} needed)")
        counted = f"holds in {k} of {n}" + (f" ({undecided} undecided)" if undecided else "")
        return f"{counted}: {'not seen' if k == 0 else 'not established'} at this scale"

    def __str__(self) -> str:
        return f"{self.claim}: {self.wording}"


def verdict(claim: str, holds: Mapping[int, bool | None]) -> SeedVerdict:
    """A :class:`SeedVerdict` from ``{seed: True / False / None}``."""
    return SeedVerdict(claim=claim, seeds=tuple(holds), holds=tuple(holds.values()))


# --------------------------------------------------------------------------- statistics


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, tied values sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    _, tie, count = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(tie, weights=ranks) / count)[tie]


def rank_corr(x, y) -> float:
    """Spearman's rank correlation of ``x`` and ``y`` (ties get their average rank), over the pairs
    where both are finite (None counts as missing); NaN with fewer than 3 such pairs or when one
    side is constant. Without ties it is the Pearson correlation of the argsort ranks."""
    x = np.array([_number(v) for v in x], dtype=float)
    y = np.array([_number(v) for v in y], dtype=float)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length; got {len(x)} and {len(y)}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3:
        return math.nan
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


# --------------------------------------------------------------------------- for the findings


def _require(result: Result, keys: Sequence[str]) -> None:
    """Every point of the result has ``keys`` (ValueError naming the first missing), and it has points."""
    if not result.points:
        raise ValueError(f"{result.figure} holds no points: there is nothing to read a finding from")
    for i, p in enumerate(result.points):
        for key in keys:
            if key not in p:
                raise ValueError(f"point {i} of {result.figure} has no {key!r}: not the summary this finding reads "
                                 f"(its keys: {sorted(p)})")


def _indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


_WIDTH = 88  # the book's column


def _said(v: SeedVerdict, lead: str = "  ") -> str:
    """A verdict as a line of a finding's paragraph; where it is too long, its wording (which
    :func:`_paragraph` never breaks) goes on a line of its own."""
    line = f"{lead}{v}"
    return line if len(line) <= _WIDTH else f"{lead}{v.claim}:\n{lead}    {v.wording}"


def _paragraph(lines: Sequence[str]) -> str:
    """The lines joined, each one longer than the book's column wrapped with a hanging indent."""
    out = []
    for line in (sub for text in lines for sub in text.splitlines()):
        lead = line[:len(line) - len(line.lstrip())]
        out.append(line if len(line) <= _WIDTH else textwrap.fill(
            line.strip(), _WIDTH, initial_indent=lead, subsequent_indent=lead + "    ", break_on_hyphens=False,
            break_long_words=False))
    return "\n".join(out)


def _seed_words(seeds: Sequence[int]) -> str:
    return f"{len(seeds)} seed{'' if len(seeds) == 1 else 's'} ({', '.join(map(str, seeds))})"
