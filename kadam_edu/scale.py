"""The scale switch (smoke / cpu / gpu / paper), the choice of device, and the projection of a
long run's wall time from its first steps.

``scale="auto"`` is ``"gpu"`` when CUDA is available and ``"cpu"`` otherwise; the environment
variable ``KADAM_SCALE`` overrides ``"auto"`` (CI sets ``KADAM_SCALE=smoke``). ``"paper"`` is
never picked by ``"auto"``: it must be named. An explicit scale passed to a function is used as given.

| scale | purpose |
|---|---|
| smoke | CI: every notebook and figure runs end to end in seconds |
| cpu | a laptop: results that still show the paper's effects |
| gpu | one Colab-class GPU (a T4): the paper's sweep sizes where populations allow, each chapter <= 15 min |
| paper | the paper's App. H configurations: a cluster job (days of GPU time) |
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import torch

from kadam_edu import validate

__all__ = ["SCALES", "with_overrides", "resolve_scale", "pick_device", "seed_everything", "describe", "device_name", "project",
           "StepTimer", "format_seconds"]

SCALES = ("smoke", "cpu", "gpu", "paper")


def resolve_scale(scale: str | None = "auto") -> str:
    """One of SCALES. "auto"/None: $KADAM_SCALE if set, else "gpu" with CUDA, else "cpu"."""
    if scale is None or scale == "auto":
        env = os.environ.get("KADAM_SCALE", "").strip()
        if env and env != "auto":
            if env not in SCALES:
                raise ValueError(f"KADAM_SCALE must be one of {SCALES} or 'auto'; got {env!r}")
            return env
        return "gpu" if torch.cuda.is_available() else "cpu"
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES} or 'auto'; got {scale!r}")
    return scale


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else CUDA, then MPS, then CPU.

    A given device must be "cpu", "cuda[:N]" or "mps" and be present on this machine; otherwise
    ValueError (before anything is built on it).
    """
    if device is not None:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device must be a torch device string such as 'cpu' or 'cuda:0'; got {device!r}") from e
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"device {str(dev)!r} was asked for but CUDA is not available here; "
                                 "use 'cpu' or leave device unset")
            count = torch.cuda.device_count()
            if dev.index is not None and dev.index >= count:
                raise ValueError(f"device {str(dev)!r} was asked for but this machine has {count} CUDA devices "
                                 f"(cuda:0 .. cuda:{count - 1})")
        elif dev.type == "mps":
            if not _mps_available():
                raise ValueError(f"device {str(dev)!r} was asked for but MPS is not available here; "
                                 "use 'cpu' or leave device unset")
        elif dev.type != "cpu":
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps'; got {device!r}")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU ``torch.Generator`` seeded with ``seed`` for data.

    ``seed``: an int in [0, 2**63 - 1] (:func:`kadam_edu.validate.seed`).
    """
    seed = validate.seed("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(int(seed))


def describe(scale: str, device: torch.device | None = None) -> str:
    """One line for the top of a chapter: the scale in use and where it runs."""
    device = pick_device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return (f"scale: {scale} | device: {name} | torch {torch.__version__} "
            f"(set KADAM_SCALE={'|'.join(SCALES)} to change)")


def device_name(device) -> str:
    """A device in words: the GPU's name ("Tesla T4"), "Apple MPS" or "the CPU (N threads)"."""
    device = pick_device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    threads = torch.get_num_threads()
    return f"the CPU ({threads} thread{'s' if threads != 1 else ''})"


