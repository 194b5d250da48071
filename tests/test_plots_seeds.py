"""The plots of multi-seed results (issue 14): every sweep plot draws a 3-seed smoke result, its
trajectory panels show the first seed's runs (and say so), its summary panels the median over the
seeds with a bar from the lowest to the highest seed; single-seed and legacy results draw as before.

The expected medians and ranges are computed here from the point summaries, not with the helpers
the plots use.
"""

import copy

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure

from kadam_edu import experiments, plots

NAMES = ["fig1", "fig3", "fig9", "fig10", "fig11", "fig12", "fig2", "eos", "noise_batch_scaling", "noise_stability"]
TINY = {"fig1": dict(steps=30, slope_at=20), "fig2": dict(strategies=["inverse_exp", "naive"]),
        "noise_batch_scaling": dict(samples=192), "noise_stability": dict(gpt_steps=30)}
#: Every plot of a sweep that can hold several seeds, with the result it draws.
PLOTS = [(name, getattr(plots, name)) for name in NAMES] + [
    (name, plots.bound_ratio) for name in ("fig1", "fig3", "fig12")]


@pytest.fixture(scope="module")
def three():
    """Each figure at smoke scale over seeds 0, 1, 2."""
    return {name: experiments.reproduce(name, "smoke", seeds=3, **TINY.get(name, {})) for name in NAMES}


@pytest.fixture(scope="module")
def one():
    """Each figure at smoke scale with its single seed."""
    return {name: experiments.reproduce(name, "smoke", **TINY.get(name, {})) for name in NAMES}


def _pixels(fig):
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


def _bars(ax):
    """(x, lo, hi) of every error bar drawn on ``ax``, sorted."""
    out = []
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer):
            for coll in c.lines[2]:
                out += [(seg[0][0], min(seg[0][1], seg[1][1]), max(seg[0][1], seg[1][1])) for seg in coll.get_segments()]
    return sorted(out)


def _series(ax, label):
    """The (x, y) of the one series labelled ``label``: a line, or an error bar's data line."""
    found = [ln for ln in ax.get_lines() if ln.get_label() == label]
    found += [c.lines[0] for c in ax.containers if isinstance(c, ErrorbarContainer) and c.get_label() == label]
    assert len(found) == 1, (label, [ln.get_label() for ln in ax.get_lines()], [c.get_label() for c in ax.containers])
    return tuple(np.asarray(v, dtype=float) for v in found[0].get_data())


def _grid(result):
    """{point: {seed: summary}}, from the "seed" and "point" every summary carries."""
    out = {}
    for p in result.points:
        out.setdefault(p["point"], {})[p["seed"]] = p
    return out


def _span(values):
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)), float(v.min()), float(v.max())


# --------------------------------------------------------------------------- every plot draws
@pytest.mark.parametrize("name,plot", PLOTS, ids=[f"{p.__name__}-{n}" for n, p in PLOTS])
def test_every_plot_draws_three_seeds(three, name, plot):
    fig = plot(three[name])
    assert isinstance(fig, Figure)
    assert _pixels(fig).shape[2] == 4


def test_the_result_holds_three_seeds(three):
    for name, r in three.items():
        assert r.data["seeds"] == [0, 1, 2], name
        assert len(r.points) == 3 * r.data["grid_size"], name


# --------------------------------------------------------------------------- trajectories: the first seed
def _drawn(ax):
    return [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()]


def _is_drawn(y, drawn):
    y = np.asarray(y, dtype=float)
    return any(len(d) == len(y) and np.allclose(d, y, equal_nan=True) for d in drawn)


#: The trajectory panels of the "p{i}/" sweeps: (axes index, array key).
TRAJECTORIES = {"fig1": [(0, "max_update")], "fig3": [(0, "max_update")], "fig9": [(0, "eval_loss")],
                "fig10": [(0, "eval_loss")], "fig11": [(0, "eval_loss")],
                "fig12": [(0, "max_update"), (1, "eval_loss")], "eos": [(0, "sharpness"), (2, "fixed_loss")]}


