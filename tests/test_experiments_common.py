"""kadam_edu.experiments.common: the log-max-update slope (one least-squares fit for Fig. 1b,
Chapter 5 and Assignment 3), preset merging, and the char-GPT runs every char experiment trains
through."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from kadam_edu.experiments import common, noise
from kadam_edu.experiments.common import CharTask, char_gpt_population_run, char_gpt_run
from kadam_edu.models import GPTConfig, gpt_config

RNG = np.random.default_rng(0)
#: log max-updates with a clear trend: slope 0.05 plus noise of 0.01 (the kind fig1 and noise_stability fit)
NOISY = np.exp(0.3 + 0.05 * np.arange(200) + 0.01 * RNG.standard_normal(200))


# --------------------------------------------------------------------------- the log slope
def test_log_slope_is_the_least_squares_slope_of_the_log():
    grow = 2.5 * np.exp(0.07 * np.arange(50))
    assert common.log_slope(grow) == pytest.approx(0.07, rel=1e-12)
    assert common.log_slope(grow, 10, 30) == pytest.approx(0.07, rel=1e-12)
    assert common.log_slope(grow, 3, every=7) == pytest.approx(0.07, rel=1e-12)
    # log values 0, 1, 0, 1 at n = 0..3: sum((n - 1.5)(y - 0.5)) / sum((n - 1.5)^2) = 1 / 5
    assert common.log_slope(np.exp([0.0, 1.0, 0.0, 1.0])) == pytest.approx(0.2, rel=1e-12)
    assert common.log_slope([1.0, math.e]) == pytest.approx(1.0, rel=1e-12)  # a list will do
    assert isinstance(common.log_slope(grow), float)


def test_log_slope_fits_only_the_finite_positive_values_of_its_window():
    clean = np.exp(np.array([0.0, 1.0, 0.0, 1.0]))
    holed = np.array([7.0, clean[0], np.nan, clean[1], 0.0, -2.0, clean[2], np.inf, clean[3], 9.0])
    kept = [1, 3, 6, 8]  # the positions of clean's values
    expected = np.polyfit(kept, np.log(holed[kept]), 1)[0]
    assert common.log_slope(holed, 1, 9) == pytest.approx(expected, rel=1e-12)
    # the window is range(start, stop, every): 9 is left out above, in here
    assert common.log_slope(holed, 1) != pytest.approx(expected, rel=1e-3)
    # past the end of the values: the window just ends there
    assert common.log_slope(holed, 1, 1000) == common.log_slope(holed, 1)


@pytest.mark.parametrize("values, kwargs", [
    ([2.0], {}),  # one value: no slope
    ([], {}),
    (np.full(5, np.nan), {}),
    ([1.0, 0.0, -1.0, np.inf], {}),  # nothing finite and positive but one value
    (np.exp(np.arange(10.0)), dict(start=10)),  # the window starts past the end
    (np.exp(np.arange(10.0)), dict(start=4, stop=4)),  # an empty window
    (np.exp(np.arange(10.0)), dict(start=8, least=3)),  # two values where three are asked for
    (np.exp(np.arange(10.0)), dict(start=2, stop=10, every=5, least=3)),
])
def test_log_slope_is_none_when_too_few_values_remain(values, kwargs):
    assert common.log_slope(values, **kwargs) is None


@pytest.mark.parametrize("args, kwargs, says", [
    ((NOISY, -1), {}, "start must be a non-negative int; got -1"),
    ((NOISY, 1.5), {}, "start must"),
    ((NOISY, True), {}, "start must"),
    ((NOISY, 5, 4), {}, "stop must be None or an int >= 5; got 4"),
    ((NOISY, 0, 2.0), {}, "stop must"),
    ((NOISY,), dict(every=0), "every must be a positive int; got 0"),
    ((NOISY,), dict(least=1), "least must be an int >= 2"),
    ((NOISY,), dict(least=2.0), "least must"),
    ((np.ones((3, 3)),), {}, r"values must be a 1-D sequence of real numbers .*; got an array of shape \(3, 3\)"),
    ((["a", "b"],), {}, "values must be a 1-D sequence of real numbers"),
    ((3.0,), {}, "values must be a 1-D sequence"),
    ((np.array([1 + 1j, 2 + 0j]),), {}, "values must be a 1-D sequence of real numbers"),
])
def test_log_slope_refuses_bad_arguments(args, kwargs, says):
    with pytest.raises(ValueError, match=says):
        common.log_slope(*args, **kwargs)


def _old_finite_log_slope(values, n, half):
    """common.finite_log_slope before it called log_slope (Fig. 1b's centered difference)."""
    if n + half >= len(values) or n - half < 0:
        return None
    a, b = values[n - half], values[n + half]
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
        return None
    return float((math.log(b) - math.log(a)) / (2 * half))


def _old_fitted_log_slope(values, start):
    """noise.fitted_log_slope before it called log_slope."""
    values = np.asarray(values, dtype=float)
    n = np.arange(len(values))
    keep = (n >= start) & np.isfinite(values) & (values > 0)
    return None if keep.sum() < 3 else float(np.polyfit(n[keep], np.log(values[keep]), 1)[0])


def _old_reference_log_slope(mu, start, stop):
    """assignments._reference_log_slope (Assignment 3's reference fit), as it stands."""
    mu = np.asarray(mu, dtype=float)
    n = np.arange(len(mu))
    keep = (n >= start) & (n < stop) & np.isfinite(mu) & (mu > 0)
    if keep.sum() < 2:
        return math.nan
    x, y = n[keep], np.log(mu[keep])
    x = x - x.mean()
    return float(np.sum(x * (y - y.mean())) / np.sum(x * x))


HOLED = NOISY.copy()
HOLED[[3, 50, 51, 120]] = [np.nan, 0.0, np.inf, -1.0]


@pytest.mark.parametrize("values", [NOISY, HOLED], ids=["noisy", "holed"])
def test_the_three_old_slopes_are_log_slope(values):
    """A two-point least-squares fit is the centered difference; all agree to 1e-12 (relative)."""
    for n, half in ((5, 5), (25, 5), (51, 1), (100, 40), (150, 49), (195, 5), (3, 4)):
        old, new = _old_finite_log_slope(values, n, half), common.finite_log_slope(values, n, half)
        assert (old is None) == (new is None), (n, half)
        if old is not None:
            assert new == pytest.approx(old, rel=1e-12, abs=0), (n, half)
    for start in (0, 3, 50, 100, 197, 198, 250):
        old, new = _old_fitted_log_slope(values, start), noise.fitted_log_slope(values, start)
        assert (old is None) == (new is None), start
        if old is not None:
            assert new == pytest.approx(old, rel=1e-12, abs=0), start
    for start, stop in ((0, 200), (60, 120), (50, 52), (120, 122), (190, 400)):
        old, new = _old_reference_log_slope(values, start, stop), common.log_slope(values, start, stop)
        assert (new is None) == math.isnan(old)
        if new is not None:
            assert new == old  # the same arithmetic: bit for bit


def test_finite_and_fitted_log_slope_are_log_slope_windows():
    assert common.finite_log_slope(NOISY, 25, 5) == common.log_slope(NOISY, 20, 31, every=10)
    assert noise.fitted_log_slope(NOISY, 100) == common.log_slope(NOISY, 100, least=3)
    assert common.finite_log_slope(NOISY, 3, 5) is None  # the window starts before step 0


# --------------------------------------------------------------------------- presets and overrides
def test_with_overrides_keeps_the_preset_s_keys_in_order_and_the_preset_intact():
    preset = {"model": "cpu", "steps": 100, "lr": 1e-3}
    out = common.with_overrides(preset, {"lr": 3e-3, "model": "smoke"})
    assert list(out.items()) == [("model", "smoke"), ("steps", 100), ("lr", 3e-3)]
    assert preset == {"model": "cpu", "steps": 100, "lr": 1e-3} and out is not preset
    assert common.with_overrides(preset, {}) == preset


def test_with_overrides_refuses_a_key_the_preset_lacks_naming_every_key():
    with pytest.raises(ValueError, match=r"unknown settings \['stepz'\]; this experiment takes \['lr', 'steps'\]"):
        common.with_overrides({"steps": 1, "lr": 0.1}, {"stepz": 3, "lr": 0.2})
    with pytest.raises(ValueError, match=r"unknown GPTConfig field\(s\) \['n_layers'\]; GPTConfig takes \[.*'n_layer'"):
        common.with_overrides(gpt_config("smoke"), {"n_layers": 2}, what="GPTConfig field(s)", owner="GPTConfig")


def test_with_overrides_replaces_the_fields_of_a_dataclass_preset():
    """What models.gpt_config / cnn_config do with their frozen config presets."""
    base = gpt_config("smoke")
    out = common.with_overrides(base, {"n_layer": 3, "dropout": 0.0}, what="GPTConfig field(s)", owner="GPTConfig")
    assert isinstance(out, GPTConfig) and out == dataclasses.replace(base, n_layer=3, dropout=0.0)
    with pytest.raises(ValueError, match="n_embd"):  # the dataclass's own __post_init__ checks the values
        common.with_overrides(base, {"n_head": 7})
    with pytest.raises(TypeError, match="preset must be a dict or a dataclass instance; got list"):
        common.with_overrides([1, 2], {})
    with pytest.raises(TypeError, match="overrides must be a dict"):
        common.with_overrides({"a": 1}, [("a", 2)])


# --------------------------------------------------------------------------- the char-GPT runs
def _task(**config):
    return CharTask(dict(dict(model="smoke", model_overrides={"dropout": 0.0}, batch_size=2, lr=1e-3, steps=3),
                         **config), torch.device("cpu"))


def _optimizers(monkeypatch):
    """The keyword arguments of every KAdam the char-GPT runs build."""
    made = []

    class Recording(common.KAdam):
        def __init__(self, params, **kwargs):
            made.append(kwargs)
            super().__init__(params, **kwargs)

    monkeypatch.setattr(common, "KAdam", Recording)
    return made


def test_char_gpt_run_takes_eps_and_weight_decay_from_the_task_and_kadam_s_defaults_otherwise(monkeypatch):
    made = _optimizers(monkeypatch)
    char_gpt_run(_task(), beta=0.999, gamma=0.9, seed=0, progress=False)
    char_gpt_run(_task(eps=1e-8, weight_decay=0.1), beta=0.999, gamma=0.9, seed=0, progress=False)
    assert made == [dict(lr=1e-3, betas=(0.9, 0.999)),
                    dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.1, eps=1e-8)]


