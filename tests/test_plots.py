"""kadam_edu.plots as a package: plots.plot dispatches through the registry, and every public name
of the parts is re-exported."""

import importlib

import pytest
from matplotlib.figure import Figure

from kadam_edu import experiments, plots
from kadam_edu.experiments import FIGURES
from kadam_edu.experiments.result import Result

PARTS = ["common", "stability", "scale_invariance", "kadam", "noise", "edge_of_stability", "boundary"]


def test_plot_draws_with_the_function_the_registry_entry_names(monkeypatch):
    drawn = []

    def stand_in(result):
        drawn.append(result)
        return Figure()

    monkeypatch.setattr(plots, "a_stand_in_plot", stand_in, raising=False)
    entry = experiments.Figure("a_book_extra", "a registry entry for this test", "stability", False, kind="book",
                               chapter=2, plot="a_stand_in_plot")
    monkeypatch.setitem(FIGURES, "a_book_extra", entry)
    result = Result(figure="a_book_extra", scale="smoke", config={})
    assert isinstance(plots.plot(result), Figure)
    assert drawn == [result]


def test_plot_refuses_a_figure_the_registry_does_not_hold():
    with pytest.raises(ValueError, match=r"no plot for 'fig6'; plots exist for \[") as err:
        plots.plot(Result(figure="fig6", scale="smoke", config={}))
    assert all(repr(name) in str(err.value) for name in FIGURES)


@pytest.mark.parametrize("part", PARTS)
def test_every_part_is_re_exported(part):
    module = importlib.import_module(f"kadam_edu.plots.{part}")
    names = [n for n in module.__all__ if part != "common" or n == "region_map"]
    for name in names:
        assert getattr(plots, name) is getattr(module, name), name
        assert name in plots.__all__, name
    assert len(module.__all__) == len(set(module.__all__))
