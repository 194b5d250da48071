"""train() of a population (KAdam(..., members=E)): member e records what train() of member e alone records.

Every test builds E ordinary models, stacks them into one population, trains both ways (the
population once, each member alone with its own hyperparameters, batches and schedule) and
compares the records member by member, divergences included.
"""

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from kadam_edu import KAdam, Level
from kadam_edu.models import gpt_config
from kadam_edu.population import init_population
from kadam_edu.train import TrainRecord, annealed, train

from _sync import HostReads  # tests/_sync.py

FIELDS = ("loss", "lr", "max_update", "level_max_updates", "eval_steps", "eval_loss")
# (rtol, atol). The batched and the lone model round differently and adaptive normalization carries
# relative differences of the gradients into the updates (atol ~ lr x steps x rtol covers the weights
# near 0); float64 is the tight check.
TOL = {torch.float32: (1e-4, 1e-5), torch.float64: (1e-9, 1e-12)}


def assert_same_record(got: TrainRecord, want: TrainRecord, tol: tuple[float, float], what="") -> None:
    """Same steps, same divergence, same values within tol = (rtol, atol)."""
    rtol, atol = tol
    assert got.diverged_at == want.diverged_at, what
    for name in FIELDS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.shape == b.shape, (what, name, a.shape, b.shape)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{what} {name}")
    for kind in ("sq_norms", "values", "grads"):
        a, b = getattr(got, kind), getattr(want, kind)
        assert a.keys() == b.keys(), (what, kind)
        for name in b:
            assert a[name].shape == b[name].shape, (what, kind, name)
            np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol, err_msg=f"{what} {kind} {name}")


# --------------------------------------------------------------------------- a population by hand
class Inject(torch.autograd.Function):
    """Adds nothing to the loss (forward: zeros); backward hands ``x`` the gradient ``g`` (a chosen,
    possibly non-finite, gradient with a finite loss)."""

    @staticmethod
    def forward(ctx, x, g):
        ctx.save_for_backward(g)
        return torch.zeros_like(x)

    @staticmethod
    def backward(ctx, grad):
        (g,) = ctx.saved_tensors
        return grad * g, None


class MLP(nn.Module):
    """A 4-8-1 tanh MLP plus a 'canary' weight at -0.9 x the dtype's largest value (finite: a step of
    that size overflows it). ``members=E``: E of them, every parameter with a leading dim E."""

    def __init__(self, members=None, dtype=torch.float32):
        super().__init__()
        lead = () if members is None else (members,)
        big = 0.9 * torch.finfo(dtype).max
        self.W1 = nn.Parameter(torch.zeros(*lead, 8, 4, dtype=dtype))
        self.b1 = nn.Parameter(torch.zeros(*lead, 8, dtype=dtype))
        self.W2 = nn.Parameter(torch.zeros(*lead, 1, 8, dtype=dtype))
        self.b2 = nn.Parameter(torch.zeros(*lead, 1, dtype=dtype))
        self.canary = nn.Parameter(torch.full((*lead, 1), -big, dtype=dtype))

    def forward(self, x):  # x [B, 4] -> [B, 1], or [E, B, 4] -> [E, B, 1]
        h = torch.tanh(x @ self.W1.transpose(-1, -2) + self.b1.unsqueeze(-2))
        return h @ self.W2.transpose(-1, -2) + self.b2.unsqueeze(-2)


def mlp_members(E, dtype):
    """E ordinary MLPs with their own random weights, and the population that stacks them."""
    members = []
    for e in range(E):
        gen = torch.Generator().manual_seed(100 + e)
        m = MLP(dtype=dtype)
        with torch.no_grad():
            for p in (m.W1, m.b1, m.W2, m.b2):
                p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype) * 0.5)
        members.append(m)
    pop = MLP(E, dtype)
    with torch.no_grad():
        for name, p in pop.named_parameters():
            p.copy_(torch.stack([m.get_parameter(name) for m in members]))
    return members, pop


