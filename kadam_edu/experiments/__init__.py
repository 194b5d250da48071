"""The paper's experiments, one function per figure, each returning a :class:`Result`.

    from kadam_edu import experiments
    result = experiments.reproduce("fig1", scale="cpu")   # or experiments.stability.fig1(...)
    result.save("results/cpu")
    kadam_edu.plots.plot(result)

Every function takes ``scale`` ("smoke", "cpu", "paper" or "auto"), ``seed``, ``device``,
``shard`` ("I/N", for sweeps split across jobs; join with :func:`merge`), ``progress`` and
keyword overrides of its preset (an unknown key is refused, and the message lists the keys).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from kadam_edu.experiments.result import Result, merge, parse_shard, provenance

__all__ = ["FIGURES", "Figure", "Result", "merge", "reproduce", "get", "parse_shard", "provenance"]


@dataclass(frozen=True)
class Figure:
    """A reproducible figure: where its function lives and what it costs at each scale.

    cost: measured wall time per scale on the machine named in ``cost_machine`` (the paper
    scale is an estimate unless a GPU run was measured).
    """

    name: str
    title: str
    module: str
    sweep: bool
    cost: dict = field(default_factory=dict)

    def function(self):
        return getattr(importlib.import_module(f"kadam_edu.experiments.{self.module}"), self.name)


COST_MACHINE = "2 CPU cores (the project's CI machine); paper scale: estimated for one GPU"

FIGURES: dict[str, Figure] = {
    f.name: f
    for f in [
        Figure("fig1", "Max-update along the normal curve through (0.999, 0.9), slopes vs. both laws", "stability", True),
        Figure("fig3", "Max-update on the boundary B0 (C = 0)", "stability", True),
        Figure("fig4", "Cosine similarity of query/key weights with past gradients, qk-norm on/off", "scale_invariance", False),
        Figure("fig5", "Coarse-grained v_W (Assumption 2) against the real one", "scale_invariance", False),
        Figure("fig7", "Eq. 4 ODE against discrete Adam; Eq. 12 against ||W||^2", "scale_invariance", False),
        Figure("fig9", "Test loss along the normal curve through (0.999, 0.9)", "stability", True),
        Figure("fig10", "Test loss along the normal curve through (0.95, 0.9)", "stability", True),
        Figure("fig11", "Test loss along the level curve through (0.999, 0.9)", "stability", True),
        Figure("fig12", "Eq. 15 learning-rate annealing in B-", "stability", True),
        Figure("fig2", "k-Adam on CIFAR-10: test accuracy against k and strategy", "kadam_cifar", True),
    ]
}


def get(name: str):
    """The experiment function of figure ``name``."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose one of {sorted(FIGURES, key=_order)}")
    return FIGURES[name].function()


def _order(name: str) -> int:
    return int(name[3:])


def reproduce(name: str, scale="auto", **kwargs) -> Result:
    """Run figure ``name`` at ``scale`` (keyword arguments go to its function)."""
    return get(name)(scale, **kwargs)
