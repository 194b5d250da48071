"""KAdam against Algorithm 1 (written out here), torch.optim.Adam/AdamW and the bounds."""

import io
import math
import pickle
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kadam_edu import KAdam, Level, bounds, kadam_levels
from kadam_edu.optim import STRATEGIES, SparseGradientError

STRATEGY_NAMES = ["inverse_exp", "exp", "scaled", "naive"]


# --------------------------------------------------------------------------- helpers
def small_model(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)
    ).to(dtype)


def batches(n, dtype=torch.float64, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 6, generator=gen, dtype=dtype), torch.randn(8, 3, generator=gen, dtype=dtype)) for _ in range(n)]


def train(model, opt, data, after_step=None):
    for x, y in data:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if after_step is not None:
            after_step()


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


class Algorithm1:
    """k-Adam exactly as printed in App. S (Algorithm 1), on a flat float64 vector."""

    def __init__(self, theta, levels, lr, wd, coupled, eps):
        self.theta, self.levels, self.lr, self.wd, self.coupled, self.eps = theta.clone(), levels, lr, wd, coupled, eps
        self.m = [torch.zeros_like(theta) for _ in levels]
        self.v = [torch.zeros_like(theta) for _ in levels]
        self.n = 0
        self.level_max = []
        self.max_update = None

    def step(self, g):
        if self.coupled:
            g = g + self.wd * self.theta
        g_hat = g
        self.level_max = []
        for i, (gamma, beta) in enumerate((lvl.gamma, lvl.beta) for lvl in self.levels):
            self.m[i] = gamma * self.m[i] + (1 - gamma) * g_hat
            self.v[i] = beta * self.v[i] + (1 - beta) * g_hat**2
            c = math.sqrt(1 - beta ** (self.n + 1)) / (1 - gamma ** (self.n + 1))
            g_hat = c * self.m[i] / (torch.sqrt(self.v[i]) + self.eps)
            self.level_max.append(g_hat.abs().max().item())
        u = g_hat
        if not self.coupled:
            u = u + self.wd * self.theta
        self.max_update = u.abs().max().item()
        self.theta = self.theta - self.lr * u
        self.n += 1


def grad_of(model, x, y):
    model.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def load_flat(model, theta):
    torch.nn.utils.vector_to_parameters(theta, model.parameters())


# --------------------------------------------------------------------------- levels
def test_kadam_levels_formulas():
    b, g, k = 0.999, 0.9, 3
    expect = {
        "inverse_exp": (1 - (1 - g) ** (1 / k), 1 - (1 - b) ** (1 / k)),
        "exp": (g**k, b**k),
        "scaled": (g / k, b / k),
        "naive": (g, b),
    }
    for name, (eg, eb) in expect.items():
        levels = kadam_levels(k, beta=b, gamma=g, strategy=name)
        assert len(levels) == k and all(isinstance(lvl, Level) for lvl in levels)
        assert levels[0].gamma == pytest.approx(eg, rel=1e-15) and levels[0].beta == pytest.approx(eb, rel=1e-15)
    # inverse_exp keeps Adam's prefactor: prod (1 - beta_i) = 1 - beta (App. Q)
    lv = kadam_levels(4, beta=b, gamma=g)
    assert math.prod(1 - x.beta for x in lv) == pytest.approx(1 - b, rel=1e-12)


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_k1_is_adam_for_every_strategy(strategy):
    assert kadam_levels(1, beta=0.98, gamma=0.7, strategy=strategy) == [Level(gamma=0.7, beta=0.98)]


def test_every_strategy_stays_in_b_plus():
    """App. Q: beta_i > gamma_i for all four strategies, hence (beta_i, gamma_i) in B+."""
    for name in STRATEGIES:
        for k in range(1, 11):
            for lvl in kadam_levels(k, strategy=name):
                assert bounds.region(lvl.beta, lvl.gamma) == "B+"


