"""Aligned plain-text tables of point summaries: what ``Result.table`` prints."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

from kadam_edu.experiments.analysis.seeds import (
    SeedSummary,
    _check_result,
    by_point,
    by_seed,
    summarise,
)
from kadam_edu.experiments.result import Result

__all__ = ["table", "result_table"]


def _is_number(value) -> bool:
    return isinstance(value, (numbers.Real, SeedSummary)) and not isinstance(value, bool)


def _numeric(value) -> bool:
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_is_number(v) for v in value)
    return _is_number(value)


def _cell(value, spec: str | None, column: str) -> str:
    try:
        if value is None:
            return "--"
        if isinstance(value, SeedSummary):
            return value.format(spec or ".4g", counts=False)
        if isinstance(value, (list, tuple)):
            return " ".join(_cell(v, spec, column) for v in value)
        if isinstance(value, bool):
            return format(str(value), spec or "")
        if isinstance(value, numbers.Integral):
            return format(int(value), spec or "d")
        if isinstance(value, numbers.Real):
            return format(float(value), spec or ".4g")
        return format(str(value), spec or "")
    except (ValueError, TypeError) as e:
        raise ValueError(f"fmt[{column!r}] = {spec!r} cannot format {value!r} ({e})") from None


def _columns(columns) -> list[str]:
    if isinstance(columns, str) or not isinstance(columns, Sequence) or not all(isinstance(c, str) for c in columns):
        raise TypeError(f"columns must be a list of column names (str); got {columns!r}")
    if not columns:
        raise ValueError("columns must name at least one column; got []")
    return list(columns)


def _per_column(name: str, mapping, columns: list[str]) -> dict[str, str]:
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping) or not all(isinstance(v, str) for v in mapping.values()):
        raise TypeError(f"{name} must map column names to strings; got {mapping!r}")
    for key in mapping:
        if key not in columns:
            raise ValueError(f"{name} key {key!r} is not one of the columns {columns}")
    return dict(mapping)


def table(rows, columns, *, fmt: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None) -> str:
    """An aligned plain-text table of ``columns`` of ``rows`` (mappings), a header line first.

    ``fmt``: a format spec per column (``{"C": "+.3f"}``; default ``.4g`` for floats, plain for
    ints and text); ``headers``: a header per column (default: its name). None prints as ``--``,
    a list as its items formatted one by one, a :class:`SeedSummary` as ``median [lo, hi]``.
    Numeric columns are right-aligned, the others left-aligned, two spaces apart. Everything is
    checked before anything is formatted: a row without a column is a ValueError naming both.
    """
    columns = _columns(columns)
    fmt, headers = _per_column("fmt", fmt, columns), _per_column("headers", headers, columns)
    rows = list(rows)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"row {i} is a {type(row).__name__}, not a mapping of column names to values")
        for c in columns:
            if c not in row:
                raise ValueError(f"row {i} has no {c!r} (its keys: {sorted(row)})")
    cells = [[_cell(row[c], fmt.get(c), c) for c in columns] for row in rows]
    heads = [headers.get(c, c) for c in columns]
    numeric = [any(row[c] is not None for row in rows) and all(row[c] is None or _numeric(row[c]) for row in rows)
               for c in columns]
    widths = [max([len(h)] + [len(r[j]) for r in cells]) for j, h in enumerate(heads)]

    def line(texts):
        return "  ".join(t.rjust(w) if num else t.ljust(w) for t, w, num in zip(texts, widths, numeric)).rstrip()

    return "\n".join([line(heads)] + [line(r) for r in cells])


def _over_seeds(values: dict[int, object]):
    """One table cell from a column's values in each seed: the value where all seeds agree, a
    :class:`SeedSummary` for numbers that differ, else the distinct values joined by "/"."""
    distinct = list({repr(v): v for v in values.values()}.values())
    if len(distinct) == 1:
        return distinct[0]
    if all(v is None or (_is_number(v) and not isinstance(v, SeedSummary)) for v in values.values()):
        return summarise(values)
    return "/".join("--" if v is None else str(v) for v in distinct)


def result_table(result: Result, columns, *, fmt=None, headers=None, rows=None, seed=None, over_seeds=False) -> str:
    """:func:`table` of a result's point summaries (each with ``seed`` and ``point``, filled in for
    a legacy result), or of ``rows``. ``seed``: only that seed's points; ``over_seeds``: one row per
    grid point, each column the value where every seed agrees, else ``median [lo, hi]`` over the
    seeds (numbers) or the values joined by "/" (text). This is ``Result.table``."""
    _check_result(result)
    if rows is not None:
        if seed is not None or over_seeds:
            raise ValueError("rows= prints the rows given; seed= and over_seeds= select a result's own points")
        return table(rows, columns, fmt=fmt, headers=headers)
    columns = _columns(columns)
    groups = by_seed(result)
    if seed is not None:
        if seed not in groups:
            raise ValueError(f"seed {seed!r} is not one of this result's seeds {list(groups)}")
        return table(groups[seed], columns, fmt=fmt, headers=headers)
    if not over_seeds:
        return table([p for points in groups.values() for p in points], columns, fmt=fmt, headers=headers)
    merged = []
    for point, per_seed in by_point(result).items():
        for s, p in per_seed.items():
            for c in columns:
                if c not in p:
                    raise ValueError(f"seed {s}'s point {point} has no {c!r} (its keys: {sorted(p)})")
        merged.append({c: _over_seeds({s: p[c] for s, p in per_seed.items()}) for c in columns})
    return table(merged, columns, fmt=fmt, headers=headers)
