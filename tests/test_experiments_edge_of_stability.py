"""kadam_edu.experiments.edge_of_stability (Chapter 6): what the eos sweep shows while it runs.
Its results are tested in test_experiments_population.py (population) and test_settings.py."""

from unittest import mock

import pytest

from kadam_edu.experiments.edge_of_stability import eos


@pytest.mark.parametrize("population", [1, 3])
def test_eos_counts_every_run_s_steps_on_the_library_s_progress_bar(monkeypatch, population):
    """One bar (kadam_edu.progress.bar) for the shard's runs, alone or in a population."""
    monkeypatch.setattr("tqdm.auto.tqdm", tqdm := mock.MagicMock())
    eos("smoke", population=population, progress=True, steps=4, measure_every=2, lanczos_iters=2)
    runs = 3  # smoke: lrs [1e-3, 1e-2] full-batch, [1e-2] minibatch
    assert tqdm.call_count == 1 and tqdm.call_args.kwargs == dict(total=4 * runs, desc="eos", leave=False)
    assert sum(c.args[0] for c in tqdm.return_value.update.call_args_list) == 4 * runs
    assert tqdm.return_value.close.call_count == 1


def test_eos_shows_no_bar_when_progress_is_none_and_kadam_progress_is_0(monkeypatch):
    monkeypatch.setenv("KADAM_PROGRESS", "0")
    monkeypatch.setattr("tqdm.auto.tqdm", tqdm := mock.MagicMock())
    eos("smoke", population=1, steps=2, measure_every=2, lanczos_iters=2)
    assert not tqdm.called


def test_eos_refuses_a_progress_that_is_not_a_bool():
    with pytest.raises(ValueError, match="progress must be True or False; got 'yes'"):
        eos("smoke", progress="yes", steps=2, measure_every=2, lanczos_iters=2)
