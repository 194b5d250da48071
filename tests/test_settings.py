"""Experiment settings, seeds and devices are checked before any work, with messages that name them."""

import re

import numpy as np
import pytest
import torch

from kadam_edu import experiments, sde
from kadam_edu.__main__ import main
from kadam_edu.experiments import FIGURES, common
from kadam_edu.scale import pick_device
from kadam_edu.validate import MAX_SEED, Check

NAMES = list(FIGURES)


class WorkStarted(Exception):
    """Raised by the patched entry points of every experiment's real work (data, training)."""


@pytest.fixture
def no_work(monkeypatch):
    """Make the first step of real work of every experiment raise WorkStarted."""
    def boom(*args, **kwargs):
        raise WorkStarted

    for name in NAMES:
        FIGURES[name].function()  # import its module
    from kadam_edu.experiments import edge_of_stability, kadam_cifar, level_bounds, noise, scale_invariance, stability

    monkeypatch.setattr(common, "load_shakespeare", boom)  # CharTask: fig1-12 (not fig2), level_bounds, eos
    monkeypatch.setattr(noise, "load_shakespeare", boom)  # noise_batch_scaling, noise_stability
    monkeypatch.setattr(sde, "adam_sde", boom)  # noise_sde
    monkeypatch.setattr(kadam_cifar, "load_images", boom)  # fig2
    for module in (common, edge_of_stability, kadam_cifar, level_bounds, noise, scale_invariance, stability):
        if hasattr(module, "train"):
            monkeypatch.setattr(module, "train", boom)


@pytest.mark.parametrize("name", NAMES)
def test_the_no_work_fixture_catches_every_experiment_s_work(name, no_work):
    """Without it the fail-fast tests below could pass for the wrong reason."""
    with pytest.raises(WorkStarted):
        experiments.reproduce(name, "smoke", progress=False)


# --------------------------------------------------------------------------- every key has a spec
@pytest.mark.parametrize("name", NAMES)
def test_every_preset_key_of_every_experiment_has_a_spec(name):
    FIGURES[name].function()
    presets = common.PRESETS[name]
    assert presets.figure == name
    keys = None
    for scale, preset in presets.items():
        assert set(preset) <= set(presets.spec), (name, scale, sorted(set(preset) - set(presets.spec)))
        assert keys is None or set(preset) == keys, (name, scale)  # every scale takes the same keys
        keys = set(preset)
        assert all(isinstance(presets.spec[k], Check) for k in preset)
        # the presets pass their own spec, unchanged
        got_scale, config = common.settings_for(presets, scale, {})
        assert got_scale == scale and config == preset
        assert [type(v) for v in config.values()] == [type(v) for v in preset.values()]
    assert set(presets.spec) == keys  # no spec for a key that no preset has


def test_a_preset_key_without_a_spec_is_refused_where_it_is_declared():
    with pytest.raises(ValueError, match=r"no spec for \['steps'\]"):
        common.Presets("test_figure_without_spec", {"smoke": {"steps": 3}}, spec={})
    assert "test_figure_without_spec" not in common.PRESETS


