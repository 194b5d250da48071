r"""What an experiment costs on a GPU, before it runs: counted FLOPs, bytes and kernel launches.

:func:`estimate` (``experiments.estimate(name, scale, device="t4")``) describes an experiment's
work from its resolved preset as a list of :class:`Workload` (one model config and batch shape
trained or evaluated for some steps, as ``runs`` members of populations of ``members``), counts
one step of each and prices it at a device's stated figures (:data:`DEVICES`):

- **FLOPs** of one member's step: :class:`torch.utils.flop_counter.FlopCounterMode` over the
  forward and backward pass of the ordinary model (:mod:`kadam_edu.models`) at the preset's batch
  shape, on the meta device (no memory, no arithmetic: the paper GPT counts in a fraction of a
  second). Attention is priced as one fused kernel, as on a GPU (the same FLOP formulas as
  ``FlopCounterMode``'s for flash attention; the meta device itself would run it unfused). The
  optimizer's element-wise work is not counted by ``FlopCounterMode``: it is
  :data:`OPTIMIZER_FLOPS_PER_PARAM` per parameter and level.
- **Bytes** that the element-wise (non-matmul) kernels read and write, counted on the same pass
  by a ``TorchDispatchMode`` (every input and output of every kernel that is not a matmul,
  convolution or attention), plus the optimizer's :data:`OPTIMIZER_BYTES_PER_PARAM`.
- **Kernel launches** per step: the kernels (aten operations that are neither views nor bare
  allocations) dispatched by one real step of :func:`kadam_edu.train.train` with
  ``KAdam(foreach=True)`` (the CUDA default), run on the CPU on the model's skeleton (its layers
  at width 1, a batch of 2: the count depends on neither). A population's step is its batched
  model's forward, backward and ``KAdam(members=E)`` step (counted at E = 2: the count does not
  depend on E) plus train()'s bookkeeping as counted for one model, so its launches are shared
  by its E members.

(The counting of one step, :func:`count_step` and :func:`launches`, lives in
:mod:`~kadam_edu.experiments.counting`; this module describes the experiments' work and prices it.)

A step then takes ``max(GPU time, launch time)``: the GPU time is the matmul FLOPs at
:attr:`Device.matmul_efficiency` of the fp32 peak, convolution FLOPs at
:attr:`Device.conv_efficiency`, and the element-wise bytes at :attr:`Device.bandwidth_efficiency`
of the memory bandwidth, one after the other; the launch time is :attr:`Device.launch_seconds`
per kernel, which the host spends while the GPU works on the kernels queued before (eager
PyTorch launches asynchronously). A step that synchronises with the host (``float(loss)``,
Lanczos' scalars) cannot overlap them: it takes their sum. Work that runs on the host
(``noise_sde``, the toy model of ``noise_stability``: float64 on the CPU whatever the device) is
priced from its measured cost on the project's 2-core machine.

Once ``benchmarks/gpu_check.py`` has run on a device and its ``reference/gpu/<device>.json`` is
committed, the step times it measured replace the priced ones for every workload it timed:
``basis`` becomes ``"measured"`` (projected from measured step times), else it stays
``"estimated"``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from kadam_edu.experiments.common import AUTO_MEMBERS, PRESETS, check_seeds, member_bytes, settings_for
from kadam_edu.experiments.counting import KINDS, count_step, launches  # KINDS: a Workload's kinds
from kadam_edu.models import CNNConfig, GPTConfig, cnn_config, gpt_config
from kadam_edu.scale import SCALES

__all__ = ["Device", "DEVICES", "Workload", "estimate", "workloads", "count_step", "launches", "price",
           "chapter_estimates", "CHAPTERS", "REFERENCE_DIR", "reference_file"]


# =========================================================================== devices
@dataclass(frozen=True)
class Device:
    """A GPU's stated figures and the fractions of them an eager PyTorch step is assumed to reach.

    fp32_flops: peak float32 FLOP/s (no TF32: the runs whose max-update or norm the book analyses
    are float32, and a T4 has no TF32). bandwidth: memory bytes/s. memory: the total memory CUDA
    reports, bytes (``population="auto"`` fills at most half of it).
    *_efficiency: the achieved fraction of the peak (assumed until ``gpu_check`` measures).
    launch_seconds: host time per kernel launch (Python, dispatcher and CUDA launch).
    match: the text a ``torch.cuda.get_device_name()`` of this device contains.
    """

    key: str
    name: str
    match: str
    fp32_flops: float
    bandwidth: float
    memory: float
    matmul_efficiency: float
    conv_efficiency: float
    bandwidth_efficiency: float
    launch_seconds: float
    source: str


#: Stated figures: NVIDIA's datasheets (T4: 8.1 TFLOP/s fp32, 320 GB/s GDDR6, 16 GB, of which CUDA
#: reports about 15 GB; A100 40 GB SXM: 19.5 TFLOP/s fp32, 1,555 GB/s). Assumed fractions:
#: 50% of peak for cuBLAS fp32 matmuls at these shapes, 35% for cuDNN's grouped fp32
#: convolutions (a population's convolutions are grouped, groups = E), 60% of the bandwidth for
#: element-wise kernels, 10 us of host time per eager kernel launch (PyTorch's dispatcher plus
#: CUDA's launch on a Colab-class 2-vCPU host).
DEVICES: dict[str, Device] = {
    "t4": Device("t4", "NVIDIA T4", "T4", fp32_flops=8.1e12, bandwidth=320e9, memory=15.0e9,
                 matmul_efficiency=0.5, conv_efficiency=0.35, bandwidth_efficiency=0.6, launch_seconds=10e-6,
                 source="NVIDIA T4 datasheet (fp32 8.1 TFLOP/s, 320 GB/s, 16 GB); efficiencies assumed"),
    "a100": Device("a100", "NVIDIA A100", "A100", fp32_flops=19.5e12, bandwidth=1555e9, memory=39.5e9,
                   matmul_efficiency=0.5, conv_efficiency=0.35, bandwidth_efficiency=0.6, launch_seconds=10e-6,
                   source="NVIDIA A100 datasheet (fp32 19.5 TFLOP/s without TF32, 1,555 GB/s, 40 GB); "
                          "efficiencies assumed"),
}

#: Where ``benchmarks/gpu_check.py`` writes its measurements, one JSON per device.
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "reference" / "gpu"

#: Element-wise FLOPs per parameter per level of a k-Adam step (Eq. 10: m and v updates 3 each,
#: sqrt, add eps, divide, bias correction) and per step (the update and the decoupled decay).
OPTIMIZER_FLOPS_PER_PARAM = (10, 3)
#: float32 bytes per parameter per level (read x, m, v; write m, v, u; read u for the max-update)
#: and per step (train()'s finiteness checks of gradients and parameters, its last-finite copy,
#: the update's read and write of the parameters): 4 * 7 and 4 * 7.
OPTIMIZER_BYTES_PER_PARAM = (28, 28)
#: A Hessian-vector product (Lanczos, ``kadam_edu.sharpness``) costs this many gradients: a forward,
#: a backward and the backward of the backward (Pearlmutter's trick by double backward).
HVP_GRADIENTS = 2.5
#: Kernels per substep of the ODE solvers (``kadam_edu.continuous``) beyond the gradient: the
#: tensor operations of one substep of ``solve_adam_ode``'s loop (``"exp"``: about 20) and the
#: copy of the flat vector into the model and of the gradients out (about 2 per parameter tensor).
ODE_KERNELS_PER_SUBSTEP = 20
#: float32 passes over the flat parameter vector per ODE substep (theta, psi, m, v, u, g read and
#: written by about 20 element-wise operations).
ODE_PASSES_PER_SUBSTEP = 40
#: Host seconds per step of the toy model of ``noise_stability`` (float64 on the CPU, one host
#: read per step): 0.98 ms measured over its cpu preset's 2,700 steps on the project's 2-core
#: machine (one thread).
TOY_STEP_SECONDS = 1.0e-3
#: Host seconds of ``noise_sde`` per unit of :func:`_sde_work` (paths x SDE steps x runs): its cpu
#: preset (4,096 paths; 3 / dt = 9,600 SDE steps of dt = 0.025^2 / 2; 2 SDEs and 2 x 4 discrete
#: runs) took 15 s on the project's 2-core machine (``costs.json``).
SDE_SECONDS_PER_WORK = 15.0 / (4096 * (3.0 / (0.025**2 / 2)) * 2 * (1 + 4))


# =========================================================================== workloads
@dataclass(frozen=True)
class Workload:
    """One kind of step an experiment runs, and how many.

    what: a label. model: a GPTConfig or CNNConfig, or None for host work (``host_seconds``).
    batch: sequences (of block_size tokens) or images per member per step. steps: steps per run.
    runs: members in all (one per training run). members: members per population (trained as one
    batched model; 1 = one model at a time). k: KAdam's levels. kind: ``"train"`` (forward,
    backward, optimizer, ``train()``'s bookkeeping), ``"grad"`` (forward and backward only) or
    ``"forward"`` (an evaluation, under no_grad). gradients: forward-backward passes per step
    (ODE substeps, HVPs). extra_kernels / extra_passes: kernels and float32 passes over the
    parameters per gradient beyond the model's own (the ODE's arithmetic). syncs: host
    synchronisations per step. host_seconds: the whole workload's host time (model None).
    """

    what: str
    model: GPTConfig | CNNConfig | None
    batch: int = 0
    steps: int = 0
    runs: int = 1
    members: int = 1
    k: int = 1
    kind: str = "train"
    gradients: float = 1.0
    extra_kernels: float = 0.0
    extra_passes: float = 0.0
    syncs: float = 0.0
    host_seconds: float = 0.0

    @property
    def shape_key(self) -> str:
        """The key of this step's measured time in a ``gpu_check`` file: model, batch, E, k, kind."""
        return f"{_model_key(self.model)}|batch={self.batch}|E={self.members}|k={self.k}|{self.kind}"