# --------------------------------------------------------------------------- vs torch
def test_k1_coupled_equals_torch_adam_float64():
    """With eps ~ 0 the placement of eps is immaterial: only float64 rounding remains."""
    data = batches(50)
    a, b = small_model(), small_model()
    opt_t = torch.optim.Adam(a.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-30, weight_decay=1e-2)
    opt_k = KAdam(b.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-30, weight_decay=1e-2, coupled=True)
    train(a, opt_t, data)
    train(b, opt_k, data)
    torch.testing.assert_close(flat(b), flat(a), rtol=0, atol=1e-12)


def test_k1_decoupled_equals_torch_adamw_float64():
    data = batches(50)
    a, b = small_model(), small_model()
    opt_t = torch.optim.AdamW(a.parameters(), lr=1e-2, betas=(0.8, 0.99), eps=1e-30, weight_decay=0.1)
    opt_k = KAdam(b.parameters(), lr=1e-2, betas=(0.8, 0.99), eps=1e-30, weight_decay=0.1, coupled=False)
    train(a, opt_t, data)
    train(b, opt_k, data)
    torch.testing.assert_close(flat(b), flat(a), rtol=0, atol=1e-12)


@pytest.mark.parametrize("foreach", [False, True])
def test_k1_equals_torch_adam_float32_with_eps_placement_tolerance(foreach):
    """Same eps=1e-8 in both: torch adds eps to sqrt(v_hat); Algorithm 1 adds it to sqrt(v),
    i.e. torch's eps becomes eps_n = eps / sqrt(1 - beta^(n+1)) >= eps. Per step and element,
    |u_kadam - u_torch| <= |u| (eps_n - eps) / (sqrt(v_hat) + eps), so after N steps
    |theta_kadam - theta_torch| <= lr * sum_n max|u_n| (eps_n - eps) / min sqrt(v_hat_n)
    (plus float32 rounding). The tolerance below is that sum, measured on the torch run, x2."""
    lr, (gamma, beta), eps = 1e-3, (0.9, 0.999), 1e-8
    data = batches(50, dtype=torch.float32)
    a, b = small_model(torch.float32), small_model(torch.float32)
    opt_t = torch.optim.Adam(a.parameters(), lr=lr, betas=(gamma, beta), eps=eps)
    opt_k = KAdam(b.parameters(), lr=lr, betas=(gamma, beta), eps=eps, coupled=True, foreach=foreach)
    budget = []

    def record():
        n = len(budget)
        st_ = [opt_t.state[p] for p in a.parameters()]
        s_min = min((s["exp_avg_sq"] / (1 - beta ** (n + 1))).sqrt().min().item() for s in st_)
        u_max = max(
            ((s["exp_avg"] / (1 - gamma ** (n + 1))) / ((s["exp_avg_sq"] / (1 - beta ** (n + 1))).sqrt() + eps)).abs().max().item()
            for s in st_
        )
        eps_n = eps / math.sqrt(1 - beta ** (n + 1))
        budget.append(lr * u_max * (eps_n - eps) / (s_min + eps))

    train(a, opt_t, data, after_step=record)
    train(b, opt_k, data)
    tol = 2 * sum(budget) + 1e-6
    diff = (flat(a) - flat(b)).abs().max().item()
    assert diff <= tol, f"max |theta diff| {diff:.3g} exceeds the eps-placement budget {tol:.3g}"


# --------------------------------------------------------------------------- vs Algorithm 1
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
@pytest.mark.parametrize("coupled", [False, True])
def test_k_levels_match_algorithm_1(foreach, k, strategy, coupled):
    data = batches(30)
    model, ref_model = small_model(), small_model()
    levels = kadam_levels(k, beta=0.99, gamma=0.9, strategy=strategy)
    ref = Algorithm1(flat(ref_model), levels, lr=1e-2, wd=1e-2, coupled=coupled, eps=1e-30)
    opt = KAdam(model.parameters(), lr=1e-2, k=k, strategy=strategy, betas=(0.9, 0.99),
                weight_decay=1e-2, coupled=coupled, foreach=foreach)
    for x, y in data:
        load_flat(ref_model, ref.theta)
        ref.step(grad_of(ref_model, x, y))
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        torch.testing.assert_close(flat(model), ref.theta, rtol=0, atol=1e-11)
        assert opt.last_max_update == pytest.approx(ref.max_update, rel=1e-9)
        assert opt.last_level_max_updates == pytest.approx(ref.level_max, rel=1e-9)