class Task:
    """Member e's data, batches and losses; ``events[e] = (kind, at)`` makes member e diverge at step
    ``at``: "loss" (a nan loss), "grad" (a finite loss, an infinite gradient), "update" (finite loss and
    gradients, but KAdam's update u_n is nan: the canary's gradient flips from +big to -big with
    gamma = 0, so m = lerp(big, -big, 1) is nan) or "step" (a finite update, lr = big: the parameters
    overflow)."""

    def __init__(self, E, dtype, events=None):
        self.E, self.dtype, self.events = E, dtype, events or {}
        self.big = 0.9 * torch.finfo(dtype).max
        gen = torch.Generator().manual_seed(7)
        self.X = torch.randn(E, 64, 4, generator=gen, dtype=dtype)
        self.Y = torch.randn(E, 64, 1, generator=gen, dtype=dtype)

    def member_batch(self, e, n):
        idx = torch.randint(0, 64, (16,), generator=torch.Generator().manual_seed(1000 * e + n))
        kind, at = self.events.get(e, (None, None))
        c = math.nan if (kind == "loss" and n == at) else 0.0
        g = {("grad", at): math.inf, ("update", at - 1 if at else None): self.big,
             ("update", at): -self.big}.get((kind, n), 1.0)
        return self.X[e, idx], self.Y[e, idx], c, torch.tensor([g], dtype=self.dtype)

    def lr(self, e, n):
        kind, at = self.events.get(e, (None, None))
        return self.big if (kind == "step" and n == at) else 1e-2 * (1 + (n + e) % 3)

    # ordinary member e
    def batch_fn(self, e):
        return lambda n: self.member_batch(e, n)

    @staticmethod
    def loss_fn(m, batch):
        x, y, c, g = batch
        return ((m(x) - y) ** 2).mean((-2, -1)) + c + Inject.apply(m.canary, g).sum(-1)

    def eval_fn(self, e):
        return lambda m: float(((m(self.X[e]) - self.Y[e]) ** 2).mean())

    # the population
    def pop_batch_fn(self, n):
        parts = [self.member_batch(e, n) for e in range(self.E)]
        return (torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts]),
                torch.tensor([p[2] for p in parts], dtype=self.dtype), torch.stack([p[3] for p in parts]))

    def pop_eval_fn(self, m):
        return ((m(self.X) - self.Y) ** 2).mean((1, 2)).tolist()

    def pop_schedule(self, n):
        return [self.lr(e, n) for e in range(self.E)]


def mlp_watch(model, members=False):
    if members:
        return {"W1 rows": lambda: model.W1[:, 1:3], "W2": lambda: model.W2}
    return {"W1 rows": lambda: model.W1[1:3], "W2": lambda: model.W2}


def run_both(task, gammas, betas, *, steps, log_every, eval_every=10, k=2):
    """(population records, population model, [(member record, member model)])."""
    E, dtype = task.E, task.dtype
    members, pop = mlp_members(E, dtype)
    wide = torch.float64
    opt = KAdam(pop.parameters(), lr=1e-2, betas=(torch.tensor(gammas, dtype=wide), torch.tensor(betas, dtype=wide)),
                k=k, members=E)
    recs = train(pop, opt, task.pop_batch_fn, task.loss_fn, steps=steps, schedule=task.pop_schedule,
                 eval_fn=task.pop_eval_fn, eval_every=eval_every, watch=mlp_watch(pop, members=True),
                 record_values=True, record_grads=True, log_every=log_every)
    alone = []
    for e, m in enumerate(members):
        rec = train(m, KAdam(m.parameters(), lr=1e-2, betas=(gammas[e], betas[e]), k=k), task.batch_fn(e),
                    task.loss_fn, steps=steps, schedule=lambda n, e=e: task.lr(e, n), eval_fn=task.eval_fn(e),
                    eval_every=eval_every, watch=mlp_watch(m), record_values=True, record_grads=True, log_every=1)
        alone.append((rec, m))
    return recs, pop, opt, alone