def test_char_gpt_run_evaluates_with_the_eval_fn_it_is_given():
    seen = []

    def evaluate(model):
        seen.append(model.training)
        return 1.5

    _, rec = char_gpt_run(_task(eval_every=1), beta=0.999, gamma=0.9, seed=0, eval_fn=evaluate, progress=False)
    assert seen == [False] * 3 and list(rec.eval_loss) == [1.5] * 3 and list(rec.eval_steps) == [1, 2, 3]


def test_a_population_member_with_its_own_lr_is_that_run_alone(monkeypatch):
    """lrs: member e trains at lrs[e] (and the task's eps), as char_gpt_run does with that lr."""
    made = _optimizers(monkeypatch)
    _, records = char_gpt_population_run(_task(eps=1e-8), betas=[0.999, 0.99], gammas=[0.9, 0.8], seeds=[1, 2],
                                         lrs=[1e-3, 1e-2], progress=False)
    assert made[0]["eps"] == 1e-8 and torch.equal(made[0]["lr"], torch.tensor([1e-3, 1e-2], dtype=torch.float64))
    for e, (beta, gamma, seed, lr) in enumerate([(0.999, 0.9, 1, 1e-3), (0.99, 0.8, 2, 1e-2)]):
        _, alone = char_gpt_run(_task(eps=1e-8, lr=lr), beta=beta, gamma=gamma, seed=seed, progress=False)
        np.testing.assert_allclose(records[e].loss, alone.loss, rtol=1e-5)
        np.testing.assert_allclose(records[e].max_update, alone.max_update, rtol=1e-4)
    _, shared = char_gpt_population_run(_task(), betas=[0.999, 0.99], gammas=[0.9, 0.8], seeds=[1, 2], progress=False)
    assert made[-1]["lr"] == 1e-3 and "eps" not in made[-1]  # without lrs: the task's lr, KAdam's eps


def test_the_noise_experiments_train_through_char_gpt_run(monkeypatch):
    calls = []
    real = noise.char_gpt_run

    def spy(task, **kwargs):
        calls.append((task.config["batch_size"], task.config["steps"], task.config["eps"], task.config["lr"]))
        return real(task, **kwargs)

    monkeypatch.setattr(noise, "char_gpt_run", spy)
    r = noise.scaling_stability("smoke", progress=False, gpt_kappas=[1, 4], gpt_steps=4, toy_kappas=[1])
    assert [c[:2] for c in calls] == [(2, 4), (8, 4)]  # gpt_base_batch * kappa
    assert [c[2] for c in calls] == pytest.approx([1e-30, 5e-31], rel=1e-12)  # eps / sqrt(kappa)
    assert [c[3] for c in calls] == [p["lr"] for p in r.points if p["model"] == "gpt"]
    calls.clear()
    noise.batch_scaling("smoke", population=1, progress=False, kappas=[1, 2], samples=32, evals=2, floor_seed=None)
    assert [c[:2] for c in calls] == [(2, 16), (4, 8), (4, 8)]  # kappa 1, then sqrt and linear at kappa 2
