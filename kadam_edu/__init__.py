"""kadam_edu: the library behind the kadam-edu book.

A small, tested companion to *A Continuous-Time Analysis of Adaptive
Optimization and Normalization* (Gould & Tanaka, 2024).
"""

import importlib

from kadam_edu.optim import KAdam, Level, adaptive_normalization, kadam_levels
from kadam_edu import bounds, continuous, data, models, scale, train

__all__ = ["KAdam", "Level", "adaptive_normalization", "kadam_levels", "bounds", "continuous", "data", "models", "scale", "train",
           "assignments", "ema", "experiments", "levels", "plots", "scaling", "sde", "sharpness", "widgets"]
__version__ = "0.1.0"

# Imported on first use: these pull in matplotlib, ipywidgets, torch.func or the experiment modules.
_LAZY = {"assignments", "ema", "experiments", "levels", "plots", "scaling", "sde", "sharpness", "widgets"}


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"kadam_edu.{name}")
    raise AttributeError(f"module 'kadam_edu' has no attribute {name!r}")
