r"""Beyond the paper: Adam at the edge of stability on the char GPT (Chapter 6).

Train the char GPT with Adam (KAdam, k = 1, eps = 1e-30) at a few constant learning rates and,
every ``measure_every`` steps, measure the preconditioned sharpness lambda_max(P^{-1} H) on one
FIXED batch (:func:`kadam_edu.sharpness.preconditioned_sharpness`, Lanczos), to compare with
Adam's stability threshold (2 + 2 gamma) / ((1 - gamma) eta) (Cohen et al. 2022;
:func:`kadam_edu.sharpness.adam_stability_threshold`).

``full-batch`` runs train on that same fixed batch (deterministic training, the setting of the
theory); the ``minibatch`` run trains on random batches of the same size and is measured on the
fixed batch. :func:`eos` returns a :class:`Result` with one point per run; ``kadam_edu.plots.eos``
draws it. Registered in ``experiments.FIGURES`` as the book extra ``eos`` (Chapter 6), a sweep
over its runs: ``python -m kadam_edu reproduce eos --scale cpu [--shard I/N]``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from kadam_edu.data import get_batch
from kadam_edu.experiments.common import (
    CHAR_SPEC,
    CharTask,
    Presets,
    check_model_overrides,
    check_paired,
    check_population,
    check_seeds,
    member_bytes,
    population_size,
    settings_for,
    shard_chunks,
    step_timer,
    sweep_members,
)
from kadam_edu.experiments.result import Result, parse_shard, provenance
from kadam_edu.models import GPT
from kadam_edu.optim import KAdam
from kadam_edu.population import init_population
from kadam_edu.progress import bar as progress_bar
from kadam_edu.scale import pick_device, seed_everything
from kadam_edu.sharpness import adam_stability_threshold, preconditioned_sharpness
from kadam_edu.train import train
from kadam_edu.validate import Int, ListOf, Real

__all__ = ["eos", "EOS", "eos_summary"]

#: Specs of the keys of :data:`EOS` (CHAR_SPEC: the char GPT's).
SPEC = dict(
    CHAR_SPEC,
    lrs=ListOf(Real(0, lo_open=True, meaning="learning rates"), min_len=0),
    minibatch_lrs=ListOf(Real(0, lo_open=True, meaning="learning rates"), min_len=0),
    measure_every=Int(1, meaning="steps between measurements"),
    lanczos_iters=Int(1),
    tail=Real(0, 1, lo_open=True, meaning="the fraction of measurements summarised"),
    arrive=Real(0, lo_open=True, meaning="S / threshold that counts as arrived"),
)


def _rules(config: dict) -> None:
    """Rules between the keys of :data:`EOS` (each key has passed its spec)."""
    if not config["lrs"] and not config["minibatch_lrs"]:
        raise ValueError("need at least one run: lrs and minibatch_lrs are both empty")
    if config["measure_every"] > config["steps"]:
        raise ValueError(f"measure_every ({config['measure_every']}) must be <= steps ({config['steps']})")
    check_model_overrides(config)


_EOS_PAPER = dict(model="paper", model_overrides={"dropout": 0.0}, batch_size=64, lrs=[1e-4, 3e-4, 1e-3],
                  minibatch_lrs=[3e-4], beta=0.999, gamma=0.9, steps=1000, measure_every=50, lanczos_iters=20,
                  tail=0.5, arrive=0.9)
_EOS_CPU = dict(_EOS_PAPER, model="cpu", batch_size=32, lrs=[3e-4, 1e-3, 3e-3], minibatch_lrs=[1e-3], steps=300,
                measure_every=30, lanczos_iters=8)

#: lrs: the full-batch runs; minibatch_lrs: runs on random batches (measured on the fixed batch).
#: tail: the last fraction of the measurements summarised; arrive: the ratio S / threshold that
#: counts as having reached the edge. Dropout is off: a random loss has no Hessian. On the cpu
#: model the top eigenvalue is well separated: Lanczos with 8 steps agrees with 36 to 3e-3
#: (relative) or better, with 10 to 4e-4 (full batch, lr 3e-4 and 3e-3, after 75 and 300 steps).
#: Every scale keeps the paper preset's (beta, gamma), tail and arrive.
EOS = Presets("eos", {
    "paper": _EOS_PAPER,
    # cpu: 300 steps (full-batch runs at lr 3e-4 and 3e-3 passed the threshold within 75 steps in a
    # check), 10 measurements of 8 Lanczos steps, so that the book's three seeds fit the chapter's time
    "cpu": _EOS_CPU,
    # gpu: the cpu model and lrs the chapter discusses, for App. H's 1000 steps with 20 Lanczos
    # steps per measurement (the paper preset's): a longer look at the edge, about 1 min on a T4
    "gpu": dict(_EOS_CPU, steps=1000, measure_every=20, lanczos_iters=20),
    "smoke": dict(_EOS_PAPER, model="smoke", batch_size=8, lrs=[1e-3, 1e-2], minibatch_lrs=[1e-2], steps=30,
                  measure_every=10, lanczos_iters=6),
}, spec=SPEC, rules=_rules)


def eos_summary(steps: np.ndarray, ratio: np.ndarray, *, tail: float, arrive: float) -> dict:
    """Numbers for one run from its measured S / threshold: median, min and max over the last
    ``tail`` fraction of measurements, the overall max, and the first step with ratio >= ``arrive``."""
    steps, ratio = np.asarray(steps), np.asarray(ratio, dtype=float)
    if len(ratio) == 0:
        return {"ratio_tail_median": None, "ratio_tail_min": None, "ratio_tail_max": None,
                "ratio_max": None, "arrival_step": None}
    last = ratio[-max(1, int(round(tail * len(ratio)))):]
    hit = np.flatnonzero(ratio >= arrive)
    return {
        "ratio_tail_median": float(np.median(last)),
        "ratio_tail_min": float(last.min()),
        "ratio_tail_max": float(last.max()),
        "ratio_max": float(ratio.max()),
        "arrival_step": int(steps[hit[0]]) if len(hit) else None,
    }


def _member_preconditioner(pop, opt: KAdam, e: int) -> dict[str, torch.Tensor]:
    """:func:`kadam_edu.sharpness.adam_preconditioner` of member e of a population trained by
    ``KAdam(k=1, members=E)`` with one beta: name -> P = (sqrt(v) + eps) / sqrt(1 - beta^s), each
    of the ordinary model's parameter shape (the population's names are the model's)."""
    group = opt.param_groups[0]
    beta, eps = float(KAdam.group_levels(group)[0].beta), float(group["eps"])
    return {name: (opt.state[p]["v"][0][e].sqrt() + eps) / math.sqrt(1.0 - beta ** int(opt.state[p]["step"]))
            for name, p in pop.named_parameters()}


