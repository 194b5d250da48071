"""The fused k-Adam kernel (kadam_edu.fused) against KAdam's single-tensor path (Algorithm 1).

Every (device, dtype, k) compiles once per process (seconds each on 2 cores), so the tests
share a few: float64 with k = 1, 2, 3 and float32 with k = 3.
"""

import re
import types

import pytest
import torch
from torch._inductor.utils import run_and_get_code

from kadam_edu import KAdam, Level, kadam_levels
from kadam_edu import fused
from kadam_edu.fused import FlatKAdam

SHAPES = [(5, 3), (7,), (2, 2, 3)]
TIGHT = dict(rtol=1e-12, atol=1e-14)  # float64
ROUNDING = dict(rtol=1e-6, atol=1e-6)  # float32


def make_params(dtype, shapes=SHAPES, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]


def twins(dtype, shapes=SHAPES):
    """Two identical parameter lists: one for KAdam's single-tensor path, one for the fused kernel."""
    ref = make_params(dtype, shapes)
    return ref, [torch.nn.Parameter(p.detach().clone()) for p in ref]


def set_grads(ref, fus, step, skip=()):
    gen = torch.Generator().manual_seed(100 + step)
    for j, (p, q) in enumerate(zip(ref, fus)):
        g = None if j in skip else torch.randn(p.shape, generator=gen, dtype=p.dtype)
        p.grad, q.grad = g, None if g is None else g.clone()


def fused_step(flat, states, opt):
    group = opt.param_groups[0]
    return flat.step(states, levels=KAdam.group_levels(group), lr=group["lr"],
                     weight_decay=group["weight_decay"], coupled=group["coupled"], eps=group["eps"])


def assert_same(opt, ref, flat, fus, states, out, tol):
    for p, q, s in zip(ref, fus, states):
        torch.testing.assert_close(q.detach(), p.detach(), **tol)
        if opt.state[p]:
            assert s["step"] == opt.state[p]["step"]
            for name in ("m", "v"):
                for a, b in zip(s[name], opt.state[p][name]):
                    torch.testing.assert_close(a, b, **tol)
    max_update, level_max = out
    torch.testing.assert_close(max_update.double(), torch.tensor(opt.last_max_update, dtype=torch.float64), **tol)
    torch.testing.assert_close(level_max.double(), torch.tensor(opt.last_level_max_updates, dtype=torch.float64),
                               **tol)


def run_both(dtype, tol, steps=5, skips=None, **kw):
    ref, fus = twins(dtype)
    opt = KAdam(ref, foreach=False, **kw)
    flat, states = FlatKAdam(fus, len(KAdam.group_levels(opt.param_groups[0]))), [{} for _ in fus]
    for n in range(steps):
        set_grads(ref, fus, n, skip=(skips or {}).get(n, ()))
        opt.step()
        out = fused_step(flat, states, opt)
        assert_same(opt, ref, flat, fus, states, out, tol)
    return ref, fus, states


@pytest.fixture(scope="module")
def float32_k3_code():
    """The generated kernel for float32, k = 3 (compiled here, reused by the float32 tests)."""
    fus = make_params(torch.float32)
    for p in fus:
        p.grad = torch.ones_like(p)
    flat, levels = FlatKAdam(fus, 3), kadam_levels(3)
    _, code = run_and_get_code(flat.step, [{} for _ in fus], levels=levels, lr=1e-3, weight_decay=0.0,
                               coupled=False, eps=1e-30)
    if not code:  # compiled earlier in this process: compile a copy of the kernel to see its code
        code = fused._kadam_flat.__code__
        copy = types.FunctionType(code.replace(co_name="kadam_flat_probe"), fused._kadam_flat.__globals__)
        kernel = torch.compile(copy, dynamic=True, fullgraph=True)
        hyper = torch.tensor(fused._hyper(levels, 0, 1e-3, 0.0, False, 1e-30), dtype=torch.float64)
        _, code = run_and_get_code(kernel, flat.theta, flat.grad, flat.m, flat.v, hyper)
    return "\n".join(code)


