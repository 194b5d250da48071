"""Section 4.1 experiments (fig4, fig5, fig7; App. G, K) at smoke scale."""

from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch

from kadam_edu.experiments import Result, scale_invariance
from kadam_edu.experiments.common import CharTask, char_gpt_run
from kadam_edu.experiments.scale_invariance import (
    FIG5,
    char_coarse_grained_run,
    coarse_grained_adam,
    fig4,
    fig5,
    fig7,
)


@pytest.fixture(scope="module")
def r4():
    return fig4("smoke", progress=False)


@pytest.fixture(scope="module")
def r5():
    return fig5("smoke", progress=False)


@pytest.fixture(scope="module")
def r7():
    return fig7("smoke", progress=False)


def test_fig4_shapes(r4):
    steps = r4.config["steps"]
    heads = len(r4.data["heads"])
    assert r4.figure == "fig4" and r4.scale == "smoke" and heads == 4  # 1 layer x 2 heads x (q, k)
    for setting in ("qk_norm", "no_qk_norm"):
        assert r4.arrays[f"{setting}/cosine"].shape == (heads, steps)
        assert r4.arrays[f"{setting}/cosine_current"].shape == (heads,)
        assert r4.arrays[f"{setting}/last_step_bound"].shape == (heads,)
        assert r4.arrays[f"{setting}/loss"].shape == (steps,)
        assert np.isfinite(r4.arrays[f"{setting}/cosine"]).all()
        assert np.abs(r4.arrays[f"{setting}/cosine"]).max() <= 1


def test_fig4_qk_norm_makes_the_gradient_orthogonal_to_the_weight(r4):
    qk, no = r4.data["qk_norm"], r4.data["no_qk_norm"]
    # Eq. 6 at W_N with its own gradient: exact up to float32 rounding (measured ~2e-8).
    assert qk["max_abs_cos_current"] < 1e-5
    assert no["max_abs_cos_current"] > 1e-2 > 1e3 * qk["max_abs_cos_current"]
    # With the last gradient taken before the last update, <W_{N-1}, g_{N-1}> = 0 leaves only
    # <W_N - W_{N-1}, g_{N-1}>: |cos| <= ||W_N - W_{N-1}|| / ||W_N|| (~eta ||u|| / ||W||, measured 0.011).
    cos_last = np.abs(r4.arrays["qk_norm/cosine"][:, -1])
    assert (cos_last <= r4.arrays["qk_norm/last_step_bound"] + 1e-6).all()
    assert qk["max_abs_cos_last"] < 0.05
    assert no["max_abs_cos_last"] > qk["max_abs_cos_last"]  # measured 0.155 vs 0.011


def test_fig5_shapes_and_a_small_effect_on_the_loss(r5):
    steps, k = r5.config["steps"], r5.config["params"]
    for name in ("adam", "coarse"):
        assert r5.arrays[f"{name}/theta"].shape == (steps + 1, k)
        assert r5.arrays[f"{name}/loss"].shape == (steps,)
    assert r5.arrays["times"].shape == (steps + 1,)
    assert np.array_equal(r5.arrays["adam/theta"][0], r5.arrays["coarse/theta"][0])  # same start
    assert len(set(r5.data["indices"])) == k and len(r5.data["params"]) == k
    assert 0 < r5.data["relative_difference"] < np.inf
    assert r5.data["final_loss"]["coarse"] == pytest.approx(r5.data["final_loss"]["adam"], rel=1e-2)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_coarse_grained_loop_without_coarse_graining_is_kadam(dropout):
    """Without coarse-graining the fig5 loop is KAdam(k=1) bit for bit (same batches, same dropout masks)."""
    config = dict(FIG5["smoke"], steps=6, model_overrides={"qk_norm": True, "dropout": dropout})
    task = CharTask(config, torch.device("cpu"))
    model, _ = char_gpt_run(task, beta=config["beta"], gamma=config["gamma"], seed=3, progress=False)
    expected = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    _, plain, _ = char_coarse_grained_run(task, seed=3, coarse_grain=False, progress=False)
    assert plain.theta.shape == (7, expected.numel())
    assert torch.equal(plain.theta[-1], expected)
    _, coarse, _ = char_coarse_grained_run(task, seed=3, coarse_grain=True, progress=False)
    assert torch.equal(coarse.theta[0], plain.theta[0]) and not torch.equal(coarse.theta[-1], expected)