# --------------------------------------------------------------------------- bad values, one per kind
BAD = [
    ("fig1", "points", "abc", "a positive int"),
    ("fig1", "points", 0, "a positive int"),
    ("fig1", "points", 2.0, "a positive int"),
    ("fig1", "steps", -5, "a positive int"),
    ("fig1", "lr", 0.0, "a finite real > 0"),
    ("fig1", "lr", float("inf"), "a finite real > 0"),
    ("fig1", "lr", "fast", "a finite real > 0"),
    ("fig1", "beta_range", 5, r"a pair \(lo, hi\)"),
    ("fig1", "beta_range", (0.99, 0.95), r"a pair \(lo, hi\)"),
    ("fig1", "beta_range", (0.5, 1.0), r"a pair \(lo, hi\)"),
    ("fig1", "slope_half", 0, "a positive int"),
    ("fig1", "slope_half", -3, "a positive int"),
    ("fig1", "slope_at", "500", "int"),
    ("fig1", "model", "huge", "one of"),
    ("fig1", "batch_size", True, "a positive int"),
    ("fig3", "beta_range", [0.9], r"a pair \(lo, hi\)"),
    ("fig9", "warmup", -1, "a non-negative int"),
    ("fig9", "min_lr", -1e-4, ">= 0"),
    ("fig10", "eval_iters", 0, "a positive int"),
    ("fig12", "eval_every", 0, "a positive int"),
    ("fig2", "coupled", "yes", "True or False"),
    ("fig2", "ks", [0], "hold positive ints"),
    ("fig2", "ks", 3, "hold positive ints"),
    ("fig2", "strategies", ["cosine"], "be among"),
    ("fig2", "lrs", [], "non-empty list"),
    ("fig2", "lrs", [1e-3, float("nan")], "entry 1 is nan"),
    ("fig2", "weight_decays", [-1.0], ">= 0"),
    ("fig2", "min_lr_factor", 1.5, r"\[0, 1\]"),
    ("fig2", "n_train", 0, "None"),
    ("fig2", "data", "imagenet", "one of"),
    ("fig2", "model_overrides", [1], "a dict"),
    ("fig2", "warmup_epochs", "2", ">= 0"),
    ("fig4", "beta", 1.0, r"\(0, 1\)"),
    ("fig4", "gamma", -0.1, r"\[0, 1\)"),
    ("fig5", "params", 0, "a positive int"),
    ("fig7", "method", "rk4", "one of"),
    ("fig7", "substeps", 0, "a positive int"),
    ("fig7", "weight_decay", -0.1, ">= 0"),
    ("level_bounds", "k", 0, "a positive int"),
    ("level_bounds", "strategies", [], "be among"),
    ("eos", "tail", 0.0, r"\(0, 1\]"),
    ("eos", "arrive", -1, "> 0"),
    ("eos", "lrs", [0.0], "> 0"),
    ("eos", "lanczos_iters", 0, "a positive int"),
    ("noise_sde", "paths", 0, "a positive int"),
    ("noise_sde", "curvature", [1.0, -1.0], "> 0"),
    ("noise_sde", "horizon", 0, "> 0"),
    ("noise_sde", "theta0", [1.0, float("inf")], "finite"),
    ("noise_batch_scaling", "kappas", [1, 1.5], "positive ints"),
    ("noise_batch_scaling", "floor_seed", -1, "None"),
    ("noise_batch_scaling", "eps", -1e-8, ">= 0"),
    ("noise_stability", "fit_fraction", 0, r"\(0, 1\]"),
    ("noise_stability", "gpt_kappas", [0], "> 0"),
    ("noise_stability", "gpt_model", "tiny", "one of"),
    ("noise_stability", "toy_off_at", -1, "non-negative int"),
]


@pytest.mark.parametrize("name, key, value, rule", BAD, ids=[f"{n}-{k}-{v!r}" for n, k, v, _ in BAD])
def test_a_bad_setting_is_refused_before_any_work_naming_its_key(name, key, value, rule, no_work):
    with pytest.raises(ValueError, match=rf"^{name} setting {key} must ") as err:
        experiments.reproduce(name, "smoke", progress=False, **{key: value})
    assert re.search(rule, str(err.value)) and f"; got {value!r}" in str(err.value)


CROSS = [  # constraints between keys
    ("fig1", dict(slope_half=30), "slope_half"),  # slope_at = 25: n - half < 0
    ("fig1", dict(slope_at=39), "steps"),  # 39 + 5 >= 40 steps
    ("fig1", dict(steps=20), "slope_at"),
    ("fig1", dict(beta_range=(0.1, 0.2)), "beta_range"),  # off the curve
    ("fig9", dict(warmup=30), "warmup"),  # steps = 30
    ("fig11", dict(eval_every=31), "eval_every"),
    ("fig12", dict(eval_every=100), "eval_every"),
    ("fig2", dict(warmup_epochs=1), "warmup_epochs"),  # epochs = 1
    ("fig2", dict(data="synthetic", n_train=None), "n_train"),
    ("fig2", dict(model_overrides={"depth": 3}), "model_overrides"),
    ("fig5", dict(model_overrides={"nope": 1}), "model_overrides"),
    ("fig7", dict(model_overrides={"qk_norm": True, "dropout": 0.1}), "dropout 0"),
    ("eos", dict(measure_every=100), "measure_every"),
    ("eos", dict(lrs=[], minibatch_lrs=[]), "lrs"),
    ("level_bounds", dict(beta=1e-20), "level"),  # inverse_exp rounds the levels' beta to 0
    ("noise_sde", dict(lrs=[0.3, 0.1]), "horizon / lr^2"),  # 3 / 0.3^2 is not whole
    ("noise_sde", dict(lrs=[0.4, 0.2]), "too large"),  # c1 lr^2 > 1: a decay below 0
    ("noise_sde", dict(theta0=[1.0, 2.0, 3.0]), "theta0"),
    ("noise_batch_scaling", dict(kappas=[2, 4]), "kappas"),
    ("noise_batch_scaling", dict(kappas=[1, 32], samples=1536), "pushes gamma"),  # 1 - 32 * 0.05 < 0
    ("noise_batch_scaling", dict(samples=100), "multiple"),
    ("noise_stability", dict(beta=0.95, gamma=0.999), "B+"),
    ("noise_stability", dict(gpt_kappas=[1, 40]), "gpt_kappas"),  # 1 - 40 * 0.05 < 0
    ("noise_stability", dict(gpt_kappas=[0.1]), "gpt_base_batch"),  # batch round(2 * 0.1) = 0
    ("noise_stability", dict(toy_off_at=200), "toy_off_at"),  # toy_steps = 200
]