@pytest.mark.parametrize("foreach", [False, True])
def test_explicit_levels_with_rmsprop_level_match_algorithm_1(foreach):
    levels = [Level(gamma=0.9, beta=0.999), Level(gamma=0.0, beta=0.95)]
    data = batches(20)
    model, ref_model = small_model(), small_model()
    ref = Algorithm1(flat(ref_model), levels, lr=3e-3, wd=0.0, coupled=False, eps=1e-30)
    opt = KAdam(model.parameters(), lr=3e-3, levels=levels, foreach=foreach)
    for x, y in data:
        load_flat(ref_model, ref.theta)
        ref.step(grad_of(ref_model, x, y))
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    torch.testing.assert_close(flat(model), ref.theta, rtol=0, atol=1e-11)
    assert opt.param_groups[0]["k"] == 2


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("wd,coupled", [(0.0, False), (0.05, False), (0.05, True)])
def test_foreach_and_single_tensor_paths_agree_float32(k, wd, coupled):
    data = batches(40, dtype=torch.float32)
    a, b = small_model(torch.float32), small_model(torch.float32)
    oa = KAdam(a.parameters(), lr=1e-2, k=k, weight_decay=wd, coupled=coupled, foreach=False)
    ob = KAdam(b.parameters(), lr=1e-2, k=k, weight_decay=wd, coupled=coupled, foreach=True)
    for x, y in data:
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            o.step()
        assert ob.last_max_update == pytest.approx(oa.last_max_update, rel=1e-5)
    torch.testing.assert_close(flat(b), flat(a), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("wd,coupled", [(0.0, False), (0.1, False), (0.1, True)])
def test_last_max_update_is_step_size_over_lr(foreach, wd, coupled):
    """The paper's max-update: ||u_n||_inf = ||theta_{n+1} - theta_n||_inf / lr."""
    model = small_model()
    opt = KAdam(model.parameters(), lr=1e-2, weight_decay=wd, coupled=coupled, k=2, foreach=foreach)
    assert math.isnan(opt.last_max_update) and opt.last_level_max_updates == []
    for x, y in batches(5):
        before = flat(model)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        expected = ((flat(model) - before).abs().max() / 1e-2).item()
        assert opt.last_max_update == pytest.approx(expected, rel=1e-9)
        assert len(opt.last_level_max_updates) == 2


# --------------------------------------------------------------------------- state
@pytest.mark.parametrize("foreach", [False, True])
def test_state_dict_resume_is_bit_exact(foreach):
    data = batches(40, dtype=torch.float32)
    full = small_model(torch.float32)
    opt_full = KAdam(full.parameters(), lr=1e-2, k=2, weight_decay=1e-3, foreach=foreach)
    train(full, opt_full, data)

    first = small_model(torch.float32)
    opt_first = KAdam(first.parameters(), lr=1e-2, k=2, weight_decay=1e-3, foreach=foreach)
    train(first, opt_first, data[:20])
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt_first.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # the safe loader must accept KAdam's state

    resumed = small_model(torch.float32, seed=123)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(saved["model"])
    opt_resumed = KAdam(resumed.parameters(), lr=1e-2, k=2, weight_decay=1e-3, foreach=foreach)
    opt_resumed.load_state_dict(saved["opt"])
    train(resumed, opt_resumed, data[20:])
    for p, q in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    assert opt_resumed.last_max_update == opt_full.last_max_update


def test_loaded_state_dict_keeps_this_optimizers_code_path():
    """foreach and fused say how a step is computed, not what: load_state_dict takes the hyperparameters
    from the state dict but keeps the loading optimizer's foreach/fused (and resumes to rounding)."""
    data = batches(6)
    full, first = small_model(), small_model()
    full_opt = KAdam(full.parameters(), lr=1e-2, k=2, foreach=True)
    first_opt = KAdam(first.parameters(), lr=1e-2, k=2, foreach=True)
    train(full, full_opt, data)
    train(first, first_opt, data[:3])
    resumed = small_model(seed=123)
    resumed.load_state_dict(first.state_dict())
    resumed_opt = KAdam(resumed.parameters(), lr=1.0, k=2, foreach=False)
    resumed_opt.load_state_dict(first_opt.state_dict())
    assert resumed_opt.param_groups[0]["foreach"] is False and resumed_opt.param_groups[0]["lr"] == 1e-2
    train(resumed, resumed_opt, data[3:])
    torch.testing.assert_close(flat(resumed), flat(full), rtol=1e-12, atol=1e-14)


def test_explicit_levels_survive_the_safe_loader():
    model = small_model()
    opt = KAdam(model.parameters(), levels=[Level(gamma=0.9, beta=0.999), Level(gamma=0.0, beta=0.9)])
    train(model, opt, batches(2))
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    assert saved["param_groups"][0]["levels"] == [Level(0.9, 0.999), Level(0.0, 0.9)]
    fresh = KAdam(small_model().parameters(), levels=[Level(gamma=0.9, beta=0.999), Level(gamma=0.0, beta=0.9)])
    fresh.load_state_dict(saved)


def test_level_pickles_under_its_public_path():
    """A checkpoint names Level kadam_edu.optim.Level, the path it had before optim became a package,
    so checkpoints written then (and now) load with the safe loader."""
    # pickle.dumps({"levels": [Level(0.9, 0.999)]}, protocol=2) by the old module kadam_edu/optim.py
    old = (b"\x80\x02}q\x00X\x06\x00\x00\x00levelsq\x01]q\x02ckadam_edu.optim\nLevel\nq\x03"
           b"G?\xec\xcc\xcc\xcc\xcc\xcc\xcdG?\xef\xf7\xce\xd9\x16\x87+\x86q\x04\x81q\x05as.")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # torch.save's layout: archive/data.pkl, byteorder, version
        z.writestr("archive/data.pkl", old)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
    buf.seek(0)
    assert torch.load(buf, weights_only=True) == {"levels": [Level(0.9, 0.999)]}
    assert pickle.dumps({"levels": [Level(0.9, 0.999)]}, protocol=2) == old  # torch.save's protocol


def test_changing_k_after_state_exists_is_refused():
    model = small_model()
    opt = KAdam(model.parameters(), k=1)
    train(model, opt, batches(1))
    opt.param_groups[0]["k"] = 2
    with pytest.raises(ValueError, match="k=2"):
        train(model, opt, batches(1))


def test_param_groups_closure_and_missing_grads():
    model = small_model()
    first, second = list(model[0].parameters()), list(model[2].parameters())
    opt = KAdam([{"params": first}, {"params": second, "lr": 0.0}], lr=1e-2)
    x, y = batches(1)[0]
    before = [p.detach().clone() for p in model.parameters()]

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.is_tensor(loss)
    after = list(model.parameters())
    assert not torch.equal(before[0], after[0])  # lr 1e-2 group moved
    assert torch.equal(before[2], after[2]) and torch.equal(before[3], after[3])  # lr 0 group did not
    # parameters without a gradient are skipped and get no state
    extra = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt.add_param_group({"params": [extra]})
    opt.step(closure)
    assert torch.equal(extra, torch.ones(3, dtype=torch.float64)) and len(opt.state[extra]) == 0


def test_betas_follow_torch_order():
    """betas=(gamma, beta) as in torch; equals levels=[Level(gamma, beta)]."""
    data = batches(10)
    a, b = small_model(), small_model()
    train(a, KAdam(a.parameters(), lr=1e-2, betas=(0.8, 0.95)), data)
    train(b, KAdam(b.parameters(), lr=1e-2, levels=[Level(gamma=0.8, beta=0.95)]), data)
    assert torch.equal(flat(a), flat(b))


# --------------------------------------------------------------------------- bounds
def run_kadam_on_sequence(grads, beta, gamma, foreach=False):
    """Feed a fixed gradient sequence [N, R] to KAdam(k=1, eps=0); return max-updates [N]."""
    theta = torch.nn.Parameter(torch.zeros(grads.shape[1], dtype=torch.float64))
    opt = KAdam([theta], lr=1e-3, betas=(gamma, beta), eps=0.0, foreach=foreach)
    out = []
    for g in grads:
        theta.grad = g.clone()
        opt.step()
        out.append(opt.last_max_update)
    return np.array(out)


decays = st.tuples(st.floats(0.5, 0.9999), st.floats(0.0, 0.999))


@settings(max_examples=40, deadline=None)
@given(decays, st.integers(0, 2**31 - 1), st.sampled_from(["normal", "cauchy", "geometric"]))
def test_discrete_bound_never_exceeded(bg, seed, kind):
    beta, gamma = bg
    rng = np.random.default_rng(seed)
    N, R = 60, 7
    if kind == "normal":
        g = rng.normal(size=(N, R))
    elif kind == "cauchy":
        g = rng.standard_cauchy(size=(N, R))
    else:
        ratio = rng.uniform(0.5, 2.0, size=R)
        g = rng.choice([-1.0, 1.0], size=R) * ratio[None, :] ** np.arange(N)[:, None]
    g[g == 0] = 1e-3
    measured = run_kadam_on_sequence(torch.tensor(g), beta, gamma)
    bound = bounds.discrete_max_update_bound(np.arange(N), beta=beta, gamma=gamma)
    assert np.all(measured <= bound * (1 + 1e-10)), (measured / bound).max()


@pytest.mark.parametrize("beta,gamma", [(0.999, 0.9), (0.95, 0.99), (0.5, 0.68), (0.9, 0.3)])
@pytest.mark.parametrize("foreach", [False, True])
def test_discrete_bound_attained_by_adversarial_sequence(beta, gamma, foreach):
    """g_j = (beta/gamma)^j makes Cauchy-Schwarz an equality at every n."""
    N = 40
    ratio = beta / gamma
    g = torch.tensor([[ratio**j] for j in range(N)], dtype=torch.float64)
    measured = run_kadam_on_sequence(g, beta, gamma, foreach=foreach)
    bound = bounds.discrete_max_update_bound(np.arange(N), beta=beta, gamma=gamma)
    np.testing.assert_allclose(measured, bound, rtol=1e-9)


# --------------------------------------------------------------------------- bad input
BAD = [
    (dict(lr=-1e-3), "lr must be >= 0"),
    (dict(lr=float("nan")), "lr must be a real number"),
    (dict(k=0), "k must be a positive int"),
    (dict(k=2.0), "k must be a positive int"),
    (dict(k=True), "k must be a positive int"),
    (dict(betas=(1.0, 0.999)), r"betas\[0\] must lie in \[0, 1\)"),
    (dict(betas=(-0.1, 0.999)), r"betas\[0\] must lie in \[0, 1\)"),
    (dict(betas=(0.9, 0.0)), r"betas\[1\] must lie in \(0, 1\)"),
    (dict(betas=(0.9, 1.0)), r"betas\[1\] must lie in \(0, 1\)"),
    (dict(betas=(0.9, float("nan"))), r"betas\[1\] must be a real number"),
    (dict(betas=(0.9,)), "betas must be a pair"),
    (dict(strategy="inverse"), "strategy must be one of"),
    (dict(levels=[]), "levels must be a non-empty list"),
    (dict(levels=[(0.9, 0.999)]), r"levels\[0\] must be a kadam_edu.Level"),
    (dict(levels=[Level(gamma=0.9, beta=1.5)]), r"levels\[0\].beta must lie in \(0, 1\)"),
    (dict(levels=[Level(gamma=1.0, beta=0.9)]), r"levels\[0\].gamma must lie in \[0, 1\)"),
    (dict(eps=-1e-8), "eps must be >= 0"),
    (dict(weight_decay=-0.1), "weight_decay must be >= 0"),
    (dict(coupled="yes"), "coupled must be True"),
    (dict(foreach="auto"), "foreach must be None, True or False"),
]


@pytest.mark.parametrize("kwargs,message", BAD)
def test_bad_input_is_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KAdam(small_model().parameters(), **kwargs)


@pytest.mark.parametrize(
    "args,message",
    [
        (dict(k=0), "k must be a positive int"),
        (dict(k=2, beta=1.0), r"beta must lie in \(0, 1\)"),
        (dict(k=2, gamma=1.0), r"gamma must lie in \[0, 1\)"),
        (dict(k=2, strategy="linear"), "strategy must be one of"),
    ],
)
def test_kadam_levels_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        kadam_levels(**args)


def test_check_levels_is_the_public_level_check():
    """check_levels (for other modules: assignments) returns Levels of floats, or names the bad level."""
    from kadam_edu.optim import check_levels

    checked = check_levels((Level(gamma=np.float64(0.9), beta=0.999), Level(gamma=0, beta=0.5)))
    assert checked == [Level(0.9, 0.999), Level(0.0, 0.5)]
    assert all(type(x) is float for lvl in checked for x in lvl)
    for levels, message in [
        ([], "levels must be a non-empty list"),
        (Level(0.9, 0.999), "levels must be a non-empty list"),
        ([Level(0.9, 0.999), (0.9, 0.999)], r"levels\[1\] must be a kadam_edu.Level"),
        ([Level(0.9, 1.0)], r"levels\[0\].beta must lie in \(0, 1\)"),
        ([Level(float("nan"), 0.9)], r"levels\[0\].gamma must be a real number"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_levels(levels)


@pytest.mark.parametrize("strategy", [["exp"], {"exp": 1}, None])
def test_a_strategy_that_is_not_a_name_is_a_value_error(strategy):
    """An unhashable strategy was a TypeError from the dict lookup; it is bad input like any other."""
    with pytest.raises(ValueError, match="strategy must be one of"):
        KAdam(small_model().parameters(), k=2, strategy=strategy)
    with pytest.raises(ValueError, match="strategy must be one of"):
        kadam_levels(2, strategy=strategy)


def test_bad_param_group_is_refused():
    model = small_model()
    opt = KAdam(model[0].parameters())
    with pytest.raises(ValueError, match="lr must be >= 0"):
        opt.add_param_group({"params": model[2].parameters(), "lr": -1.0})


def test_sparse_gradients_get_a_clear_error():
    emb = torch.nn.Embedding(10, 4, sparse=True)
    opt = KAdam(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(SparseGradientError, match="sparse gradients"):
        opt.step()
    assert issubclass(SparseGradientError, ValueError) and issubclass(SparseGradientError, RuntimeError)


def test_float16_with_default_eps_is_refused():
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float16))
    p.grad = torch.ones(3, dtype=torch.float16)
    with pytest.raises(ValueError, match="underflows to 0 in float16"):
        KAdam([p]).step()
    KAdam([p], eps=1e-4).step()  # a representable eps is fine
    assert torch.isfinite(p).all()


# --------------------------------------------------------------------------- refused input leaves no trace (issue 10)
def _snapshot(opt):
    return [dict((k, v) for k, v in g.items() if k != "params") | {"params": list(g["params"])} for g in opt.param_groups]


@pytest.mark.parametrize(
    "extra,message",
    [
        (dict(lr=-1.0), "lr must be"),
        (dict(weight_decay=float("inf")), "weight_decay must be"),
        (dict(k=2), "same number of levels"),
        (dict(levels=[Level(gamma=0.9, beta=0.999)] * 3), "same number of levels"),
    ],
)
def test_refused_param_group_is_not_added(extra, message):
    """A refused group leaves param_groups as they were; a group with another k is refused up front."""
    model = small_model()
    opt = KAdam(model[0].parameters(), lr=1e-2)
    before = _snapshot(opt)
    with pytest.raises(ValueError, match=message):
        opt.add_param_group({"params": model[2].parameters(), **extra})
    assert len(opt.param_groups) == 1 and _snapshot(opt) == before
    # the optimizer still steps normally, and only over the first layer
    train(model, opt, batches(1))
    assert all(p.grad is not None and len(opt.state[p]) == 0 for p in model[2].parameters())


@pytest.mark.parametrize("foreach", [False, True])
def test_a_failing_step_moves_no_parameter(foreach):
    """Every group is checked before any parameter moves: a fault in group 1 leaves group 0 untouched."""
    model = small_model()
    opt = KAdam([{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=1e-2, foreach=foreach)
    train(model, opt, batches(1))
    opt.param_groups[1]["levels"] = [Level(gamma=0.9, beta=0.999)] * 2  # k changed behind the optimizer's back
    before = flat(model)
    state_before = {p: (opt.state[p]["step"], [m.clone() for m in opt.state[p]["m"]]) for p in model.parameters()}
    with pytest.raises(ValueError, match="k=2"):
        train(model, opt, batches(1))
    assert torch.equal(flat(model), before)
    for p, (n, ms) in state_before.items():
        assert opt.state[p]["step"] == n and all(torch.equal(a, b) for a, b in zip(opt.state[p]["m"], ms))


def test_sparse_gradient_in_a_later_group_moves_nothing():
    dense = torch.nn.Linear(3, 2)
    emb = torch.nn.Embedding(10, 4, sparse=True)
    opt = KAdam([{"params": dense.parameters()}, {"params": emb.parameters()}], lr=1e-2)
    (dense(torch.ones(1, 3)).sum() + emb(torch.tensor([1, 2])).sum()).backward()
    before = [p.detach().clone() for p in dense.parameters()]
    with pytest.raises(SparseGradientError):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, dense.parameters()))
    assert all(len(opt.state[p]) == 0 for p in dense.parameters())


@pytest.mark.parametrize("foreign", ["adam", "adamw", "sgd"])
def test_foreign_state_dict_is_refused_at_load_time(foreign):
    model = small_model()
    other = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)}[foreign](
        model.parameters()
    )
    train(model, other, batches(2))
    opt = KAdam(model.parameters(), lr=1e-2)
    train(model, opt, batches(1))
    groups_before = _snapshot(opt)
    state_before = {p: (s["step"], [m.clone() for m in s["m"]]) for p, s in opt.state.items()}
    with pytest.raises(ValueError, match="not a KAdam state dict"):
        opt.load_state_dict(other.state_dict())
    assert _snapshot(opt) == groups_before
    assert set(opt.state) == set(state_before)
    for p, (n, ms) in state_before.items():
        assert opt.state[p]["step"] == n and all(torch.equal(a, b) for a, b in zip(opt.state[p]["m"], ms))
    train(model, opt, batches(1))  # still steps


