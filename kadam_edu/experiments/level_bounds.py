"""App. T: every k-Adam level's max-update stays under that level's own bound (char GPT).

``level_bounds(scale)`` trains the char GPT (:class:`kadam_edu.models.GPT`, the same model
and data as Fig. 1) once per strategy of Section 4.2 with ``KAdam(k=k, strategy=...)``,
records ``opt.last_level_max_updates`` (``||u_n^(i)||_inf`` for i = 1..k) after every step,
and compares each level with its two bounds (:func:`kadam_edu.levels.level_bounds`): the
exact discrete one and Eq. 5 / Eq. 16. Every strategy starts from the same initialisation
and sees the same batches (one seed).

``result.points``: one per strategy, ``index``, ``strategy``, ``k``, ``level_gamma`` /
``level_beta`` (lists of k floats, paper notation), ``C`` and ``region`` (lists of k),
``max_ratio_discrete`` / ``max_ratio_continuous`` (lists of k: the largest measured/bound over
the run; step 0 meets the discrete bound exactly, since u_0^(i) = sign(x_0)),
``max_ratio_discrete_from_1`` (the same from step 1 on: how far below its bound a level runs),
``final_loss``, ``diverged_at``, ``steps_done``, ``seconds``.
``result.point_arrays(i)``: ``loss`` [steps], ``level_max_updates``, ``bound_discrete``,
``bound_continuous`` [steps, k].

Not one of the paper's figures (App. T states the bound without a plot): it is registered in
:data:`kadam_edu.experiments.FIGURES` as a book extra (Chapter 4), so
``python -m kadam_edu reproduce level_bounds --scale cpu`` runs it; ``kadam_edu.plots.level_bounds``
draws it. Not a sweep: it takes no ``shard``.
"""

from __future__ import annotations

import numpy as np

from kadam_edu import bounds, validate
from kadam_edu.experiments.common import CHAR_SPEC, CharTask, Presets, settings_for, step_timer
from kadam_edu.experiments.result import Result, provenance
from kadam_edu.levels import bound_ratios, level_bounds as _level_bounds
from kadam_edu.models import GPT
from kadam_edu.optim import STRATEGIES, KAdam, kadam_levels
from kadam_edu.scale import pick_device, seed_everything
from kadam_edu.train import train
from kadam_edu.validate import Choice, Int, ListOf

__all__ = ["LEVEL_BOUNDS", "level_bounds"]

_ALL = list(STRATEGIES)

#: Specs of the keys of :data:`LEVEL_BOUNDS` (CHAR_SPEC: the char GPT's).
SPEC = dict(CHAR_SPEC, k=Int(1, meaning="levels"), strategies=ListOf(Choice(tuple(STRATEGIES), "Section 4.2")))


def _rules(config: dict) -> None:
    """Rule: every strategy maps (beta, gamma) to levels inside the decays' ranges."""
    for s in config["strategies"]:
        kadam_levels(config["k"], beta=config["beta"], gamma=config["gamma"], strategy=s)


_PAPER = dict(model="paper", batch_size=64, lr=1e-3, steps=1000, k=3, strategies=_ALL, beta=0.999, gamma=0.9,
              weight_decay=0.0)

#: Every scale trains k = 3 levels under every strategy at the paper preset's lr, (beta, gamma) and decay.
LEVEL_BOUNDS = Presets("level_bounds", {
    # App. H's char GPT and lr, k = 3, every strategy. ~1 min on one GPU.
    "paper": _PAPER,
    # The DESIGN's 2-core GPT: long enough for every level's bound to flatten out except the
    # slow second moments of "exp" and "naive" (beta_i ~ 0.997-0.999). ~10 s per strategy.
    "cpu": dict(_PAPER, model="cpu", batch_size=32, steps=300),
    # The gpu GPT (4 layers, 128 wide) for App. H's 1000 steps, the four strategies one after
    # another: long enough for the slow second moments of "exp" and "naive" too. ~40 s on a T4.
    "gpu": dict(_PAPER, model="gpu", batch_size=32),
    "smoke": dict(_PAPER, model="smoke", batch_size=8, steps=30),
}, spec=SPEC, rules=_rules)


def level_bounds(scale="auto", *, seed: int = 0, device=None, progress=None, **overrides) -> Result:
    """Train the char GPT with k-Adam under each strategy and check App. T's per-level bounds.

    ``scale``: "smoke", "cpu", "gpu", "paper" or "auto"; ``overrides``: keys of :data:`LEVEL_BOUNDS`
    (model, batch_size, lr, steps, k, strategies, beta, gamma, weight_decay). Decoupled weight
    decay (``coupled=False``) leaves every ``u_n^(i)`` an adaptive normalization, so the bounds
    apply whatever the decay. Returns a :class:`Result` (see the module docstring).
    """
    scale, config = settings_for(LEVEL_BOUNDS, scale, overrides)
    seed, device = validate.seed("seed", seed), pick_device(device)
    task = CharTask(config, device)
    timer = step_timer("level_bounds", scale, steps=len(config["strategies"]) * config["steps"], device=device)
    points, arrays = [], {}
    for i, strategy in enumerate(config["strategies"]):
        levels = kadam_levels(config["k"], beta=config["beta"], gamma=config["gamma"], strategy=strategy)
        gen = seed_everything(seed)  # the same init and batches for every strategy
        model = GPT(task.gpt).to(device)
        opt = KAdam(model.parameters(), lr=config["lr"], levels=levels,
                    weight_decay=config["weight_decay"], coupled=False)
        rec = train(model, opt, timer.wrap(task.batch_fn(gen)), lambda m, b: m(*b)[1], steps=config["steps"],
                    progress=progress, desc=f"{strategy}, k={config['k']}")
        mu = rec.level_max_updates
        steps = np.arange(mu.shape[0])
        bd = _level_bounds(steps, levels, kind="discrete")
        bc = _level_bounds(steps, levels, kind="continuous")
        rd = bound_ratios(mu, levels, kind="discrete")
        rc = bound_ratios(mu, levels, kind="continuous")
        points.append(dict(
            index=i, strategy=strategy, k=len(levels),
            level_gamma=[lv.gamma for lv in levels], level_beta=[lv.beta for lv in levels],
            C=[float(bounds.stability_constant(lv.beta, lv.gamma)) for lv in levels],
            region=[str(bounds.region(lv.beta, lv.gamma)) for lv in levels],
            max_ratio_discrete=[float(x) for x in (rd.max(axis=0) if len(rd) else np.full(len(levels), np.nan))],
            max_ratio_continuous=[float(x) for x in (rc.max(axis=0) if len(rc) else np.full(len(levels), np.nan))],
            max_ratio_discrete_from_1=[float(x) for x in (rd[1:].max(axis=0) if len(rd) > 1 else np.full(len(levels), np.nan))],
            final_loss=float(rec.loss[-1]) if rec.steps_done else None,
            diverged_at=rec.diverged_at, steps_done=rec.steps_done, seconds=round(rec.seconds, 2),
        ))
        arrays.update({f"p{i}/loss": rec.loss, f"p{i}/level_max_updates": mu,
                       f"p{i}/bound_discrete": bd, f"p{i}/bound_continuous": bc})
    return Result(figure="level_bounds", scale=scale, config=config, data={"points": points}, arrays=arrays,
                  provenance=provenance(scale=scale, device=device, seed=seed))
