"""Counting one step of a model, as :mod:`~kadam_edu.experiments.estimate` prices it: FLOPs,
bytes and kernel launches.

:func:`count_step`: one member's forward (and backward) pass of a GPTConfig or CNNConfig model,
counted on the meta device by :class:`torch.utils.flop_counter.FlopCounterMode` (FLOPs; attention
priced as one fused kernel, as on a GPU) and a ``TorchDispatchMode`` (kernels and the bytes the
element-wise ones read and write). :func:`launches`: the kernels one real training step
launches, counted on the CPU on the model's skeleton (its layers at width 1).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from kadam_edu.models import CIFARNet, CNNConfig, GPT, GPTConfig
from kadam_edu.population import PopulationCNN, PopulationGPT

__all__ = ["KINDS", "count_step", "launches"]

#: What a workload's step does: train (forward, backward, optimizer), grad (forward, backward), forward.
KINDS = ("train", "grad", "forward")


class _Kernels(TorchDispatchMode):
    """Counts kernels (aten operations that are neither views nor bare allocations) and the bytes
    that the element-wise ones (not matmul, convolution or attention) read and write."""

    COMPUTE = {"mm", "bmm", "addmm", "baddbmm", "addbmm", "matmul", "convolution", "convolution_backward",
               "cudnn_convolution", "_convolution"}

    def __init__(self):
        super().__init__()
        self.kernels, self.bytes, self.paused = 0, 0, False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.paused or func.is_view or "empty" in func.__name__ or func.namespace != "aten":
            return out
        self.kernels += 1
        if func.__name__.split(".")[0] not in self.COMPUTE:
            self.bytes += _tensor_bytes(args) + _tensor_bytes(kwargs or {}) + _tensor_bytes(out)
        return out


def _tensor_bytes(tree) -> int:
    if torch.is_tensor(tree):
        return tree.numel() * tree.element_size()
    if isinstance(tree, (list, tuple)):
        return sum(_tensor_bytes(t) for t in tree)
    if isinstance(tree, dict):
        return sum(_tensor_bytes(t) for t in tree.values())
    return 0


class _FusedAttention(TorchFunctionMode):
    """Prices ``F.scaled_dot_product_attention`` as one fused kernel, as a GPU runs it: the
    FLOPs of ``FlopCounterMode``'s flash-attention formulas and the bytes of q, k, v, out (and
    of their gradients), instead of the unfused math the meta device would dispatch. The
    output is a stand-in of the right shape that carries gradients to q, k and v."""

    def __init__(self, kernels: _Kernels):
        super().__init__()
        self.kernels, self.flops, self.backward_flops = kernels, 0, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        q, k, v = args[:3]
        out_shape = (*q.shape[:-1], v.shape[-1])
        self.flops += sdpa_flop_count(q.shape, k.shape, v.shape)
        size = q.element_size()
        io = q.numel() + k.numel() + v.numel() + math.prod(out_shape)
        self.kernels.bytes += io * size
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
            self.backward_flops += sdpa_backward_flop_count(out_shape, q.shape, k.shape, v.shape)
            self.kernels.bytes += 2 * io * size  # reads q, k, v, out, d_out; writes dq, dk, dv
        self.kernels.paused = True
        try:
            return q + k + v  # the char GPT's q, k and v share the output's shape
        finally:
            self.kernels.paused = False


def _inputs(model, batch: int, device):
    if isinstance(model, GPTConfig):
        idx = torch.zeros(batch, model.block_size, dtype=torch.long, device=device)
        return idx, idx
    x = torch.zeros(batch, *CIFARNet.IMAGE_SHAPE, device=device)
    return x, torch.zeros(batch, dtype=torch.long, device=device)


def _loss(net, batch_tensors):
    a, b = batch_tensors
    if isinstance(net, (CIFARNet, PopulationCNN)):
        logits = net(a)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b.reshape(-1), reduction="sum")
    loss = net(a, b)[1]
    return loss.sum()


def _build(model, members: int = 1):
    if members == 1:
        return GPT(model) if isinstance(model, GPTConfig) else CIFARNet(model)
    return (PopulationGPT if isinstance(model, GPTConfig) else PopulationCNN)(model, members)


def _check_model(model) -> None:
    if not isinstance(model, (GPTConfig, CNNConfig)):
        raise ValueError(f"model must be a GPTConfig or a CNNConfig (kadam_edu.models); got {type(model).__name__}")


@functools.lru_cache(maxsize=None)
def count_step(model, batch: int, kind: str = "train") -> dict:
    """One member's step of ``model`` (a GPTConfig or CNNConfig) at ``batch`` sequences of
    block_size tokens (or images), counted on the meta device.

    kind: ``"train"`` (forward and backward) or ``"forward"`` (no_grad). Returns
    ``flops`` (matmul-class: ``FlopCounterMode`` plus fused attention), ``conv_flops`` (of them,
    the convolutions'), ``bytes`` (element-wise kernels' reads and writes), ``kernels`` (on the
    meta device: see :func:`launches` for the count used), ``params`` and ``param_tensors``.
    """
    _check_model(model)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int; got {batch!r}")
    if kind not in ("train", "forward"):
        raise ValueError(f"kind must be 'train' (forward and backward) or 'forward' (no_grad); got {kind!r}")
    with torch.device("meta"):
        net = _build(model)
    data = _inputs(model, batch, "meta")
    kernels = _Kernels()
    counter = FlopCounterMode(display=False)
    attention = _FusedAttention(kernels)
    with counter, attention, kernels:
        if kind == "forward":
            with torch.no_grad():
                _loss(net.eval(), data)
        else:
            _loss(net.train(), data).backward()
    by_op = counter.get_flop_counts().get("Global", {})
    conv = sum(v for op, v in by_op.items() if "convolution" in str(op))
    params = list(net.parameters())
    return {
        "flops": int(counter.get_total_flops() + attention.flops + attention.backward_flops),
        "conv_flops": int(conv),
        "bytes": int(kernels.bytes),
        "kernels": int(kernels.kernels),
        "params": sum(p.numel() for p in params),
        "param_tensors": len(params),
    }


def launches(model, members: int = 1, k: int = 1, kind: str = "train") -> int:
    """Kernels launched per step of ``members`` members of ``model``, counted over one real step
    on the CPU of its :func:`_skeleton` (the same layers at width 1) at a batch of 2: the count
    depends on neither the widths nor the batch, nor on E for a population (counted at E = 2).

    kind ``"train"``: forward, backward and ``KAdam(k=k, foreach=True)`` (the CUDA default path;
    a population's with ``members=E``), plus the bookkeeping of :func:`kadam_edu.train.train`
    (its finiteness checks and last-finite copy), counted on a step of train() with one model.
    ``"grad"``: forward and backward. ``"forward"``: forward under no_grad. The global RNG is
    left as it was. Each level of k-Adam adds the same kernels (its adaptive normalization, Eq. 10,
    chained once more), so k > 2 is extrapolated from k = 1 and 2.
    """
    _check_model(model)
    for arg, value in (("members", members), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive int; got {value!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    if kind != "train":
        return _launches(model, members > 1, 1, kind)
    if k > 2:
        one, two = _launches(model, members > 1, 1, kind), _launches(model, members > 1, 2, kind)
        return one + (k - 1) * (two - one)
    return _launches(model, members > 1, k, kind)


@functools.lru_cache(maxsize=None)
def _launches(model, population: bool, k: int, kind: str) -> int:
    from kadam_edu.optim import KAdam

    net, data = _tiny(model, 2 if population else 1)
    if kind == "forward":
        net.eval()
        return _count(lambda: _no_grad(lambda: _loss(net, data)), repeat=2)
    if kind == "grad":
        return _count(lambda: _loss(net, data).backward(), repeat=2)
    with torch.random.fork_rng(devices=[]):
        opt = KAdam(net.parameters(), lr=1e-4, k=k, foreach=True, **({"members": 2} if population else {}))
    in_train, plain_one = _train_launches(model, k)
    return _count(_plain_step(net, opt, data), repeat=3) + in_train - plain_one


def _skeleton(model):
    """The model with every width cut to 1 head-dimension / channel and the GPT's context to at most
    8 tokens: the same layers and kernels as ``model`` at almost no arithmetic."""
    if isinstance(model, GPTConfig):
        return dataclasses.replace(model, n_embd=model.n_head, block_size=min(model.block_size, 8))
    return dataclasses.replace(model, widths=(1,) * len(model.widths), hidden=1)


def _tiny(model, members: int):
    """The :func:`_skeleton` of the model (or a population of ``members`` of it), and a batch of 2."""
    tiny = _skeleton(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = _build(tiny, members)
    data = _inputs(tiny, 2, "cpu")
    if members > 1:
        data = tuple(t.unsqueeze(0).expand(members, *t.shape).contiguous() for t in data)
    return net, data


def _plain_step(net, opt, data):
    def step():
        opt.zero_grad(set_to_none=True)
        _loss(net, data).backward()
        opt.step()

    return step


def _no_grad(fn):
    with torch.no_grad():
        return fn()


def _count(fn, repeat: int) -> int:
    """Kernels of the last of ``repeat`` calls of ``fn`` (the first ones create lazy state)."""
    with torch.random.fork_rng(devices=[]):
        for _ in range(repeat - 1):
            fn()
        kernels = _Kernels()
        with kernels:
            fn()
    return kernels.kernels


@functools.lru_cache(maxsize=None)
def _train_launches(model, k: int) -> tuple[int, int]:
    """(kernels of one step of train(), kernels of the same step without its bookkeeping), one model."""
    from kadam_edu.optim import KAdam
    from kadam_edu.train import train

    net, data = _tiny(model, 1)
    with torch.random.fork_rng(devices=[]):
        opt = KAdam(net.parameters(), lr=1e-4, k=k, foreach=True)
        kernels = _Kernels()

        def batch_fn(n):
            kernels.paused = n != 1  # count step 1 (step 0 creates the optimizer's state)
            return data

        kernels.paused = True
        with kernels:
            train(net, opt, batch_fn, _loss, steps=3, progress=False)
    return kernels.kernels, _count(_plain_step(net, opt, data), repeat=2)
