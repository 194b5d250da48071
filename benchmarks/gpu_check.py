"""Measure on one CUDA GPU what ``kadam_edu.experiments.estimate`` guesses (at most 8 minutes).

    python benchmarks/gpu_check.py [--out reference/gpu/<device-name>.json] [--steps 10] [--budget 450]

1. The paper GPT (App. H: 6 layers, 6 heads, 384 wide, block 256) at batch 64: seconds per
   training step with ``KAdam`` k = 1 and k = 2 against ``torch.optim.AdamW(fused=True)``.
2. Every workload of every experiment at ``gpu`` scale (``estimate.workloads``), built as the
   experiments build it (populations of ``population="auto"``'s size on this device) and timed
   over ``--steps`` steps of :func:`kadam_edu.train.train` (forward-only and gradient-only
   workloads: their own loops), next to the estimate of the same step; from these, each
   experiment's and each chapter's projected wall time at ``gpu`` scale.
3. Member-steps per second of the gpu-scale models (the cpu and gpu char GPTs at batch 32, the
   cpu CNN at batch 128) as populations of E = 1, 2, 4, ..., 64 (``kadam_edu.population`` with
   ``KAdam(members=E)``; E = 1 is the ordinary model).
4. Host synchronisations per step of ``train()`` (``aten._local_scalar_dense`` and copies to the
   host, counted by a ``TorchDispatchMode``), for one model and for a population.
5. Peak memory (``torch.cuda.max_memory_allocated``) of every measurement.

float32 throughout, TF32 off (the runs whose max-update the book analyses are float32). A
measurement that fails (out of memory at E = 64, say) is recorded as its error and the rest go
on; past ``--budget`` seconds the remaining ones are skipped and listed. The result goes to
``reference/gpu/<device-name>.json`` (e.g. ``tesla-t4.json``) with its provenance (device name,
torch, CUDA and cuDNN versions, date, git commit); committed, it makes
``experiments.estimate(name, scale, device)`` report ``basis="measured"`` for that device (the
file whose ``device_name`` contains the device's name, e.g. "T4").

Without CUDA it says that it needs CUDA on stderr and exits with status 2, measuring and writing
nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import importlib
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
EXIT_NO_CUDA = 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def _build(config, members: int, device: torch.device, seed: int = 0):
    """The ordinary model (members = 1) or a population of ``members``, on ``device``."""
    from kadam_edu.models import GPT, CIFARNet, GPTConfig
    from kadam_edu.population import init_population

    torch.manual_seed(seed)
    if members == 1:
        return (GPT(config) if isinstance(config, GPTConfig) else CIFARNet(config)).to(device)
    return init_population(config, list(range(seed, seed + members))).to(device)


def _batch(config, batch: int, members: int, device: torch.device, gen: torch.Generator):
    """Random data of the model's shape ([E, B, ...] for a population): the step time does not depend on it."""
    from kadam_edu.models import GPTConfig

    lead = (members,) if members > 1 else ()
    if isinstance(config, GPTConfig):
        idx = torch.randint(0, config.vocab_size, (*lead, batch, config.block_size), generator=gen)
        tgt = torch.randint(0, config.vocab_size, (*lead, batch, config.block_size), generator=gen)
        return idx.to(device), tgt.to(device)
    x = torch.randn(*lead, batch, 3, 32, 32, generator=gen)
    y = torch.randint(0, config.num_classes, (*lead, batch), generator=gen)
    return x.to(device), y.to(device)


def _loss(net, batch):
    """One model's mean loss (a scalar), or each member's ([E]) for a population."""
    a, b = batch
    if hasattr(net, "members"):  # a population
        if b.dtype == torch.long and b.ndim == 2:  # CNN labels [E, B]
            logits = net(a)
            E, B = logits.shape[:2]
            return F.cross_entropy(logits.reshape(E * B, -1), b.reshape(-1), reduction="none").view(E, B).mean(1)
        return net(a, b)[1]
    if b.ndim == 1:
        return F.cross_entropy(net(a), b)
    return net(a, b)[1]


def time_train(config, batch: int, members: int, k: int, device: torch.device, steps: int, skip: int = 3) -> dict:
    """Seconds per step of :func:`kadam_edu.train.train` (KAdam with k levels; a population's with
    ``members=E``), measured by :class:`kadam_edu.scale.StepTimer` over ``steps`` steps after ``skip``."""
    from kadam_edu.optim import KAdam
    from kadam_edu.scale import StepTimer
    from kadam_edu.train import train

    _peak_reset(device)
    net = _build(config, members, device)
    opt = KAdam(net.parameters(), lr=1e-4, k=k, **({} if members == 1 else {"members": members}))
    data = _batch(config, batch, members, device, torch.Generator().manual_seed(0))
    timer = StepTimer("gpu_check", "gpu", steps=1, device=device, skip=skip, measure=steps, min_seconds=math.inf)
    train(net, opt, timer.wrap(lambda n: data), _loss, steps=skip + steps + 1, progress=False)
    return {"seconds": timer.seconds_per_step, "peak_memory": _peak(device)}


