"""Chapter 6's findings: does Adam's preconditioned sharpness sit at its stability threshold
(2 + 2 gamma) / ((1 - gamma) eta) (Cohen et al. 2022) on the char GPT?"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kadam_edu.experiments.analysis.seeds import (
    SeedSummary,
    SeedVerdict,
    _check_result,
    _paragraph,
    _said,
    _finite,
    _require,
    _seed_words,
    by_point,
    by_seed,
    summarise,
    verdict,
)
from kadam_edu.experiments.result import Result

__all__ = ["EDGE_BAND", "EXPONENT_BAND", "edge_verdict", "EdgeRun", "EdgeOfStability", "edge_of_stability"]

#: A median S / threshold in [0.75, 1.25] is "at the threshold (within 25%)".
EDGE_BAND = (0.75, 1.25)
#: The late sharpness follows the threshold's 1/eta when the fitted exponent of sharpness against
#: eta is within this of -1.
EXPONENT_BAND = 0.25


def edge_verdict(ratio: float | None) -> str:
    """Chapter 6's word for a median S / threshold: above, at (within 25%: :data:`EDGE_BAND`) or
    below the threshold; "no measurement" for None or NaN."""
    if ratio is None or not math.isfinite(ratio):
        return "no measurement"
    lo, hi = EDGE_BAND
    if ratio > hi:
        return "above the threshold"
    return "at the threshold (within 25%)" if ratio >= lo else "below the threshold"


@dataclass(frozen=True)
class EdgeRun:
    """One run of Chapter 6's experiment (a learning rate and a mode) over the seeds: the median
    S / threshold over the last half of its measurements (``ratio``), its word in each seed
    (:func:`edge_verdict`), whether it reached ``arrive`` (the result's config) of the threshold
    (``arrival_step``), and its claim: a
    full-batch run sits at the threshold (:data:`EDGE_BAND`), a minibatch run stays below it."""

    lr: float
    mode: str
    threshold: float
    ratio: SeedSummary
    verdicts: tuple[str, ...]
    reached: SeedVerdict
    claim: SeedVerdict

    @property
    def claims(self) -> tuple[SeedVerdict, ...]:
        """The run's claim; ``reached`` is an observation on the way (a minibatch run is not
        expected to reach the threshold)."""
        return (self.claim,)


@dataclass(frozen=True)
class EdgeOfStability:
    """Adam at the edge of stability on the char GPT (Chapter 6; threshold (2 + 2 gamma) / ((1 -
    gamma) eta), Cohen et al. 2022): the runs, the number of full-batch runs within the band per
    seed (``held``, of ``n_full``), and the fitted exponent of the late full-batch sharpness against
    eta with its verdict ``follows_threshold`` (within :data:`EXPONENT_BAND` of -1)."""

    runs: tuple[EdgeRun, ...]
    held: SeedSummary
    n_full: int
    exponent: SeedSummary
    follows_threshold: SeedVerdict

    def __str__(self) -> str:
        lines = [f"Chapter 6: median S/threshold over the last half of each run, median [range] over "
                 f"{_seed_words(self.held.seeds)}"]
        for r in self.runs:
            words = ", ".join(f"{w} x{r.verdicts.count(w)}" for w in dict.fromkeys(r.verdicts))
            lines.append(f"  lr={r.lr:.0e} {r.mode:<10} {r.ratio.format('.2f', counts=False)} ({words})")
            lines.append(_said(r.claim, "    "))
        lines.append(f"  full-batch runs within 25% of the threshold: {self.held:g} of {self.n_full}")
        lines.append(f"  late sharpness against lr: fitted exponent {self.exponent:+.2f} (the threshold's is -1)")
        lines.append(_said(self.follows_threshold))
        return _paragraph(lines)


def edge_of_stability(result: Result) -> EdgeOfStability:
    """Chapter 6's verdicts per seed: each run's median S / threshold in words, whether it
    arrived (``arrival_step``), the full-batch runs within :data:`EDGE_BAND`, and the exponent of
    late sharpness (median ratio x threshold) against eta fitted over the full-batch runs that
    have a measurement (NaN with fewer than two learning rates)."""
    _check_result(result, ["eos"])
    _require(result, ["lr", "mode", "threshold", "ratio_tail_median", "arrival_step"])
    lo, hi = EDGE_BAND
    arrive = result.config.get("arrive", 0.9)  # S / threshold that counts as arrived; 0.9 at every scale
    grid = by_point(result)
    seeds = list(by_seed(result))
    runs = []
    for per_seed in grid.values():
        first = next(iter(per_seed.values()))
        ratios = {s: per_seed[s]["ratio_tail_median"] if s in per_seed else None for s in seeds}
        full = first["mode"] == "full-batch"
        claim = (f"full-batch lr={first['lr']:.0e} stays within 25% of the threshold" if full
                 else f"{first['mode']} lr={first['lr']:.0e} stays below the threshold (< {lo})")
        runs.append(EdgeRun(
            lr=first["lr"], mode=first["mode"], threshold=first["threshold"], ratio=summarise(ratios),
            verdicts=tuple(edge_verdict(r) for r in ratios.values()),
            reached=verdict(f"{first['mode']} lr={first['lr']:.0e} reaches {arrive:g} of the threshold",
                            {s: None if not _finite(r) else per_seed[s]["arrival_step"] is not None
                             for s, r in ratios.items()}),
            claim=verdict(claim, {s: None if not _finite(r) else (lo <= r <= hi if full else r < lo)
                                  for s, r in ratios.items()}),
        ))
    held, exponent = {}, {}
    for s, points in by_seed(result).items():
        full = [p for p in points if p["mode"] == "full-batch"]
        held[s] = sum(_finite(p["ratio_tail_median"]) and lo <= p["ratio_tail_median"] <= hi for p in full)
        measured = [p for p in full if _finite(p["ratio_tail_median"])]
        lrs = np.array([p["lr"] for p in measured], dtype=float)
        late = np.array([p["ratio_tail_median"] * p["threshold"] for p in measured], dtype=float)
        exponent[s] = float(np.polyfit(np.log(lrs), np.log(late), 1)[0]) if len(set(lrs)) >= 2 else None
    n_full = sum(next(iter(p.values()))["mode"] == "full-batch" for p in grid.values())
    return EdgeOfStability(
        runs=tuple(runs), held=summarise(held), n_full=n_full, exponent=summarise(exponent),
        follows_threshold=verdict(f"the late full-batch sharpness follows the threshold's 1/lr (fitted exponent within "
                                  f"{EXPONENT_BAND} of -1)",
                                  {s: None if e is None else abs(e + 1) <= EXPONENT_BAND for s, e in exponent.items()}),
    )