# --------------------------------------------------------------------------- equality
@pytest.mark.parametrize("coupled", [False, True])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_matches_single_tensor_path_float64(k, coupled):
    run_both(torch.float64, TIGHT, k=k, lr=1e-2, weight_decay=0.1, coupled=coupled)


@pytest.mark.parametrize("coupled", [False, True])
def test_matches_single_tensor_path_float32(float32_k3_code, coupled):
    run_both(torch.float32, ROUNDING, k=3, lr=1e-2, weight_decay=0.1, coupled=coupled)


def test_rmsprop_level_and_lerp_weight_above_half():
    """gamma = 0 (RMSprop) and gamma < 0.5, where torch's lerp switches formula; no weight decay."""
    run_both(torch.float64, TIGHT, levels=[Level(gamma=0.0, beta=0.99), Level(gamma=0.3, beta=0.9)], lr=1e-2)


def test_one_loop_no_temporaries_on_cpu(float32_k3_code):
    """All k levels, the update and the k + 1 max-update reductions are one C++ loop that
    stores only theta, m_i, v_i (no parameter-sized temporary)."""
    assert len(re.findall(r"for\(int64_t x0", float32_k3_code)) == 1
    assert not re.findall(r"empty_strided_cpu\(\(s", float32_k3_code)


# --------------------------------------------------------------------------- gradients and state
def test_parameters_without_grad_do_not_move_and_keep_their_step():
    """Missing gradients split the flat buffer into runs with their own step counts."""
    ref, fus, states = run_both(torch.float64, TIGHT, steps=6, skips={1: {1}, 2: {0, 1}, 4: {2}}, k=2,
                                lr=1e-2, weight_decay=0.1)
    assert [s["step"] for s in states] == [5, 4, 5]


def test_parameter_without_any_grad_gets_no_state_and_stays_bit_identical():
    fus = make_params(torch.float64)
    frozen = fus[1].detach().clone()
    fus[0].grad, fus[2].grad = torch.ones_like(fus[0]), torch.ones_like(fus[2])
    flat, states = FlatKAdam(fus, 2), [{} for _ in fus]
    flat.step(states, levels=kadam_levels(2), lr=1e-2, weight_decay=0.1, coupled=False, eps=1e-30)
    assert states[1] == {} and torch.equal(fus[1].detach(), frozen)
    assert states[0]["step"] == 1 and states[2]["step"] == 1


def test_no_grad_at_all_returns_none_and_changes_nothing():
    fus = make_params(torch.float64)
    before = [p.detach().clone() for p in fus]
    flat, states = FlatKAdam(fus, 2), [{} for _ in fus]
    assert flat.step(states, levels=kadam_levels(2), lr=1e-2, weight_decay=0.0, coupled=False, eps=1e-30) is None
    assert states == [{}, {}, {}] and all(torch.equal(p.detach(), b) for p, b in zip(fus, before))


def test_zero_element_parameters():
    ref = make_params(torch.float64)
    fus = [torch.nn.Parameter(p.detach().clone()) for p in ref]
    fus.insert(1, torch.nn.Parameter(torch.empty(0, 4, dtype=torch.float64)))
    opt = KAdam(ref, k=1, lr=1e-2, foreach=False)
    flat, states = FlatKAdam(fus, 1), [{} for _ in fus]
    for n in range(3):
        set_grads(ref, [fus[0], fus[2], fus[3]], n)
        fus[1].grad = torch.empty(0, 4, dtype=torch.float64)
        opt.step()
        out = fused_step(flat, states, opt)
        assert_same(opt, ref, flat, fus[:1] + fus[2:], states[:1] + states[2:], out, TIGHT)
    assert states[1]["step"] == 3 and fus[1].shape == (0, 4)


