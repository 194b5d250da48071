"""The book's findings as functions of Results (kadam_edu.experiments.analysis), on small hand-made Results.

Every branch is exercised here, including those that nbval at smoke scale never reaches: a subset
with no points ("none at this scale"), ties, a claim holding in 0, 1, 2 or 3 of 3 seeds, diverged
points (None / NaN), and results written before seeds (no "seed" / "point" keys).
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from kadam_edu import bounds
from kadam_edu.experiments import Result
from kadam_edu.experiments import analysis as A

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "cpu"


def _result(figure, points, *, seeds=None, arrays=None, data=None, config=None, seed=0):
    """A hand-made Result; ``seeds`` given: the new format (data["seeds"], each point's seed / point)."""
    d = dict(data or {}, points=points)
    if seeds is not None:
        d["seeds"] = list(seeds)
        d["grid_size"] = len(points) // len(seeds)
    return Result(figure=figure, scale="smoke", config=dict(config or {}), data=d, arrays=dict(arrays or {}),
                  provenance={"seed": seed})


def _multi(figure, grids, seeds=(0, 1, 2), **kw):
    """grids[k]: the k-th seed's points (grid order) -> a seed-major multi-seed Result with index/seed/point."""
    points = []
    for k, (s, grid) in enumerate(zip(seeds, grids)):
        for p, summary in enumerate(grid):
            points.append(dict(summary, index=k * len(grid) + p, seed=s, point=p))
    return _result(figure, points, seeds=seeds, **kw)


# --------------------------------------------------------------------------- seeds and points


def test_by_seed_groups_a_seed_major_result_by_seed_then_grid_point():
    res = _multi("fig3", [[{"v": 10 * k + p} for p in range(3)] for k in range(2)], seeds=(5, 7))
    res.data["points"] = res.points[::-1]  # order in the list does not matter
    groups = A.by_seed(res)
    assert list(groups) == [5, 7]
    assert [[p["v"] for p in pts] for pts in groups.values()] == [[0, 1, 2], [10, 11, 12]]
    assert [p["point"] for p in groups[7]] == [0, 1, 2]
    assert A.seeds_of(res) == [5, 7]
    by_point = A.by_point(res)
    assert list(by_point) == [0, 1, 2] and {s: p["v"] for s, p in by_point[2].items()} == {5: 2, 7: 12}


def test_by_seed_reads_a_legacy_result_as_one_seed_with_grid_points_in_order():
    points = [{"index": i, "v": i} for i in range(3)]
    res = _result("fig3", points, seed=4)
    groups = A.by_seed(res)
    assert list(groups) == [4]
    assert [(p["seed"], p["point"], p["v"]) for p in groups[4]] == [(4, 0, 0), (4, 1, 1), (4, 2, 2)]
    assert "seed" not in res.points[0]  # the result itself is left alone
    assert A.seeds_of(_result("fig3", [], seed=None)) == [0]  # no seed recorded at all: seed 0


def test_by_seed_refuses_what_it_cannot_group():
    with pytest.raises(TypeError, match="Result"):
        A.by_seed({"points": []})
    twice = _result("fig3", [{"seed": 0, "point": 1}, {"seed": 0, "point": 1}])
    with pytest.raises(ValueError, match="point 1 twice"):
        A.by_seed(twice)
    with pytest.raises(ValueError, match="seed"):
        A.by_seed(_result("fig3", [{"seed": "a", "point": 0}]))


def test_seed_summary_median_range_and_words():
    s = A.summarise({0: 0.3, 1: None, 2: 0.1, 3: float("nan"), 4: 0.2})
    assert s.seeds == (0, 1, 2, 3, 4) and s.n == 3 and s.total == 5
    assert (s.median, s.lo, s.hi) == (0.2, 0.1, 0.3)
    assert str(s) == "0.2 [0.1, 0.3] (3 of 5 seeds)"
    assert f"{s:.2f}" == "0.20 [0.10, 0.30] (3 of 5 seeds)"
    full = A.summarise({0: 1.0, 1: 3.0, 2: 2.0})
    assert str(full) == "2 [1, 3] (3 seeds)" and full.format(".1f", counts=False) == "2.0 [1.0, 3.0]"
    assert str(A.summarise({0: 0.5})) == "0.5 (1 seed)"
    assert A.summarise({0: 2.0, 1: 2.0}).format("g", counts=False) == "2"  # seeds that agree: one value
    empty = A.summarise({0: None, 1: None})
    assert math.isnan(empty.median) and str(empty) == "n/a (0 of 2 seeds)"
    with pytest.raises(ValueError, match="values"):
        A.SeedSummary(seeds=(0, 1), values=(1.0,))


@pytest.mark.parametrize("holds, words, established", [
    ((True, True, True), "holds in 3 of 3 seeds", True),
    ((True, True, False), "holds in 2 of 3: not established at this scale", False),
    ((False, True, False), "holds in 1 of 3: not established at this scale", False),
    ((False, False, False), "holds in 0 of 3: not seen at this scale", False),
    ((True, None, True), "holds in 2 of 3 (1 undecided): not established at this scale", False),
    ((None, None, None), "undecided in all 3 seeds: not testable at this scale", False),
    ((True,), "holds in 1 of 1 seed: too few seeds to establish it (3 needed)", False),
    ((False,), "holds in 0 of 1: not seen at this scale", False),
    ((True,) * 4, "holds in 4 of 4 seeds", True),
])
def test_seed_verdict_counts_the_seeds_and_words_them(holds, words, established):
    v = A.verdict("the claim", dict(enumerate(holds)))
    assert v.wording == words and str(v) == f"the claim: {words}"
    assert v.established is established
    assert v.n_holds == sum(h is True for h in holds) and v.n_seeds == len(holds)


def test_seed_verdict_refuses_non_booleans():
    with pytest.raises(TypeError, match="True, False or None"):
        A.verdict("c", {0: 1})
    with pytest.raises(ValueError, match="holds"):
        A.SeedVerdict(claim="c", seeds=(0,), holds=())


# --------------------------------------------------------------------------- statistics


def _chapter_rank_corr(x, y):  # Chapter 2's former cell: ranks by argsort (no ties)
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return float("nan")
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def test_rank_corr_is_the_chapters_without_ties_and_averages_tied_ranks():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=9), rng.normal(size=9)
    assert A.rank_corr(x, y) == pytest.approx(_chapter_rank_corr(x, y), abs=1e-15)
    assert A.rank_corr([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    # ties get their average rank: x ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.arange(1, 5.0)
    assert A.rank_corr([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.corrcoef(rx, ry)[0, 1])
    assert A.rank_corr([1, 2, 2, 3], [1, 2, 3, 4]) != pytest.approx(_chapter_rank_corr([1, 2, 2, 3], [1, 2, 3, 4]))


def test_rank_corr_is_nan_below_three_points_or_when_one_side_is_constant_and_drops_non_finite_pairs():
    assert math.isnan(A.rank_corr([1, 2], [2, 1]))
    assert math.isnan(A.rank_corr([0.2, 0.2, 0.2], [1, 2, 3]))
    dropped = A.rank_corr([1, 2, None, 3, 4], [1, 2, 5, float("nan"), 3])  # the pairs (None, 5) and (3, nan) go
    assert dropped == pytest.approx(_chapter_rank_corr([1, 2, 4], [1, 2, 3]))
    with pytest.raises(ValueError, match="same length"):
        A.rank_corr([1, 2, 3], [1, 2])


def test_agreement_is_the_median_absolute_and_relative_difference():
    pts = [{"measured_slope": m, "law": p} for m, p in ((0.1, 0.2), (0.3, 0.2), (0.2, 0.4))]
    med_abs, med_rel, n = A.agreement(pts, "law")
    assert (med_abs, n) == (pytest.approx(0.1), 3) and med_rel == pytest.approx(0.5)
    assert all(math.isnan(v) for v in A.agreement([], "law")[:2]) and A.agreement([], "law")[2] == 0


def test_edge_verdict_thresholds_are_the_chapters():
    assert A.edge_verdict(None) == "no measurement"
    assert A.edge_verdict(float("nan")) == "no measurement"
    assert A.edge_verdict(1.2501) == "above the threshold"
    assert A.edge_verdict(1.25) == A.edge_verdict(0.75) == "at the threshold (within 25%)"
    assert A.edge_verdict(0.7499) == "below the threshold"
    assert A.EDGE_BAND == (0.75, 1.25)


def test_late_window_is_the_last_tenth():
    assert A.late_window(500) == slice(450, 500)
    assert A.late_window(5) == slice(4, 5)
    with pytest.raises(ValueError, match="steps"):
        A.late_window(0)


# --------------------------------------------------------------------------- Fig. 1: which law fits


def _slope_point(beta, gamma, measured):
    c = float(bounds.stability_constant(beta, gamma))
    return {"beta": beta, "gamma": gamma, "C": c, "region": bounds.region(beta, gamma), "measured_slope": measured,
            "slope_at": 500, "predicted_slope_continuous": float(bounds.growth_rate(beta, gamma)),
            "predicted_slope_discrete": float(bounds.discrete_growth_rate(beta, gamma)),
            "bound_slope_at_n": float(bounds.discrete_growth_rate(beta, gamma)) * 0.9}


def _chapter_fig1(res1):
    """Chapter 2's former cells 27-28, as they computed (the oracle for a single seed)."""
    pts = [p for p in res1.points if p["measured_slope"] is not None]
    minus_pts = [p for p in pts if p["region"] == "B-"]
    plus_pts = [p for p in pts if p["region"] == "B+"]
    noise = float(np.median([abs(p["measured_slope"]) for p in plus_pts])) if plus_pts else float("nan")
    rho = _chapter_rank_corr([p["C"] for p in minus_pts], [p["measured_slope"] for p in minus_pts])
    out = {"noise": noise, "rho": rho}
    resolved = [p for p in minus_pts if min(p["predicted_slope_continuous"], p["predicted_slope_discrete"]) > noise]
    for label, subset in (("all", minus_pts), ("resolved", resolved)):
        if not subset:  # the chapter printed "none at this scale"
            out[label, "closer"] = 0
            for key in ("predicted_slope_continuous", "predicted_slope_discrete", "bound_slope_at_n"):
                out[label, key] = (float("nan"), float("nan"), 0)
            continue
        for key in ("predicted_slope_continuous", "predicted_slope_discrete", "bound_slope_at_n"):
            meas = np.array([p["measured_slope"] for p in subset])
            pred = np.array([p[key] for p in subset])
            diff = np.abs(meas - pred)
            out[label, key] = (np.median(diff), np.median(diff / np.maximum(np.abs(pred), 1e-12)), len(subset))
        out[label, "closer"] = sum(abs(p["measured_slope"] - p["predicted_slope_discrete"])
                                   < abs(p["measured_slope"] - p["predicted_slope_continuous"]) for p in subset)
    return out


def _check_fig1_against_the_chapter(res1):
    law, old = A.slope_law(res1), _chapter_fig1(res1)
    (s,) = A.seeds_of(res1)
    assert law.noise.values == (pytest.approx(old["noise"], nan_ok=True),)
    assert law.rank_corr.values[0] == pytest.approx(old["rho"], nan_ok=True)
    for label in ("all", "resolved"):
        fit = law.fits[label]
        for key in A.LAWS:
            med_abs, med_rel, count = old[label, key]
            assert fit.median_abs[key].values == (pytest.approx(med_abs, nan_ok=True),)
            assert fit.median_rel[key].values == (pytest.approx(med_rel, nan_ok=True),)
            assert fit.count.values == (count,)
        assert fit.closer_discrete.values == (old[label, "closer"],)
    return law


def test_slope_law_of_the_committed_cpu_fig1_gives_the_chapters_numbers():
    res1 = Result.load(REFERENCE / "fig1.json")
    law = _check_fig1_against_the_chapter(res1)
    a_c = law.fits["resolved"].median_abs["predicted_slope_continuous"].values[0]
    a_d = law.fits["resolved"].median_abs["predicted_slope_discrete"].values[0]
    assert law.law[0] == ("discrete" if a_d < a_c else "continuous")
    assert "holds in 0 of 1" in str(law.continuous_fits) or "holds in 0 of 1" in str(law.discrete_fits)
    assert "too few seeds" in str(law)


def _fig1_grid(offset_d, offset_c=None):
    """Three B- points (whose two predictions both exceed the noise) and two B+ points; the measured
    slopes sit ``offset_d`` above the discrete law (or ``offset_c`` above the continuous one)."""
    out = []
    for beta, gamma in ((0.953, 0.9973), (0.96, 0.995), (0.97, 0.992)):
        p = _slope_point(beta, gamma, 0.0)
        if offset_c is None:
            p["measured_slope"] = p["predicted_slope_discrete"] + offset_d
        else:
            p["measured_slope"] = p["predicted_slope_continuous"] + offset_c
        out.append(p)
    out += [_slope_point(0.99, 0.95, 1e-4), _slope_point(0.999, 0.9, -2e-4)]
    return out


def test_slope_law_over_three_seeds_words_the_law_that_fits():
    grids = [_fig1_grid(1e-5), _fig1_grid(1e-5), _fig1_grid(None, offset_c=-1e-5)]
    law = A.slope_law(_multi("fig1", grids))
    assert dict(law.law) == {0: "discrete", 1: "discrete", 2: "continuous"}
    assert law.discrete_fits.wording == "holds in 2 of 3: not established at this scale"
    assert law.continuous_fits.wording == "holds in 1 of 3: not established at this scale"
    assert law.steeper.wording == "holds in 3 of 3 seeds"  # the more negative C, the steeper
    assert law.noise.values == (pytest.approx(1.5e-4),) * 3
    text = str(law)
    assert "over 3 seeds" in text and "holds in 2 of 3: not established at this scale" in text
    assert max(map(len, text.splitlines())) <= 88  # the book's column; a verdict's words stay on one line
    same = A.slope_law(_multi("fig1", [_fig1_grid(1e-5)] * 3))
    assert same.discrete_fits.wording == "holds in 3 of 3 seeds" and same.discrete_fits.established


def test_slope_law_with_no_resolved_point_says_none_at_this_scale():
    grid = [_slope_point(0.999, 0.9, 0.05)] + [_slope_point(0.953, 0.9973, 0.001)]  # noise 0.05 > both predictions
    law = A.slope_law(_multi("fig1", [grid] * 3))
    assert law.fits["resolved"].count.values == (0, 0, 0)
    assert law.law == {0: None, 1: None, 2: None}
    assert law.discrete_fits.wording == "undecided in all 3 seeds: not testable at this scale"
    assert "resolved B- points (both predictions > noise): none at this scale" in str(law)
    assert math.isnan(law.rank_corr.median)  # one B- point: no correlation
    _check_fig1_against_the_chapter(_result("fig1", [dict(p, index=i) for i, p in enumerate(grid)]))


def test_slope_law_skips_diverged_points_and_calls_an_exact_tie_a_tie():
    grid = _fig1_grid(1e-5)
    grid[0]["measured_slope"] = None  # diverged before the slope window
    grid[1]["measured_slope"] = float("nan")
    law = A.slope_law(_multi("fig1", [grid] * 3))
    assert law.fits["all"].count.values == (1, 1, 1)
    p = _slope_point(0.953, 0.9973, 0.0)
    p["measured_slope"] = (p["predicted_slope_continuous"] + p["predicted_slope_discrete"]) / 2
    tie = A.slope_law(_result("fig1", [p, _slope_point(0.999, 0.9, 1e-5)]))
    assert tie.law == {0: "tie"}
    assert tie.discrete_fits.n_holds == tie.continuous_fits.n_holds == 0


def test_slope_law_refuses_another_figure_points_without_slopes_and_no_points():
    with pytest.raises(ValueError, match="fig1"):
        A.slope_law(_result("fig3", [_slope_point(0.999, 0.9, 0.0)]))
    with pytest.raises(ValueError, match="measured_slope"):
        A.slope_law(_result("fig1", [{"beta": 0.9, "gamma": 0.9, "C": 0.1, "region": "B+"}]))
    with pytest.raises(ValueError, match="no points"):
        A.slope_law(_result("fig1", []))


# --------------------------------------------------------------------------- Figs. 9-11


def _gen_point(beta, gamma, early, late=None, steps=(10, 30)):
    c = float(bounds.stability_constant(beta, gamma))
    return {"beta": beta, "gamma": gamma, "C": c, "region": bounds.region(beta, gamma),
            f"best_test_loss_{steps[0]}": early, f"best_test_loss_{steps[1]}": late if late is not None else early}


def _chapter_generalisation(res):  # Chapter 2's former generalisation_summary, numbers only
    keys = sorted((k for k in res.points[0] if k.startswith("best_test_loss_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    early = keys[0]
    level = res.data.get("curve") == "level"
    ok = [p for p in res.points if p.get(early) is not None]
    plus_ = [p for p in ok if p["region"] == "B+"]
    minus_ = [p for p in ok if p["region"] == "B-"]
    rho = _chapter_rank_corr([p["beta"] if level else p["C"] for p in plus_], [p[early] for p in plus_])
    means = (np.mean([p[early] for p in minus_]), np.mean([p[early] for p in plus_])) if minus_ and plus_ else None
    return rho, means


def _normal_grid(losses, minus_loss=4.0):
    """Four B+ points along increasing C with early losses ``losses`` and one B- point."""
    pts = [_gen_point(b, g, l) for (b, g), l in zip(((0.96, 0.97), (0.98, 0.95), (0.99, 0.92), (0.999, 0.9)), losses)]
    return pts + [_gen_point(0.9, 0.99, minus_loss)]


def test_generalisation_single_seed_gives_the_chapters_numbers():
    res = _result("fig9", [dict(p, index=i) for i, p in enumerate(_normal_grid([3.9, 3.7, 3.8, 3.5]))],
                  data={"curve": "normal"})
    g, (rho, means) = A.generalisation(res), _chapter_generalisation(res)
    assert (g.x, g.early, g.late) == ("C", 10, 30)
    assert g.rank_corr.values == (pytest.approx(rho),)
    assert (g.mean_minus.values[0], g.mean_plus.values[0]) == (pytest.approx(means[0]), pytest.approx(means[1]))
    assert g.sooner.holds == (True,) and g.minus_worse.holds == (True,)


def test_generalisation_counts_seeds_and_handles_the_level_curve_few_points_and_diverged_ones():
    grids = [_normal_grid([3.9, 3.8, 3.7, 3.6]), _normal_grid([3.6, 3.7, 3.8, 3.9]),
             _normal_grid([3.9, 3.8, 3.7, 3.6], 3.0)]
    g = A.generalisation(_multi("fig10", grids, data={"curve": "normal"}))
    assert g.rank_corr.values == (pytest.approx(-1.0), pytest.approx(1.0), pytest.approx(-1.0))
    assert g.sooner.wording == "holds in 2 of 3: not established at this scale"
    assert g.minus_worse.wording == "holds in 2 of 3: not established at this scale"
    assert "-1.00 [-1.00, +1.00]" in str(g)
    # the level curve: C is constant, beta is the variable; a None early loss (diverged) is skipped
    level = [_gen_point(b, 2 * b / (1.2212 * b + 1), l) for b, l in ((0.2, 3.9), (0.5, 3.8), (0.7, 3.7), (0.9, None))]
    lv = A.generalisation(_multi("fig11", [level] * 3, data={"curve": "level"}))
    assert lv.x == "beta" and lv.n_plus.values == (3, 3, 3)
    assert lv.sooner.wording == "holds in 3 of 3 seeds"
    assert lv.minus_worse.wording == "undecided in all 3 seeds: not testable at this scale"  # no B- point
    two = A.generalisation(_result("fig9", [_gen_point(0.98, 0.95, 3.7), _gen_point(0.999, 0.9, 3.6)]))
    assert math.isnan(two.rank_corr.values[0]) and two.sooner.holds == (None,)
    assert "n/a" in str(two)


def test_generalisation_refuses_a_result_without_test_losses():
    with pytest.raises(ValueError, match="best_test_loss_"):
        A.generalisation(_result("fig9", [{"beta": 0.9, "gamma": 0.9, "C": 0.1, "region": "B+"}]))
    with pytest.raises(ValueError, match="fig9, fig10 or fig11"):
        A.generalisation(_result("fig1", [_gen_point(0.9, 0.9, 1.0)]))


# --------------------------------------------------------------------------- Fig. 12: annealing


def _anneal_pair(seeds, grids12, grids1, steps=20):
    """fig12 and fig1 results; grids*: per seed, (beta, gamma, loss level, lr level) per point."""
    def build(figure, grids):
        points, arrays = [], {}
        for k, (s, grid) in enumerate(zip(seeds, grids)):
            for p, (beta, gamma, loss, lr) in enumerate(grid):
                i = k * len(grid) + p
                points.append({"index": i, "seed": s, "point": p, "beta": beta, "gamma": gamma,
                               "C": float(bounds.stability_constant(beta, gamma)),
                               "region": bounds.region(beta, gamma)})
                arrays[f"p{i}/loss"] = np.linspace(loss + 1, loss, steps)
                arrays[f"p{i}/lr"] = np.full(steps, lr)
                arrays[f"p{i}/max_update"] = np.full(steps, 2.0)
        return _result(figure, points, seeds=seeds, arrays=arrays, config={"steps": steps})
    return build("fig12", grids12), build("fig1", grids1)


def test_annealing_counts_the_b_minus_points_where_eq15_trains_worse_per_seed():
    fig1 = [(0.953, 0.9973, 3.0, 1e-3), (0.999, 0.9, 2.9, 1e-3)]
    worse = [(0.9525, 0.9982, 3.5, 1e-4), (0.96, 0.99, 3.4, 1e-4)]
    better = [(0.9525, 0.9982, 2.5, 1e-4), (0.96, 0.99, 3.4, 1e-4)]
    res12, res1 = _anneal_pair((0, 1, 2), [worse, worse, better], [fig1] * 3)
    a = A.annealing(res12, res1)
    assert a.window == (18, 20)
    assert a.n_minus.values == (2, 2, 2) and a.worse.values == (2, 2, 1)
    assert a.over_anneals.wording == "holds in 2 of 3: not established at this scale"
    assert a.gap.values[0] == pytest.approx(np.mean([3.5 + 0.05 - 3.05, 3.4 + 0.05 - 3.05]))
    rows = A.annealing_rows(res12, res1, seed=2)
    assert [r["run"] for r in rows] == ["annealed (Eq. 15)", "constant lr, nearest"] * 2 + ["PyTorch defaults"]
    assert rows[0]["loss"] == pytest.approx(2.5 + 1 / 38) and rows[0]["lr"] == pytest.approx(1e-4)
    assert rows[0]["step"] == pytest.approx(2e-4) and rows[-1]["beta"] == 0.999
    assert "holds in 2 of 3" in str(a)


def test_annealing_without_b_minus_points_is_undecided_and_a_diverged_run_does_not_count():
    fig1 = [(0.953, 0.9973, 3.0, 1e-3), (0.999, 0.9, 2.9, 1e-3)]
    res12, res1 = _anneal_pair((0,), [[(0.999, 0.9, 3.5, 1e-4)]], [fig1])
    assert A.annealing(res12, res1).over_anneals.holds == (None,)
    res12, res1 = _anneal_pair((0,), [[(0.9525, 0.9982, 3.5, 1e-4)]], [fig1])
    res12.arrays["p0/loss"][-1] = np.nan  # diverged in the window
    a = A.annealing(res12, res1)
    assert a.worse.values == (0,) and a.over_anneals.holds == (False,) and math.isnan(a.gap.values[0])


def test_annealing_refuses_results_of_other_figures_or_seeds():
    fig1 = [(0.953, 0.9973, 3.0, 1e-3)]
    res12, res1 = _anneal_pair((0, 1), [[(0.9525, 0.9982, 3.5, 1e-4)]] * 2, [fig1] * 2)
    with pytest.raises(ValueError, match="fig1"):
        A.annealing(res12, res12)
    _, other = _anneal_pair((0, 5), [[(0.9525, 0.9982, 3.5, 1e-4)]] * 2, [fig1] * 2)
    with pytest.raises(ValueError, match=r"seeds \[1\]"):
        A.annealing(res12, other)
    with pytest.raises(ValueError, match="seed 3"):
        A.annealing_rows(res12, res1, seed=3)


# --------------------------------------------------------------------------- Fig. 2: k-Adam against Adam


def _fig2_grid(acc):
    """acc: {(strategy, k): accuracy}; k = 1 is one point shared by every strategy."""
    strategies = sorted({s for s, _ in acc})
    out = [{"k": 1, "strategy": strategies[0], "strategies": strategies, "lr": 1e-3, "weight_decay": 1e-4,
            "best_test_accuracy": acc[strategies[0], 1]}]
    for (s, k), a in sorted(acc.items()):
        if k > 1:
            out.append({"k": k, "strategy": s, "strategies": [s], "lr": 1e-3, "weight_decay": 1e-4,
                        "best_test_accuracy": a})
    return out


def _acc(adam, ie2, ie3, n2, n3):
    return {("inverse_exp", 1): adam, ("naive", 1): adam, ("inverse_exp", 2): ie2, ("inverse_exp", 3): ie3,
            ("naive", 2): n2, ("naive", 3): n3}


def test_kadam_ranking_over_seeds_words_the_papers_pattern():
    grids = [_fig2_grid(_acc(0.80, 0.82, 0.79, 0.78, 0.70)),
             _fig2_grid(_acc(0.80, 0.80, 0.81, 0.81, 0.75)),  # a tie at k = 2 counts as "at least as good"
             _fig2_grid(_acc(0.85, 0.82, 0.83, 0.80, 0.60))]
    r = A.kadam_ranking(_multi("fig2", grids, data={"synthetic": True, "dataset": "SYNTHETIC stand-in"}))
    assert r.adam.values == (0.80, 0.80, 0.85)
    assert r.gain["inverse_exp", 2].values == (pytest.approx(0.02), 0.0, pytest.approx(-0.03))
    assert r.inverse_exp_2.wording == "holds in 2 of 3: not established at this scale"
    assert r.naive_degrades.wording == "holds in 2 of 3: not established at this scale"
    assert r.best_k["inverse_exp"] == (2, 3, 3)
    assert r.beats["naive", 3].wording == "holds in 0 of 3: not seen at this scale"
    text = str(r)
    assert "SYNTHETIC" in text and "2-Adam with inverse exp is at least as good as Adam" in text
    assert max(map(len, text.splitlines())) <= 88


def test_kadam_ranking_near_chance_or_diverged_is_undecided_and_a_legacy_result_is_one_seed():
    chance = A.kadam_ranking(_result("fig2", _fig2_grid(_acc(0.11, 0.12, 0.10, 0.10, 0.09))))
    assert chance.inverse_exp_2.holds == (None,) and chance.naive_degrades.holds == (None,)
    assert "close to chance" in str(chance)
    diverged = A.kadam_ranking(_result("fig2", _fig2_grid(_acc(0.8, None, 0.81, None, None))))
    assert diverged.inverse_exp_2.holds == (None,)
    assert diverged.naive_degrades.holds == (None,)  # only k = 1 has an accuracy: nothing to order
    assert diverged.best_k["inverse_exp"] == (3,) and diverged.best_k["naive"] == (None,)
    legacy = A.kadam_ranking(_result("fig2", [dict(p, index=i) for i, p in enumerate(_fig2_grid(
        _acc(0.8, 0.82, 0.79, 0.78, 0.7)))]))
    assert legacy.inverse_exp_2.wording == "holds in 1 of 1 seed: too few seeds to establish it (3 needed)"


# --------------------------------------------------------------------------- Chapter 6: the edge of stability


def _eos_grid(full, mini, arrivals=None):
    """full: {lr: median S/thr} of full-batch runs; mini: {lr: median} of minibatch runs."""
    out = []
    for mode, runs in (("full-batch", full), ("minibatch", mini)):
        for lr, ratio in runs.items():
            thr = (2 + 2 * 0.9) / ((1 - 0.9) * lr)
            arrival = None if ratio is None or ratio < 0.9 else 40
            out.append({"lr": lr, "mode": mode, "threshold": thr, "ratio_tail_median": ratio,
                        "ratio_tail_min": None if ratio is None else ratio * 0.8,
                        "ratio_tail_max": None if ratio is None else ratio * 1.2,
                        "arrival_step": arrival if arrivals is None else arrivals.get(lr), "gamma": 0.9, "beta": 0.999})
    return out


def test_edge_of_stability_per_run_verdicts_over_seeds():
    grids = [_eos_grid({3e-4: 1.0, 1e-3: 0.95, 3e-3: 1.1}, {1e-3: 0.2}),
             _eos_grid({3e-4: 0.9, 1e-3: 0.39, 3e-3: 0.2}, {1e-3: 0.3}),
             _eos_grid({3e-4: 1.2, 1e-3: 0.86, 3e-3: 1.3}, {1e-3: 0.8})]
    e = A.edge_of_stability(_multi("eos", grids, config={"arrive": 0.9}))
    runs = {(r.lr, r.mode): r for r in e.runs}
    assert runs[1e-3, "full-batch"].claim.wording == "holds in 2 of 3: not established at this scale"
    assert runs[1e-3, "full-batch"].verdicts == ("at the threshold (within 25%)", "below the threshold",
                                                  "at the threshold (within 25%)")
    assert runs[3e-4, "full-batch"].claim.wording == "holds in 3 of 3 seeds"
    assert runs[3e-3, "full-batch"].claim.wording == "holds in 1 of 3: not established at this scale"
    assert runs[1e-3, "minibatch"].claim.wording == "holds in 2 of 3: not established at this scale"
    assert runs[1e-3, "full-batch"].reached.holds == (True, False, False)
    assert e.held.values == (3, 1, 2)
    expo = np.polyfit(np.log([3e-4, 1e-3, 3e-3]), np.log([1.0 * 38 / 3e-4, 0.95 * 38 / 1e-3, 1.1 * 38 / 3e-3]), 1)[0]
    assert e.exponent.values[0] == pytest.approx(expo)
    assert e.follows_threshold.holds[:2] == (True, False)  # 0.39 and 0.2 of the threshold break 1/lr
    assert "median S/threshold" in str(e) and "0.86 [0.39, 0.95]" in str(e)


def test_edge_of_stability_without_measurements_is_undecided():
    e = A.edge_of_stability(_result("eos", _eos_grid({1e-3: None}, {}), config={"arrive": 0.9}))
    (run,) = e.runs
    assert run.verdicts == ("no measurement",) and run.claim.holds == (None,) and run.reached.holds == (None,)
    assert math.isnan(e.exponent.values[0]) and e.follows_threshold.holds == (None,)


# --------------------------------------------------------------------------- Chapter 5


def _batch_grid(sqrt, linear):
    """mismatch per kappa > 1 (kappa = 2, 4) under each rule; kappa = 1 has 0."""
    out = []
    for rule, mis in (("sqrt", sqrt), ("linear", linear)):
        out.append({"rule": rule, "kappa": 1, "mismatch": 0.0, "final_eval_loss": 3.0})
        out += [{"rule": rule, "kappa": k, "mismatch": m, "final_eval_loss": 3.0} for k, m in zip((2, 4), mis)]
    return out


def test_scaling_rules_single_seed_matches_the_results_own_means_and_words_the_comparison():
    res = _result("noise_batch_scaling", _batch_grid((0.035, 0.053), (0.020, 0.025)),
                  data={"mismatch": {"sqrt": 0.044, "linear": 0.0225}, "floor": 0.019})
    s = A.scaling_rules(res)
    assert s.mismatch["sqrt"].values == (pytest.approx(0.044),)
    assert s.mismatch["linear"].values == (pytest.approx(0.0225),)
    assert s.ratio.values == (pytest.approx(0.0225 / 0.044),) and s.floor.values == (0.019,)
    assert s.sqrt_closer.holds == (False,)


def test_scaling_rules_over_seeds_the_clear_separation_and_a_diverged_run():
    grids = [_batch_grid((0.01, 0.01), (0.05, 0.03)),   # ratio 4: clearly separated
             _batch_grid((0.01, 0.01), (0.02, 0.02)),   # ratio exactly 2: not "above 2"
             _batch_grid((0.01, 0.01), (None, 0.03))]   # linear diverged (a saved inf): infinitely worse
    s = A.scaling_rules(_multi("noise_batch_scaling", grids, data={"floors": [0.01, 0.02, 0.03], "floor": 0.02}))
    assert s.ratio.values[:2] == (pytest.approx(4.0), pytest.approx(2.0)) and s.ratio.values[2] == math.inf
    assert s.sqrt_closer.wording == "holds in 2 of 3: not established at this scale"
    assert s.floor.values == (0.01, 0.02, 0.03)
    both = A.scaling_rules(_result("noise_batch_scaling", _batch_grid((None, 0.01), (None, 0.01))))
    assert both.sqrt_closer.holds == (None,) and math.isnan(both.floor.values[0])


def _growth_grid(toy, gpt):
    """toy, gpt: {kappa: measured slope}; the rule's points from the base (0.95, 0.97)."""
    out = []
    for model, runs in (("gpt", gpt), ("toy", toy)):
        for kappa, slope in runs.items():
            beta, gamma = 1 - kappa * 0.05, 1 - kappa * 0.03
            out.append({"model": model, "kappa": kappa, "beta": beta, "gamma": gamma,
                        "predicted_slope_continuous": float(bounds.growth_rate(beta, gamma)),
                        "predicted_slope_discrete": float(bounds.discrete_growth_rate(beta, gamma)),
                        "measured_slope": slope})
    return out


def test_rule_growth_against_both_laws():
    d16 = float(bounds.discrete_growth_rate(0.2, 0.52))
    grids = [_growth_grid({1: 1e-3, 8: 0.0, 16: d16}, {1: 9e-4, 16: -7e-4}),
             _growth_grid({1: 1e-3, 8: 0.02, 16: d16 * 1.05}, {1: 9e-4, 16: 0.03}),
             _growth_grid({1: 1e-3, 8: None, 16: d16 * 1.5}, {1: 9e-4, 16: 1e-3})]
    data = {"kappa_c": 6.67, "kappa_d": 11.1, "kappa_limit": 20}
    g = A.rule_growth(_multi("noise_stability", grids, data=data))
    assert g.toy_below.values == (pytest.approx(1e-3), pytest.approx(0.02), pytest.approx(1e-3))
    assert g.toy_flat_below.wording == "holds in 2 of 3: not established at this scale"
    assert g.toy_above_rel.values == (pytest.approx(0.0, abs=1e-12), pytest.approx(0.05), pytest.approx(0.5))
    assert g.toy_discrete_above.wording == "holds in 2 of 3: not established at this scale"
    assert g.gpt_flat.wording == "holds in 2 of 3: not established at this scale"
    none_above = A.rule_growth(_result("noise_stability", _growth_grid({1: 1e-3}, {}), data=data))
    assert none_above.toy_discrete_above.holds == (None,) and none_above.gpt_flat.holds == (None,)
    assert "none at this scale" in str(none_above)


def test_scaling_rules_reads_a_saved_result_whose_diverged_mismatch_became_none(tmp_path):
    res = _multi("noise_batch_scaling", [_batch_grid((0.01, 0.01), (0.05, math.inf))] * 3, data={"floor": 0.01})
    res.save(tmp_path)
    back = Result.load(tmp_path)
    assert json.loads((tmp_path / "noise_batch_scaling.json").read_text())["data"]["points"][5]["mismatch"] is None
    assert A.scaling_rules(back).ratio.values == (math.inf,) * 3


def test_annealing_rows_name_pytorch_defaults_only_when_fig1_has_them():
    """At cpu scale Fig. 1's grid stops short of (0.999, 0.9): no row may be labelled as the defaults."""
    fig1 = [(0.953, 0.9973, 3.0, 1e-3), (0.966, 0.968, 2.9, 1e-3)]
    worse = [(0.9525, 0.9982, 3.5, 1e-4), (0.96, 0.99, 3.4, 1e-4)]
    res12, res1 = _anneal_pair((0,), [worse], [fig1])
    rows = A.annealing_rows(res12, res1)
    assert [r["run"] for r in rows] == ["annealed (Eq. 15)", "constant lr, nearest"] * 2


# --------------------------------------------------------------------------- a chapter's findings, claim by claim


def test_findings_sorts_the_claims_of_findings_by_what_the_seeds_show():
    shown = A.verdict("a holds everywhere", {0: True, 1: True, 2: True})
    some = A.verdict("b holds sometimes", {0: True, 1: False, 2: True})
    none = A.verdict("c never holds", {0: False, 1: False, 2: False})
    untestable = A.verdict("d cannot be tested", {0: None, 1: None, 2: None})
    few = A.verdict("e on one seed", {0: True})
    ranking = A.kadam_ranking(_multi("fig2", [_fig2_grid(_acc(0.80, 0.82, 0.79, 0.78, 0.70))] * 3))
    f = A.findings(shown, some, ranking, none, untestable, few)
    assert f.shown == (shown, ranking.beats["inverse_exp", 2], ranking.naive_degrades)
    assert f.not_established == (some, few)
    assert none in f.not_seen and f.untestable == (untestable,)
    # a finding contributes its claims once: Fig. 2's 2-Adam verdict is not listed twice
    claims = [v.claim for v in f.verdicts]
    assert len(claims) == len(set(claims)) == 5 + len(ranking.beats) + 1
    assert ranking.inverse_exp_2 not in f.verdicts and ranking.beats["inverse_exp", 2] in f.verdicts
    text = str(f)
    assert text.index("Shown at this scale") < text.index("a holds everywhere") < text.index("Not established")
    assert "b holds sometimes: holds in 2 of 3" in text and "d cannot be tested" in text
    assert max(map(len, text.splitlines())) <= 88


def test_findings_names_the_figure_of_a_generalisation_claim_that_two_figures_share():
    grids = [_normal_grid([3.9, 3.8, 3.7, 3.6])] * 3
    fig9 = A.generalisation(_multi("fig9", grids, data={"curve": "normal"}))
    fig10 = A.generalisation(_multi("fig10", grids, data={"curve": "normal"}))
    f = A.findings(fig9, fig10)
    assert len(f.verdicts) == 4 and len(f.shown) == 4
    assert f.verdicts[0].claim == f"fig9: {fig9.sooner.claim}"
    assert f.verdicts[2].claim == f"fig10: {fig10.sooner.claim}"


def test_findings_lists_an_edge_of_stability_runs_claim_not_its_arrival():
    grids = [_eos_grid({1e-3: 1.0, 3e-3: 0.4}, {1e-3: 0.5})] * 3
    edge = A.edge_of_stability(_multi("eos", grids, config={"arrive": 0.9}))
    claims = [v.claim for v in A.findings(edge).verdicts]
    assert claims == [r.claim.claim for r in edge.runs] + [edge.follows_threshold.claim]


def test_findings_refuses_what_is_not_a_claim():
    with pytest.raises(ValueError, match="at least one"):
        A.findings()
    with pytest.raises(TypeError, match="SeedVerdict or a finding"):
        A.findings(0.5)
    with pytest.raises(TypeError, match="holds no SeedVerdict"):
        A.findings(A.summarise({0: 1.0}))
