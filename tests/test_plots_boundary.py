"""The figure of Assignment 3 (kadam_edu.plots.boundary.plot_boundary)."""

import pytest

from _assignment_answers import SWEEP_GRID, classify, estimate_boundary, log_slope, make_optimizer  # tests/
from kadam_edu.experiments.boundary import boundary_sweep
from kadam_edu.plots.boundary import plot_boundary


@pytest.fixture(scope="module")
def sweep():
    return boundary_sweep(make_optimizer, **SWEEP_GRID)


def test_plot_boundary_draws_with_or_without_answers(sweep):
    slopes = sweep.log_slopes(log_slope)
    labels = [[classify(s) for s in row] for row in slopes]
    for kwargs in [{}, dict(slopes=slopes), dict(slopes=slopes, labels=[[None] * 11] * 2),
                   dict(slopes=slopes, labels=labels, estimates=estimate_boundary(sweep.betas, sweep.gammas, labels))]:
        fig = plot_boundary(sweep, **kwargs)
        assert len(fig.axes) >= 2
    with pytest.raises(TypeError):
        plot_boundary("sweep")
