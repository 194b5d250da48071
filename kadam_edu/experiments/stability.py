"""Section 3.2 and App. F, M, N, O, P: the max-update and test loss across (beta, gamma).

fig1: max-update along the normal curve through (0.999, 0.9), with Eq. 5, the exact discrete
bound and the measured slope of log ||u_n||_inf against both predicted growth rates.
fig3: points on B0. fig9 / fig10 / fig11: test loss along the normal curves through
(0.999, 0.9) and (0.95, 0.9) and along the level curve through (0.999, 0.9), with App. H's
schedule. fig12: Eq. 15 annealing in B-.

Every figure here is a sweep of one char GPT over (beta, gamma) points and takes
``population`` ("auto" or a positive int): the points are trained that many at a time as one
batched model (:mod:`kadam_edu.population`; 1: one model at a time), each member with its own
seed, batches, schedule and divergence, so the result is the same whatever ``population`` is
(float tolerance; with dropout > 0, as at paper scale, only in distribution). ``seeds`` (an int S
for the base seeds 0..S-1, or a list; None: the one seed ``seed``) runs the grid once per base
seed: the Result holds one point per (seed, grid point), seed-major, each with its ``seed`` and
``point`` (:func:`~kadam_edu.experiments.common.sweep`). ``paired=True`` (the default with more
than one seed) gives every point of a seed the initialisation and batches of that seed's point 0
(:func:`~kadam_edu.experiments.common.run_seed`); across seeds they differ.
"""

from __future__ import annotations

import numpy as np

from kadam_edu import bounds
from kadam_edu.experiments.common import (
    CHAR_RUNS,
    CHAR_SPEC,
    REFERENCE,
    CharTask,
    Presets,
    char_gpt_population_run,
    char_gpt_run,
    check_paired,
    check_population,
    check_seeds,
    finite_log_slope,
    member_bytes,
    point_summary,
    population_size,
    settings_for,
    shard_chunks,
    step_timer,
    sweep,
    sweep_members,
)
from kadam_edu.experiments.result import parse_shard
from kadam_edu.scale import pick_device
from kadam_edu.train import annealed, warmup_cosine
from kadam_edu.validate import Int, Pair, Real

__all__ = ["fig1", "fig3", "fig9", "fig10", "fig11", "fig12"]

_CHAR = dict(  # shared by every figure here; the paper's is App. H
    CHAR_RUNS,
    # gpu: the cpu model at the paper's sweep sizes. The max-update law and the test loss along
    # the curves show on it, and a member step costs about 0.8 ms on a T4 in a population of 32
    # (experiments.estimate), which is what lets 64 x 1500 (Fig. 1) and 128 x 3000 (Fig. 9) fit.
    gpu=CHAR_RUNS["cpu"],
)

#: Specs of the keys of this module's presets (CHAR_SPEC: the char GPT's).
SPEC = dict(
    CHAR_SPEC,
    points=Int(1, meaning="points along the curve"),
    beta_range=Pair(Real(0, 1, lo_open=True, hi_open=True)),
    slope_at=Int(1, meaning="the step n of the measured slope"),
    slope_half=Int(1, meaning="half the window of the measured slope, in steps"),
    warmup=Int(0, meaning="warmup steps"),
    min_lr=Real(0, meaning="the lr the cosine decays to"),
    eval_every=Int(1, meaning="steps between evaluations"),
    eval_iters=Int(1, meaning="validation batches per evaluation"),
)


def _slope_window(config: dict) -> None:
    """Rule: the slope window [slope_at - slope_half, slope_at + slope_half] lies inside the run."""
    n, half, steps = config["slope_at"], config["slope_half"], config["steps"]
    if n - half < 0 or n + half >= steps:
        raise ValueError(f"the slope is measured from step slope_at - slope_half to slope_at + slope_half, which "
                         f"must lie in [0, steps - 1]: need slope_half <= slope_at and slope_at + slope_half < steps; "
                         f"got slope_at={n}, slope_half={half}, steps={steps}")


def _evaluations(config: dict) -> None:
    """Rule: at least one evaluation (eval_every <= steps)."""
    if config["eval_every"] > config["steps"]:
        raise ValueError(f"eval_every={config['eval_every']} must be <= steps={config['steps']} "
                         "(the test loss is what this figure shows)")


def _with_warmup(config: dict) -> None:
    """Rules of Fig. 9-11: evaluations, and the warmup ends before the last step."""
    _evaluations(config)
    if config["warmup"] >= config["steps"]:
        raise ValueError(f"warmup={config['warmup']} must be < steps={config['steps']}")


