"""Result.table: aligned plain-text tables of point summaries, one format per column, over seeds."""

import numpy as np
import pytest

from kadam_edu.experiments import Result


def _legacy():
    points = [
        {"index": 0, "beta": 0.953, "gamma": 0.9973, "C": -0.0439, "region": "B-", "measured_slope": 0.0204},
        {"index": 1, "beta": 0.999, "gamma": 0.9, "C": 0.2212, "region": "B+", "measured_slope": None},
    ]
    return Result(figure="fig1", scale="smoke", config={}, data={"points": points}, provenance={"seed": 0})


def _seeded(slopes=((0.02, 0.001), (0.03, 0.002), (0.01, None))):
    points = []
    for k, per_point in enumerate(slopes):
        for p, (beta, gamma, region, slope) in enumerate(zip((0.953, 0.999), (0.9973, 0.9), ("B-", "B+"), per_point)):
            points.append({"index": k * 2 + p, "seed": 10 + k, "point": p, "beta": beta, "gamma": gamma,
                           "region": region, "measured_slope": slope, "steps_done": 600})
    data = {"points": points, "seeds": [10, 11, 12], "grid_size": 2, "sweep_size": 6}
    return Result(figure="fig1", scale="smoke", config={}, data=data, provenance={"seed": 10})


def test_table_aligns_columns_with_a_format_per_column():
    text = _legacy().table(["beta", "gamma", "C", "region", "measured_slope"], fmt={"C": "+.3f", "beta": ".4f"})
    assert text.splitlines() == [
        "  beta   gamma       C  region  measured_slope",
        "0.9530  0.9973  -0.044  B-              0.0204",
        "0.9990     0.9  +0.221  B+                  --",
    ]


def test_table_headers_lists_and_rows_passed_in():
    rows = [{"strategy": "inverse_exp", "k": 2, "ratios": [1.0000001, 0.8680636]},
            {"strategy": "naive", "k": 10, "ratios": [0.95, 0.9]}]
    text = _legacy().table(["strategy", "k", "ratios"], rows=rows, fmt={"ratios": ".3f"}, headers={"k": "levels"})
    assert text.splitlines() == [
        "strategy     levels       ratios",
        "inverse_exp       2  1.000 0.868",
        "naive            10  0.950 0.900",
    ]
    assert _legacy().table(["beta"], rows=[]).splitlines() == ["beta"]


def test_table_of_one_seed_and_the_seed_and_point_columns_of_a_legacy_result():
    res = _seeded()
    one = res.table(["seed", "point", "measured_slope"], seed=11)
    assert one.splitlines()[1:] == ["  11      0            0.03", "  11      1           0.002"]
    assert len(res.table(["seed", "beta"]).splitlines()) == 1 + 6  # every (seed, point)
    assert _legacy().table(["seed", "point"]).splitlines()[1:] == ["   0      0", "   0      1"]


def test_table_over_seeds_prints_median_and_range_and_one_value_where_the_seeds_agree():
    text = _seeded().table(["beta", "region", "measured_slope", "steps_done"], over_seeds=True,
                           fmt={"beta": ".3f", "measured_slope": ".3f"})
    # numbers right-aligned, text left-aligned, columns two spaces apart; 35 = the widest cell
    assert text.splitlines() == [
        f"{'beta':>5}  {'region':<6}  {'measured_slope':>35}  {'steps_done':>10}",
        f"{'0.953':>5}  {'B-':<6}  {'0.020 [0.010, 0.030]':>35}  {'600':>10}",
        f"{'0.999':>5}  {'B+':<6}  {'0.002 [0.001, 0.002] (2 of 3 seeds)':>35}  {'600':>10}",
    ]
    mixed = Result(figure="x", scale="smoke", config={}, provenance={"seed": 0}, data={"points": [
        {"seed": 0, "point": 0, "mode": "a"}, {"seed": 1, "point": 0, "mode": "b"}]})
    assert mixed.table(["mode"], over_seeds=True).splitlines()[1] == "a/b"


def test_table_formats_non_finite_numbers_and_numpy_scalars():
    rows = [{"x": np.float32(0.5), "n": np.int64(3)}, {"x": float("inf"), "n": 4}, {"x": float("nan"), "n": 5}]
    assert _legacy().table(["x", "n"], rows=rows, fmt={"x": ".2f"}).splitlines() == [
        "   x  n", "0.50  3", " inf  4", " nan  5"]


def test_table_refuses_bad_arguments_before_formatting_anything():
    res = _legacy()
    with pytest.raises(ValueError, match="columns"):
        res.table([])
    with pytest.raises(TypeError, match="columns"):
        res.table("beta")
    with pytest.raises(ValueError, match="'Cx'.*not one of the columns"):
        res.table(["C"], fmt={"Cx": "+.3f"})
    with pytest.raises(ValueError, match="row 1 .*'gamma'"):
        res.table(["beta", "gamma"], rows=[{"beta": 1, "gamma": 2}, {"beta": 3}])
    with pytest.raises(ValueError, match="fmt\\['region'\\] = '\\.3f'"):
        res.table(["region"], fmt={"region": ".3f"})
    with pytest.raises(ValueError, match="seed 4"):
        _seeded().table(["beta"], seed=4)
    with pytest.raises(ValueError, match="rows"):
        res.table(["beta"], rows=[{"beta": 1}], over_seeds=True)
    with pytest.raises(TypeError, match="row 0"):
        res.table(["beta"], rows=[3])
