"""One training loop that records what the book's figures need, without waiting on the device.

Per step: loss, learning rate, the max-update ||u_n||_inf (Eq. 10; ``KAdam.last_max_update``),
the per-level max-updates (App. T), squared norms of chosen weights, and optionally their values
and gradients (for Eq. 12 and Fig. 4's cosine similarity with past gradients); evaluation
loss every ``eval_every`` steps. The per-step values stay on the device and reach the host
every ``log_every`` steps (one read), so a GPU is never stalled by a step. A run whose loss,
gradients, max-update or parameters stop being finite ends cleanly and records the step in
``diverged_at``: every array in the record holds finite values only.

Schedules: :func:`warmup_cosine` (App. H) and :func:`annealed` (Eq. 15).
"""

from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from kadam_edu import bounds
from kadam_edu.optim import KAdam

__all__ = ["TrainRecord", "train", "warmup_cosine", "annealed", "constant"]


# --------------------------------------------------------------------------- schedules
def constant(lr: float) -> Callable[[int], float]:
    """eta_n = lr."""
    lr = _check_lr(lr, "lr")
    return lambda n: lr


def warmup_cosine(*, lr: float, warmup: int, total: int, min_lr: float) -> Callable[[int], float]:
    """App. H: linear warmup over ``warmup`` steps, then cosine decay to ``min_lr`` at step ``total``."""
    lr, min_lr = _check_lr(lr, "lr"), _check_lr(min_lr, "min_lr")
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
    lr = _check_lr(lr, "lr")
    bounds.stability_constant(beta, gamma)  # validates
    return lambda n: bounds.annealed_lr(n, lr, beta, gamma)


def _check_lr(lr, name):
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {lr!r}")
    return float(lr)


# --------------------------------------------------------------------------- record
@dataclass
class TrainRecord:
    """What one run recorded. Per-step arrays have one entry per completed step.

    loss, lr, max_update: [n]; level_max_updates: [n, k]; eval_steps, eval_loss: [E];
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

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Flat name -> array mapping (for npz files); inverse of :meth:`from_arrays`."""
        out = {
            f"{prefix}loss": self.loss,
            f"{prefix}lr": self.lr,
            f"{prefix}max_update": self.max_update,
            f"{prefix}level_max_updates": self.level_max_updates,
            f"{prefix}eval_steps": self.eval_steps,
            f"{prefix}eval_loss": self.eval_loss,
            f"{prefix}meta": np.array([-1 if self.diverged_at is None else self.diverged_at, self.seconds]),
        }
        for kind in ("sq_norms", "values", "grads"):
            for name, arr in getattr(self, kind).items():
                out[f"{prefix}{kind}/{name}"] = arr
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str = "") -> "TrainRecord":
        meta = arrays[f"{prefix}meta"]
        rec = cls(
            **{k: np.asarray(arrays[f"{prefix}{k}"]) for k in ("loss", "lr", "max_update", "level_max_updates", "eval_steps", "eval_loss")},
            diverged_at=None if int(meta[0]) < 0 else int(meta[0]),
            seconds=float(meta[1]),
        )
        for key in arrays:
            for kind in ("sq_norms", "values", "grads"):
                head = f"{prefix}{kind}/"
                if key.startswith(head):
                    getattr(rec, kind)[key[len(head):]] = np.asarray(arrays[key])
        return rec


