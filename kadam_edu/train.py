"""One training loop that records what the book's figures need, without waiting on the device.

Per step: loss, learning rate, the max-update ||u_n||_inf (Eq. 10; ``KAdam.last_max_update``),
the per-level max-updates (App. T), squared norms of chosen weights, and optionally their values
and gradients (for Eq. 12 and Fig. 4's cosine similarity with past gradients); evaluation
loss every ``eval_every`` steps. The per-step values stay on the device and reach the host
every ``log_every`` steps (one read), so a GPU is never stalled by a step. A run whose loss,
gradients, max-update or parameters stop being finite ends cleanly and records the step in
``diverged_at``: every array in the record holds finite values only. A population (E models of
one architecture stepped by one ``KAdam(..., members=E)``, :mod:`kadam_edu.population`) gets one
record per member, each what that member trained alone would record; members diverge one by one.

Schedules: :func:`warmup_cosine` (App. H) and :func:`annealed` (Eq. 15).
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from kadam_edu import bounds, validate
from kadam_edu.optim import KAdam
from kadam_edu.progress import bar as progress_bar
from kadam_edu.progress import enabled as progress_enabled

__all__ = ["TrainRecord", "train", "warmup_cosine", "annealed", "constant"]


# --------------------------------------------------------------------------- schedules
def constant(lr: float) -> Callable[[int], float]:
    """eta_n = lr."""
    lr = validate.finite_real("lr", lr, lo=0)
    return lambda n: lr


def warmup_cosine(*, lr: float, warmup: int, total: int, min_lr: float) -> Callable[[int], float]:
    """App. H: linear warmup over ``warmup`` steps, then cosine decay to ``min_lr`` at step ``total``."""
    lr, min_lr = validate.finite_real("lr", lr, lo=0), validate.finite_real("min_lr", min_lr, lo=0)
    if not (isinstance(warmup, int) and isinstance(total, int) and 0 <= warmup < total):
        raise ValueError(f"need ints 0 <= warmup < total; got warmup={warmup!r}, total={total!r}")

    def schedule(n: int) -> float:
        if n < warmup:
            return lr * (n + 1) / warmup
        progress = min(1.0, (n - warmup) / max(1, total - warmup))
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))

    return schedule


def annealed(*, lr: float, beta: float, gamma: float) -> Callable[[int], float]:
    """Eq. 15: eta_n = eta_0 exp(-n |C(beta, gamma)| / 2) in B- (constant elsewhere)."""
    lr = validate.finite_real("lr", lr, lo=0)
    bounds.stability_constant(beta, gamma)  # validates
    return lambda n: bounds.annealed_lr(n, lr, beta, gamma)


# --------------------------------------------------------------------------- record
@dataclass
class TrainRecord:
    """What one run recorded. Per-step arrays have one entry per completed step.

    loss, lr, max_update: [n]; level_max_updates: [n, k]; eval_steps, eval_loss: [number of evaluations];
    sq_norms[name]: [n + 1] (index 0 before training); values[name]: [n + 1, R] and
    grads[name]: [n, R] when asked for; diverged_at: the step whose loss, gradient or
    update stopped being finite (None if none); seconds: wall time.
    """

    loss: np.ndarray
    lr: np.ndarray
    max_update: np.ndarray
    level_max_updates: np.ndarray
    eval_steps: np.ndarray
    eval_loss: np.ndarray
    sq_norms: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)
    grads: dict[str, np.ndarray] = field(default_factory=dict)
    diverged_at: int | None = None
    seconds: float = 0.0

    @property
    def steps_done(self) -> int:
        return len(self.loss)

    def cosine_with_past_gradients(self, name: str, m: int | None = None) -> np.ndarray:
        """sim(W_m, g_n) = <W_m, g_n> / (||W_m|| ||g_n||) for n = 0..m-1 (App. G, Fig. 4); m = last step."""
        if name not in self.values or name not in self.grads:
            raise ValueError(f"{name!r} was not recorded with record_values=True and record_grads=True")
        m = self.steps_done if m is None else m
        if not 0 < m <= self.steps_done:
            raise ValueError(f"m must be in 1..{self.steps_done}; got {m!r}")
        W, G = self.values[name][m], self.grads[name][:m]
        denom = np.linalg.norm(W) * np.linalg.norm(G, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, G @ W / np.where(denom > 0, denom, 1.0), 0.0)


# --------------------------------------------------------------------------- loop
def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_fn: Callable[[int], object],
    loss_fn: Callable[[nn.Module, object], Tensor],
    *,
    steps: int,
    schedule: Callable[[int], float] | None = None,
    eval_fn: Callable[[nn.Module], float] | None = None,
    eval_every: int = 0,
    watch: Mapping[str, Callable[[], Tensor]] | None = None,
    record_values: bool = False,
    record_grads: bool = False,
    log_every: int = 50,
    progress: bool | None = None,
    desc: str | None = None,
) -> TrainRecord | list[TrainRecord]:
    """Train for ``steps`` steps and record the figures' quantities (see :class:`TrainRecord`).

    batch_fn(n) -> the batch of step n; loss_fn(model, batch) -> scalar loss tensor.
    schedule(n) -> learning rate of step n, a real >= 0 (default: the optimizer's own); it is
    called for every step before the first, so a bad value is refused before any work.
    eval_fn(model) -> a float, called in eval mode under no_grad every ``eval_every`` steps
    and after the last. watch: name -> a function returning a weight tensor (a view, e.g.
    one head's W_q rows); its squared norm is recorded every step, its values with
    ``record_values``, and its gradient (taken before the step) with ``record_grads``.

    log_every: the host reads the records every ``log_every`` steps, at each evaluation and
    after the last step; in between, every per-step quantity (loss, max-update, norms,
    finiteness flags) stays on the model's device, so a step makes no host synchronisation.

    Divergence: step n diverges when its loss, a gradient, the max-update or a parameter
    after the step is not finite; the record ends before it (``diverged_at = n``). The host
    sees it at the next log point, so up to ``log_every - 1`` more steps may have run on the
    device. They do not count: a device-side copy of the parameters, updated after each step
    only while every step so far was finite, is copied back, so the model ends with the
    parameters of step n - 1 (for any ``log_every``; the copy costs one parameter-sized
    buffer), and the gradients are cleared. Buffers (e.g. BatchNorm statistics) and the
    optimizer's state are not restored: build a new optimizer to train on. An error raised by
    one of those extra steps (e.g. a loss_fn that refuses nan weights) ends the run at the
    divergence too; an error with no divergence before it propagates.

    Populations (``optimizer`` a ``KAdam(..., members=E)``, every parameter [E, ...], e.g.
    :class:`~kadam_edu.population.PopulationGPT`): E runs at once, and train() returns a list of
    E records, member e's being what train() of member e alone (its weights, hyperparameters,
    batches and schedule) records, divergence included. Then loss_fn returns the E losses, a
    tensor [E] (the backward pass takes the sum of the losses of the members still training);
    schedule(n) returns one lr for all members or E of them (a sequence or 1-D numpy array;
    they go to the device once, as a [steps, E] table); eval_fn returns E values (a sequence,
    1-D array or tensor); each watch function returns a [E, ...] tensor, member e's weights
    being its slice e. Each member diverges on its own, as above: from step n on it is frozen
    (``KAdam.freeze_members``; KAdam freezes a member with a non-finite update itself), its
    record ends at n and the others go on; the run ends at the first log point where every
    member has diverged. A diverged member's slice of each parameter is that of its step n - 1
    (restored at the log point that sees the divergence) and its slice of each gradient is
    zeroed (all gradients are cleared once every member diverged). Freezing is permanent: a member
    frozen before the call (e.g. by an earlier call) records ``diverged_at = 0``. An error
    propagates unless every member diverged before it.

    Returns a :class:`TrainRecord`; for a population, a list of E of them (in member order).
    """
    steps = validate.integer("steps", steps, lo=0)
    eval_every = validate.integer("eval_every", eval_every, lo=0, meaning="0: only after the last step")
    log_every = validate.positive_int("log_every", log_every)
    progress_enabled(progress)  # a bad value is refused before any work
    for name, fn in (("batch_fn", batch_fn), ("loss_fn", loss_fn)):
        if not callable(fn):
            raise ValueError(f"{name} must be callable; got {fn!r}")
    is_kadam = isinstance(optimizer, KAdam)
    E = optimizer.members if is_kadam else None  # population size, None for one model
    M = 1 if E is None else E  # rows recorded per step
    params = list(model.parameters())
    if E is not None:
        for name, p in model.named_parameters():
            if p.ndim == 0 or p.shape[0] != E:
                raise ValueError(f"the optimizer trains a population of {E} members, so every parameter needs the "
                                 f"leading dimension {E}; parameter {name!r} has shape {tuple(p.shape)}")
    lrs = None if schedule is None else [_scheduled_lr(schedule, n, E) for n in range(steps)]
    watch = dict(watch or {})
    if E is not None:
        for name, fn in watch.items():
            view = fn()
            if not isinstance(view, Tensor) or view.ndim == 0 or view.shape[0] != E:
                raise ValueError(f"watch[{name!r}] must return a [{E}, ...] tensor (member e's weights in slice e); "
                                 f"got {_shape(view)}")
    k = len(KAdam.group_levels(optimizer.param_groups[0])) if is_kadam else 0
    device = params[0].device if params else torch.device("cpu")
    wide = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    if lrs is not None and E is not None:  # every step's per-member lrs, on the device at once
        lr_table = torch.tensor(np.reshape(lrs, (steps, E)), dtype=wide, device=device)

    # One row per step and member, on the device: [finite, loss, max-update, k level max-updates,
    # squared norms, values, grads]; ``initial`` holds the norms and values before step 0.
    def snapshot() -> list[Tensor]:
        views = [fn().detach().to(wide) for fn in watch.values()]
        cols = [_sum_of_squares(w, E) for w in views]
        return cols + [w.reshape(M, -1) for w in views] if record_values else cols

    with torch.no_grad():
        initial = torch.cat([torch.zeros(M, 0, dtype=wide, device=device), *snapshot()], dim=1)
        last_finite = [p.detach().clone() for p in params]  # parameters after the last finite step
    # every step so far was finite: 0-d, or per member [E]
    alive = torch.ones(() if E is None else (E,), dtype=torch.bool, device=device)
    sizes = [fn().numel() // M for fn in watch.values()]
    m = (1 + k) if is_kadam else 0
    width = 2 + m + len(sizes) + sum(sizes) * (record_values + record_grads)
    rows: list[list[np.ndarray]] = [[] for _ in range(M)]
    lr_l: list[list[float]] = [[] for _ in range(M)]
    ev_s: list[list[int]] = [[] for _ in range(M)]
    ev_l: list[list[float]] = [[] for _ in range(M)]
    diverged_at: list[int | None] = [None] * M
    pending: list[Tensor] = []
    pending_lr: list = []
    steps_read = 0  # steps whose rows reached the host

    def training() -> list[int]:
        """The members whose divergence the host has not seen."""
        return [e for e in range(M) if diverged_at[e] is None]

    def evaluate(n, members):
        model.eval()
        with torch.no_grad():
            values = _eval_values(eval_fn(model), E)
        model.train()
        for e in members:
            if math.isfinite(values[e]):
                ev_s[e].append(n)
                ev_l[e].append(float(values[e]))

    def settle() -> None:
        """Put the diverged members back to the parameters of their last finite step; drop their gradients."""
        all_diverged = not training()
        with torch.no_grad():
            for p, kept in zip(params, last_finite):
                torch.where(_along_members(alive, p.ndim), p, kept, out=p)
                if all_diverged:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.masked_fill_(_along_members(~alive, p.ndim), 0)

    def read() -> None:
        """Log point: fetch the pending rows (one host read); cut each member's record at its first non-finite step."""
        nonlocal steps_read
        block = torch.stack(pending).cpu().numpy()  # [steps, M, width]
        lr_block = _lr_rows(pending_lr, M)
        advanced = 0  # steps the progress bar moves: the most any member kept
        for e in training():
            bad = np.flatnonzero(block[:, e, 0] == 0.0)
            good = int(bad[0]) if bad.size else len(block)
            if bad.size:
                diverged_at[e] = steps_read + good
            rows[e].append(block[:good, e])
            lr_l[e].extend(lr_block[:good, e].tolist())
            advanced = max(advanced, good)
        steps_read += len(block)
        pending.clear()
        pending_lr.clear()
        if len(training()) < M:
            settle()
        if bar is not None:
            bar.update(advanced)
            losses = [rows[e][-1][-1, 1] for e in range(M) if rows[e] and len(rows[e][-1])]
            if advanced and losses:
                bar.set_postfix(loss=f"{min(losses):.3f}", **({} if E is None else {"training": len(training())}))

    start = time.perf_counter()
    bar = progress_bar(progress, total=steps, desc=desc)
    model.train()
    try:
        for n in range(steps):
            if lrs is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lrs[n] if E is None else lr_table[n]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch_fn(n))
            _check_loss(loss, E)
            (loss if E is None else torch.where(alive, loss, 0).sum()).backward()
            loss = loss.detach()
            finite = torch.isfinite(loss).reshape(alive.shape) & _all_finite(
                [p.grad for p in params if p.grad is not None], device, E)
            loss = loss.reshape(M, 1).to(device, wide)
            grads = [_grad_of_view(model, fn, wide, M) for fn in watch.values()] if record_grads else []
            if E is not None:  # a member whose loss or gradient is not finite does not step
                optimizer.freeze_members(~(alive & finite))
            optimizer.step()
            with torch.no_grad():
                cols = [loss]
                if is_kadam:
                    mu = _max_updates(optimizer, k, device, wide, M)
                    finite = finite & torch.isfinite(mu[:, 0]).reshape(alive.shape)
                    cols.append(mu)
                finite = finite & _all_finite(params, device, E)
                alive &= finite
                for p, kept in zip(params, last_finite):
                    torch.where(_along_members(alive, p.ndim), p, kept, out=kept)
                pending.append(torch.cat([finite.to(wide).reshape(M, 1), *cols, *snapshot(), *grads], dim=1))
            if lrs is not None:
                pending_lr.append(lrs[n])
            else:
                lr = optimizer.param_groups[0]["lr"]
                pending_lr.append(lr.detach().to(device, wide, copy=True) if isinstance(lr, Tensor) else lr)
            evaluate_now = eval_fn is not None and eval_every and (n + 1) % eval_every == 0
            if evaluate_now or (n + 1) % log_every == 0 or n + 1 == steps:
                read()
                if not training():
                    break
                if evaluate_now:
                    evaluate(n + 1, training())
    except Exception:
        # A step past a divergence the host has not seen yet runs on non-finite weights and may
        # fail; then the run ended at the divergence, as if the host had checked every step.
        if pending:
            read()
        if training():
            raise
    finally:
        if bar is not None:
            bar.close()
        if lrs is not None and E is not None:  # the group keeps its last lrs, not a view of the table
            for group in optimizer.param_groups:
                if isinstance(group["lr"], Tensor):
                    group["lr"] = group["lr"].clone()
    first = initial.cpu().numpy()
    if eval_fn is not None:
        due = [e for e in training() if not ev_s[e] or ev_s[e][-1] != steps_read]
        if due:
            evaluate(steps_read, due)
    seconds = time.perf_counter() - start
    records = [
        _record(rows[e], width, first[e], lr_l[e], ev_s[e], ev_l[e], diverged_at[e], seconds,
                watch=list(watch), sizes=sizes, m=m, record_values=record_values, record_grads=record_grads)
        for e in range(M)
    ]
    return records[0] if E is None else records


