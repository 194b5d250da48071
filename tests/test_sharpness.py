"""kadam_edu.sharpness (Chapter 6): eigenvalue routines against exact eigendecompositions,
Hessian-vector products against explicit Hessians, Adam's preconditioner against the formula
written out here, the stability threshold against the companion matrix of heavy-ball momentum,
and the edge-of-stability experiment and views at smoke scale."""

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from kadam_edu import KAdam, Level, plots
from kadam_edu.experiments.edge_of_stability import EOS, eos, eos_summary
from kadam_edu.experiments.result import Result
from kadam_edu.sharpness import (
    adam_on_quadratic,
    adam_preconditioner,
    adam_stability_threshold,
    hvp,
    lanczos,
    power_iteration,
    preconditioned_sharpness,
    sharpness,
)


# --------------------------------------------------------------------------- helpers
def random_symmetric(dim, eigenvalues, seed=0):
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    return Q @ torch.diag(torch.as_tensor(eigenvalues, dtype=torch.float64)) @ Q.T


def mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).to(dtype)


def mlp_data(seed=1, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(16, 3, generator=gen, dtype=dtype), torch.randn(16, 2, generator=gen, dtype=dtype)


def mlp_loss(x, y):
    return lambda model: torch.nn.functional.mse_loss(model(x), y)


def explicit_hessian(model, loss_fn):
    """The full Hessian of loss_fn(model) in the flattened parameters, by torch.autograd.functional."""
    named = list(model.named_parameters())
    sizes = [p.numel() for _, p in named]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in named])

    def f(flat):
        params = {f"m.{k}": c.view(p.shape) for (k, p), c in zip(named, flat.split(sizes))}
        return torch.func.functional_call(_Wrap(model, loss_fn), params, ())

    return torch.autograd.functional.hessian(f, flat0)


class _Wrap(torch.nn.Module):
    def __init__(self, m, fn):
        super().__init__()
        self.m, self.fn = m, fn

    def forward(self):
        return self.fn(self.m)


def train_steps(model, opt, loss_fn, n):
    for _ in range(n):
        opt.zero_grad()
        loss_fn(model).backward()
        opt.step()


# --------------------------------------------------------------------------- threshold
def companion_spectral_radius(eta_lambda, gamma):
    """Heavy-ball with an EMA first moment on a 1-D quadratic, x_{n+1} = x_n - eta m_n,
    m_n = gamma m_{n-1} + (1 - gamma) lambda x_n: the update matrix on (x_n, m_{n-1})."""
    # with eta = 1 and lambda = eta_lambda: x' = (1 - (1-gamma) lambda) x - gamma m, m' = (1-gamma) lambda x + gamma m
    a = (1 - gamma) * eta_lambda
    A = np.array([[1 - a, -gamma], [a, gamma]])
    return max(abs(np.linalg.eigvals(A)))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.9, 0.99])
def test_threshold_is_where_momentum_becomes_unstable(gamma):
    lr = 3e-3
    thr = adam_stability_threshold(lr, gamma)
    assert thr == pytest.approx((2 + 2 * gamma) / ((1 - gamma) * lr), rel=1e-14)
    assert companion_spectral_radius(lr * thr * 0.999, gamma) < 1.0
    assert companion_spectral_radius(lr * thr * 1.001, gamma) > 1.0


def test_threshold_values_and_arrays():
    assert adam_stability_threshold(1e-3, 0.9) == pytest.approx(38_000.0, rel=1e-12)
    assert adam_stability_threshold(0.1, 0.0) == pytest.approx(20.0)  # 2 / eta without momentum
    out = adam_stability_threshold(np.array([1e-3, 1e-2]), 0.9)
    np.testing.assert_allclose(out, [38_000.0, 3_800.0], rtol=1e-12)


@pytest.mark.parametrize("lr, gamma", [(0.0, 0.9), (-1e-3, 0.9), (math.inf, 0.9), (1e-3, 1.0), (1e-3, -0.1),
                                       ([1e-3, 0.0], 0.9), ("a", 0.9)])
def test_threshold_rejects_bad_input(lr, gamma):
    with pytest.raises(ValueError):
        adam_stability_threshold(lr, gamma)