# --------------------------------------------------------------------------- (1) GPT population
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_gpt_population_records_what_each_member_records_alone(dtype):
    """E=3 char GPTs (smoke preset, 2 layers), each with its own lr, weight decay, (gamma, beta) per
    level and batches: loss, lr, max-updates, level max-updates, a watched head and eval per member."""
    E, steps = 3, 12
    # no biases: a key bias has a zero gradient up to rounding (softmax ignores it), and adaptive
    # normalization turns rounding noise into O(1) updates that differ between the two runs
    config = gpt_config("smoke", n_layer=2, block_size=16, bias=False)
    pop = init_population(config, [0, 1, 2]).to(dtype)
    members = [pop.member(e) for e in range(E)]
    lrs, wds = [3e-3, 1e-2, 2e-2], [0.0, 0.1, 0.01]
    gammas = [[0.9, 0.8, 0.95], [0.8, 0.9, 0.5]]  # level i, member e: gammas[i][e]
    betas = [[0.99, 0.95, 0.9], [0.95, 0.999, 0.9]]
    gen = torch.Generator().manual_seed(3)
    data = torch.randint(0, config.vocab_size, (steps + 1, E, 4, 17), generator=gen)
    val = torch.randint(0, config.vocab_size, (E, 4, 17), generator=gen)

    wide = torch.float64  # hyperparameter tensors: exact, whatever the parameters' dtype
    opt = KAdam(pop.parameters(), lr=torch.tensor(lrs, dtype=wide), weight_decay=torch.tensor(wds, dtype=wide),
                levels=[Level(gamma=torch.tensor(g, dtype=wide), beta=torch.tensor(b, dtype=wide))
                        for g, b in zip(gammas, betas)], members=E)
    head = pop.query_key_heads()[5]  # layer 1, a query head
    recs = train(pop, opt, lambda n: (data[n, :, :, :-1], data[n, :, :, 1:]), lambda m, b: m(*b)[1], steps=steps,
                 eval_fn=lambda m: m(val[:, :, :-1], val[:, :, 1:])[1].tolist(), eval_every=5,
                 watch={"q": head.weight}, record_values=True, record_grads=True, log_every=5)
    assert isinstance(recs, list) and len(recs) == E
    for e, m in enumerate(members):
        opt_e = KAdam(m.parameters(), lr=lrs[e], weight_decay=wds[e],
                      levels=[Level(gamma=g[e], beta=b[e]) for g, b in zip(gammas, betas)])
        h = m.query_key_heads()[5]
        want = train(m, opt_e, lambda n, e=e: (data[n, e, :, :-1], data[n, e, :, 1:]), lambda m, b: m(*b)[1],
                     steps=steps, eval_fn=lambda m, e=e: float(m(val[e, :, :-1], val[e, :, 1:])[1]), eval_every=5,
                     watch={"q": h.weight}, record_values=True, record_grads=True, log_every=1)
        assert want.diverged_at is None and want.steps_done == steps
        assert_same_record(recs[e], want, TOL[dtype], f"member {e}")
        assert recs[e].lr.tolist() == [lrs[e]] * steps
        for name, p in m.named_parameters():  # the population ends where the members end
            torch.testing.assert_close(pop.get_parameter(name)[e], p, rtol=TOL[dtype][0], atol=TOL[dtype][1])


# --------------------------------------------------------------------------- (2) divergence
EVENTS = {0: ("loss", 7), 1: ("grad", 12), 2: ("update", 25), 3: ("step", 33)}  # member 4 never diverges


@pytest.mark.parametrize("log_every", [1, 7, 40])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_each_member_diverges_where_it_would_alone_and_the_others_go_on(dtype, log_every):
    """Members diverging through a nan loss, an infinite gradient, a nan update and overflowing
    parameters stop at the step they stop at alone; the others' records are untouched."""
    task = Task(5, dtype, EVENTS)
    gammas, betas = [0.9, 0.9, 0.0, 0.8, 0.9], [0.99, 0.95, 0.99, 0.99, 0.999]
    recs, pop, opt, alone = run_both(task, gammas, betas, steps=40, log_every=log_every)
    for e, (want, m) in enumerate(alone):
        expected = EVENTS.get(e, (None, None))[1]
        assert want.diverged_at == expected  # the task diverges where it says
        assert recs[e].diverged_at == expected
        assert_same_record(recs[e], want, TOL[dtype], f"member {e}")
        for name, p in m.named_parameters():  # each member ends with the parameters of its last finite step
            assert torch.isfinite(pop.get_parameter(name)[e]).all()
            torch.testing.assert_close(pop.get_parameter(name)[e], p, rtol=TOL[dtype][0], atol=TOL[dtype][1])
    assert opt.active_members.tolist() == [False, False, False, False, True]  # diverged members are frozen
    for p in pop.parameters():  # the diverged members' gradients are dropped, the survivor's kept
        assert p.grad is not None and not p.grad[:4].any() and torch.isfinite(p.grad[4]).all()