def test_parameters_and_grads_live_in_the_flat_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    before = model(x).detach()
    params = list(model.parameters())
    flat, states = FlatKAdam(params, 1), [{} for _ in params]
    torch.testing.assert_close(model(x).detach(), before, rtol=0, atol=0)  # values unchanged
    base = flat.theta.data_ptr()
    assert all(base <= p.data_ptr() < base + flat.theta.numel() * 8 for p in params)

    def backward():
        model(x).square().sum().backward()

    backward()  # autograd makes new .grad tensors: the first step copies them in ...
    flat.step(states, levels=kadam_levels(1), lr=1e-2, weight_decay=0.0, coupled=False, eps=1e-30)
    grad_base = flat.grad.data_ptr()
    assert all(grad_base <= p.grad.data_ptr() < grad_base + flat.grad.numel() * 8 for p in params)
    # ... and zero_grad(set_to_none=False) keeps the views: backward accumulates into the flat buffer
    torch.optim.SGD(params, lr=0.0).zero_grad(set_to_none=False)
    assert flat.grad.abs().max() == 0
    backward()
    assert all(grad_base <= p.grad.data_ptr() < grad_base + flat.grad.numel() * 8 for p in params)
    assert flat.grad.abs().max() > 0
    for j, s in enumerate(states):  # the state holds views into the flat moment buffers
        assert [t.data_ptr() for t in s["m"] + s["v"]] == [t.data_ptr() for t in flat._m_views[j] + flat._v_views[j]]


def test_in_place_and_copied_grads_give_the_same_steps():
    """New gradient tensors are copied in; gradients written into the views are read in place."""
    ref, fus = twins(torch.float64)
    opt = KAdam(ref, k=1, lr=1e-2, foreach=False)
    flat, states = FlatKAdam(fus, 1), [{} for _ in fus]
    for n in range(4):
        views = [q.grad for q in fus]
        set_grads(ref, fus, n)
        if n % 2:  # write into the views the previous step left in p.grad
            for q, view in zip(fus, views):
                view.copy_(q.grad)
                q.grad = view
            assert all(q.grad is v for q, v in zip(fus, flat._grad_views))
        opt.step()
        assert_same(opt, ref, flat, fus, states, fused_step(flat, states, opt), TIGHT)


def test_loaded_state_is_adopted():
    """A state replaced from outside (as load_state_dict does) is copied into the flat buffers."""
    ref, fus = twins(torch.float64)
    opt = KAdam(ref, k=2, lr=1e-2, foreach=False)
    flat, states = FlatKAdam(fus, 2), [{} for _ in fus]
    for n in range(2):
        set_grads(ref, fus, n)
        opt.step()
        fused_step(flat, states, opt)
    states = [{"step": s["step"], "m": [t.clone() for t in s["m"]], "v": [t.clone() for t in s["v"]]}
              for s in states]
    flat.m[0].zero_()  # the flat buffers lose their values; the loaded state must win
    set_grads(ref, fus, 2)
    opt.step()
    out = fused_step(flat, states, opt)
    assert_same(opt, ref, flat, fus, states, out, TIGHT)
    assert states[0]["m"][0].data_ptr() == flat.m[0].data_ptr()


def test_changing_hyperparameters_does_not_recompile():
    from torch._dynamo.utils import counters

    run_both(torch.float64, TIGHT, steps=1, k=2)  # compiled (or reused) here
    before = counters["stats"]["unique_graphs"]
    fus = make_params(torch.float64, shapes=[(11, 3), (4,)])  # another model size
    flat, states = FlatKAdam(fus, 2), [{} for _ in fus]
    for n, (lr, wd, coupled) in enumerate([(1e-2, 0.0, False), (3e-3, 0.1, True), (1e-1, 0.2, False)]):
        for p in fus:
            p.grad = torch.randn_like(p)
        flat.step(states, levels=[Level(0.9 - 0.1 * n, 0.99)] * 2, lr=lr, weight_decay=wd, coupled=coupled, eps=1e-8)
    assert counters["stats"]["unique_graphs"] == before


@pytest.mark.parametrize("coupled", [False, True])
def test_tensor_lr_and_weight_decay_match_numbers(coupled):
    ref, fus = twins(torch.float64)
    opt = KAdam(ref, k=2, lr=1e-2, weight_decay=0.1, coupled=coupled, foreach=False)
    flat, states = FlatKAdam(fus, 2), [{} for _ in fus]
    for n in range(2):
        set_grads(ref, fus, n)
        opt.step()
        out = flat.step(states, levels=kadam_levels(2), lr=torch.tensor(1e-2, dtype=torch.float64),
                        weight_decay=torch.tensor([0.1], dtype=torch.float64), coupled=coupled, eps=1e-30)
        assert_same(opt, ref, flat, fus, states, out, TIGHT)


