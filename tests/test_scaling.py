"""kadam_edu.scaling (square-root and linear rules, the rule in the stability picture) and the
Chapter 5 experiments in kadam_edu.experiments.noise at a tiny scale.

Notation: beta = second-moment decay, gamma = first-moment decay (the paper's).
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from kadam_edu import bounds, plots, scaling, sde
from kadam_edu.experiments import Result, noise

FAST = settings(max_examples=60, deadline=None)


def c_paper(beta, gamma):
    """C as printed in the paper (Section 3.1)."""
    return (2 * beta * (1 - gamma) - gamma * (1 - beta)) / (beta * gamma)


# --------------------------------------------------------------------------- the rules


def test_square_root_rule_exact_values():
    d = scaling.square_root_rule(4, lr=1e-3, beta=0.999, gamma=0.9, eps=1e-8)
    assert set(d) == {"lr", "beta", "gamma", "eps"}
    assert d["lr"] == pytest.approx(2e-3, rel=1e-14)
    assert d["beta"] == pytest.approx(0.996, rel=1e-14)
    assert d["gamma"] == pytest.approx(0.6, rel=1e-14)
    assert d["eps"] == pytest.approx(5e-9, rel=1e-14)
    assert scaling.square_root_rule(1, lr=3e-4, beta=0.95, gamma=0.5, eps=0.0) == pytest.approx(
        {"lr": 3e-4, "beta": 0.95, "gamma": 0.5, "eps": 0.0})
    # a smaller batch (kappa < 1) moves the decays towards 1
    d = scaling.square_root_rule(0.25, lr=1e-3, beta=0.99, gamma=0.9, eps=1e-8)
    assert d == pytest.approx({"lr": 5e-4, "beta": 0.9975, "gamma": 0.975, "eps": 2e-8})
    # the edge of the allowed range: gamma' = 0 is allowed, RMSprop
    assert scaling.square_root_rule(10, lr=1e-3, beta=0.999, gamma=0.9, eps=0.0)["gamma"] == pytest.approx(0.0, abs=1e-12)


def test_linear_rule_exact_values():
    assert scaling.linear_rule(8, lr=1e-3, beta=0.999, gamma=0.9, eps=1e-8) == pytest.approx(
        {"lr": 8e-3, "beta": 0.999, "gamma": 0.9, "eps": 1e-8})


@pytest.mark.parametrize("kwargs, match", [
    (dict(kappa=0.0), "kappa"),
    (dict(kappa=-2.0), "kappa"),
    (dict(kappa=math.nan), "kappa"),
    (dict(kappa=math.inf), "kappa"),
    (dict(kappa=True), "kappa"),
    (dict(kappa="4"), "kappa"),
    (dict(lr=0.0), "lr"),
    (dict(lr=-1e-3), "lr"),
    (dict(beta=1.0), "beta"),
    (dict(beta=-0.1), "beta"),
    (dict(gamma=1.0), "gamma"),
    (dict(eps=-1e-8), "eps"),
    (dict(kappa=11.0), "gamma = 1 - kappa"),   # 1 - 11 * 0.1 < 0
    (dict(kappa=1001.0), "kappa"),             # both decays pushed out
])
def test_rules_refuse_bad_input(kwargs, match):
    args = dict(kappa=4.0, lr=1e-3, beta=0.999, gamma=0.9, eps=1e-8)
    args.update(kwargs)
    kappa = args.pop("kappa")
    with pytest.raises(ValueError, match=match):
        scaling.square_root_rule(kappa, **args)
    if match != "gamma = 1 - kappa" and kappa != 1001.0:
        with pytest.raises(ValueError, match=match):
            scaling.linear_rule(kappa, **args)


def test_the_rule_pushing_beta_out_names_beta():
    with pytest.raises(ValueError, match="beta = 1 - kappa"):
        scaling.square_root_rule(30.0, lr=1e-3, beta=0.95, gamma=0.99, eps=0.0)


@FAST
@given(kappa=st.floats(0.05, 8.0), lr=st.floats(1e-4, 1e-1), beta=st.floats(0.9, 0.9999),
       gamma=st.floats(0.0, 0.9), sigma=st.floats(0.1, 10.0), eps=st.floats(0.0, 1e-3))
def test_square_root_rule_keeps_the_sde_constants(kappa, lr, beta, gamma, sigma, eps):
    """Batch kappa*B has noise sigma/sqrt(kappa); the rule leaves c1, c2, sigma0, eps0 unchanged."""
    if kappa > scaling.kappa_limit(beta=beta, gamma=gamma):
        return
    d = scaling.square_root_rule(kappa, lr=lr, beta=beta, gamma=gamma, eps=eps)
    if d["beta"] == 1.0 or d["gamma"] == 1.0:  # kappa (1 - decay) below float resolution
        return
    before = sde.sde_constants(lr=lr, beta=beta, gamma=gamma, sigma=sigma, eps=eps)
    after = sde.sde_constants(lr=d["lr"], beta=d["beta"], gamma=d["gamma"], sigma=sigma / math.sqrt(kappa), eps=d["eps"])
    for k in before:
        assert after[k] == pytest.approx(before[k], rel=1e-6, abs=1e-12)


def test_scaled_steps():
    assert scaling.scaled_steps(3200, 4) == 800
    assert scaling.scaled_steps(100, 0.5) == 200
    with pytest.raises(ValueError, match="whole number"):
        scaling.scaled_steps(100, 3)
    with pytest.raises(ValueError, match="steps"):
        scaling.scaled_steps(-1, 2)
    with pytest.raises(ValueError, match="kappa"):
        scaling.scaled_steps(100, 0)


# --------------------------------------------------------------------------- the rule in the stability picture


def test_kappa_limit_and_pytorch_defaults_never_leave_b_plus():
    assert scaling.kappa_limit(beta=0.999, gamma=0.9) == pytest.approx(10.0)
    assert scaling.kappa_limit(beta=0.95, gamma=0.97) == pytest.approx(20.0)
    kc = scaling.crossing_kappa(beta=0.999, gamma=0.9)
    assert kc == pytest.approx(2 / 0.001 - 1 / 0.1)
    assert kc > scaling.kappa_limit(beta=0.999, gamma=0.9)
    kappas = np.linspace(0.1, 10.0, 50)
    assert np.all(scaling.scaled_stability_constant(kappas, beta=0.999, gamma=0.9) > 0)


@FAST
@given(kappa=st.floats(0.01, 0.99), beta=st.floats(0.5, 0.999), gamma=st.floats(0.05, 0.999))
def test_scaled_c_has_the_closed_form(kappa, beta, gamma):
    limit = scaling.kappa_limit(beta=beta, gamma=gamma)
    k = kappa * min(limit, 1 / (1 - beta))  # strictly inside: beta' > 0
    a, b = 1 - gamma, 1 - beta
    nb, ng = 1 - k * b, 1 - k * a
    if ng <= 0:
        return
    got = scaling.scaled_stability_constant(k, beta=beta, gamma=gamma)
    assert got == pytest.approx(c_paper(nb, ng), rel=1e-9, abs=1e-9)
    kc = scaling.crossing_kappa(beta=beta, gamma=gamma)
    assert got == pytest.approx(k * a * b * (kc - k) / (nb * ng), rel=1e-7, abs=1e-9)
    kd = scaling.discrete_crossing_kappa(beta=beta, gamma=gamma)
    assert ng**2 - nb == pytest.approx(k * a * a * (k - kd), rel=1e-7, abs=1e-12)


@FAST
@given(beta=st.floats(0.5, 0.995), r=st.floats(0.52, 0.98))
def test_b_plus_points_with_gamma_above_beta_cross_in_order(beta, r):
    """1 - gamma = r (1 - beta) with r in (1/2, 1): gamma > beta; in B+ iff kappa_c > 1."""
    b = 1 - beta
    gamma = 1 - r * b
    if bounds.stability_constant(beta, gamma) <= 1e-9:
        return
    kc = scaling.crossing_kappa(beta=beta, gamma=gamma)
    kd = scaling.discrete_crossing_kappa(beta=beta, gamma=gamma)
    assert 1 < kc < kd < 1 / b <= scaling.kappa_limit(beta=beta, gamma=gamma) + 1e-9
    # C changes sign at kappa_c; gamma'^2 - beta' at kappa_d
    c = scaling.scaled_stability_constant(np.array([(1 + kc) / 2, (kc + kd) / 2]), beta=beta, gamma=gamma)
    assert c[0] > 0 > c[1]
    nb, ng = scaling.scaled_decays(np.array([(kc + kd) / 2, (kd + 1 / b) / 2]), beta=beta, gamma=gamma)
    assert ng[0] ** 2 < nb[0] and ng[1] ** 2 > nb[1]


def test_scaled_decays_and_constant_refuse_bad_kappa():
    nb, ng = scaling.scaled_decays(2.0, beta=0.99, gamma=0.9)
    assert isinstance(nb, float) and nb == pytest.approx(0.98) and ng == pytest.approx(0.8)
    out = scaling.scaled_decays(np.array([1.0, 2.0]), beta=0.99, gamma=0.9)
    assert out[0].shape == (2,)
    with pytest.raises(ValueError, match="kappa"):
        scaling.scaled_decays(11.0, beta=0.99, gamma=0.9)
    with pytest.raises(ValueError, match="kappa"):
        scaling.scaled_decays(np.array([1.0, -1.0]), beta=0.99, gamma=0.9)
    with pytest.raises(ValueError, match="beta' = 1 - kappa"):
        scaling.scaled_stability_constant(20.0, beta=0.95, gamma=0.97)
    with pytest.raises(ValueError, match="beta"):
        scaling.crossing_kappa(beta=1.0, gamma=0.9)
    with pytest.raises(ValueError, match="gamma"):
        scaling.discrete_crossing_kappa(beta=0.9, gamma=1.5)


# --------------------------------------------------------------------------- the experiments, tiny


def test_stability_experiment_toy_matches_the_discrete_rate():
    r = noise.scaling_stability("smoke", gpt_kappas=[1], gpt_steps=12, toy_kappas=[1, 8, 16], toy_steps=160,
                                toy_off_at=40)
    assert r.figure == "noise_stability" and r.data["kappa_c"] == pytest.approx(2 / 0.05 - 1 / 0.03)
    toy = {p["kappa"]: p for p in r.points if p["model"] == "toy"}
    # beyond kappa_d the switched-off features grow at exactly ln gamma' - ln(beta')/2
    assert toy[16.0]["measured_slope"] == pytest.approx(toy[16.0]["predicted_slope_discrete"], rel=1e-3)
    # between kappa_c and kappa_d: C < 0 but no growth
    assert toy[8.0]["C"] < 0 and toy[8.0]["predicted_slope_discrete"] == 0.0
    assert abs(toy[8.0]["measured_slope"]) < 0.01
    assert isinstance(plots.plot(r), Figure)


def test_batch_scaling_experiment_runs_and_round_trips(tmp_path):
    r = noise.batch_scaling("smoke", samples=96, evals=2, kappas=[1, 2])
    assert {(p["rule"], p["kappa"]) for p in r.points} == {("sqrt", 1), ("sqrt", 2), ("linear", 1), ("linear", 2)}
    sqrt2 = next(p for p in r.points if p["rule"] == "sqrt" and p["kappa"] == 2)
    assert sqrt2["lr"] == pytest.approx(2e-3 * math.sqrt(2)) and sqrt2["gamma"] == pytest.approx(0.9)
    assert sqrt2["steps"] == 96 // 4
    np.testing.assert_array_equal(r.arrays["sqrt/k2/samples"], [48, 96])
    assert set(r.data["mismatch"]) == {"sqrt", "linear"} and r.data["floor"] >= 0
    back = Result.load(r.save(tmp_path))
    assert isinstance(plots.plot(back), Figure)
    with pytest.raises(ValueError, match="multiple"):
        noise.batch_scaling("smoke", samples=100, evals=2, kappas=[1, 2])


def test_sde_experiment_errors_fall_with_lr():
    r = noise.sde_vs_discrete("smoke", paths=128, lrs=[0.2, 0.1], horizon=1.2)
    for alg in ("adam", "rmsprop"):
        e = r.data["errors"][alg]
        assert e[0]["max_rel_err_mean"] > e[1]["max_rel_err_mean"]
        assert r.data["order"][alg]["mean"] > 0
    assert isinstance(plots.plot(r), Figure)


def test_helpers():
    assert noise.curve_mismatch([1.0, 2.0], [1.5, 1.5]) == pytest.approx(0.5)
    assert noise.curve_mismatch([1.0, 2.0], [1.0, np.nan]) == math.inf
    with pytest.raises(ValueError, match="equal length"):
        noise.curve_mismatch([1.0], [1.0, 2.0])
    mu = np.exp(0.1 * np.arange(20))
    assert noise.fitted_log_slope(mu, 5) == pytest.approx(0.1)
    assert noise.fitted_log_slope(mu[:3], 2) is None


def test_rule_messages_say_what_is_allowed_and_what_was_given():
    args = dict(lr=1e-3, beta=0.999, gamma=0.9, eps=1e-8)
    with pytest.raises(ValueError, match=r"^kappa must be a finite real > 0 \(the batch-size multiplier\); got 0.0$"):
        scaling.square_root_rule(0.0, **args)
    with pytest.raises(ValueError, match=r"^beta must be a real in \[0, 1\) \(the paper's second-moment decay, "
                                         r"torch's betas\[1\]\); got 1.0$"):
        scaling.linear_rule(2.0, **{**args, "beta": 1.0})
    with pytest.raises(ValueError, match=r"^eps must be a finite real >= 0; got -1e-08$"):
        scaling.square_root_rule(2.0, **{**args, "eps": -1e-8})
    with pytest.raises(ValueError, match=r"^steps must be a non-negative int; got 2.5$"):
        scaling.scaled_steps(2.5, 2.0)
