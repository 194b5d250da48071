"""The paper's experiments, one function per figure, and the book's extra experiments, each
returning a :class:`Result`.

    from kadam_edu import experiments
    result = experiments.reproduce("fig1", scale="cpu")   # or experiments.stability.fig1(...)
    result.save("results/cpu")
    kadam_edu.plots.plot(result)

:data:`FIGURES` holds the paper's figures (``kind="paper"``: fig1 ... fig12) and the experiments
the book adds (``kind="book"``, with the chapter that uses them: ``level_bounds``, ``noise_sde``,
``noise_batch_scaling``, ``noise_stability``, ``eos``); each is registered under the name its
:class:`Result` carries, which is also the key of its plot in ``kadam_edu.plots.PLOTTERS``.

Every function takes ``scale`` ("smoke", "cpu", "paper" or "auto"), ``seed``, ``device``,
``progress`` and keyword overrides of its preset, all checked before anything runs: an unknown
key is refused with the list of keys, a bad value or a clash between keys with a message that
names them (each preset key has a spec, :class:`~kadam_edu.experiments.common.Presets`); a bad
``seed`` (an int in [0, 2**63 - 1]) or an unavailable ``device`` (where one is used) likewise. The sweeps
(``Figure.sweep``) also take ``shard`` ("I/N", for sweeps split across jobs; join with
:func:`merge`); :func:`reproduce` refuses a shard for any other.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field

from kadam_edu import validate
from kadam_edu.experiments.result import Result, merge, parse_shard, provenance

__all__ = ["FIGURES", "Figure", "Result", "merge", "reproduce", "get", "parse_shard", "provenance"]

KINDS = ("paper", "book")


@dataclass(frozen=True)
class Figure:
    """A reproducible figure: where its function lives and what it costs at each scale.

    name: the registry key, the ``Result.figure`` of its result and its plot's key in
    ``kadam_edu.plots.PLOTTERS``; attr: the function's name in ``module`` when it differs from
    ``name``. kind: "paper" (a figure of the paper) or "book" (an experiment the book adds, used
    in ``chapter``). sweep: whether it takes ``shard``. cost: measured wall time per scale on the
    machine named in ``cost_machine`` (the paper scale is an estimate unless a GPU run was measured).
    """

    name: str
    title: str
    module: str
    sweep: bool
    cost: dict = field(default_factory=dict)
    kind: str = "paper"
    chapter: int | None = None
    attr: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}")

    def function(self):
        return getattr(importlib.import_module(f"kadam_edu.experiments.{self.module}"), self.attr or self.name)

    @property
    def label(self) -> str:
        """"paper", or "book ch N" for the book's extras."""
        return "paper" if self.kind == "paper" else f"book ch{self.chapter}" if self.chapter else "book"

    def takes_shard(self) -> bool:
        """Whether the function has a ``shard`` parameter."""
        return "shard" in inspect.signature(self.function()).parameters


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
        # the book's extras, in chapter order
        Figure("level_bounds", "App. T: each k-Adam level's max-update against its own bound, every strategy",
               "level_bounds", False, kind="book", chapter=4),
        Figure("noise_sde", "Adam / RMSprop SDEs against the discrete algorithms on a noisy quadratic",
               "noise", False, kind="book", chapter=5, attr="sde_vs_discrete"),
        Figure("noise_batch_scaling", "Batch size kappa*B: square-root rule against linear rule (char GPT)",
               "noise", False, kind="book", chapter=5, attr="batch_scaling"),
        Figure("noise_stability", "A B+ point under the square-root rule: max-update growth against both laws",
               "noise", False, kind="book", chapter=5, attr="scaling_stability"),
        Figure("eos", "Adam at the edge of stability: preconditioned sharpness against (2 + 2 gamma) / ((1 - gamma) lr)",
               "edge_of_stability", True, kind="book", chapter=6),
    ]
}


def get(name: str):
    """The experiment function of figure ``name``."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose one of {sorted(FIGURES, key=_order)}")
    return FIGURES[name].function()


_REGISTERED = {name: i for i, name in enumerate(FIGURES)}


def _order(name: str) -> tuple:
    """Sort key: the paper's figures in numeric order, then the book's extras in chapter order
    (registration order within a chapter), then any other name alphabetically."""
    f = FIGURES.get(name)
    if (f is None or f.kind == "paper") and name[:3] == "fig" and name[3:].isdigit():
        return (0, int(name[3:]), 0, name)
    if f is not None and f.kind == "book":
        return (1, f.chapter if f.chapter is not None else 10**6, _REGISTERED[name], name)
    return (2, 0, 0, name)


def reproduce(name: str, scale="auto", **kwargs) -> Result:
    """Run figure ``name`` at ``scale`` (keyword arguments go to its function).

    ``shard=None`` is dropped for a function without a ``shard`` parameter; any other shard of
    a figure that is not a sweep is refused with a ValueError. An unknown name, a bad ``seed``
    (an int in [0, 2**63 - 1]) and bad settings are refused before anything runs.
    """
    if not isinstance(name, str):
        raise ValueError(f"unknown figure {name!r}; choose one of {sorted(FIGURES, key=_order)}")
    fn = get(name)
    figure = FIGURES[name]
    if "seed" in kwargs:
        validate.seed("seed", kwargs["seed"])
    if "shard" in kwargs:
        if kwargs["shard"] is not None and not figure.sweep:
            raise ValueError(f"{name} is not a sweep: it runs as one job; shard must be None, got {kwargs['shard']!r} "
                             f"(the sweeps: {[n for n in sorted(FIGURES, key=_order) if FIGURES[n].sweep]})")
        if kwargs["shard"] is None and not figure.takes_shard():
            kwargs = {k: v for k, v in kwargs.items() if k != "shard"}
    return fn(scale, **kwargs)
