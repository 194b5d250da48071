"""The paper's experiments, one function per figure, and the book's extra experiments, each
returning a :class:`Result`.

    from kadam_edu import experiments
    result = experiments.reproduce("fig1", scale="cpu")   # or experiments.stability.fig1(...)
    result.save("results/cpu")
    kadam_edu.plots.plot(result)

:data:`FIGURES` is the one registry of them: the paper's figures (``kind="paper"``: fig1 ... fig12)
and the experiments the book adds (``kind="book"``, with the chapter that uses them:
``level_bounds``, ``noise_sde``, ``noise_batch_scaling``, ``noise_stability``, ``eos``), each
registered under the name its :class:`Result` carries with its run function
(:meth:`Figure.function`), its plot function (:meth:`Figure.plotter`, through which
``kadam_edu.plots.plot`` dispatches), its chapter and its measured cost per scale
(:attr:`Figure.cost`, from :data:`COSTS_FILE`; :func:`estimate` for the gpu and paper scales).
:func:`ordered` sorts names as ``python -m kadam_edu list`` shows them.

Every function takes ``scale`` ("smoke", "cpu", "gpu", "paper" or "auto": "gpu" with CUDA, "cpu"
otherwise; "paper", a cluster job, only when named), ``seed``, ``device``, ``progress`` and keyword
overrides of its preset, all checked before anything runs: an unknown
key is refused with the list of keys, a bad value or a clash between keys with a message that
names them (each preset key has a spec, :class:`~kadam_edu.experiments.common.Presets`); a bad
``seed`` (an int in [0, 2**63 - 1]) or an unavailable ``device`` (where one is used) likewise. The sweeps
(``Figure.sweep``) also take ``shard`` ("I/N", for sweeps split across jobs; join with
:func:`merge`); :func:`reproduce` refuses a shard for any other. The experiments that train
several models of one shape (fig1, fig3, fig9-12, fig2, eos, noise_batch_scaling) take
``population`` ("auto" or a positive int: that many models trained at once as one batched model,
:mod:`kadam_edu.population`; the result does not depend on it, and it is recorded in the
provenance only) and the sweeps ``paired`` (every point with point 0's seed: the same
initialisation and batches). The experiments whose findings a chapter states (the sweeps,
``noise_batch_scaling`` and ``noise_stability``) take ``seeds`` (an int S for the base seeds
0..S-1, or a list of distinct seeds; None: the one seed ``seed``): the run is repeated per base
seed and every point of the Result carries its ``seed`` and ``point`` (its place in the grid),
seed-major (:func:`~kadam_edu.experiments.common.sweep`); ``paired`` is then True unless given
(``eos`` and the noise experiments always pair their runs: :attr:`Figure.always_paired`).

Before a long run each experiment times its first steps on the device in use and prints, once, the
projected wall time of the whole run when that is 30 s or more, progress bars or not ("fig1 at gpu
scale: about 1.3 min on Tesla T4, measured over 10 steps";
:func:`kadam_edu.experiments.common.step_timer`); ``noise_sde`` has no training loop and prints none.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from kadam_edu import validate
from kadam_edu.scale import PRECISIONS, SCALES, float32_precision
from kadam_edu.experiments.estimate import estimate
from kadam_edu.experiments.result import Result, merge, parse_shard, provenance, slurm_shard, write_atomic

__all__ = ["BOOK_SEEDS", "FIGURES", "Figure", "Result", "merge", "reproduce", "get", "parse_shard", "provenance", "slurm_shard",
           "plan", "load_or_reproduce", "RESULTS_ENV", "estimate", "ordered", "costs", "record_costs", "COSTS_FILE",
           "COST_MACHINE"]

KINDS = ("paper", "book")


@dataclass(frozen=True)
class Figure:
    """A reproducible figure: where its run and plot functions live and what it costs at each scale.

    name: the registry key and the ``Result.figure`` of its result; attr: the run function's name
    in ``module`` when it differs from ``name`` (:meth:`function`). kind: "paper" (a figure of
    the paper) or "book" (an experiment the book adds, used in ``chapter``). plot: the name of its
    plot function in ``kadam_edu.plots`` when it differs from ``name`` (:meth:`plotter`). sweep:
    whether it takes ``shard``. :attr:`cost`: its measured wall time per scale (:func:`costs`).
    precision: the float32 arithmetic :func:`reproduce` runs it with on CUDA
    (:data:`kadam_edu.scale.PRECISIONS`): "exact" (TF32 off) wherever a max-update or a norm is
    analysed, "tf32" only where the quantity is a loss or an accuracy. always_paired: its runs
    always share their base seed's initialisation (``paired`` None or True; False is refused).
    """

    name: str
    title: str
    module: str
    sweep: bool
    kind: str = "paper"
    chapter: int | None = None
    attr: str | None = None
    precision: str = "exact"
    plot: str | None = None
    always_paired: bool = False

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {self.precision!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}")

    def function(self):
        """The figure's run function: ``kadam_edu.experiments.<module>.<attr>`` (``attr`` defaults to ``name``)."""
        return getattr(importlib.import_module(f"kadam_edu.experiments.{self.module}"), self.attr or self.name)

    def plotter(self):
        """The figure's plot function: ``kadam_edu.plots.<plot>`` (``plot`` defaults to ``name``);
        it takes the :class:`Result` and returns a matplotlib Figure."""
        return getattr(importlib.import_module("kadam_edu.plots"), self.plot or self.name)

    @property
    def cost(self) -> dict[str, str]:
        """Its wall time per scale as measured by ``benchmarks/figure_costs.py`` ({"smoke": "0.2 s",
        "cpu": "3.5 min"}; {} where not measured), on the machine ``costs()["_machine"]`` names; a copy."""
        return costs().get(self.name, {})

    @property
    def label(self) -> str:
        """"paper", or "book ch N" for the book's extras."""
        return "paper" if self.kind == "paper" else f"book ch{self.chapter}" if self.chapter else "book"

    def takes_shard(self) -> bool:
        """Whether the function has a ``shard`` parameter."""
        return self.takes("shard")

    def takes(self, argument: str) -> bool:
        """Whether the function has a parameter named ``argument`` (``"seeds"``, ``"paired"``, ...)."""
        return argument in inspect.signature(self.function()).parameters


