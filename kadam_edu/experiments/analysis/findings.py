"""A chapter's findings, claim by claim: every :class:`SeedVerdict` of its findings, sorted by what
the seeds show (shown, not established, not seen, not testable at this scale)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from kadam_edu.experiments.analysis.seeds import SeedVerdict, _paragraph

__all__ = ["Findings", "findings"]


def _verdicts_in(value) -> list[SeedVerdict]:
    """The verdicts a finding holds, in field order: its ``claims`` where it names them (so that a
    claim worded twice, as a headline and in a table, is listed once), otherwise every
    :class:`SeedVerdict` among its fields, mappings and tuples."""
    if isinstance(value, SeedVerdict):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        claims = getattr(value, "claims", None)
        if claims is not None:
            return list(claims)
        return [v for f in dataclasses.fields(value) for v in _verdicts_in(getattr(value, f.name))]
    if isinstance(value, Mapping):
        return [v for item in value.values() for v in _verdicts_in(item)]
    if isinstance(value, (tuple, list)):
        return [v for item in value for v in _verdicts_in(item)]
    return []


@dataclass(frozen=True)
class Findings:
    """Claims sorted by the seeds (:attr:`SeedVerdict.wording`): ``shown`` (established: every seed,
    at least ``MIN_SEEDS``), ``not_established`` (some seeds, or too few seeds), ``not_seen`` (no
    decided seed holds it) and ``untestable`` (undecided in every seed). ``str``: the four lists."""

    verdicts: tuple[SeedVerdict, ...]

    @property
    def shown(self) -> tuple[SeedVerdict, ...]:
        return tuple(v for v in self.verdicts if v.established)

    @property
    def untestable(self) -> tuple[SeedVerdict, ...]:
        return tuple(v for v in self.verdicts if v.n_decided == 0)

    @property
    def not_seen(self) -> tuple[SeedVerdict, ...]:
        return tuple(v for v in self.verdicts if v.n_decided and v.n_holds == 0)

    @property
    def not_established(self) -> tuple[SeedVerdict, ...]:
        return tuple(v for v in self.verdicts if v.n_holds and not v.established)

    def __str__(self) -> str:
        lines = []
        for title, group in (("Shown at this scale (holds in every seed)", self.shown),
                             ("Not established at this scale (holds in some seeds, or too few seeds)", self.not_established),
                             ("Not seen at this scale (holds in no seed)", self.not_seen),
                             ("Not testable at this scale", self.untestable)):
            if group:
                lines.append(f"{title}:")
                lines += [f"  - {v.claim}: {v.wording.split(': ')[0]}" for v in group]
        return _paragraph(lines)


def findings(*found) -> Findings:
    """Every claim of ``found`` (each a :class:`SeedVerdict` or a finding of this package, e.g.
    :func:`slope_law`'s), once, in order, as :class:`Findings`."""
    if not found:
        raise ValueError("findings needs at least one SeedVerdict or finding; got none")
    out: list[SeedVerdict] = []
    for i, item in enumerate(found):
        if not (isinstance(item, SeedVerdict) or dataclasses.is_dataclass(item)) or isinstance(item, type):
            raise TypeError(f"argument {i} of findings must be a SeedVerdict or a finding (a result of "
                            f"analysis.slope_law, kadam_ranking, ...); got {type(item).__name__}")
        verdicts = _verdicts_in(item)
        if not verdicts:
            raise TypeError(f"argument {i} of findings ({type(item).__name__}) holds no SeedVerdict: "
                            "pass a finding that states a claim")
        out += [v for v in verdicts if v.claim not in {w.claim for w in out}]
    return Findings(tuple(out))
