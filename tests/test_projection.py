"""The projection every experiment prints before a long run (:class:`kadam_edu.scale.StepTimer`):
one line naming the experiment, the scale and the device, from the steps the experiment takes."""

import re

import numpy as np
import pytest

from kadam_edu.experiments.common import AUTO_MEMBERS_CPU

from kadam_edu import experiments
from kadam_edu.experiments.common import step_timer
from kadam_edu.scale import StepTimer, device_name

TIMED = [name for name in experiments.FIGURES if name != "noise_sde"]
DEFAULTS = StepTimer.__init__.__kwdefaults__  # the keyword defaults of the timer (min_seconds, clock, ...)


class Timers(list):
    """Every StepTimer made while a test runs, each counting its ticks."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.monkeypatch = monkeypatch

    def eager(self):
        """Timers print whatever the projected time (min_seconds 0)."""
        self.monkeypatch.setitem(DEFAULTS, "min_seconds", 0.0)

    def slow(self, seconds_per_step: float):
        """Timers read a clock on which every step takes ``seconds_per_step``."""
        self.monkeypatch.setitem(DEFAULTS, "clock", lambda: seconds_per_step * self[-1].ticks)


@pytest.fixture
def timers(monkeypatch):
    """The StepTimers the test makes (:class:`Timers`), each with ``ticks``: how often it ticked."""
    made = Timers(monkeypatch)
    init, tick = StepTimer.__init__, StepTimer.tick

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.ticks = 0
        made.append(self)

    def counting_tick(self):
        self.ticks += 1
        tick(self)

    monkeypatch.setattr(StepTimer, "__init__", recording_init)
    monkeypatch.setattr(StepTimer, "tick", counting_tick)
    return made


def projection_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "measured over" in line]


@pytest.mark.parametrize("name", TIMED)
def test_every_experiment_prints_one_projection_from_the_steps_it_takes(name, timers, capsys):
    timers.eager()
    experiments.reproduce(name, "smoke", progress=False)
    lines = projection_lines(capsys.readouterr().out)
    assert len(lines) == 1, lines
    assert re.match(rf"{name} at smoke scale: about \S+ \S+ on {re.escape(device_name('cpu'))}, "
                    r"measured over \d+ steps", lines[0]), lines[0]
    assert len(timers) == 1  # one projection for the whole experiment, every run and population included
    assert timers[0].ticks == timers[0].steps  # it projects the steps the experiment really takes


def test_noise_sde_has_no_step_loop_and_prints_no_projection(timers, capsys):
    timers.eager()
    experiments.reproduce("noise_sde", "smoke", progress=False)
    assert projection_lines(capsys.readouterr().out) == [] and timers == []


def test_eos_says_that_the_lanczos_measurements_come_on_top(timers, capsys):
    timers.eager()
    experiments.reproduce("eos", "smoke", progress=False)
    assert "Lanczos" in projection_lines(capsys.readouterr().out)[0]


@pytest.mark.parametrize("kwargs", [dict(shard="0/2"), dict(population=2), dict(shard="1/2", population=2)],
                         ids=["shard", "population", "shard+population"])
def test_a_sweep_projects_its_own_shard_and_populations(kwargs, timers, capsys):
    timers.eager()
    r = experiments.reproduce("fig1", "smoke", progress=False, **kwargs)
    (timer,) = timers
    assert timer.ticks == timer.steps
    populations = -(-len(r.points) // kwargs.get("population", AUTO_MEMBERS_CPU["gpt"]))  # "auto" off CUDA
    assert timer.steps == r.config["steps"] * populations
    assert len(projection_lines(capsys.readouterr().out)) == 1


@pytest.mark.parametrize("method", ["euler", "exp"])
def test_fig7_counts_every_gradient_evaluation_of_both_trajectories(method, timers):
    timers.eager()
    r = experiments.reproduce("fig7", "smoke", progress=False, method=method, substeps=3)
    (timer,) = timers
    assert timer.steps == timer.ticks == r.data["grad_evals"]["ode"] + r.data["grad_evals"]["adam"]


def test_a_long_run_prints_its_projection_with_progress_bars_off(timers, capsys):
    timers.slow(10.0)  # every step 10 s: the default threshold (30 s) is passed
    experiments.reproduce("fig3", "smoke", progress=False, population=1)
    lines = projection_lines(capsys.readouterr().out)
    assert timers[0].steps == 2 * 30  # two points of 30 steps, one at a time: 600 s
    assert lines == [f"fig3 at smoke scale: about 10 min on {device_name('cpu')}, measured over 10 steps"]


def test_a_short_run_prints_nothing(timers, capsys):
    experiments.reproduce("fig3", "smoke", progress=False)  # well under 30 s
    assert projection_lines(capsys.readouterr().out) == [] and len(timers) == 1


def test_the_timer_does_not_change_the_result(timers):
    quiet = experiments.reproduce("fig1", "smoke", progress=False)
    timers.eager()
    loud = experiments.reproduce("fig1", "smoke", progress=False)
    assert timers[-1].done and timers[0].seconds_per_step is not None
    assert quiet.arrays.keys() == loud.arrays.keys()
    for key in quiet.arrays:
        assert np.array_equal(quiet.arrays[key], loud.arrays[key]), key
    drop = lambda points: [{k: v for k, v in p.items() if k != "seconds"} for p in points]  # noqa: E731
    assert drop(quiet.points) == drop(loud.points)


@pytest.mark.parametrize("steps", [1, 2, 3, 8, 12, 13, 1000])
def test_step_timer_fits_its_measurement_into_a_short_run(steps, timers, capsys):
    timers.eager()
    timer = step_timer("fig2", "smoke", steps=steps, device="cpu")
    assert timer.steps == steps and timer.measure >= 1
    if steps >= 2:  # the last timed tick is the start of a step the run takes
        assert timer.skip + timer.measure <= steps - 1
    if steps >= 13:
        assert (timer.skip, timer.measure) == (2, 10)
    batches = timer.wrap(lambda n: n)
    assert [batches(n) for n in range(steps)] == list(range(steps))
    printed = projection_lines(capsys.readouterr().out)
    assert len(printed) == (steps >= 2)  # one step alone cannot be timed
    assert not printed or f"measured over {timer.measure} steps" in printed[0]


def test_a_shard_without_points_projects_nothing(timers, capsys):
    timers.eager()
    r = experiments.reproduce("fig1", "smoke", progress=False, shard="5/8")  # 3 points: none is point 5
    assert r.points == [] and projection_lines(capsys.readouterr().out) == []
    with pytest.raises(ValueError, match="steps"):
        step_timer("fig1", "smoke", steps=-1, device="cpu")