# --------------------------------------------------------------------------- loop
def _progress_default() -> bool:
    return os.environ.get("KADAM_PROGRESS", "1") != "0"


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
) -> TrainRecord:
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
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0; got {steps!r}")
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 0:
        raise ValueError(f"eval_every must be an int >= 0 (0: only after the last step); got {eval_every!r}")
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
        raise ValueError(f"log_every must be an int >= 1; got {log_every!r}")
    for name, fn in (("batch_fn", batch_fn), ("loss_fn", loss_fn)):
        if not callable(fn):
            raise ValueError(f"{name} must be callable; got {fn!r}")
    lrs = None if schedule is None else [_scheduled_lr(schedule, n) for n in range(steps)]
    watch = dict(watch or {})
    is_kadam = isinstance(optimizer, KAdam)
    k = len(KAdam.group_levels(optimizer.param_groups[0])) if is_kadam else 0
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    wide = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64

    # One row per step, on the device: [finite, loss, max-update, k level max-updates, squared
    # norms, values, grads]; ``initial`` holds the norms and values before step 0.
    def snapshot() -> list[Tensor]:
        views = [fn().detach().to(wide) for fn in watch.values()]
        cols = [w.pow(2).sum().reshape(1) for w in views]
        return cols + [w.reshape(-1) for w in views] if record_values else cols

    with torch.no_grad():
        initial = torch.cat([torch.zeros(0, dtype=wide, device=device), *snapshot()])
        last_finite = [p.detach().clone() for p in params]  # parameters after the last finite step
    alive = torch.ones((), dtype=torch.bool, device=device)  # every step so far was finite
    sizes = [fn().numel() for fn in watch.values()]
    m = (1 + k) if is_kadam else 0
    width = 2 + m + len(sizes) + sum(sizes) * (record_values + record_grads)
    rows: list[np.ndarray] = []
    pending: list[Tensor] = []
    pending_lr: list = []
    lr_l: list[float] = []
    ev_s, ev_l = [], []
    diverged_at = None

    def evaluate(n):
        model.eval()
        with torch.no_grad():
            value = float(eval_fn(model))
        model.train()
        if math.isfinite(value):
            ev_s.append(n)
            ev_l.append(value)

    def read() -> None:
        """Log point: fetch the pending rows (one host read); cut the record at a non-finite step."""
        nonlocal diverged_at
        block = torch.stack(pending).cpu().numpy()
        bad = np.flatnonzero(block[:, 0] == 0.0)
        good = int(bad[0]) if bad.size else len(block)
        if bad.size:
            diverged_at = len(lr_l) + good
            with torch.no_grad():
                for p, kept in zip(params, last_finite):
                    p.copy_(kept)
                    p.grad = None
        rows.append(block[:good])
        lr_l.extend(float(lr) for lr in pending_lr[:good])
        pending.clear()
        pending_lr.clear()
        if bar is not None:
            bar.update(good)
            if good:
                bar.set_postfix(loss=f"{block[good - 1, 1]:.3f}")

    start = time.perf_counter()
    show = _progress_default() if progress is None else progress
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, leave=False)
    model.train()
    try:
        for n in range(steps):
            if lrs is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lrs[n]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch_fn(n))
            loss.backward()
            loss = loss.detach().reshape(1).to(device, wide)
            finite = torch.isfinite(loss[0]) & _all_finite([p.grad for p in params if p.grad is not None], device)
            grads = [_grad_of_view(model, fn, wide) for fn in watch.values()] if record_grads else []
            optimizer.step()
            with torch.no_grad():
                cols = [loss]
                if is_kadam:
                    mu = _max_updates(optimizer, k, device, wide)
                    finite = finite & torch.isfinite(mu[0])
                    cols.append(mu)
                finite = finite & _all_finite(params, device)
                alive &= finite
                for p, kept in zip(params, last_finite):
                    torch.where(alive, p, kept, out=kept)
                pending.append(torch.cat([finite.to(wide).reshape(1), *cols, *snapshot(), *grads]))
            lr = optimizer.param_groups[0]["lr"]
            pending_lr.append(lr.detach().clone() if isinstance(lr, Tensor) else lr)
            evaluate_now = eval_fn is not None and eval_every and (n + 1) % eval_every == 0
            if evaluate_now or (n + 1) % log_every == 0 or n + 1 == steps:
                read()
                if diverged_at is not None:
                    break
                if evaluate_now:
                    evaluate(n + 1)
    except Exception:
        # A step past a divergence the host has not seen yet runs on non-finite weights and may
        # fail; then the run ended at the divergence, as if the host had checked every step.
        if pending:
            read()
        if diverged_at is None:
            raise
    finally:
        if bar is not None:
            bar.close()
    table = np.concatenate(rows) if rows else np.zeros((0, width))
    first = initial.cpu().numpy()
    done = len(table)
    if eval_fn is not None and (not ev_s or ev_s[-1] != done) and diverged_at is None:
        evaluate(done)
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
    if is_kadam:
        max_update, level_max_updates = table[:, 2].copy(), table[:, 3:2 + m].copy()
    else:  # no max-update to record
        max_update, level_max_updates = np.zeros(0), np.zeros((0, 0))
    return TrainRecord(
        loss=table[:, 1].copy(),
        lr=np.asarray(lr_l, dtype=float),
        max_update=max_update,
        level_max_updates=level_max_updates,
        eval_steps=np.asarray(ev_s, dtype=int),
        eval_loss=np.asarray(ev_l, dtype=float),
        sq_norms=sq_norms,
        values=values,
        grads=grads,
        diverged_at=diverged_at,
        seconds=time.perf_counter() - start,
    )


def _scheduled_lr(schedule: Callable[[int], float], n: int) -> float:
    """schedule(n) as a float, refused unless it is a finite real >= 0 (a negative lr is gradient ascent)."""
    value = schedule(n)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"schedule({n}) returned {value!r}; a learning rate must be a finite real >= 0 (a Python float)"
        )
    return float(value)


def _all_finite(tensors: list[Tensor], device: torch.device) -> Tensor:
    """0-d bool tensor on ``device``: every entry of every tensor is finite (no host sync).

    min and max propagate nan, so one aminmax per tensor decides it without a bool copy of each.
    """
    ends = [end.to(device) for t in tensors if t.numel() for end in torch.aminmax(t.detach())]
    if not ends:
        return torch.ones((), dtype=torch.bool, device=device)
    return torch.isfinite(torch.stack(ends)).all()


def _max_updates(optimizer: KAdam, k: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """[||u_n||_inf, ||u_n^(1)||_inf, ..., ||u_n^(k)||_inf] of the last step (Eq. 10, App. T): [1 + k] on ``device``.

    Uses KAdam's device-side max-updates where it keeps them, else reads its float properties (a host sync).
    """
    mu = getattr(optimizer, "last_max_update_tensor", None)
    if mu is None:
        levels = optimizer.last_level_max_updates or [math.nan] * k
        return torch.tensor([optimizer.last_max_update, *levels], dtype=dtype, device=device)
    levels = optimizer.last_level_max_updates_tensor
    return torch.cat([mu.reshape(1).to(device, dtype), levels.reshape(-1).to(device, dtype)])


def _grad_of_view(model: nn.Module, view_fn: Callable[[], Tensor], dtype: torch.dtype) -> Tensor:
    """The gradient entries that match a watched weight view (the view's slicing applied to .grad),
    copied as a flat ``dtype`` tensor on the gradient's device."""
    view = view_fn()
    for p in model.parameters():
        if p.grad is not None and view.untyped_storage().data_ptr() == p.untyped_storage().data_ptr():
            if not (p.is_contiguous() and p.grad.is_contiguous()):
                raise ValueError("watched weights must be views of contiguous parameters")
            offset = view.storage_offset() - p.storage_offset() + p.grad.storage_offset()
            g = torch.as_strided(p.grad, view.shape, view.stride(), offset)
            return g.reshape(-1).to(dtype, copy=True)
    raise ValueError("a watched weight is not a view of any parameter that has a gradient")