def test_kadam_state_dict_with_a_foreign_per_parameter_layout_is_refused():
    model = small_model()
    opt = KAdam(model.parameters(), lr=1e-2, k=2)
    train(model, opt, batches(1))
    good = opt.state_dict()
    bad_state = {i: {"step": 1, "exp_avg": s["m"][0], "exp_avg_sq": s["v"][0]} for i, s in good["state"].items()}
    with pytest.raises(ValueError, match="KAdam's layout"):
        opt.load_state_dict({**good, "state": bad_state})
    one_level = {i: {**s, "m": s["m"][:1], "v": s["v"][:1]} for i, s in good["state"].items()}
    with pytest.raises(ValueError, match="2 levels"):
        opt.load_state_dict({**good, "state": one_level})
    wrong_shape = {i: {**s, "m": [m[..., :1] for m in s["m"]]} for i, s in good["state"].items()}
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict({**good, "state": wrong_shape})
    bad_group = {**good, "param_groups": [{**good["param_groups"][0], "lr": float("inf")}]}
    with pytest.raises(ValueError, match="lr must be"):
        opt.load_state_dict(bad_group)
    opt.load_state_dict(good)  # the real thing still loads
    train(model, opt, batches(1))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(lr=float("inf")), "lr must be a finite"),
        (dict(weight_decay=float("inf")), "weight_decay must be a finite"),
        (dict(eps=float("inf")), "eps must be a finite"),
        (dict(lr=torch.tensor(float("inf"))), "lr must be a finite"),
        (dict(fused="yes"), "fused must be None, True or False"),
        (dict(foreach=True, fused=True), "fused and foreach cannot both be True"),
    ],
)
def test_non_finite_hyperparameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KAdam(small_model().parameters(), **kwargs)


