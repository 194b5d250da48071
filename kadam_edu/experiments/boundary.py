r"""The boundary sweep of Assignment 3: Adam's max-update on a (beta, gamma) grid, measured on a toy
problem where the exact discrete bound is attained (``book/assignments/a3_stability_boundary``).

:class:`RareFeatureProblem` is least squares whose rare features stop appearing after a few steps:
from then on their weights get exactly zero gradient and Adam's state for them only decays, the
worst case of the discrete bound, so ||u_n||_inf grows like exp(rate n) with
rate = ln(gamma) - ln(beta)/2 where gamma^2 > beta (continuous time, Eq. 5: -C/2).
:func:`boundary_sweep` trains it at every grid point and returns a :class:`BoundarySweep`
(``max_updates [B, G, steps]``); :data:`BOUNDARY_PRESETS` holds the grid per scale. The checks of
the assignment live in :mod:`kadam_edu.assignments`, the figure in :mod:`kadam_edu.plots.boundary`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from kadam_edu import bounds, validate
from kadam_edu.optim import KAdam
from kadam_edu.progress import bar as progress_bar
from kadam_edu.progress import enabled as progress_enabled
from kadam_edu.experiments.common import log_slope
from kadam_edu.scale import resolve_scale, with_overrides

__all__ = ["RareFeatureProblem", "BoundarySweep", "BOUNDARY_PRESETS", "LABELS", "boundary_settings", "boundary_sweep",
           "reference_log_slope", "label_grid"]


@dataclass(frozen=True)
class RareFeatureProblem:
    """Least squares with ``dense`` features in every batch and ``rare`` ones seen only early.

    Step n draws a batch of ``batch_size`` inputs x ~ N(0, I) (float64) and targets
    y = <w*, x> + noise; for n >= ``rare_until`` the rare columns are zero, so from then on
    the rare weights get exactly zero gradient and Adam's state for them only decays: the
    worst case of the discrete bound. The model is a linear map w (no bias) trained on the
    mean squared error with learning rate ``lr``; rare features stand for tokens or inputs
    that stop appearing (a character seen only at the start of a corpus, a dead unit).
    """

    dense: int = 8
    rare: int = 4
    batch_size: int = 16
    rare_until: int = 10
    noise: float = 0.1
    lr: float = 0.01

    def __post_init__(self):
        for name in ("dense", "rare", "batch_size", "rare_until"):
            validate.positive_int(name, getattr(self, name))
        for name in ("noise", "lr"):
            validate.finite_real(name, getattr(self, name), lo=0.0)

    def batches(self, steps: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The batches (x [batch, dense + rare], y [batch]) of steps 0..steps-1; the same for the same seed."""
        d = self.dense + self.rare
        gen = torch.Generator().manual_seed(seed)
        w_star = torch.randn(d, generator=gen, dtype=torch.float64)
        out = []
        for n in range(steps):
            x = torch.randn(self.batch_size, d, generator=gen, dtype=torch.float64)
            if n >= self.rare_until:
                x[:, self.dense:] = 0.0
            y = x @ w_star + self.noise * torch.randn(self.batch_size, generator=gen, dtype=torch.float64)
            out.append((x, y))
        return out

    def initial_weights(self, seed: int = 0) -> torch.Tensor:
        """The weights w [dense + rare] at step 0 (a leaf tensor that requires grad), float64."""
        gen = torch.Generator().manual_seed(10_000 + seed)
        return (0.1 * torch.randn(self.dense + self.rare, generator=gen, dtype=torch.float64)).requires_grad_()

    @staticmethod
    def gradient(w: torch.Tensor, batch) -> torch.Tensor:
        """Gradient of the mean squared error at w: (2 / batch) x^T (x w - y), computed in closed form."""
        x, y = batch
        with torch.no_grad():
            return (2.0 / x.shape[0]) * (x.T @ (x @ w - y))


def _quiet(fn, *args, **kwargs):
    """Call a student's function with numpy/python warnings silenced (they become values)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _reference_optimizer(params, *, beta, gamma, lr):
    """Adam at the paper's (beta, gamma) with eps = 0 (the bound's setting): the sweep's optimizer while
    the student's make_optimizer is not answered."""
    return KAdam(params, lr=lr, betas=(gamma, beta), eps=0.0)


#: A3 sweep settings per scale: a grid of betas x gammas, steps per run and the fit window.
#: The toy runs on the CPU at every scale (it is tiny, so a GPU would not speed it up): "gpu" is
#: the cpu grid, and "paper" only refines the grid.
BOUNDARY_PRESETS = {
    "smoke": dict(betas=(0.3, 0.5, 0.9), gammas=tuple(np.round(np.arange(0.40, 0.995, 0.03), 3)),
                  steps=120, window=(60, 120)),
    "cpu": dict(betas=(0.2, 0.35, 0.5, 0.65, 0.8, 0.9), gammas=tuple(np.round(np.arange(0.30, 0.995, 0.015), 3)),
                steps=300, window=(150, 300)),
    "paper": dict(betas=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                  gammas=tuple(np.round(np.arange(0.30, 0.998, 0.0075), 4)), steps=300, window=(150, 300)),
}
BOUNDARY_PRESETS["gpu"] = BOUNDARY_PRESETS["cpu"]


