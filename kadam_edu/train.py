"""One training loop that records what the book's figures need.

Per step: loss, learning rate, the max-update ||u_n||_inf (``KAdam.last_max_update``), the
per-level max-updates (App. T), squared norms of chosen weights, and optionally their values
and gradients (for Eq. 12 and Fig. 4's cosine similarity with past gradients); evaluation
loss every ``eval_every`` steps. A run whose loss, gradients, max-update or parameters stop
being finite ends cleanly and records the step in ``diverged_at``: every array in the record
holds finite values only.

Schedules: :func:`warmup_cosine` (App. H) and :func:`annealed` (Eq. 15).
"""

from __future__ import annotations

import math
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
    return os.environ.get("KADAM_PROGRESS", "1") != "0" and "PYTEST_CURRENT_TEST" not in os.environ


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
    progress: bool | None = None,
    desc: str | None = None,
) -> TrainRecord:
    """Train for ``steps`` steps and record the figures' quantities (see :class:`TrainRecord`).

    batch_fn(n) -> the batch of step n; loss_fn(model, batch) -> scalar loss tensor.
    schedule(n) -> learning rate of step n (default: the optimizer's own). eval_fn(model) ->
    a float, called in eval mode under no_grad every ``eval_every`` steps and after the last.
    watch: name -> a function returning a weight tensor (a view, e.g. one head's W_q rows);
    its squared norm is recorded every step, its values with ``record_values``, and its
    gradient (taken before the step) with ``record_grads``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0; got {steps!r}")
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 0:
        raise ValueError(f"eval_every must be an int >= 0 (0: only after the last step); got {eval_every!r}")
    for name, fn in (("batch_fn", batch_fn), ("loss_fn", loss_fn)):
        if not callable(fn):
            raise ValueError(f"{name} must be callable; got {fn!r}")
    watch = dict(watch or {})
    is_kadam = isinstance(optimizer, KAdam)
    k = len(KAdam.group_levels(optimizer.param_groups[0])) if is_kadam else 0

    loss_l, lr_l, mu_l, lmu_l, ev_s, ev_l = [], [], [], [], [], []
    sq = {n: [] for n in watch}
    vals = {n: [] for n in watch} if record_values else {}
    grads = {n: [] for n in watch} if record_grads else {}

    def snapshot():
        for name, fn in watch.items():
            w = fn().detach()
            sq[name].append(float(w.double().pow(2).sum()))
            if record_values:
                vals[name].append(w.reshape(-1).double().cpu().numpy().copy())

    def evaluate(n):
        model.eval()
        with torch.no_grad():
            value = float(eval_fn(model))
        model.train()
        if math.isfinite(value):
            ev_s.append(n)
            ev_l.append(value)

    diverged_at = None
    snapshot()
    start = time.perf_counter()
    show = _progress_default() if progress is None else progress
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, leave=False)
    model.train()
    for n in range(steps):
        lr = None
        if schedule is not None:
            lr = float(schedule(n))
            for group in optimizer.param_groups:
                group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch_fn(n))
        if not torch.isfinite(loss):
            diverged_at = n
            break
        loss.backward()
        if not all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None):
            diverged_at = n
            break
        if record_grads:
            for name, fn in watch.items():
                grads[name].append(_grad_of_view(model, fn))
        optimizer.step()
        mu = optimizer.last_max_update if is_kadam else math.nan
        finite = (not is_kadam or math.isfinite(mu)) and all(torch.isfinite(p).all() for p in model.parameters())
        if not finite:
            diverged_at = n
            if record_grads:
                for name in grads:
                    grads[name].pop()
            break
        loss_l.append(float(loss.detach()))
        lr_l.append(lr if lr is not None else float(optimizer.param_groups[0]["lr"]))
        if is_kadam:
            mu_l.append(mu)
            lmu_l.append(optimizer.last_level_max_updates)
        snapshot()
        if eval_fn is not None and eval_every and (n + 1) % eval_every == 0:
            evaluate(n + 1)
        if bar is not None:
            bar.update(1)
            if n % 10 == 0:
                bar.set_postfix(loss=f"{loss_l[-1]:.3f}")
    if bar is not None:
        bar.close()
    done = len(loss_l)
    if eval_fn is not None and (not ev_s or ev_s[-1] != done) and diverged_at is None:
        evaluate(done)
    return TrainRecord(
        loss=np.asarray(loss_l, dtype=float),
        lr=np.asarray(lr_l, dtype=float),
        max_update=np.asarray(mu_l, dtype=float),
        level_max_updates=np.asarray(lmu_l, dtype=float).reshape(len(mu_l), k),
        eval_steps=np.asarray(ev_s, dtype=int),
        eval_loss=np.asarray(ev_l, dtype=float),
        sq_norms={n: np.asarray(v) for n, v in sq.items()},
        values={n: np.stack(v) for n, v in vals.items()},
        grads={n: np.stack(v) if v else np.zeros((0, vals[n][0].size if vals else 0)) for n, v in grads.items()},
        diverged_at=diverged_at,
        seconds=time.perf_counter() - start,
    )


def _grad_of_view(model: nn.Module, view_fn: Callable[[], Tensor]) -> np.ndarray:
    """The gradient entries that match a watched weight view (the view's slicing applied to .grad)."""
    view = view_fn()
    for p in model.parameters():
        if p.grad is not None and view.untyped_storage().data_ptr() == p.untyped_storage().data_ptr():
            if not (p.is_contiguous() and p.grad.is_contiguous()):
                raise ValueError("watched weights must be views of contiguous parameters")
            offset = view.storage_offset() - p.storage_offset() + p.grad.storage_offset()
            g = torch.as_strided(p.grad, view.shape, view.stride(), offset)
            return g.reshape(-1).double().cpu().numpy().copy()
    raise ValueError("a watched weight is not a view of any parameter that has a gradient")