def time_loop(step, device: torch.device, steps: int, skip: int = 3) -> float:
    """Seconds per call of ``step()``, over ``steps`` calls after ``skip`` untimed ones."""
    for _ in range(skip):
        step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - t) / steps


def time_other(config, batch: int, members: int, kind: str, device: torch.device, steps: int) -> dict:
    """Seconds per forward pass under no_grad (``kind="forward"``) or forward and backward ("grad")."""
    _peak_reset(device)
    net = _build(config, members, device)
    data = _batch(config, batch, members, device, torch.Generator().manual_seed(0))
    if kind == "forward":
        net.eval()

        def step():
            with torch.no_grad():
                _loss(net, data)
    else:
        def step():
            net.zero_grad(set_to_none=True)
            _loss(net, data).sum().backward()
    return {"seconds": time_loop(step, device, steps), "peak_memory": _peak(device)}


def paper_gpt(device: torch.device, steps: int) -> dict:
    """Training step of App. H's GPT at batch 64: KAdam k = 1, 2 against AdamW(fused=True)."""
    from kadam_edu.models import gpt_config
    from kadam_edu.optim import KAdam

    config = gpt_config("paper")
    out = {"batch": [64, config.block_size]}
    makers = {
        "kadam_k1": lambda p: KAdam(p, lr=1e-4, k=1),
        "kadam_k2": lambda p: KAdam(p, lr=1e-4, k=2),
        "adamw_fused": lambda p: torch.optim.AdamW(p, lr=1e-4, fused=True),
    }
    for name, make in makers.items():
        _peak_reset(device)
        net = _build(config, 1, device)
        opt = make(net.parameters())
        data = _batch(config, 64, 1, device, torch.Generator().manual_seed(0))

        def step():
            opt.zero_grad(set_to_none=True)
            _loss(net, data).backward()
            opt.step()

        out[name] = {"seconds_per_step": time_loop(step, device, steps), "peak_memory": _peak(device)}
        del net, opt
    base = out["adamw_fused"]["seconds_per_step"]
    out["vs_adamw_fused"] = {n: out[n]["seconds_per_step"] / base for n in ("kadam_k1", "kadam_k2")}
    return out


