"""The cluster path: ``--shard auto`` / ``shard="auto"`` from a Slurm array's variables, the README's
sbatch and submitit recipes (checked as written there), and :func:`experiments.load_or_reproduce`
reading a merged paper-scale result from ``$KADAM_RESULTS``. The experiments are replaced by
hand-made results wherever running them would cost more than a second."""

import glob
import json
import re
import shlex
import shutil
import subprocess
import sys
import types
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from kadam_edu import experiments, plots
from kadam_edu.__main__ import main
from kadam_edu.experiments import Result, parse_shard
from kadam_edu.experiments.common import PRESETS

README = Path(__file__).resolve().parents[1] / "README.md"
SLURM = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
         "SLURM_ARRAY_TASK_STEP")


@pytest.fixture
def slurm(monkeypatch):
    """``slurm(id, count, min=0, max=..., step=...)`` sets a Slurm array task's variables (none at first)."""
    for key in SLURM:
        monkeypatch.delenv(key, raising=False)

    def task(task_id, count, low=0, high=None, step=None):
        for key, value in zip(SLURM, (task_id, count, low, high, step)):
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, str(value))

    return task


# --------------------------------------------------------------------------- shard="auto"


@pytest.mark.parametrize("array, task_id, shard", [
    ("0-63", 0, (0, 64)), ("0-63", 63, (63, 64)), ("1-64", 1, (0, 64)), ("1-64", 64, (63, 64)), ("0-1", 1, (1, 2)),
])
def test_shard_auto_is_the_task_s_place_in_its_array(slurm, array, task_id, shard):
    low, high = (int(x) for x in array.split("-"))
    slurm(task_id, high - low + 1, low, high, 1)  # as Slurm sets them for --array=LOW-HIGH
    assert parse_shard("auto") == shard
    slurm(task_id, high - low + 1, low)  # MAX and STEP are only checked when set
    assert parse_shard("auto") == shard


def test_shard_auto_outside_an_array_names_the_missing_variable(slurm):
    with pytest.raises(ValueError, match=r"SLURM_ARRAY_TASK_ID is not set.*Slurm array job.*--array=0-63"):
        parse_shard("auto")
    slurm(3, None)
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_COUNT is not set"):
        parse_shard("auto")
    slurm(3, 64, None)
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_MIN is not set"):
        parse_shard("auto")


@pytest.mark.parametrize("key", ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
                                 "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP"])
def test_shard_auto_refuses_a_variable_that_is_not_an_integer(slurm, monkeypatch, key):
    slurm(3, 64, 0, 63, 1)
    monkeypatch.setenv(key, "3.5")
    with pytest.raises(ValueError, match=rf"{key} must be an integer; got '3.5'"):
        parse_shard("auto")


@pytest.mark.parametrize("array, env, says", [
    ("0-63:2", (2, 32, 0, 62, 2), r"step 2 .*--array=0-31"),
    ("0,1,5", (5, 3, 0, 5, None), r"not contiguous: indices 0\.\.5 .* 3 tasks"),
    ("0,1,5 (no MAX)", (5, 3, 0, None, None), r"task 5 is 5 past the first index 0, .* only 3 tasks"),
    ("17", (17, 1, 17, 17, 1), r"starts at 17.*--shard \$\{SLURM_ARRAY_TASK_ID\}/N"),
    ("0", (0, 1, 0, 0, 1), r"one task.*whole sweep.*--shard \$\{SLURM_ARRAY_TASK_ID\}/N"),
    ("-1", (-1, 2, -1, 0, 1), r"starts at -1"),
])
def test_shard_auto_refuses_arrays_it_cannot_number(slurm, array, env, says):
    slurm(*env)
    with pytest.raises(ValueError, match=says) as info:
        parse_shard("auto")
    assert "--array=0-63" in str(info.value) or "--array=0-31" in str(info.value)  # says what is supported


def test_explicit_shards_still_parse_and_a_bad_one_mentions_auto(slurm):
    assert parse_shard("3/16") == (3, 16) and parse_shard((3, 16)) == (3, 16) and parse_shard(None) is None
    for bad in ("16/16", "x", "auto/3", 5):
        with pytest.raises(ValueError, match=r"'I/N' with 0 <= I < N.*'auto'"):
            parse_shard(bad)


