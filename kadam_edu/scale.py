"""The scale switch (smoke / cpu / paper) and the choice of device.

``scale="auto"`` is ``"paper"`` when CUDA is available and ``"cpu"`` otherwise; the
environment variable ``KADAM_SCALE`` overrides ``"auto"`` (CI sets ``KADAM_SCALE=smoke``).
An explicit scale passed to a function is used as given.

| scale | purpose |
|---|---|
| smoke | CI: every notebook and figure runs end to end in seconds |
| cpu | a laptop: results that still show the paper's effects |
| paper | the paper's App. H configurations (a GPU) |
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from kadam_edu import validate

__all__ = ["SCALES", "resolve_scale", "pick_device", "seed_everything", "describe"]

SCALES = ("smoke", "cpu", "paper")


def resolve_scale(scale: str | None = "auto") -> str:
    """One of SCALES. "auto"/None: $KADAM_SCALE if set, else "paper" with CUDA, else "cpu"."""
    if scale is None or scale == "auto":
        env = os.environ.get("KADAM_SCALE", "").strip()
        if env and env != "auto":
            if env not in SCALES:
                raise ValueError(f"KADAM_SCALE must be one of {SCALES} or 'auto'; got {env!r}")
            return env
        return "paper" if torch.cuda.is_available() else "cpu"
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
    return f"scale: {scale} | device: {name} | torch {torch.__version__} (set KADAM_SCALE=smoke|cpu|paper to change)"
