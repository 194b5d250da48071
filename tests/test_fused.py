"""The fused k-Adam kernel (kadam_edu.optim.fused) against KAdam's single-tensor path (Algorithm 1).

Every (device, dtype, k) compiles once per process (seconds each on 2 cores), so the tests
share a few: float64 and float32 with k = 1, 2, 3. The second half runs the kernel through
``KAdam(fused=True)`` on one small MLP.
"""

import io
import re
import types
from unittest import mock

import pytest
import torch
from torch.utils._python_dispatch import _disable_current_modes

from kadam_edu import KAdam, Level, kadam_levels
from kadam_edu.optim import SparseGradientError, fused
from kadam_edu.optim.fused import FlatKAdam

from test_adaptive_normalization import HostSyncCounter  # tests/ is on sys.path (no __init__.py)

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


def generated_code(fn, *args, **kwargs) -> list[str]:
    """Run fn; return the code inductor generates meanwhile. Unlike run_and_get_code, no
    torch._dynamo.reset(): the kernels compiled before stay compiled (each costs seconds)."""
    from torch._inductor.graph import GraphLowering

    codes: list[str] = []
    with mock.patch.object(GraphLowering, "save_output_code", codes.append):
        fn(*args, **kwargs)
    return codes


@pytest.fixture(scope="module")
def float32_k3_code():
    """The generated kernel for float32, k = 3 (compiled here, reused by the float32 tests)."""
    fus = make_params(torch.float32)
    for p in fus:
        p.grad = torch.ones_like(p)
    flat, levels = FlatKAdam(fus, 3), kadam_levels(3)
    code = generated_code(flat.step, [{} for _ in fus], levels=levels, lr=1e-3, weight_decay=0.0,
                          coupled=False, eps=1e-30)
    if not code:  # compiled earlier in this process: compile a copy of the kernel to see its code
        code = fused._kadam_flat.__code__
        copy = types.FunctionType(code.replace(co_name="kadam_flat_probe"), fused._kadam_flat.__globals__)
        kernel = torch.compile(copy, dynamic=True, fullgraph=True)
        hyper = torch.tensor(fused._hyper(levels, 0, 1e-3, 0.0, False, 1e-30), dtype=torch.float64)
        code = generated_code(kernel, flat.theta, flat.grad, flat.m, flat.v, hyper)
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


# --------------------------------------------------------------------------- KAdam(fused=True)
def mlp(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(dtype)


def mlp_batches(n, dtype=torch.float64, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 6, generator=gen, dtype=dtype), torch.randn(8, 3, generator=gen, dtype=dtype))
            for _ in range(n)]


def backward(model, x, y, n):
    """Gradients of step n: new tensors on even steps (``zero_grad()``), written in place into the
    existing ``.grad`` on odd ones (``zero_grad(set_to_none=False)``), so both paths are exercised."""
    model.zero_grad(set_to_none=n % 2 == 0)
    torch.nn.functional.mse_loss(model(x), y).backward()


def tolerance(dtype):
    return TIGHT if dtype == torch.float64 else ROUNDING


def assert_kadam_same(ref_params, ref_opt, params, opt, tol):
    """Parameters, per-parameter state and the max-updates of two KAdams agree."""
    for p, q in zip(ref_params, params):
        torch.testing.assert_close(q.detach(), p.detach(), **tol)
        a, b = ref_opt.state.get(p, {}), opt.state.get(q, {})
        assert bool(a) == bool(b)
        if a:
            assert a["step"] == b["step"]
            for name in ("m", "v"):
                assert len(a[name]) == len(b[name])
                for s, t in zip(a[name], b[name]):
                    torch.testing.assert_close(t, s, **tol)
    assert opt.last_max_update == pytest.approx(ref_opt.last_max_update, rel=tol["rtol"], abs=tol["atol"])
    assert opt.last_level_max_updates == pytest.approx(ref_opt.last_level_max_updates, rel=tol["rtol"],
                                                       abs=tol["atol"])
    k = opt.param_groups[0]["k"]
    assert opt.last_max_update_tensor.shape == () and opt.last_level_max_updates_tensor.shape == (k,)


def train_pair(ref_model, ref_opt, model, opt, data, tol, after_backward=None):
    for n, (x, y) in enumerate(data):
        for mdl in (ref_model, model):
            backward(mdl, x, y, n)
            if after_backward is not None:
                after_backward(mdl, n)
        ref_opt.step()
        opt.step()
        assert_kadam_same(list(ref_model.parameters()), ref_opt, list(model.parameters()), opt, tol)


def storages(tensors):
    return {t.untyped_storage().data_ptr() for t in tensors}