class HostSyncs(TorchDispatchMode):
    """Counts host synchronisations: ``_local_scalar_dense`` (``.item()``, ``float()``) and copies
    from the device to the CPU."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        elif func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            src = args[0] if func is torch.ops.aten._to_copy.default else args[1]
            dst = kwargs.get("device") if func is torch.ops.aten._to_copy.default else args[0].device
            to_host = dst is not None and torch.device(dst).type == "cpu"
            if to_host and torch.is_tensor(src) and src.device.type == "cuda":
                self.count += 1
        return func(*args, **kwargs)


def host_syncs(device: torch.device, steps: int = 100) -> dict:
    """Host syncs per step of train() over ``steps`` steps (log_every 50): the gpu GPT alone and
    a population of 8 cpu GPTs."""
    from kadam_edu.models import gpt_config
    from kadam_edu.optim import KAdam
    from kadam_edu.train import train

    out = {}
    for label, config, members in (("gpu GPT, one model", gpt_config("gpu"), 1),
                                   ("cpu GPT, population of 8", gpt_config("cpu"), 8)):
        net = _build(config, members, device)
        opt = KAdam(net.parameters(), lr=1e-4, **({} if members == 1 else {"members": members}))
        data = _batch(config, 32, members, device, torch.Generator().manual_seed(0))
        counter = HostSyncs()
        with counter:
            train(net, opt, lambda n: data, _loss, steps=steps, log_every=50, progress=False)
        out[label] = {"steps": steps, "syncs": counter.count, "per_step": counter.count / steps}
    return out


def population_sweep(device: torch.device, steps: int, deadline: float, sizes=(1, 2, 4, 8, 16, 32, 64)) -> dict:
    """Member-steps per second of the gpu-scale models trained as populations of E."""
    from kadam_edu.models import cnn_config, gpt_config

    models = {"char GPT cpu preset, batch 32": (gpt_config("cpu"), 32),
              "char GPT gpu preset, batch 32": (gpt_config("gpu"), 32),
              "CNN cpu preset, batch 128": (cnn_config("cpu"), 128)}
    out = {}
    for label, (config, batch) in models.items():
        rows = out[label] = []
        for E in sizes:
            if time.monotonic() > deadline:
                rows.append({"E": E, "skipped": "time budget spent"})
                continue
            try:
                m = time_train(config, batch, E, 1, device, steps)
                rows.append({"E": E, "member_steps_per_second": E / m["seconds"], "peak_memory": m["peak_memory"]})
            except (RuntimeError, ValueError) as e:  # out of memory at the largest E
                rows.append({"E": E, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return out


def measure_workloads(device: torch.device, steps: int, deadline: float) -> tuple[dict, dict, list, dict]:
    """Step times of every workload of every experiment at gpu scale on ``device``.

    Returns (step_seconds {shape_key: s}, details {shape_key: measured, estimated, peak memory},
    skipped shape keys, projections {name: seconds})."""
    from kadam_edu.experiments import FIGURES

    est = importlib.import_module("kadam_edu.experiments.estimate")
    dev = this_device(device)
    step_seconds, details, skipped = {}, {}, []
    items = {name: est.workloads(name, "gpu", dev) for name in FIGURES}
    for name, ws in items.items():
        for w in ws:
            if w.model is None:
                continue
            for size in est._groups(w.runs, w.members):
                one = dataclasses.replace(w, members=size)
                key = one.shape_key
                if key in details:
                    continue
                if time.monotonic() > deadline:
                    skipped.append(key)
                    details[key] = {"skipped": "time budget spent"}
                    continue
                try:
                    if w.kind == "train":
                        m = time_train(w.model, w.batch, size, w.k, device, steps)
                    else:
                        m = time_other(w.model, w.batch, size, w.kind, device, steps)
                except (RuntimeError, ValueError) as e:
                    details[key] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
                    continue
                finally:
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                estimated = est._step_price(dataclasses.replace(one, gradients=1.0, extra_kernels=0.0,
                                                                extra_passes=0.0, syncs=0.0), dev, size)["seconds"]
                step_seconds[key] = m["seconds"]
                details[key] = {"measured": m["seconds"], "estimated": estimated, "peak_memory": m["peak_memory"]}
    projections = {name: sum(est.price(w, dev, step_seconds)["seconds"] for w in ws) for name, ws in items.items()}
    return step_seconds, details, skipped, projections


def this_device(device: torch.device):
    """This GPU as an ``estimate.Device``: the stated figures of the matching entry of
    ``estimate.DEVICES`` (T4's if none matches; they price only what was not measured) with the
    memory CUDA reports, which sets the population sizes as ``population="auto"`` does."""
    est = importlib.import_module("kadam_edu.experiments.estimate")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    base = next((d for d in est.DEVICES.values() if re.search(rf"\b{re.escape(d.match)}\b", name)), est.DEVICES["t4"])
    memory = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else base.memory
    return dataclasses.replace(base, name=name, memory=float(memory))


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (out.stdout.strip() + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def slug(name: str) -> str:
    """A device name as a file name: "Tesla T4" -> "tesla-t4"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="the JSON to write (default: reference/gpu/<device-name>.json)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per measurement (default 10)")
    ap.add_argument("--budget", type=float, default=450.0,
                    help="seconds after which the remaining measurements are skipped (default 450)")
    args = ap.parse_args(argv)
    if args.steps < 1 or not args.budget > 0:
        ap.error("--steps must be >= 1 and --budget > 0")
    if not torch.cuda.is_available():
        print(f"gpu_check needs CUDA: torch {torch.__version__} sees no CUDA device here, so nothing was measured "
              "or written. Run it on a GPU machine (e.g. a Colab T4 runtime).", file=sys.stderr)
        return EXIT_NO_CUDA
    start = time.monotonic()
    deadline = start + args.budget
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name(device)
    est = importlib.import_module("kadam_edu.experiments.estimate")
    out_path = Path(args.out) if args.out else est.REFERENCE_DIR / f"{slug(name)}.json"
    print(f"gpu_check on {name} | torch {torch.__version__}, CUDA {torch.version.cuda} | {args.steps} timed steps each")

    report = {
        "device_name": name,
        "total_memory": torch.cuda.get_device_properties(device).total_memory,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "tf32": False,
        "steps_timed": args.steps,
    }
    report["paper_gpt"] = paper_gpt(device, args.steps)
    for n in ("kadam_k1", "kadam_k2", "adamw_fused"):
        print(f"paper GPT, batch 64 x 256, {n}: {report['paper_gpt'][n]['seconds_per_step'] * 1e3:.1f} ms/step")
    steps, details, skipped, projections = measure_workloads(device, args.steps, deadline)
    report.update(step_seconds=steps, step_detail=details, skipped=skipped)
    report["projections"] = {"gpu": projections}
    chapters = {str(ch): sum(projections[n] for n in names) for ch, names in est.CHAPTERS.items()}
    report["chapters"] = {"gpu": chapters}
    report["population"] = population_sweep(device, args.steps, deadline)
    report["host_syncs"] = host_syncs(device) if time.monotonic() < deadline else {"skipped": "time budget spent"}
    report["seconds"] = round(time.monotonic() - start, 1)

    from kadam_edu.experiments.result import write_atomic
    from kadam_edu.scale import format_seconds

    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_path, (json.dumps(report, indent=1) + "\n").encode())
    print(f"\nprojected wall time at gpu scale on {name} (from measured step times):")
    for n, s in projections.items():
        print(f"  {n:20s} {format_seconds(s):>9s}")
    print("chapters: " + ", ".join(f"{ch}: {format_seconds(s)}" for ch, s in chapters.items()))
    if skipped:
        print(f"{len(skipped)} workloads skipped (time budget): their projections are estimates")
    print(f"wrote {out_path} in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
