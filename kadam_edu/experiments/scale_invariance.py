r"""Section 4.1 and App. G, J, K: scale invariance under qk-norm, and the continuous dynamics.

fig4 (App. G, Assumption 1): cosine similarity sim(W_N, g_n) of every query/key matrix W after
N steps with the gradients g_n of all earlier steps, with and without qk-norm.
fig5 (App. G, Assumption 2): trajectories of 16 query/key entries under Adam and under Adam
with a coarse-grained second moment v_W (:func:`coarse_grained_adam`).
fig7 (App. K): (a) the Eq. 4 ODE (App. I) against discrete AdamW for 16 parameters;
(b) ||W_n||^2 of 16 query/key matrices against Eq. 12 and Eq. 8.

None of these is a sweep: ``shard`` must be None.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from kadam_edu import validate
from kadam_edu.continuous import (
    FIRST_WINDOW_REFINEMENT,
    METHODS,
    Trajectory,
    discrete_adam_trajectory,
    solve_adam_ode,
    sq_norm_eq8,
    sq_norm_eq12,
    update_terms,
)
from kadam_edu.experiments.common import (
    CHAR_RUNS,
    CHAR_SPEC,
    REFERENCE,
    CharTask,
    Presets,
    char_gpt_run,
    check_model_overrides,
    settings_for,
    step_timer,
)
from kadam_edu.experiments.result import Result, provenance
from kadam_edu.models import GPT, flat_indices, gpt_config
from kadam_edu.optim import bias_correction
from kadam_edu.progress import bar as progress_bar
from kadam_edu.scale import StepTimer, pick_device, seed_everything
from kadam_edu.validate import Choice, Int

__all__ = ["fig4", "fig5", "fig7", "coarse_grained_adam", "char_coarse_grained_run", "FIG4", "FIG5", "FIG7"]

_CHAR = {  # App. H at PyTorch's (beta, gamma); the cpu and smoke models are the DESIGN's
    scale: dict(run, beta=REFERENCE[0], gamma=REFERENCE[1]) for scale, run in dict(
        CHAR_RUNS,
        # gpu: the 4-layer, 4-head, 128-wide GPT at App. H's batch: 32 query/key heads of 32 x 128
        # (the cpu model has 16 of 16 x 64), closer to the paper's 72 of 64 x 384; these figures train
        # for 100 steps, so the larger model costs seconds (Fig. 7's ODE: minutes)
        gpu=dict(CHAR_RUNS["paper"], model="gpu"),
    ).items()
}


#: Specs of the keys of this module's presets (CHAR_SPEC: the char GPT's).
SPEC = dict(
    CHAR_SPEC,
    params=Int(1, meaning="parameters recorded"),
    heads=Int(1, meaning="query/key matrices recorded"),
    method=Choice(METHODS, "the ODE solver, App. I"),
    substeps=Int(1, meaning="K of App. I"),
)


def _fig7_rules(config: dict) -> None:
    """Rules of Fig. 7: the model overrides fit the model, and dropout is 0 (a deterministic loss)."""
    check_model_overrides(config)
    dropout = gpt_config(config["model"], **config["model_overrides"]).dropout
    if dropout != 0:
        raise ValueError(f"fig7 needs dropout 0 (got {dropout}): the ODE is solved for a deterministic loss per "
                         "batch; set model_overrides={'qk_norm': ..., 'dropout': 0.0}")


def _not_a_sweep(figure: str, shard) -> None:
    if shard is not None:
        raise ValueError(f"{figure} is not a sweep: it runs as one job; shard must be None, got {shard!r}")


def _flat_size(model: nn.Module) -> int:
    """Length of the flattened parameter vector of :mod:`kadam_edu.continuous` and :func:`flat_indices`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _flat(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


def _describe(model: nn.Module, index: int) -> str:
    """'name[r, c]' of a position in the flattened parameter vector (for plot legends)."""
    offset = 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if index < offset + p.numel():
            pos = np.unravel_index(index - offset, tuple(p.shape))
            return f"{name}[{', '.join(str(int(i)) for i in pos)}]"
        offset += p.numel()
    raise ValueError(f"index {index} is beyond the {offset} parameters")


# =========================================================================== fig4
FIG4 = Presets("fig4", {
    "paper": dict(_CHAR["paper"], steps=100),
    "cpu": dict(_CHAR["cpu"], steps=100),
    "gpu": dict(_CHAR["gpu"], steps=100),
    "smoke": dict(_CHAR["smoke"], steps=20),
}, spec=SPEC)

#: the two runs of fig4 and fig4's array prefixes
QK_SETTINGS = {"qk_norm": True, "no_qk_norm": False}


def fig4(scale="auto", *, seed=0, device=None, shard=None, progress=None, **overrides):
    r"""Cosine similarity of each query/key matrix with past gradients (Fig. 4, App. G, Assumption 1).

    The char GPT is trained with Adam at (beta, gamma) = (0.999, 0.9) for N = ``steps`` steps,
    once with qk-norm (the loss is scale invariant in every query/key head W, so
    <W_n, g_n> = 0 by Eq. 6 / App. L) and once without. For every head, with g_n the gradient
    taken at W_n (before update n):

    - ``{setting}/cosine`` [heads, N]: sim(W_N, g_n) = <W_N, g_n> / (||W_N|| ||g_n||), n = 0..N-1;
    - ``{setting}/cosine_current`` [heads]: sim(W_N, g_N), the gradient at W_N itself, the
      paper's "n = 100" point, which is exactly Eq. 6 (0 up to rounding under qk-norm). To get
      g_N one extra step is run; only its gradient is used (its update is never recorded);
    - ``{setting}/loss`` [N].

    Under qk-norm sim(W_N, g_{N-1}) is small but not 0: <W_{N-1}, g_{N-1}> = 0, so
    |sim(W_N, g_{N-1})| <= ||W_N - W_{N-1}|| / ||W_N||, stored as ``{setting}/last_step_bound``
    [heads] (about eta ||u|| / ||W||, not small next to 0). ``data``: ``heads`` (labels, rows of
    the arrays) and per setting ``max_abs_cos_last`` (n = N-1), ``max_abs_cos_all``
    (all n < N) and ``max_abs_cos_current`` (n = N). Dropout is the model preset's.
    Memory: every head's values and gradients are kept for every step (about 3 GB at paper scale).
    """
    _not_a_sweep("fig4", shard)
    scale, config = settings_for(FIG4, scale, overrides)
    seed, device = validate.seed("seed", seed), pick_device(device)
    steps = config["steps"]
    data, arrays = {"settings": list(QK_SETTINGS)}, {}
    timer = step_timer("fig4", scale, steps=len(QK_SETTINGS) * (steps + 1), device=device)
    for setting, qk_norm in QK_SETTINGS.items():
        # steps + 1: the last step only supplies g_N, the gradient at W_N
        task = CharTask(dict(config, steps=steps + 1, model_overrides={"qk_norm": qk_norm}), device)
        model, rec = char_gpt_run(task, beta=config["beta"], gamma=config["gamma"], seed=seed, watch_heads=True,
                                  record_values=True, record_grads=True, progress=progress, desc=f"fig4 {setting}",
                                  timer=timer)
        if rec.diverged_at is not None:
            raise RuntimeError(f"fig4 {setting}: training diverged at step {rec.diverged_at}")
        labels = [h.label for h in model.query_key_heads()]
        cos = np.stack([rec.cosine_with_past_gradients(name, m=steps) for name in labels])
        current = np.array([_cosine(rec.values[name][steps], rec.grads[name][steps]) for name in labels])
        last_step = np.array([np.linalg.norm(rec.values[name][steps] - rec.values[name][steps - 1])
                              / np.linalg.norm(rec.values[name][steps]) for name in labels])
        data["heads"] = labels
        data[setting] = {
            "max_abs_cos_last": float(np.abs(cos[:, -1]).max()),
            "max_abs_cos_all": float(np.abs(cos).max()),
            "max_abs_cos_current": float(np.abs(current).max()),
            "final_loss": float(rec.loss[steps - 1]),
        }
        arrays.update({f"{setting}/cosine": cos, f"{setting}/cosine_current": current,
                       f"{setting}/last_step_bound": last_step, f"{setting}/loss": rec.loss[:steps]})
    return Result(figure="fig4", scale=scale, config=config, data=data, arrays=arrays,
                  provenance=provenance(scale=scale, device=device, seed=seed))


def _cosine(w: np.ndarray, g: np.ndarray) -> float:
    denom = np.linalg.norm(w) * np.linalg.norm(g)
    return float(w @ g / denom) if denom > 0 else 0.0


# =========================================================================== fig5
def coarse_grained_adam(
    model: nn.Module,
    batch_fn: Callable[[int], object],
    loss_fn: Callable[[nn.Module, object], Tensor],
    *,
    steps: int,
    lr: float,
    beta: float,
    gamma: float,
    blocks: Sequence,
    coarse_grain: bool = True,
    eps: float = 1e-30,
    record=None,
    progress: bool | None = False,
    desc: str | None = None,
) -> tuple[Trajectory, np.ndarray]:
    r"""Adam (Eq. 1, no weight decay) with the coarse-grained second moment of Assumption 2 (App. J, G).

    Trains ``model`` in place for ``steps`` steps; step n uses ``loss_fn(model, batch_fn(n))``.
    ``blocks``: the weights W to coarse-grain, objects with ``.param`` and ``.rows``
    (e.g. :meth:`GPT.query_key_heads`): W = ``param[rows]``.

    The state is Adam's own: m and the per-entry v_n = beta v_{n-1} + (1 - beta) g_n^2 (the
    true v is kept). Only the denominator of the update changes: for each block W, v is
    replaced by its mean over W's N entries,

        v~_W,n = mean_W(v_n) = sum_j (1 - beta) beta^(n-j) ||g_W,j||^2 / N,

    which, the EMA being linear, is the EMA of the mean squared gradient: the discrete form
    of v~_W(t) = int K_beta(tau, t) ||g_W(tau)||^2 / N dtau (Assumption 2). Then
    u_n = c_n m_n / (sqrt(v~_n) + eps) with Eq. 1's bias correction c_n, and
    theta_{n+1} = theta_n - eta u_n. Entries outside the blocks use their own v.

    With ``coarse_grain=False`` the arithmetic is ``KAdam(k=1)``'s single-tensor path line by
    line, so it reproduces ``KAdam`` bit for bit on the CPU (tests check this); seeded the
    same way, the two runs see the same batches and dropout masks.

    record: indices into the flattened parameter vector (see :func:`flat_indices`), default all.
    progress: a bar over the steps (:func:`kadam_edu.progress.bar`; None: ``$KADAM_PROGRESS``).
    Returns (a :class:`Trajectory` with theta [steps + 1, R], the losses [steps]).
    """
    coarse_grain = validate.boolean("coarse_grain", coarse_grain)
    params = [p for p in model.parameters() if p.requires_grad]
    idx = None if record is None else torch.as_tensor(record, dtype=torch.long).reshape(-1)
    if idx is not None and (idx.numel() == 0 or idx.min() < 0 or idx.max() >= _flat_size(model)):
        raise ValueError(f"record must be indices into the {_flat_size(model)} flattened parameters; got {record!r}")
    rows_of: dict[int, list[slice]] = {}
    for b in blocks:
        if not any(b.param is p for p in params):
            raise ValueError("every block's param must be a trainable parameter of model")
        rows_of.setdefault(id(b.param), []).append(b.rows)
    m = {p: torch.zeros_like(p) for p in params}
    v = {p: torch.zeros_like(p) for p in params}

    def snapshot():
        flat = _flat(model)
        return (flat if idx is None else flat[idx.to(flat.device)]).clone()

    out, losses = [snapshot()], []
    bar = progress_bar(progress, total=steps, desc=desc)
    model.train()
    for n in range(steps):
        for p in params:
            p.grad = None
        loss = loss_fn(model, batch_fn(n))
        loss.backward()
        c = bias_correction(n, beta=beta, gamma=gamma)  # Eq. 1's c_n
        with torch.no_grad():
            for p in params:
                if p.grad is None:
                    continue
                g = p.grad
                m[p].lerp_(g, 1 - gamma)  # m <- gamma m + (1 - gamma) g
                v[p].mul_(beta).addcmul_(g, g, value=1 - beta)  # v <- beta v + (1 - beta) g^2
                denom = v[p]
                if coarse_grain and id(p) in rows_of:
                    denom = v[p].clone()
                    for rows in rows_of[id(p)]:
                        denom[rows] = v[p][rows].mean()  # Assumption 2: v~_W = mean over W of v
                u = torch.sqrt(denom).add_(eps)
                torch.div(m[p], u, out=u).mul_(c)
                p.add_(u, alpha=-lr)
        losses.append(float(loss.detach()))
        out.append(snapshot())
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    traj = Trajectory(theta=torch.stack(out), times=torch.arange(steps + 1, dtype=torch.float64) * lr,
                      grad_evals=steps, indices=idx, method="coarse-grained" if coarse_grain else "discrete",
                      substeps=1)
    return traj, np.asarray(losses)


FIG5 = Presets("fig5", {
    # fig4's runs; App. G trains with qk-norm so that each query/key matrix is scale invariant
    scale: dict(preset, params=16, model_overrides={"qk_norm": True}) for scale, preset in FIG4.items()
}, spec=SPEC, rules=check_model_overrides)


def char_coarse_grained_run(task: CharTask, *, seed: int, coarse_grain: bool, record=None, progress=None, desc=None,
                            timer: StepTimer | None = None):
    """:func:`coarse_grained_adam` on the char GPT, set up exactly as :func:`char_gpt_run`
    (same seed, initialisation, batches and dropout masks), coarse-graining every query/key head.
    ``timer``: a :func:`~kadam_edu.experiments.common.step_timer` that ticks on every batch drawn.
    Returns (the trained model, the :class:`Trajectory`, the losses)."""
    gen = seed_everything(seed)
    model = GPT(task.gpt).to(task.device)
    batch_fn = task.batch_fn(gen) if timer is None else timer.wrap(task.batch_fn(gen))
    traj, loss = coarse_grained_adam(
        model, batch_fn, lambda mdl, b: mdl(*b)[1], steps=task.config["steps"], lr=task.config["lr"],
        beta=task.config["beta"], gamma=task.config["gamma"], blocks=model.query_key_heads(),
        coarse_grain=coarse_grain, record=record, progress=progress, desc=desc,
    )
    return model, traj, loss


def _random_qk_entries(model: GPT, k: int, gen: torch.Generator) -> tuple[list[int], list[str]]:
    """k distinct entries of random query/key heads (distinct heads while there are enough):
    their positions in the flattened parameters and labels such as "L0 q h1 [r, c]"."""
    heads = model.query_key_heads()
    if len(heads) >= k:
        picks = torch.randperm(len(heads), generator=gen)[:k]
    else:
        picks = torch.randint(len(heads), (k,), generator=gen)
    indices, labels = [], []
    for h in picks.tolist():
        head = heads[h]
        flat = flat_indices(model, head.param, head.rows)
        j = int(torch.randint(flat.numel(), (1,), generator=gen))
        while int(flat[j]) in indices:
            j = int(torch.randint(flat.numel(), (1,), generator=gen))
        indices.append(int(flat[j]))
        cols = head.param.shape[1]
        labels.append(f"{head.label} [{j // cols}, {j % cols}]")
    return indices, labels


def fig5(scale="auto", *, seed=0, device=None, shard=None, progress=None, **overrides):
    r"""Adam against Adam with coarse-grained v_W on every query/key head (Fig. 5, App. G, Assumption 2).

    Both runs use :func:`coarse_grained_adam` (the regular one with ``coarse_grain=False``,
    which is ``KAdam(k=1)`` bit for bit on the CPU), start from the same initialisation and see
    the same batches and dropout masks (same ``seed``), with qk-norm (App. G) and the model
    preset's dropout.
    ``params`` entries are drawn with a generator seeded by ``seed``: a random query/key head
    (distinct heads while there are enough), then a random entry of it.

    arrays: ``adam/theta``, ``coarse/theta`` [steps + 1, params]; ``times`` [steps + 1] (t_n = n eta);
    ``adam/loss``, ``coarse/loss`` [steps]. data: ``params`` (labels "L0 q h1 [r, c]"),
    ``relative_difference`` = max_n ||theta~_n - theta_n|| / max_n ||theta_n - theta_0||
    (:meth:`Trajectory.relative_error`), the per-parameter version (max_n |difference| over
    max_n |theta_n - theta_0|), ``relative_difference_vs_value`` = max_n ||theta~_n - theta_n|| /
    max_n ||theta_n|| (the difference next to the values a plot of Fig. 5 shows), and the final losses.
    """
    _not_a_sweep("fig5", shard)
    scale, config = settings_for(FIG5, scale, overrides)
    seed, device = validate.seed("seed", seed), pick_device(device)
    task = CharTask(config, device)
    indices, labels = _random_qk_entries(GPT(task.gpt), config["params"], torch.Generator().manual_seed(seed))
    timer = step_timer("fig5", scale, steps=2 * config["steps"], device=device)

    def run(coarse_grain, name):
        _, traj, loss = char_coarse_grained_run(task, seed=seed, coarse_grain=coarse_grain, record=indices,
                                                progress=progress, desc=f"fig5 {name}", timer=timer)
        return traj, loss

    (adam, adam_loss), (coarse, coarse_loss) = run(False, "adam"), run(True, "coarse")
    a, c = adam.theta.double().cpu().numpy(), coarse.theta.double().cpu().numpy()
    moved = np.abs(a - a[0]).max(axis=0)
    scale_of_values = np.linalg.norm(a, axis=1).max()
    data = {
        "params": labels,
        "indices": indices,
        "relative_difference": coarse.relative_error(adam),
        "relative_difference_vs_value": float(np.linalg.norm(c - a, axis=1).max() / scale_of_values),
        "relative_difference_per_param": (np.abs(c - a).max(axis=0) / np.where(moved > 0, moved, 1.0)).tolist(),
        "final_loss": {"adam": float(adam_loss[-1]), "coarse": float(coarse_loss[-1])},
    }
    arrays = {"adam/theta": a, "coarse/theta": c, "times": adam.times.numpy(), "adam/loss": adam_loss,
              "coarse/loss": coarse_loss}
    return Result(figure="fig5", scale=scale, config=config, data=data, arrays=arrays,
                  provenance=provenance(scale=scale, device=device, seed=seed))


# =========================================================================== fig7
#: The ODE solver of Fig. 7 at each scale: method and K substeps (App. I).
_FIG7_SOLVER = {
    "paper": dict(method="euler", substeps=100),  # App. K: K = 100 Euler substeps
    # the exponential integrator at 4 substeps tracks Adam as well as Euler at 100 (benchmarks/ode_accuracy.py)
    "cpu": dict(method="exp", substeps=4),
    # App. K's integrator (Euler, K = 100: 10,000 gradients) on the gpu model: about 3 min on a T4
    "gpu": dict(method="euler", substeps=100),
    "smoke": dict(method="exp", substeps=2),
}

FIG7 = Presets("fig7", {
    # fig4's runs, with App. K's p = 1, eta = 1e-3, (beta, gamma) = (0.999, 0.9). Dropout 0: the ODE
    # needs a deterministic loss per batch. weight_decay: decoupled (AdamW), non-zero so that the lam
    # terms of Eq. 4 and Eq. 12 take part.
    scale: dict(FIG4[scale], weight_decay=0.1, **_FIG7_SOLVER[scale], params=16, heads=16,
                model_overrides={"qk_norm": True, "dropout": 0.0})
    for scale in FIG4
}, spec=SPEC, rules=_fig7_rules)


def _ode_grad_evals(method: str, steps: int, substeps: int) -> int:
    """The gradient evaluations :func:`solve_adam_ode` spends: one at t = 0, then per step K
    ("euler", App. I) or K + 1 ("exp", whose first window takes FIRST_WINDOW_REFINEMENT x K substeps)."""
    if method == "euler":
        return 1 + steps * substeps
    return 1 + steps + substeps * (FIRST_WINDOW_REFINEMENT + steps - 1)


def _max_relative_error(pred: np.ndarray, true: np.ndarray) -> float:
    """max over heads and n of |pred - true| / true (true = ||W_n||^2 > 0)."""
    return float((np.abs(pred - true) / true).max())


def _error_vs_change(pred: np.ndarray, true: np.ndarray) -> float:
    """max over heads of max_n |pred - true| / max_n |true_n - true_0|: the error as a fraction of the change."""
    change = np.abs(true - true[:, :1]).max(axis=1)
    return float((np.abs(pred - true).max(axis=1) / np.where(change > 0, change, 1.0)).max())


def fig7(scale="auto", *, seed=0, device=None, shard=None, progress=None, **overrides):
    r"""The Eq. 4 ODE against discrete AdamW, and Eq. 12 / Eq. 8 against ||W_n||^2 (Fig. 7, App. K).

    The char GPT with qk-norm and dropout 0 (the ODE needs a deterministic loss, so batch n is
    fixed: the ``steps`` batches are drawn once from a generator seeded by ``seed``) is trained
    by AdamW (:func:`discrete_adam_trajectory`, decoupled ``weight_decay``) and integrated by
    :func:`solve_adam_ode` (``method``, ``substeps`` = K of App. I, p = 1) from the same start
    on the same batches.

    (a) ``params`` random entries of the whole model: ``ode/theta``, ``adam/theta``
        [steps + 1, params], ``times`` [steps + 1] (t_n = n eta). data ``ode_relative_error``
        = max_n ||theta_ode - theta_adam|| / max_n ||theta_adam - theta_0||.
    (b) ``heads`` random query/key matrices W (fewer if the model has fewer): from the full
        discrete trajectory of each W, ``norms/true`` = ||W_n||^2, ``norms/eq12`` (Eq. 12 with
        u_W,n and <W_n, u_W,n> from :func:`update_terms`, App. I) and ``norms/eq8`` (Eq. 8, which
        drops <W, u_W>), each [heads, steps + 1], plus ``norms/w_dot_u`` [heads, steps].
        data: ``eq12_max_relative_error``/``eq8_...`` = max |pred - true| / true, and
        ``eq12_error_vs_change``/``eq8_...`` = the error as a fraction of max_n |true_n - true_0|.
    ``progress``: a counter of gradient evaluations (the solvers have no progress bar).
    """
    _not_a_sweep("fig7", shard)
    scale, config = settings_for(FIG7, scale, overrides)
    seed, device = validate.seed("seed", seed), pick_device(device)
    task = CharTask(config, device)
    gen = seed_everything(seed)
    model = GPT(task.gpt).to(device)
    next_batch = task.batch_fn(gen)
    batches = [next_batch(n) for n in range(config["steps"])]
    bar = progress_bar(progress, desc="fig7 gradient evaluations")
    # every gradient evaluation: the discrete run's one per step, then the ODE solver's
    timer = step_timer("fig7", scale, device=device, steps=config["steps"] + _ode_grad_evals(
        config["method"], config["steps"], config["substeps"]))

    def loss_fn(mdl, n):
        timer.tick()
        if bar is not None:
            bar.update(1)
        return mdl(*batches[n])[1]

    pick = torch.Generator().manual_seed(seed)
    size = _flat_size(model)
    params = torch.randperm(size, generator=pick)[: config["params"]].sort().values
    heads = model.query_key_heads()
    chosen = sorted(torch.randperm(len(heads), generator=pick)[: config["heads"]].tolist())
    head_idx = [flat_indices(model, heads[h].param, heads[h].rows) for h in chosen]

    kw = dict(steps=config["steps"], lr=config["lr"], beta=config["beta"], gamma=config["gamma"],
              weight_decay=config["weight_decay"])
    adam = discrete_adam_trajectory(model, loss_fn, record=torch.cat([params, *head_idx]), **kw)
    ode = solve_adam_ode(model, loss_fn, record=params, method=config["method"], substeps=config["substeps"], **kw)
    if bar is not None:
        bar.close()
    k = len(params)
    adam_params = Trajectory(theta=adam.theta[:, :k], times=adam.times, grad_evals=adam.grad_evals,
                             indices=params, method=adam.method, substeps=1)

    true, eq12, eq8, w_dot_u = [], [], [], []
    offset = k
    for idx in head_idx:
        W = adam.theta[:, offset: offset + idx.numel()].double().cpu()
        offset += idx.numel()
        phi = (W * W).sum(1).numpy()
        u_sq, wu = update_terms(W, lr=config["lr"], weight_decay=config["weight_decay"])
        true.append(phi)
        eq12.append(sq_norm_eq12(phi[0], u_sq, wu, lr=config["lr"], weight_decay=config["weight_decay"]))
        eq8.append(sq_norm_eq8(phi[0], u_sq, lr=config["lr"], weight_decay=config["weight_decay"]))
        w_dot_u.append(wu)
    true, eq12, eq8 = np.stack(true), np.stack(eq12), np.stack(eq8)

    data = {
        "params": [_describe(model, i) for i in params.tolist()],
        "indices": params.tolist(),
        "heads": [heads[h].label for h in chosen],
        "ode_relative_error": ode.relative_error(adam_params),
        "method": ode.method,
        "substeps": ode.substeps,
        "grad_evals": {"ode": ode.grad_evals, "adam": adam.grad_evals},
        "eq12_max_relative_error": _max_relative_error(eq12, true),
        "eq8_max_relative_error": _max_relative_error(eq8, true),
        "eq12_error_vs_change": _error_vs_change(eq12, true),
        "eq8_error_vs_change": _error_vs_change(eq8, true),
    }
    arrays = {
        "ode/theta": ode.theta.double().cpu().numpy(),
        "adam/theta": adam_params.theta.double().cpu().numpy(),
        "times": adam.times.numpy(),
        "norms/true": true,
        "norms/eq12": eq12,
        "norms/eq8": eq8,
        "norms/w_dot_u": np.stack(w_dot_u),
    }
    return Result(figure="fig7", scale=scale, config=config, data=data, arrays=arrays,
                  provenance=provenance(scale=scale, device=device, seed=seed))