def eos(scale="auto", *, seed=0, seeds=None, device=None, shard=None, population="auto", paired=None, progress=None,
        **overrides) -> Result:
    """Preconditioned sharpness of Adam against the threshold 38/eta on the char GPT.

    One point per run (``lrs`` full-batch, then ``minibatch_lrs``), each with ``lr``, ``mode``,
    ``threshold``, the :func:`eos_summary` numbers and ``final_loss``; arrays ``steps`` and
    ``sharpness`` [M] (measurements), ``fixed_loss`` [M] (loss on the fixed batch there) and
    ``loss`` [steps] (training loss per step). All runs of a base seed start from the same
    initialisation (``paired``: None or True; False is refused), and the seed also draws the
    fixed batch, the minibatch stream and Lanczos' start. ``seeds`` (an int S for 0..S-1, or a
    list; None: the one seed ``seed``) repeats the runs per base seed: one point per (seed, run),
    seed-major, each with its ``seed`` and ``point`` (the run's place in the list), as
    :func:`~kadam_edu.experiments.common.sweep` lays them out; ``data["seeds"]``,
    ``data["grid_size"]`` (runs per seed). ``shard`` ("I/N") runs every N-th point of the flat
    (seed, run) index, as in the paper's sweeps.

    ``population`` ("auto" or a positive int; 1: one run at a time): the shard's runs are trained
    that many at a time as one :class:`~kadam_edu.population.PopulationGPT` (full-batch and
    minibatch runs, and runs of different seeds, together), each member measured on its own;
    the result is the same (float tolerance) whatever ``population`` is, which the provenance
    records.
    """
    scale, config = settings_for(EOS, scale, overrides)
    seeds, shard, device = check_seeds(seeds, seed), parse_shard(shard), pick_device(device)
    population = check_population(population)
    check_paired(paired, seeds, always=True, figure="eos")
    task = CharTask(config, device)
    fixed = {s: get_batch(task.corpus.train, block_size=task.gpt.block_size, batch_size=config["batch_size"],
                          generator=torch.Generator().manual_seed(s + 7919), device=device) for s in seeds}

    def fixed_loss(s):  # the loss on base seed s's fixed batch
        return lambda model: model(*fixed[s])[1]

    runs = [(lr, "full-batch") for lr in config["lrs"]] + [(lr, "minibatch") for lr in config["minibatch_lrs"]]
    members = sweep_members(len(runs), seeds, True)  # eos seeds its runs with the base seed itself
    gamma, beta = float(config["gamma"]), float(config["beta"])
    every, steps = config["measure_every"], config["steps"]
    size = population_size(population, device, bytes_per_member=member_bytes(task.gpt, config["batch_size"]),
                           model=task.gpt)
    populations = shard_chunks(len(runs), shard, size, seeds=len(seeds))
    timer = step_timer("eos", scale, steps=steps * len(populations), device=device,
                       note="training steps only: the Lanczos measurements come on top")
    bar = progress_bar(progress, total=steps * sum(map(len, populations)), desc="eos")

    def point(i, losses, m_steps, sharp, f_loss, diverged_at, seconds):
        lr, mode = runs[members[i].point]
        threshold = adam_stability_threshold(lr, gamma)
        m_steps, sharp = np.asarray(m_steps, dtype=int), np.asarray(sharp, dtype=float)
        summary = {"index": i, "lr": float(lr), "mode": mode, "gamma": gamma, "beta": beta,
                   "threshold": float(threshold), "diverged_at": diverged_at,
                   "final_loss": float(f_loss[-1]) if f_loss else None, "seconds": round(seconds, 2)}
        summary.update(eos_summary(m_steps, sharp / threshold, tail=config["tail"], arrive=config["arrive"]))
        summary.update(seed=members[i].seed, point=members[i].point)
        arrays = {"steps": m_steps, "sharpness": sharp, "fixed_loss": np.asarray(f_loss, dtype=float),
                  "loss": np.asarray(losses, dtype=float)}
        return summary, arrays

    def run_one(i):
        (lr, mode), s = runs[members[i].point], members[i].seed
        gen = seed_everything(s)  # the same initialisation for every run of the seed
        model = GPT(task.gpt).to(device)
        opt = KAdam(model.parameters(), lr=lr, betas=(gamma, beta))
        batches = timer.wrap((lambda n: fixed[s]) if mode == "full-batch" else task.batch_fn(gen))
        losses, m_steps, sharp, f_loss = [], [], [], []
        diverged_at, start, lanczos_gen = None, time.perf_counter(), torch.Generator().manual_seed(s + 1)
        done = 0
        while done < steps:
            chunk = min(every, steps - done)
            rec = train(model, opt, batches, lambda m, b: m(*b)[1], steps=chunk, progress=False)
            losses.extend(rec.loss.tolist())
            if bar is not None:
                bar.update(rec.steps_done)
            if rec.diverged_at is not None:
                diverged_at = done + rec.diverged_at
                break
            done += chunk
            model.eval()
            s_max = preconditioned_sharpness(model, fixed_loss(s), opt, iters=config["lanczos_iters"],
                                             generator=lanczos_gen)
            with torch.no_grad():
                f_loss.append(float(fixed_loss(s)(model)))
            model.train()
            m_steps.append(done)
            sharp.append(s_max)
        return [point(i, losses, m_steps, sharp, f_loss, diverged_at, time.perf_counter() - start)]

    def run_population(chunk):
        """The runs ``chunk`` as one population: member e is run_one(chunk[e])'s run (its seed's initialisation,
        its seed's fixed batch or minibatch stream, its own lr); after every ``measure_every`` steps each member
        still finite is measured as run_one measures its model."""
        E, start = len(chunk), time.perf_counter()
        member_seeds = [members[i].seed for i in chunk]
        full = [runs[members[i].point][1] == "full-batch" for i in chunk]
        seed_everything(member_seeds[0])  # the global RNG, as run_one seeds it
        pop = init_population(task.gpt, member_seeds).to(device)
        opt = KAdam(pop.parameters(), lr=torch.tensor([runs[members[i].point][0] for i in chunk], dtype=torch.float64),
                    betas=(gamma, beta), members=E)
        streams = {s: task.batch_fn(torch.Generator().manual_seed(s))  # one minibatch stream per seed, as run_one's
                   for s, is_full in zip(member_seeds, full) if not is_full}

        def batches(n):  # member e's fixed batch or its seed's minibatch; one shared batch when all agree
            drawn = {s: stream(n) for s, stream in streams.items()}
            per_member = [fixed[s] if is_full else drawn[s] for s, is_full in zip(member_seeds, full)]
            if all(b is per_member[0] for b in per_member):
                return per_member[0]
            return tuple(torch.stack([b[j] for b in per_member]) for j in (0, 1))

        losses, m_steps, sharp, f_loss = ([[] for _ in chunk] for _ in range(4))
        diverged_at, alive = [None] * E, list(range(E))
        lanczos = [torch.Generator().manual_seed(s + 1) for s in member_seeds]
        timed, done = timer.wrap(batches), 0
        while done < steps and alive:
            chunk_steps = min(every, steps - done)
            records = train(pop, opt, timed, lambda m, b: m(*b)[1], steps=chunk_steps, progress=False)
            for e in list(alive):
                rec = records[e]
                losses[e].extend(rec.loss.tolist())
                if bar is not None:
                    bar.update(rec.steps_done)
                if rec.diverged_at is not None:
                    diverged_at[e] = done + rec.diverged_at
                    alive.remove(e)
            done += chunk_steps
            for e in alive:
                model, measure = pop.member(e).eval(), fixed_loss(member_seeds[e])
                s_max = preconditioned_sharpness(model, measure, _member_preconditioner(pop, opt, e),
                                                 iters=config["lanczos_iters"], generator=lanczos[e])
                with torch.no_grad():
                    f_loss[e].append(float(measure(model)))
                m_steps[e].append(done)
                sharp[e].append(s_max)
        seconds = time.perf_counter() - start
        return [point(i, losses[e], m_steps[e], sharp[e], f_loss[e], diverged_at[e], seconds)
                for e, i in enumerate(chunk)]

    points, arrays = [], {}
    for chunk in populations:
        for summary, arr in (run_one(chunk[0]) if len(chunk) == 1 else run_population(chunk)):
            points.append(summary)
            arrays.update({f"p{summary['index']}/{k}": v for k, v in arr.items()})
    if bar is not None:
        bar.close()
    data = {"points": points, "sweep_size": len(members), "threshold_formula": "(2 + 2 gamma) / ((1 - gamma) lr)",
            "measured_on": f"one fixed batch of {config['batch_size']} x {task.gpt.block_size} tokens",
            "seeds": seeds, "grid_size": len(runs)}
    prov = provenance(scale=scale, device=device, seed=seeds[0], shard=shard)
    prov["population"] = size
    return Result(figure="eos", scale=scale, config=config, data=data, arrays=arrays, provenance=prov)
