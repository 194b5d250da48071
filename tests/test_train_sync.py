"""train() without host synchronisation per step (log_every): same records, same divergence.

The reference below is the step-by-step loop train() used before log_every: it reads the
loss, every gradient's and parameter's finiteness and the max-update on the host after each
step and stops at the first non-finite one. train() must record exactly what it records,
for any log_every, with divergences before, at and after log points.
"""

import math

import numpy as np
import pytest
import torch

from kadam_edu import KAdam
from kadam_edu.scale import seed_everything
from kadam_edu.train import train

from _sync import HostReads  # tests/_sync.py

STEPS = 60


class Poison(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``factor`` (inf: a finite loss, a non-finite gradient)."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


class Net(torch.nn.Module):
    """A 3-layer MLP plus a 'canary' weight sitting at -3e38 (finite): a step of lr 3e38 overflows it."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8),
                                        torch.nn.Tanh(), torch.nn.Linear(8, 1))
        self.canary = torch.nn.Parameter(torch.full((1,), -3e38))

    def forward(self, x):
        return self.body(x)


def task(kind=None, at=None, seed=0):
    """Model, batch_fn, loss_fn, schedule, eval_fn; step ``at`` goes non-finite in the way ``kind`` says:
    "loss": a nan loss; "grad": a finite loss with a nan gradient; "step": finite loss and gradients,
    but the step (lr 3e38 on the canary's unit gradient) overflows the parameters."""
    gen = seed_everything(seed)
    model = Net()
    X, Y = torch.randn(64, 4, generator=gen), torch.randn(64, 1, generator=gen)

    def batch_fn(n):
        idx = torch.randint(0, 64, (16,), generator=gen)
        hit = n == at
        c = {"loss": math.nan, "step": 1.0}.get(kind, 0.0) if hit else 0.0
        return X[idx], Y[idx], c, math.inf if hit and kind == "grad" else 1.0

    def loss_fn(m, batch):
        x, y, c, factor = batch
        return torch.nn.functional.mse_loss(m(x), y) + c * Poison.apply(m.canary, factor).sum()

    def schedule(n):
        return 3e38 if (kind == "step" and n == at) else 1e-2 * (1 + n % 3)

    def eval_fn(m):
        return float(torch.nn.functional.mse_loss(m(X), Y))

    return model, batch_fn, loss_fn, schedule, eval_fn


def make_optimizer(name, model):
    if name == "kadam":
        return KAdam(model.parameters(), lr=1e-2, k=2)
    return torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9, foreach=False)


def watch_of(model):
    W = model.body[0].weight
    return {"rows": lambda: W[1:3], "head": lambda: model.body[4].weight}


def _grad_of_view(model, view_fn):
    view = view_fn()
    for p in model.parameters():
        if p.grad is not None and view.untyped_storage().data_ptr() == p.untyped_storage().data_ptr():
            offset = view.storage_offset() - p.storage_offset() + p.grad.storage_offset()
            return torch.as_strided(p.grad, view.shape, view.stride(), offset).reshape(-1).double().numpy().copy()
    raise AssertionError("not a view")


def reference(model, optimizer, batch_fn, loss_fn, *, steps, schedule, eval_fn, eval_every, watch):
    """The step-by-step loop (host reads every step), with record_values and record_grads on."""
    is_kadam = isinstance(optimizer, KAdam)
    rec = {k: [] for k in ("loss", "lr", "max_update", "level_max_updates", "eval_steps", "eval_loss")}
    sq, vals, grads = ({n: [] for n in watch} for _ in range(3))

    def snapshot():
        for name, fn in watch.items():
            w = fn().detach()
            sq[name].append(float(w.double().pow(2).sum()))
            vals[name].append(w.reshape(-1).double().numpy().copy())

    def evaluate(n):
        model.eval()
        with torch.no_grad():
            value = float(eval_fn(model))
        model.train()
        if math.isfinite(value):
            rec["eval_steps"].append(n)
            rec["eval_loss"].append(value)

    diverged_at = None
    snapshot()
    model.train()
    for n in range(steps):
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
        step_grads = {name: _grad_of_view(model, fn) for name, fn in watch.items()}
        optimizer.step()
        mu = optimizer.last_max_update if is_kadam else math.nan
        if not ((not is_kadam or math.isfinite(mu)) and all(torch.isfinite(p).all() for p in model.parameters())):
            diverged_at = n
            break
        for name, g in step_grads.items():
            grads[name].append(g)
        rec["loss"].append(float(loss.detach()))
        rec["lr"].append(lr)
        if is_kadam:
            rec["max_update"].append(mu)
            rec["level_max_updates"].append(optimizer.last_level_max_updates)
        snapshot()
        if eval_every and (n + 1) % eval_every == 0:
            evaluate(n + 1)
    done = len(rec["loss"])
    if (not rec["eval_steps"] or rec["eval_steps"][-1] != done) and diverged_at is None:
        evaluate(done)
    k = 2 if is_kadam else 0
    return dict(
        loss=np.asarray(rec["loss"], dtype=float), lr=np.asarray(rec["lr"], dtype=float),
        max_update=np.asarray(rec["max_update"], dtype=float),
        level_max_updates=np.asarray(rec["level_max_updates"], dtype=float).reshape(len(rec["max_update"]), k),
        eval_steps=np.asarray(rec["eval_steps"], dtype=int), eval_loss=np.asarray(rec["eval_loss"], dtype=float),
        sq_norms={n: np.asarray(v) for n, v in sq.items()}, values={n: np.stack(v) for n, v in vals.items()},
        grads={n: np.stack(v) if v else np.zeros((0, vals[n][0].size)) for n, v in grads.items()},
        diverged_at=diverged_at,
    )


def run(opt_name, kind, at, log_every, steps=STEPS, eval_every=10):
    model, batch_fn, loss_fn, schedule, eval_fn = task(kind, at)
    opt = make_optimizer(opt_name, model)
    rec = train(model, opt, batch_fn, loss_fn, steps=steps, schedule=schedule, eval_fn=eval_fn, eval_every=eval_every,
                watch=watch_of(model), record_values=True, record_grads=True, log_every=log_every)
    return model, rec


# With log_every=25: divergences at step 0, before the first log point (6), on the last step of
# an interval (24), on the first step after a log point (25), in the last, partial interval
# (55, 59); log_every=7 puts log points and evaluations (every 10 steps) at different steps.
CASES = [(None, None), ("loss", 0), ("grad", 6), ("step", 24), ("loss", 24), ("grad", 25), ("step", 0),
         ("step", 55), ("loss", 59)]


@pytest.mark.parametrize("opt_name", ["kadam", "sgd"])
@pytest.mark.parametrize("kind,at", CASES)
def test_records_equal_the_step_by_step_loop_for_any_log_every(opt_name, kind, at):
    model, batch_fn, loss_fn, schedule, eval_fn = task(kind, at)
    expected = reference(model, make_optimizer(opt_name, model), batch_fn, loss_fn, steps=STEPS,
                         schedule=schedule, eval_fn=eval_fn, eval_every=10, watch=watch_of(model))
    assert expected["diverged_at"] == at  # the task diverges where it says
    for log_every in (1, 7, 25):
        _, rec = run(opt_name, kind, at, log_every)
        assert rec.diverged_at == at, log_every
        for name in ("loss", "lr", "max_update", "level_max_updates", "eval_steps", "eval_loss"):
            got, want = getattr(rec, name), expected[name]
            assert got.shape == want.shape and np.array_equal(got, want), (log_every, name)
        for kind_ in ("sq_norms", "values", "grads"):
            got, want = getattr(rec, kind_), expected[kind_]
            assert got.keys() == want.keys()
            for name in want:
                assert got[name].shape == want[name].shape and np.array_equal(got[name], want[name]), (log_every, kind_)


@pytest.mark.parametrize("opt_name", ["kadam", "sgd"])
@pytest.mark.parametrize("kind,at", [("loss", 7), ("grad", 24), ("step", 25), ("step", 59)])
def test_a_divergence_leaves_the_parameters_of_the_last_finite_step(opt_name, kind, at):
    """Whatever ran on the device after the divergence, the model ends as a run stopped at step ``at``."""
    stopped, rec = run(opt_name, None, None, 1, steps=at, eval_every=0)
    assert rec.diverged_at is None and rec.steps_done == at
    for log_every in (1, 25):
        model, rec = run(opt_name, kind, at, log_every)
        assert rec.diverged_at == at
        for name, p in model.named_parameters():
            assert torch.equal(p, stopped.get_parameter(name)), (log_every, name)
            assert p.grad is None  # the gradients of steps past the divergence are dropped


def mlp_run(opt_name, **kwargs):
    model, batch_fn, loss_fn, _, _ = task()
    return train(model, make_optimizer(opt_name, model), batch_fn, loss_fn, steps=200, watch=watch_of(model),
                 record_values=True, record_grads=True, progress=False, **kwargs)


@pytest.mark.parametrize("opt_name", ["sgd", "kadam"])
def test_the_host_reads_values_once_per_log_interval(opt_name, monkeypatch):
    """200 steps, log_every=50: at most 200/50 + 10 host reads (a per-step or per-parameter read shows).
    SGD(foreach=False) reads nothing itself; KAdam keeps its max-update on the device (last_max_update_tensor)."""
    with HostReads(monkeypatch) as reads:
        rec = mlp_run(opt_name, log_every=50)
    assert rec.steps_done == 200
    assert reads.count <= 200 // 50 + 10, reads.count


def test_counting_host_reads_sees_a_per_step_read(monkeypatch):
    """The counter is not blind: log_every=1 reads at least once per step."""
    with HostReads(monkeypatch) as reads:
        mlp_run("sgd", log_every=1)
    assert reads.count >= 200


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10", None])
def test_log_every_must_be_a_positive_int(bad):
    model, batch_fn, loss_fn, _, _ = task()
    opt = make_optimizer("sgd", model)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=f"log_every must be a positive int; got {bad!r}"):
        train(model, opt, batch_fn, loss_fn, steps=5, log_every=bad)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_an_error_past_an_unseen_divergence_ends_the_run_at_the_divergence():
    """Steps after a divergence run on non-finite weights until the next log point; if one of them
    fails, the run ends at the divergence, as it did when the host checked every step."""
    model, batch_fn, loss_fn, schedule, _ = task("step", 5)

    def strict_loss(m, batch):
        if not torch.isfinite(m.canary).all():
            raise ValueError("non-finite weights")
        return loss_fn(m, batch)

    rec = train(model, make_optimizer("sgd", model), batch_fn, strict_loss, steps=STEPS, schedule=schedule,
                log_every=25)
    assert rec.diverged_at == 5 and rec.steps_done == 5
    stopped, _ = run("sgd", None, None, 1, steps=5, eval_every=0)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), stopped.parameters()))


def test_an_error_without_a_divergence_propagates_and_keeps_the_last_step():
    model, batch_fn, loss_fn, schedule, _ = task()

    def batches(n):
        if n == 30:
            raise RuntimeError("no batch 30")
        return batch_fn(n)

    with pytest.raises(RuntimeError, match="no batch 30"):
        train(model, make_optimizer("sgd", model), batches, loss_fn, steps=STEPS, schedule=schedule, log_every=25)
    stopped, _ = run("sgd", None, None, 1, steps=30, eval_every=0)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), stopped.parameters()))
