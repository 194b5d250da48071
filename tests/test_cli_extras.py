"""The book's extra experiments in the registry and the CLI: list, reproduce at smoke scale, shards."""

import json
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from kadam_edu import experiments, plots
from kadam_edu.__main__ import main
from kadam_edu.experiments import FIGURES, Result, merge

PAPER = ["fig1", "fig2", "fig3", "fig4", "fig5", "fig7", "fig9", "fig10", "fig11", "fig12"]
BOOK = ["level_bounds", "noise_sde", "noise_batch_scaling", "noise_stability", "eos"]  # chapter order
NOT_SWEEPS = [n for n in BOOK if not FIGURES[n].sweep]


def test_registry_holds_paper_figures_then_book_extras_in_chapter_order():
    assert sorted(FIGURES, key=experiments._order) == PAPER + BOOK
    assert [FIGURES[n].kind for n in PAPER] == ["paper"] * len(PAPER)
    assert [(FIGURES[n].kind, FIGURES[n].chapter) for n in BOOK] == [("book", 4), ("book", 5), ("book", 5),
                                                                     ("book", 5), ("book", 6)]
    for name, f in FIGURES.items():
        assert name in plots.PLOTTERS, name  # every registered name has a plot under its result name
        assert callable(f.function())
        if f.sweep:
            assert f.takes_shard(), name
    assert FIGURES["eos"].sweep and not any(FIGURES[n].sweep for n in NOT_SWEEPS)


def test_order_takes_any_name():
    names = ["zzz", "eos", "fig10", "fig2", "noise_sde", "fig", "figX", "level_bounds", "fig6"]
    assert sorted(names, key=experiments._order) == ["fig2", "fig6", "fig10", "level_bounds", "noise_sde", "eos",
                                                     "fig", "figX", "zzz"]


def test_list_shows_every_name_with_its_kind_and_measured_costs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.split() and line.split()[0] in FIGURES}
    assert set(rows) == set(FIGURES)
    assert [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in FIGURES] == PAPER + BOOK
    for name in PAPER:
        assert rows[name].split()[1] == "paper"
    for name in BOOK:
        assert rows[name].split()[1:3] == ["book", f"ch{FIGURES[name].chapter}"]
    costs = json.loads((Path(experiments.__file__).parent / "costs.json").read_text())
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