@pytest.mark.parametrize("name", list(TRAJECTORIES))
def test_trajectory_panels_draw_the_first_seed_and_say_so(three, name):
    r = three[name]
    fig = plots.plot(r)
    for i, key in TRAJECTORIES[name]:
        ax = fig.axes[i]
        drawn = _drawn(ax)
        for p in r.points:
            y = r.point_arrays(p["index"])[key]
            if name == "eos" and key == "fixed_loss" and p["mode"] == "full-batch":
                continue  # a full-batch run's loss panel draws its loss at every step
            assert _is_drawn(y, drawn) == (p["seed"] == 0), (name, key, p["seed"], p["point"])
        assert "seed 0 of 3" in ax.get_title(), ax.get_title()


def test_noise_batch_scaling_draws_the_first_seeds_curves(three):
    r = three["noise_batch_scaling"]
    fig = plots.noise_batch_scaling(r)
    for ax, rule in zip(fig.axes[:2], ("sqrt", "linear")):
        drawn = [np.asarray(ln.get_ydata(), dtype=float) for ln in ax.get_lines() if "batch" in ln.get_label()]
        for s in r.data["seeds"]:
            for k in {p["kappa"] for p in r.points}:
                assert _is_drawn(r.arrays[f"s{s}/{rule}/k{k}/eval_loss"], drawn) == (s == 0), (rule, s, k)
        assert "seed 0 of 3" in ax.get_title()
        # the seed floor's curve: kappa = 1 in the next seed
        labels = [line.get_label() for line in ax.get_lines()]
        assert any("seed 1" in label for label in labels), labels


def test_noise_stability_draws_the_first_seeds_toy(three):
    r = three["noise_stability"]
    fig = plots.noise_stability(r)
    ax = fig.axes[1]
    drawn = _drawn(ax)
    for p in r.points:
        if p["model"] == "toy":
            y = r.arrays[f"s{p['seed']}/toy/k{p['kappa']:g}/max_update"]
            assert _is_drawn(y, drawn) == (p["seed"] == 0), (p["seed"], p["kappa"])
    assert "seed 0 of 3" in ax.get_title()


# --------------------------------------------------------------------------- summaries: median and range
def test_fig1_slopes_are_medians_with_seed_ranges(three):
    r = three["fig1"]
    b = plots.fig1(r).axes[1]
    want = sorted((seeds[0]["C"], *_span([p["measured_slope"] for p in seeds.values()])[1:])
                  for seeds in _grid(r).values())
    np.testing.assert_allclose(_bars(b), want, rtol=1e-9, atol=1e-12)
    medians = sorted((seeds[0]["C"], _span([p["measured_slope"] for p in seeds.values()])[0])
                     for seeds in _grid(r).values())
    scatter = [c for c in b.collections if isinstance(c, PathCollection)]
    assert len(scatter) == 1
    offsets = sorted(map(tuple, scatter[0].get_offsets()))
    np.testing.assert_allclose(offsets, medians, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["fig9", "fig10", "fig11"])
def test_best_test_loss_is_median_with_seed_range(three, name):
    r = three[name]
    b = plots.plot(r).axes[1]
    level = r.data.get("curve") == "level"
    keys = sorted({k for p in r.points for k in p if k.startswith("best_test_loss_")})
    labels = [c.get_label() for c in b.containers]
    want = []
    for key in keys:
        for seeds in _grid(r).values():
            x = seeds[0]["beta"] if level else seeds[0]["C"]
            want.append((x, *_span([p[key] for p in seeds.values()])[1:]))
        medians = [_span([p[key] for p in seeds.values()])[0] for seeds in _grid(r).values()]
        label = [la for la in labels if la.startswith(f"best by n={key.rsplit('_', 1)[1]} ")]
        assert len(label) == 1, labels
        np.testing.assert_allclose(_series(b, label[0])[1], medians)
    np.testing.assert_allclose(_bars(b), sorted(want), rtol=1e-9)


def _best(points, strategy, k):
    """Fig. 2's row (strategy, k) in one seed: the best accuracy over its lr/wd points."""
    accs = [p["best_test_accuracy"] for p in points if p["k"] == k
            and (strategy in p.get("strategies", []) or p["strategy"] == strategy)
            and p["best_test_accuracy"] is not None]
    return max(accs)


