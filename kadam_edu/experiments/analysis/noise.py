"""Chapter 5's findings: the square-root scaling rule against the linear rule (Section 5.2;
Malladi et al. 2022) and the max-update growth the rule allows against both laws (Section 5.3)."""

from __future__ import annotations

import math
from collections.abc import Mapping
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
    by_seed,
    summarise,
    verdict,
)
from kadam_edu.experiments.result import Result

__all__ = ["CLEAR_SEPARATION", "NO_GROWTH", "RATE_TOLERANCE", "ScalingRules", "scaling_rules", "RuleGrowth",
           "rule_growth"]

#: The square-root rule "lines the curves up clearly more closely" when the linear rule's mean
#: mismatch is more than this many times the square-root rule's.
CLEAR_SEPARATION = 2.0
#: A fitted slope of ln ||u_n||_inf below this (per step) is "no growth": half the smallest growth
#: rate the rule's points beyond kappa_d reach in the cpu preset (0.012 at kappa = 12).
NO_GROWTH = 5e-3
#: A measured slope within this relative distance of ln(gamma) - ln(beta)/2 grows "at the exact
#: discrete rate".
RATE_TOLERANCE = 0.1


@dataclass(frozen=True)
class ScalingRules:
    """The square-root scaling rule against the linear rule on the char GPT (Chapter 5, Section
    5.2; Malladi et al. 2022): per seed, each rule's mean mismatch over kappa > 1 (mean absolute
    loss difference from the kappa = 1 curve, nats; +inf for a run that diverged), their ratio
    linear / square-root, and the seed-to-seed floor. Verdict ``sqrt_closer``: ratio above
    :data:`CLEAR_SEPARATION`."""

    mismatch: Mapping[str, SeedSummary]
    ratio: SeedSummary
    floor: SeedSummary
    sqrt_closer: SeedVerdict

    def __str__(self) -> str:
        return _paragraph([
            f"Chapter 5: mean mismatch over kappa > 1, median [range] over {_seed_words(self.ratio.seeds)}",
            f"  square-root rule {self.mismatch['sqrt']:.3f}, linear rule {self.mismatch['linear']:.3f} nats; "
            f"linear / square-root {self.ratio:.2f}; two seeds at kappa = 1 differ by {self.floor:.3f}",
            _said(self.sqrt_closer),
        ])


def _ratio(linear: float | None, sqrt: float | None) -> float | None:
    """linear / sqrt, +inf where only the square-root rule's is 0, None where it is undefined."""
    if linear is None or sqrt is None or (math.isinf(linear) and math.isinf(sqrt)) or linear == sqrt == 0:
        return None
    return math.inf if sqrt == 0 else linear / sqrt


def _mismatch(value) -> float:
    return math.inf if value is None else float(value)  # None: an inf (a diverged run) saved as JSON


def scaling_rules(result: Result) -> ScalingRules:
    """Chapter 5's scaling-rule comparison per seed (a noise_batch_scaling result): the mean of the
    points' ``mismatch`` over kappa > 1 for each rule (the result's own ``data["mismatch"]`` for one
    seed), their ratio (NaN when both are infinite), and the seed-to-seed floor: ``data["floors"]``
    (one per seed, in ``data["seeds"]`` order: each seed's kappa = 1 run against the next seed's)
    or else ``data["floor"]`` (one seed's: its kappa = 1 run against a ``floor_seed`` run); NaN
    when there is none."""
    _check_result(result, ["noise_batch_scaling"])
    _require(result, ["rule", "kappa", "mismatch"])
    groups = by_seed(result)
    mismatch = {rule: {} for rule in ("sqrt", "linear")}
    for s, points in groups.items():
        for rule in mismatch:
            values = [_mismatch(p["mismatch"]) for p in points if p["rule"] == rule and p["kappa"] > 1]
            mismatch[rule][s] = float(np.mean(values)) if values else None
    ratio = {s: _ratio(mismatch["linear"][s], mismatch["sqrt"][s]) for s in groups}
    per_seed = result.data.get("floors")
    floors = dict(zip(groups, per_seed)) if per_seed is not None else {s: result.data.get("floor") for s in groups}
    return ScalingRules(
        mismatch={rule: summarise(v) for rule, v in mismatch.items()}, ratio=summarise(ratio),
        floor=summarise(floors),
        sqrt_closer=verdict(f"the square-root rule lines the curves up clearly more closely than the linear rule "
                            f"(linear / square-root mismatch > {CLEAR_SEPARATION:g})",
                            {s: None if r is None else r > CLEAR_SEPARATION for s, r in ratio.items()}),
    )


