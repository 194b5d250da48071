"""The figure of Assignment 3: the measured boundary of the rare-feature sweep
(:mod:`kadam_edu.experiments.boundary`) against C = 0 and gamma^2 = beta."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib import colors as mcolors
from matplotlib.figure import Figure

from kadam_edu.experiments.boundary import BoundarySweep, label_grid
from kadam_edu.plots.common import region_map

__all__ = ["plot_boundary"]


def plot_boundary(sweep: BoundarySweep, slopes=None, labels=None, estimates=None) -> Figure:
    """Two panels: (a) the (beta, gamma) grid coloured by measured slope, with your labels
    (filled: unstable, open: stable), your boundary estimates (stars), C = 0 and gamma^2 = beta;
    (b) measured slope against gamma for each beta, with both predictions.

    Any of ``slopes`` / ``labels`` / ``estimates`` may be None (not answered yet): that part is
    left out. Returns a matplotlib Figure.
    """
    if not isinstance(sweep, BoundarySweep):
        raise TypeError(f"sweep must be a BoundarySweep (from boundary_sweep); got {type(sweep).__name__}")
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    lo = (max(0.0, sweep.betas.min() - 0.05), max(0.0, sweep.gammas.min() - 0.02))
    hi = (min(1.0, sweep.betas.max() + 0.05), 1.0)
    region_map(ax, lo=lo, hi=hi)
    b = np.linspace(lo[0] + 1e-3, hi[0] - 1e-4, 200)
    ax.plot(b, 2 * b / (1 + b), color="k", lw=1.0, label="C = 0 (continuous)")
    B, G = np.meshgrid(sweep.betas, sweep.gammas, indexing="ij")
    if slopes is not None:
        s = np.asarray(slopes, dtype=float)
        lim = max(0.02, float(np.nanmax(np.abs(s))) if np.isfinite(s).any() else 0.02)
        norm = mcolors.TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim)
        arr = None if labels is None else label_grid(sweep, labels)
        if arr is None or all(lab is None for lab in arr.flat):
            sc = ax.scatter(B.ravel(), G.ravel(), c=s.ravel(), cmap="coolwarm", norm=norm, s=16, zorder=3,
                            label="not labelled yet")
        else:
            unstable, stable = arr == "unstable", arr == "stable"
            sc = ax.scatter(B[unstable], G[unstable], c=s[unstable], cmap="coolwarm", norm=norm, s=18, zorder=3,
                            label="labelled unstable")
            ax.scatter(B[stable], G[stable], facecolors="none", edgecolors="0.4", s=16, lw=0.6, zorder=3,
                       label="labelled stable")
            if (~unstable & ~stable).any():
                ax.scatter(B[~unstable & ~stable], G[~unstable & ~stable], marker="x", color="0.5", s=12, zorder=3,
                           label="no label")
        fig.colorbar(sc, ax=ax, label="measured slope of ln||u_n|| per step")
    else:
        ax.scatter(B.ravel(), G.ravel(), color="0.6", s=6, zorder=3, label="grid")
    if estimates:
        pts = [(float(k), float(v)) for k, v in estimates.items() if v is not None]
        if pts:
            ax.scatter(*zip(*pts), marker="*", s=140, color="gold", edgecolors="k", zorder=4, label="your boundary")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title("(a) measured slopes on the grid")
    disc, cont = sweep.predicted_rates()
    if slopes is not None:
        s = np.asarray(slopes, dtype=float)
        cmap = colormaps["viridis"]
        for i, beta in enumerate(sweep.betas):
            color = cmap(0.9 * i / max(1, len(sweep.betas) - 1))
            bx.plot(sweep.gammas, s[i], "o", ms=3, color=color, label=f"beta={beta:g}")
            bx.plot(sweep.gammas, np.maximum(0, disc[i]), "-", lw=1, color=color)
            bx.plot(sweep.gammas, np.maximum(0, cont[i]), ":", lw=1, color=color)
        bx.set_ylim(min(-0.02, float(np.nanmin(s)) - 0.005) if np.isfinite(s).any() else -0.02,
                    max(0.05, float(np.nanmax(s)) * 1.1) if np.isfinite(s).any() else 0.05)
        bx.plot([], [], "k-", lw=1, label="discrete: max(0, ln g - ln(b)/2)")
        bx.plot([], [], "k:", lw=1, label="continuous: max(0, -C)/2")
        bx.legend(fontsize=7, ncol=2)
    else:
        bx.text(0.5, 0.5, "no slopes yet", ha="center", va="center", transform=bx.transAxes)
    bx.axhline(0, color="0.7", lw=0.8)
    bx.set(xlabel=r"$\gamma$ (first moment)", ylabel="slope of ln||u_n|| per step",
           title="(b) measured slope (dots) against both laws")
    return fig
