"""experiments.estimate: counted FLOPs and launches, priced on a T4; the gpu scale's budgets;
the projection an experiment prints before a long run; benchmarks/gpu_check.py without CUDA."""

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kadam_edu import experiments
from kadam_edu.experiments import FIGURES
from kadam_edu.models import CNNConfig, GPTConfig, gpt_config
from kadam_edu.scale import StepTimer, format_seconds, project

est = importlib.import_module("kadam_edu.experiments.estimate")  # the module; experiments.estimate is its function
ROOT = Path(__file__).resolve().parents[1]
MINUTE = 60.0


@pytest.fixture(scope="module")
def gpu_estimates():
    """Each experiment as the book runs it at gpu scale: on experiments.BOOK_SEEDS["gpu"] seeds
    where it takes seeds (every chapter passes BOOK_SEEDS[SCALE] to those)."""
    seeds = experiments.BOOK_SEEDS["gpu"]
    return {name: experiments.estimate(name, "gpu", seeds=seeds if f.takes("seeds") else None)
            for name, f in FIGURES.items()}


# --------------------------------------------------------------------------- the estimate's shape
def test_estimate_returns_seconds_flops_launches_and_its_basis(tmp_path):
    e = experiments.estimate("fig1", "cpu", reference_dir=tmp_path)  # no measurements there
    assert {"seconds", "flops", "launches", "basis", "device", "scale", "workloads", "assumptions"} <= set(e)
    assert e["basis"] == "estimated" and e["device"] == "NVIDIA T4" and e["scale"] == "cpu"
    assert e["seconds"] > 0 and e["flops"] > 0 and e["launches"] > 0
    assert e["assumptions"]["fp32_flops"] == 8.1e12 and e["assumptions"]["launch_seconds"] == 10e-6
    (w,) = e["workloads"]
    preset = experiments.plan("fig1", "cpu")["config"]
    assert (w["runs"], w["steps"], w["batch"]) == (preset["points"], preset["steps"], preset["batch_size"])
    assert e["flops"] == pytest.approx(w["flops"]) and e["seconds"] == pytest.approx(w["seconds"])


def test_auto_scale_is_resolved_as_reproduce_resolves_it(monkeypatch):
    monkeypatch.setenv("KADAM_SCALE", "smoke")
    assert experiments.estimate("fig3", "auto")["scale"] == "smoke"


@pytest.mark.parametrize("kwargs, says", [
    (dict(name="fig6", scale="gpu"), r"unknown figure 'fig6'; choose one of \['fig1'"),
    (dict(name=None, scale="gpu"), r"unknown figure None"),
    (dict(name="fig1", scale="huge"), r"scale must be one of \('smoke', 'cpu', 'gpu', 'paper'\) or 'auto'; got 'huge'"),
    (dict(name="fig1", scale="gpu", device="v100"), r"device must be one of \['a100', 't4'\] .*; got 'v100'"),
    (dict(name="fig1", scale="gpu", device=4), r"device must be one of .*; got 4"),
])
def test_bad_arguments_are_clear_value_errors(kwargs, says):
    with pytest.raises(ValueError, match=says):
        experiments.estimate(**kwargs)


# --------------------------------------------------------------------------- counting
def test_gpt_flops_follow_six_params_tokens_where_attention_is_small():
    cfg = GPTConfig(block_size=32, n_layer=2, n_head=4, n_embd=256, dropout=0.0)
    c = est.count_step(cfg, 8)
    tokens = 8 * 32
    assert c["flops"] == pytest.approx(6 * c["params"] * tokens, rel=0.10)


def test_gpt_flops_match_a_hand_count():
    """Matmuls: 2 FLOPs per weight per token forward, twice that backward, over the blocks'
    12 C^2 and the tied lm_head's V C; attention: FlopCounterMode's flash formulas, 4 B T^2 C per
    layer forward and 2.5 times that backward."""
    cfg = gpt_config("cpu")
    B, T, C, L, V = 32, cfg.block_size, cfg.n_embd, cfg.n_layer, cfg.vocab_size
    matmul = 3 * 2 * B * T * (12 * L * C * C + V * C)
    attention = 3.5 * 4 * B * T * T * C * L
    assert est.count_step(cfg, B)["flops"] == pytest.approx(matmul + attention, rel=0.01)


def test_cnn_flops_match_a_hand_count():
    """A 3x3 convolution: 2 * 9 * C_in * C_out FLOPs per output pixel forward; backward the same
    for the weight gradient and again for the input gradient (none for the first layer, whose
    input needs no gradient); the classifier's two Linear layers likewise."""
    cfg = CNNConfig(widths=(16, 32, 64), hidden=128)
    B, forward, input_grads = 4, [], []
    c_in, side = 3, 32
    for c_out in cfg.widths:
        for _ in range(2):
            forward.append(2 * 9 * c_in * c_out * side * side)
            c_in = c_out
        side //= 2
    forward += [2 * c_in * side * side * cfg.hidden, 2 * cfg.hidden * cfg.num_classes]
    input_grads = forward[1:]
    hand = B * (2 * sum(forward) + sum(input_grads))
    got = est.count_step(cfg, B)
    assert got["flops"] == pytest.approx(hand, rel=0.01) and got["conv_flops"] > 0.9 * got["flops"]


