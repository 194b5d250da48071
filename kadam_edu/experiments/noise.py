r"""Beyond the paper: gradient noise and batch size (Chapter 5).

Three experiments, each returning a :class:`Result` that ``kadam_edu.plots.plot`` draws:

* :func:`sde_vs_discrete` ("noise_sde"): the Adam and RMSprop SDEs of :mod:`kadam_edu.sde`
  against discrete Adam / RMSprop with injected Gaussian noise on a noisy quadratic, at a few
  learning rates with the SDE constants (c1, c2, sigma0, eps0) held fixed. Each discrete run shares
  the SDE's Brownian path (common random numbers), so the measured differences are the
  approximation error rather than Monte-Carlo noise. Reports E[L] and Var[L] over ``paths`` runs
  and their relative errors.
* :func:`batch_scaling` ("noise_batch_scaling"): the char GPT trained at batch sizes kappa*B under
  the square-root rule and under the linear rule (:mod:`kadam_edu.scaling`), the same number of
  samples each; validation loss against samples seen and a curve-mismatch number per rule.
* :func:`scaling_stability` ("noise_stability"): a point of B+ moved by the square-root rule;
  the max-update measured (fitted slope of log ||u_n||_inf) on the char GPT and on a linear
  model with a block of features that switches off, against the continuous (|C|/2) and the
  exact discrete (ln gamma - ln(beta)/2) growth rates.

Registered in ``experiments.FIGURES`` as book extras (Chapter 5) under their result names, so
``python -m kadam_edu reproduce noise_sde --scale cpu`` runs :func:`sde_vs_discrete` (likewise
``noise_batch_scaling``, ``noise_stability``). Each takes ``scale`` ("smoke", "cpu", "gpu", "paper"
or "auto": "gpu" with CUDA, "cpu" otherwise), ``seed``, ``device`` (the char-GPT runs), ``progress``
and keyword overrides of its preset; none is a sweep, so none takes ``shard``. The two char-GPT
experiments state findings that must hold across seeds, so they also take ``seeds`` (every run
repeated per base seed; each point records its ``seed``) and ``paired`` (their runs always share
their seed's initialisation: None or True). Both print the projected wall time of their GPT runs
after the first steps (30 s or more; :func:`~kadam_edu.experiments.common.step_timer`), at the
first run's rate: the later runs' larger batches make it a lower bound where a step's time grows
with its batch (a CPU).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from kadam_edu import bounds, scaling, sde, validate
from kadam_edu.data import get_batch, load_shakespeare
from kadam_edu.experiments.common import (
    CHAR_SPEC,
    CharTask,
    Presets,
    char_gpt_population_run,
    char_gpt_run,
    check_model_overrides,
    check_paired,
    check_population,
    check_seeds,
    chunks,
    log_slope,
    member_bytes,
    population_size,
    seed_prefix,
    settings_for,
    step_timer,
)
from kadam_edu.experiments.result import Result, provenance
from kadam_edu.models import GPT_PRESETS, gpt_config
from kadam_edu.optim import KAdam
from kadam_edu.scale import pick_device
from kadam_edu.validate import Choice, Int, ListOf, Optional, Real, Seed

__all__ = ["SDE", "BATCH", "STABILITY", "sde_vs_discrete", "batch_scaling", "scaling_stability",
           "fitted_log_slope", "curve_mismatch"]

# --------------------------------------------------------------------------- SDE vs discrete


def _whole(name: str, ratio: float) -> int:
    k = round(ratio)
    if k < 1 or abs(ratio - k) > 1e-9 * max(1.0, ratio):
        raise ValueError(f"{name} must be a whole number >= 1; got {ratio!r} (adjust horizon, record_dt or lrs)")
    return int(k)


def _sde_plan(config: dict) -> tuple[dict, float, int, int, list[dict]]:
    """The time grid of an :data:`SDE` config, checked before anything runs: (consts, dt, SDE steps,
    SDE record interval, per lr {lr, hp, steps, record_every, substeps})."""
    dim = len(config["curvature"])
    for key in ("noise_var", "theta0"):
        if len(config[key]) != dim:
            raise ValueError(f"{key} must have one entry per dimension of curvature ({dim}); got {config[key]!r}")
    lrs = [float(x) for x in config["lrs"]]
    consts = {k: float(config[k]) for k in ("c1", "c2", "sigma0", "eps0")}
    dt = min(lrs) ** 2 / config["sde_refine"]
    horizon, record_dt = float(config["horizon"]), float(config["record_dt"])
    sde_steps, sde_every = _whole("horizon / dt", horizon / dt), _whole("record_dt / dt", record_dt / dt)
    runs = [dict(lr=lr, hp=sde.discrete_hyperparameters(lr=lr, **consts),
                 steps=_whole("horizon / lr^2", horizon / lr**2), record_every=_whole("record_dt / lr^2", record_dt / lr**2),
                 substeps=sde.substeps_for(lr, dt)) for lr in lrs]
    return consts, dt, sde_steps, sde_every, runs


_SDE_PAPER = dict(curvature=[1.0, 4.0], noise_var=[1.0, 1.0], theta0=[2.0, 2.0], c1=10.0, c2=1.0, sigma0=1.0, eps0=0.0,
                  horizon=3.0, record_dt=0.12, lrs=[0.2, 0.1, 0.05, 0.025, 0.0125], sde_refine=2, paths=16384)

#: The noisy quadratic and the SDE constants held fixed while lr shrinks. lrs: decreasing, each
#: lr^2 a whole multiple of dt = min(lrs)^2 / sde_refine; record_dt: a multiple of max(lrs)^2.
#: With c1 = 10, c2 = 1, lr = 0.1 is gamma = 0.9, beta = 0.99 (sigma = sigma0 / lr = 10).
#: The other scales change the paper preset's lrs and paths only.
SDE = Presets("noise_sde", {
    "paper": _SDE_PAPER,
    "cpu": dict(_SDE_PAPER, lrs=[0.2, 0.1, 0.05, 0.025], paths=4096),
    # gpu: these runs use the CPU whatever the device; the paper preset's 16,384 paths (a quarter of
    # the cpu preset's Monte-Carlo noise in E[L], Var[L]) at the cpu preset's lrs: about 1 min
    "gpu": dict(_SDE_PAPER, lrs=[0.2, 0.1, 0.05, 0.025]),
    "smoke": dict(_SDE_PAPER, lrs=[0.2, 0.1, 0.05], paths=256),
}, spec={
    "curvature": ListOf(Real(0, lo_open=True, meaning="the diagonal Hessian h")),
    "noise_var": ListOf(Real(0, meaning="the diagonal per-sample gradient covariance")),
    "theta0": ListOf(Real()),
    "c1": Real(0, lo_open=True, meaning="(1 - gamma) / lr^2"),
    "c2": Real(0, lo_open=True, meaning="(1 - beta) / lr^2"),
    "sigma0": Real(0, meaning="sigma lr"),
    "eps0": Real(0, meaning="eps lr"),
    "horizon": Real(0, lo_open=True, meaning="SDE time"),
    "record_dt": Real(0, lo_open=True, meaning="SDE time between records"),
    "lrs": ListOf(Real(0, lo_open=True, meaning="learning rates")),
    "sde_refine": Int(1, meaning="SDE steps per step of the smallest lr"),
    "paths": Int(1),
}, rules=_sde_plan)


def sde_vs_discrete(scale="auto", *, seed=0, device=None, progress=None, **overrides) -> Result:
    """E[L] and Var[L] of the Adam / RMSprop SDEs against the discrete algorithms at each lr.

    Per algorithm ("adam", "rmsprop") the result holds ``{alg}/sde_mean``, ``{alg}/sde_var`` [R]
    and ``{alg}/lr{i}_mean``, ``{alg}/lr{i}_var`` [R] at ``times`` [R]; ``data["errors"][alg]`` lists,
    per lr, the relative errors of mean and variance (max over t > 0 and at t = horizon);
    ``data["order"][alg]``: the fitted slope of log(max error) against log(lr).
    ``device`` is ignored (these runs are small and use the CPU in float64).
    """
    scale, config = settings_for(SDE, scale, overrides)
    seed = validate.seed("seed", seed)
    consts, dt, sde_steps, sde_every, runs = _sde_plan(config)
    lrs = [r["lr"] for r in runs]
    problem = sde.NoisyQuadratic(config["curvature"], config["noise_var"])
    common = dict(paths=config["paths"], seed=seed)
    arrays, errors, order, seconds = {}, {}, {}, {}
    for alg in ("adam", "rmsprop"):
        t0 = time.perf_counter()
        if alg == "adam":
            ref = sde.adam_sde(problem, config["theta0"], **consts, dt=dt, steps=sde_steps, record_every=sde_every, **common)
        else:
            ref = sde.rmsprop_sde(problem, config["theta0"], c2=consts["c2"], sigma0=consts["sigma0"], eps0=consts["eps0"],
                                  dt=dt, steps=sde_steps, record_every=sde_every, **common)
        arrays[f"{alg}/sde_mean"], arrays[f"{alg}/sde_var"] = ref.mean_loss, ref.var_loss
        arrays["times"] = ref.times
        errors[alg] = []
        for i, plan in enumerate(runs):
            lr, hp = plan["lr"], dict(plan["hp"])
            if alg == "rmsprop":
                hp["gamma"] = 0.0
            run = sde.discrete_adam(problem, config["theta0"], lr=lr, **hp, steps=plan["steps"],
                                    record_every=plan["record_every"], substeps=plan["substeps"], **common)
            err = sde.moment_errors(ref, run)
            arrays[f"{alg}/lr{i}_mean"], arrays[f"{alg}/lr{i}_var"] = run.mean_loss, run.var_loss
            errors[alg].append({"lr": lr, "beta": hp["beta"], "gamma": hp["gamma"], "sigma": hp["sigma"],
                                "max_rel_err_mean": err["max_mean"], "max_rel_err_var": err["max_var"],
                                "final_rel_err_mean": float(err["mean"][-1]), "final_rel_err_var": float(err["var"][-1])})
        seconds[alg] = round(time.perf_counter() - t0, 2)
        if len(lrs) >= 2:
            x = np.log(lrs)
            order[alg] = {k: float(np.polyfit(x, np.log([e[f"max_rel_err_{k}"] for e in errors[alg]]), 1)[0])
                          for k in ("mean", "var")}
    data = {"errors": errors, "order": order, "dt": dt, "seconds": seconds,
            "stationary_rmsprop_mean": float(consts["sigma0"] * problem.noise_var.sqrt().sum() / 4)}
    return Result(figure="noise_sde", scale=scale, config=config, data=data, arrays=arrays,
                  provenance=provenance(scale=scale, device=torch.device("cpu"), seed=seed))


# --------------------------------------------------------------------------- batch-size scaling


def _batch_rules(config: dict) -> None:
    """Rules between the keys of :data:`BATCH` (each key has passed its spec)."""
    kappas, base_batch, samples, evals = config["kappas"], config["base_batch"], config["samples"], config["evals"]
    if kappas[0] != 1:
        raise ValueError(f"kappas must be ints >= 1 starting with 1 (the base batch); got {kappas!r}")
    base = dict(lr=config["lr"], beta=config["beta"], gamma=config["gamma"], eps=config["eps"])
    for k in kappas:
        if samples % (base_batch * k * evals):
            raise ValueError(f"samples ({samples}) must be a multiple of base_batch * kappa * evals "
                             f"({base_batch} * {k} * {evals}) so every run is evaluated at the same sample counts")
        for rule in RULES.values():
            rule(k, **base)  # the scaled hyperparameters stay in range
    check_model_overrides(config)


_BATCH_PAPER = dict(model="paper", model_overrides={"dropout": 0.0}, base_batch=16, samples=64_000, lr=2e-3, beta=0.999,
                    gamma=0.95, eps=1e-8, kappas=[1, 2, 4, 8], evals=10, eval_batches=20, eval_batch_size=64,
                    floor_seed=1)

#: base: Adam at batch base_batch with lr, (beta, gamma) (paper's notation) and eps; each kappa
#: runs samples / (kappa base_batch) steps. Validation loss on eval_batches fixed batches of
#: eval_batch_size, at `evals` equally spaced sample counts. floor_seed: a second kappa = 1 run
#: with another seed, whose mismatch with the first is the seed-to-seed floor.
BATCH = Presets("noise_batch_scaling", {
    "paper": _BATCH_PAPER,
    # cpu: kappa 1 and 4 only (the rules differ most at the largest kappa) and 10,240 samples per run, so
    # that the book's three seeds fit the chapter's time (1.2x the single seed's runs x samples of
    # kappas [1, 2, 4] at 12,800 samples)
    "cpu": dict(_BATCH_PAPER, model="cpu", model_overrides={}, base_batch=4, samples=10_240, kappas=[1, 4], evals=8,
                eval_batches=8, eval_batch_size=32),
    # gpu: the paper preset's batches, samples and evaluations (kappa up to 8, 64,000 samples per run)
    # on the gpu GPT: each run sees a sixth of tiny-shakespeare, about 3 min in all on a T4
    "gpu": dict(_BATCH_PAPER, model="gpu", model_overrides={}),
    "smoke": dict(_BATCH_PAPER, model="smoke", model_overrides={}, base_batch=2, samples=384, kappas=[1, 2, 4], evals=4,
                  eval_batches=2, eval_batch_size=8),
}, spec=dict(
    CHAR_SPEC,
    base_batch=Int(1, meaning="the batch B of kappa = 1"),
    samples=Int(1, meaning="samples each run sees"),
    eps=Real(0),
    kappas=ListOf(Int(1, meaning="batch multipliers")),
    evals=Int(1, meaning="evaluations per run"),
    eval_batches=Int(1),
    eval_batch_size=Int(1),
    floor_seed=Optional(Seed(), "no second kappa = 1 run"),
), rules=_batch_rules)

RULES = {"sqrt": scaling.square_root_rule, "linear": scaling.linear_rule}


def curve_mismatch(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean absolute difference of two loss curves sampled at the same sample counts (nats).

    A NaN entry (a run that diverged before that point) makes the mismatch +inf.
    """
    reference, other = np.asarray(reference, float), np.asarray(other, float)
    if reference.shape != other.shape or reference.ndim != 1 or len(reference) == 0:
        raise ValueError(f"curves must be 1-D and of equal length; got {reference.shape} and {other.shape}")
    diff = np.abs(other - reference)
    return float(np.mean(diff)) if np.all(np.isfinite(diff)) else math.inf


