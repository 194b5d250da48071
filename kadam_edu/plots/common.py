"""What every part of :mod:`kadam_edu.plots` shares: the colour scale of the stability constant C,
a row of axes, the region map of the (beta, gamma) plane (Section 3.1), and the seeds of a result.

A multi-seed result (``experiments.reproduce(name, seeds=S)``) holds one point summary per (seed,
grid point). Its plots draw trajectories of the first seed only (:func:`first_seed`: the panel
says which) and a statistic per grid point as the median over the seeds with a bar from the
lowest to the highest seed (:func:`seed_summaries`, :func:`draw_over_seeds`). A single-seed
result, or one written before seeds (no ``"seed"`` keys), draws as it always did."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps, colors
from matplotlib.figure import Figure

from kadam_edu import bounds

__all__ = ["CMAP", "c_norm", "figure_row", "region_map", "seed_points", "seed_grid", "first_seed", "seed_summaries",
           "draw_over_seeds", "over_seeds"]

#: Colours of C(beta, gamma): blue for B+ (C > 0), red for B- (C < 0).
CMAP = colormaps["coolwarm_r"]


def c_norm(cs) -> colors.Normalize:
    """A colour scale for the values ``cs`` of C, centred on C = 0 (white) and symmetric about it."""
    lim = max(1e-3, float(np.max(np.abs(cs)))) if len(cs) else 1.0
    return colors.TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim)


def figure_row(ncols: int, width: float = 4.6, height: float = 3.6) -> tuple[Figure, list]:
    """A Figure with one row of ``ncols`` axes, each ``width`` x ``height`` inches; returns (fig, axes)."""
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, list(np.atleast_1d(fig.subplots(1, ncols)))


def region_map(ax, betas=None, gammas=None, cs=None, *, lo=(0.0, 0.0), hi=(1.0, 1.0), label=None):
    """Shade B- on the (beta, gamma) plane, draw B0 (C = 0) and the discrete boundary gamma^2 = beta,
    and optionally scatter points coloured by C."""
    b = np.linspace(max(lo[0], 1e-3), min(hi[0], 0.99999), 400)
    g = np.linspace(lo[1], min(hi[1], 0.99999), 400)
    B, G = np.meshgrid(b, g)
    C = bounds.stability_constant(B, G)
    ax.contourf(B, G, C, levels=[-np.inf, 0.0], colors=["#f4cccc"])
    ax.contour(B, G, C, levels=[0.0], colors="k", linewidths=1.0)
    ax.plot(b, np.sqrt(b), color="k", ls=":", lw=1.0, label=r"$\gamma^2=\beta$ (discrete)")
    if betas is not None:
        sc = ax.scatter(betas, gammas, c=cs, cmap=CMAP, norm=c_norm(cs), s=18, zorder=3, label=label,
                        edgecolors="0.3", linewidths=0.4)  # pale points near C = 0 stay visible
        ax.figure.colorbar(sc, ax=ax, label=r"$C(\beta,\gamma)$")
    ax.set(xlabel=r"$\beta$ (second moment)", ylabel=r"$\gamma$ (first moment)",
           xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]))
    ax.text(0.03, 0.95, r"$\mathcal{B}_-$", transform=ax.transAxes, va="top", color="#a33")
    ax.text(0.85, 0.05, r"$\mathcal{B}_+$", transform=ax.transAxes, color="#336")
    return ax


# --------------------------------------------------------------------------- seeds
def seed_points(result) -> dict[int, list[dict]]:
    """The result's point summaries by seed, ``{seed: [summary, ...]}``: seeds in the order of
    ``data["seeds"]`` (else of first appearance), each list in the result's order. A summary
    without ``"seed"`` (written before seeds) is ``provenance["seed"]``'s (0 when that is missing)."""
    legacy = (getattr(result, "provenance", None) or {}).get("seed") or 0
    groups: dict[int, list[dict]] = {s: [] for s in (getattr(result, "data", None) or {}).get("seeds") or []}
    for p in result.points:
        groups.setdefault(legacy if p.get("seed") is None else p["seed"], []).append(p)
    return {s: points for s, points in groups.items() if points}


def seed_grid(result) -> list[dict[int, dict]]:
    """Per grid point, in grid order, ``{seed: summary}`` over the seeds that hold it; the grid
    point is the summary's ``"point"``, else its position among its seed's summaries."""
    grid: dict[int, dict[int, dict]] = {}
    for s, points in seed_points(result).items():
        for i, p in enumerate(points):
            grid.setdefault(i if p.get("point") is None else p["point"], {})[s] = p
    return [grid[k] for k in sorted(grid)]


def first_seed(result) -> tuple[list[dict], str]:
    """The first seed's point summaries, and the words a trajectory panel's title ends with:
    "" for one seed, else " (seed 0 of 3)" (" (seed 5, first of 3)" for seeds other than 0..S-1)."""
    groups = seed_points(result)
    seeds = list(groups)
    if len(seeds) <= 1:
        return (groups[seeds[0]] if seeds else []), ""
    which = f"seed {seeds[0]} of {len(seeds)}" if seeds == list(range(len(seeds))) else \
        f"seed {seeds[0]}, first of {len(seeds)}"
    return groups[seeds[0]], f" ({which})"


def over_seeds(result) -> str:
    """The words a summary's legend label ends with: "" for one seed, else " (median; bar: range
    over 3 seeds)"."""
    n = len(seed_points(result))
    return "" if n <= 1 else f" (median; bar: range over {n} seeds)"


def seed_summaries(grid, value) -> list:
    """Per grid point of ``grid`` (:func:`seed_grid`), the
    :class:`~kadam_edu.experiments.analysis.SeedSummary` of ``value(summary)`` over its seeds
    (None: no value in that seed)."""
    from kadam_edu.experiments.analysis.seeds import summarise

    return [summarise({s: value(p) for s, p in per_seed.items()}) for per_seed in grid]


def draw_over_seeds(ax, x, summaries, fmt, **kwargs):
    """A statistic per x: with one seed, its values as ``ax.plot(x, values, fmt, **kwargs)`` (NaN
    where it has none); with several, the medians as ``ax.errorbar`` with a bar from the lowest
    to the highest seed (finite values only). Returns what the Axes method returns."""
    if all(s.total <= 1 for s in summaries):
        return ax.plot(x, np.array([s.values[0] if s.total else np.nan for s in summaries]), fmt, **kwargs)
    med = np.array([s.median for s in summaries])
    lo, hi = np.array([s.lo for s in summaries]), np.array([s.hi for s in summaries])
    return ax.errorbar(x, med, yerr=np.vstack([med - lo, hi - med]), fmt=fmt, capsize=3, **kwargs)
