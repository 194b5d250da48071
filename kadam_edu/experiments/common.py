"""Shared pieces of the experiments: the char-GPT run, sweeps over (beta, gamma) points, shards."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from kadam_edu import bounds
from kadam_edu.data import get_batch, load_shakespeare
from kadam_edu.experiments.result import Result, parse_shard, provenance
from kadam_edu.models import GPT, gpt_config
from kadam_edu.optim import KAdam
from kadam_edu.scale import pick_device, resolve_scale, seed_everything
from kadam_edu.train import TrainRecord, train

__all__ = ["settings_for", "char_gpt_run", "sweep", "point_summary"]


def settings_for(presets: dict[str, dict], scale, overrides: dict) -> tuple[str, dict]:
    """The preset of ``scale`` (resolved) updated with ``overrides``; unknown keys are refused."""
    scale = resolve_scale(scale)
    config = dict(presets[scale])
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; this experiment takes {sorted(config)}")
    config.update(overrides)
    return scale, config


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
    :func:`kadam_edu.experiments.result.merge` joins them.
    """
    shard = parse_shard(shard)
    points, arrays = [], {}
    for i, (b, g) in enumerate(zip(betas, gammas)):
        if shard is not None and i % shard[1] != shard[0]:
            continue
        summary, arr = run_point(i, float(b), float(g))
        points.append(summary)
        arrays.update({f"p{i}/{k}": v for k, v in arr.items()})
    out = dict(data or {})
    out["points"] = points
    return Result(figure=figure, scale=scale, config=config, data=out, arrays=arrays,
                  provenance=provenance(scale=scale, device=device, seed=seed, shard=shard))


def point_seed(seed: int, index: int) -> int:
    """Each point's own seed, so a shard reproduces exactly the run of the whole sweep."""
    return seed * 1_000_003 + index


def finite_log_slope(values: np.ndarray, n: int, half: int) -> float | None:
    """(log v[n + half] - log v[n - half]) / (2 half): the measured slope of Fig. 1b; None if unavailable."""
    if n + half >= len(values) or n - half < 0:
        return None
    a, b = values[n - half], values[n + half]
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
        return None
    return float((math.log(b) - math.log(a)) / (2 * half))