def _model_key(config) -> str:
    if isinstance(config, GPTConfig):
        return (f"gpt:L{config.n_layer}H{config.n_head}C{config.n_embd}T{config.block_size}"
                f"{'-qk' if config.qk_norm else ''}{f'-d{config.dropout:g}' if config.dropout else ''}")
    if isinstance(config, CNNConfig):
        return f"cnn:{'-'.join(map(str, config.widths))}h{config.hidden}{'-bn' if config.batch_norm else ''}"
    return "host"


def _groups(runs: int, members: int) -> list[int]:
    """Population sizes that train ``runs`` members ``members`` at a time (the last may be smaller)."""
    full, rest = divmod(runs, members)
    return [members] * full + ([rest] if rest else [])


def _population(runs: int, model, batch: int, device: Device) -> int:
    """Members per population, as ``population="auto"`` picks them on CUDA
    (:func:`~kadam_edu.experiments.common.population_size`): at most
    :data:`~kadam_edu.experiments.common.AUTO_MEMBERS`, and no more than half the device's memory
    holds (:func:`~kadam_edu.experiments.common.member_bytes` each); never more than ``runs``."""
    fit = int(device.memory // 2) // max(1, member_bytes(model, batch))
    return max(1, min(runs, AUTO_MEMBERS, fit))


def _gpt_preset(config: dict) -> GPTConfig:
    return gpt_config(config["model"], **config.get("model_overrides", {}))


def _train_and_eval(name: str, config: dict, *, runs: int, device: Device, eval_steps: int = 0,
                    k: int = 1) -> list[Workload]:
    """A sweep of ``runs`` char-GPT runs of ``config['steps']`` steps in populations, and its
    evaluations (``eval_steps`` forward passes per run at the training batch)."""
    model, batch = _gpt_preset(config), config["batch_size"]
    members = _population(runs, model, batch, device)
    out = [Workload(f"{name} training", model, batch, config["steps"], runs, members, k)]
    if eval_steps:
        out.append(Workload(f"{name} evaluation", model, batch, eval_steps, runs, members, kind="forward"))
    return out


def _evaluations(steps: int, every: int) -> int:
    """Evaluations of a run: every ``every`` steps and after the last step (train()'s rule)."""
    return steps // every + (steps % every != 0)


def _w_sweep(name, config, device, seeds=1):  # fig1, fig3: max-update trajectories along a curve, per seed
    return _train_and_eval(name, config, runs=config["points"] * seeds, device=device)


def _w_generalisation(name, config, device, seeds=1):  # fig9-11, fig12: trajectories and test loss, per seed
    evals = _evaluations(config["steps"], config["eval_every"]) * config["eval_iters"]
    return _train_and_eval(name, config, runs=config["points"] * seeds, device=device, eval_steps=evals)


def _w_fig4(name, config, device):  # two runs (qk-norm on, off) of steps + 1 steps, every head recorded
    out = []
    for qk in (True, False):
        model = gpt_config(config["model"], qk_norm=qk)
        out.append(Workload(f"fig4 qk_norm={qk}", model, config["batch_size"], config["steps"] + 1))
    return out


def _w_fig5(name, config, device):  # two runs of coarse_grained_adam: its own loop, float(loss) each step
    model = _gpt_preset(config)
    return [Workload("fig5 Adam and coarse-grained Adam", model, config["batch_size"], config["steps"], runs=2,
                     syncs=1)]


def _w_fig7(name, config, device):  # discrete AdamW, then the Eq. 4 ODE on the same batches
    from kadam_edu.continuous import FIRST_WINDOW_REFINEMENT

    model, steps, K = _gpt_preset(config), config["steps"], config["substeps"]
    if config["method"] == "euler":
        gradients = steps * K + 1
    else:  # K + 1 gradients per step, the first window refined
        gradients = steps * (K + 1) + K * (FIRST_WINDOW_REFINEMENT - 1) + 1
    tensors = count_step(model, 1)["param_tensors"]
    extra = dict(extra_kernels=ODE_KERNELS_PER_SUBSTEP + 2 * tensors, extra_passes=ODE_PASSES_PER_SUBSTEP)
    return [Workload("fig7 discrete AdamW", model, config["batch_size"], steps + 1, kind="grad", **extra),
            Workload(f"fig7 Eq. 4 ODE ({config['method']}, K={K})", model, config["batch_size"], 1, kind="grad",
                     gradients=gradients, **extra)]


def _w_fig2(name, config, device, seeds=1):  # k-Adam on CIFAR-10: one k per population (KAdam has one k)
    from kadam_edu.experiments.kadam_cifar import sweep_configs

    model = cnn_config(config["model"], **config["model_overrides"])
    n_train, n_test = config["n_train"] or 50_000, config["n_test"] or 10_000
    steps = config["epochs"] * math.ceil(n_train / config["batch_size"])
    evals = _evaluations(config["epochs"], config["eval_every"]) * math.ceil(n_test / config["eval_batch_size"])
    runs: dict[int, int] = {}
    for c in sweep_configs(config):  # a population's members share k; strategies differ only in levels
        runs[c["k"]] = runs.get(c["k"], 0) + seeds
    out = []
    for k, n in runs.items():
        members = _population(n, model, config["batch_size"], device)
        out.append(Workload(f"fig2 k={k}", model, config["batch_size"], steps, n, members, k=k))
        out.append(Workload(f"fig2 k={k} test accuracy", model, config["eval_batch_size"], evals, n, members,
                            kind="forward"))
    return out


def _w_level_bounds(name, config, device):  # one run per strategy, k levels (a population if it takes one)
    return _train_and_eval(name, config, runs=len(config["strategies"]), device=device, k=config["k"])


def _w_eos(name, config, device, seeds=1):  # constant-lr runs per seed, Lanczos every measure_every steps
    model, batch, steps = _gpt_preset(config), config["batch_size"], config["steps"]
    runs = (len(config["lrs"]) + len(config["minibatch_lrs"])) * seeds
    measurements = steps // config["measure_every"]
    hvps = measurements * config["lanczos_iters"]
    return [Workload("eos training", model, batch, steps, runs),
            Workload("eos Lanczos (HVPs)", model, batch, hvps, runs, kind="grad", gradients=HVP_GRADIENTS, syncs=2),
            Workload("eos fixed-batch loss", model, batch, measurements, runs, kind="forward", syncs=1)]


def _sde_work(config: dict) -> float:
    """paths x SDE steps x (2 SDEs + 2 discrete runs per lr): every run covers the horizon in steps of dt."""
    from kadam_edu.experiments.noise import _sde_plan

    _, _, sde_steps, _, runs = _sde_plan(config)
    return config["paths"] * sde_steps * 2 * (1 + len(runs))


def _w_noise_sde(name, config, device):
    return [Workload("noise_sde (float64, on the CPU)", None, host_seconds=SDE_SECONDS_PER_WORK * _sde_work(config))]


def _w_batch_scaling(name, config, device, seeds=1):
    """Per seed one run per (rule, kappa), kappa = 1 shared by the rules; with one seed the floor run
    (with several the floor compares the seeds' own runs: :func:`~kadam_edu.experiments.noise.batch_scaling`)."""
    from kadam_edu import scaling

    model, base = _gpt_preset(config), config["base_batch"]
    evals = config["evals"] * config["eval_batches"]
    floor = seeds == 1 and config["floor_seed"] is not None
    out = []
    for kappa in config["kappas"]:
        runs = (1 if kappa == 1 else 2) * seeds + (1 if kappa == 1 and floor else 0)
        steps = scaling.scaled_steps(config["samples"] // base, kappa)
        out.append(Workload(f"batch {base * kappa} (kappa={kappa})", model, base * kappa, steps, runs))
    out.append(Workload("evaluations", model, config["eval_batch_size"], evals, sum(w.runs for w in out),
                        kind="forward", syncs=1))
    return out


def _w_stability(name, config, device, seeds=1):  # per seed: char GPT per kappa (batch base * kappa), the host toy
    model = gpt_config(config["gpt_model"], dropout=0.0)
    out = [Workload(f"char GPT kappa={kappa:g}", model, int(round(config["gpt_base_batch"] * kappa)),
                    config["gpt_steps"], runs=seeds) for kappa in config["gpt_kappas"]]
    toy = len(config["toy_kappas"]) * config["toy_steps"] * TOY_STEP_SECONDS * seeds
    out.append(Workload("toy model (float64, on the CPU)", None, host_seconds=toy))
    return out


#: Each experiment's work, from its resolved preset: ``fn(name, config, device) -> [Workload]``; those
#: that take ``seeds`` also ``fn(..., seeds=S)``, the work of S base seeds.
WORKLOADS = {
    "fig1": _w_sweep, "fig3": _w_sweep, "fig12": _w_generalisation,
    "fig9": _w_generalisation, "fig10": _w_generalisation, "fig11": _w_generalisation,
    "fig4": _w_fig4, "fig5": _w_fig5, "fig7": _w_fig7, "fig2": _w_fig2,
    "level_bounds": _w_level_bounds, "eos": _w_eos, "noise_sde": _w_noise_sde,
    "noise_batch_scaling": _w_batch_scaling, "noise_stability": _w_stability,
}

#: The experiments each chapter's notebook runs, in order (``book/ch*.ipynb``; Chapter 1 runs fig7
#: twice, at the preset's lr and at a tenth of it). tests/test_estimate.py checks it against the notebooks.
CHAPTERS: dict[int, tuple[str, ...]] = {
    1: ("fig7", "fig7"),
    2: ("fig1", "fig3", "fig9", "fig10", "fig11", "fig12"),
    3: ("fig4", "fig7", "fig5"),
    4: ("level_bounds", "fig2"),
    5: ("noise_sde", "noise_batch_scaling", "noise_stability"),
    6: ("eos",),
}


# =========================================================================== pricing
def _step_price(w: Workload, device: Device, members: int) -> dict:
    """One population step of ``members`` members of workload ``w`` on ``device``: flops, bytes,
    kernels, and seconds (GPU, launch, and the step's, which overlaps them unless it syncs)."""
    c = count_step(w.model, w.batch, "forward" if w.kind == "forward" else "train")
    params = c["params"]
    flops = members * w.gradients * c["flops"]
    conv = members * w.gradients * c["conv_flops"]
    moved = members * w.gradients * (c["bytes"] + 4 * params * w.extra_passes)
    elementwise = 0.0
    if w.kind == "train":
        per_level, per_step = OPTIMIZER_FLOPS_PER_PARAM
        elementwise = members * params * (per_level * w.k + per_step)
        b_level, b_step = OPTIMIZER_BYTES_PER_PARAM
        moved += members * params * (b_level * w.k + b_step)
    kernels = launches(w.model, members, w.k, w.kind) + (w.gradients - 1) * launches(w.model, members, w.k, "grad") \
        if w.kind == "train" else w.gradients * launches(w.model, members, w.k, w.kind)
    kernels += w.gradients * w.extra_kernels
    gpu = ((flops - conv) / (device.fp32_flops * device.matmul_efficiency)
           + conv / (device.fp32_flops * device.conv_efficiency)
           + moved / (device.bandwidth * device.bandwidth_efficiency))
    launch = kernels * device.launch_seconds
    seconds = gpu + launch if w.syncs else max(gpu, launch)
    return {"flops": flops + elementwise, "bytes": moved, "kernels": kernels, "gpu_seconds": gpu,
            "launch_seconds": launch, "seconds": seconds}


def price(w: Workload, device: Device, measured: dict | None = None) -> dict:
    """The whole workload on ``device``: its populations' steps priced, or measured where
    ``measured`` (``{Workload.shape_key: seconds per step}``) has them, and summed."""
    row = {"what": w.what, "model": _model_key(w.model), "batch": w.batch, "steps": w.steps, "runs": w.runs,
           "members": w.members, "k": w.k, "kind": w.kind}
    if w.model is None:
        return dict(row, flops=0.0, launches=0, seconds=w.host_seconds, bound="host", basis="estimated",
                    memory_bytes=0.0)
    totals = {"flops": 0.0, "launches": 0.0, "seconds": 0.0, "gpu": 0.0, "launch": 0.0}
    basis = "estimated"
    for size in _groups(w.runs, w.members):
        p = _step_price(w, device, size)
        step = p["seconds"]
        key = dataclasses.replace(w, members=size).shape_key
        if measured is not None and key in measured:
            step, basis = measured[key] * w.gradients, "measured"
        totals["flops"] += w.steps * p["flops"]
        totals["launches"] += w.steps * p["kernels"]
        totals["seconds"] += w.steps * step
        totals["gpu"] += w.steps * p["gpu_seconds"]
        totals["launch"] += w.steps * p["launch_seconds"]
    bound = "launch" if totals["launch"] > totals["gpu"] else "compute"
    memory = w.members * member_bytes(w.model, w.batch) if w.kind == "train" else 0.0
    return dict(row, flops=totals["flops"], launches=int(round(totals["launches"])), seconds=totals["seconds"],
                gpu_seconds=totals["gpu"], launch_seconds=totals["launch"], bound=bound, basis=basis,
                memory_bytes=memory)


# =========================================================================== measured references
def _device(device) -> Device:
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise ValueError(f"device must be one of {sorted(DEVICES)} (a GPU whose figures kadam_edu.experiments."
                         f"estimate.DEVICES states); got {device!r}")
    return DEVICES[device.lower()]


def reference_file(device: str = "t4", directory: Path | None = None) -> Path | None:
    """The committed ``gpu_check`` file of ``device`` (its ``device_name`` contains the device's
    match text, e.g. "Tesla T4"), or None."""
    dev = _device(device)
    directory = REFERENCE_DIR if directory is None else Path(directory)
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob("*.json")):
        try:
            name = json.loads(path.read_text()).get("device_name", "")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(name, str) and re.search(rf"\b{re.escape(dev.match)}\b", name):
            return path
    return None


@functools.lru_cache(maxsize=None)
def _measured(device: str, directory: str | None) -> tuple[dict | None, str | None]:
    path = reference_file(device, None if directory is None else Path(directory))
    if path is None:
        return None, None
    data = json.loads(path.read_text())
    return dict(data.get("step_seconds", {})), str(path)


# =========================================================================== the estimate
def workloads(name: str, scale, device: str | Device = "t4", *, seeds=None) -> list[Workload]:
    """The work of experiment ``name`` at ``scale`` (resolved as ``reproduce`` resolves it) on
    ``device`` (a key of :data:`DEVICES`, or a :class:`Device`: its memory sets the population
    sizes), as :class:`Workload` s read from its preset (:func:`~kadam_edu.experiments.common.settings_for`).
    ``seeds`` (as ``reproduce`` takes it: an int S, a list, or None for one seed): each seed's runs
    are counted (more runs per workload, so also fuller populations); refused for an experiment
    that takes no seeds."""
    from kadam_edu.experiments import FIGURES, ordered

    if not isinstance(name, str) or name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose one of {ordered(FIGURES)}")
    if scale != "auto" and scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES} or 'auto'; got {scale!r}")
    dev = device if isinstance(device, Device) else _device(device)
    fn = FIGURES[name].function()  # registers its presets
    count = len(check_seeds(seeds))
    if seeds is not None and not FIGURES[name].takes("seeds"):
        raise ValueError(f"{name} takes no seeds: it runs once; got seeds={seeds!r}")
    _, config = settings_for(PRESETS[name], scale, {})
    items = WORKLOADS[name](name, config, dev, **({"seeds": count} if seeds is not None else {}))
    if "population" not in inspect.signature(fn).parameters:  # it trains one model at a time
        items = [dataclasses.replace(w, members=1) for w in items]
    return items