def _record(rows, width, first, lrs, ev_s, ev_l, diverged_at, seconds, *, watch, sizes, m,
            record_values, record_grads) -> TrainRecord:
    """One member's TrainRecord from its rows [n, width] and its row before step 0."""
    table = np.concatenate(rows) if rows else np.zeros((0, width))
    sq_norms, values, grads = {}, {}, {}
    at = {"sq": 2 + m, "values": 2 + m + len(sizes), "grads": 2 + m + len(sizes) + sum(sizes) * record_values}
    offset = 0
    for i, (name, size) in enumerate(zip(watch, sizes)):
        sq_norms[name] = np.concatenate([first[i:i + 1], table[:, at["sq"] + i]])
        if record_values:
            start_values = first[len(sizes) + offset:len(sizes) + offset + size]
            values[name] = np.vstack([start_values, table[:, at["values"] + offset:at["values"] + offset + size]])
        if record_grads:
            grads[name] = table[:, at["grads"] + offset:at["grads"] + offset + size].copy()
        offset += size
    if m:
        max_update, level_max_updates = table[:, 2].copy(), table[:, 3:2 + m].copy()
    else:  # no max-update to record
        max_update, level_max_updates = np.zeros(0), np.zeros((0, 0))
    return TrainRecord(
        loss=table[:, 1].copy(),
        lr=np.asarray(lrs, dtype=float),
        max_update=max_update,
        level_max_updates=level_max_updates,
        eval_steps=np.asarray(ev_s, dtype=int),
        eval_loss=np.asarray(ev_l, dtype=float),
        sq_norms=sq_norms,
        values=values,
        grads=grads,
        diverged_at=diverged_at,
        seconds=seconds,
    )