@pytest.mark.parametrize("coupled", [False, True])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kadam_fused_equals_the_single_tensor_path(dtype, k, coupled):
    """Parameters, state, last_max_update and last_level_max_updates after every step."""
    ref, model = mlp(dtype), mlp(dtype)
    kw = dict(lr=1e-2, k=k, weight_decay=0.1, coupled=coupled)
    train_pair(ref, KAdam(ref.parameters(), foreach=False, **kw), model, KAdam(model.parameters(), fused=True, **kw),
               mlp_batches(4, dtype), tolerance(dtype))


def test_kadam_fused_runs_the_fused_kernel():
    """After a step every parameter (and gradient) of the group lives in one flat buffer; fused=None
    and fused=False (torch's default) do not."""
    model = mlp()
    opt = KAdam(model.parameters(), k=2, fused=True)
    backward(model, *mlp_batches(1)[0], 0)
    opt.step()
    params = list(model.parameters())
    assert len(storages(params)) == 1 and len(storages([p.grad for p in params])) == 1
    for flag in (None, False):
        other = mlp()
        backward(other, *mlp_batches(1)[0], 0)
        KAdam(other.parameters(), k=2, fused=flag).step()
        assert len(storages(other.parameters())) == 4


def test_kadam_fused_with_several_param_groups():
    """One flat buffer per group; each group's lr and weight decay; one max-update over all groups."""
    def groups(model):
        return [{"params": model[0].parameters(), "lr": 1e-2, "weight_decay": 0.1},
                {"params": model[2].parameters(), "lr": 3e-3}]

    ref, model = mlp(), mlp()
    opt = KAdam(groups(model), k=2, fused=True)
    train_pair(ref, KAdam(groups(ref), k=2, foreach=False), model, opt, mlp_batches(4), TIGHT)
    first, second = storages(model[0].parameters()), storages(model[2].parameters())
    assert len(first) == 1 and len(second) == 1 and first != second


def test_kadam_fused_parameters_without_grad():
    """A parameter without a gradient in a step neither moves nor counts the step (as in torch); one
    that never had one gets no state and stays bit-identical."""
    def drop_grads(model, n):
        if n in (1, 2):
            model[2].weight.grad = None
        if n == 2:
            model[0].bias.grad = None

    ref, model = mlp(), mlp()
    ref_idle, idle = (torch.nn.Parameter(torch.ones(3, dtype=torch.float64)) for _ in range(2))
    opt = KAdam([*model.parameters(), idle], k=2, lr=1e-2, weight_decay=0.1, fused=True)
    ref_opt = KAdam([*ref.parameters(), ref_idle], k=2, lr=1e-2, weight_decay=0.1, foreach=False)
    train_pair(ref, ref_opt, model, opt, mlp_batches(4), TIGHT, after_backward=drop_grads)
    assert [opt.state[p]["step"] for p in model.parameters()] == [4, 3, 2, 4]
    assert idle not in opt.state and torch.equal(idle.detach(), torch.ones(3, dtype=torch.float64))


def test_kadam_fused_step_never_copies_to_the_host(monkeypatch):
    """Every aten call of a step is watched except the compiled kernel itself (dynamo refuses to run
    under a dispatch mode); that kernel is one graph over tensors (fullgraph), which cannot sync."""
    kernel_calls = []
    run_kernel = fused._run_kernel

    def kernel_unwatched(*args):
        kernel_calls.append(len(args[2]))
        with _disable_current_modes():
            return run_kernel(*args)

    monkeypatch.setattr(fused, "_run_kernel", kernel_unwatched)
    model = mlp()
    opt = KAdam([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 3e-3}],
                lr=torch.tensor(1e-2, dtype=torch.float64), k=2, weight_decay=0.1, fused=True)
    for n, (x, y) in enumerate(mlp_batches(3)):
        backward(model, x, y, n)
        with HostSyncCounter() as counter:
            opt.step()
        assert counter.calls == []
    assert kernel_calls == [2] * 6  # two groups, three steps
    assert opt.last_max_update == float(opt.last_max_update_tensor)


def test_kadam_fused_rebuilds_its_buffers_when_a_group_gets_new_parameters():
    ref, model = mlp(), mlp()
    ref_opt = KAdam(ref[0].parameters(), k=2, lr=1e-2, foreach=False)
    opt = KAdam(model[0].parameters(), k=2, lr=1e-2, fused=True)
    data = mlp_batches(4)
    train_pair(ref, ref_opt, model, opt, data[:2], TIGHT)
    for mdl, o in ((ref, ref_opt), (model, opt)):
        o.param_groups[0]["params"].extend(mdl[2].parameters())
    train_pair(ref, ref_opt, model, opt, data[2:], TIGHT)
    assert len(storages(model.parameters())) == 1