def format_seconds(seconds: float) -> str:
    """A duration for people: "4.2 s", "40 s", "3.5 min", "2.1 h", "3.2 d" ("?" if not finite)."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min" if seconds < 600 else f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def project(name: str, scale: str, *, seconds_per_step: float, steps: int, measured_steps: int, device) -> str:
    """The projected wall time of a run, as one line: "fig1 at gpu scale: about 4.0 min on Tesla T4,
    measured over 12 steps".

    seconds_per_step: measured wall seconds of one step (>= 0); steps: the steps the whole run
    takes (every population's, in order); measured_steps: how many steps the measurement took.
    Training steps only: evaluations and setup come on top.
    """
    seconds_per_step = validate.finite_real("seconds_per_step", seconds_per_step, lo=0)
    steps = validate.positive_int("steps", steps)
    measured_steps = validate.positive_int("measured_steps", measured_steps)
    return (f"{name} at {scale} scale: about {format_seconds(seconds_per_step * steps)} on {device_name(device)}, "
            f"measured over {measured_steps} steps")


class StepTimer:
    """Times a few steps of a long run and prints the :func:`project` line once, as the run goes on.

    Call :meth:`tick` once at the start of every step (or hand :func:`kadam_edu.train.train` the
    batch function :meth:`wrap` returns, which ticks on each call). The time from the start of
    step ``skip`` to the start of step ``skip + measure`` (the first steps compile and allocate)
    gives ``seconds_per_step``; then, if ``steps`` steps (the whole experiment's: every run and
    population, at that rate) come to at least ``min_seconds``, ``out`` gets
    ``project(name, scale, ...)``. Only the first ``skip + measure`` ticks are timed; later ones
    cost nothing. On CUDA it synchronises the device at those two ticks only (two host syncs per
    experiment). clock: the time source in seconds.
    """

    def __init__(self, name: str, scale: str, *, steps: int, device=None, skip: int = 2, measure: int = 10,
                 min_seconds: float = 30.0, clock: Callable[[], float] = time.perf_counter,
                 out: Callable[[str], object] = print):
        steps, skip = validate.positive_int("steps", steps), validate.integer("skip", skip, lo=0)
        measure = validate.positive_int("measure", measure)
        self.name, self.scale, self.steps, self.device = name, scale, steps, pick_device(device)
        self.skip, self.measure, self.min_seconds, self.clock, self.out = skip, measure, min_seconds, clock, out
        self.done, self.seconds_per_step, self._ticks, self._start = False, None, 0, 0.0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return self.clock()

    def tick(self) -> None:
        """The start of a step."""
        if self.done:
            return
        if self._ticks == self.skip:
            self._start = self._now()
        elif self._ticks == self.skip + self.measure:
            self.done = True
            self.seconds_per_step = per_step = (self._now() - self._start) / self.measure
            if per_step * self.steps >= self.min_seconds:
                self.out(project(self.name, self.scale, seconds_per_step=per_step, steps=self.steps,
                                 measured_steps=self.measure, device=self.device))
        self._ticks += 1

    def wrap(self, batch_fn: Callable[..., object]) -> Callable[..., object]:
        """``batch_fn`` that ticks before handing out each batch (unchanged)."""

        def timed(*args, **kwargs):
            self.tick()
            return batch_fn(*args, **kwargs)

        return timed


#: The float32 arithmetic an experiment runs with on CUDA (no effect on a CPU, which has no TF32):
#: "exact" (TF32 off for matmuls and cuDNN convolutions) for every run whose max-update or
#: weight norms the book analyses: Eq. 5 and the exact discrete bound hold for true float32
#: arithmetic with eps -> 0, and TF32's 10-bit mantissa would blur the near-zero gradients that
#: set the max-update; "tf32" (TF32 on) only where the chapter's quantity is a loss or an accuracy.
#: bf16 autocast is used nowhere: its effect on the book's conclusions has not been measured.
PRECISIONS = ("exact", "tf32")


@contextmanager
def float32_precision(precision: str = "exact") -> Iterator[None]:
    """Run the body with CUDA matmuls and cuDNN convolutions in full float32 ("exact") or TF32
    ("tf32"); the previous settings are restored afterwards, also after an error."""
    validate.choice("precision", precision, PRECISIONS)
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def with_overrides(preset, overrides: Mapping, *, what: str = "settings", owner: str = "this experiment"):
    """``preset`` with ``overrides`` applied: the one rule for "a preset, changed in a few keys".

    ``preset``: a dict (a new dict comes back, the preset's keys in their order) or a dataclass
    instance (``dataclasses.replace``: its ``__post_init__`` checks the new values); the preset is
    left as it is. A key the preset lacks is refused, before anything is built, with
    ``ValueError("unknown {what} [...]; {owner} takes [...]")``. The values are the caller's to
    check (:meth:`Presets.check`).
    """
    if not isinstance(overrides, Mapping):
        raise TypeError(f"overrides must be a dict of {what}; got {type(overrides).__name__}")
    if isinstance(preset, Mapping):
        known = set(preset)
    elif dataclasses.is_dataclass(preset) and not isinstance(preset, type):
        known = {f.name for f in dataclasses.fields(preset)}
    else:
        raise TypeError(f"preset must be a dict or a dataclass instance; got {type(preset).__name__}")
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; {owner} takes {sorted(known)}")
    return dict(preset, **overrides) if isinstance(preset, Mapping) else dataclasses.replace(preset, **overrides)