def test_fig2_draws_one_line_per_strategy_through_the_medians(three):
    r = three["fig2"]
    a = plots.fig2(r).axes[0]
    seeds = r.data["seeds"]
    ks = sorted({p["k"] for p in r.points})
    want_bars = []
    for strategy in ("inverse_exp", "naive"):
        x, y = _series(a, strategy)
        assert list(x) == ks  # one point per k, in order: no zigzag through the seeds
        spans = [_span([_best([p for p in r.points if p["seed"] == s], strategy, k) for s in seeds]) for k in ks]
        np.testing.assert_allclose(y, [m for m, _, _ in spans])
        want_bars += [(k, lo, hi) for k, (_, lo, hi) in zip(ks, spans)]
    adam = _span([_best([p for p in r.points if p["seed"] == s], "inverse_exp", 1) for s in seeds])
    want_bars.append((1, adam[1], adam[2]))
    np.testing.assert_allclose(_bars(a), sorted(want_bars))
    assert "seed 0 of 3" in plots.fig2(r).axes[1].get_title()


def test_noise_stability_slopes_are_medians_with_seed_ranges(three):
    r = three["noise_stability"]
    c = plots.noise_stability(r).axes[2]
    want = sorted((seeds[0]["kappa"], *_span([p["measured_slope"] for p in seeds.values()])[1:])
                  for seeds in _grid(r).values())
    np.testing.assert_allclose(_bars(c), want, rtol=1e-9, atol=1e-12)


def test_noise_batch_scaling_mismatch_bars_are_medians_with_seed_ranges(three):
    r = three["noise_batch_scaling"]
    c = plots.noise_batch_scaling(r).axes[2]
    big = sorted(p["kappa"] for p in r.points if p["kappa"] > 1 and p["rule"] == "sqrt" and p["seed"] == 0)
    heights, ranges = [], []
    for rule in ("sqrt", "linear"):
        for k in big:
            m, lo, hi = _span([p["mismatch"] for p in r.points if p["rule"] == rule and p["kappa"] == k])
            heights.append(m)
            ranges.append((lo, hi))
    drawn = [patch.get_height() for bars in c.containers if isinstance(bars, BarContainer) for patch in bars]
    np.testing.assert_allclose(drawn, heights, rtol=1e-9)
    np.testing.assert_allclose(sorted((lo, hi) for _, lo, hi in _bars(c)), sorted(ranges), rtol=1e-9)
    _, lo, hi = _span(r.data["floors"])
    assert any(f"{lo:.3f}" in t.get_text() and f"{hi:.3f}" in t.get_text() for t in c.get_legend().get_texts())


def test_eos_tail_ratio_is_median_with_seed_range(three):
    r = three["eos"]
    b = plots.eos(r).axes[1]
    want = sorted(_span([p["ratio_tail_median"] for p in seeds.values()])[1:] for seeds in _grid(r).values())
    np.testing.assert_allclose(sorted((lo, hi) for _, lo, hi in _bars(b)), want, rtol=1e-9)


def test_bound_ratio_draws_every_seed(three):
    r = three["fig1"]
    a = plots.bound_ratio(r).axes[0]
    ratios = [ln for ln in a.get_lines() if len(ln.get_xdata()) == r.config["steps"]]
    assert len(ratios) == len(r.points)  # the bound is checked on every run
    assert "3 seeds" in a.get_figure().get_suptitle()


# --------------------------------------------------------------------------- one seed: as before
def _legacy(result):
    """The result as written before seeds: no "seed" / "point" keys, no data["seeds"]."""
    r = copy.deepcopy(result)
    for p in r.points:
        p.pop("seed", None)
        p.pop("point", None)
    r.data.pop("seeds", None)
    r.data.pop("grid_size", None)
    return r


@pytest.mark.parametrize("name,plot", PLOTS, ids=[f"{p.__name__}-{n}" for n, p in PLOTS])
def test_one_seed_draws_without_seed_bars_and_as_a_legacy_result(one, name, plot):
    r = one[name]
    fig = plot(r)
    assert not any(_bars(ax) for ax in fig.axes)
    assert not any("seed 0" in ax.get_title() for ax in fig.axes)
    np.testing.assert_array_equal(_pixels(fig), _pixels(plot(_legacy(r))))