@pytest.mark.parametrize("foreach", [False, True])
def test_lr_that_does_not_fit_the_parameter_dtype_names_lr(foreach):
    """lr=1e300 is a float64 number but not a float32 one: refused at the step, naming lr, before anything moves."""
    model = small_model(torch.float32)
    opt = KAdam(model.parameters(), lr=1e300, foreach=foreach)
    before = flat(model)
    with pytest.raises(ValueError, match=r"lr=1e\+300 .*float32"):
        train(model, opt, batches(1, dtype=torch.float32))
    assert torch.equal(flat(model), before) and len(opt.state) == 0
    model64 = small_model()  # in float64 it is representable and steps
    opt64 = KAdam(model64.parameters(), lr=1e300, foreach=foreach)
    train(model64, opt64, batches(1))
    assert torch.isfinite(flat(model64)).all()


@pytest.mark.parametrize("foreach", [False, True])
def test_zero_element_parameters_step_like_torch_adam(foreach):
    empty = torch.nn.Parameter(torch.zeros(0, 3))
    full = torch.nn.Parameter(torch.ones(4))
    empty.grad, full.grad = torch.zeros(0, 3), torch.full((4,), 0.5)
    opt = KAdam([empty, full], lr=0.1, foreach=foreach)
    opt.step()
    assert opt.state[empty]["step"] == 1 and opt.state[empty]["m"][0].shape == (0, 3)  # as torch.optim.Adam: stepped, no data
    torch.testing.assert_close(full.detach(), torch.full((4,), 0.9))
    assert opt.last_max_update == pytest.approx(1.0)
    only_empty = KAdam([empty], foreach=foreach)
    only_empty.step()
    assert only_empty.last_max_update == 0.0 and only_empty.last_level_max_updates == [0.0]


