"""Shared pieces of the experiments: presets and their checks, the char-GPT run, sweeps, shards."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from kadam_edu import bounds, validate
from kadam_edu.data import get_batch, load_shakespeare
from kadam_edu.experiments.result import Result, parse_shard, provenance
from kadam_edu.models import GPT, GPT_PRESETS, gpt_config
from kadam_edu.optim import KAdam
from kadam_edu.scale import resolve_scale, seed_everything
from kadam_edu.train import TrainRecord, train
from kadam_edu.validate import Check, Choice, Dict, Int, Real

__all__ = ["Presets", "PRESETS", "CHAR_SPEC", "settings_for", "char_gpt_run", "sweep", "point_summary",
           "point_seed", "finite_log_slope", "check_model_overrides"]

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
        """``config`` with every value checked against its spec (and normalised), then the rules."""
        out = {key: self.spec[key](f"{self.figure} setting {key}", value) for key, value in config.items()}
        if self.rules is not None:
            try:
                self.rules(out)
            except ValueError as e:
                raise ValueError(f"{self.figure} settings: {e}") from None
        return out


def settings_for(presets: Presets, scale, overrides: dict) -> tuple[str, dict]:
    """The preset of ``scale`` (resolved) updated with ``overrides``, every value checked.

    An unknown key is refused with the list of keys; a value that breaks its key's spec, or
    settings that break a rule between keys, with a ValueError that names them. Nothing runs.
    """
    scale = resolve_scale(scale)
    config = dict(presets[scale])
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; this experiment takes {sorted(config)}")
    config.update(overrides)
    return scale, presets.check(config)


def check_model_overrides(config: dict, model_key: str = "model", builder=gpt_config) -> None:
    """Rule: ``model_overrides`` must make a valid model config from the preset ``config[model_key]``."""
    overrides = config["model_overrides"]
    try:
        builder(config[model_key], **overrides)
    except (ValueError, TypeError) as e:
        raise ValueError(f"model_overrides={overrides!r} does not fit model {config[model_key]!r}: {e}") from None


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


def char_gpt_run(
    task: CharTask,
    *,
    beta: float,
    gamma: float,
    seed: int,
    schedule=None,
    watch_heads: bool = False,
    record_values: bool = False,
    record_grads: bool = False,
    progress=None,
    desc=None,
) -> tuple[GPT, TrainRecord]:
    """Train the char GPT with Adam at (beta, gamma) (paper notation) for ``config['steps']`` steps."""
    gen = seed_everything(seed)
    model = GPT(task.gpt).to(task.device)
    opt = KAdam(model.parameters(), lr=task.config["lr"], betas=(gamma, beta),
                weight_decay=task.config.get("weight_decay", 0.0))
    watch = {h.label: h.weight for h in model.query_key_heads()} if watch_heads else None
    record = train(
        model, opt, task.batch_fn(gen), lambda m, b: m(*b)[1], steps=task.config["steps"], schedule=schedule,
        eval_fn=task.eval_fn(seed), eval_every=task.config.get("eval_every", 0), watch=watch,
        record_values=record_values, record_grads=record_grads, progress=progress, desc=desc,
    )
    return model, record


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
    seed: int,
    device,
    shard=None,
    data: dict | None = None,
) -> Result:
    """Run ``run_point(index, beta, gamma) -> (summary, arrays)`` for this shard's points.

    Shard (I, N) takes the points whose index is I mod N, so N jobs cover the sweep and
    :func:`kadam_edu.experiments.result.merge` joins them; ``data["sweep_size"]``, the number of
    points of the whole sweep, lets it check that they do.
    """
    shard = parse_shard(shard)
    pairs = list(zip(betas, gammas))
    points, arrays = [], {}
    for i, (b, g) in enumerate(pairs):
        if shard is not None and i % shard[1] != shard[0]:
            continue
        summary, arr = run_point(i, float(b), float(g))
        points.append(summary)
        arrays.update({f"p{i}/{k}": v for k, v in arr.items()})
    out = dict(data or {})
    out["points"] = points
    out["sweep_size"] = len(pairs)
    return Result(figure=figure, scale=scale, config=config, data=out, arrays=arrays,
                  provenance=provenance(scale=scale, device=device, seed=seed, shard=shard))


def point_seed(seed: int, index: int) -> int:
    """Each point's own seed, so a shard reproduces exactly the run of the whole sweep.

    ``seed * 1_000_003 + index``, taken mod 2**63 so that it stays a valid seed (the same
    number for every seed below 2**63 / 1_000_003).
    """
    return (seed * 1_000_003 + index) % (validate.MAX_SEED + 1)


def finite_log_slope(values: np.ndarray, n: int, half: int) -> float | None:
    """(log v[n + half] - log v[n - half]) / (2 half): the measured slope of Fig. 1b; None if unavailable.

    ``n``: int >= 0, ``half``: int >= 1 (steps). None when the window leaves ``values`` or an end
    is not finite and positive.
    """
    n, half = validate.integer("n", n, lo=0), validate.positive_int("half", half)
    if n + half >= len(values) or n - half < 0:
        return None
    a, b = values[n - half], values[n + half]
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
        return None
    return float((math.log(b) - math.log(a)) / (2 * half))
