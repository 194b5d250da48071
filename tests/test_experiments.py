"""Experiments at smoke scale: result files, provenance, sharding, plots and the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from kadam_edu import bounds, experiments, plots
from kadam_edu.experiments import Result, merge
from kadam_edu.experiments.stability import fig1, fig3

FIG1_FIELDS = {"beta", "gamma", "C", "measured_slope", "predicted_slope_continuous", "predicted_slope_discrete", "diverged_at"}


@pytest.fixture(scope="module")
def fig1_smoke():
    return fig1("smoke", progress=False)


def test_fig1_points_carry_both_predictions(fig1_smoke):
    r = fig1_smoke
    assert r.figure == "fig1" and r.scale == "smoke" and len(r.points) == r.config["points"]
    for p in r.points:
        assert FIG1_FIELDS <= set(p)
        assert p["C"] == pytest.approx(bounds.stability_constant(p["beta"], p["gamma"]))
        assert p["predicted_slope_continuous"] == pytest.approx(max(0.0, -p["C"]) / 2)
        assert p["predicted_slope_discrete"] == pytest.approx(bounds.discrete_growth_rate(p["beta"], p["gamma"]))
        mu = r.point_arrays(p["index"])["max_update"]
        assert mu.shape == (r.config["steps"],) and np.isfinite(mu).all()
        n, h = r.config["slope_at"], r.config["slope_half"]
        assert p["measured_slope"] == pytest.approx((np.log(mu[n + h]) - np.log(mu[n - h])) / (2 * h))
    # the points lie on the normal curve through (0.999, 0.9) and cross into B-
    k = 2 * 0.999**3 + 0.9**3
    assert all(abs(2 * p["beta"] ** 3 + p["gamma"] ** 3 - k) < 1e-9 for p in r.points)
    assert {p["region"] for p in r.points} == {"B+", "B-"}


def test_result_round_trip_and_provenance(fig1_smoke, tmp_path):
    path = fig1_smoke.save(tmp_path)
    meta = json.loads(path.read_text())
    assert isinstance(meta["data"]["points"], list)
    for key in ("scale", "device", "torch", "seed", "git_commit", "created"):
        assert key in meta["provenance"]
    assert meta["config"]["steps"] == fig1_smoke.config["steps"]
    back = Result.load(tmp_path)
    assert back.points == json.loads(json.dumps(fig1_smoke.points))
    assert back.arrays.keys() == fig1_smoke.arrays.keys()
    for k in back.arrays:
        assert np.array_equal(back.arrays[k], fig1_smoke.arrays[k])
    assert isinstance(plots.plot(back), Figure)


@pytest.mark.parametrize("population", [1, "auto"])
def test_same_seed_same_result_and_shards_merge_to_the_whole(population):
    """One model at a time a shard is the whole's run bit for bit; with populations ("auto": 4 char
    GPTs at once on a CPU) a point's arithmetic depends on its population's size, so the shards
    agree with the whole to float32 rounding."""
    whole = fig3("smoke", progress=False, points=3, population=population)
    shards = [fig3("smoke", progress=False, points=3, shard=s, population=population) for s in ("0/2", "1/2")]
    assert [len(s.points) for s in shards] == [2, 1]
    merged = merge(shards)
    assert [p["index"] for p in merged.points] == [0, 1, 2]
    assert [(p["beta"], p["gamma"]) for p in merged.points] == [(p["beta"], p["gamma"]) for p in whole.points]
    assert [p["diverged_at"] for p in merged.points] == [p["diverged_at"] for p in whole.points]
    assert merged.arrays.keys() == whole.arrays.keys()
    for k in whole.arrays:
        if population == 1:
            assert np.array_equal(merged.arrays[k], whole.arrays[k]), k
        else:
            np.testing.assert_allclose(merged.arrays[k], whole.arrays[k], rtol=1e-5, err_msg=k)
    with pytest.raises(ValueError, match="shards overlap"):
        merge([shards[0], shards[0]])


def test_bad_experiment_input():
    with pytest.raises(ValueError, match="unknown settings"):
        fig1("smoke", progress=False, steps_per_point=3)
    with pytest.raises(ValueError, match="shard must be 'I/N'"):
        fig1("smoke", progress=False, shard="2/2")
    with pytest.raises(ValueError, match="unknown figure"):
        experiments.get("fig6")
    with pytest.raises(ValueError, match="scale must be one of"):
        fig1("huge")


def _cli(*args, cwd):
    env = dict(os.environ, KADAM_PROGRESS="0")
    return subprocess.run([sys.executable, "-m", "kadam_edu", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_reproduce_list_and_merge(tmp_path):
    out = _cli("list", cwd=tmp_path)
    assert out.returncode == 0 and "fig1" in out.stdout and "fig12" in out.stdout
    for shard in ("0/2", "1/2"):
        out = _cli("reproduce", "fig3", "--scale", "smoke", "--shard", shard, "--set", "points=3",
                   "--out", str(tmp_path / f"s{shard[0]}"), "--quiet", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert (tmp_path / f"s{shard[0]}" / "fig3.png").stat().st_size > 0
    out = _cli("merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "all"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(Result.load(tmp_path / "all").points) == 3
    out = _cli("reproduce", "fig1", "--scale", "smoke", "--set", "nope=1", "--out", str(tmp_path / "bad"), cwd=tmp_path)
    assert out.returncode == 2 and "unknown settings" in out.stderr and not (tmp_path / "bad").exists()
    out = _cli("reproduce", "fig3", "--scale", "smoke", "--out", str(tmp_path / "s0"), cwd=tmp_path)
    assert out.returncode == 2 and "not empty" in out.stderr and "Traceback" not in out.stderr


# --------------------------------------------------------------------------- the measured costs (costs.json)
@pytest.fixture
def cost_table(monkeypatch, tmp_path):
    """experiments.COSTS_FILE pointed at a table of one earlier measurement."""
    path = tmp_path / "costs.json"
    path.write_text(json.dumps({"_machine": "box, 2 cores (idle)", "fig1": {"smoke": "0.2 s", "cpu": "3.5 min"}}))
    monkeypatch.setattr(experiments, "COSTS_FILE", path)
    return path


def test_record_costs_merges_into_the_table_and_the_registry_reads_it_back(cost_table):
    assert experiments.FIGURES["fig1"].cost == {"smoke": "0.2 s", "cpu": "3.5 min"}  # read (and cached) first
    assert experiments.record_costs({"fig1": {"cpu": "3.0 min"}, "eos": {"smoke": "0.4 s"}},
                                    machine="box, 2 cores") == cost_table
    table = {"_machine": "box, 2 cores (idle)",  # the same machine: its recorded note stays
             "eos": {"smoke": "0.4 s"}, "fig1": {"cpu": "3.0 min", "smoke": "0.2 s"}}
    assert cost_table.read_text() == json.dumps(table, indent=1, sort_keys=True) + "\n"
    assert experiments.costs() == table and experiments.FIGURES["fig1"].cost == {"cpu": "3.0 min", "smoke": "0.2 s"}
    assert experiments.FIGURES["eos"].cost == {"smoke": "0.4 s"}
    experiments.record_costs({"fig3": {"smoke": "0.1 s"}}, machine="another box")
    assert experiments.costs()["_machine"] == "another box" and experiments.FIGURES["fig3"].cost == {"smoke": "0.1 s"}


def test_record_costs_starts_a_table_where_there_is_none(monkeypatch, tmp_path):
    monkeypatch.setattr(experiments, "COSTS_FILE", tmp_path / "costs.json")
    assert experiments.costs() == {} and experiments.FIGURES["fig4"].cost == {}
    experiments.record_costs({"fig4": {"smoke": "0.1 s", "cpu": "3.3 s"}}, machine="box")
    assert experiments.costs() == {"_machine": "box", "fig4": {"cpu": "3.3 s", "smoke": "0.1 s"}}


def test_record_costs_writes_atomically(cost_table, monkeypatch):
    from kadam_edu.experiments import result

    before = cost_table.read_bytes()
    real_replace = os.replace

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(result.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        experiments.record_costs({"fig1": {"cpu": "1.0 s"}}, machine="box")
    monkeypatch.setattr(result.os, "replace", real_replace)
    assert cost_table.read_bytes() == before and list(cost_table.parent.iterdir()) == [cost_table]
    assert experiments.FIGURES["fig1"].cost == {"smoke": "0.2 s", "cpu": "3.5 min"}


@pytest.mark.parametrize("measured, machine, match", [
    ({"fig6": {"smoke": "1.0 s"}}, "box", r"unknown figure 'fig6'; choose one of \['fig1'"),
    ({"fig1": {"huge": "1.0 s"}}, "box", r"scale must be one of .*; got 'huge'"),
    ({"fig1": {"smoke": 1.0}}, "box", r"cost of fig1 at scale smoke must be text .*; got 1.0"),
    ({"fig1": {"smoke": " "}}, "box", r"cost of fig1 at scale smoke must be text .*; got ' '"),
    ({"fig1": ["smoke", "1.0 s"]}, "box", r"costs of fig1 must be a dict of \{scale: wall time\}"),
    ([("fig1", {"smoke": "1.0 s"})], "box", r"measured must be a dict of \{figure: \{scale"),
    ({"fig1": {"smoke": "1.0 s"}}, "", r"machine must be text .*; got ''"),
    ({"fig1": {"smoke": "1.0 s"}}, None, r"machine must be text .*; got None"),
])
def test_record_costs_refuses_bad_input_before_writing(cost_table, measured, machine, match):
    before = cost_table.read_bytes()
    with pytest.raises(ValueError, match=match):
        experiments.record_costs(measured, machine=machine)
    assert cost_table.read_bytes() == before