def estimate(name: str, scale, device: str = "t4", *, reference_dir: str | Path | None = None, seeds=None) -> dict:
    """Wall time of experiment ``name`` at ``scale`` on ``device`` ("t4", "a100"), before it runs;
    ``seeds``: of a run repeated per base seed (as ``reproduce`` takes it; :func:`workloads`).

    Returns ``seconds`` (the total), ``flops`` (counted, optimizer included), ``launches``
    (kernels), ``basis`` ("measured": every GPU workload was timed by ``benchmarks/gpu_check.py``
    on this device, read from ``reference/gpu/``; "partly measured"; else "estimated"),
    ``device`` (its name), ``scale`` (resolved), ``memory_bytes`` (the largest population's
    estimated footprint), ``host_seconds`` (CPU work, priced from measurements on 2 cores),
    ``workloads`` (one dict per :class:`Workload`, priced) and ``assumptions`` (the figures
    used). ValueError for an unknown name, scale or device, before any counting.
    """
    from kadam_edu.scale import resolve_scale

    items = workloads(name, scale, device, seeds=seeds)
    scale, dev = resolve_scale(scale), _device(device)
    measured, source = _measured(dev.key, None if reference_dir is None else str(reference_dir))
    rows = [price(w, dev, measured) for w in items]
    gpu_rows = [r for r in rows if r["bound"] != "host"]
    kinds = {r["basis"] for r in gpu_rows}
    basis = "measured" if kinds == {"measured"} else "partly measured" if "measured" in kinds else "estimated"
    return {
        "figure": name,
        "scale": scale,
        "device": dev.name,
        "seconds": sum(r["seconds"] for r in rows),
        "flops": sum(r["flops"] for r in rows),
        "launches": sum(r["launches"] for r in rows),
        "basis": basis,
        "measured_file": source if basis != "estimated" else None,
        "host_seconds": sum(r["seconds"] for r in rows if r["bound"] == "host"),
        "memory_bytes": max([r["memory_bytes"] for r in rows] + [0.0]),
        "workloads": rows,
        "assumptions": {"fp32_flops": dev.fp32_flops, "bandwidth": dev.bandwidth,
                        "matmul_efficiency": dev.matmul_efficiency, "conv_efficiency": dev.conv_efficiency,
                        "bandwidth_efficiency": dev.bandwidth_efficiency, "launch_seconds": dev.launch_seconds,
                        "population": AUTO_MEMBERS, "source": dev.source},
    }


def chapter_estimates(scale, device: str = "t4") -> dict[int, float]:
    """Seconds of each chapter's experiments (:data:`CHAPTERS`) at ``scale`` on ``device``, as the
    chapters run them: on ``experiments.BOOK_SEEDS[scale]`` seeds where an experiment takes seeds."""
    from kadam_edu.experiments import BOOK_SEEDS, FIGURES
    from kadam_edu.scale import resolve_scale

    if scale != "auto" and scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES} or 'auto'; got {scale!r}")
    seeds = BOOK_SEEDS[resolve_scale(scale)]
    cache: dict[str, float] = {}
    out = {}
    for chapter, names in CHAPTERS.items():
        for name in names:
            if name not in cache:
                cache[name] = estimate(name, scale, device, seeds=seeds if FIGURES[name].takes("seeds") else None)[
                    "seconds"]
        out[chapter] = sum(cache[n] for n in names)
    return out
