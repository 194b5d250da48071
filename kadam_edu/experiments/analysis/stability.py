"""Chapter 2's findings: which growth law Fig. 1's slopes follow (Section 3.2), the test loss
along the curves of Figs. 9-11 (Apps. N, O) and Eq. 15's annealing (Fig. 12, App. P)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kadam_edu.experiments.analysis.seeds import (
    SeedSummary,
    SeedVerdict,
    _check_result,
    _paragraph,
    _said,
    _finite,
    _indent,
    _require,
    _seed_words,
    by_seed,
    rank_corr,
    summarise,
    verdict,
)
from kadam_edu.experiments.common import REFERENCE
from kadam_edu.experiments.result import Result

__all__ = ["LAWS", "agreement", "late_window", "late_mean", "LawFit", "SlopeLaw", "slope_law", "Generalisation",
           "generalisation", "Annealing", "annealing", "annealing_rows"]

#: Fig. 1's three predicted slopes (point-summary keys) and how the chapter names them.
LAWS = {
    "predicted_slope_continuous": "|C|/2 (Eq. 5)",
    "predicted_slope_discrete": "ln g - ln(b)/2 (exact, n -> inf)",
    "bound_slope_at_n": "exact bound's slope at n",
}


def agreement(points: Sequence[Mapping], key: str) -> tuple[float, float, int]:
    """How close the ``measured_slope`` of ``points`` is to the prediction ``key`` (Fig. 1): the
    median of |measured - predicted|, the median of that over |predicted| (floored at 1e-12), and
    the number of points; (NaN, NaN, 0) for no points."""
    if not points:
        return math.nan, math.nan, 0
    meas = np.array([p["measured_slope"] for p in points], dtype=float)
    pred = np.array([p[key] for p in points], dtype=float)
    diff = np.abs(meas - pred)
    return float(np.median(diff)), float(np.median(diff / np.maximum(np.abs(pred), 1e-12))), len(points)


def late_window(steps: int) -> slice:
    """The last tenth of ``steps`` steps (at least one step): Fig. 12's comparison window."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be an int >= 1; got {steps!r}")
    return slice(int(steps) - max(1, int(steps) // 10), int(steps))


def _window_mean(values, window: slice) -> float:
    values = np.asarray(values, dtype=float)[window]
    return float(np.mean(values)) if len(values) else math.nan


def late_mean(result: Result, point: Mapping, key: str, window: slice) -> float:
    """Mean of the point's array ``key`` over ``window`` (steps); NaN when the run ended before it."""
    return _window_mean(result.point_arrays(point["index"])[key], window)


# --------------------------------------------------------------------------- Fig. 1: which law fits


@dataclass(frozen=True)
class LawFit:
    """Fig. 1's comparison on one subset of B- points ("all", or "resolved": both predictions above
    the noise level), per seed: the number of points, the median |measured - predicted| and its
    median relative size for each law of :data:`LAWS`, and the points closer to the discrete law
    than to |C|/2."""

    subset: str
    count: SeedSummary
    median_abs: Mapping[str, SeedSummary]
    median_rel: Mapping[str, SeedSummary]
    closer_discrete: SeedSummary

    def __str__(self) -> str:
        label = {"all": "all B- points", "resolved": "resolved B- points (both predictions > noise)"}[self.subset]
        if self.count.hi == 0 or self.count.n == 0:
            return f"{label}: none at this scale"
        lines = [f"{label}: {self.count:g} per seed"]
        for key, law in LAWS.items():
            lines.append(f"  {law}:")
            lines.append(f"      median |diff| {self.median_abs[key]:.5f}, relative {self.median_rel[key]:.1%}")
        lines.append(f"  closer to the discrete law at {self.closer_discrete:g} of them")
        return _paragraph(lines)


@dataclass(frozen=True)
class SlopeLaw:
    """Which growth law the measured slopes of ln ||u_n||_inf follow (Fig. 1, Section 3.2).

    ``noise``: the median |measured slope| over the B+ points (where both laws predict 0);
    ``rank_corr``: of C with the measured slope over the B- points; ``fits``: :class:`LawFit` on
    "all" and "resolved" B- points; ``law``: per seed, the law closer by median |diff| on the
    resolved points ("discrete", "continuous", "tie", or None when there are none). Verdicts:
    ``discrete_fits`` / ``continuous_fits`` (that law is closer) and ``steeper`` (rank_corr < 0:
    the more negative C, the steeper the growth).
    """

    slope_at: int | None
    noise: SeedSummary
    rank_corr: SeedSummary
    fits: Mapping[str, LawFit]
    law: Mapping[int, str | None]
    discrete_fits: SeedVerdict
    continuous_fits: SeedVerdict
    steeper: SeedVerdict

    def __str__(self) -> str:
        return _paragraph([
            f"Fig. 1: slopes of ln||u_n||_inf at n = {self.slope_at}, median [range] over "
            f"{_seed_words(self.noise.seeds)}",
            f"  noise level (median |slope| over the B+ points): {self.noise:.5f}",
            f"  rank correlation of C with the measured slope over the B- points: {self.rank_corr:+.2f}",
            _indent(str(self.fits["all"])),
            _indent(str(self.fits["resolved"])),
            "  law closer on the resolved points, per seed: "
            + ", ".join(f"{s}: {'none' if w is None else w}" for s, w in self.law.items()),
            _said(self.discrete_fits),
            _said(self.continuous_fits),
            _said(self.steeper),
        ])


def _slope_law_seed(points: list[dict]) -> dict:
    """Chapter 2's Fig. 1 comparison for one seed's points."""
    pts = [p for p in points if _finite(p["measured_slope"])]
    minus = [p for p in pts if p["region"] == "B-"]
    plus = [p for p in pts if p["region"] == "B+"]
    noise = float(np.median([abs(p["measured_slope"]) for p in plus])) if plus else math.nan
    resolved = [p for p in minus if min(p["predicted_slope_continuous"], p["predicted_slope_discrete"]) > noise]
    out = {"noise": noise, "rho": rank_corr([p["C"] for p in minus], [p["measured_slope"] for p in minus])}
    for label, subset in (("all", minus), ("resolved", resolved)):
        out[label] = {key: agreement(subset, key) for key in LAWS}
        out[label, "closer"] = sum(abs(p["measured_slope"] - p["predicted_slope_discrete"])
                                   < abs(p["measured_slope"] - p["predicted_slope_continuous"]) for p in subset)
    a_c, a_d = out["resolved"]["predicted_slope_continuous"][0], out["resolved"]["predicted_slope_discrete"][0]
    out["law"] = None if not resolved else "discrete" if a_d < a_c else "continuous" if a_c < a_d else "tie"
    return out


def slope_law(result: Result) -> SlopeLaw:
    """Fig. 1's "which law fits", per seed: the measured slopes (``measured_slope``, a two-point
    slope at ``slope_at``) against Eq. 5's |C|/2, the exact discrete bound's ln(gamma) - ln(beta)/2
    and the bound's own slope at n. Points without a finite slope (diverged) are left out.
    For one seed the numbers are those Chapter 2 printed."""
    _check_result(result, ["fig1"])
    _require(result, ["C", "region", "measured_slope", *LAWS])
    per = {s: _slope_law_seed(points) for s, points in by_seed(result).items()}
    fits = {}
    for label in ("all", "resolved"):
        fits[label] = LawFit(
            subset=label,
            count=summarise({s: v[label]["predicted_slope_discrete"][2] for s, v in per.items()}),
            median_abs={key: summarise({s: v[label][key][0] for s, v in per.items()}) for key in LAWS},
            median_rel={key: summarise({s: v[label][key][1] for s, v in per.items()}) for key in LAWS},
            closer_discrete=summarise({s: v[label, "closer"] for s, v in per.items()}),
        )
    law = {s: v["law"] for s, v in per.items()}

    def closer(name):
        return {s: None if w is None else w == name for s, w in law.items()}

    rho = summarise({s: v["rho"] for s, v in per.items()})
    slope_at = next((p.get("slope_at") for p in result.points), result.config.get("slope_at"))
    return SlopeLaw(
        slope_at=slope_at,
        noise=summarise({s: v["noise"] for s, v in per.items()}),
        rank_corr=rho,
        fits=fits,
        law=law,
        discrete_fits=verdict("the exact discrete law ln(gamma) - ln(beta)/2 fits the resolved B- slopes more "
                              "closely than Eq. 5's |C|/2", closer("discrete")),
        continuous_fits=verdict("Eq. 5's |C|/2 fits the resolved B- slopes more closely than the exact discrete "
                                "law", closer("continuous")),
        steeper=verdict("in B-, the more negative C, the steeper the growth (rank correlation < 0)",
                        {s: None if math.isnan(r) else r < 0 for s, r in zip(rho.seeds, rho.values)}),
    )


# --------------------------------------------------------------------------- Figs. 9-11


@dataclass(frozen=True)
class Generalisation:
    """Test loss along a curve (Figs. 9-11, Apps. N and O), from the best test loss reached by
    step ``early`` (a third of training, the paper's 1000 of 3000) in each seed.

    ``x``: what the loss is correlated with, "C" (normal curves) or "beta" (the level curve, where
    C is constant); ``rank_corr``: of x with the early best loss over the B+ points; ``mean_minus``,
    ``mean_plus``: the mean early best loss in B- and B+. Verdicts: ``sooner`` (rank_corr < 0:
    larger x reaches a lower loss sooner) and ``minus_worse`` (B- worse than B+ on average).
    """

    figure: str
    curve: str | None
    x: str
    early: int
    late: int
    n_plus: SeedSummary
    n_minus: SeedSummary
    rank_corr: SeedSummary
    mean_minus: SeedSummary
    mean_plus: SeedSummary
    sooner: SeedVerdict
    minus_worse: SeedVerdict

    @property
    def claims(self) -> tuple[SeedVerdict, ...]:
        """The two verdicts, each claim prefixed by the figure (Figs. 9 and 10 word theirs alike)."""
        return tuple(dataclasses.replace(v, claim=f"{self.figure}: {v.claim}") for v in (self.sooner, self.minus_worse))

    def __str__(self) -> str:
        return _paragraph([
            f"{self.figure} ({self.curve} curve): best test loss by n = {self.early}, median [range] over "
            f"{_seed_words(self.rank_corr.seeds)}",
            f"  rank correlation of {self.x} with it over the B+ points: {self.rank_corr:+.2f}",
            "  mean early best loss: B- "
            + ("none at this scale" if self.n_minus.hi == 0 else f"{self.mean_minus:.3f} ({self.n_minus:g} points)")
            + f", B+ {self.mean_plus:.3f} ({self.n_plus:g} points)",
            _said(self.sooner),
            _said(self.minus_worse),
        ])


def _horizons(result: Result) -> list[str]:
    keys = sorted({k for p in result.points for k in p if k.startswith("best_test_loss_")},
                  key=lambda k: int(k.rsplit("_", 1)[1]))
    if not keys:
        raise ValueError(f"{result.figure}'s points have no best_test_loss_<n> keys: not a Figs. 9-11 result")
    return keys


def generalisation(result: Result) -> Generalisation:
    """Figs. 9-11 per seed, Chapter 2's former ``generalisation_summary``: points without an early
    best loss (diverged before the first evaluation) are left out. For one seed the numbers are
    those the chapter printed."""
    _check_result(result, ["fig9", "fig10", "fig11"])
    _require(result, ["beta", "C", "region"])
    keys = _horizons(result)
    early, late = keys[0], keys[-1]
    level = result.data.get("curve") == "level"
    x = "beta" if level else "C"
    rho, n_plus, n_minus, m_minus, m_plus = {}, {}, {}, {}, {}
    for s, points in by_seed(result).items():
        ok = [p for p in points if _finite(p.get(early))]
        plus = [p for p in ok if p["region"] == "B+"]
        minus = [p for p in ok if p["region"] == "B-"]
        rho[s] = rank_corr([p[x] for p in plus], [p[early] for p in plus])
        n_plus[s], n_minus[s] = len(plus), len(minus)
        m_minus[s] = float(np.mean([p[early] for p in minus])) if minus else None
        m_plus[s] = float(np.mean([p[early] for p in plus])) if plus else None
    n = int(early.rsplit("_", 1)[1])
    bigger = "C" if not level else "beta (farther from the origin)"
    return Generalisation(
        figure=result.figure, curve=result.data.get("curve"), x=x, early=n, late=int(late.rsplit("_", 1)[1]),
        n_plus=summarise(n_plus), n_minus=summarise(n_minus), rank_corr=summarise(rho),
        mean_minus=summarise(m_minus), mean_plus=summarise(m_plus),
        sooner=verdict(f"larger {bigger} reaches a lower test loss by n = {n} (rank correlation over B+ < 0)",
                       {s: None if math.isnan(r) else r < 0 for s, r in rho.items()}),
        minus_worse=verdict(f"B- points reach a higher test loss by n = {n} than B+ points (mean)",
                            {s: None if m_minus[s] is None or m_plus[s] is None else m_minus[s] > m_plus[s]
                             for s in rho}),
    )


# --------------------------------------------------------------------------- Fig. 12: annealing


@dataclass(frozen=True)
class Annealing:
    """Eq. 15 against a constant learning rate (Fig. 12, App. P), over the late ``window``
    (steps [start, stop)): per seed, the B- points of the fig12 result, those whose mean training
    loss in the window is higher than that of the nearest fig1 point (constant lr), and the mean
    gap (annealed minus constant). Verdict ``over_anneals``: higher at every B- point."""

    window: tuple[int, int]
    n_minus: SeedSummary
    worse: SeedSummary
    gap: SeedSummary
    over_anneals: SeedVerdict

    def __str__(self) -> str:
        return _paragraph([
            f"Fig. 12: training loss over steps {self.window[0]}..{self.window[1] - 1}, Eq. 15 against the nearest "
            f"constant-lr point of Fig. 1, median [range] over {_seed_words(self.gap.seeds)}",
            f"  B- points where the annealed loss is higher: {self.worse:g} of "
            f"{self.n_minus:g}; mean gap {self.gap:+.3f}",
            _said(self.over_anneals),
        ])


def _nearest(points: list[dict], beta: float) -> dict:
    return min(points, key=lambda q: abs(q["beta"] - beta))


def _anneal_pair_check(annealed: Result, constant: Result) -> tuple[dict, dict, slice]:
    _check_result(annealed, ["fig12"], what="annealed")
    _check_result(constant, ["fig1"], what="constant")
    for r in (annealed, constant):
        _require(r, ["beta", "gamma", "C", "region"])
    a, c = by_seed(annealed), by_seed(constant)
    missing = [s for s in a if s not in c]
    if missing:
        raise ValueError(f"the fig1 result lacks seeds {missing} of the fig12 result (it has {list(c)}): run both "
                         "with the same seeds")
    for what, r in (("annealed", annealed), ("constant", constant)):
        if not isinstance(r.config.get("steps"), numbers.Integral):
            raise ValueError(f"{what}.config must record the int 'steps' of its runs; got {r.config.get('steps')!r}")
    window = late_window(min(int(annealed.config["steps"]), int(constant.config["steps"])))
    return a, c, window


def annealing(annealed: Result, constant: Result) -> Annealing:
    """Fig. 12's claim that Eq. 15 over-anneals, per seed: each B- point of ``annealed`` (a fig12
    result) against the fig1 point of ``constant`` nearest in beta, both from the same seed, by
    their mean training loss over the last tenth of their common steps (:func:`late_window`).
    A run that diverged in the window has a NaN mean: that point does not count as worse."""
    a, c, window = _anneal_pair_check(annealed, constant)
    n_minus, worse, gap, holds = {}, {}, {}, {}
    for s, points in a.items():
        pairs = [(late_mean(annealed, p, "loss", window),
                  late_mean(constant, _nearest(c[s], p["beta"]), "loss", window))
                 for p in points if p["region"] == "B-"]
        n_minus[s] = len(pairs)
        worse[s] = sum(ann > const for ann, const in pairs)
        gaps = [ann - const for ann, const in pairs if math.isfinite(ann - const)]
        gap[s] = float(np.mean(gaps)) if gaps else None
        holds[s] = None if not pairs else worse[s] == len(pairs)
    return Annealing(window=(window.start, window.stop), n_minus=summarise(n_minus), worse=summarise(worse),
                     gap=summarise(gap),
                     over_anneals=verdict("Eq. 15 trains worse than the constant lr at every B- point", holds))


def annealing_rows(annealed: Result, constant: Result, seed: int | None = None) -> list[dict]:
    """Chapter 2's Fig. 12 table for one seed (default: the first): for each fig12 point, an
    "annealed (Eq. 15)" row and a "constant lr, nearest" row (the fig1 point nearest in beta), then
    "PyTorch defaults" (the fig1 point at (0.999, 0.9), where the sweep has it); each with beta, gamma, C and the
    late-window means of lr, the step lr * ||u_n||_inf and the training loss. For ``Result.table``."""
    a, c, window = _anneal_pair_check(annealed, constant)
    s = next(iter(a)) if seed is None else seed
    if s not in a:
        raise ValueError(f"seed {s!r} is not one of the fig12 result's seeds {list(a)}")

    def row(label, res, p):
        arr = res.point_arrays(p["index"])
        return {"run": label, "beta": p["beta"], "gamma": p["gamma"], "C": p["C"],
                "lr": _window_mean(arr["lr"], window), "step": _window_mean(arr["lr"] * arr["max_update"], window),
                "loss": _window_mean(arr["loss"], window)}

    rows = []
    for p in a[s]:
        rows += [row("annealed (Eq. 15)", annealed, p),
                 row("constant lr, nearest", constant, _nearest(c[s], p["beta"]))]
    default = min(c[s], key=lambda q: abs(q["beta"] - REFERENCE[0]) + abs(q["gamma"] - REFERENCE[1]))
    if abs(default["beta"] - REFERENCE[0]) > 1e-6 or abs(default["gamma"] - REFERENCE[1]) > 1e-6:
        return rows  # the fig1 sweep does not reach PyTorch's defaults (its cpu grid stops short)
    return rows + [row("PyTorch defaults", constant, default)]