@pytest.mark.parametrize("foreach", [False, True])
def test_meta_parameters_step_without_data(foreach):
    """Like torch.optim.Adam, a meta-device parameter steps (shapes only); the max-update has no value (nan)."""
    p = torch.nn.Parameter(torch.ones(4, 3, device="meta"))
    p.grad = torch.ones(4, 3, device="meta")
    opt = KAdam([p], k=2, foreach=foreach)
    opt.step()
    s = opt.state[p]
    assert s["step"] == 1 and len(s["m"]) == 2 and s["v"][1].device.type == "meta"
    assert opt.last_max_update_tensor.device.type == "meta"
    assert math.isnan(opt.last_max_update)


def test_state_dict_from_before_members_and_fused_still_loads():
    """Checkpoints written before the members/fused options lack those keys: they load as None."""
    model = small_model()
    opt = KAdam(model.parameters(), lr=1e-2, k=2)
    train(model, opt, batches(2))
    sd = opt.state_dict()
    sd["param_groups"] = [{key: v for key, v in g.items() if key not in ("members", "fused")} for g in sd["param_groups"]]
    fresh = KAdam(model.parameters(), lr=1e-2, k=2)
    fresh.load_state_dict(sd)
    assert fresh.param_groups[0]["members"] is None and fresh.param_groups[0]["fused"] is None
    train(model, fresh, batches(1))