def test_kadam_fused_after_model_to_asks_for_a_new_optimizer():
    """model.to(another dtype or device) leaves the flat buffers behind: the step is refused, naming
    the way out, before anything moves; a new optimizer takes the state dict over."""
    model = mlp(torch.float32)
    opt = KAdam(model.parameters(), k=2, lr=1e-2, fused=True)
    data = mlp_batches(2)
    backward(model, data[0][0].float(), data[0][1].float(), 0)
    opt.step()
    model.double()
    backward(model, *data[1], 1)
    before = [p.detach().clone() for p in model.parameters()]
    state_before = [(s["step"], [t.clone() for t in s["m"]]) for s in opt.state.values()]
    with pytest.raises(ValueError, match=r"param group 0 .*float64.*float32.*build a new optimizer"):
        opt.step()
    assert all(torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before))
    for s, (n, ms) in zip(opt.state.values(), state_before):
        assert s["step"] == n and all(torch.equal(a, b) for a, b in zip(s["m"], ms))
    new = KAdam(model.parameters(), k=2, lr=1e-2, fused=True)
    new.load_state_dict(opt.state_dict())
    new.step()
    assert all(new.state[p]["step"] == 2 and new.state[p]["m"][0].dtype == torch.float64 for p in model.parameters())


@pytest.mark.parametrize("saver,loader", [(dict(fused=True), dict(fused=True)), (dict(fused=True), dict(fused=False)),
                                          (dict(foreach=True), dict(fused=True))])
def test_kadam_fused_state_dict_round_trip(saver, loader):
    """A checkpoint (through torch.save and the safe loader) resumes the run: bit for bit between fused
    optimizers, to rounding between the fused and the other paths. The loading optimizer keeps its own
    code path (foreach, fused): a foreach run's checkpoint resumes fused, not foreach and fused."""
    data = mlp_batches(6)
    kw = dict(lr=1e-2, k=2, weight_decay=0.1)
    full = mlp()
    full_opt = KAdam(full.parameters(), **saver, **kw)
    first = mlp()
    first_opt = KAdam(first.parameters(), **saver, **kw)
    for n, (x, y) in enumerate(data):
        for mdl, o in ((full, full_opt), (first, first_opt))[: 1 if n >= 3 else 2]:
            backward(mdl, x, y, n)
            o.step()
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": first_opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    resumed = mlp(seed=123)
    resumed.load_state_dict(saved["model"])
    resumed_opt = KAdam(resumed.parameters(), **loader, lr=1.0, k=2)  # the hyperparameters come from the checkpoint
    resumed_opt.load_state_dict(saved["opt"])
    group = resumed_opt.param_groups[0]
    assert (group["fused"], group["foreach"], group["lr"]) == (loader["fused"], None, 1e-2)
    for n, (x, y) in enumerate(data[3:], start=3):
        backward(resumed, x, y, n)
        resumed_opt.step()
    tol = dict(rtol=0, atol=0) if saver == loader else TIGHT
    assert_kadam_same(list(full.parameters()), full_opt, list(resumed.parameters()), resumed_opt, tol)
    assert (len(storages(resumed.parameters())) == 1) is loader["fused"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: KAdam(mlp().parameters(), fused=True, foreach=True), "fused and foreach cannot both be True"),
        (lambda: KAdam([torch.nn.Parameter(torch.zeros(3, 2))], fused=True, members=3),
         r"fused=True .*population groups \(members=3\)"),
        (lambda: KAdam(mlp().parameters(), fused=True, betas=(torch.tensor(0.9), 0.999)),
         r"fused=True .*betas\[0\] .*tensor"),
        (lambda: KAdam(mlp().parameters(), fused=True, levels=[Level(gamma=0.9, beta=torch.tensor(0.99))]),
         r"fused=True .*levels\[0\].beta .*tensor"),
        (lambda: KAdam(mlp().half().parameters(), fused=True),
         r"fused=True handles float32, float64 parameters.*float16"),
        (lambda: KAdam(mlp().bfloat16().parameters(), fused=True), r"fused=True .*bfloat16"),
        (lambda: KAdam([torch.nn.Parameter(torch.zeros(2, dtype=torch.complex64))], fused=True),
         r"fused=True .*complex64"),
        (lambda: KAdam([{"params": mlp().parameters()}, {"params": mlp().half().parameters(), "fused": True}]),
         r"fused=True .*float16"),
    ],
)
def test_kadam_fused_refuses_what_its_kernel_cannot_do(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_kadam_fused_refuses_sparse_gradients_before_anything_moves():
    emb = torch.nn.Embedding(10, 4, sparse=True).double()
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(SparseGradientError, match="sparse"):
        KAdam(emb.parameters(), fused=True)  # at construction, where the gradient is already there
    dense, emb = torch.nn.Linear(3, 2).double(), torch.nn.Embedding(10, 4, sparse=True).double()
    opt = KAdam([{"params": dense.parameters()}, {"params": emb.parameters()}], fused=True)
    (dense(torch.ones(1, 3, dtype=torch.float64)).sum() + emb(torch.tensor([1, 2])).sum()).backward()
    before = [p.detach().clone() for p in dense.parameters()]
    with pytest.raises(SparseGradientError, match="sparse"):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, dense.parameters())) and len(opt.state) == 0