def boundary_settings(scale: str = "auto", **overrides) -> dict:
    """The A3 sweep settings for ``scale`` (see :data:`BOUNDARY_PRESETS`) with ``overrides`` (e.g.
    ``steps=600``; :func:`kadam_edu.scale.with_overrides`): betas [B] and gammas [G] as arrays,
    steps, window. The values are checked where they are used (:func:`boundary_sweep`)."""
    preset = with_overrides(BOUNDARY_PRESETS[resolve_scale(scale)], overrides, owner="boundary_settings")
    return dict(preset, betas=np.array(preset["betas"]), gammas=np.array(preset["gammas"]))


def reference_log_slope(mu, start: int, stop: int) -> float:
    """The library's slope of ln ||u_n||_inf over start <= n < stop (:func:`~kadam_edu.experiments.common.log_slope`,
    least squares on the finite positive values), nan where fewer than two remain: what the A3 checks
    compare a student's ``log_slope`` with."""
    slope = log_slope(mu, start, stop)
    return math.nan if slope is None else slope


@dataclass
class BoundarySweep:
    """Max-update trajectories of the rare-feature problem on a (beta, gamma) grid.

    betas [B], gammas [G]; max_updates [B, G, steps]: ||u_n||_inf per step (nan after a run
    stopped being finite); window: (start, stop), the steps to fit slopes on; settings: what
    the optimizer used (``betas_passed`` as given to KAdam for the first point, ``eps``,
    ``lr``, ``reference``: True when make_optimizer was not answered and the library's was used).
    """

    betas: np.ndarray
    gammas: np.ndarray
    max_updates: np.ndarray
    window: tuple[int, int]
    steps: int
    settings: dict = field(default_factory=dict)

    @property
    def gamma_spacing(self) -> float:
        """The largest gap between neighbouring gammas of the grid (the boundary's resolution)."""
        return float(np.max(np.diff(self.gammas))) if len(self.gammas) > 1 else 1.0

    def log_slopes(self, fn=None) -> np.ndarray:
        """Slope of ln ||u_n||_inf over the window, per grid point: ``fn(max_update, start, stop)``.

        With ``fn=None``, or while ``fn`` returns None (not answered), the library's
        least-squares fit is used (and a note printed). Returns [B, G] floats (nan: no fit).
        """
        start, stop = self.window
        out = np.full(self.max_updates.shape[:2], np.nan)
        if fn is not None:
            validate.student_function("log_slopes", fn, "log_slope(max_update, start, stop)")
            first = _quiet(fn, self.max_updates[0, 0].copy(), start, stop)
            if first is None:
                print("log_slope is not answered yet: using the library's least-squares fit for now, so that "
                      "the later tasks can run.")
                fn = None
        for i in range(len(self.betas)):
            for j in range(len(self.gammas)):
                mu = self.max_updates[i, j]
                if fn is None:
                    out[i, j] = reference_log_slope(mu, start, stop)
                else:
                    value = _quiet(fn, mu.copy(), start, stop)
                    out[i, j] = math.nan if value is None else float(value)
        return out

    def predicted_rates(self) -> tuple[np.ndarray, np.ndarray]:
        """(discrete, continuous) predicted slopes on the grid, [B, G] each:
        ``ln(gamma) - ln(beta)/2`` (signed) and ``-C/2`` (signed)."""
        B, G = np.meshgrid(self.betas, self.gammas, indexing="ij")
        with np.errstate(divide="ignore"):
            return np.log(G) - 0.5 * np.log(B), -0.5 * bounds.stability_constant(B, G)


def _check_grid(name, values, lo, hi, lo_closed=False) -> np.ndarray:
    """``values`` (a list or an array) as a float array [N], increasing, in (lo, hi) ([lo, hi) with
    ``lo_closed``); ValueError naming ``name`` otherwise."""
    arr = np.asarray(values, dtype=float).reshape(-1)
    ok = (arr >= lo if lo_closed else arr > lo) & (arr < hi)
    if arr.size == 0 or not np.all(ok) or np.any(np.diff(arr) <= 0):
        interval = f"{'[' if lo_closed else '('}{lo}, {hi})"
        raise ValueError(f"{name} must be a non-empty increasing list of numbers in {interval}; got {values!r}")
    return arr