#: The measured wall times (:func:`costs`), written by :func:`record_costs`.
COSTS_FILE = Path(__file__).with_name("costs.json")
#: Where the measured costs come from when :data:`COSTS_FILE` does not say (no ``"_machine"``).
#: Paired seeds the book runs each experiment behind a stated finding with, per scale: enough to say
#: in how many seeds a claim holds (at least 3 at cpu scale, :mod:`kadam_edu.experiments.analysis`);
#: the cluster's paper scale runs App. H's single configuration once.
BOOK_SEEDS = {"smoke": 3, "cpu": 3, "gpu": 3, "paper": 1}

COST_MACHINE = "2 CPU cores (the project's CI machine); gpu and paper scales: estimated for one T4"

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
        Figure("fig2", "k-Adam on CIFAR-10: test accuracy against k and strategy", "kadam_cifar", True,
               precision="tf32"),  # its quantity is the test accuracy
        # the book's extras, in chapter order
        Figure("level_bounds", "App. T: each k-Adam level's max-update against its own bound, every strategy",
               "level_bounds", False, kind="book", chapter=4),
        Figure("noise_sde", "Adam / RMSprop SDEs against the discrete algorithms on a noisy quadratic",
               "noise", False, kind="book", chapter=5, attr="sde_vs_discrete"),
        Figure("noise_batch_scaling", "Batch size kappa*B: square-root rule against linear rule (char GPT)",
               "noise", False, kind="book", chapter=5, attr="batch_scaling", always_paired=True),
        Figure("noise_stability", "A B+ point under the square-root rule: max-update growth against both laws",
               "noise", False, kind="book", chapter=5, attr="scaling_stability", always_paired=True),
        Figure("eos", "Adam at the edge of stability: preconditioned sharpness against (2 + 2 gamma) / ((1 - gamma) lr)",
               "edge_of_stability", True, kind="book", chapter=6, always_paired=True),
    ]
}