def test_counting_touches_neither_the_global_rng_nor_real_memory():
    state = torch.random.get_rng_state()
    est.count_step(gpt_config("paper"), 64)  # the paper GPT at App. H's batch: meta tensors only
    est.launches(gpt_config("gpu"), 32, 2)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_a_population_shares_its_launches_among_its_members():
    cfg = gpt_config("cpu")
    one, pop = est.launches(cfg, 1), est.launches(cfg, 32)
    assert one < pop < 2 * one  # a step of 32 members launches about what one member's step does
    assert est.launches(cfg, 1, k=3) > est.launches(cfg, 1, k=1)  # each level adds its kernels
    assert est.launches(cfg, 1, kind="forward") < est.launches(cfg, 1, kind="grad") < one


def test_a_launch_bound_step_costs_its_launches_and_a_syncing_step_both():
    cfg = gpt_config("smoke")
    free = est.Workload("w", cfg, batch=1, steps=100)
    synced = est.Workload("w", cfg, batch=1, steps=100, syncs=1)
    t4 = est.DEVICES["t4"]
    a, b = est._step_price(free, t4, 1), est._step_price(synced, t4, 1)
    assert a["launch_seconds"] > a["gpu_seconds"] and a["seconds"] == pytest.approx(a["launch_seconds"])
    assert b["seconds"] == pytest.approx(b["gpu_seconds"] + b["launch_seconds"])


# --------------------------------------------------------------------------- the gpu scale's budgets
def test_every_experiment_at_gpu_scale_fits_15_minutes_on_a_t4(gpu_estimates):
    over = {n: format_seconds(e["seconds"]) for n, e in gpu_estimates.items() if e["seconds"] > 15 * MINUTE}
    assert not over, over


def test_every_chapter_at_gpu_scale_fits_15_minutes_and_the_book_an_hour(gpu_estimates):
    chapters = {ch: sum(gpu_estimates[n]["seconds"] for n in names) for ch, names in est.CHAPTERS.items()}
    assert est.chapter_estimates("gpu") == pytest.approx(chapters)
    assert all(s <= 15 * MINUTE for s in chapters.values()), {c: format_seconds(s) for c, s in chapters.items()}
    assert sum(e["seconds"] for e in gpu_estimates.values()) <= 60 * MINUTE


def test_the_gpu_scale_reaches_the_paper_s_sweep_sizes_and_fits_in_a_t4(gpu_estimates):
    plan = {n: experiments.plan(n, "gpu")["config"] for n in ("fig1", "fig9", "fig2")}
    paper = {n: experiments.plan(n, "paper")["config"] for n in plan}
    assert (plan["fig1"]["points"], plan["fig1"]["steps"]) == (paper["fig1"]["points"], paper["fig1"]["steps"])
    # Figs. 9-11 keep App. H's schedule and length, on fewer points: three seeds of each fit Chapter 2
    assert plan["fig9"]["steps"] == paper["fig9"]["steps"] == 3000 and plan["fig9"]["points"] >= 16
    assert plan["fig2"]["ks"] == list(range(1, 11)) and plan["fig2"]["strategies"] == paper["fig2"]["strategies"]
    for name, e in gpu_estimates.items():
        assert e["memory_bytes"] <= est.DEVICES["t4"].memory / 2, name
        sweep = [w for w in e["workloads"] if w["runs"] > 1 and w["bound"] != "host"]
        if name in ("fig1", "fig9", "fig2"):
            assert sweep and all(w["members"] > 1 for w in sweep), name  # trained as populations


def test_the_paper_scale_is_not_for_one_gpu():
    assert experiments.estimate("fig9", "paper")["seconds"] > 24 * 3600


def test_the_chapters_are_the_experiments_their_notebooks_run():
    calls = {name: FIGURES[name].attr or name for name in FIGURES}
    for chapter, names in est.CHAPTERS.items():
        (path,) = ROOT.glob(f"book/ch{chapter}_*.ipynb")
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        found = re.findall(r'reproduce\("(\w+)"', code)
        found += [n for n, fn in calls.items() for _ in re.findall(rf"\b{fn}\(SCALE\b", code)]
        assert sorted(found) == sorted(names), (chapter, found)
    for name, f in FIGURES.items():
        if f.chapter is not None:
            assert name in est.CHAPTERS[f.chapter]