@pytest.mark.parametrize("name, overrides, match", CROSS, ids=[f"{n}-{o}" for n, o, _ in CROSS])
def test_constraints_between_settings_are_checked_before_any_work(name, overrides, match, no_work):
    with pytest.raises(ValueError, match=re.escape(match)):
        experiments.reproduce(name, "smoke", progress=False, **overrides)


def test_unknown_settings_are_still_listed(no_work):
    with pytest.raises(ValueError, match=r"unknown settings \['stepz'\]; this experiment takes \[.*'steps'"):
        experiments.reproduce("fig4", "smoke", stepz=3)


# --------------------------------------------------------------------------- seeds
BAD_SEEDS = ["0", -1, 2**63, 2**70, True, 1.5, None]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", BAD_SEEDS, ids=repr)
def test_a_bad_seed_is_refused_by_every_experiment_before_any_work(name, seed, no_work):
    with pytest.raises(ValueError, match="seed must be a non-negative int <= 2\\*\\*63 - 1"):
        FIGURES[name].function()("smoke", seed=seed, progress=False)
    with pytest.raises(ValueError, match=f"got {re.escape(repr(seed))}$"):
        experiments.reproduce(name, "smoke", seed=seed, progress=False)


def test_point_seeds_stay_in_range_and_unchanged_for_small_seeds():
    assert common.point_seed(3, 2) == 3 * 1_000_003 + 2
    for seed in (0, 12345, MAX_SEED // 1_000_003, MAX_SEED):
        for index in (0, 1, 10_000):
            assert 0 <= common.point_seed(seed, index) <= MAX_SEED
    assert len({common.point_seed(MAX_SEED, i) for i in range(100)}) == 100


def test_the_largest_seed_runs():
    r = experiments.reproduce("fig3", "smoke", seed=MAX_SEED, progress=False, points=2, steps=2)
    assert len(r.points) == 2 and r.provenance["seed"] == MAX_SEED


# --------------------------------------------------------------------------- devices
def test_a_device_that_is_not_here_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device 'cuda' was asked for but CUDA is not available here; "
                                         r"use 'cpu' or leave device unset"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="device 'cuda:1' was asked for but CUDA is not available here"):
        pick_device(torch.device("cuda:1"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"device 'cuda:2' was asked for but this machine has 2 CUDA devices "
                                         r"\(cuda:0 \.\. cuda:1\)"):
        pick_device("cuda:2")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device 'mps' was asked for but MPS is not available here"):
        pick_device("mps")
    for bad in ("gpu-please", 3.5, "meta"):
        with pytest.raises(ValueError, match="device must be"):
            pick_device(bad)
    assert pick_device("cpu") == torch.device("cpu")


def test_an_unavailable_device_fails_before_any_work(monkeypatch, no_work):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in NAMES:
        if name == "noise_sde":  # runs on the CPU in float64 whatever the device
            continue
        with pytest.raises(ValueError, match="CUDA is not available"):
            experiments.reproduce(name, "smoke", device="cuda", progress=False)


# --------------------------------------------------------------------------- reproduce and the CLI
def test_reproduce_refuses_an_unknown_name_listing_the_known_ones():
    for name in ("fig6", ["fig1"], None, 1):
        with pytest.raises(ValueError, match=r"unknown figure .*; choose one of \['fig1', 'fig2'.*'eos'\]"):
            experiments.reproduce(name, "smoke")


@pytest.mark.parametrize("args, says", [
    (["--set", "beta_range=5"], r"fig1 setting beta_range must be a pair .*; got 5$"),
    (["--set", "points=abc"], r"fig1 setting points must be a positive int .*; got 'abc'$"),
    (["--set", "slope_half=0"], r"fig1 setting slope_half must be a positive int .*; got 0$"),
    (["--set", "slope_half=-3"], r"fig1 setting slope_half must be a positive int .*; got -3$"),
    (["--set", "slope_half=30"], r"fig1 settings: .*need slope_half <= slope_at"),
    (["--seed", "-1"], r"seed must be a non-negative int .*; got -1$"),
    (["--device", "cuda"], r"device 'cuda' was asked for but CUDA is not available here"),
])
def test_cli_bad_settings_are_messages_not_tracebacks(args, says, tmp_path, capsys, monkeypatch, no_work):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out"
    assert main(["reproduce", "fig1", "--scale", "smoke", "--out", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(says, err, re.M) and err.startswith("error: ") and len(err.splitlines()) == 1, err


def test_finite_log_slope_refuses_a_window_that_is_no_window():
    values = np.exp(0.1 * np.arange(20))
    assert common.finite_log_slope(values, 10, 5) == pytest.approx(0.1)
    assert common.finite_log_slope(values, 17, 5) is None  # past the end: not measured
    for n, half in ((10, 0), (10, -3), (10, 2.5), (-1, 1), ("10", 1)):
        with pytest.raises(ValueError, match="half|n must"):
            common.finite_log_slope(values, n, half)


# --------------------------------------------------------------------------- the scales (issue 12)
def test_the_scales_are_smoke_cpu_gpu_paper():
    from kadam_edu.scale import SCALES

    assert SCALES == ("smoke", "cpu", "gpu", "paper")


def test_auto_is_gpu_with_cuda_cpu_without_and_paper_only_when_named(monkeypatch):
    from kadam_edu.scale import resolve_scale

    monkeypatch.delenv("KADAM_SCALE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_scale("auto") == "gpu" and resolve_scale(None) == "gpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_scale("auto") == "cpu"
    assert resolve_scale("paper") == "paper" and resolve_scale("gpu") == "gpu"  # named: used as given
    for env in ("paper", "gpu", "smoke"):  # KADAM_SCALE overrides auto, whatever the hardware
        monkeypatch.setenv("KADAM_SCALE", env)
        assert resolve_scale("auto") == env
        assert resolve_scale("cpu") == "cpu"
    monkeypatch.setenv("KADAM_SCALE", "huge")
    with pytest.raises(ValueError, match=r"KADAM_SCALE must be one of \('smoke', 'cpu', 'gpu', 'paper'\)"):
        resolve_scale("auto")
    with pytest.raises(ValueError, match=r"scale must be one of .*'gpu'.*; got 'tpu'"):
        resolve_scale("tpu")


def test_describe_names_every_scale():
    from kadam_edu.scale import describe

    line = describe("gpu", "cpu")
    assert line.startswith("scale: gpu | device: cpu") and "KADAM_SCALE=smoke|cpu|gpu|paper" in line


@pytest.mark.parametrize("name", NAMES)
def test_every_experiment_has_a_preset_at_every_scale_gpu_included(name):
    from kadam_edu.scale import SCALES

    FIGURES[name].function()
    presets = common.PRESETS[name]
    assert set(presets) == set(SCALES), (name, sorted(presets))
    assert common.settings_for(presets, "gpu", {})[1] == presets["gpu"]


def test_every_model_has_a_gpu_preset_between_cpu_and_paper():
    from kadam_edu.models import CIFARNet, CNN_PRESETS, GPT, GPT_PRESETS, count_parameters
    from kadam_edu.scale import SCALES

    assert set(GPT_PRESETS) == set(SCALES) and set(CNN_PRESETS) == set(SCALES)
    for presets, build in ((GPT_PRESETS, GPT), (CNN_PRESETS, CIFARNet)):
        with torch.device("meta"):
            sizes = {s: count_parameters(build(presets[s])) for s in ("cpu", "gpu", "paper")}
        assert sizes["cpu"] < sizes["gpu"] < sizes["paper"], sizes
    gpu = GPT_PRESETS["gpu"]
    assert (gpu.n_layer, gpu.n_head, gpu.n_embd, gpu.block_size) == (4, 4, 128, 128)