def _shape(x) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else f"{type(x).__name__} {x!r:.80}"


def _scheduled_lr(schedule: Callable[[int], float], n: int, members: int | None = None) -> float | np.ndarray:
    """schedule(n) as a float, refused unless it is a finite real >= 0 (a negative lr is gradient ascent).

    For a population of ``members``: an array [members], from one real or ``members`` of them."""
    value = schedule(n)
    if members is not None and not isinstance(value, numbers.Real):
        per_member = isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1)
        if per_member and len(value) == members:
            for lr in value:
                _check_scheduled(lr, value, n)
            return np.asarray(value, dtype=float)
        raise ValueError(
            f"schedule({n}) returned {value!r}; with a population of {members} members it must return one "
            f"learning rate for all (a Python float) or a sequence / 1-D numpy array of {members} learning "
            "rates (one per member), each a finite real >= 0"
        )
    lr = _check_scheduled(value, value, n)
    return lr if members is None else np.full(members, lr)


def _check_scheduled(lr, value, n: int) -> float:
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr < 0:
        raise ValueError(
            f"schedule({n}) returned {value!r}; a learning rate must be a finite real >= 0 (a Python float)"
        )
    return float(lr)


def _lr_rows(lrs: list, members: int) -> np.ndarray:
    """The learning rates of some steps as [steps, members]: floats and host arrays as they are,
    device tensors (a group's tensor lr) fetched together in one host read."""
    tensors = [lr.reshape(-1) for lr in lrs if isinstance(lr, Tensor)]
    fetched = iter(torch.stack(tensors).cpu().numpy() if tensors else ())
    out = np.empty((len(lrs), members))
    for i, lr in enumerate(lrs):
        out[i] = next(fetched) if isinstance(lr, Tensor) else lr
    return out