FIG1 = Presets("fig1", {
    # App. H: 64 points, 1500 steps, slope from n = 495 and 505
    # The stretch of the curve from (0.953, 0.9973), C = -0.044, to (0.999, 0.9). Closer to
    # gamma = 1 the bias correction 1/(1 - gamma^(n+1)) keeps the slope below its limit for
    # longer than a cpu-scale run lasts (its own slope is gamma^(n+1) ln(gamma) / (1 - gamma^(n+1))).
    "paper": dict(_CHAR["paper"], points=64, steps=1500, slope_at=500, slope_half=5, beta_range=(0.953, 0.999)),
    # cpu: three paired seeds in about the time of one: the points only near B0, where the slope law
    # is measured (beta up to 0.966: 6 points in B- for the rank correlation, 3 in B+ for the noise
    # level), and the run stops just after the slope window
    "cpu": dict(_CHAR["cpu"], points=9, steps=510, slope_at=500, slope_half=5, beta_range=(0.953, 0.966)),
    # App. H's sweep (two populations of 32): about 1.5 min on a T4
    "gpu": dict(_CHAR["gpu"], points=64, steps=1500, slope_at=500, slope_half=5, beta_range=(0.953, 0.999)),
    "smoke": dict(_CHAR["smoke"], points=3, steps=40, slope_at=25, slope_half=5, beta_range=(0.953, 0.999)),
}, spec=SPEC, rules=_slope_window)


def _max_update_runs(task, timer, members, *, schedule=None, extra=None, progress=None):
    """(run_point, run_population) for sweeps that record the max-update trajectory (fig1, fig3, fig9-12).

    run_point trains one run alone (:func:`char_gpt_run`), run_population several as one
    population (:func:`char_gpt_population_run`), each ticking ``timer`` once a step; run i
    (a flat index) starts from ``members[i].run_seed`` (:func:`sweep_members`);
    ``schedule(beta, gamma)`` -> the point's lr schedule (in a population, member e's),
    ``extra(record, beta, gamma)`` -> more summary fields.
    """

    def summarise(i, beta, gamma, rec):
        summary = point_summary(i, beta, gamma, rec)
        if extra is not None:
            summary.update(extra(rec, beta, gamma))
        arrays = {"max_update": rec.max_update, "loss": rec.loss, "lr": rec.lr}
        if len(rec.eval_steps):
            arrays.update(eval_steps=rec.eval_steps, eval_loss=rec.eval_loss)
        return summary, arrays

    def run_point(i, beta, gamma):
        _, rec = char_gpt_run(task, beta=beta, gamma=gamma, seed=members[i].run_seed,
                              schedule=None if schedule is None else schedule(beta, gamma),
                              progress=progress, desc=f"point {i} (beta={beta:.4f}, gamma={gamma:.4f})", timer=timer)
        return summarise(i, beta, gamma, rec)

    def run_population(points):
        schedules = None if schedule is None else [schedule(beta, gamma) for _, beta, gamma in points]
        _, records = char_gpt_population_run(
            task, betas=[b for _, b, _ in points], gammas=[g for _, _, g in points],
            seeds=[members[i].run_seed for i, _, _ in points],
            schedule=None if schedules is None else (lambda n: [s(n) for s in schedules]),
            progress=progress, desc=f"points {points[0][0]}-{points[-1][0]} ({len(points)} at once)", timer=timer)
        return [summarise(i, beta, gamma, rec) for (i, beta, gamma), rec in zip(points, records)]

    return run_point, run_population


def _setup(presets, scale, overrides, *, seed, seeds, device, shard, population, paired):
    """Every argument of a figure here checked (and normalized) before any work: (scale, config,
    run), run = {seeds, shard, device, population, paired} for :func:`_run_sweep`."""
    scale, config = settings_for(presets, scale, overrides)
    seeds, shard, device = check_seeds(seeds, seed), parse_shard(shard), pick_device(device)
    run = dict(seeds=seeds, shard=shard, device=device, population=check_population(population),
               paired=check_paired(paired, seeds))
    return scale, config, run


def _run_sweep(figure, scale, config, betas, gammas, make_runs, *, seeds, shard, device, population, paired,
               data=None):
    """Build the char task and sweep the points once per base seed with ``make_runs(task, timer, members)``
    (:func:`_max_update_runs`), ``population`` at a time; ``timer`` projects the shard's steps
    (``steps`` per population)."""
    task = CharTask(config, device)
    size = population_size(population, device, bytes_per_member=member_bytes(task.gpt, config["batch_size"]),
                           model=task.gpt)
    populations = shard_chunks(len(betas), shard, size, seeds=len(seeds))
    timer = step_timer(figure, scale, steps=config["steps"] * len(populations), device=device)
    run_point, run_population = make_runs(task, timer, sweep_members(len(betas), seeds, paired))
    return sweep(figure, scale, config, betas, gammas, run_point, seeds=seeds, device=device, shard=shard, data=data,
                 run_population=run_population, population=size, paired=paired)


