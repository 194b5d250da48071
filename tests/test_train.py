"""The training harness (records, schedules, divergence) and the scale switch."""

import math
import re

import numpy as np
import pytest
import torch

from kadam_edu import KAdam, bounds
from kadam_edu.scale import SCALES, pick_device, resolve_scale, seed_everything
from kadam_edu.train import annealed, constant, train, warmup_cosine


def regression(seed=0):
    gen = seed_everything(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    X, Y = torch.randn(64, 4, generator=gen), torch.randn(64, 1, generator=gen)

    def batch_fn(n):
        idx = torch.randint(0, 64, (16,), generator=gen)
        return X[idx], Y[idx]

    def loss_fn(m, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(m(x), y)

    return model, batch_fn, loss_fn, (X, Y)


# --------------------------------------------------------------------------- schedules
def test_warmup_cosine_matches_app_h():
    s = warmup_cosine(lr=1e-3, warmup=100, total=3000, min_lr=1e-4)
    assert s(0) == pytest.approx(1e-5) and s(99) == pytest.approx(1e-3)
    assert s(100) == pytest.approx(1e-3)
    assert s(1550) == pytest.approx(1e-4 + 0.5 * 9e-4)  # half way through the decay
    assert s(2999) == pytest.approx(1e-4, rel=1e-3) and s(5000) == pytest.approx(1e-4)


def test_annealed_is_eq15():
    s = annealed(lr=1e-3, beta=0.95, gamma=0.99)
    C = bounds.stability_constant(0.95, 0.99)
    assert C < 0
    for n in (0, 10, 500):
        assert s(n) == pytest.approx(1e-3 * math.exp(-n * abs(C) / 2))
    assert annealed(lr=1e-3, beta=0.999, gamma=0.9)(500) == 1e-3  # nothing to cancel in B+
    assert constant(0.1)(7) == 0.1


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: warmup_cosine(lr=1e-3, warmup=10, total=5, min_lr=0.0), "warmup < total"),
        (lambda: warmup_cosine(lr=-1.0, warmup=1, total=5, min_lr=0.0), "lr must be a finite real >= 0; got -1.0"),
        (lambda: constant(float("nan")), "lr must be a finite real >= 0; got nan"),
        (lambda: annealed(lr=1e-3, beta=1.0, gamma=0.9), r"beta must lie in \(0, 1\)"),
    ],
)
def test_bad_schedules(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("bad", [-1e-3, math.nan, math.inf, -math.inf, True, "0.1", None, torch.tensor(0.1)])
def test_a_schedule_that_returns_a_bad_learning_rate_is_refused_before_any_step(bad):
    """A negative lr is gradient ascent, nan/inf poison the weights: refuse them, naming the step."""
    model, batch_fn, loss_fn, _ = regression()
    opt = KAdam(model.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    seen = []

    def batches(n):
        seen.append(n)
        return batch_fn(n)

    message = f"schedule(12) returned {bad!r}; a learning rate must be a finite real >= 0"
    with pytest.raises(ValueError, match=re.escape(message)):
        train(model, opt, batches, loss_fn, steps=20, schedule=lambda n: bad if n == 12 else 1e-2)
    assert seen == [] and not opt.state  # no step ran
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert opt.param_groups[0]["lr"] == 1e-2


def test_a_schedule_may_return_zero_and_numpy_reals():
    model, batch_fn, loss_fn, _ = regression()
    rec = train(model, KAdam(model.parameters()), batch_fn, loss_fn, steps=3,
                schedule=lambda n: [0, np.float32(0.5), np.float64(1e-3)][n])
    assert rec.lr.tolist() == [0.0, 0.5, 1e-3] and rec.diverged_at is None


# --------------------------------------------------------------------------- records
def test_train_records_what_the_figures_need():
    model, batch_fn, loss_fn, (X, Y) = regression()
    opt = KAdam(model.parameters(), lr=1e-2, k=2)
    W = model[0].weight
    watch = {"rows0-2": lambda: W[0:3], "head": lambda: model[2].weight}
    rec = train(model, opt, batch_fn, loss_fn, steps=30, eval_every=10,
                eval_fn=lambda m: float(torch.nn.functional.mse_loss(m(X), Y)),
                watch=watch, record_values=True, record_grads=True, schedule=constant(1e-2))
    assert rec.diverged_at is None and rec.steps_done == 30
    assert rec.loss.shape == rec.lr.shape == rec.max_update.shape == (30,)
    assert rec.level_max_updates.shape == (30, 2)
    assert rec.max_update[-1] == opt.last_max_update
    assert rec.eval_steps.tolist() == [10, 20, 30]
    assert rec.eval_loss[-1] == pytest.approx(float(torch.nn.functional.mse_loss(model(X), Y).detach()))
    assert rec.sq_norms["rows0-2"].shape == (31,)
    assert rec.sq_norms["rows0-2"][-1] == pytest.approx(float(W[0:3].detach().double().pow(2).sum()))
    assert rec.values["rows0-2"].shape == (31, 12) and rec.grads["rows0-2"].shape == (30, 12)
    np.testing.assert_allclose(rec.values["rows0-2"][-1], W[0:3].detach().reshape(-1).double().numpy())
    np.testing.assert_allclose(rec.values["rows0-2"][:, :], np.stack([v for v in rec.values["rows0-2"]]))
    # the last recorded gradient is the one the optimizer used on the last step (grads kept after step)
    np.testing.assert_allclose(rec.grads["rows0-2"][-1], model[0].weight.grad[0:3].reshape(-1).double().numpy())
    cos = rec.cosine_with_past_gradients("rows0-2")
    Wm, G = rec.values["rows0-2"][30], rec.grads["rows0-2"]
    assert cos.shape == (30,)
    assert cos[5] == pytest.approx(G[5] @ Wm / np.linalg.norm(G[5]) / np.linalg.norm(Wm))


def test_same_seed_repeats_exactly():
    recs = []
    for _ in range(2):
        model, batch_fn, loss_fn, _ = regression(seed=3)
        recs.append(train(model, KAdam(model.parameters(), lr=1e-2), batch_fn, loss_fn, steps=20,
                          watch={"w": lambda m=model: m[0].weight}, record_values=True))
    assert np.array_equal(recs[0].loss, recs[1].loss) and np.array_equal(recs[0].max_update, recs[1].max_update)
    assert np.array_equal(recs[0].values["w"], recs[1].values["w"])


def logistic(seed=0):
    """Separable logistic regression: gradients shrink geometrically as the margin grows,
    the kind of sequence that makes the max-update grow in B- (the discrete bound is attained
    for g_j ~ (beta/gamma)^j)."""
    gen = seed_everything(seed)
    X = torch.rand(64, 4, generator=gen) + 0.5
    model = torch.nn.Linear(4, 1)
    return (model, lambda n: X[torch.randint(0, 64, (16,), generator=gen)],
            lambda m, x: torch.nn.functional.softplus(-m(x)).mean())


def test_a_diverging_run_stops_cleanly_with_finite_records():
    """Same huge learning rate: in B+ the max-update stays bounded and the run finishes; in B-
    it grows exponentially until theta overflows, and the run stops with finite records."""
    model, batch_fn, loss_fn = logistic()
    rec_plus = train(model, KAdam(model.parameters(), lr=1e25, betas=(0.9, 0.999)), batch_fn, loss_fn, steps=1000)
    assert rec_plus.diverged_at is None and rec_plus.max_update.max() < 3
    model, batch_fn, loss_fn = logistic()
    opt = KAdam(model.parameters(), lr=1e25, betas=(0.99, 0.5))
    assert bounds.region(0.5, 0.99) == "B-"
    rec = train(model, opt, batch_fn, loss_fn, steps=1000, watch={"w": lambda: model.weight},
                eval_fn=lambda m: 0.0, eval_every=20)
    assert rec.diverged_at is not None and rec.diverged_at < 1000
    assert rec.steps_done == rec.diverged_at and rec.sq_norms["w"].shape == (rec.diverged_at + 1,)
    for arr in (rec.loss, rec.max_update, rec.level_max_updates, rec.sq_norms["w"], rec.eval_loss):
        assert np.isfinite(arr).all()
    assert rec.max_update[-1] > 1e12  # it did grow exponentially on the way


def test_bad_train_input():
    model, batch_fn, loss_fn, _ = regression()
    opt = KAdam(model.parameters())
    with pytest.raises(ValueError, match="steps must be a non-negative int; got -1"):
        train(model, opt, batch_fn, loss_fn, steps=-1)
    with pytest.raises(ValueError, match=r"eval_every must be a non-negative int \(0: only after the last step\); got 1.5"):
        train(model, opt, batch_fn, loss_fn, steps=1, eval_every=1.5)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="progress must be True or False; got 1"):
        train(model, opt, batch_fn, loss_fn, steps=1, progress=1)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))  # refused before any step
    with pytest.raises(ValueError, match="loss_fn must be callable"):
        train(model, opt, batch_fn, None, steps=1)
    rec = train(model, opt, batch_fn, loss_fn, steps=2, watch={"x": lambda: model[0].weight[0]}, record_values=True)
    with pytest.raises(ValueError, match="record_values=True and record_grads=True"):
        rec.cosine_with_past_gradients("x")


# --------------------------------------------------------------------------- scale
def test_resolve_scale(monkeypatch):
    monkeypatch.delenv("KADAM_SCALE", raising=False)
    assert resolve_scale("auto") == ("gpu" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("KADAM_SCALE", "smoke")
    assert resolve_scale() == "smoke" and resolve_scale("auto") == "smoke"
    assert resolve_scale("cpu") == "cpu"  # an explicit scale wins
    assert set(SCALES) == {"smoke", "cpu", "gpu", "paper"}
    monkeypatch.setenv("KADAM_SCALE", "huge")
    with pytest.raises(ValueError, match="KADAM_SCALE must be one of"):
        resolve_scale()
    with pytest.raises(ValueError, match="scale must be one of"):
        resolve_scale("tiny")


def test_devices_and_seeds():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type in ("cuda", "mps", "cpu")
    with pytest.raises(ValueError, match="device must be"):
        pick_device("gpu-please")
    a, b = seed_everything(5), seed_everything(5)
    assert torch.equal(torch.randint(0, 100, (5,), generator=a), torch.randint(0, 100, (5,), generator=b))
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        seed_everything(-1)