def _check_loss(loss, members: int | None) -> None:
    """loss_fn's value: a scalar tensor for one model, a tensor [E] for a population."""
    if members is None:
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(
                "loss_fn must return a scalar loss (a tensor with one element; a population of E models returns "
                f"its E losses, with an optimizer KAdam(..., members=E)); got {_shape(loss)}"
            )
    elif not isinstance(loss, Tensor) or loss.shape != (members,):
        raise ValueError(
            f"loss_fn must return one loss per member, a tensor of shape [{members}]; got {_shape(loss)}"
        )


def _eval_values(value, members: int | None) -> np.ndarray:
    """eval_fn's value as a float array [1], or [E] for a population of E members."""
    if members is None:
        return np.array([float(value)])
    if isinstance(value, Tensor):
        value = value.detach().cpu().double().numpy()
    try:
        values = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        values = None
    if values is None or values.shape != (members,):
        got = (f"{values.size} values" if values is not None and values.ndim == 1 else
               f"an array of shape {values.shape}" if values is not None and values.ndim > 1 else repr(value))
        raise ValueError(
            f"eval_fn must return {members} values (one per member: a sequence, 1-D array or tensor); got {got}"
        )
    return values


def _all_finite(tensors: list[Tensor], device: torch.device, members: int | None = None) -> Tensor:
    """Every entry of every tensor is finite: a 0-d bool tensor on ``device``, or per member [E]
    (tensors [E, ...]); no host sync.

    min and max propagate nan, so one aminmax per tensor decides it without a bool copy of each.
    """
    if members is None:
        ends = [end.to(device) for t in tensors if t.numel() for end in torch.aminmax(t.detach())]
    else:
        ends = [end.to(device) for t in tensors if t.numel()
                for end in torch.aminmax(t.detach().reshape(members, -1), dim=1)]
    if not ends:
        return torch.ones(() if members is None else (members,), dtype=torch.bool, device=device)
    return torch.isfinite(torch.stack(ends)).all(0)


