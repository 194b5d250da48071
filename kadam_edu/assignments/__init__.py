r"""Self-checks and helpers for the book's course assignments (``book/assignments/``).

Each assignment asks students to implement a few equations of the paper. The ``check_*``
functions test an implementation against :mod:`kadam_edu` on several random and adversarial
inputs and say what is wrong (which input, which value, which likely mistake) without
showing the formula.

==========================  ==============================================================
Assignment 1 (discrete      :func:`check_discrete_bound`, :func:`check_adam_updates`,
bound)                      :func:`check_extremal_sequence`, :func:`check_discrete_rate`,
                            :func:`gradient_families`
Assignment 2 (adaptive      :func:`check_adaptive_normalization`, :func:`check_rmsprop`,
normalization, App. R)      :func:`check_adam`, :func:`check_kadam`, :class:`FunctionalOptimizer`
Assignment 3 (stability     :func:`check_make_optimizer`, :func:`check_log_slope`,
boundary)                   :func:`check_classification`, :func:`check_boundary`,
                            :func:`boundary_settings`, :func:`boundary_sweep`,
                            :func:`plot_boundary`
==========================  ==============================================================

Modules: :mod:`~kadam_edu.assignments.engine` (:class:`CheckResult`, running the student's code,
comparing and explaining), then one per assignment: :mod:`~kadam_edu.assignments.discrete_bound`,
:mod:`~kadam_edu.assignments.adaptive_normalization`, :mod:`~kadam_edu.assignments.stability_boundary`.
Assignment 3's sweep is an experiment, :mod:`kadam_edu.experiments.boundary`, and its figure a plot,
:mod:`kadam_edu.plots.boundary`; both are re-exported here (``plot_boundary`` on first use, so that
importing the checks does not import matplotlib).

Conventions
-----------
* A check returns a :class:`CheckResult` (``passed``, ``message``, ``answered``); it never
  raises because of the student's code, only for misuse of the check itself (``TypeError`` /
  ``ValueError``, e.g. a number where a function is expected, or a bad ``timeout``).
  Everything the student's code raises is reported as a failed check, ``SystemExit``,
  ``RecursionError``, ``MemoryError`` and other ``BaseException`` subclasses included;
  only ``KeyboardInterrupt`` (the student pressing stop) is passed on.
* Time limit: every check that calls the student's code takes ``timeout=`` (seconds, for all
  of its calls together; default 10 s, 30 s for the optimizer checks of Assignment 2). Code
  that runs longer fails the check with "your function took longer than N s". In the main
  thread on Unix (a Jupyter kernel, a script) SIGALRM stops the code: a Python loop stops at
  once, but a single C call that never returns to the interpreter (one huge numpy or torch
  operation) cannot be interrupted this way. A previous SIGALRM handler and timer are put
  back afterwards (an earlier timer still goes off on time). Elsewhere (another thread,
  Windows) the code runs in a daemon thread that the check stops waiting for: that thread
  cannot be stopped and keeps running until the code returns.
* An answer must be real: complex numbers, arrays or tensors (often a fractional power of
  a negative number), booleans, strings, ``None`` entries and wrong shapes fail with an
  explanation, and so do nan or inf where the right answer is finite.
* A student function that returns ``None`` (the notebooks' placeholder body) counts as
  "not answered yet": the result says so and what to do, and ``passed`` is False.
* Notation trap: ``beta`` is the paper's second-moment decay and ``gamma`` the first-moment
  decay; :class:`~kadam_edu.KAdam` takes ``betas=(gamma, beta)`` like torch.
"""

from kadam_edu.assignments.adaptive_normalization import (FunctionalOptimizer, check_adam,
                                                          check_adaptive_normalization, check_kadam, check_rmsprop)
from kadam_edu.assignments.discrete_bound import (check_adam_updates, check_discrete_bound, check_discrete_rate,
                                                  check_extremal_sequence, gradient_families)
from kadam_edu.assignments.engine import CheckResult, NotAnswered
from kadam_edu.assignments.stability_boundary import (check_boundary, check_classification, check_log_slope,
                                                      check_make_optimizer)
from kadam_edu.experiments.boundary import (BOUNDARY_PRESETS, BoundarySweep, RareFeatureProblem, boundary_settings,
                                            boundary_sweep)

__all__ = [
    "CheckResult",
    "NotAnswered",
    # Assignment 1
    "check_discrete_bound",
    "check_adam_updates",
    "check_extremal_sequence",
    "check_discrete_rate",
    "gradient_families",
    # Assignment 2
    "FunctionalOptimizer",
    "check_adaptive_normalization",
    "check_rmsprop",
    "check_adam",
    "check_kadam",
    # Assignment 3
    "RareFeatureProblem",
    "BoundarySweep",
    "BOUNDARY_PRESETS",
    "boundary_settings",
    "boundary_sweep",
    "check_make_optimizer",
    "check_log_slope",
    "check_classification",
    "check_boundary",
    "plot_boundary",
]


def __getattr__(name):
    # plot_boundary is imported on first use: kadam_edu.plots pulls in matplotlib
    if name == "plot_boundary":
        from kadam_edu.plots.boundary import plot_boundary

        return plot_boundary
    raise AttributeError(f"module 'kadam_edu.assignments' has no attribute {name!r}")