# --------------------------------------------------------------------------- bad input and faults
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: FlatKAdam([torch.zeros(2, dtype=torch.float16)], 1), "float16"),
        (lambda: FlatKAdam([torch.zeros(2), torch.zeros(2, dtype=torch.float64)], 1), "one device and dtype"),
        (lambda: FlatKAdam([torch.zeros(2)] * 2, 1), "same tensor twice"),
        (lambda: FlatKAdam([torch.zeros(2)], 0), "k must be a positive int"),
        (lambda: FlatKAdam([], 1), "non-empty list"),
    ],
)
def test_bad_construction_is_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(levels=kadam_levels(3)), "k=2"),
        (dict(levels=kadam_levels(2)[0]), "list of k=2"),
        (dict(levels=[Level(1.0, 0.9), Level(0.9, 0.9)]), r"levels\[0\].gamma"),
        (dict(levels=[Level(0.9, 0.9), Level(0.9, 1.0)]), r"levels\[1\].beta"),
        (dict(lr=-1.0), "lr"),
        (dict(lr=torch.tensor([1e-3, 1e-2])), "lr as a tensor must hold one"),
        (dict(weight_decay=float("nan")), "weight_decay"),
        (dict(eps=-1e-8), "eps"),
        (dict(coupled=1), "coupled"),
        (dict(states=[{}]), "list of 3 dicts"),
        (dict(states=[{}, {"step": 1, "m": [], "v": []}, {}]), r"states\[1\]\['m'\]"),
    ],
)
def test_bad_step_is_refused_before_any_change(kwargs, message):
    fus = make_params(torch.float64)
    for p in fus:
        p.grad = torch.ones_like(p)
    flat = FlatKAdam(fus, 2)
    before = [p.detach().clone() for p in fus]
    args = dict(states=[{}, {}, {}], levels=kadam_levels(2), lr=1e-2, weight_decay=0.0, coupled=False, eps=1e-30)
    args.update(kwargs)
    states_before = repr(args["states"])
    with pytest.raises(ValueError, match=message):
        flat.step(**args)
    assert repr(args["states"]) == states_before
    assert all(torch.equal(p.detach(), b) for p, b in zip(fus, before))


def test_compile_failure_is_a_clear_runtime_error_and_changes_nothing(monkeypatch):
    def no_compiler(*args):
        raise RuntimeError("InductorError: CppCompileError: C++ compile error: g++: not found")

    monkeypatch.setitem(fused._KERNELS, 5, no_compiler)
    fus = make_params(torch.float64)
    for p in fus:
        p.grad = torch.ones_like(p)
    before = [p.detach().clone() for p in fus]
    flat, states = FlatKAdam(fus, 5), [{} for _ in fus]
    with pytest.raises(RuntimeError, match="needs torch.compile with a working C\\+\\+ compiler"):
        flat.step(states, levels=kadam_levels(5), lr=1e-2, weight_decay=0.0, coupled=False, eps=1e-30)
    assert all(torch.equal(p.detach(), b) for p, b in zip(fus, before))
    assert states == [{}, {}, {}]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_step_matches_and_never_synchronises():
    ref, fus = twins(torch.float32)
    fus = [torch.nn.Parameter(p.detach().cuda()) for p in fus]
    opt = KAdam(ref, k=2, lr=1e-2, weight_decay=0.1, foreach=False)
    flat, states = FlatKAdam(fus, 2), [{} for _ in fus]
    for n in range(3):
        set_grads(ref, ref, n)
        for p, q in zip(ref, fus):
            q.grad = p.grad.cuda()
        opt.step()
        fused_step(flat, states, opt)  # compiles on the first step
        torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = fused_step(flat, states, opt)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    opt.step()
    assert_same(opt, ref, flat, [q.cpu() for q in fus],
                [{"step": s["step"], "m": [t.cpu() for t in s["m"]], "v": [t.cpu() for t in s["v"]]} for s in states],
                tuple(t.cpu() for t in out), ROUNDING)