def _along_members(mask: Tensor, ndim: int) -> Tensor:
    """A per-member mask [E] as [E, 1, ..., 1] against an ndim-d parameter; a 0-d mask as it is."""
    return mask if mask.ndim == 0 else mask.view(-1, *(1,) * (ndim - 1))


def _sum_of_squares(w: Tensor, members: int | None) -> Tensor:
    """||w||^2 as [1, 1], or per member [E, 1] for w [E, ...]."""
    if members is None:
        return w.pow(2).sum().reshape(1, 1)
    return w.reshape(members, -1).pow(2).sum(1, keepdim=True)


def _max_updates(optimizer: KAdam, k: int, device: torch.device, dtype: torch.dtype, members: int) -> Tensor:
    """[||u_n||_inf, ||u_n^(1)||_inf, ..., ||u_n^(k)||_inf] of the last step (Eq. 10, App. T) per member:
    [members, 1 + k] on ``device`` (members = 1 for one model); nan before KAdam's first step."""
    mu = optimizer.last_max_update_tensor
    if mu is None:
        return torch.full((members, 1 + k), math.nan, dtype=dtype, device=device)
    levels = optimizer.last_level_max_updates_tensor
    return torch.cat([mu.reshape(members, 1).to(device, dtype), levels.reshape(members, k).to(device, dtype)], dim=1)


def _grad_of_view(model: nn.Module, view_fn: Callable[[], Tensor], dtype: torch.dtype, members: int) -> Tensor:
    """The gradient entries that match a watched weight view (the view's slicing applied to .grad),
    copied as a ``dtype`` tensor [members, -1] on the gradient's device (members = 1 for one model)."""
    view = view_fn()
    for p in model.parameters():
        if p.grad is not None and view.untyped_storage().data_ptr() == p.untyped_storage().data_ptr():
            if not (p.is_contiguous() and p.grad.is_contiguous()):
                raise ValueError("watched weights must be views of contiguous parameters")
            offset = view.storage_offset() - p.storage_offset() + p.grad.storage_offset()
            g = torch.as_strided(p.grad, view.shape, view.stride(), offset)
            return g.reshape(members, -1).to(dtype, copy=True)
    raise ValueError("a watched weight is not a view of any parameter that has a gradient")
