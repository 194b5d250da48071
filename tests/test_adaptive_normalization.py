"""App. R's adaptive normalization, KAdam as its k-fold chain, sync-free bookkeeping, populations."""

import io
import math

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from kadam_edu import KAdam, Level, adaptive_normalization, kadam_levels

F64 = torch.float64


# --------------------------------------------------------------------------- helpers
class HostSyncCounter(TorchDispatchMode):
    """Counts the aten calls that copy device data to the host: ``_local_scalar_dense`` (``.item()``,
    ``float()``, ``bool()`` of a tensor) and copies from a non-CPU tensor to the CPU."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default:
            self.calls.append("_local_scalar_dense")
        elif func is torch.ops.aten._to_copy.default and kwargs.get("device") is not None:
            if torch.device(kwargs["device"]).type == "cpu" and args[0].device.type != "cpu":
                self.calls.append("_to_copy to cpu")
        elif func is torch.ops.aten.copy_.default and args[0].device.type == "cpu" and args[1].device.type != "cpu":
            self.calls.append("copy_ to cpu")
        return func(*args, **kwargs)


def app_r_operator(xs, gamma, beta):
    """A_{gamma,beta}(x_{0:n}) = M_gamma(x_{0:n}) / sqrt(M_beta(x_{0:n}^2)) straight from the sums of App. R."""
    n = len(xs) - 1
    weights_m = torch.tensor([gamma ** (n - j) for j in range(n + 1)], dtype=F64)
    weights_v = torch.tensor([beta ** (n - j) for j in range(n + 1)], dtype=F64)
    x = torch.stack(xs)
    shape = (-1,) + (1,) * (x.ndim - 1)
    M_m = (1 - gamma) / (1 - gamma ** (n + 1)) * (weights_m.view(shape) * x).sum(0)
    M_v = (1 - beta) / (1 - beta ** (n + 1)) * (weights_v.view(shape) * x**2).sum(0)
    return M_m / M_v.sqrt()


# --------------------------------------------------------------------------- the operator
@pytest.mark.parametrize("gamma,beta", [(0.9, 0.999), (0.0, 0.95), (0.99, 0.9)])
def test_is_app_r_operator(gamma, beta):
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(5, 3, generator=gen, dtype=F64) for _ in range(12)]
    m, v = torch.zeros(5, 3, dtype=F64), torch.zeros(5, 3, dtype=F64)
    for n in range(len(xs)):
        u = adaptive_normalization(xs[n], m, v, gamma=gamma, beta=beta, step=n, eps=0.0)
        torch.testing.assert_close(u, app_r_operator(xs[: n + 1], gamma, beta), rtol=1e-12, atol=0)


def test_eps_enters_as_in_algorithm_1():
    """u = sqrt(1-beta^(n+1))/(1-gamma^(n+1)) * m/(sqrt(v)+eps): eps on sqrt(v) before bias correction."""
    x = torch.tensor([1e-3, -2.0, 0.0], dtype=F64)
    gamma, beta, eps = 0.9, 0.999, 1e-2
    m, v = torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64)
    u = adaptive_normalization(x, m, v, gamma=gamma, beta=beta, step=0, eps=eps)
    m_ref, v_ref = (1 - gamma) * x, (1 - beta) * x**2
    c = math.sqrt(1 - beta) / (1 - gamma)
    torch.testing.assert_close(m, m_ref, rtol=1e-15, atol=0)
    torch.testing.assert_close(v, v_ref, rtol=1e-15, atol=0)
    torch.testing.assert_close(u, c * m_ref / (v_ref.sqrt() + eps), rtol=1e-15, atol=0)
    assert u[2] == 0.0  # 0 / (0 + eps), no 0/0


def test_tensor_decays_and_tensor_step_equal_floats_row_by_row():
    gen = torch.Generator().manual_seed(1)
    gammas, betas = torch.tensor([0.9, 0.0, 0.5], dtype=F64), torch.tensor([0.999, 0.9, 0.6], dtype=F64)
    m, v = torch.zeros(3, 4, dtype=F64), torch.zeros(3, 4, dtype=F64)
    rows = [(torch.zeros(4, dtype=F64), torch.zeros(4, dtype=F64)) for _ in range(3)]
    for n in range(6):
        x = torch.randn(3, 4, generator=gen, dtype=F64)
        u = adaptive_normalization(x, m, v, gamma=gammas.view(3, 1), beta=betas.view(3, 1), step=torch.tensor(n))
        for e, (me, ve) in enumerate(rows):
            ue = adaptive_normalization(x[e], me, ve, gamma=float(gammas[e]), beta=float(betas[e]), step=n)
            torch.testing.assert_close(u[e], ue, rtol=1e-15, atol=0)
            torch.testing.assert_close(m[e], me, rtol=0, atol=0)
            torch.testing.assert_close(v[e], ve, rtol=0, atol=0)


def test_out_and_in_place_on_x():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, generator=gen)
    m1, v1, m2, v2 = (torch.zeros(6) for _ in range(4))
    fresh = adaptive_normalization(x, m1, v1, gamma=0.9, beta=0.99, step=0)
    assert fresh is not x
    y = x.clone()
    out = adaptive_normalization(y, m2, v2, gamma=0.9, beta=0.99, step=0, out=y)  # KAdam reuses one buffer per level
    assert out is y and torch.equal(out, fresh) and torch.equal(m1, m2) and torch.equal(v1, v2)


def test_float32_step_as_0_dim_tensor_matches_int():
    x = torch.randn(5)
    m1, v1, m2, v2 = (torch.zeros(5) for _ in range(4))
    for n in range(3):
        a = adaptive_normalization(x, m1, v1, gamma=0.9, beta=0.999, step=n)
        b = adaptive_normalization(x, m2, v2, gamma=0.9, beta=0.999, step=torch.tensor(n))
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)


BAD = [
    (dict(m=torch.zeros(2)), "m must have x's shape"),
    (dict(v=torch.zeros(3, dtype=F64)), "v must have x's dtype"),
    (dict(gamma=1.0), r"gamma must lie in \[0, 1\)"),
    (dict(gamma=-0.1), r"gamma must lie in \[0, 1\)"),
    (dict(beta=0.0), r"beta must lie in \(0, 1\)"),
    (dict(beta=1.0), r"beta must lie in \(0, 1\)"),
    (dict(beta=torch.ones(4)), "beta must broadcast against x"),
    (dict(step=-1), "step must be"),
    (dict(step=1.5), "step must be"),
    (dict(step=torch.tensor([1, 2])), "step must be"),
    (dict(eps=-1e-8), "eps must be"),
    (dict(eps=float("nan")), "eps must be"),
    (dict(out=torch.empty(4)), "out must have x's shape"),
    (dict(x=torch.zeros(3, dtype=torch.int64)), "x must be a real floating-point tensor"),
]


@pytest.mark.parametrize("override,message", BAD)
def test_bad_input_is_refused_before_any_change(override, message):
    args = dict(x=torch.ones(3), m=torch.zeros(3), v=torch.zeros(3), gamma=0.9, beta=0.999, step=0, eps=1e-30)
    args.update(override)
    m0, v0 = args["m"].clone(), args["v"].clone()
    x, m, v = args.pop("x"), args.pop("m"), args.pop("v")
    with pytest.raises(ValueError, match=message):
        adaptive_normalization(x, m, v, **args)
    assert torch.equal(m, m0) and torch.equal(v, v0)


def test_out_may_not_alias_the_state():
    x, m, v = torch.ones(3), torch.zeros(3), torch.zeros(3)
    with pytest.raises(ValueError, match="out must not be m or v"):
        adaptive_normalization(x, m, v, gamma=0.9, beta=0.99, step=0, out=m)


# --------------------------------------------------------------------------- KAdam = the chain
def chain_step(theta, g, ms, vs, levels, n, lr, wd, coupled, eps):
    """Algorithm 1 written with the public operator: k adaptive normalizations, then weight decay and lr."""
    if coupled:
        g = g.add(theta, alpha=wd)
    u = g
    per_level = []
    for lvl, m, v in zip(levels, ms, vs):
        u = adaptive_normalization(u, m, v, gamma=lvl.gamma, beta=lvl.beta, step=n, eps=eps)
        per_level.append(u.abs().max())
    if not coupled:
        u = u.add(theta, alpha=wd)
    theta.add_(u, alpha=-lr)
    return u.abs().max(), per_level


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("coupled", [False, True])
def test_kadam_is_adaptive_normalization_chained_k_times(foreach, k, coupled):
    """The single-tensor path is the chain bit for bit; the foreach path agrees to float64 rounding."""
    gen = torch.Generator().manual_seed(3)
    shapes = [(4, 3), (7,), ()]
    params = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=F64)) for s in shapes]
    ref = [p.detach().clone() for p in params]
    levels = kadam_levels(k, beta=0.99, gamma=0.8)
    ms = [[torch.zeros_like(r) for _ in levels] for r in ref]
    vs = [[torch.zeros_like(r) for _ in levels] for r in ref]
    opt = KAdam(params, lr=1e-2, levels=levels, weight_decay=0.1, coupled=coupled, foreach=foreach)
    for n in range(8):
        grads = [torch.randn(s, generator=gen, dtype=F64) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        results = [chain_step(r, g, m, v, levels, n, 1e-2, 0.1, coupled, 1e-30) for r, g, m, v in zip(ref, grads, ms, vs)]
        for p, r in zip(params, ref):
            if foreach:
                torch.testing.assert_close(p.detach(), r, rtol=0, atol=1e-14)
            else:
                assert torch.equal(p.detach(), r)
        expect = max(float(mu) for mu, _ in results)
        assert opt.last_max_update == pytest.approx(expect, rel=1e-13)
        expect_levels = [max(float(lv[i]) for _, lv in results) for i in range(k)]
        assert opt.last_level_max_updates == pytest.approx(expect_levels, rel=1e-13)


# --------------------------------------------------------------------------- no host synchronisation
def _model_with_grads(seed, dtype=torch.float32, device="cpu", n_params=6):
    gen = torch.Generator().manual_seed(seed)
    params = []
    for i in range(n_params):
        p = torch.nn.Parameter(torch.randn(3 + i, 2, generator=gen, dtype=dtype).to(device))
        p.grad = torch.randn(3 + i, 2, generator=gen, dtype=dtype).to(device)
        params.append(p)
    return params


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("n_params", [1, 6])
@pytest.mark.parametrize("lr", [1e-3, "tensor"])
def test_step_never_copies_to_the_host(foreach, n_params, lr):
    params = _model_with_grads(0, n_params=n_params)
    lr = torch.tensor(1e-3) if lr == "tensor" else lr
    opt = KAdam(params, lr=lr, k=2, weight_decay=0.01, foreach=foreach)
    for _ in range(3):
        with HostSyncCounter() as counter:
            opt.step()
        assert counter.calls == []
    assert opt.last_max_update_tensor.shape == () and opt.last_level_max_updates_tensor.shape == (2,)
    assert opt.last_max_update == float(opt.last_max_update_tensor)
    assert opt.last_level_max_updates == opt.last_level_max_updates_tensor.tolist()


@pytest.mark.parametrize("foreach", [False, True])
def test_meta_step_never_copies_to_the_host(foreach):
    """On the meta device any host copy fails outright, so this catches one even without a GPU."""
    params = _model_with_grads(0, device="meta")
    opt = KAdam(params, k=2, foreach=foreach)
    with HostSyncCounter() as counter:
        opt.step()
    assert counter.calls == []
    assert opt.last_level_max_updates_tensor.device.type == "meta"


# --------------------------------------------------------------------------- populations
E = 3
SHAPES = [(E, 4, 3), (E, 5), (E,)]
LR = torch.tensor([1e-2, 3e-3, 5e-2], dtype=F64)
WD = torch.tensor([0.0, 0.1, 0.03], dtype=F64)
GAMMA = torch.tensor([0.9, 0.5, 0.0], dtype=F64)
BETA = torch.tensor([0.999, 0.9, 0.95], dtype=F64)
LEVELS2 = [Level(gamma=GAMMA, beta=BETA), Level(gamma=torch.tensor([0.3, 0.0, 0.7], dtype=F64), beta=torch.tensor([0.9, 0.99, 0.8], dtype=F64))]


def population(seed=4, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in SHAPES]


def gradient(theta, noise):
    """A gradient that depends on the parameters, so trajectories feed back."""
    return noise + 0.5 * theta + 0.1 * theta**3


def noises(steps, seed=5, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES] for _ in range(steps)]


def member_kwargs(e, hyper):
    if hyper == "betas":
        return dict(betas=(float(GAMMA[e]), float(BETA[e])))
    if hyper == "betas_k2":
        return dict(betas=(float(GAMMA[e]), float(BETA[e])), k=2, strategy="inverse_exp")
    return dict(levels=[Level(gamma=float(lv.gamma[e]), beta=float(lv.beta[e])) for lv in LEVELS2])


def population_kwargs(hyper):
    if hyper == "betas":
        return dict(betas=(GAMMA, BETA))
    if hyper == "betas_k2":
        return dict(betas=(GAMMA, BETA), k=2, strategy="inverse_exp")
    return dict(levels=LEVELS2)


def run_population(opt, params, noise_seq, after_step=None):
    for n, noise in enumerate(noise_seq):
        for p, z in zip(params, noise):
            p.grad = gradient(p.detach(), z)
        opt.step()
        if after_step is not None:
            after_step(n)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("coupled", [False, True])
@pytest.mark.parametrize("hyper", ["betas", "betas_k2", "levels_k2"])
def test_population_member_equals_its_own_kadam(foreach, coupled, hyper):
    """Member e of a population group follows exactly the KAdam run on its slice with its hyperparameters."""
    params = population()
    singles = [[torch.nn.Parameter(p.detach()[e].clone()) for p in params] for e in range(E)]
    opt = KAdam(params, lr=LR, weight_decay=WD, coupled=coupled, members=E, foreach=foreach, **population_kwargs(hyper))
    refs = [
        KAdam(singles[e], lr=float(LR[e]), weight_decay=float(WD[e]), coupled=coupled, foreach=foreach, **member_kwargs(e, hyper))
        for e in range(E)
    ]
    k = 1 if hyper == "betas" else 2
    for noise in noises(6):
        for p, z in zip(params, noise):
            p.grad = gradient(p.detach(), z)
        opt.step()
        for e in range(E):
            for q, z in zip(singles[e], noise):
                q.grad = gradient(q.detach(), z[e])
            refs[e].step()
        for e in range(E):
            for p, q in zip(params, singles[e]):
                torch.testing.assert_close(p.detach()[e], q.detach(), rtol=1e-14, atol=1e-15)
        mu, lmu = opt.last_max_update_tensor, opt.last_level_max_updates_tensor
        assert mu.shape == (E,) and lmu.shape == (E, k)
        np.testing.assert_allclose(opt.last_max_update, [r.last_max_update for r in refs], rtol=1e-13)
        np.testing.assert_allclose(opt.last_level_max_updates, [r.last_level_max_updates for r in refs], rtol=1e-13)
    assert isinstance(opt.last_max_update, np.ndarray) and opt.last_level_max_updates.shape == (E, k)


@pytest.mark.parametrize("foreach", [False, True])
def test_population_groups_share_one_max_update_per_member(foreach):
    params = population()
    opt = KAdam([{"params": params[:2]}, {"params": params[2:], "lr": 0.5 * LR}], lr=LR, members=E, foreach=foreach)
    run_population(opt, params, noises(2))
    ref_params = population()
    ref = KAdam([{"params": ref_params[:2]}, {"params": ref_params[2:], "lr": 0.5 * LR}], lr=LR, members=E, foreach=foreach)
    maxes = []
    for noise in noises(2):
        before = [p.detach().clone() for p in ref_params]
        for p, z in zip(ref_params, noise):
            p.grad = gradient(p.detach(), z)
        ref.step()
        lrs = [LR, LR, 0.5 * LR]
        steps = [((p.detach() - b) / lr.view((-1,) + (1,) * (p.ndim - 1))).abs().reshape(E, -1).amax(1) for p, b, lr in zip(ref_params, before, lrs)]
        maxes.append(torch.stack(steps).amax(0))
    np.testing.assert_allclose(ref.last_max_update, maxes[-1].numpy(), rtol=1e-10)
    np.testing.assert_allclose(opt.last_max_update, ref.last_max_update, rtol=0)


@pytest.mark.parametrize("foreach", [False, True])
def test_frozen_members_do_not_move_and_the_others_do_not_notice(foreach):
    free_params, params = population(), population()
    free = KAdam(free_params, lr=LR, weight_decay=WD, betas=(GAMMA, BETA), members=E, foreach=foreach)
    opt = KAdam(params, lr=LR, weight_decay=WD, betas=(GAMMA, BETA), members=E, foreach=foreach)
    seq = noises(6)
    run_population(free, free_params, seq[:2])
    run_population(opt, params, seq[:2])
    assert opt.active_members.tolist() == [True, True, True]
    opt.freeze_members(torch.tensor([False, True, False]))
    frozen_at = [p.detach()[1].clone() for p in params]
    for n in range(2, 6):
        # a frozen member's gradient may be garbage: where, not multiplication, keeps it out
        for p, z in zip(params, seq[n]):
            p.grad = gradient(p.detach(), z)
            p.grad[1] = float("nan")
        with HostSyncCounter() as counter:
            opt.step()
        assert counter.calls == []
        run_population(free, free_params, seq[n : n + 1])
        for p, q, f in zip(params, free_params, frozen_at):
            assert torch.equal(p.detach()[1], f)
            assert torch.equal(p.detach()[[0, 2]], q.detach()[[0, 2]])
        mu = opt.last_max_update
        assert math.isnan(mu[1]) and np.isfinite(mu[[0, 2]]).all()
        assert np.isnan(opt.last_level_max_updates[1]).all()
    assert opt.active_members.tolist() == [True, False, True]


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_a_member_with_a_non_finite_update_is_frozen_on_the_device(foreach, bad):
    params = population()
    opt = KAdam(params, lr=LR, betas=(GAMMA, BETA), members=E, foreach=foreach, weight_decay=WD)
    free_params = population()
    free = KAdam(free_params, lr=LR, betas=(GAMMA, BETA), members=E, foreach=foreach, weight_decay=WD)
    seq = noises(5)
    run_population(opt, params, seq[:3])
    run_population(free, free_params, seq[:3])
    last_good = [p.detach()[2].clone() for p in params]
    for p, z in zip(params, seq[3]):
        p.grad = gradient(p.detach(), z)
    params[1].grad[2, 0] = bad  # one entry of one parameter of member 2
    with HostSyncCounter() as counter:
        opt.step()
    assert counter.calls == []
    assert opt.active_members.tolist() == [True, True, False]
    mu = opt.last_max_update
    assert not np.isfinite(mu[2]) and np.isfinite(mu[[0, 1]]).all()  # the step that froze it reports why
    run_population(opt, params, seq[4:])
    run_population(free, free_params, seq[3:])
    for p, q, g in zip(params, free_params, last_good):
        assert torch.equal(p.detach()[2], g) and torch.isfinite(p).all()
        assert torch.equal(p.detach()[:2], q.detach()[:2])
    assert math.isnan(opt.last_max_update[2])


@pytest.mark.parametrize("foreach", [False, True])
def test_population_state_dict_round_trip_is_bit_exact(foreach):
    seq = noises(8)
    full_params = population()
    full = KAdam(full_params, lr=LR, weight_decay=WD, levels=LEVELS2, members=E, foreach=foreach)
    run_population(full, full_params, seq[:4])
    full.freeze_members(torch.tensor([True, False, False]))
    run_population(full, full_params, seq[4:])

    first_params = population()
    first = KAdam(first_params, lr=LR, weight_decay=WD, levels=LEVELS2, members=E, foreach=foreach)
    run_population(first, first_params, seq[:4])
    first.freeze_members(torch.tensor([True, False, False]))
    buf = io.BytesIO()
    torch.save({"params": [p.detach() for p in first_params], "opt": first.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    resumed_params = [torch.nn.Parameter(t.clone()) for t in saved["params"]]
    fresh_levels = [Level(gamma=torch.full((E,), 0.5, dtype=F64), beta=torch.full((E,), 0.5, dtype=F64))] * 2
    resumed = KAdam(resumed_params, lr=1.0, levels=fresh_levels, members=E, foreach=foreach)  # everything comes from the checkpoint
    resumed.load_state_dict(saved["opt"])
    assert resumed.active_members.tolist() == [False, True, True]
    run_population(resumed, resumed_params, seq[4:])
    for p, q in zip(full_params, resumed_params):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(resumed.last_max_update, full.last_max_update)


def test_population_input_is_refused_with_a_clear_message():
    params = population()
    cases = [
        (dict(members=0), "members must be a positive int"),
        (dict(members=True), "members must be a positive int"),
        (dict(members=4), r"members=4 .*leading dimension"),
        (dict(members=E, lr=torch.ones(2)), r"lr must be a float or a tensor of shape \[3\]"),
        (dict(members=E, lr=-LR), "lr must be"),
        (dict(members=E, weight_decay=torch.full((E,), float("inf"), dtype=F64)), "weight_decay must be"),
        (dict(members=E, betas=(GAMMA, torch.tensor([0.9, 1.0, 0.9], dtype=F64))), r"betas\[1\] must lie in \(0, 1\)"),
        (dict(members=E, betas=(torch.tensor([0.9, -0.1, 0.9], dtype=F64), BETA)), r"betas\[0\] must lie in \[0, 1\)"),
        (dict(members=E, levels=[Level(gamma=GAMMA, beta=torch.ones(2))]), r"levels\[0\].beta must be a float or a tensor of shape \[3\]"),
        (dict(lr=LR), "lr must be a number or a 1-element tensor"),
        (dict(betas=(GAMMA, BETA)), "members"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            KAdam(params, **kwargs)
    opt = KAdam(params[:2], members=E)
    before = len(opt.param_groups)
    with pytest.raises(ValueError, match="members"):
        opt.add_param_group({"params": params[2:], "members": None})
    assert len(opt.param_groups) == before
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of shape \[3\]"):
        opt.freeze_members(torch.tensor([True, False]))
    with pytest.raises(ValueError, match="members"):
        KAdam(population()).freeze_members(torch.tensor([True, False, False]))


def test_population_reads_nan_before_the_first_step():
    opt = KAdam(population(), members=E, k=2)
    assert np.isnan(opt.last_max_update).all() and opt.last_max_update.shape == (E,)
    assert np.isnan(opt.last_level_max_updates).all() and opt.last_level_max_updates.shape == (E, 2)
    assert opt.last_max_update_tensor is None


@pytest.mark.parametrize("foreach", [False, True])
def test_tensor_lr_steps_like_the_float(foreach):
    """A 1-element tensor lr is used on the device (no .item() per step) and gives the float's steps."""
    a, b = _model_with_grads(1, dtype=F64), _model_with_grads(1, dtype=F64)
    oa = KAdam(a, lr=3e-3, k=2, weight_decay=0.1, foreach=foreach)
    ob = KAdam(b, lr=torch.tensor(3e-3, dtype=F64), k=2, weight_decay=0.1, foreach=foreach)
    for _ in range(4):
        oa.step()
        ob.step()
    for p, q in zip(a, b):
        torch.testing.assert_close(q.detach(), p.detach(), rtol=0, atol=1e-15)
    assert ob.last_max_update == pytest.approx(oa.last_max_update, rel=1e-14)