def test_reproduce_takes_shard_auto_and_records_the_resolved_shard(slurm):
    slurm(2, 2, 1, 2, 1)  # --array=1-2, the second task: shard 1/2
    r = experiments.reproduce("fig3", "smoke", shard="auto", points=4, steps=2, progress=False)
    assert r.provenance["shard"] == [1, 2] and [p["index"] for p in r.points] == [1, 3]


# --------------------------------------------------------------------------- plan


@pytest.mark.parametrize("name", list(experiments.FIGURES))
def test_plan_takes_what_reproduce_takes_for_every_figure(name):
    planned = experiments.plan(name, "smoke", seed=1, shard=None, device=None, progress=False)
    assert planned["figure"] == name and planned["scale"] == "smoke" and planned["seed"] == 1
    assert planned["shard"] is None and planned["run"] == {"device": None, "progress": False}
    assert planned["config"] == PRESETS[name]["smoke"]


def test_plan_config_is_the_config_the_run_records(slurm):
    slurm(1, 2)
    planned = experiments.plan("fig3", "smoke", shard="auto", points=4, steps=2)
    assert planned["shard"] == (1, 2) and planned["config"]["points"] == 4
    r = experiments.reproduce("fig3", "smoke", shard="1/2", points=4, steps=2, progress=False)
    assert r.config == planned["config"]


# --------------------------------------------------------------------------- the README's recipes


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def _block(language: str, *needles: str) -> str:
    found = [b for b in _blocks(language) if all(n in b for n in needles)]
    assert len(found) == 1, f"README should hold one {language} block with {needles}; found {len(found)}"
    return found[0]


def _command(script: str, start: str) -> list[str]:
    lines = [line for line in script.splitlines() if line.startswith(start)]
    assert len(lines) == 1, f"one line starting with {start!r} expected in\n{script}"
    return shlex.split(lines[0], comments=True)