@dataclass(frozen=True)
class RuleGrowth:
    """The max-update under the square-root rule against both laws (Chapter 5, Section 5.3), per
    seed: on the toy model the largest |measured slope| below kappa_d (``toy_below``) and the
    largest relative distance from ln(gamma') - ln(beta')/2 above it (``toy_above_rel``), with the
    smallest factor by which |C|/2 exceeds that rate there (``continuous_over_discrete``); on the
    char GPT the largest |measured slope| (``gpt_largest``). Verdicts: ``toy_flat_below`` and
    ``gpt_flat`` (below :data:`NO_GROWTH`), ``toy_discrete_above`` (within :data:`RATE_TOLERANCE`)."""

    kappa_c: float
    kappa_d: float
    toy_below: SeedSummary
    toy_above_rel: SeedSummary
    continuous_over_discrete: SeedSummary
    gpt_largest: SeedSummary
    toy_flat_below: SeedVerdict
    toy_discrete_above: SeedVerdict
    gpt_flat: SeedVerdict

    def __str__(self) -> str:
        def line(label, summary, spec):
            return f"  {label}: {'none at this scale' if summary.n == 0 else summary.format(spec, counts=False)}"

        return _paragraph([
            f"Chapter 5: growth under the square-root rule (kappa_c = {self.kappa_c:.3g}, "
            f"kappa_d = {self.kappa_d:.3g}), "
            f"median [range] over {_seed_words(self.toy_below.seeds)}",
            line("toy, kappa < kappa_d: largest |measured slope| per step", self.toy_below, ".1e"),
            line("toy, kappa > kappa_d: largest |measured / discrete rate - 1|", self.toy_above_rel, ".1e"),
            line("toy, kappa > kappa_d: |C|/2 over the discrete rate, at least", self.continuous_over_discrete, ".1f"),
            line("char GPT: largest |measured slope| per step", self.gpt_largest, ".1e"),
            _said(self.toy_flat_below),
            _said(self.toy_discrete_above),
            _said(self.gpt_flat),
        ])


def rule_growth(result: Result) -> RuleGrowth:
    """Chapter 5's growth measurements per seed (a noise_stability result); runs without a
    fitted slope are left out, and a group with no run is undecided ("none at this scale")."""
    _check_result(result, ["noise_stability"])
    _require(result, ["model", "kappa", "measured_slope", "predicted_slope_continuous", "predicted_slope_discrete"])
    kd = float(result.data["kappa_d"])
    below, above, over, gpt = {}, {}, {}, {}
    for s, points in by_seed(result).items():
        ok = [p for p in points if _finite(p["measured_slope"])]
        toy_lo = [abs(p["measured_slope"]) for p in ok if p["model"] == "toy" and p["kappa"] < kd]
        toy_hi = [p for p in ok if p["model"] == "toy" and p["kappa"] > kd]
        gpts = [abs(p["measured_slope"]) for p in ok if p["model"] == "gpt"]
        below[s] = max(toy_lo) if toy_lo else None
        above[s] = max((abs(p["measured_slope"] / p["predicted_slope_discrete"] - 1) for p in toy_hi), default=None)
        over[s] = min((p["predicted_slope_continuous"] / p["predicted_slope_discrete"] for p in toy_hi), default=None)
        gpt[s] = max(gpts) if gpts else None
    return RuleGrowth(
        kappa_c=float(result.data.get("kappa_c", math.nan)), kappa_d=kd,
        toy_below=summarise(below), toy_above_rel=summarise(above), continuous_over_discrete=summarise(over),
        gpt_largest=summarise(gpt),
        toy_flat_below=verdict(f"toy: nothing grows below kappa_d (|slope| < {NO_GROWTH:g} per step)",
                               {s: None if v is None else v < NO_GROWTH for s, v in below.items()}),
        toy_discrete_above=verdict(f"toy: beyond kappa_d the max-update grows at ln(gamma') - ln(beta')/2 (within "
                                   f"{RATE_TOLERANCE:.0%})",
                                   {s: None if v is None else v <= RATE_TOLERANCE for s, v in above.items()}),
        gpt_flat=verdict(f"char GPT: nothing grows at any kappa (|slope| < {NO_GROWTH:g} per step)",
                         {s: None if v is None else v < NO_GROWTH for s, v in gpt.items()}),
    )