def get(name: str):
    """The experiment function of figure ``name``."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose one of {ordered(FIGURES)}")
    return FIGURES[name].function()


_REGISTERED = {name: i for i, name in enumerate(FIGURES)}


def ordered(names) -> list[str]:
    """``names`` (any strings; an iterable, e.g. :data:`FIGURES`) as a new list in the order
    ``python -m kadam_edu list`` shows them: the paper's figures in numeric order, then the
    book's extras in chapter order (registration order within a chapter), then any other name
    alphabetically."""
    return sorted(names, key=_order)


def _order(name: str) -> tuple:
    """The sort key of :func:`ordered`."""
    f = FIGURES.get(name)
    if (f is None or f.kind == "paper") and name[:3] == "fig" and name[3:].isdigit():
        return (0, int(name[3:]), 0, name)
    if f is not None and f.kind == "book":
        return (1, f.chapter if f.chapter is not None else 10**6, _REGISTERED[name], name)
    return (2, 0, 0, name)


@functools.lru_cache(maxsize=None)
def _read_costs(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def costs() -> dict:
    """The measured wall times, as :data:`COSTS_FILE` records them (read once, a copy each call):
    ``{"_machine": the machine they were measured on, figure: {scale: wall time as text}}``;
    {} without the file. The gpu and paper scales are estimated instead: :func:`estimate`."""
    return copy.deepcopy(_read_costs(COSTS_FILE))


def record_costs(measured: dict, *, machine: str) -> Path:
    """Merge ``measured`` ({figure: {scale: wall time as text, e.g. "3.5 min"}}) into
    :data:`COSTS_FILE`, written at once (:func:`~kadam_edu.experiments.result.write_atomic`), and
    return its path. ``machine`` (text) becomes its ``"_machine"`` unless the one recorded starts
    with it (the notes recorded for the same machine stay). Every name, scale and value is
    checked before anything is written."""
    measured = validate.Dict("{figure: {scale: wall time}}")("measured", measured)
    texts = [("machine", machine)]
    for name, by_scale in measured.items():
        if name not in FIGURES:
            raise ValueError(f"unknown figure {name!r}; choose one of {ordered(FIGURES)}")
        for scale, text in validate.Dict("{scale: wall time}")(f"costs of {name}", by_scale).items():
            validate.choice("scale", scale, SCALES)
            texts.append((f"cost of {name} at scale {scale}", text))
    for what, text in texts:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{what} must be text that is not blank (a str); got {text!r}")
    table = costs()
    if not table.get("_machine", "").startswith(machine):
        table["_machine"] = machine
    for name, by_scale in measured.items():
        table.setdefault(name, {}).update(by_scale)
    write_atomic(COSTS_FILE, (json.dumps(table, indent=1, sort_keys=True) + "\n").encode())
    _read_costs.cache_clear()
    return COSTS_FILE


def _population(fn, kwargs: dict) -> dict:
    """``kwargs`` with ``population`` checked ("auto" or a positive int), and dropped for a function
    that trains one model at a time (it has no ``population`` parameter; the result is the same)."""
    from kadam_edu.experiments.common import check_population

    if "population" not in kwargs:
        return kwargs
    check_population(kwargs["population"])
    if "population" in inspect.signature(fn).parameters:
        return kwargs
    return {k: v for k, v in kwargs.items() if k != "population"}


def _seeds(name: str, kwargs: dict) -> tuple[dict, list[int], bool | None]:
    """``kwargs`` with ``seed``, ``seeds`` and ``paired`` checked, and ``seeds`` / ``paired`` dropped
    where None for an experiment that does not take them (any other value is refused there);
    returns it with the base seeds and ``paired`` resolved (None for an experiment without it)."""
    from kadam_edu.experiments.common import check_paired, check_seeds

    figure, seed = FIGURES[name], validate.seed("seed", kwargs.get("seed", 0))
    for argument, what in (("seeds", "seeds: it runs once, with seed"), ("paired", "paired: it has no runs to pair")):
        if argument in kwargs and not figure.takes(argument):
            if kwargs[argument] is not None:
                takes = [n for n in ordered(FIGURES) if FIGURES[n].takes(argument)]
                raise ValueError(f"{name} takes no {what}; got {argument}={kwargs[argument]!r} (the experiments that "
                                 f"take {argument}: {', '.join(takes)})")
            kwargs = {k: v for k, v in kwargs.items() if k != argument}
    seeds = check_seeds(kwargs.get("seeds"), seed)
    paired = check_paired(kwargs.get("paired"), seeds, always=figure.always_paired, figure=name) \
        if figure.takes("paired") else None
    return kwargs, seeds, paired


def reproduce(name: str, scale="auto", **kwargs) -> Result:
    """Run figure ``name`` at ``scale`` (keyword arguments go to its function).

    ``shard=None`` is dropped for a function without a ``shard`` parameter; any other shard of
    a figure that is not a sweep is refused with a ValueError. ``population`` ("auto" or a
    positive int: models trained at once) goes to the experiments that train several models of
    one shape and is dropped for the others; ``seeds`` and ``paired`` go to the experiments that
    take them and, when None, are dropped for the others. An unknown name, a bad ``seed`` (an
    int in [0, 2**63 - 1]), bad ``seeds`` (an int S >= 1 or a list of distinct seeds; not with a
    ``seed`` other than 0) or ``paired``, a bad ``population`` and bad settings are refused
    before anything runs.
    """
    if not isinstance(name, str):
        raise ValueError(f"unknown figure {name!r}; choose one of {ordered(FIGURES)}")
    fn = get(name)
    figure = FIGURES[name]
    kwargs = _population(fn, kwargs)
    kwargs, _, _ = _seeds(name, kwargs)
    if "shard" in kwargs:
        if kwargs["shard"] is not None and not figure.sweep:
            raise ValueError(f"{name} is not a sweep: it runs as one job; shard must be None, got {kwargs['shard']!r} "
                             f"(the sweeps: {[n for n in ordered(FIGURES) if FIGURES[n].sweep]})")
        if kwargs["shard"] is None and not figure.takes_shard():
            kwargs = {k: v for k, v in kwargs.items() if k != "shard"}
    with float32_precision(figure.precision):
        return fn(scale, **kwargs)


def plan(name: str, scale="auto", **kwargs) -> dict:
    """What ``reproduce(name, scale, **kwargs)`` would run, every argument checked as it checks them;
    nothing runs and nothing is loaded.

    Returns ``{"figure", "scale" (resolved), "config" (the preset with the overrides, checked),
    "seed" (the first base seed, as the provenance records it), "seeds" (the base seeds: [seed]
    unless ``seeds`` is given), "paired" (resolved; None for an experiment without it), "shard"
    ((I, N), resolved from the Slurm array for "auto", or None), "run"}``, where ``run`` holds
    the other keyword arguments the figure's function takes (``device``, ``progress``,
    ``population``, ...) as given. Keyword arguments that the function does not name are preset
    overrides, except ``population``, ``seeds`` and ``paired``, checked and dropped as
    :func:`reproduce` drops them.
    """
    from kadam_edu.experiments.common import PRESETS, settings_for

    if not isinstance(name, str):
        raise ValueError(f"unknown figure {name!r}; choose one of {ordered(FIGURES)}")
    fn = get(name)
    kwargs = _population(fn, kwargs)
    kwargs, seeds, paired = _seeds(name, kwargs)
    params = inspect.signature(fn).parameters
    named = {k for k, p in params.items() if k != "scale" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    shard = kwargs.get("shard")
    if shard is not None and not FIGURES[name].sweep:
        raise ValueError(f"{name} is not a sweep: it runs as one job; shard must be None, got {shard!r} "
                         f"(the sweeps: {[n for n in ordered(FIGURES) if FIGURES[n].sweep]})")
    shard = parse_shard(shard)
    own = {"seed", "seeds", "paired", "shard"}
    overrides = {k: v for k, v in kwargs.items() if k not in named | own}  # shard=None: any figure
    scale, config = settings_for(PRESETS[name], scale, overrides)
    run = {k: v for k, v in kwargs.items() if k in named and k not in own}
    return {"figure": name, "scale": scale, "config": config, "seed": seeds[0], "seeds": seeds, "paired": paired,
            "shard": shard, "run": run}


#: The environment variable naming the directory of merged paper-scale results, one per figure:
#: ``$KADAM_RESULTS/<figure>/<figure>.json`` (what ``merge ... --out $KADAM_RESULTS/<figure>`` writes).
RESULTS_ENV = "KADAM_RESULTS"

#: Keyword arguments that change how a result is computed, not what it is: a stored one serves any.
_HOW = ("device", "progress", "population")


def _as_json(value):
    from kadam_edu.experiments.result import _jsonable

    return json.loads(json.dumps(_jsonable(value)))


def _stored_difference(stored: Result, asked: dict) -> str | None:
    """How ``stored`` differs from the run :func:`plan` describes (``asked``): the first of scale,
    seed, seeds, shard, paired, the other arguments the run names (``run``, except :data:`_HOW`)
    and config keys."""
    from kadam_edu.experiments.result import _MISSING, _first_difference

    seeds = stored.data.get("seeds", [stored.provenance.get("seed")])  # a result from before seeds: its seed
    pairs = [("scale", stored.scale, asked["scale"]),
             ("seed", stored.provenance.get("seed"), asked["seed"]),
             ("seeds", seeds, asked["seeds"]),
             ("shard", stored.provenance.get("shard"), _as_json(asked["shard"]))]
    if asked["paired"] is not None:  # a sweep from before paired was recorded: unpaired
        default = FIGURES[stored.figure].always_paired or len(seeds) > 1
        pairs.append(("paired", stored.provenance.get("paired", stored.data.get("paired", default)), asked["paired"]))
    pairs += [(k, stored.provenance.get(k, _MISSING), _as_json(v)) for k, v in sorted(asked["run"].items())
              if k not in _HOW]
    for what, there, here in pairs:
        if there != here:
            hint = " (one shard of the sweep: store the shards' merge, python -m kadam_edu merge SHARDS... --out " \
                   "DIR)" if what == "shard" and here is None else ""
            return f"{what} is {there!r} in the stored result but {here!r} here{hint}"
    diff = _first_difference(stored.config, _as_json(asked["config"]))
    if diff is not None:
        key, there, here = diff
        return f"config key {key!r} is {there!r} in the stored result but {here!r} here"
    return None


def load_or_reproduce(name: str, scale="auto", **kwargs) -> Result:
    """Figure ``name``: the merged paper-scale result stored in ``$KADAM_RESULTS`` when the scale
    resolves to "paper" and one is there, else ``reproduce(name, scale, **kwargs)``; prints which.

    The stored result is ``$KADAM_RESULTS/<name>/<name>.json`` (the layout ``python -m kadam_edu
    merge ... --out $KADAM_RESULTS/<name>`` writes), loaded by :meth:`Result.load` (its npz checked
    by sha256). It must be what was asked: scale "paper", the same seed and base seeds
    (``seeds``), the same ``paired``, the whole sweep (shard None), and the paper preset with
    the same overrides, key by key; otherwise ValueError naming
    the first key that differs (never a silent substitute). ``device``, ``progress`` and
    ``population`` do not matter. Arguments are checked (:func:`plan`) and ``$KADAM_RESULTS``
    must be a directory when set and used, before anything is loaded or run.
    """
    asked = plan(name, scale, **kwargs)
    root = os.environ.get(RESULTS_ENV, "").strip()
    if not root:
        reason = f"{RESULTS_ENV} is not set"
    elif asked["scale"] != "paper":
        reason = f"{RESULTS_ENV} serves the paper scale only; this is scale {asked['scale']}"
    elif not Path(root).is_dir():
        raise ValueError(f"{RESULTS_ENV}={root} is not a directory: point it at the directory that holds "
                         f"<figure>/<figure>.json (the merge --out of each figure), or unset it to compute")
    else:
        stored_path = Path(root) / name / f"{name}.json"
        if stored_path.is_file():
            stored = Result.load(stored_path, figure=name)
            diff = _stored_difference(stored, asked)
            if diff is not None:
                raise ValueError(f"{name}: the stored result {stored_path} is not what was asked: {diff}. Point "
                                 f"{RESULTS_ENV} at a matching result, ask for its settings, or unset "
                                 f"{RESULTS_ENV} to compute it")
            prov = stored.provenance
            print(f"{name}: loaded the {'merged ' if prov.get('merged_from') else ''}paper-scale result from "
                  f"{stored_path.parent} (created {prov.get('created', '?')}, git {prov.get('git_commit') or '?'})")
            return stored
        reason = f"no {name}/{name}.json in {RESULTS_ENV}={root}"
    start = time.perf_counter()
    result = reproduce(name, scale, **kwargs)
    print(f"{name}: computed at scale {asked['scale']} in {time.perf_counter() - start:.0f} s ({reason})")
    return result
