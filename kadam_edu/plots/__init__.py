"""The book's figures, one module per part of the paper (as :mod:`kadam_edu.experiments`).

Every figure function takes a :class:`~kadam_edu.experiments.Result` and returns a matplotlib
Figure; :func:`plot` draws any result with the plot function its registry entry names
(``experiments.FIGURES[result.figure].plotter()``). The ``*_view`` functions draw a formula for the
values given, and drive the explorers of :mod:`kadam_edu.widgets`.

    common             the colour scale of C, a row of axes, :func:`region_map`
    stability          Section 3: fig1, fig3, fig9-fig12, bound_ratio, stability_view, curves_map
    scale_invariance   Sections 2 and 4.1: fig4, fig5, fig7, ode_vs_adam, kernel_view, norm_presets, norm_view
    kadam              Section 4.2: fig2, level_bounds, levels_view
    noise              Chapter 5: noise_sde, noise_batch_scaling, noise_stability, scaling_view
    edge_of_stability  Chapter 6: eos, eos_quadratic_view, EOS_QUADRATIC
    boundary           Assignment 3: plot_boundary
"""

from __future__ import annotations

from matplotlib.figure import Figure

from kadam_edu.plots.boundary import plot_boundary
from kadam_edu.plots.common import region_map
from kadam_edu.plots.edge_of_stability import EOS_QUADRATIC, eos, eos_quadratic_view
from kadam_edu.plots.kadam import fig2, level_bounds, levels_view
from kadam_edu.plots.noise import noise_batch_scaling, noise_sde, noise_stability, scaling_view
from kadam_edu.plots.scale_invariance import fig4, fig5, fig7, kernel_view, norm_presets, norm_view, ode_vs_adam
from kadam_edu.plots.stability import bound_ratio, curves_map, fig1, fig3, fig9, fig10, fig11, fig12, stability_view

__all__ = [
    "plot", "region_map",
    "fig1", "fig3", "fig9", "fig10", "fig11", "fig12", "bound_ratio", "stability_view", "curves_map",
    "fig4", "fig5", "fig7", "ode_vs_adam", "kernel_view", "norm_presets", "norm_view",
    "fig2", "level_bounds", "levels_view",
    "noise_sde", "noise_batch_scaling", "noise_stability", "scaling_view",
    "eos", "eos_quadratic_view", "EOS_QUADRATIC",
    "plot_boundary",
]


def plot(result) -> Figure:
    """The figure for any result: ``experiments.FIGURES[result.figure].plotter()(result)``;
    ValueError for a figure the registry does not hold."""
    from kadam_edu import experiments

    if result.figure not in experiments.FIGURES:
        raise ValueError(f"no plot for {result.figure!r}; plots exist for {sorted(experiments.FIGURES)}")
    return experiments.FIGURES[result.figure].plotter()(result)