def test_coarse_grained_first_step_normalizes_by_the_block_rms():
    """Assumption 2: inside a block the first update is g / rms_W(g) (not sign(g)); outside it, sign(g)."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 4, bias=False)
    A = torch.randn(4, 3)
    block = SimpleNamespace(param=layer.weight, rows=slice(0, 2))
    W0 = layer.weight.detach().clone()
    traj, loss = coarse_grained_adam(layer, lambda n: None, lambda m, b: (A * m.weight).sum(), steps=1, lr=0.1,
                                     beta=0.999, gamma=0.9, blocks=[block])
    assert traj.theta.shape == (2, 12) and loss.shape == (1,)
    step = (W0 - layer.weight.detach()) / 0.1
    rms = A[:2].pow(2).mean().sqrt()
    torch.testing.assert_close(step[:2], A[:2] / rms)
    torch.testing.assert_close(step[2:], A[2:].sign())
    torch.testing.assert_close(traj.theta[1], layer.weight.detach().reshape(-1))


def _linear_problem(seed=0):
    """A 4 x 3 linear layer, a block of its first two rows and a linear loss (A * W).sum()."""
    torch.manual_seed(seed)
    layer = torch.nn.Linear(3, 4, bias=False)
    A = torch.randn(4, 3)
    return layer, SimpleNamespace(param=layer.weight, rows=slice(0, 2)), lambda m, b: (A * m.weight).sum()


def test_coarse_grained_adam_takes_eq1_s_bias_correction_from_optim(monkeypatch):
    """c_n is kadam_edu.optim.bias_correction(n, beta=beta, gamma=gamma), the one definition."""
    calls = []
    real = scale_invariance.bias_correction

    def spy(n, *, beta, gamma):
        calls.append((n, beta, gamma))
        return real(n, beta=beta, gamma=gamma)

    monkeypatch.setattr(scale_invariance, "bias_correction", spy)
    layer, block, loss = _linear_problem()
    coarse_grained_adam(layer, lambda n: None, loss, steps=3, lr=0.1, beta=0.99, gamma=0.8, blocks=[block])
    assert calls == [(0, 0.99, 0.8), (1, 0.99, 0.8), (2, 0.99, 0.8)]


def test_coarse_grained_adam_shows_the_library_s_progress_bar(monkeypatch):
    """progress: True/False, or None for $KADAM_PROGRESS (kadam_edu.progress); anything else is refused
    before the first step."""
    layer, block, loss = _linear_problem()
    w0 = layer.weight.detach().clone()
    with pytest.raises(ValueError, match="progress must be True or False"):
        coarse_grained_adam(layer, lambda n: None, loss, steps=2, lr=0.1, beta=0.99, gamma=0.8, blocks=[block],
                            progress="yes")
    assert torch.equal(layer.weight, w0)
    for env, progress, shown in (("1", None, True), ("0", None, False), ("0", True, True), ("1", False, False)):
        monkeypatch.setenv("KADAM_PROGRESS", env)
        monkeypatch.setattr("tqdm.auto.tqdm", tqdm := mock.MagicMock())
        coarse_grained_adam(layer, lambda n: None, loss, steps=2, lr=0.1, beta=0.99, gamma=0.8, blocks=[block],
                            progress=progress, desc="coarse")
        assert tqdm.called == shown, (env, progress)
        if shown:
            assert tqdm.call_args.kwargs == dict(total=2, desc="coarse", leave=False)
            assert tqdm.return_value.update.call_count == 2 and tqdm.return_value.close.call_count == 1


def test_fig7_counts_gradient_evaluations_on_the_library_s_progress_bar(monkeypatch):
    with pytest.raises(ValueError, match="progress must be True or False"):
        fig7("smoke", progress="yes", steps=2)
    monkeypatch.setattr("tqdm.auto.tqdm", tqdm := mock.MagicMock())
    r = fig7("smoke", progress=True, steps=2)
    assert tqdm.call_args.kwargs == dict(total=None, desc="fig7 gradient evaluations", leave=False)
    assert tqdm.return_value.update.call_count == sum(r.data["grad_evals"].values())
    assert tqdm.return_value.close.call_count == 1


def test_fig7_shapes_and_errors(r7):
    steps, k = r7.config["steps"], r7.config["params"]
    heads = len(r7.data["heads"])
    assert r7.arrays["ode/theta"].shape == r7.arrays["adam/theta"].shape == (steps + 1, k)
    assert r7.arrays["times"].shape == (steps + 1,)
    assert heads == 4  # the smoke model has only 4 query/key heads
    for key in ("true", "eq12", "eq8"):
        assert r7.arrays[f"norms/{key}"].shape == (heads, steps + 1)
    assert np.array_equal(r7.arrays["ode/theta"][0], r7.arrays["adam/theta"][0])
    assert r7.data["method"] == "exp" and r7.data["substeps"] == 2
    assert r7.data["grad_evals"]["adam"] == steps and r7.data["grad_evals"]["ode"] > steps
    # Eq. 12 is exact up to O(eta^2) terms for the discrete trajectory (measured 1e-5 of ||W||^2,
    # 1e-4 of its change); Eq. 8 drops <W, u_W> and misses most of the change (measured 0.9).
    assert r7.data["eq12_max_relative_error"] < 1e-3
    assert r7.data["eq12_error_vs_change"] < 1e-2
    assert r7.data["eq8_error_vs_change"] > r7.data["eq12_error_vs_change"]
    assert 0 < r7.data["ode_relative_error"] < 0.5  # measured 0.06 over 20 steps


def test_round_trip(r4, r5, r7, tmp_path):
    for r in (r4, r5, r7):
        r.save(tmp_path)
        back = Result.load(tmp_path, figure=r.figure)
        assert (back.figure, back.scale, back.config) == (r.figure, r.scale, r.config)
        assert back.data == r.data
        assert back.arrays.keys() == r.arrays.keys()
        for key in r.arrays:
            assert np.array_equal(back.arrays[key], r.arrays[key]), key
        assert back.provenance["seed"] == 0 and back.provenance["scale"] == "smoke"


@pytest.mark.parametrize("fig", [fig4, fig5, fig7])
def test_bad_input(fig):
    with pytest.raises(ValueError, match="unknown settings"):
        fig("smoke", progress=False, stepz=3)
    with pytest.raises(ValueError, match="not a sweep"):
        fig("smoke", progress=False, shard="0/2")


def test_fig7_refuses_dropout():
    with pytest.raises(ValueError, match="dropout 0"):
        fig7("smoke", progress=False, model_overrides={"qk_norm": True, "dropout": 0.1})