def fig1(scale="auto", *, seed=0, seeds=None, device=None, shard=None, population="auto", paired=None,
         progress=None, **overrides):
    """Max-update trajectories along the normal curve through (0.999, 0.9) (Fig. 1, App. H).

    Each point records ||u_n||_inf for every step, and its summary has ``C``, the
    ``measured_slope`` of log ||u_n||_inf from n = slope_at -/+ slope_half (Fig. 1b), and the
    two predictions: ``predicted_slope_continuous`` = max(0, -C)/2 (the paper's) and
    ``predicted_slope_discrete`` = max(0, ln gamma - ln(beta)/2) (the exact discrete bound's
    n -> inf slope), plus ``bound_slope_at_n``, the exact bound's own slope at slope_at.
    """
    scale, config, run = _setup(FIG1, scale, overrides, seed=seed, seeds=seeds, device=device, shard=shard,
                                population=population, paired=paired)
    betas, gammas = bounds.normal_curve(*REFERENCE, config["points"], beta_range=config["beta_range"])

    def slopes(rec, beta, gamma):
        n, half = config["slope_at"], config["slope_half"]
        measured = finite_log_slope(rec.max_update, n, half)
        log_bound = bounds.log_discrete_max_update_bound(np.array([n - half, n + half]), beta=beta, gamma=gamma)
        return {
            "measured_slope": measured,
            "slope_at": n,
            "predicted_slope_continuous": float(bounds.growth_rate(beta, gamma)),
            "predicted_slope_discrete": float(bounds.discrete_growth_rate(beta, gamma)),
            # the same two-point slope of the exact discrete bound itself, finite-n effects included
            "bound_slope_at_n": float((log_bound[1] - log_bound[0]) / (2 * half)),
        }

    return _run_sweep("fig1", scale, config, betas, gammas,
                      lambda task, timer, members: _max_update_runs(task, timer, members, extra=slopes,
                                                                    progress=progress),
                      data={"reference": list(REFERENCE)}, **run)


FIG3 = Presets("fig3", {
    "paper": dict(_CHAR["paper"], points=11, steps=1500, beta_range=(0.5, 0.999)),
    "cpu": dict(_CHAR["cpu"], points=3, steps=400, beta_range=(0.5, 0.999)),
    "gpu": dict(_CHAR["gpu"], points=11, steps=1500, beta_range=(0.5, 0.999)),  # App. H's, one population
    "smoke": dict(_CHAR["smoke"], points=2, steps=30, beta_range=(0.5, 0.999)),
}, spec=SPEC)


def fig3(scale="auto", *, seed=0, seeds=None, device=None, shard=None, population="auto", paired=None,
         progress=None, **overrides):
    """Max-update for points on B0 = {C = 0} (Fig. 3, App. F); Eq. 5 predicts sqrt(n) growth there."""
    scale, config, run = _setup(FIG3, scale, overrides, seed=seed, seeds=seeds, device=device, shard=shard,
                                population=population, paired=paired)
    betas, gammas = bounds.level_curve(0.0, config["points"], beta_range=config["beta_range"])
    return _run_sweep("fig3", scale, config, betas, gammas,
                      lambda task, timer, members: _max_update_runs(task, timer, members, progress=progress), **run)


def _generalisation_presets(figure: str, points_paper: int, points_gpu: int) -> Presets:
    # App. H, Fig. 9: warmup 100 steps, cosine decay to 1e-4, 3000 steps, eval every 100 on 200 batches
    return Presets(figure, {
        "paper": dict(_CHAR["paper"], points=points_paper, steps=3000, warmup=100, min_lr=1e-4,
                      eval_every=100, eval_iters=200),
        # cpu: 7 points (at least 6 in B+ on each curve: the rank correlation) of 325 steps for three
        # paired seeds; evaluations twice as often on half the batches (4 by the early horizon n = 108)
        "cpu": dict(_CHAR["cpu"], points=7, steps=325, warmup=20, min_lr=1e-4, eval_every=25, eval_iters=10),
        # App. H's schedule and length; validation on 20 batches (not 200: 30 evaluations of 200
        # batches would cost as much as the training)
        "gpu": dict(_CHAR["gpu"], points=points_gpu, steps=3000, warmup=100, min_lr=1e-4, eval_every=100,
                    eval_iters=20),
        "smoke": dict(_CHAR["smoke"], points=2, steps=30, warmup=5, min_lr=1e-4, eval_every=10, eval_iters=2),
    }, spec=SPEC, rules=_with_warmup)


