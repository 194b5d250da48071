"""What every part of :mod:`kadam_edu.plots` shares: the colour scale of the stability constant C,
a row of axes, and the region map of the (beta, gamma) plane (Section 3.1)."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps, colors
from matplotlib.figure import Figure

from kadam_edu import bounds

__all__ = ["CMAP", "c_norm", "figure_row", "region_map"]

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