def boundary_sweep(make_optimizer=None, *, betas, gammas, steps: int, window, seed: int = 0,
                   problem: RareFeatureProblem | None = None, progress: bool | None = False) -> BoundarySweep:
    """Train the rare-feature problem with Adam at every (beta, gamma) of the grid; record ||u_n||_inf.

    ``make_optimizer(params, *, beta, gamma, lr)`` builds the optimizer (a :class:`KAdam`, whose
    ``last_max_update`` is recorded). If it is None or returns None (not answered yet), the
    library's ``KAdam(params, lr=lr, betas=(gamma, beta), eps=0)`` is used and a note printed.
    ``window = (start, stop)`` with 0 <= start < stop <= steps: the steps where slopes are fitted.
    ``seed``: the batches and the initial weights (the same at every grid point). ``progress``: a bar
    over the grid points (:func:`kadam_edu.progress.bar`; None: on unless ``$KADAM_PROGRESS`` is "0").
    """
    betas = _check_grid("betas", betas, 0.0, 1.0)
    gammas = _check_grid("gammas", gammas, 0.0, 1.0, lo_closed=True)
    steps = validate.integer("steps", steps, lo=2)
    progress = progress_enabled(progress)
    try:
        start, stop = (int(w) for w in window)
    except (TypeError, ValueError):
        raise ValueError(f"window must be a pair (start, stop) of ints; got {window!r}") from None
    if not 0 <= start < stop <= steps:
        raise ValueError(f"window must satisfy 0 <= start < stop <= steps={steps}; got {window!r}")
    problem = problem or RareFeatureProblem()
    batches = problem.batches(steps, seed)

    use_reference = make_optimizer is None
    if not use_reference:
        validate.student_function("boundary_sweep", make_optimizer, "make_optimizer(params, *, beta, gamma, lr)")
        probe = make_optimizer([torch.zeros(1, dtype=torch.float64, requires_grad=True)],
                               beta=float(betas[0]), gamma=float(gammas[0]), lr=problem.lr)
        if probe is None:
            print("make_optimizer is not answered yet: this sweep uses the library's optimizer for now.")
            use_reference = True
        elif not isinstance(probe, KAdam):
            raise TypeError(f"make_optimizer must return a kadam_edu.KAdam (its last_max_update is what the sweep "
                            f"records); got {type(probe).__name__}")
    make = _reference_optimizer if use_reference else make_optimizer

    mu = np.full((len(betas), len(gammas), steps), np.nan)
    settings = {}
    bar = progress_bar(progress, total=len(betas) * len(gammas), desc="sweep")
    for i, b in enumerate(betas):
        for j, g in enumerate(gammas):
            w = problem.initial_weights(seed)
            opt = make([w], beta=float(b), gamma=float(g), lr=problem.lr)
            if not settings:
                group = opt.param_groups[0]
                settings = dict(betas_passed=tuple(float(x) for x in group["betas"]), first_point=(float(b), float(g)),
                                eps=float(group["eps"]), lr=float(group["lr"]), reference=use_reference,
                                levels=[tuple(lv) for lv in KAdam.group_levels(group)])
            for n, batch in enumerate(batches):
                w.grad = problem.gradient(w, batch)
                opt.step()
                value = opt.last_max_update
                if not math.isfinite(value):
                    break
                mu[i, j, n] = value
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return BoundarySweep(betas=betas, gammas=gammas, max_updates=mu, window=(start, stop), steps=steps,
                         settings=settings)


# ---- labels of the grid ------------------------------------------------------------------

#: What a grid point of the sweep is labelled (None while not answered).
LABELS = ("stable", "unstable")


def label_grid(sweep: BoundarySweep, labels) -> np.ndarray:
    """``labels[i][j]`` (of sweep.betas[i], sweep.gammas[j]) as an object array [B, G] of "stable",
    "unstable" or None: TypeError when ``sweep`` is not a :class:`BoundarySweep`, ValueError for
    another shape or another label."""
    if not isinstance(sweep, BoundarySweep):
        raise TypeError(f"sweep must be the BoundarySweep from boundary_sweep(...); got {type(sweep).__name__}")
    shape = (len(sweep.betas), len(sweep.gammas))
    try:
        arr = np.empty(shape, dtype=object)
        rows = list(labels)
        if len(rows) != shape[0] or any(len(list(r)) != shape[1] for r in rows):
            raise ValueError
        for i, row in enumerate(rows):
            for j, lab in enumerate(row):
                arr[i, j] = lab
    except (TypeError, ValueError):
        raise ValueError(f"labels must be a nested list with one row per beta and one entry per gamma, i.e. shape "
                         f"{shape}; got {_shape_of(labels)}") from None
    for lab in arr.flat:
        if lab is not None and lab not in LABELS:
            raise ValueError(f"each label must be 'stable' or 'unstable' (or None while not answered); got {lab!r}")
    return arr


def _shape_of(labels) -> str:
    """The shape of a nested list for a message: "2 rows of lengths [11]"."""
    try:
        rows = list(labels)
        return f"{len(rows)} rows of lengths {sorted({len(list(r)) for r in rows})}"
    except TypeError:
        return f"{type(labels).__name__}"