# gpu: App. H's schedule and length on 16 points per curve (App. H: 128), so that the book's three
# paired seeds of each (48 runs, one population) fit Chapter 2's 15 minutes on a T4 (estimated:
# about 2 min per figure); the paper's 128 points stay one seed's run for `--set points=128`
FIG9, FIG10, FIG11 = (_generalisation_presets("fig9", 128, 16), _generalisation_presets("fig10", 128, 16),
                      _generalisation_presets("fig11", 128, 16))


def _generalisation(figure, presets, curve, scale, overrides, data, progress, **run):
    """Figs. 9-11: the test loss along ``curve(points)`` with App. H's schedule; ``run``: the run
    arguments (seed, seeds, device, shard, population, paired), checked by :func:`_setup`."""
    scale, config, run = _setup(presets, scale, overrides, **run)
    betas, gammas = curve(config["points"])

    def schedule(beta, gamma):
        return warmup_cosine(lr=config["lr"], warmup=config["warmup"], total=config["steps"], min_lr=config["min_lr"])

    def best_losses(rec, beta, gamma):
        out = {}
        for horizon in (config["steps"] // 3, config["steps"]):  # the paper's 1000 and 3000
            seen = rec.eval_loss[rec.eval_steps <= horizon]
            out[f"best_test_loss_{horizon}"] = float(seen.min()) if len(seen) else None
        return out

    return _run_sweep(figure, scale, config, betas, gammas,
                      lambda task, timer, members: _max_update_runs(task, timer, members, schedule=schedule,
                                                                    extra=best_losses, progress=progress),
                      data=data, **run)


def fig9(scale="auto", *, seed=0, seeds=None, device=None, shard=None, population="auto", paired=None,
         progress=None, **overrides):
    """Test loss along the whole normal curve through (0.999, 0.9) (Fig. 9, App. N)."""
    return _generalisation("fig9", FIG9, lambda num: bounds.normal_curve(*REFERENCE, num), scale, overrides,
                           {"curve": "normal", "through": list(REFERENCE)}, progress, seed=seed, seeds=seeds,
                           device=device, shard=shard, population=population, paired=paired)


def fig10(scale="auto", *, seed=0, seeds=None, device=None, shard=None, population="auto", paired=None,
          progress=None, **overrides):
    """Test loss along the normal curve through (0.95, 0.9) (Fig. 10, App. O)."""
    return _generalisation("fig10", FIG10, lambda num: bounds.normal_curve(0.95, 0.9, num), scale, overrides,
                           {"curve": "normal", "through": [0.95, 0.9]}, progress, seed=seed, seeds=seeds,
                           device=device, shard=shard, population=population, paired=paired)


def fig11(scale="auto", *, seed=0, seeds=None, device=None, shard=None, population="auto", paired=None,
          progress=None, **overrides):
    """Test loss along the level curve C = C(0.999, 0.9) (Fig. 11, App. O)."""
    c = float(bounds.stability_constant(*REFERENCE))
    return _generalisation("fig11", FIG11, lambda num: bounds.level_curve(c, num), scale, overrides,
                           {"curve": "level", "C": c}, progress, seed=seed, seeds=seeds, device=device, shard=shard,
                           population=population, paired=paired)


FIG12 = Presets("fig12", {
    "paper": dict(_CHAR["paper"], points=16, steps=1500, beta_range=(0.9525, 0.962), eval_every=100, eval_iters=200),
    # cpu: 300 steps (three paired seeds); by then Eq. 15 has cut the lr of the B- points by about 10x to 1000x
    "cpu": dict(_CHAR["cpu"], points=4, steps=300, beta_range=(0.9525, 0.962), eval_every=50, eval_iters=20),
    "gpu": dict(_CHAR["gpu"], points=16, steps=1500, beta_range=(0.9525, 0.962), eval_every=100, eval_iters=20),
    "smoke": dict(_CHAR["smoke"], points=2, steps=30, beta_range=(0.9525, 0.962), eval_every=10, eval_iters=2),
}, spec=SPEC, rules=_evaluations)


def fig12(scale="auto", *, seed=0, seeds=None, device=None, shard=None, population="auto", paired=None,
          progress=None, **overrides):
    """Eq. 15 annealing, eta_n = eta_0 exp(-n |C| / 2), for points in B- (Fig. 12, App. P).

    Each point has its own schedule (its C); in a population, member e follows point e's.
    """
    scale, config, run = _setup(FIG12, scale, overrides, seed=seed, seeds=seeds, device=device, shard=shard,
                                population=population, paired=paired)
    betas, gammas = bounds.normal_curve(*REFERENCE, config["points"], beta_range=config["beta_range"])

    def schedule(beta, gamma):
        return annealed(lr=config["lr"], beta=beta, gamma=gamma)

    return _run_sweep("fig12", scale, config, betas, gammas,
                      lambda task, timer, members: _max_update_runs(task, timer, members, schedule=schedule,
                                                                    progress=progress), **run)