def test_the_run_stops_at_the_log_point_after_every_member_diverged():
    task = Task(2, torch.float32, {0: ("loss", 3), 1: ("grad", 5)})
    members, pop = mlp_members(2, torch.float32)
    seen = []

    def batches(n):
        seen.append(n)
        return task.pop_batch_fn(n)

    opt = KAdam(pop.parameters(), lr=1e-2, members=2)
    recs = train(pop, opt, batches, task.loss_fn, steps=1000, log_every=10, eval_fn=task.pop_eval_fn)
    assert [r.diverged_at for r in recs] == [3, 5] and [r.steps_done for r in recs] == [3, 5]
    assert seen == list(range(10))  # stopped at the first log point
    assert all(r.eval_steps.size == 0 for r in recs)  # no member was alive to evaluate at the end
    assert all(p.grad is None for p in pop.parameters())  # as a diverged ordinary run


def test_a_member_frozen_before_the_call_diverges_at_step_zero():
    """Freezing is permanent: a member frozen by an earlier call (here by hand) does not train on."""
    task = Task(3, torch.float64)
    _, pop = mlp_members(3, torch.float64)
    opt = KAdam(pop.parameters(), lr=1e-2, members=3)
    opt.freeze_members(torch.tensor([False, True, False]))
    before = pop.W1[1].detach().clone()
    recs = train(pop, opt, task.pop_batch_fn, task.loss_fn, steps=6, log_every=4)
    assert [r.diverged_at for r in recs] == [None, 0, None] and [r.steps_done for r in recs] == [6, 0, 6]
    assert torch.equal(pop.W1[1], before)


@pytest.mark.parametrize("events,raises", [({0: ("loss", 3)}, True), ({0: ("loss", 3), 1: ("grad", 4)}, False)])
def test_an_error_propagates_unless_every_member_diverged_before_it(events, raises):
    task = Task(2, torch.float64, events)
    _, pop = mlp_members(2, torch.float64)

    def batches(n):
        if n == 8:
            raise RuntimeError("no batch 8")
        return task.pop_batch_fn(n)

    opt = KAdam(pop.parameters(), lr=1e-2, members=2)
    if raises:
        with pytest.raises(RuntimeError, match="no batch 8"):
            train(pop, opt, batches, task.loss_fn, steps=20, log_every=10)
    else:
        recs = train(pop, opt, batches, task.loss_fn, steps=20, log_every=10)
        assert [r.diverged_at for r in recs] == [3, 4]


# --------------------------------------------------------------------------- (3) schedules
@pytest.mark.parametrize("shared", [False, True])
def test_per_member_annealed_schedules_equal_the_sequential_runs(shared):
    """Eq. 15 per member (each member's own (beta, gamma) in B-), or one float for all members."""
    task = Task(3, torch.float64)
    gammas, betas = [0.99, 0.95, 0.9], [0.5, 0.8, 0.7]
    lr0 = [1e-2, 3e-2, 2e-2]
    schedules = [annealed(lr=lr0[e], beta=betas[e], gamma=gammas[e]) for e in range(3)]
    if shared:
        schedules = [annealed(lr=1e-2, beta=0.5, gamma=0.99)] * 3
        task.pop_schedule = schedules[0]  # one float per step for every member
    else:
        task.pop_schedule = lambda n: np.array([s(n) for s in schedules])
    task.lr = lambda e, n: schedules[e](n)
    recs, _, _, alone = run_both(task, gammas, betas, steps=30, log_every=8, k=1)
    for e, (want, _) in enumerate(alone):
        assert want.diverged_at is None
        assert_same_record(recs[e], want, TOL[torch.float64], f"member {e}")
        np.testing.assert_allclose(recs[e].lr, [schedules[e](n) for n in range(30)], rtol=1e-15)
    assert not np.allclose(recs[0].lr, recs[0].lr[0])  # it does anneal