def _bash_n(tmp_path, script: str, name: str) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    path = tmp_path / name
    path.write_text(script)
    done = subprocess.run([bash, "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _array_job() -> str:
    return _block("bash", "#SBATCH --array")


def test_readme_sbatch_script_is_a_complete_array_job(tmp_path):
    ARRAY = _array_job()
    assert ARRAY.startswith("#!/bin/bash\n")
    for line in ("#SBATCH --array=0-63", "#SBATCH --gres=gpu:1", "#SBATCH --time="):
        assert any(x.startswith(line) for x in ARRAY.splitlines()), line
    assert re.search(r"^source \S+/bin/activate", ARRAY, re.M)
    _bash_n(tmp_path, ARRAY, "fig1.sbatch")
    argv = _command(ARRAY, "python -m kadam_edu reproduce")
    assert argv[3:] == ["reproduce", "fig1", "--scale", "paper", "--shard", "auto", "--out",
                        "results/fig1/shard-{shard}", "--quiet", "--no-plot"]
    size = int(re.search(r"^#SBATCH --array=0-(\d+)", ARRAY, re.M).group(1)) + 1
    assert _preset("fig1")["points"] >= size  # every task of the array has a point to run


@pytest.mark.parametrize("task_id", [0, 63])
def test_readme_sbatch_command_line_passes_the_cli_s_dry_run(task_id, slurm, tmp_path, monkeypatch, capsys):
    slurm(task_id, 64, 0, 63, 1)
    monkeypatch.chdir(tmp_path)
    argv = _command(_array_job(), "python -m kadam_edu reproduce")[3:]
    assert main([*argv, "--dry-run"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"shard {task_id}/64" in out and f"results/fig1/shard-{task_id}" in out and "scale paper" in out
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


def _preset(figure: str, scale: str = "paper") -> dict:
    experiments.get(figure)  # imports its module, which registers its presets
    return dict(PRESETS[figure][scale])


def _paper_shards(figure: str, n: int, root: Path | None = None) -> list[Result]:
    """Hand-made shards i/n of a paper-scale sweep of n points, config = the paper preset (saved under
    ``root/results/<figure>/shard-<i>`` when ``root`` is given)."""
    config = _preset(figure)
    shards = []
    for i in range(n):
        r = Result(figure=figure, scale="paper", config=config,
                   data={"sweep_size": n, "points": [{"index": i, "value": float(i)}]},
                   arrays={f"p{i}/max_update": np.full(3, float(i))},
                   provenance={"seed": 0, "shard": [i, n], "created": "2025-01-02T03:04:05+00:00",
                               "git_commit": "abc1234"})
        if root is not None:
            r.save(root / "results" / figure / f"shard-{i}")
        shards.append(r)
    return shards


def _stub_plot(result):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.set_title(result.figure)
    return fig


def test_readme_merge_job_joins_the_shards_where_load_or_reproduce_finds_them(tmp_path, monkeypatch, capsys):
    merge_job = _block("bash", "#SBATCH", "kadam_edu merge")
    submit = _block("bash", "--dependency=afterok:")
    assert merge_job.startswith("#!/bin/bash\n") and re.search(r"^source \S+/bin/activate", merge_job, re.M)
    _bash_n(tmp_path, merge_job, "merge.sh")
    _bash_n(tmp_path, submit, "submit.sh")
    assert re.search(r"sbatch --parsable .*fig1\.sbatch", submit) and "merge.sh" in submit
    argv = _command(merge_job, "python -m kadam_edu merge")[3:]
    assert argv[0] == "merge" and argv[-2:] == ["--out", "results/paper/fig1"]
    monkeypatch.chdir(tmp_path)
    _paper_shards("fig1", 64, tmp_path)
    monkeypatch.setattr(plots, "plot", _stub_plot)
    shards = [s for a in argv[1:-2] for s in sorted(glob.glob(a))]  # the shell's globbing
    assert len(shards) == 64
    assert main(["merge", *shards, *argv[-2:]]) == 0, capsys.readouterr().err
    assert Result.load(tmp_path / "results" / "paper" / "fig1").points[63]["index"] == 63
    # the README tells notebooks where the merged results are
    setting = re.search(r"KADAM_RESULTS=(\S+)", README.read_text()).group(1)
    assert setting.strip("`") == "results/paper"
    monkeypatch.setenv("KADAM_RESULTS", str(tmp_path / "results" / "paper"))
    monkeypatch.setattr(experiments, "reproduce", _must_not_run)
    capsys.readouterr()
    assert experiments.load_or_reproduce("fig1", "paper").points[63]["value"] == 63.0
    assert "fig1: loaded the merged paper-scale result" in capsys.readouterr().out


UPDATE_PARAMETERS = {  # submitit's documented generic parameters, and the Slurm-prefixed ones
    "name", "timeout_min", "mem_gb", "nodes", "tasks_per_node", "cpus_per_task", "gpus_per_node",
    "stderr_to_stdout", "slurm_partition", "slurm_array_parallelism", "slurm_account", "slurm_qos",
    "slurm_additional_parameters", "slurm_setup",
}


def _fake_submitit(log: list):
    """A local stand-in with submitit's API (AutoExecutor(folder), update_parameters, map_array, result)."""

    class Job:
        def __init__(self, value):
            self._value = value

        def result(self):
            return self._value

    class AutoExecutor:
        def __init__(self, folder, cluster=None, **kwargs):
            log.append(("folder", str(folder)))

        def update_parameters(self, **kwargs):
            unknown = set(kwargs) - UPDATE_PARAMETERS
            if unknown:
                raise TypeError(f"update_parameters got unknown parameters {sorted(unknown)}")
            log.append(("parameters", kwargs))

        def map_array(self, fn, *iterables):
            args = list(zip(*iterables))
            log.append(("array", len(args)))
            return [Job(fn(*a)) for a in args]

    return types.SimpleNamespace(AutoExecutor=AutoExecutor)


def test_readme_submitit_recipe_runs_every_shard_and_merges(tmp_path, monkeypatch, capsys):
    recipe = _block("python", "submitit.AutoExecutor")
    log, calls = [], []
    monkeypatch.setitem(sys.modules, "submitit", _fake_submitit(log))
    shards = {}

    def reproduce(name, scale="auto", *, shard=None, **kwargs):
        i, n = parse_shard(shard)
        calls.append((name, scale, i, n))
        if n not in shards:
            shards[n] = _paper_shards(name, n)
        return shards[n][i]

    monkeypatch.setattr(experiments, "reproduce", reproduce)
    monkeypatch.chdir(tmp_path)
    exec(compile(recipe, "README submitit recipe", "exec"), {"__name__": "__main__"})
    assert sorted(c[2] for c in calls) == list(range(64)) and {c[:2] for c in calls} == {("fig1", "paper")}
    parameters = dict(log)["parameters"]
    assert parameters["gpus_per_node"] == 1 and parameters["timeout_min"] > 0 and dict(log)["array"] == 64
    merged = Result.load(tmp_path / "results" / "paper" / "fig1")
    assert [p["index"] for p in merged.points] == list(range(64)) and merged.provenance["shard"] is None


def test_pyproject_offers_submitit_as_the_cluster_extra():
    text = (README.parent / "pyproject.toml").read_text()
    extras = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^cluster = \[\s*"submitit[^"]*"\s*\]', extras, re.M)
    assert "kadam-edu[cluster]" in README.read_text()


# --------------------------------------------------------------------------- load_or_reproduce


def _must_not_run(*args, **kwargs):
    raise AssertionError("reproduce was called: the stored result should have been loaded or refused")


def _stored(root: Path, figure="fig3", *, scale="paper", shard=None, seed=0, **overrides) -> Result:
    """A hand-made merged result of ``figure`` saved as ``root/<figure>/<figure>.json``."""
    config = dict(_preset(figure, scale), **overrides)
    r = Result(figure=figure, scale=scale, config=config,
               data={"sweep_size": 2, "points": [{"index": 0, "value": 7.0}, {"index": 1, "value": 8.0}]},
               arrays={"p0/loss": np.arange(3.0), "p1/loss": np.arange(3.0) + 1},
               provenance={"seed": seed, "shard": shard, "created": "2025-01-02T03:04:05+00:00",
                           "git_commit": "abc1234", "merged_from": [{}, {}]})
    r.save(root / figure)
    return r


@pytest.fixture
def computed(monkeypatch):
    """experiments.reproduce replaced by a stand-in that records its calls and returns a small result."""
    calls = []

    def reproduce(name, scale="auto", **kwargs):
        calls.append((name, scale, kwargs))
        return Result(figure=name, scale="cpu" if scale == "auto" else scale, config={}, data={"fresh": True},
                      provenance={"seed": kwargs.get("seed", 0), "shard": None})

    monkeypatch.setattr(experiments, "reproduce", reproduce)
    return calls


def test_load_or_reproduce_loads_a_matching_merged_result(tmp_path, monkeypatch, capsys):
    stored = _stored(tmp_path)
    monkeypatch.setenv("KADAM_RESULTS", str(tmp_path))
    monkeypatch.setattr(experiments, "reproduce", _must_not_run)
    got = experiments.load_or_reproduce("fig3", "paper", progress=False, device="cpu")
    assert got.data == stored.data and np.array_equal(got.arrays["p1/loss"], stored.arrays["p1/loss"])
    out = capsys.readouterr().out
    assert out.strip() == (f"fig3: loaded the merged paper-scale result from {tmp_path / 'fig3'} "
                           "(created 2025-01-02T03:04:05+00:00, git abc1234)")
    monkeypatch.setenv("KADAM_SCALE", "paper")  # scale "auto" resolving to paper loads it too
    assert experiments.load_or_reproduce("fig3").data == stored.data


def test_load_or_reproduce_matches_overrides_against_the_stored_config(tmp_path, monkeypatch, capsys):
    _stored(tmp_path, points=8)
    monkeypatch.setenv("KADAM_RESULTS", str(tmp_path))
    monkeypatch.setattr(experiments, "reproduce", _must_not_run)
    assert experiments.load_or_reproduce("fig3", "paper", points=8).points[1]["value"] == 8.0
    assert "loaded" in capsys.readouterr().out


@pytest.mark.parametrize("stored, asked, says", [
    ({}, {"points": 8}, r"config key 'points' is \d+ in the stored result but 8 here"),
    ({"points": 8}, {}, r"config key 'points' is 8 in the stored result but \d+ here"),
    ({"seed": 3}, {}, r"seed is 3 in the stored result but 0 here"),
    ({}, {"seed": 1}, r"seed is 0 in the stored result but 1 here"),
    ({"shard": [0, 2]}, {}, r"shard is \[0, 2\] in the stored result but None here.*merge"),
    ({"scale": "cpu"}, {}, r"scale is 'cpu' in the stored result but 'paper' here"),
])
def test_load_or_reproduce_refuses_a_stored_result_that_differs(tmp_path, monkeypatch, stored, asked, says):
    _stored(tmp_path, **stored)
    monkeypatch.setenv("KADAM_RESULTS", str(tmp_path))
    monkeypatch.setattr(experiments, "reproduce", _must_not_run)
    with pytest.raises(ValueError, match=says) as info:
        experiments.load_or_reproduce("fig3", "paper", **asked)
    assert str(tmp_path / "fig3" / "fig3.json") in str(info.value) and "KADAM_RESULTS" in str(info.value)


def test_load_or_reproduce_refuses_a_stored_result_whose_npz_is_not_its_own(tmp_path, monkeypatch):
    _stored(tmp_path)
    npz = tmp_path / "fig3" / json.loads((tmp_path / "fig3" / "fig3.json").read_text())["npz"]
    npz.write_bytes(npz.read_bytes()[:-8])
    monkeypatch.setenv("KADAM_RESULTS", str(tmp_path))
    monkeypatch.setattr(experiments, "reproduce", _must_not_run)
    with pytest.raises(ValueError, match="does not match the sha256"):
        experiments.load_or_reproduce("fig3", "paper")


def test_load_or_reproduce_computes_and_says_why(tmp_path, monkeypatch, capsys, computed):
    monkeypatch.delenv("KADAM_RESULTS", raising=False)
    monkeypatch.delenv("KADAM_SCALE", raising=False)
    assert experiments.load_or_reproduce("fig3", "cpu", seed=2).data == {"fresh": True}
    assert computed == [("fig3", "cpu", {"seed": 2})]
    assert re.fullmatch(r"fig3: computed at scale cpu in \d+ s \(KADAM_RESULTS is not set\)\n", capsys.readouterr().out)
    monkeypatch.setenv("KADAM_RESULTS", str(tmp_path))
    experiments.load_or_reproduce("fig3", "paper")  # nothing stored there yet
    assert f"(no fig3/fig3.json in KADAM_RESULTS={tmp_path})" in capsys.readouterr().out
    _stored(tmp_path)
    experiments.load_or_reproduce("fig3", "smoke")  # stored results serve the paper scale only
    assert "(KADAM_RESULTS serves the paper scale only; this is scale smoke)" in capsys.readouterr().out
    assert [c[1] for c in computed] == ["cpu", "paper", "smoke"]


def test_load_or_reproduce_checks_its_arguments_before_anything(tmp_path, monkeypatch, computed):
    _stored(tmp_path)
    monkeypatch.setenv("KADAM_RESULTS", str(tmp_path))
    with pytest.raises(ValueError, match=r"unknown settings \['nope'\]"):
        experiments.load_or_reproduce("fig3", "paper", nope=1)
    with pytest.raises(ValueError, match="unknown figure 'fig6'"):
        experiments.load_or_reproduce("fig6", "paper")
    with pytest.raises(ValueError, match="seed must be"):
        experiments.load_or_reproduce("fig3", "paper", seed=-1)
    (tmp_path / "a-file").write_text("")
    for where in (tmp_path / "a-file", tmp_path / "missing"):
        monkeypatch.setenv("KADAM_RESULTS", str(where))
        with pytest.raises(ValueError, match=rf"KADAM_RESULTS={re.escape(str(where))} is not a directory"):
            experiments.load_or_reproduce("fig3", "paper")
    assert computed == []
