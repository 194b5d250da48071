"""Shared pieces of the experiments: presets and their checks, the char-GPT run, sweeps, shards,
and the projection of an experiment's wall time from its first steps."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from kadam_edu import bounds, validate
from kadam_edu.data import get_batch, load_shakespeare
from kadam_edu.experiments.result import Result, parse_shard, provenance
from kadam_edu.models import GPT, GPT_PRESETS, CNNConfig, GPTConfig, gpt_config
from kadam_edu.optim import KAdam
from kadam_edu.population import PopulationGPT, init_population
from kadam_edu.scale import StepTimer, resolve_scale, seed_everything, with_overrides
from kadam_edu.train import TrainRecord, train
from kadam_edu.validate import Check, Choice, Dict, Int, Real

__all__ = ["Presets", "PRESETS", "CHAR_SPEC", "CHAR_RUNS", "REFERENCE", "settings_for", "with_overrides",
           "char_gpt_run", "char_gpt_population_run", "sweep", "point_summary", "point_seed", "run_seed", "log_slope",
           "finite_log_slope", "check_model_overrides", "check_population", "population_size", "member_bytes", "chunks",
           "shard_chunks", "stacked_batches", "step_timer", "AUTO_MEMBERS", "AUTO_MEMBERS_CPU", "check_seeds",
           "check_paired", "Member", "sweep_members", "seed_prefix", "arrays_of_seed", "MAX_SEED_COUNT"]

#: Every experiment's :class:`Presets`, by figure name (filled in as the experiment modules load).
PRESETS: dict[str, Presets] = {}


class Presets(dict):
    """An experiment's settings at each scale (``{scale: {key: value}}``) and the rule for every key.

    spec: ``{key: validate.Check}``; every key of every preset needs one (refused here otherwise);
    ``self.spec`` keeps those of the presets' keys. rules: cross-key constraints, ``rules(config)``
    on a config whose keys have each passed their spec; it raises ValueError naming the keys.
    Registered in :data:`PRESETS` under ``figure``.
    """

    def __init__(self, figure: str, presets: dict[str, dict], *, spec: dict[str, Check],
                 rules: Callable[[dict], None] | None = None):
        keys = {k for preset in presets.values() for k in preset}
        missing = sorted(keys - set(spec))
        if missing:
            raise ValueError(f"{figure}: no spec for {missing}; give every preset key a validate.Check")
        super().__init__(presets)
        self.figure, self.spec, self.rules = figure, {k: spec[k] for k in spec if k in keys}, rules
        PRESETS[figure] = self

    def check(self, config: dict) -> dict:
        """``config`` with every value checked against its spec (and normalized), then the rules."""
        out = {key: self.spec[key](f"{self.figure} setting {key}", value) for key, value in config.items()}
        if self.rules is not None:
            try:
                self.rules(out)
            except ValueError as e:
                raise ValueError(f"{self.figure} settings: {e}") from None
        return out


def settings_for(presets: Presets, scale, overrides: dict) -> tuple[str, dict]:
    """The preset of ``scale`` (resolved) updated with ``overrides``, every value checked.

    An unknown key is refused with the list of keys (:func:`with_overrides`); a value that breaks
    its key's spec, or settings that break a rule between keys, with a ValueError that names
    them. Nothing runs.
    """
    scale = resolve_scale(scale)
    return scale, presets.check(with_overrides(presets[scale], overrides))


def check_model_overrides(config: dict, model_key: str = "model", builder=gpt_config) -> None:
    """Rule: ``model_overrides`` must make a valid model config from the preset ``config[model_key]``."""
    overrides = config["model_overrides"]
    try:
        builder(config[model_key], **overrides)
    except (ValueError, TypeError) as e:
        raise ValueError(f"model_overrides={overrides!r} does not fit model {config[model_key]!r}: {e}") from None


# --------------------------------------------------------------------------- populations
#: Members per population that ``population="auto"`` takes on a CUDA device (fewer where the
#: models would not fit, see :func:`population_size`). An ESTIMATE, not measured until
#: ``benchmarks/sweep_throughput.py`` runs on a GPU: a small model trained alone is launch-bound
#: there, so batching members should pay until the kernels fill the device.
AUTO_MEMBERS = 32

#: Members per population that ``population="auto"`` takes off CUDA, by model. Measured with
#: ``OMP_NUM_THREADS=2 python benchmarks/sweep_throughput.py`` on the project's 2-core CPU
#: machine (idle, torch 2.13.0+cpu), population / sequential member-steps per second: cpu-scale
#: char GPT 0.88x (E=1), 1.55x (4), 1.31x (8), 1.13x (24); cpu-scale CNN 0.97x, 0.84x, 0.54x,
#: 0.47x. So 4 for the GPT, and the CNN one model at a time.
AUTO_MEMBERS_CPU = {"gpt": 4, "cnn": 1}


def check_population(population) -> int | str:
    """``population``: "auto" or a positive int (members trained at once; 1: one model at a time).

    Returns it (an int as a Python int); ValueError naming the argument otherwise.
    """
    if isinstance(population, str) and population == "auto":
        return population
    if isinstance(population, bool) or not isinstance(population, numbers.Integral) or population < 1:
        raise ValueError("population must be a positive int (models trained at once as one batched model; "
                         f"1: one at a time) or 'auto'; got {population!r}")
    return int(population)


def member_bytes(config: GPTConfig | CNNConfig, batch_size: int) -> int:
    """A rough float32 training footprint of one population member, in bytes: its activations
    kept for the backward pass at ``batch_size`` plus six copies of its parameters (weights,
    gradients, two moments, the last finite copy, the update's scratch). An estimate for
    :func:`population_size`, not a measurement.
    """
    if isinstance(config, GPTConfig):  # per token and layer ~18 activations of width n_embd; logits
        C, L, V, T = config.n_embd, config.n_layer, config.vocab_size, config.block_size
        activations = batch_size * T * (18 * C * L + 3 * V)
        params = 12 * L * C * C + (V + T) * C
    else:  # per stage: two convolutions (and BatchNorms) at the stage's side, then the pooled map
        activations, params, c_in, side = 0, 0, 3, 32
        for c in config.widths:
            activations += c * side * side * (2 * (1 + config.batch_norm) + 1)
            params += 9 * (c_in + c) * c
            c_in, side = c, side // 2
        activations *= batch_size
        params += c_in * side * side * config.hidden + config.hidden * config.num_classes
    return 4 * (activations + 6 * params)


def population_size(population, device: torch.device, *, bytes_per_member: int,
                    model: GPTConfig | CNNConfig | None = None) -> int:
    """Members per population: ``population`` when it is an int; for "auto" off CUDA
    :data:`AUTO_MEMBERS_CPU` of ``model``'s kind (1 when no model is named), and on CUDA
    :data:`AUTO_MEMBERS`, fewer when that many members of ``bytes_per_member``
    (:func:`member_bytes`) would take more than half of the device's memory."""
    population = check_population(population)
    if population != "auto":
        return population
    if device.type != "cuda":
        if model is None:
            return 1
        return AUTO_MEMBERS_CPU["gpt" if isinstance(model, GPTConfig) else "cnn"]
    budget = torch.cuda.get_device_properties(device).total_memory // 2
    return max(1, min(AUTO_MEMBERS, budget // max(1, bytes_per_member)))


def chunks(indices: Sequence[int], size: int, key: Callable[[int], Hashable] | None = None) -> list[list[int]]:
    """``indices`` cut into populations of at most ``size`` members, in order.

    Indices whose ``key(index)`` differs (models that cannot share a population: another k, another
    batch shape) never share one: each key's indices, in order of its first index, are cut into
    consecutive runs of ``size``.
    """
    groups: dict = {}
    for i in indices:
        groups.setdefault(None if key is None else key(i), []).append(i)
    return [members[j:j + size] for members in groups.values() for j in range(0, len(members), size)]


def shard_chunks(size: int, shard, population: int, key: Callable[[int], Hashable] | None = None, *,
                 seeds: int = 1) -> list[list[int]]:
    """The populations :func:`sweep` trains, in order, for ``shard`` of a sweep of ``size`` grid
    points run once per base seed (``seeds`` of them): the flat indices i = k * size + p (seed k,
    point p; :func:`sweep_members`) of the shard (i = I mod N for shard "I/N" or (I, N); every one
    for None), cut by :func:`chunks` into populations of at most ``population``. ``key(p)``: of
    the grid point; points of different seeds may share a population."""
    shard = parse_shard(shard)
    mine = [i for i in range(size * seeds) if shard is None or i % shard[1] == shard[0]]
    return chunks(mine, population, None if key is None else (lambda i: key(i % size)))


# --------------------------------------------------------------------------- seeds
#: The largest count ``seeds`` may give (seeds 0..S-1): the grid is run once per seed.
MAX_SEED_COUNT = 10_000

_SEEDS_RULE = (f"seeds must be a positive int S <= {MAX_SEED_COUNT} (the seeds 0..S-1), a non-empty list of distinct "
               "seeds (each an int in [0, 2**63 - 1]), or None (the one seed `seed`)")


def check_seeds(seeds, seed: int = 0) -> list[int]:
    """The base seeds an experiment runs: None -> [seed]; an int S >= 1 -> [0, ..., S - 1]; a list
    (or tuple) of distinct seeds (ints in [0, 2**63 - 1]) -> that list.

    ValueError naming ``seeds`` for anything else (0, a negative, a bool, a float, a string, an
    empty list, a seed given twice), and for ``seeds`` given with a ``seed`` other than 0 (the two
    clash: ``seeds`` names the base seeds itself). Checked before any work.
    """
    seed = validate.seed("seed", seed)
    if seeds is None:
        return [seed]
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, (bool, np.bool_)):
        if not 1 <= seeds <= MAX_SEED_COUNT:
            raise ValueError(f"{_SEEDS_RULE}; got {seeds!r}")
        out = list(range(int(seeds)))
    elif isinstance(seeds, (list, tuple)) and seeds:
        try:
            out = [validate.seed("seeds", s) for s in seeds]
        except ValueError:
            raise ValueError(f"{_SEEDS_RULE}; got {seeds!r}") from None
        twice = sorted({s for s in out if out.count(s) > 1})
        if twice:
            raise ValueError(f"{_SEEDS_RULE}; got {seeds!r}: given twice: {', '.join(map(str, twice))}")
    else:
        raise ValueError(f"{_SEEDS_RULE}; got {seeds!r}")
    if seed != 0:
        raise ValueError(f"seed={seed} and seeds={seeds!r} clash: seeds names the base seeds itself; give one of them "
                         f"(seeds=[{seed}, ...] for base seeds from {seed})")
    return out


def check_paired(paired, seeds: Sequence[int], *, always: bool = False, figure: str = "this experiment") -> bool:
    """``paired`` checked and resolved: None -> True with more than one base seed, else False
    (within a seed every grid point then has its own seed, :func:`run_seed`); a bool as given.

    ``always``: the experiment's runs always share their base seed's initialisation (eos, the
    noise experiments): None and True -> True, False refused. ValueError naming ``paired``.
    """
    if paired is None:
        return True if always else len(seeds) > 1
    paired = validate.boolean("paired", paired)
    if always and not paired:
        raise ValueError(f"paired=False: {figure}'s runs always share their base seed's initialisation and batches "
                         "(the comparison across its runs is the experiment); pass paired=None or True")
    return paired


class Member(NamedTuple):
    """One run of a multi-seed sweep: flat ``index`` = k * P + p for the k-th base ``seed`` and grid
    ``point`` p (P points), and ``run_seed``, the seed of its initialisation and batches."""

    index: int
    seed: int
    point: int
    run_seed: int


def sweep_members(size: int, seeds: Sequence[int], paired: bool) -> list[Member]:
    """The runs of a sweep of ``size`` grid points once per base seed, seed-major:
    ``Member(k * size + p, seeds[k], p, run_seed(seeds[k], p, paired))``."""
    return [Member(k * size + p, s, p, run_seed(s, p, paired)) for k, s in enumerate(seeds) for p in range(size)]


def seed_prefix(seed: int, seeds: Sequence[int]) -> str:
    """The prefix of base seed ``seed``'s arrays in a Result of an experiment with named (not
    ``p{i}/``) arrays (noise_batch_scaling, noise_stability): "" for a single seed (the names as
    they always were), else ``"s{seed}/"``."""
    return "" if len(seeds) == 1 else f"s{seed}/"


def arrays_of_seed(result: Result, seed: int) -> dict[str, np.ndarray]:
    """Base seed ``seed``'s arrays of ``result`` under their single-seed names (:func:`seed_prefix`
    removed). A result without ``data["seeds"]`` (written before seeds) is its provenance seed's.
    ValueError naming the seeds the result holds for any other seed."""
    seeds = result.data.get("seeds", [result.provenance.get("seed")])
    if seed not in seeds:
        raise ValueError(f"seed must be one of the result's seeds {seeds}; got {seed!r}")
    head = seed_prefix(seed, seeds)
    return {k[len(head):]: v for k, v in result.arrays.items() if k.startswith(head)}


# --------------------------------------------------------------------------- the projection
def step_timer(figure: str, scale: str, *, steps: int, device, note: str | None = None) -> StepTimer:
    """The :class:`~kadam_edu.scale.StepTimer` of an experiment that takes ``steps`` steps in all
    (every run's and population's, in order; a population's step counts once).

    Hand its :meth:`~kadam_edu.scale.StepTimer.wrap` of each run's batch function to ``train``
    (or call ``tick`` once a step): after the first few steps it prints, once and on stdout, the
    projected wall time ("fig1 at gpu scale: about 4.0 min on Tesla T4, measured over 10 steps")
    when that comes to 30 s or more, progress bars or not; no host synchronisation per step.
    A run shorter than 13 steps is timed over fewer: skip min(2, steps - 2), then up to 10 steps,
    the last timed tick being the start of the last step (a 1-step run is not timed). ``note``:
    added to the line in parentheses (what the projection leaves out). ``steps`` 0 (a shard
    without points) makes a timer that never ticks.
    """
    steps = validate.integer("steps", steps, lo=0)
    skip = min(2, max(0, steps - 2))
    measure = max(1, min(10, steps - 1 - skip))
    out = print if note is None else (lambda line: print(f"{line} ({note})"))
    return StepTimer(figure, scale, steps=max(1, steps), device=device, skip=skip, measure=measure, out=out)


#: (beta, gamma) = (0.999, 0.9): PyTorch's Adam defaults in the paper's notation, App. H's reference point.
REFERENCE = (0.999, 0.9)

#: App. H's char-GPT run (its model, batch 64, lr 1e-3) and the DESIGN's cpu and smoke models, by
#: scale; each experiment adds its own "gpu" run (a larger model, or the cpu one for larger sweeps).
CHAR_RUNS = {
    "paper": dict(model="paper", batch_size=64, lr=1e-3),
    "cpu": dict(model="cpu", batch_size=32, lr=1e-3),
    "smoke": dict(model="smoke", batch_size=8, lr=1e-3),
}

#: Specs of the keys the char-GPT experiments share (paper notation: beta second moment, gamma first).
CHAR_SPEC: dict[str, Check] = {
    "model": Choice(tuple(GPT_PRESETS), "a GPT preset of kadam_edu.models"),
    "model_overrides": Dict("GPTConfig fields"),
    "batch_size": Int(1),
    "lr": Real(0, lo_open=True, meaning="the learning rate"),
    "beta": Real(0, 1, lo_open=True, hi_open=True, meaning="second-moment decay"),
    "gamma": Real(0, 1, hi_open=True, meaning="first-moment decay"),
    "weight_decay": Real(0, meaning="decoupled weight decay"),
    "steps": Int(1),
}


def stacked_batches(tokens: torch.Tensor, generators: Sequence[torch.Generator], *, block_size: int, batch_size: int,
                    device: torch.device) -> Callable[[int], tuple]:
    """A population's batch_fn: step n's (x, y) [E, B, T] stacks member e's ``get_batch`` from
    ``generators[e]`` (so each member sees the batches it sees alone; members that share a
    generator object share its draw, as runs seeded alike draw alike); one shared (x, y) [B, T]
    when every member has the same generator. Drawn on the CPU, moved to ``device`` once."""
    distinct = list(dict.fromkeys(generators))

    def batch(n):
        drawn = {g: get_batch(tokens, block_size=block_size, batch_size=batch_size, generator=g) for g in distinct}
        if len(distinct) == 1:
            x, y = drawn[distinct[0]]
        else:
            x, y = (torch.stack([drawn[g][i] for g in generators]) for i in (0, 1))
        if device.type == "cuda":
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        return x.to(device), y.to(device)

    return batch


@dataclass
class CharTask:
    """The char GPT, its data and an evaluation function, built once per sweep."""

    config: dict
    device: torch.device

    def __post_init__(self):
        self.corpus = load_shakespeare()
        self.gpt = gpt_config(self.config["model"], **self.config.get("model_overrides", {}))

    def batch_fn(self, generator: torch.Generator, split: str = "train") -> Callable[[int], tuple]:
        tokens = self.corpus.train if split == "train" else self.corpus.val
        return lambda n: get_batch(
            tokens, block_size=self.gpt.block_size, batch_size=self.config["batch_size"],
            generator=generator, device=self.device,
        )

    def eval_fn(self, seed: int) -> Callable[[torch.nn.Module], float] | None:
        iters = self.config.get("eval_iters", 0)
        if not iters:
            return None

        def evaluate(model):  # the same validation batches every time
            batches = self.batch_fn(torch.Generator().manual_seed(10_000 + seed), "val")
            return float(np.mean([float(model(*batches(i))[1]) for i in range(iters)]))

        return evaluate

    def population_batch_fn(self, generators: Sequence[torch.Generator], split: str = "train") -> Callable[[int], tuple]:
        """Step n's batch of a population: member e's :meth:`batch_fn` batch from ``generators[e]``
        (:func:`stacked_batches`)."""
        tokens = self.corpus.train if split == "train" else self.corpus.val
        return stacked_batches(tokens, generators, block_size=self.gpt.block_size,
                               batch_size=self.config["batch_size"], device=self.device)

    def population_eval_fn(self, seeds: Sequence[int]) -> Callable[[torch.nn.Module], np.ndarray] | None:
        """:meth:`eval_fn` for a population: member e's mean validation loss on the batches that
        ``eval_fn(seeds[e])`` uses, an array [E] (one host read per evaluation)."""
        iters = self.config.get("eval_iters", 0)
        if not iters:
            return None

        def evaluate(pop):
            gens = {s: torch.Generator().manual_seed(10_000 + s) for s in seeds}
            batches = self.population_batch_fn([gens[s] for s in seeds], "val")
            losses = torch.stack([pop(*batches(i))[1] for i in range(iters)])  # [iters, E]
            return losses.double().mean(0).cpu().numpy()

        return evaluate


def _optimizer_settings(config: dict) -> dict:
    """KAdam's optional settings that a char task's config sets (``weight_decay``, ``eps``); KAdam's
    defaults (no decay, Algorithm 1's eps = 1e-30) for those it leaves out."""
    return {key: config[key] for key in ("weight_decay", "eps") if key in config}


def char_gpt_run(
    task: CharTask,
    *,
    beta: float,
    gamma: float,
    seed: int,
    eval_fn: Callable[[torch.nn.Module], float] | None = None,
    schedule=None,
    watch_heads: bool = False,
    record_values: bool = False,
    record_grads: bool = False,
    progress=None,
    desc=None,
    timer: StepTimer | None = None,
) -> tuple[GPT, TrainRecord]:
    """Train the char GPT with Adam at (beta, gamma) (paper notation) for ``config['steps']`` steps.

    From ``task.config``: ``lr``, ``batch_size``, ``steps``, and where given ``weight_decay``,
    ``eps`` (KAdam's defaults otherwise), ``eval_every``. ``eval_fn(model)``: the evaluation
    every ``eval_every`` steps (default: ``task.eval_fn(seed)``, ``eval_iters`` validation
    batches). ``timer``: a :func:`step_timer` that ticks on every batch drawn."""
    gen = seed_everything(seed)
    batch_fn = task.batch_fn(gen) if timer is None else timer.wrap(task.batch_fn(gen))
    model = GPT(task.gpt).to(task.device)
    opt = KAdam(model.parameters(), lr=task.config["lr"], betas=(gamma, beta), **_optimizer_settings(task.config))
    watch = {h.label: h.weight for h in model.query_key_heads()} if watch_heads else None
    record = train(
        model, opt, batch_fn, lambda m, b: m(*b)[1], steps=task.config["steps"], schedule=schedule,
        eval_fn=task.eval_fn(seed) if eval_fn is None else eval_fn, eval_every=task.config.get("eval_every", 0),
        watch=watch, record_values=record_values, record_grads=record_grads, progress=progress, desc=desc,
    )
    return model, record


def char_gpt_population_run(
    task: CharTask,
    *,
    betas: Sequence[float],
    gammas: Sequence[float],
    seeds: Sequence[int],
    lrs: Sequence[float] | None = None,
    eval_fn: Callable[[torch.nn.Module], np.ndarray] | None = None,
    schedule=None,
    progress=None,
    desc=None,
    timer: StepTimer | None = None,
) -> tuple[PopulationGPT, list[TrainRecord]]:
    """:func:`char_gpt_run` for E points at once, one :class:`~kadam_edu.population.PopulationGPT`.

    Member e is the run ``char_gpt_run(task, beta=betas[e], gamma=gammas[e], seed=seeds[e])``
    (with ``lrs``: on a task whose ``lr`` is ``lrs[e]``; None: the task's lr for all):
    the same initialisation (:func:`~kadam_edu.population.init_population` seeds it as
    ``seed_everything`` does), its own batches from its own generator seeded with ``seeds[e]``,
    its own evaluation batches, and Adam at its own (beta, gamma) (paper notation). ``schedule(n)``
    -> one lr for all, or E lrs. ``eval_fn(population)`` -> E values (default:
    ``task.population_eval_fn(seeds)``). Returns the population and one record per member, each equal
    (float tolerance) to that run's, divergence included. With dropout > 0 the masks come from
    one global RNG for all members, so they match the sequential runs in distribution only.
    ``timer``: a :func:`step_timer` that ticks once per population step.
    """
    E = len(seeds)
    seed_everything(seeds[0])  # the global RNG (dropout masks), so that the population run repeats
    gens = {s: torch.Generator().manual_seed(int(s)) for s in seeds}
    pop = init_population(task.gpt, [int(s) for s in seeds]).to(task.device)
    wide = dict(dtype=torch.float64)
    opt = KAdam(pop.parameters(), lr=task.config["lr"] if lrs is None else torch.tensor(lrs, **wide),
                betas=(torch.tensor(gammas, **wide), torch.tensor(betas, **wide)), members=E,
                **_optimizer_settings(task.config))
    batch_fn = task.population_batch_fn([gens[s] for s in seeds])
    records = train(
        pop, opt, batch_fn if timer is None else timer.wrap(batch_fn), lambda m, b: m(*b)[1],
        steps=task.config["steps"], schedule=schedule,
        eval_fn=task.population_eval_fn(seeds) if eval_fn is None else eval_fn,
        eval_every=task.config.get("eval_every", 0), progress=progress, desc=desc,
    )
    return pop, records


def point_summary(index: int, beta: float, gamma: float, record: TrainRecord) -> dict:
    """JSON summary of one sweep point: where it sits in the stability picture and how it ended."""
    return {
        "index": index,
        "beta": float(beta),
        "gamma": float(gamma),
        "C": float(bounds.stability_constant(beta, gamma)),
        "region": bounds.region(beta, gamma),
        "diverged_at": record.diverged_at,
        "steps_done": record.steps_done,
        "seconds": round(record.seconds, 2),
    }


def sweep(
    figure: str,
    scale: str,
    config: dict,
    betas: Sequence[float],
    gammas: Sequence[float],
    run_point: Callable[[int, float, float], tuple[dict, dict[str, np.ndarray]]],
    *,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    device,
    shard=None,
    data: dict | None = None,
    run_population: Callable[[list[tuple[int, float, float]]], list[tuple[dict, dict[str, np.ndarray]]]] | None = None,
    population: int = 1,
    key: Callable[[int], Hashable] | None = None,
    paired: bool = False,
) -> Result:
    """Run the grid of P = len(betas) points (beta, gamma) once per base seed: ``run_point(index,
    beta, gamma) -> (summary, arrays)`` for each of this shard's runs, or ``run_population([(index,
    beta, gamma), ...])`` -> one ``(summary, arrays)`` per run for several runs at once.

    ``seeds``: the base seeds (:func:`check_seeds`; None: ``[seed]``). ``index`` is the flat
    index i = k * P + p of the k-th seed's point p, seed-major (:func:`sweep_members`, which tells
    the run functions its seed and ``run_seed``); each summary gets ``"seed"`` and ``"point"``,
    arrays are stored as ``p{i}/...``, and ``data`` gets ``"seeds"``, ``"grid_size"`` (P),
    ``"sweep_size"`` (the runs of the whole sweep, seeds x P) and ``"paired"``.

    Shard (I, N) takes the runs whose index is I mod N, so N jobs cover the sweep and
    :func:`kadam_edu.experiments.result.merge` joins them (checking coverage on
    ``sweep_size``). With ``run_population``, the shard's runs are cut into populations of at
    most ``population`` by :func:`shard_chunks` (``key(p)``, of the grid point: points with
    different keys never share one; runs of different seeds may) and a chunk of one goes to
    ``run_point``. The result must not depend on the cut: ``population`` is recorded in the
    provenance only. ``paired`` (every point of a seed with one seed, :func:`run_seed`) is
    recorded in ``data`` and the provenance; the provenance's ``seed`` is the first base seed.
    """
    shard = parse_shard(shard)
    seeds = check_seeds(seeds, seed)
    pairs = [(float(b), float(g)) for b, g in zip(betas, gammas)]
    size = len(pairs)
    members = sweep_members(size, seeds, paired)
    population = population if run_population is not None else 1
    done = {}
    for chunk in shard_chunks(size, shard, population, key, seeds=len(seeds)):
        if len(chunk) == 1:
            done[chunk[0]] = run_point(chunk[0], *pairs[chunk[0] % size])
        else:
            done.update(zip(chunk, run_population([(i, *pairs[i % size]) for i in chunk])))
    points, arrays = [], {}
    for i in sorted(done):
        summary, arr = done[i]
        points.append(dict(summary, seed=members[i].seed, point=members[i].point))
        arrays.update({f"p{i}/{k}": v for k, v in arr.items()})
    out = dict(data or {})
    out["points"] = points
    out["sweep_size"] = len(members)
    out["paired"] = bool(paired)
    out["seeds"] = list(seeds)
    out["grid_size"] = size
    prov = provenance(scale=scale, device=device, seed=seeds[0], shard=shard)
    prov.update(population=population, paired=bool(paired))
    return Result(figure=figure, scale=scale, config=config, data=out, arrays=arrays, provenance=prov)


def point_seed(seed: int, index: int) -> int:
    """Each point's own seed, so a shard reproduces exactly the run of the whole sweep.

    ``seed * 1_000_003 + index``, taken mod 2**63 so that it stays a valid seed (the same
    number for every seed below 2**63 / 1_000_003).
    """
    return (seed * 1_000_003 + index) % (validate.MAX_SEED + 1)


def run_seed(seed: int, index: int, paired: bool) -> int:
    """The seed of point ``index``'s initialisation and batches: :func:`point_seed`, or with
    ``paired`` the seed of point 0 for every point (common random numbers: points differ only in
    their hyperparameters, for comparisons across points)."""
    return point_seed(seed, 0 if paired else index)


def log_slope(values, start: int = 0, stop: int | None = None, *, every: int = 1, least: int = 2) -> float | None:
    """The least-squares slope of log(values[n]) against n, n in ``range(start, stop, every)``.

    The measured growth rate of a max-update trajectory ``values`` [steps] (||u_n||_inf, per
    step), to set against Eq. 5's max(0, -C)/2: Fig. 1b, Chapter 5, Assignment 3. Only the
    window's finite, positive values are fitted (a diverged run's NaN, an update of 0); the window
    ends with ``values`` (``stop`` None: there). None when fewer than ``least`` (>= 2) remain.
    Two values n0 < n1 give (log v[n1] - log v[n0]) / (n1 - n0), the centered difference.
    Computed as sum(x y) / sum(x x) with x, y the centered n and log values.
    """
    arr = None
    if not np.iscomplexobj(values):
        try:
            arr = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            pass
    if arr is None or arr.ndim != 1:
        got = f"an array of shape {arr.shape}" if arr is not None and arr.ndim > 1 else repr(values)
        raise ValueError(f"values must be a 1-D sequence of real numbers (a max-update per step); got {got}")
    start = validate.integer("start", start, lo=0)
    stop = validate.Optional(validate.Int(start))("stop", stop)
    every, least = validate.positive_int("every", every), validate.integer("least", least, lo=2)
    n = np.arange(start, len(arr) if stop is None else min(stop, len(arr)), every)
    v = arr[n]
    keep = np.isfinite(v) & (v > 0)
    if keep.sum() < least:
        return None
    x, y = n[keep] - n[keep].mean(), np.log(v[keep])
    return float(np.sum(x * (y - y.mean())) / np.sum(x * x))


def finite_log_slope(values: np.ndarray, n: int, half: int) -> float | None:
    """(log v[n + half] - log v[n - half]) / (2 half): the measured slope of Fig. 1b; None if unavailable.

    :func:`log_slope` over the two ends of the window. ``n``: int >= 0, ``half``: int >= 1 (steps).
    None when the window leaves ``values`` or an end is not finite and positive.
    """
    n, half = validate.integer("n", n, lo=0), validate.positive_int("half", half)
    if n - half < 0:
        return None
    return log_slope(values, n - half, n + half + 1, every=2 * half)