# --------------------------------------------------------------------------- (4) host reads
def test_a_population_reads_the_host_once_per_log_interval(monkeypatch):
    """200 steps, log_every=50: at most 200/50 + 10 host reads, with per-member lrs, watched weights,
    their values and gradients."""
    task = Task(3, torch.float32)
    _, pop = mlp_members(3, torch.float32)
    opt = KAdam(pop.parameters(), lr=1e-2, betas=(torch.tensor([0.9, 0.8, 0.0]), torch.tensor([0.99, 0.9, 0.95])),
                k=2, members=3)
    with HostReads(monkeypatch) as reads:
        recs = train(pop, opt, task.pop_batch_fn, task.loss_fn, steps=200, schedule=task.pop_schedule,
                     watch=mlp_watch(pop, members=True), record_values=True, record_grads=True, log_every=50,
                     progress=False)
    assert [r.steps_done for r in recs] == [200] * 3
    assert reads.count <= 200 // 50 + 10, reads.count


# --------------------------------------------------------------------------- (5) validation
def population_setup(E=3):
    task = Task(E, torch.float32)
    _, pop = mlp_members(E, torch.float32)
    opt = KAdam(pop.parameters(), lr=1e-2, members=E)
    return task, pop, opt


@pytest.mark.parametrize("reduce,shape", [(lambda l: l.sum(), "()"), (lambda l: torch.cat([l, l[:1]]), "(4,)"),
                                          (lambda l: l[:, None], "(3, 1)")])
def test_a_loss_of_the_wrong_shape_is_refused_before_the_step(reduce, shape):
    task, pop, opt = population_setup()
    before = [p.detach().clone() for p in pop.parameters()]
    with pytest.raises(ValueError, match=rf"loss_fn must return one loss per member, a tensor of shape \[3\]; "
                                         rf"got shape {re.escape(shape)}"):
        train(pop, opt, task.pop_batch_fn, lambda m, b: reduce(task.loss_fn(m, b)), steps=5)
    assert not opt.state and all(torch.equal(p, b) for p, b in zip(pop.parameters(), before))


def test_an_ordinary_loss_must_be_a_scalar():
    task = Task(1, torch.float32)
    model = MLP()
    opt = KAdam(model.parameters(), lr=1e-2)
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar loss.*got shape \(16, 1\)"):
        train(model, opt, task.batch_fn(0), lambda m, b: (m(b[0]) - b[1]) ** 2, steps=5)
    assert not opt.state


@pytest.mark.parametrize("bad,message", [
    ([0.1, 0.2], r"schedule\(4\) returned \[0.1, 0.2\]; .* 3 learning rates \(one per member\)"),
    ([0.1, math.nan, 0.2], r"schedule\(4\) returned \[0.1, nan, 0.2\]; a learning rate must be a finite real >= 0"),
    (np.array([0.1, -1.0, 0.2]), r"schedule\(4\) returned array\(\[ 0.1, -1. ,  0.2\]\); a learning rate must be"),
    (np.ones((3, 1)), r"(?s)schedule\(4\) returned array\(.*\); .* 3 learning rates"),
    (torch.ones(3), r"schedule\(4\) returned tensor\(.*\); .* \(a Python float\) or a sequence"),
])
def test_a_schedule_returning_the_wrong_learning_rates_is_refused_before_any_step(bad, message):
    task, pop, opt = population_setup()
    seen = []

    def batches(n):
        seen.append(n)
        return task.pop_batch_fn(n)

    with pytest.raises(ValueError, match=message):
        train(pop, opt, batches, task.loss_fn, steps=10, schedule=lambda n: bad if n == 4 else 1e-2)
    assert seen == [] and not opt.state and opt.param_groups[0]["lr"] == 1e-2


@pytest.mark.parametrize("bad,got", [(lambda m: [0.0, 1.0], "2 values"), (lambda m: 1.0, "1.0"),
                                     (lambda m: np.zeros((3, 2)), "shape (3, 2)")])
def test_an_eval_fn_returning_the_wrong_count_is_refused(bad, got):
    task, pop, opt = population_setup()
    with pytest.raises(ValueError, match=rf"eval_fn must return 3 values \(one per member.*; got .*{re.escape(got)}"):
        train(pop, opt, task.pop_batch_fn, task.loss_fn, steps=4, eval_fn=bad, eval_every=2)


def test_a_watched_weight_without_the_member_dimension_is_refused_before_any_step():
    task, pop, opt = population_setup()
    with pytest.raises(ValueError, match=r"watch\['W1 row'\] must return a \[3, \.\.\.\] tensor .*; got shape \(4,\)"):
        train(pop, opt, task.pop_batch_fn, task.loss_fn, steps=4, watch={"W1 row": lambda: pop.W1[0, 0]})
    assert not opt.state