# --------------------------------------------------------------------------- measured basis
def _reference(tmp_path, device_name, items, seconds_per_step):
    data = {"device_name": device_name, "step_seconds": {w.shape_key: seconds_per_step for w in items}}
    (tmp_path / "some-gpu.json").write_text(json.dumps(data))
    est._measured.cache_clear()
    return tmp_path


def test_a_committed_gpu_check_of_the_device_replaces_the_estimate(tmp_path):
    items = est.workloads("fig3", "cpu")
    ref = _reference(tmp_path, "Tesla T4", items, 0.25)
    e = experiments.estimate("fig3", "cpu", "t4", reference_dir=ref)
    assert e["basis"] == "measured" and e["measured_file"] == str(ref / "some-gpu.json")
    assert e["seconds"] == pytest.approx(sum(0.25 * w.steps * -(-w.runs // w.members) for w in items))
    assert experiments.estimate("fig3", "cpu", "a100", reference_dir=ref)["basis"] == "estimated"
    other = _reference(tmp_path, "NVIDIA A100-SXM4-40GB", items, 0.25)
    assert experiments.estimate("fig3", "cpu", "t4", reference_dir=other)["basis"] == "estimated"
    assert experiments.estimate("fig3", "cpu", "a100", reference_dir=other)["basis"] == "measured"


def test_a_reference_that_timed_other_shapes_leaves_the_estimate(tmp_path):
    ref = _reference(tmp_path, "Tesla T4", est.workloads("fig1", "smoke"), 0.25)
    assert experiments.estimate("fig3", "cpu", reference_dir=ref)["basis"] == "estimated"


# --------------------------------------------------------------------------- the projection
def test_project_says_how_long_on_which_device_from_how_many_steps():
    line = project("fig1", "gpu", seconds_per_step=0.1, steps=2400, measured_steps=12, device="cpu")
    assert re.fullmatch(r"fig1 at gpu scale: about 4\.0 min on the CPU \(\d+ threads?\), measured over 12 steps", line)
    assert "about 2.0 h" in project("fig9", "paper", seconds_per_step=1.2, steps=6000, measured_steps=10, device="cpu")
    for kwargs, says in [(dict(seconds_per_step=-1.0), "seconds_per_step"), (dict(steps=0), "steps"),
                         (dict(measured_steps=0), "measured_steps"), (dict(seconds_per_step=float("nan")),
                                                                          "seconds_per_step")]:
        args = dict(seconds_per_step=0.1, steps=10, measured_steps=3, device="cpu") | kwargs
        with pytest.raises(ValueError, match=says):
            project("fig1", "gpu", **args)


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_step_timer_times_a_few_steps_and_prints_one_projection():
    clock, printed = FakeClock(), []
    timer = StepTimer("fig1", "gpu", steps=3000, device="cpu", skip=2, measure=10, min_seconds=30,
                      clock=clock, out=printed.append)
    batch_fn = timer.wrap(lambda n: ("batch", n))
    for n in range(40):
        assert batch_fn(n) == ("batch", n)  # the batches pass through unchanged
        clock.t += 0.05  # each step 50 ms
    assert printed == [project("fig1", "gpu", seconds_per_step=0.05, steps=3000, measured_steps=10, device="cpu")]
    assert timer.seconds_per_step == pytest.approx(0.05)
    again = timer.wrap(lambda n: n)  # a second run of the same experiment: already projected
    for n in range(20):
        again(n)
    assert len(printed) == 1


def test_step_timer_ticks_where_there_is_no_batch_function():
    """The ODE solver of fig7 calls its loss once per gradient: it ticks there."""
    clock, printed = FakeClock(), []
    timer = StepTimer("fig7", "gpu", steps=10_000, device="cpu", skip=0, measure=4, clock=clock, out=printed.append)
    for _ in range(6):
        timer.tick()
        clock.t += 0.02
    assert timer.done and timer.seconds_per_step == pytest.approx(0.02)
    assert printed and "fig7 at gpu scale: about 3.3 min on the CPU" in printed[0]


def test_step_timer_is_quiet_for_short_runs():
    clock, printed = FakeClock(), []
    timer = StepTimer("fig1", "smoke", steps=30, device="cpu", min_seconds=30, clock=clock, out=printed.append)
    fn = timer.wrap(lambda n: n)
    for n in range(30):
        fn(n)
        clock.t += 0.01
    assert printed == []  # 0.3 s projected: not a long run
    with pytest.raises(ValueError, match="steps must be a positive int"):
        StepTimer("fig1", "gpu", steps=0, device="cpu")


# --------------------------------------------------------------------------- benchmarks/gpu_check.py
def test_gpu_check_without_cuda_says_so_and_exits_2_without_a_traceback(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", KADAM_PROGRESS="0")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path / "x.json")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "needs CUDA" in out.stderr and "Traceback" not in out.stderr + out.stdout
    assert not (tmp_path / "x.json").exists()
