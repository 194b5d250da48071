"""The book's extra experiments in the registry and the CLI: list, reproduce at smoke scale, shards."""

import json

import pytest
from matplotlib.figure import Figure

from kadam_edu import experiments, plots
from kadam_edu.__main__ import main
from kadam_edu.experiments import FIGURES, Result, merge
from kadam_edu.scale import format_seconds

PAPER = ["fig1", "fig2", "fig3", "fig4", "fig5", "fig7", "fig9", "fig10", "fig11", "fig12"]
BOOK = ["level_bounds", "noise_sde", "noise_batch_scaling", "noise_stability", "eos"]  # chapter order
NOT_SWEEPS = [n for n in BOOK if not FIGURES[n].sweep]


def test_registry_holds_paper_figures_then_book_extras_in_chapter_order():
    assert experiments.ordered(FIGURES) == PAPER + BOOK
    assert [FIGURES[n].kind for n in PAPER] == ["paper"] * len(PAPER)
    assert [(FIGURES[n].kind, FIGURES[n].chapter) for n in BOOK] == [("book", 4), ("book", 5), ("book", 5),
                                                                     ("book", 5), ("book", 6)]
    for name, f in FIGURES.items():
        plot = f.plotter()  # every registered name has its plot function in kadam_edu.plots
        assert callable(plot) and plot is getattr(plots, f.plot or name), name
        assert plot.__module__ == "kadam_edu.plots" or plot.__module__.startswith("kadam_edu.plots."), name
        assert callable(f.function())
        if f.sweep:
            assert f.takes_shard(), name
    assert FIGURES["eos"].sweep and not any(FIGURES[n].sweep for n in NOT_SWEEPS)


def test_order_takes_any_name():
    names = ["zzz", "eos", "fig10", "fig2", "noise_sde", "fig", "figX", "level_bounds", "fig6"]
    assert experiments.ordered(names) == ["fig2", "fig6", "fig10", "level_bounds", "noise_sde", "eos",
                                          "fig", "figX", "zzz"]
    assert names[0] == "zzz"  # ordered returns a new list


def _list_rows(capsys) -> tuple[dict, list, str]:
    """`python -m kadam_edu list`: {name: row} of the registered names, their order, the whole output."""
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    named = [line for line in out.splitlines()[1:] if line.split() and line.split()[0] in FIGURES]
    return {line.split()[0]: line for line in named}, [line.split()[0] for line in named], out


def test_list_shows_the_registry_entry_by_entry(capsys):
    rows, order, _ = _list_rows(capsys)
    assert order == experiments.ordered(FIGURES)  # every registered name, once, in the registry's order
    for name, f in FIGURES.items():
        cost = f.cost
        assert cost == experiments.costs().get(name, {}) and {"smoke", "cpu"} <= set(cost), name
        e = experiments.estimate(name, "gpu", "t4")
        gpu = format_seconds(e["seconds"]) + ("*" if e["basis"] != "estimated" else "")
        assert rows[name] == (f"{name:{len(max(FIGURES, key=len))}s}  {f.label:9s} {cost['smoke']:>8s} "
                              f"{cost['cpu']:>8s} {gpu:>13s}  {'yes' if f.sweep else 'no ':5s}  {f.title}"), name


def test_costs_are_read_from_one_file_by_the_registry_and_the_cli(monkeypatch, tmp_path, capsys):
    assert experiments.costs() == json.loads(experiments.COSTS_FILE.read_text())
    table = {"_machine": "a test machine", "fig3": {"smoke": "9.9 s"}, "eos": {"smoke": "1.0 s", "cpu": "7.0 min"}}
    (tmp_path / "costs.json").write_text(json.dumps(table))
    monkeypatch.setattr(experiments, "COSTS_FILE", tmp_path / "costs.json")
    assert FIGURES["fig3"].cost == {"smoke": "9.9 s"} and FIGURES["fig1"].cost == {}
    FIGURES["eos"].cost["cpu"] = "changed"  # a copy: the table stays as read
    assert experiments.costs() == table
    rows, _, out = _list_rows(capsys)
    assert f"{'9.9 s':>8s} {'?':>8s} " in rows["fig3"] and f"{'?':>8s} {'?':>8s} " in rows["fig1"]
    assert f"{'1.0 s':>8s} {'7.0 min':>8s} " in rows["eos"]
    assert "smoke, cpu: wall time measured on a test machine" in out
    monkeypatch.setattr(experiments, "COSTS_FILE", tmp_path / "none.json")  # no table: nothing measured
    assert experiments.costs() == {} and FIGURES["fig3"].cost == {}
    _, _, out = _list_rows(capsys)
    assert f"smoke, cpu: wall time measured on {experiments.COST_MACHINE}" in out


def test_list_shows_every_name_with_its_kind_and_measured_costs(capsys):
    rows, order, _ = _list_rows(capsys)
    assert set(rows) == set(FIGURES)
    assert order == PAPER + BOOK
    for name in PAPER:
        assert rows[name].split()[1] == "paper"
    for name in BOOK:
        assert rows[name].split()[1:3] == ["book", f"ch{FIGURES[name].chapter}"]
    costs = experiments.costs()
    for name in BOOK:  # measured with benchmarks/figure_costs.py, shown by `list`
        assert {"smoke", "cpu"} <= set(costs[name]), name
        assert costs[name]["smoke"] in rows[name] and costs[name]["cpu"] in rows[name]


@pytest.mark.parametrize("name", BOOK)
def test_cli_reproduces_each_book_extra_at_smoke_scale(name, tmp_path, capsys):
    assert main(["reproduce", name, "--scale", "smoke", "--out", str(tmp_path), "--quiet"]) == 0, capsys.readouterr().err
    assert (tmp_path / f"{name}.png").stat().st_size > 0
    back = Result.load(tmp_path, figure=name)
    assert back.figure == name and back.scale == "smoke"
    assert back.points or back.data  # a result with content, not an empty shell
    assert isinstance(plots.plot(back), Figure)


@pytest.mark.parametrize("name", NOT_SWEEPS + ["fig4"])
def test_shard_on_a_non_sweep_is_a_clear_error(name, tmp_path, capsys):
    assert main(["reproduce", name, "--scale", "smoke", "--shard", "0/2", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is not a sweep" in err and "Traceback" not in err and "TypeError" not in err
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="is not a sweep"):
        experiments.reproduce(name, "smoke", shard="1/2", progress=False)


def test_eos_shards_merge_to_the_whole(tmp_path, capsys):
    for shard in ("0/2", "1/2"):
        assert main(["reproduce", "eos", "--scale", "smoke", "--shard", shard, "--out", str(tmp_path / shard[0]),
                     "--quiet", "--no-plot"]) == 0, capsys.readouterr().err
    merged = merge([Result.load(tmp_path / "0"), Result.load(tmp_path / "1")])
    cfg = merged.config
    size = len(cfg["lrs"]) + len(cfg["minibatch_lrs"])
    assert [p["index"] for p in merged.points] == list(range(size))
    assert merged.data["sweep_size"] == size  # each shard says how large the whole sweep is
    with pytest.raises(ValueError, match="missing"):  # so one shard alone is no whole
        merge([Result.load(tmp_path / "0")])
    assert isinstance(plots.plot(merged), Figure)
