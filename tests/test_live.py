"""kadam_edu.live: the kernel-free live charts compute the library's numbers (relative 1e-9).

Each chart's Vega-Lite spec is evaluated headless by Node with the pinned ``vega`` and
``vega-lite`` of tools/vega (``npm ci --prefix tools/vega``) at several slider settings, and
every number its marks draw is compared with kadam_edu.bounds / continuous / ema / levels /
scaling. Without node or tools/vega/node_modules these tests skip, saying why, except under CI
(CI=true/1/yes), where they fail. ``pytest -s`` prints the largest difference per chart.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kadam_edu import Level, bounds, continuous, ema, levels, scaling
from kadam_edu.optim import STRATEGIES

alt = pytest.importorskip("altair")
from kadam_edu import live  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VEGA = ROOT / "tools" / "vega"
RTOL = 1e-9
CHARTS = {
    "kernel": live.kernel_chart,
    "stability": live.stability_chart,
    "levels": live.levels_chart,
    "scaling": live.scaling_chart,
}
LARGEST: dict[str, float] = {}  # chart -> the largest relative difference seen


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _need_node() -> str:
    node = shutil.which("node")
    why = None
    if node is None:
        why = "node is not installed (Debian: apt-get install nodejs npm)"
    elif not (VEGA / "node_modules" / "vega").is_dir() or not (VEGA / "node_modules" / "vega-lite").is_dir():
        why = "tools/vega/node_modules is missing: run `npm ci --prefix tools/vega`"
    if why:
        if _in_ci():
            pytest.fail(f"the live charts cannot be checked under CI: {why}")
        pytest.skip(why)
    return node


def _number(x):
    if isinstance(x, str) and x in ("Infinity", "-Infinity", "NaN"):
        return float(x.replace("Infinity", "inf").replace("NaN", "nan"))
    return x


def evaluate(chart, settings: list[dict], only: list[str] | None = None) -> list[dict]:
    """Run tools/vega/evaluate.mjs on ``chart`` at each setting; per setting {"signals", "marks"}
    (``only``: the marks whose names start with one of these)."""
    node = _need_node()
    request = json.dumps({"spec": chart.to_dict(), "settings": settings, "marks": only})
    out = subprocess.run(
        [node, str(VEGA / "evaluate.mjs")], input=request, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs = json.loads(out.stdout, parse_constant=float)["runs"]
    for run in runs:
        run["signals"] = {k: _number(v) for k, v in run["signals"].items()}
        run["marks"] = {
            k: [{f: _number(v) for f, v in row.items()} for row in rows] for k, rows in run["marks"].items()
        }
    return runs


def marks(run: dict, name: str) -> list[dict]:
    """Rows of the mark named ``name`` (Vega-Lite appends "_marks", in a layer "_<i>_marks")."""
    found = [
        rows
        for key, rows in run["marks"].items()
        if key == f"{name}_marks"
        or (key.startswith(f"{name}_") and key[len(name) + 1 : -6].isdigit() and key.endswith("_marks"))
    ]
    assert len(found) == 1, f"no single mark {name!r} among {sorted(run['marks'])}"
    return found[0]


def rel(got, want, *, log: bool = False) -> float:
    """|got - want| / |want| (0 for equal infinities); for a log value |got - want|, the relative
    difference of the quantity itself."""
    got, want = float(got), float(want)
    if got == want or (math.isnan(got) and math.isnan(want)):
        return 0.0
    if math.isinf(got) or math.isinf(want) or math.isnan(got) or math.isnan(want):
        return math.inf
    return abs(got - want) if log else abs(got - want) / abs(want)


class Diff:
    """Collects relative differences of one chart; fails on the first above RTOL."""

    def __init__(self, chart: str):
        self.chart, self.largest = chart, 0.0

    def __call__(self, got, want, what: str, *, log: bool = False):
        d = rel(got, want, log=log)
        assert d <= RTOL, f"{self.chart}: {what}: live {got!r} vs library {want!r} (difference {d:.3g})"
        self.largest = max(self.largest, d)

    def report(self, checked: int):
        assert checked > 0, f"{self.chart}: nothing was compared"
        LARGEST[self.chart] = max(LARGEST.get(self.chart, 0.0), self.largest)
        print(
            f"\n[live] {self.chart}: {checked} values compared, "
            f"largest relative difference {self.largest:.3g}"
        )


# --------------------------------------------------------------------------- without node
def test_import_kadam_edu_does_not_import_altair():
    code = (
        "import sys; sys.modules['altair'] = None\n"  # None: `import altair` raises ImportError
        "import kadam_edu, kadam_edu.live as live\n"
        "try:\n    live.stability_chart()\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert 'pip install "kadam-edu[book]"' in out.stdout
    code = "import sys, kadam_edu, kadam_edu.live; print('altair' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize(
    "fn, kwargs, name",
    [
        (live.kernel_chart, {"beta": 0.4}, "beta"),
        (live.kernel_chart, {"gamma": 0.0}, "gamma"),
        (live.kernel_chart, {"steps": 10}, "steps"),
        (live.kernel_chart, {"steps": 300.5}, "steps"),
        (live.stability_chart, {"beta": 1.0}, "beta"),
        (live.stability_chart, {"gamma": float("nan")}, "gamma"),
        (live.stability_chart, {"n_max": 0}, "n_max"),
        (live.stability_chart, {"beta": "0.9"}, "beta"),
        (live.levels_chart, {"k": 11}, "k"),
        (live.levels_chart, {"k": 0}, "k"),
        (live.levels_chart, {"strategy": "linear"}, "strategy"),
        (live.levels_chart, {"gamma": 0.995}, "gamma"),
        (live.levels_chart, {"k_max": 0}, "k_max"),
        (live.levels_chart, {"n_max": 5}, "n_max"),
        (live.scaling_chart, {"kappa": 0.1}, "kappa"),
        (live.scaling_chart, {"kappa": 41}, "kappa"),
        (live.scaling_chart, {"gamma": -0.1}, "gamma"),
        (live.scaling_chart, {"beta": True}, "beta"),
    ],
)
def test_bad_arguments_are_refused_by_name(fn, kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        fn(**kwargs)


SLIDERS = {
    "kernel": {"beta": 0.999, "gamma": 0.9, "steps": 300},
    "stability": {"beta": 0.999, "gamma": 0.9},
    "levels": {"k": 2, "strategy": "inverse_exp", "beta": 0.999, "gamma": 0.9},
    "scaling": {"kappa": 4.0, "beta": 0.95, "gamma": 0.97},
}


@pytest.mark.parametrize("chart", sorted(CHARTS))
def test_sliders_are_the_explorers_params_in_the_papers_notation(chart):
    spec = CHARTS[chart]().to_dict()
    bound = {p["name"]: p for p in spec["params"] if "bind" in p}
    assert {name: p["value"] for name, p in bound.items()} == SLIDERS[chart]
    for name, p in bound.items():
        assert p["bind"]["input"] == ("select" if name == "strategy" else "range"), name
    if chart == "levels":
        assert bound["strategy"]["bind"]["options"] == list(STRATEGIES)
        assert bound["k"]["bind"]["max"] == 10
    moved = dict(SLIDERS[chart], **({"strategy": "exp"} if chart == "levels" else {"beta": 0.9}))
    spec = CHARTS[chart](**moved).to_dict()
    assert {p["name"]: p["value"] for p in spec["params"] if "bind" in p} == moved


def test_strategy_expressions_cover_the_library_strategies():
    assert list(live.STRATEGY_EXPRESSIONS) == list(STRATEGIES)


# --------------------------------------------------------------------------- the mirrors, one by one
def _grid():
    """(n, beta, gamma): B+, B0 (C = 0 to rounding), B-, gamma = 0, tiny gamma, n = 0, huge n, n = inf."""
    pairs = [
        (0.999, 0.9),
        (0.9, 1.8 / 1.9),
        (0.9, 0.99),
        (0.95, 0.97),
        (0.5, 0.0),
        (0.5, 1e-3),
        (0.3, 0.45),
        (0.9999, 0.9999),
        (0.6, 0.99),
    ]
    ns = [0.0, 1.0, 2.5, 10.0, 1e3, 1e5, 1e7, math.inf]
    return [(n, b, g) for b, g in pairs for n in ns]


def test_every_mirror_computes_its_library_function():
    rows = [{"n0": -1.0 if math.isinf(n) else n, "b": b, "g": g} for n, b, g in _grid()]  # JSON has no inf
    calls = {
        "C": (
            live.stability_constant("datum.b", "datum.g", out="C"),
            lambda n, b, g: bounds.stability_constant(b, g),
        ),
        "R": (
            live.region(
                f"({live._inline(live.stability_constant('datum.b', 'datum.g', out='x'), 'x')})", out="R"
            ),
            lambda n, b, g: bounds.region(b, g),
        ),
        "rate": (
            [
                *live.stability_constant("datum.b", "datum.g", out="c1"),
                *live.growth_rate("datum.c1", out="rate"),
            ],
            lambda n, b, g: bounds.growth_rate(b, g),
        ),
        "drate": (
            live.discrete_growth_rate("datum.b", "datum.g", out="drate"),
            lambda n, b, g: bounds.discrete_growth_rate(b, g),
        ),
        "L": (
            live.log_max_update_bound("datum.n", "datum.b", "datum.g", out="L"),
            lambda n, b, g: bounds.log_max_update_bound(n, b, g),
        ),
        "U": (
            live.max_update_bound("datum.n", "datum.b", "datum.g", out="U"),
            lambda n, b, g: bounds.max_update_bound(n, b, g),
        ),
        "LD": (
            live.log_discrete_max_update_bound("datum.n", "datum.b", "datum.g", out="LD"),
            lambda n, b, g: bounds.log_discrete_max_update_bound(n, b, g),
        ),
        "UD": (
            live.discrete_max_update_bound("datum.n", "datum.b", "datum.g", out="UD"),
            lambda n, b, g: bounds.discrete_max_update_bound(n, b, g),
        ),
    }
    chart = alt.Chart(alt.Data(values=rows)).transform_calculate(n="datum.n0 < 0 ? 1 / 0 : datum.n0")
    chart = chart.mark_point().encode(x="n0:Q").properties(name="grid")
    for steps, _ in calls.values():
        chart = live._calc(chart, steps)
    (run,) = evaluate(chart, [{}])
    got = marks(run, "grid")
    assert len(got) == len(rows)
    diff, checked = Diff("mirrors of bounds"), 0
    for row in got:
        n, b, g = float(row["n"]), row["b"], row["g"]
        for field, (_, fn) in calls.items():
            want = fn(n, b, g)
            if field == "R":
                assert row[field] == want, (n, b, g)
                continue
            diff(row[field], want, f"{field} at n={n}, beta={b}, gamma={g}", log=field in ("L", "LD"))
            checked += 1
    diff.report(checked)
    assert {live.MIRRORS[f] for f in (bounds.stability_constant, bounds.log_max_update_bound)} == {
        live.stability_constant,
        live.log_max_update_bound,
    }


# --------------------------------------------------------------------------- the four charts
def test_kernel_chart_matches_library():
    settings = [
        {},
        {"beta": 0.5, "gamma": 0.01, "steps": 20},
        {"beta": 0.9999, "gamma": 0.99, "steps": 1000},
        {"beta": 0.95, "gamma": 0.5, "steps": 110},
    ]
    diff, checked = Diff("kernel"), 0
    for s, run in zip(settings, evaluate(live.kernel_chart(), settings)):
        p = dict(SLIDERS["kernel"], **s)
        alpha = {"gamma": p["gamma"], "beta": p["beta"]}
        curves = marks(run, "kernel_curves")
        assert {r["alpha"] for r in curves} == {"gamma", "beta"}
        lags = np.linspace(0.0, p["steps"], 800)
        for name, a in alpha.items():  # a weight that underflows to 0 has no place on the log axis
            drawn = sorted(r["i"] for r in curves if r["alpha"] == name)
            assert drawn == [i for i in range(800) if continuous.kernel(0.0, lags[i], a, lr=1.0) > 0]
        for r in curves:
            diff(r["lag"], lags[r["i"]], "lag")
            diff(r["weight"], continuous.kernel(0.0, r["lag"], alpha[r["alpha"]], lr=1.0), f"K_{r['alpha']}")
            checked += 1
        for r in marks(run, "kernel_weights"):
            assert r["lag"] == int(r["lag"]) and 0 <= r["lag"] < p["steps"]
            diff(r["weight"], ema.discrete_weights(alpha[r["alpha"]], r["lag"]), f"weight at j={r['lag']}")
            checked += 1
        shown = {r["alpha"]: r["lag"] for r in marks(run, "kernel_lags")}
        for name, a in alpha.items():
            if a / (1 - a) <= p["steps"]:
                diff(shown[name], a / (1 - a), "mean lag")
            else:
                assert name not in shown
    diff.report(checked)


def test_stability_chart_matches_library():
    settings = [
        {},
        {"beta": 0.9, "gamma": 1.8 / 1.9},
        {"beta": 0.9, "gamma": 0.99},
        {"beta": 0.5, "gamma": 0.5},
        {"beta": 0.9999, "gamma": 0.9999},
        {"beta": 0.95, "gamma": 0.97},
    ]
    diff, checked = Diff("stability"), 0
    # large n: B- (the bound grows like exp(n|C|/2)) and B+, n = 0..10^5
    for n_max, cases in ((1000, settings), (100_000, settings[2:4])):
        for s, run in zip(cases, evaluate(live.stability_chart(n_max=n_max), cases)):
            b, g = s.get("beta", 0.999), s.get("gamma", 0.9)
            (pt,) = marks(run, "stability_point")
            assert pt["region"] == bounds.region(b, g)
            diff(pt["C"], bounds.stability_constant(b, g), "C")
            diff(run["signals"]["C"], bounds.stability_constant(b, g), "the title's C")
            diff(pt["rate"], bounds.growth_rate(b, g), "growth rate")
            diff(pt["discrete_rate"], bounds.discrete_growth_rate(b, g), "discrete growth rate")
            rows = marks(run, "stability_bounds")
            n = np.array([r["n"] for r in rows], dtype=float)
            assert set(n) == set(range(n_max + 1))
            for field, fn in (
                ("log_bound", bounds.log_max_update_bound),
                ("log_discrete_bound", bounds.log_discrete_max_update_bound),
            ):
                got = np.array([float(r[field]) for r in rows])
                want = np.asarray(fn(n, b, g))
                assert np.array_equal(np.isfinite(got), np.isfinite(want)) and np.all(
                    got[~np.isfinite(got)] == want[~np.isfinite(want)]
                )
                ok = np.isfinite(want)
                worst = int(np.argmax(np.abs(got[ok] - want[ok])))
                diff(
                    got[ok][worst],
                    want[ok][worst],
                    f"{field} at n={n[ok][worst]:g}, beta={b}, gamma={g}",
                    log=True,
                )
                checked += len(got)
            c = bounds.stability_constant(b, g)
            for r in marks(run, "stability_level_curve")[::25]:
                want = bounds.level_curve(c, 2, beta_range=(r["beta"], (r["beta"] + 1) / 2))[1][0]
                diff(r["level_gamma"], want, "level curve")
                checked += 1
            for r in marks(run, "stability_normal_curve")[::5]:
                want = bounds.normal_curve(b, g, 2, beta_range=(r["beta"], (r["beta"] + 1) / 2))[1][0]
                diff(r["normal_gamma"], want, "normal curve")
                checked += 1
    diff.report(checked)


def test_levels_chart_matches_library():
    settings = [
        {"k": k, "strategy": st, "beta": b, "gamma": g}
        for st in STRATEGIES
        for k in (1, 10)
        for b, g in ((0.999, 0.9), (0.5, 0.0))
    ] + [{}]
    diff, checked = Diff("levels"), 0
    for s, run in zip(settings, evaluate(live.levels_chart(), settings)):
        p = dict(SLIDERS["levels"], **s)
        path = levels.strategy_path(p["strategy"], 10, beta=p["beta"], gamma=p["gamma"])
        rows = sorted(marks(run, "levels_path"), key=lambda r: r["k"])
        assert [r["k"] for r in rows] == list(range(1, 11))
        for r, lv in zip(rows, path):
            if lv.gamma:  # 0 for every strategy at gamma = 0
                diff(r["level_gamma"], lv.gamma, "gamma_i")
            diff(r["level_beta"], lv.beta, "beta_i")
        (pair,) = marks(run, "levels_pair")
        (table,) = levels.level_table(p["k"], p["strategy"], p["beta"], p["gamma"])[:1]
        assert pair["region"] == table["region"]
        for field, key in (
            ("level_gamma", "gamma"),
            ("level_beta", "beta"),
            ("C", "C"),
            ("sup_bound", "sup_bound"),
            ("sup_discrete_bound", "sup_discrete_bound"),
        ):
            diff(pair[field], table[key], f"{key} of {p}")
        bound_rows = marks(run, "levels_bounds")
        assert len(bound_rows) == 4 * len({r["n"] for r in bound_rows})
        for r in bound_rows:
            lv = Level(gamma=r["level_gamma"], beta=r["level_beta"])
            assert lv == (path[0] if r["pair"] == "adam" else path[p["k"] - 1])
            want = levels.level_bounds([r["n"]], [lv], kind=r["kind"])[0, 0]
            diff(r["bound"], want, f"{r['kind']} bound at n={r['n']} for {p}")
            assert (r["drawn"] is None or math.isnan(r["drawn"])) if want > 1e12 else r["drawn"] == r["bound"]
            checked += 1
    diff.report(checked)


def test_scaling_chart_matches_library():
    settings = [
        {"kappa": kappa, "beta": b, "gamma": g}
        for b, g in ((0.95, 0.97), (0.999, 0.9), (0.5, 0.0))
        for kappa in (0.25, 1.0, 4.0, 6.75, 19.75, 40.0)
    ]
    diff, checked = Diff("scaling"), 0
    for s, run in zip(settings, evaluate(live.scaling_chart(), settings)):
        kappa, b, g = s["kappa"], s["beta"], s["gamma"]
        sig = run["signals"]
        kmax = min(scaling.kappa_limit(beta=b, gamma=g), 1 / (1 - b))
        diff(sig["kappa_max"], kmax, "kappa_max")
        diff(sig["kappa_c"], scaling.crossing_kappa(beta=b, gamma=g), "kappa_c")
        diff(sig["kappa_d"], scaling.discrete_crossing_kappa(beta=b, gamma=g), "kappa_d")
        diff(sig["C_base"], bounds.stability_constant(b, g), "C at kappa = 1")
        rows = marks(run, "scaling_curve")
        ks = np.linspace(kmax / 400, kmax * (1 - 1e-6), 400)
        assert sorted({r["i"] for r in rows}) == list(range(400))
        for r in rows:
            diff(r["kappa"], ks[r["i"]], "kappa grid")
            nb, ng = scaling.scaled_decays(r["kappa"], beta=b, gamma=g)
            diff(r["scaled_beta"], nb, "beta'")
            diff(r["scaled_gamma"], ng, "gamma'")
            diff(
                r["C"],
                scaling.scaled_stability_constant(r["kappa"], beta=b, gamma=g),
                f"C at kappa={r['kappa']}",
            )
            diff(r["rate"], bounds.growth_rate(nb, ng), "continuous rate")
            diff(r["discrete_rate"], bounds.discrete_growth_rate(nb, ng), "discrete rate")
            checked += 1
        points = {r["which"]: r for r in marks(run, "scaling_points")}
        for which, k in ((1, 1.0), (2, kappa)):
            if k >= kmax:
                assert which not in points, (k, kmax)
                continue
            d = scaling.square_root_rule(k, lr=1.0, beta=b, gamma=g, eps=0.0)
            diff(points[which]["beta"], d["beta"], "scaled beta")
            diff(points[which]["C"], bounds.stability_constant(d["beta"], d["gamma"]), "scaled C")
            assert points[which]["region"] == bounds.region(d["beta"], d["gamma"])
            if which == 2:
                diff(sig["C_now"], bounds.stability_constant(d["beta"], d["gamma"]), "C in the title")
        crossings = {r["name"]: r["kappa"] for r in marks(run, "scaling_crossings")}
        limit = scaling.kappa_limit(beta=b, gamma=g)
        for name, k in (
            ("κ_c", scaling.crossing_kappa(beta=b, gamma=g)),
            ("κ_d", scaling.discrete_crossing_kappa(beta=b, gamma=g)),
        ):
            assert (name in crossings) == (0 < k < limit)
    diff.report(checked)


def test_largest_differences_are_reported():
    """Runs last (file order): prints the per-chart figures gathered above."""
    if not LARGEST:
        pytest.skip("no chart was evaluated (see the skips above)")
    print(
        "\n[live] largest relative difference from the library per chart: "
        + ", ".join(f"{k} {v:.3g}" for k, v in LARGEST.items())
    )