def _char_task(model: str, model_overrides: dict, *, batch: int, steps: int, hp: dict, device,
               eval_every: int = 0) -> CharTask:
    """The char GPT ``model`` (with ``model_overrides``) trained on batches of ``batch`` for ``steps``
    steps at ``hp``'s lr and eps (KAdam), for :func:`~kadam_edu.experiments.common.char_gpt_run`
    and :func:`~kadam_edu.experiments.common.char_gpt_population_run`."""
    return CharTask(dict(model=model, model_overrides=model_overrides, batch_size=batch, lr=hp["lr"], eps=hp["eps"],
                         steps=steps, eval_every=eval_every), device)


def batch_scaling(scale="auto", *, seed=0, seeds=None, device=None, population="auto", paired=None, progress=None,
                  **overrides) -> Result:
    """Validation loss against samples seen at batch kappa*B, square-root rule against linear rule.

    Points: one per (rule, kappa) with the hyperparameters used and ``mismatch`` (mean absolute
    loss difference from the kappa = 1 run at the same sample counts); kappa = 1 is the same run
    for both rules. ``data["mismatch"][rule]``: the mean over kappa > 1; ``data["floor"]``: the
    mismatch between two kappa = 1 runs with different seeds. Arrays ``{rule}/k{kappa}/samples``,
    ``.../eval_loss`` and ``floor/eval_loss``.

    ``seeds`` (an int S for 0..S-1, or a list; None: the one seed ``seed``) repeats every run per
    base seed (its initialisation, batches and validation batches): one point per (seed, rule,
    kappa), seed-major, each with its ``seed`` and ``point``; ``data["seeds"]``,
    ``data["grid_size"]`` (points per seed). With several seeds each seed's arrays carry the
    prefix ``s{seed}/`` (:func:`~kadam_edu.experiments.common.arrays_of_seed`), the mismatch is the
    mean over every seed's points, and the seed floor needs no extra run: ``data["floors"]`` holds
    each seed's kappa = 1 run against the next seed's (the last against the first),
    ``data["floor"]`` their mean (``floor_seed`` is then not used). The runs of a seed always
    share its initialisation (``paired``: None or True; False is refused).

    ``population`` ("auto" or a positive int; 1: one run at a time): runs of one batch size and
    eps are trained that many at a time as one batched model, with the same result. Each kappa
    has its own batch size and the square-root rule scales eps, so in practice only the kappa = 1
    runs (of every seed, and the seed floor's) share one (the provenance records ``population``).
    """
    scale, config = settings_for(BATCH, scale, overrides)
    seeds, device = check_seeds(seeds, seed), pick_device(device)
    population = check_population(population)
    check_paired(paired, seeds, always=True, figure="noise_batch_scaling")
    kappas, base_batch, samples, evals = config["kappas"], config["base_batch"], config["samples"], config["evals"]
    corpus = load_shakespeare()
    gpt = gpt_config(config["model"], **config["model_overrides"])

    def val_batches(s):  # the same validation batches every time, for every run of base seed s
        g = torch.Generator().manual_seed(10_000 + s)
        return [get_batch(corpus.val, block_size=gpt.block_size, batch_size=config["eval_batch_size"], generator=g,
                          device=device) for _ in range(config["eval_batches"])]

    def evaluate(s):
        return lambda model: float(np.mean([float(model(*b)[1]) for b in val_batches(s)]))

    def evaluate_population(member_seeds):  # member e's mean over its base seed's batches: [E]
        def evaluate_members(pop):
            drawn = {s: val_batches(s) for s in dict.fromkeys(member_seeds)}
            batches = drawn[member_seeds[0]] if len(drawn) == 1 else [
                tuple(torch.stack([drawn[s][j][t] for s in member_seeds]) for t in (0, 1))
                for j in range(config["eval_batches"])]
            return torch.stack([pop(*b)[1] for b in batches]).double().mean(0).cpu().numpy()

        return evaluate_members

    base = dict(lr=config["lr"], beta=config["beta"], gamma=config["gamma"], eps=config["eps"])
    # every run: kappa, hyperparameters, its seed and base seed, label; per base seed kappa = 1 once for
    # both rules; then, with one seed, the seed floor
    named = (lambda s: "") if len(seeds) == 1 else (lambda s: f", seed {s}")
    jobs = [dict(rule=rule, kappa=kappa, hp=fn(kappa, **base), seed=s, base=s,
                 desc=f"{rule} rule, kappa={kappa}{named(s)}")
            for s in seeds for rule, fn in RULES.items() for kappa in kappas if kappa != 1 or rule == "sqrt"]
    if len(seeds) == 1 and config.get("floor_seed") is not None:
        jobs.append(dict(rule="floor", kappa=1, hp=RULES["sqrt"](1, **base), seed=config["floor_seed"], base=seeds[0],
                         desc="kappa=1, second seed"))
    members = population_size(population, device, bytes_per_member=member_bytes(gpt, base_batch * max(kappas)),
                              model=gpt)

    def curve(rec, kappa, steps):
        loss = np.full(evals, np.nan)  # a diverged run stops early: its missing points stay NaN
        at = rec.eval_steps // (steps // evals) - 1
        ok = (rec.eval_steps % (steps // evals) == 0) & (at >= 0) & (at < evals)
        loss[at[ok]] = rec.eval_loss[ok]
        return rec, loss, base_batch * kappa * (steps // evals) * np.arange(1, evals + 1)

    populations = chunks(range(len(jobs)), members, key=lambda j: (jobs[j]["kappa"], jobs[j]["hp"]["eps"]))
    steps_of = {kappa: scaling.scaled_steps(samples // base_batch, kappa) for kappa in kappas}
    # every run sees the same samples: the larger batches take fewer, longer steps, so where a step's
    # time grows with its batch (a CPU) the projection, at the first run's rate, is a lower bound
    timer = step_timer("noise_batch_scaling", scale, device=device,
                       steps=sum(steps_of[jobs[chunk[0]]["kappa"]] for chunk in populations))
    done = {}
    for chunk in populations:
        kappa, hps = jobs[chunk[0]]["kappa"], [jobs[j]["hp"] for j in chunk]
        steps = steps_of[kappa]
        task = _char_task(config["model"], config["model_overrides"], batch=base_batch * kappa, steps=steps, hp=hps[0],
                          device=device, eval_every=steps // evals)
        if len(chunk) == 1:
            job = jobs[chunk[0]]
            records = [char_gpt_run(task, beta=job["hp"]["beta"], gamma=job["hp"]["gamma"], seed=job["seed"],
                                    eval_fn=evaluate(job["base"]), progress=progress, desc=job["desc"], timer=timer)[1]]
        else:
            _, records = char_gpt_population_run(
                task, betas=[hp["beta"] for hp in hps], gammas=[hp["gamma"] for hp in hps],
                seeds=[jobs[j]["seed"] for j in chunk], lrs=[hp["lr"] for hp in hps],
                eval_fn=evaluate_population([jobs[j]["base"] for j in chunk]),
                progress=progress, desc=f"kappa={kappa}: {len(chunk)} runs at once", timer=timer)
        done.update({j: curve(rec, kappa, steps) for j, rec in zip(chunk, records)})

    arrays, points, refs, floor = {}, [], {}, {}
    for s in seeds:
        head, first = seed_prefix(s, seeds), len(points)
        runs = {(jobs[j]["rule"], jobs[j]["kappa"]): done[j] for j in done if jobs[j]["base"] == s}
        ref = refs[s] = runs["sqrt", 1][1]
        for rule, fn in RULES.items():
            for kappa in kappas:
                hp = fn(kappa, **base)
                rec, loss, seen = runs["sqrt" if kappa == 1 else rule, kappa]
                arrays[f"{head}{rule}/k{kappa}/samples"] = seen
                arrays[f"{head}{rule}/k{kappa}/eval_loss"] = loss
                points.append({"rule": rule, "kappa": kappa, "batch": base_batch * kappa, "steps": len(rec.loss),
                               **{k: float(v) for k, v in hp.items()}, "final_eval_loss": float(loss[-1]),
                               "diverged_at": rec.diverged_at, "seconds": round(rec.seconds, 2),
                               "mismatch": curve_mismatch(ref, loss) if kappa > 1 else 0.0,
                               "seed": s, "point": len(points) - first})
        if ("floor", 1) in runs:
            _, loss, seen = runs["floor", 1]
            arrays["floor/samples"], arrays["floor/eval_loss"] = seen, loss
            floor["floor"] = curve_mismatch(ref, loss)
    if len(seeds) > 1:  # each seed's kappa = 1 run against the next seed's
        floor["floors"] = [curve_mismatch(refs[s], refs[seeds[(k + 1) % len(seeds)]]) for k, s in enumerate(seeds)]
        floor["floor"] = float(np.mean(floor["floors"]))
    mismatch = {rule: float(np.mean([p["mismatch"] for p in points if p["rule"] == rule and p["kappa"] > 1]))
                for rule in RULES} if len(kappas) > 1 else {}
    data = {"points": points, "mismatch": mismatch, "samples": samples, "base": base, "base_batch": base_batch,
            **floor, "seeds": seeds, "grid_size": len(points) // len(seeds)}
    prov = provenance(scale=scale, device=device, seed=seeds[0])
    prov["population"] = members
    return Result(figure="noise_batch_scaling", scale=scale, config=config, data=data, arrays=arrays, provenance=prov)


# --------------------------------------------------------------------------- stability under the rule


def _stability_rules(config: dict) -> None:
    """Rules between the keys of :data:`STABILITY` (each key has passed its spec)."""
    beta, gamma = config["beta"], config["gamma"]
    if bounds.region(beta, gamma) != "B+":
        raise ValueError(f"the base point must lie in B+; (beta, gamma) = ({beta}, {gamma}) is in {bounds.region(beta, gamma)}")
    for model in ("gpt", "toy"):
        base_batch = config[f"{model}_base_batch"]
        for kappa in config[f"{model}_kappas"]:
            try:
                scaling.square_root_rule(kappa, lr=config["lr"], beta=beta, gamma=gamma, eps=0.0)
            except ValueError as e:
                raise ValueError(f"{model}_kappas: {e}") from None
            if round(base_batch * kappa) < 1:
                raise ValueError(f"{model}_kappas: kappa={kappa:g} gives a batch of {model}_base_batch * kappa = "
                                 f"{base_batch * kappa:g}, which rounds to 0")
    if config["toy_off_at"] >= config["toy_steps"]:
        raise ValueError(f"toy_off_at={config['toy_off_at']} must be < toy_steps={config['toy_steps']} "
                         "(the step where the second block of features switches off)")


_STABILITY_PAPER = dict(beta=0.95, gamma=0.97, lr=1e-3, gpt_model="paper", gpt_base_batch=4, gpt_steps=600,
                        gpt_kappas=[1, 4, 8, 12, 16], toy_kappas=[1, 2, 4, 6, 8, 10, 12, 14, 16], toy_dim=8,
                        toy_base_batch=4, toy_steps=300, toy_off_at=100, fit_fraction=0.5)

#: base: a point of B+ with gamma > beta (kappa_c = 6.67, kappa_d = 11.1, kappa_limit = 20).
#: gpt: the char GPT at batch base_batch*kappa, lr*sqrt(kappa), `steps` steps per kappa (KAdam's
#: eps = 1e-30, as in fig1). toy: linear regression, `dim` always-on features and `dim` features
#: that are zero from step `off_at` on (a pattern that leaves the data), eps = 0, float64.
#: The slope of log ||u_n||_inf is fitted by least squares over the last `fit_fraction` of the run.
STABILITY = Presets("noise_stability", {
    "paper": _STABILITY_PAPER,
    # cpu: the char GPT at one kappa per regime (B+, B- below kappa_d, beyond kappa_d), so that the
    # book's three seeds fit the chapter's time; the toy (cheap) keeps every kappa
    "cpu": dict(_STABILITY_PAPER, gpt_model="cpu", gpt_base_batch=2, gpt_steps=300, gpt_kappas=[1, 8, 16]),
    # gpu: the paper preset's GPT runs (batch 4 kappa, 600 steps) on the gpu GPT: under a minute
    "gpu": dict(_STABILITY_PAPER, gpt_model="gpu"),
    "smoke": dict(_STABILITY_PAPER, gpt_model="smoke", gpt_base_batch=2, gpt_steps=40, gpt_kappas=[1, 16],
                  toy_kappas=[1, 8, 16], toy_steps=200, toy_off_at=60),
}, spec={
    "beta": CHAR_SPEC["beta"],
    "gamma": CHAR_SPEC["gamma"],
    "lr": CHAR_SPEC["lr"],
    "gpt_model": Choice(tuple(GPT_PRESETS), "a GPT preset of kadam_edu.models"),
    "gpt_base_batch": Int(1),
    "gpt_steps": Int(1),
    "gpt_kappas": ListOf(Real(0, lo_open=True, meaning="batch multipliers")),
    "toy_kappas": ListOf(Real(0, lo_open=True, meaning="batch multipliers")),
    "toy_dim": Int(1),
    "toy_base_batch": Int(1),
    "toy_steps": Int(1),
    "toy_off_at": Int(0, meaning="the step the second block of features switches off"),
    "fit_fraction": Real(0, 1, lo_open=True, meaning="the last fraction of the run the slope is fitted over"),
}, rules=_stability_rules)


def fitted_log_slope(values, start: int) -> float | None:
    """Least-squares slope of log(values[n]) against n over n >= start (finite, positive values only).

    :func:`~kadam_edu.experiments.common.log_slope` from ``start`` on; None when fewer than 3
    such values remain.
    """
    return log_slope(values, start, least=3)


def _toy_run(*, kappa, hp, dim, base_batch, steps, off_at, seed):
    """Linear regression y = w*.x + noise with KAdam (float64, eps as given); features dim..2dim-1 are 0 from off_at."""
    gen = torch.Generator().manual_seed(seed)
    w_star = torch.randn(2 * dim, dtype=torch.float64, generator=gen)
    w = torch.zeros(2 * dim, dtype=torch.float64, requires_grad=True)
    opt = KAdam([w], lr=hp["lr"], betas=(hp["gamma"], hp["beta"]), eps=hp["eps"])
    batch = int(round(base_batch * kappa))
    max_update, loss_log = np.full(steps, np.nan), np.full(steps, np.nan)
    for n in range(steps):
        x = torch.randn(batch, 2 * dim, dtype=torch.float64, generator=gen)
        if n >= off_at:
            x[:, dim:] = 0.0
        y = x @ w_star + 0.1 * torch.randn(batch, dtype=torch.float64, generator=gen)
        loss = 0.5 * ((x @ w - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        mu = opt.last_max_update
        if not math.isfinite(mu):
            break
        max_update[n], loss_log[n] = mu, float(loss.detach())
    return max_update, loss_log


def scaling_stability(scale="auto", *, seed=0, seeds=None, device=None, paired=None, progress=None,
                      **overrides) -> Result:
    """The square-root rule applied to a B+ point: max-update growth measured against both predictions.

    Points: one per (model, kappa) with the scaled (beta, gamma), C, the predicted slopes
    ``predicted_slope_continuous`` = max(0, -C)/2 and ``predicted_slope_discrete`` =
    max(0, ln gamma - ln(beta)/2), and ``measured_slope`` (fitted, :func:`fitted_log_slope`, over the
    last ``fit_fraction`` of the run; for the toy from ``toy_off_at`` + 20 on if later).
    ``data``: kappa_c (:func:`kadam_edu.scaling.crossing_kappa`), kappa_d, kappa_limit.
    Arrays ``{model}/k{kappa}/max_update``.

    ``seeds`` (an int S for 0..S-1, or a list; None: the one seed ``seed``) repeats every run per
    base seed: one point per (seed, model, kappa), seed-major, each with its ``seed`` and
    ``point``; ``data["seeds"]``, ``data["grid_size"]`` (points per seed); with several seeds each
    seed's arrays carry the prefix ``s{seed}/`` (:func:`~kadam_edu.experiments.common.arrays_of_seed`).
    The runs of a seed always share it (``paired``: None or True; False is refused).
    """
    scale, config = settings_for(STABILITY, scale, overrides)
    seeds, device = check_seeds(seeds, seed), pick_device(device)
    check_paired(paired, seeds, always=True, figure="noise_stability")
    beta, gamma = float(config["beta"]), float(config["gamma"])
    data = {"base": [beta, gamma], "C": float(bounds.stability_constant(beta, gamma)),
            "kappa_c": scaling.crossing_kappa(beta=beta, gamma=gamma),
            "kappa_d": scaling.discrete_crossing_kappa(beta=beta, gamma=gamma),
            "kappa_limit": scaling.kappa_limit(beta=beta, gamma=gamma)}
    points, arrays = [], {}

    def summary(model, kappa, hp, mu, start, seconds):
        b, g = hp["beta"], hp["gamma"]
        return {"model": model, "kappa": float(kappa), "beta": b, "gamma": g, "lr": hp["lr"],
                "C": float(bounds.stability_constant(b, g)), "region": bounds.region(b, g),
                "predicted_slope_continuous": float(bounds.growth_rate(b, g)),
                "predicted_slope_discrete": float(bounds.discrete_growth_rate(b, g)),
                "measured_slope": fitted_log_slope(mu, start), "fit_from": int(start),
                "final_max_update": float(mu[np.isfinite(mu)][-1]) if np.isfinite(mu).any() else None,
                "seconds": round(seconds, 2)}

    steps = int(config["gpt_steps"])
    start = int(round(steps * (1 - config["fit_fraction"])))
    # at the first (smallest) batch's rate: a lower bound where a step's time grows with its batch (a CPU)
    timer = step_timer("noise_stability", scale, steps=steps * len(config["gpt_kappas"]) * len(seeds), device=device,
                       note="the linear-model runs come on top")
    toy_steps, off_at = int(config["toy_steps"]), int(config["toy_off_at"])
    toy_start = max(int(round(toy_steps * (1 - config["fit_fraction"]))), off_at + 20)
    for s in seeds:
        head, first = seed_prefix(s, seeds), len(points)
        named = "" if len(seeds) == 1 else f", seed {s}"
        for kappa in config["gpt_kappas"]:
            hp = scaling.square_root_rule(kappa, lr=config["lr"], beta=beta, gamma=gamma, eps=1e-30)
            task = _char_task(config["gpt_model"], {"dropout": 0.0},
                              batch=int(round(config["gpt_base_batch"] * kappa)), steps=steps, hp=hp, device=device)
            _, rec = char_gpt_run(task, beta=hp["beta"], gamma=hp["gamma"], seed=s, timer=timer, progress=progress,
                                  desc=f"char GPT, kappa={kappa}{named}")
            mu = np.full(steps, np.nan)
            mu[:len(rec.max_update)] = rec.max_update
            arrays[f"{head}gpt/k{kappa:g}/max_update"] = mu
            points.append(dict(summary("gpt", kappa, hp, mu, start, rec.seconds), seed=s, point=len(points) - first))
        for kappa in config["toy_kappas"]:
            hp = scaling.square_root_rule(kappa, lr=config["lr"], beta=beta, gamma=gamma, eps=0.0)
            t0 = time.perf_counter()
            mu, _ = _toy_run(kappa=kappa, hp=hp, dim=int(config["toy_dim"]), base_batch=config["toy_base_batch"],
                             steps=toy_steps, off_at=off_at, seed=s)
            arrays[f"{head}toy/k{kappa:g}/max_update"] = mu
            points.append(dict(summary("toy", kappa, hp, mu, toy_start, time.perf_counter() - t0), seed=s,
                               point=len(points) - first))
    data.update(points=points, seeds=seeds, grid_size=len(points) // len(seeds))
    return Result(figure="noise_stability", scale=scale, config=config, data=data, arrays=arrays,
                  provenance=provenance(scale=scale, device=device, seed=seeds[0]))