# --------------------------------------------------------------------------- Lanczos and power iteration
def test_lanczos_exact_with_full_krylov_space():
    A = random_symmetric(40, torch.linspace(-3.0, 10.0, 40) ** 1, seed=2)
    exact = torch.linalg.eigvalsh(A).flip(0)
    top = lanczos(lambda x: A @ x, 40, iters=40, k=3, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(top.numpy(), exact[:3].numpy(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lanczos_spd_top_eigenvalue_few_iterations(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    eig = torch.cat([torch.tensor([50.0, 20.0]), torch.rand(198, generator=gen, dtype=torch.float64) * 10 + 0.1])
    A = random_symmetric(200, eig, seed=seed)
    exact = float(torch.linalg.eigvalsh(A)[-1])
    top = float(lanczos(lambda x: A @ x, 200, iters=40, generator=torch.Generator().manual_seed(seed))[0])
    assert abs(top - exact) <= 1e-6 * exact


def test_lanczos_indefinite_returns_largest_algebraic():
    eig = torch.cat([torch.tensor([-30.0, 12.0]), torch.linspace(-5.0, 5.0, 58)])
    A = random_symmetric(60, eig, seed=3)
    exact = torch.linalg.eigvalsh(A)
    top = lanczos(lambda x: A @ x, 60, iters=60, k=2, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(top.numpy(), exact.flip(0)[:2].numpy(), atol=1e-8)
    assert float(top[0]) == pytest.approx(12.0, abs=1e-8)  # not -30, the largest in magnitude


def test_lanczos_invariant_subspace_stops_early():
    A = torch.diag(torch.tensor([3.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    calls = []

    def matvec(x):
        calls.append(1)
        return A @ x

    top = lanczos(matvec, 4, iters=4, generator=torch.Generator().manual_seed(0))
    assert float(top[0]) == pytest.approx(3.0, abs=1e-12)
    assert len(calls) == 2  # two distinct eigenvalues: the Krylov space is 2-dimensional


def test_power_iteration_spd_and_indefinite():
    A = random_symmetric(30, torch.cat([torch.tensor([9.0]), torch.linspace(0.1, 3.0, 29)]), seed=4)
    value = power_iteration(lambda x: A @ x, 30, iters=500, tol=1e-14, generator=torch.Generator().manual_seed(0))
    assert value == pytest.approx(9.0, rel=1e-6)
    B = random_symmetric(30, torch.cat([torch.tensor([-9.0, 4.0]), torch.linspace(-1.0, 1.0, 28)]), seed=5)
    value = power_iteration(lambda x: B @ x, 30, iters=2000, tol=1e-14, generator=torch.Generator().manual_seed(0))
    assert value == pytest.approx(-9.0, rel=1e-6)  # the largest in magnitude


@pytest.mark.parametrize("kwargs", [dict(dim=0), dict(dim=3.5), dict(iters=0), dict(k=0), dict(k=5, iters=3),
                                    dict(generator="seed")])
def test_lanczos_rejects_bad_input(kwargs):
    args = dict(dim=10, iters=5, k=1)
    args.update(kwargs)
    dim = args.pop("dim")
    with pytest.raises(ValueError):
        lanczos(lambda x: x, dim, **args)


def test_eigen_routines_reject_bad_operators():
    with pytest.raises(ValueError):
        lanczos("not callable", 3)
    with pytest.raises(ValueError, match="shape"):
        lanczos(lambda x: x[:2], 3, iters=3)
    with pytest.raises(ValueError, match="non-finite"):
        lanczos(lambda x: x * math.nan, 3, iters=3)
    with pytest.raises(ValueError):
        power_iteration(lambda x: x, 3, tol=0.0)
    with pytest.raises(ValueError):
        power_iteration(lambda x: x, 3, iters=-1)


# --------------------------------------------------------------------------- Hessian-vector products
@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_hvp_matches_explicit_hessian_on_mlp(mode):
    model = mlp()
    x, y = mlp_data()
    loss_fn = mlp_loss(x, y)
    H = explicit_hessian(model, loss_fn)
    params = dict(model.named_parameters())
    op = hvp(lambda p: torch.func.functional_call(model, p, (x,)).sub(y).pow(2).mean(), params, mode=mode)
    assert op.dim == H.shape[0]
    gen = torch.Generator().manual_seed(0)
    V = torch.randn(op.dim, 4, generator=gen, dtype=torch.float64)
    HV = torch.stack([op(V[:, j]) for j in range(4)], dim=1)
    np.testing.assert_allclose(HV.numpy(), (H @ V).numpy(), rtol=1e-10, atol=1e-12)


def test_hvp_on_a_plain_tensor():
    A = random_symmetric(5, [1.0, 2.0, 3.0, -1.0, 0.5], seed=6)
    x0 = torch.randn(5, dtype=torch.float64)
    op = hvp(lambda t: 0.5 * t @ A @ t + t.sin().sum(), x0)
    v = torch.randn(5, dtype=torch.float64)
    expected = A @ v - x0.sin() * v  # Hessian of sum(sin) is diag(-sin)
    np.testing.assert_allclose(op(v).numpy(), expected.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        op(torch.zeros(4, dtype=torch.float64))


def test_sharpness_of_model_matches_eigvalsh():
    model = mlp()
    x, y = mlp_data()
    H = explicit_hessian(model, mlp_loss(x, y))
    value = sharpness(model, mlp_loss(x, y), iters=H.shape[0], generator=torch.Generator().manual_seed(0))
    assert value == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-9)


def test_hvp_on_the_gpt_with_tied_weights_matches_double_backward():
    """The char GPT (attention, tied embedding / lm_head) against torch.autograd.grad twice."""
    from kadam_edu.models import GPT, gpt_config
    from kadam_edu.sharpness import _model_hvp

    torch.manual_seed(0)
    model = GPT(gpt_config("smoke")).double()
    gen = torch.Generator().manual_seed(3)
    idx = torch.randint(0, 65, (2, 8), generator=gen)
    tgt = torch.randint(0, 65, (2, 8), generator=gen)
    op = _model_hvp(model, lambda m: m(idx, tgt)[1], "reverse")
    params = [p for p in model.parameters()]
    assert op.dim == sum(p.numel() for p in params)  # the tied weight counted once
    v = torch.randn(op.dim, generator=gen, dtype=torch.float64)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        loss = model(idx, tgt)[1]
        g = torch.autograd.grad(loss, params, create_graph=True)
        chunks = list(v.split([p.numel() for p in params]))
        dot = sum((gi * c.view_as(gi)).sum() for gi, c in zip(g, chunks))
        ref = torch.cat([h.reshape(-1) for h in torch.autograd.grad(dot, params)])
    np.testing.assert_allclose(op(v).numpy(), ref.numpy(), rtol=1e-8, atol=1e-10)


def test_hvp_rejects_bad_input():
    with pytest.raises(ValueError):
        hvp("f", torch.zeros(3))
    with pytest.raises(ValueError):
        hvp(lambda t: t.sum(), [torch.zeros(3)])
    with pytest.raises(ValueError):
        hvp(lambda t: t.sum(), {})
    with pytest.raises(ValueError, match="floating"):
        hvp(lambda t: t.sum(), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="one dtype"):
        hvp(lambda p: p["a"].sum(), {"a": torch.zeros(2), "b": torch.zeros(2, dtype=torch.float64)})
    with pytest.raises(ValueError, match="mode"):
        hvp(lambda t: t.pow(2).sum(), torch.zeros(3), mode="sideways")
    with pytest.raises(ValueError, match="scalar"):
        hvp(lambda t: t.pow(2), torch.ones(3))


# --------------------------------------------------------------------------- Adam's preconditioner
def explicit_preconditioned_top(model, loss_fn, P_by_name):
    H = explicit_hessian(model, loss_fn)
    p = torch.cat([P_by_name[k].reshape(-1) for k, _ in model.named_parameters()]).double()
    s = p.rsqrt()
    return float(torch.linalg.eigvalsh(s[:, None] * H * s[None, :])[-1]), H


def test_preconditioned_sharpness_torch_adam_matches_explicit():
    model = mlp()
    x, y = mlp_data()
    loss_fn = mlp_loss(x, y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-8)
    train_steps(model, opt, loss_fn, 7)
    P = {}
    for name, p in model.named_parameters():  # the formula, written out: sqrt(v / (1 - beta^s)) + eps
        st = opt.state[p]
        P[name] = torch.sqrt(st["exp_avg_sq"] / (1 - 0.99 ** int(st["step"]))) + 1e-8
    read = adam_preconditioner(model, opt)
    for name in P:
        np.testing.assert_allclose(read[name].numpy(), P[name].numpy(), rtol=1e-14)
    exact, H = explicit_preconditioned_top(model, loss_fn, P)
    got = preconditioned_sharpness(model, loss_fn, opt, iters=H.shape[0], generator=torch.Generator().manual_seed(0))
    assert got == pytest.approx(exact, rel=1e-9)
    # the same through a mapping name -> P
    got_map = preconditioned_sharpness(model, loss_fn, P, iters=H.shape[0], generator=torch.Generator().manual_seed(1))
    assert got_map == pytest.approx(exact, rel=1e-9)


def test_preconditioned_sharpness_kadam_matches_explicit_and_torch():
    x, y = mlp_data()
    loss_fn = mlp_loss(x, y)
    a, b = mlp(), mlp()
    opt_k = KAdam(a.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-6)
    opt_t = torch.optim.Adam(b.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=0.0)
    train_steps(a, opt_k, loss_fn, 5)
    train_steps(b, opt_t, loss_fn, 5)
    P = {}
    for name, p in a.named_parameters():  # KAdam's eps sits inside: (sqrt(v) + eps) / sqrt(1 - beta^s)
        st = opt_k.state[p]
        P[name] = (st["v"][0].sqrt() + 1e-6) / math.sqrt(1 - 0.99 ** st["step"])
    read = adam_preconditioner(a, opt_k)
    for name in P:
        np.testing.assert_allclose(read[name].numpy(), P[name].numpy(), rtol=1e-14)
    exact, H = explicit_preconditioned_top(a, loss_fn, P)
    got = preconditioned_sharpness(a, loss_fn, opt_k, iters=H.shape[0], generator=torch.Generator().manual_seed(0))
    assert got == pytest.approx(exact, rel=1e-9)
    # eps -> 0: KAdam and torch.optim.Adam have the same preconditioner
    a2 = mlp()
    opt_k0 = KAdam(a2.parameters(), lr=1e-2, betas=(0.9, 0.99))
    train_steps(a2, opt_k0, loss_fn, 5)
    pk, pt = adam_preconditioner(a2, opt_k0), adam_preconditioner(b, opt_t)
    for name in pk:
        np.testing.assert_allclose(pk[name].numpy(), pt[name].numpy(), rtol=1e-8)


def test_preconditioner_rejects_what_it_cannot_read():
    model = mlp()
    x, y = mlp_data()
    loss_fn = mlp_loss(x, y)
    with pytest.raises(ValueError, match="no optimizer state"):
        adam_preconditioner(model, torch.optim.Adam(model.parameters()))
    with pytest.raises(ValueError, match="Adam"):
        adam_preconditioner(model, torch.optim.SGD(model.parameters(), lr=0.1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)  # weight_decay=0.01 by default
    train_steps(model, opt, loss_fn, 1)
    with pytest.raises(ValueError, match="weight_decay"):
        adam_preconditioner(model, opt)
    m2 = mlp()
    opt2 = KAdam(m2.parameters(), lr=1e-3, k=2)
    train_steps(m2, opt2, loss_fn, 1)
    with pytest.raises(ValueError, match="k=2"):
        adam_preconditioner(m2, opt2)
    m3 = mlp()
    opt3 = KAdam(list(m3.parameters())[:2], lr=1e-3)
    train_steps(m3, opt3, loss_fn, 1)
    with pytest.raises(ValueError, match="not in the optimizer"):
        adam_preconditioner(m3, opt3)
    with pytest.raises(ValueError, match="amsgrad"):
        m4 = mlp()
        o4 = torch.optim.Adam(m4.parameters(), amsgrad=True)
        train_steps(m4, o4, loss_fn, 1)
        adam_preconditioner(m4, o4)


def test_preconditioned_sharpness_rejects_bad_input():
    model = mlp()
    x, y = mlp_data()
    loss_fn = mlp_loss(x, y)
    good = {k: torch.ones_like(p) for k, p in model.named_parameters()}
    with pytest.raises(ValueError, match="missing"):
        preconditioned_sharpness(model, loss_fn, dict(list(good.items())[:2]))
    bad_shape = dict(good)
    bad_shape["0.weight"] = torch.ones(3)
    with pytest.raises(ValueError, match="shape"):
        preconditioned_sharpness(model, loss_fn, bad_shape)
    zero = dict(good)
    zero["0.bias"] = torch.zeros_like(zero["0.bias"])
    with pytest.raises(ValueError, match="> 0"):
        preconditioned_sharpness(model, loss_fn, zero)
    with pytest.raises(ValueError, match="preconditioner"):
        preconditioned_sharpness(model, loss_fn, 1.0)
    with pytest.raises(ValueError, match="method"):
        preconditioned_sharpness(model, loss_fn, good, method="qr")
    with pytest.raises(ValueError, match="Module"):
        preconditioned_sharpness("model", loss_fn, good)
    drop = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout(0.5)).double()
    with pytest.raises(ValueError, match="dropout"):
        sharpness(drop, lambda m: m(x).pow(2).mean())
    drop.eval()
    assert math.isfinite(sharpness(drop, lambda m: m(x).pow(2).mean(), iters=5))


# --------------------------------------------------------------------------- the quadratic toy
def test_adam_on_quadratic_is_kadam():
    """The numpy Adam of adam_on_quadratic against KAdam (k=1) on the same quadratic."""
    H = random_symmetric(3, [1.0, 4.0, 9.0], seed=7).numpy()
    run = adam_on_quadratic(H, lr=0.05, beta=0.99, gamma=0.8, steps=60, theta0=np.array([1.0, -2.0, 0.5]))
    theta = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    opt = KAdam([theta], lr=0.05, levels=[Level(gamma=0.8, beta=0.99)], eps=0.0)
    Ht = torch.as_tensor(H)
    for n in range(60):
        opt.zero_grad()
        (0.5 * theta @ Ht @ theta).backward()
        opt.step()
        np.testing.assert_allclose(theta.detach().numpy(), run.theta[n + 1], rtol=1e-10, atol=1e-12)


def test_adam_on_quadratic_settles_at_the_threshold_without_momentum():
    H = np.diag([1.0, 20.0])
    run = adam_on_quadratic(H, lr=0.1, gamma=0.0, beta=0.99, steps=4000)
    ratio = run.sharpness[-1000:] / run.threshold
    assert run.threshold == pytest.approx(20.0)
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("kwargs", [dict(hessian=np.ones((2, 3))), dict(hessian=np.array([[1.0, 2.0], [0.0, 1.0]])),
                                    dict(hessian=np.diag([1.0, -1.0])), dict(lr=0.0), dict(steps=0),
                                    dict(eps=-1.0), dict(theta0=np.zeros(3)), dict(gamma=1.0), dict(beta=1.0)])
def test_adam_on_quadratic_rejects_bad_input(kwargs):
    args = dict(hessian=np.eye(2), lr=0.1, steps=10)
    args.update(kwargs)
    with pytest.raises(ValueError):
        adam_on_quadratic(args.pop("hessian"), **args)


# --------------------------------------------------------------------------- experiment and views
def test_eos_summary_numbers():
    s = eos_summary(np.array([10, 20, 30, 40]), np.array([0.2, 0.95, 1.1, 0.9]), tail=0.5, arrive=0.9)
    assert s["ratio_tail_median"] == pytest.approx(1.0)
    assert (s["ratio_tail_min"], s["ratio_tail_max"], s["ratio_max"]) == (0.9, 1.1, 1.1)
    assert s["arrival_step"] == 20
    assert eos_summary(np.array([10]), np.array([0.5]), tail=0.5, arrive=0.9)["arrival_step"] is None


def test_eos_smoke(tmp_path):
    res = eos("smoke", steps=20, measure_every=10, lrs=[1e-2], minibatch_lrs=[1e-2], progress=False)
    assert [p["mode"] for p in res.points] == ["full-batch", "minibatch"]
    p = res.points[0]
    assert p["threshold"] == pytest.approx(38 / 1e-2)
    arr = res.point_arrays(0)
    assert list(arr["steps"]) == [10, 20] and len(arr["loss"]) == 20
    assert np.all(np.isfinite(arr["sharpness"])) and np.all(arr["sharpness"] > 0)
    assert p["ratio_max"] == pytest.approx(float(np.max(arr["sharpness"])) / p["threshold"])
    loaded = Result.load(res.save(tmp_path))
    assert loaded.points == res.points
    assert isinstance(plots.eos(loaded), Figure)
    assert isinstance(plots.plot(loaded), Figure)
    # the same seed reproduces the run exactly (the same runs, so the same populations: a run's
    # arithmetic depends on its population's size at the rounding level)
    again = eos("smoke", steps=20, measure_every=10, lrs=[1e-2], minibatch_lrs=[1e-2], progress=False)
    np.testing.assert_array_equal(again.point_arrays(0)["loss"], arr["loss"])


@pytest.mark.parametrize("overrides", [dict(colour="red"), dict(lrs=[0.0]), dict(lrs=[], minibatch_lrs=[]),
                                       dict(measure_every=0), dict(measure_every=100, steps=10), dict(tail=0.0)])
def test_eos_rejects_bad_settings(overrides):
    with pytest.raises(ValueError):
        eos("smoke", progress=False, **overrides)


def test_eos_presets_turn_dropout_off():
    for preset in EOS.values():
        assert preset["model_overrides"]["dropout"] == 0.0


def test_eos_quadratic_view_and_explorer():
    fig = plots.eos_quadratic_view(0.1, 0.9, 0.999, steps=500)
    assert isinstance(fig, Figure)
    line = fig.axes[0].lines[1]  # the threshold line
    assert line.get_ydata()[0] == pytest.approx(380.0)
    with pytest.raises(ValueError):
        plots.eos_quadratic_view(0.1, 1.0)
    with pytest.raises(ValueError):
        plots.eos_quadratic_view(-0.1, 0.9)
    with pytest.raises(ValueError):
        plots.eos(Result(figure="fig1", scale="smoke", config={}))
    pytest.importorskip("ipywidgets")
    from kadam_edu import widgets

    box = widgets.eos_quadratic_explorer(steps=200)
    assert box is not None
    with pytest.raises(ValueError):
        widgets.eos_quadratic_explorer(lr=5.0)
    with pytest.raises(ValueError):
        widgets.eos_quadratic_explorer(steps=0)


@pytest.mark.parametrize("kw, match", [
    (dict(method="qr"), r"^method must be one of \['lanczos', 'power'\]; got 'qr'$"),
    (dict(iters=0), "^iters must be a positive int; got 0$"),
    (dict(generator=0), "^generator must be None or a torch.Generator; got 0$"),
    (dict(mode="sideways"), r"^mode must be one of \['reverse', 'forward'\]; got 'sideways'$"),
])
def test_sharpness_refuses_bad_arguments_before_any_hessian_work(kw, match):
    model = mlp()
    x, y = mlp_data()
    calls = []

    def loss_fn(m):
        calls.append(1)
        return mlp_loss(x, y)(m)

    good = {k: torch.ones_like(p) for k, p in model.named_parameters()}
    with pytest.raises(ValueError, match=match):
        sharpness(model, loss_fn, **kw)
    with pytest.raises(ValueError, match=match):
        preconditioned_sharpness(model, loss_fn, good, **kw)
    assert calls == []  # the loss was never evaluated: no graph built


def test_eigen_solvers_name_the_bad_argument():
    A = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^tol must be a finite real > 0; got 0.0$"):
        power_iteration(lambda v: A @ v, 3, tol=0.0)
    with pytest.raises(ValueError, match="^dim must be a positive int; got 0$"):
        lanczos(lambda v: A @ v, 0)
    with pytest.raises(ValueError, match="^k must be a positive int; got 0$"):
        lanczos(lambda v: A @ v, 3, k=0)
    with pytest.raises(ValueError, match=r"^eps must be a finite real >= 0; got -1.0$"):
        adam_on_quadratic(np.eye(2), lr=1e-2, eps=-1.0)
    with pytest.raises(ValueError, match=r"^gamma must be a real in \[0, 1\) .*; got 1.0$"):
        adam_on_quadratic(np.eye(2), lr=1e-2, gamma=1.0)
