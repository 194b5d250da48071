"""kadam_edu: the library behind the kadam-edu book.

A small, tested companion to *A Continuous-Time Analysis of Adaptive
Optimization and Normalization* (Gould & Tanaka, 2024).
"""

from kadam_edu.optim import KAdam, Level, kadam_levels
from kadam_edu import bounds, continuous

__all__ = ["KAdam", "Level", "kadam_levels", "bounds", "continuous"]
__version__ = "0.1.0"
