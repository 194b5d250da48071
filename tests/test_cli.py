"""The CLI's output directory: refused before any work when it is not empty (unless --force), not a
directory or not writable; a result and its PNG never disagree; merge refuses sets of shards that
are not one whole sweep. The experiments and plots are replaced by fast stand-ins."""

import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from kadam_edu import experiments, plots
from kadam_edu.__main__ import main
from kadam_edu.experiments import Result


def _result(tag: float, figure="fig3", shard=None, seed=0) -> Result:
    n = 4
    mine = [i for i in range(n) if shard is None or i % shard[1] == shard[0]]
    return Result(
        figure=figure, scale="smoke", config={"lr": 1e-3, "tag": tag},
        data={"sweep_size": n, "points": [{"index": i, "value": tag + i} for i in mine]},
        arrays={f"p{i}/loss": np.full(5, tag + i) for i in mine},
        provenance={"seed": seed, "shard": None if shard is None else list(shard)},
    )


@pytest.fixture
def fake(monkeypatch):
    """experiments.reproduce returns ``_result(fake.tag)`` (counting its calls); plots.plot draws the tag."""

    class Fake:
        tag = 1.0
        calls = []
        during = None  # called inside the experiment, as if while it computes

    def reproduce(name, scale, *, seed=0, shard=None, **kwargs):
        Fake.calls.append(name)
        if Fake.during is not None:
            Fake.during()
        return _result(Fake.tag, figure=name, seed=seed,
                       shard=None if shard is None else tuple(int(x) for x in shard.split("/")))

    def plot(result):
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.set_title(f"tag {result.config['tag']}")
        return fig

    monkeypatch.setattr(experiments, "reproduce", reproduce)
    monkeypatch.setattr(plots, "plot", plot)
    return Fake


def _run(*args, out, force=False):
    argv = ["reproduce", "fig3", "--scale", "smoke", "--out", str(out), "--quiet", *args]
    return main(argv + (["--force"] if force else []))


def _snapshot(directory: Path) -> dict:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def _tag(directory: Path, figure="fig3") -> float:
    return Result.load(directory, figure=figure).config["tag"]


# --------------------------------------------------------------------------- a non-empty --out


def test_a_non_empty_out_is_refused_before_any_work(fake, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert _run(out=tmp_path) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "notes.txt" in err and "--force" in err and "Traceback" not in err
    assert fake.calls == [] and _snapshot(tmp_path) == {"notes.txt": b"mine"}


def test_a_second_run_into_the_same_out_is_refused(fake, tmp_path, capsys):
    assert _run("--shard", "0/2", out=tmp_path) == 0
    before = _snapshot(tmp_path)
    assert set(before) >= {"fig3.json", "fig3.png"}
    fake.tag = 2.0
    assert _run("--shard", "1/2", out=tmp_path) == 2  # the other shard must not replace this one
    assert "not empty" in capsys.readouterr().err
    assert fake.calls == ["fig3"] and _snapshot(tmp_path) == before and _tag(tmp_path) == 1.0


def test_a_run_started_while_another_computes_into_the_same_out_is_refused(fake, tmp_path, capsys):
    out = tmp_path / "out"
    inner = []

    def second_run():
        fake.during = None
        inner.append(_run("--shard", "1/2", out=out))

    fake.during = second_run
    assert _run("--shard", "0/2", out=out) == 0
    assert inner == [2] and "another run" in capsys.readouterr().err
    assert fake.calls == ["fig3"] and Result.load(out).provenance["shard"] == [0, 2]
    assert {p.name for p in out.iterdir()} == {"fig3.json", "fig3.png", json.loads((out / "fig3.json").read_text())["npz"]}


def test_force_replaces_that_figure_and_its_png_and_nothing_else(fake, tmp_path):
    _result(7.0, figure="fig1").save(tmp_path)
    (tmp_path / "fig1.png").write_bytes(b"fig1's picture")
    (tmp_path / "notes.txt").write_text("mine")
    others = _snapshot(tmp_path)
    assert _run(out=tmp_path, force=True) == 0
    old_png = (tmp_path / "fig3.png").read_bytes()
    fake.tag = 2.0
    assert _run(out=tmp_path, force=True) == 0
    assert _tag(tmp_path) == 2.0 and (tmp_path / "fig3.png").read_bytes() != old_png
    now = _snapshot(tmp_path)
    assert {k: now[k] for k in others} == others  # fig1 and notes.txt untouched
    npz = json.loads((tmp_path / "fig3.json").read_text())["npz"]
    assert set(now) == set(others) | {"fig3.json", npz, "fig3.png"}


# --------------------------------------------------------------------------- an --out that cannot be written


@pytest.mark.parametrize("force", [False, True])
def test_an_out_that_is_a_file_is_refused_before_any_work(fake, tmp_path, capsys, force):
    (tmp_path / "taken").write_text("a file")
    assert _run(out=tmp_path / "taken", force=force) == 2
    err = capsys.readouterr().err
    assert "is a file, not a directory" in err and "Traceback" not in err
    assert _run(out=tmp_path / "taken" / "sub" / "dir", force=force) == 2
    err = capsys.readouterr().err
    assert "taken" in err and "is a file, not a directory" in err and "Traceback" not in err
    assert fake.calls == [] and (tmp_path / "taken").read_text() == "a file"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into any directory")
def test_an_out_that_is_not_writable_is_refused_before_any_work(fake, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert _run(out=locked, force=True) == 2
        assert _run(out=locked / "sub", force=True) == 2
    finally:
        locked.chmod(0o700)
    err = capsys.readouterr().err
    assert "not writable" in err and "Traceback" not in err and fake.calls == []


def test_an_out_the_user_may_not_write_is_refused_before_any_work(fake, tmp_path, monkeypatch, capsys):
    """The same check where chmod cannot show it (root): the system says the directory is not writable."""
    (tmp_path / "locked").mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path / "locked")
    assert _run(out=tmp_path / "locked", force=True) == 2
    assert _run(out=tmp_path / "locked" / "new", force=True) == 2
    err = capsys.readouterr().err
    assert err.count("is not writable") == 2 and "Traceback" not in err and fake.calls == []
    assert not (tmp_path / "locked" / "new").exists()


def test_a_failed_run_leaves_out_as_it_was(fake, tmp_path, capsys):
    def fail():
        raise ValueError("unknown settings ['nope']")

    fake.during = fail
    assert _run(out=tmp_path / "new" / "out") == 2
    assert "unknown settings" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    assert _run(out=tmp_path / "empty") == 2
    assert list((tmp_path / "empty").iterdir()) == []


# --------------------------------------------------------------------------- result and PNG agree


def test_a_no_plot_rerun_removes_the_stale_png(fake, tmp_path):
    assert _run(out=tmp_path) == 0
    assert (tmp_path / "fig3.png").exists()
    fake.tag = 2.0
    assert _run("--no-plot", out=tmp_path, force=True) == 0
    assert _tag(tmp_path) == 2.0 and not (tmp_path / "fig3.png").exists()


@pytest.mark.parametrize("where", ["plot", "savefig"])
def test_ctrl_c_while_plotting_leaves_no_stale_png(fake, tmp_path, monkeypatch, where):
    assert _run(out=tmp_path) == 0
    fake.tag = 2.0
    drawn = plots.plot

    def interrupted(result):
        if where == "plot":
            raise KeyboardInterrupt
        fig = drawn(result)
        fig.savefig = lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)
        return fig

    monkeypatch.setattr(plots, "plot", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(out=tmp_path, force=True)
    assert _tag(tmp_path) == 2.0 and not (tmp_path / "fig3.png").exists()
    npz = json.loads((tmp_path / "fig3.json").read_text())["npz"]
    assert {p.name for p in tmp_path.iterdir()} == {"fig3.json", npz}  # no temporaries, no claim left behind


# --------------------------------------------------------------------------- merge


def _shards(tmp_path, shards, seeds=None):
    dirs = []
    for j, (i, n) in enumerate(shards):
        d = tmp_path / f"shard{j}"
        _result(1.0, shard=(i, n), seed=(seeds or [0] * len(shards))[j]).save(d)
        dirs.append(str(d))
    return dirs


def test_merge_joins_the_shards_and_refuses_a_non_empty_out(fake, tmp_path, capsys):
    dirs = _shards(tmp_path, [(1, 2), (0, 2)])
    out = tmp_path / "all"
    assert main(["merge", *dirs, "--out", str(out)]) == 0, capsys.readouterr().err
    merged = Result.load(out)
    assert [p["index"] for p in merged.points] == [0, 1, 2, 3] and (out / "fig3.png").exists()
    assert main(["merge", *dirs, "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["merge", *dirs, "--out", str(out), "--force", "--no-plot"]) == 0
    assert not (out / "fig3.png").exists()


@pytest.mark.parametrize("case, match", [
    ("incomplete", "missing 2/3"),
    ("seeds", "seed differs: 0 in shard 0/2 vs 1 in shard 1/2"),
    ("same twice", "shards overlap"),
    ("truncated npz", "fig3-"),
    ("json is a list", "not a JSON object"),
    ("json missing a key", "'config' must be a dict"),
])
def test_merge_refuses_what_is_not_one_whole_sweep(case, match, fake, tmp_path, capsys):
    if case == "incomplete":
        dirs = _shards(tmp_path, [(0, 3), (1, 3)])
    elif case == "seeds":
        dirs = _shards(tmp_path, [(0, 2), (1, 2)], seeds=[0, 1])
    elif case == "same twice":
        dirs = _shards(tmp_path, [(0, 2), (1, 2)])
        dirs = [dirs[0], dirs[0], dirs[1]]
    else:
        dirs = _shards(tmp_path, [(0, 2), (1, 2)])
        meta_path = Path(dirs[1]) / "fig3.json"
        meta = json.loads(meta_path.read_text())
        if case == "truncated npz":
            npz = Path(dirs[1]) / meta["npz"]
            npz.write_bytes(npz.read_bytes()[:40])
        elif case == "json is a list":
            meta_path.write_text("[1, 2]")
        else:
            del meta["config"]
            meta_path.write_text(json.dumps(meta))
    out = tmp_path / "all"
    assert main(["merge", *dirs, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err, err
    assert not out.exists()


# --------------------------------------------------------------------------- --shard auto, {shard} in --out, --dry-run


@pytest.fixture
def array_task(monkeypatch):
    """``array_task(id, count, low=0)``: this process is task ``id`` of a Slurm array (no array at first)."""
    for key in ("ID", "COUNT", "MIN", "MAX", "STEP"):
        monkeypatch.delenv(f"SLURM_ARRAY_TASK_{key}", raising=False)

    def task(task_id, count, low=0):
        for key, value in (("ID", task_id), ("COUNT", count), ("MIN", low), ("MAX", low + count - 1), ("STEP", 1)):
            monkeypatch.setenv(f"SLURM_ARRAY_TASK_{key}", str(value))

    return task


def test_shard_auto_runs_the_array_task_s_shard_into_out_with_shard_filled_in(fake, tmp_path, array_task, capsys):
    array_task(4, 4, low=1)  # sbatch --array=1-4: the last task is shard 3/4
    assert _run("--shard", "auto", out=tmp_path / "fig3" / "shard-{shard}") == 0, capsys.readouterr().err
    done = Result.load(tmp_path / "fig3" / "shard-3")
    assert done.provenance["shard"] == [3, 4] and [p["index"] for p in done.points] == [3]
    assert [p.name for p in (tmp_path / "fig3").iterdir()] == ["shard-3"]


def test_shard_auto_outside_a_slurm_array_is_a_message_before_any_work(fake, tmp_path, array_task, capsys):
    assert _run("--shard", "auto", out=tmp_path / "shard-{shard}") == 2
    err = capsys.readouterr().err
    assert "SLURM_ARRAY_TASK_ID is not set" in err and "Slurm array" in err and "Traceback" not in err
    assert fake.calls == [] and list(tmp_path.iterdir()) == []


def test_out_with_a_shard_placeholder_needs_a_shard(fake, tmp_path, capsys):
    assert _run(out=tmp_path / "shard-{shard}") == 2
    err = capsys.readouterr().err
    assert "{shard}" in err and "--shard" in err and fake.calls == [] and list(tmp_path.iterdir()) == []
    assert _run("--shard", "1/2", out=tmp_path / "shard-{shard}") == 0  # an explicit shard fills it in too
    assert Result.load(tmp_path / "shard-1").provenance["shard"] == [1, 2]


def test_a_sharded_run_without_out_writes_results_figure_shard_i(fake, tmp_path, monkeypatch, array_task):
    monkeypatch.chdir(tmp_path)
    array_task(1, 2)
    assert main(["reproduce", "fig3", "--scale", "smoke", "--shard", "auto", "--quiet", "--no-plot"]) == 0
    assert main(["reproduce", "fig3", "--scale", "smoke", "--shard", "0/2", "--quiet", "--no-plot"]) == 0
    assert sorted(p.name for p in (tmp_path / "results" / "fig3").iterdir()) == ["shard-0", "shard-1"]


def test_dry_run_checks_everything_prints_the_plan_and_writes_nothing(fake, tmp_path, array_task, capsys):
    array_task(2, 4)
    out = tmp_path / "new" / "shard-{shard}"
    assert _run("--shard", "auto", "--set", "points=8", "--seed", "5", "--dry-run", out=out) == 0
    said = capsys.readouterr().out
    for part in ("fig3", "scale smoke", "seed 5", "shard 2/4", "points=8", str(tmp_path / "new" / "shard-2"),
                 "nothing computed"):
        assert part in said, (part, said)
    assert fake.calls == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, says", [
    (["--set", "points=0"], "fig3 setting points must be a positive int"),
    (["--set", "nope=1"], "unknown settings ['nope']"),
    (["--seed", "-1"], "seed must be a non-negative int"),
    (["--shard", "2/2"], "shard must be 'I/N' with 0 <= I < N"),
])
def test_dry_run_refuses_what_the_run_would_refuse(fake, tmp_path, capsys, args, says):
    assert _run(*args, "--dry-run", out=tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and fake.calls == [] and list(tmp_path.iterdir()) == []


def test_dry_run_refuses_a_non_empty_out_and_a_shard_of_a_non_sweep(fake, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert _run("--dry-run", out=tmp_path) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["reproduce", "fig4", "--scale", "smoke", "--shard", "0/2", "--dry-run", "--out",
                 str(tmp_path / "x")]) == 2
    assert "is not a sweep" in capsys.readouterr().err and fake.calls == []


def test_a_bad_setting_is_refused_before_out_is_touched(fake, tmp_path, capsys):
    """The run checks its settings as the dry run does, before it claims --out."""
    claimed = []
    fake.during = lambda: claimed.append(True)
    assert _run("--set", "points=0", out=tmp_path / "out") == 2
    assert "points must be a positive int" in capsys.readouterr().err
    assert fake.calls == [] and claimed == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key, option", [("seed", "--seed"), ("shard", "--shard"), ("device", "--device")])
def test_set_of_a_run_option_is_refused_naming_the_option(fake, tmp_path, capsys, key, option):
    """``--set seed=3`` used to reach reproduce twice over (a TypeError traceback)."""
    assert _run("--set", f"{key}=3", out=tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"{key} is not a preset setting; use {option}" in err and "Traceback" not in err
    assert fake.calls == [] and list(tmp_path.iterdir()) == []


def test_population_and_paired_reach_the_experiment(monkeypatch, tmp_path):
    seen = {}

    def reproduce(name, scale, **kwargs):
        seen.update(kwargs)
        return _result(1.0, figure=name)

    monkeypatch.setattr(experiments, "reproduce", reproduce)
    assert main(["reproduce", "fig3", "--scale", "smoke", "--out", str(tmp_path / "a"), "--quiet", "--no-plot",
                 "--population", "3", "--paired"]) == 0
    assert seen["population"] == 3 and seen["paired"] is True
    assert main(["reproduce", "fig3", "--scale", "smoke", "--out", str(tmp_path / "b"), "--quiet", "--no-plot"]) == 0
    assert seen["population"] == "auto"  # the default; paired is then left to the experiment


@pytest.mark.parametrize("args, message", [
    (["--population", "0"], "population must be a positive int"),
    (["--population", "-2"], "population must be a positive int"),
    (["--paired", "--set", "steps=3"], None),  # fine on a sweep (dry run)
])
def test_population_is_checked_before_any_work(args, message, tmp_path, capsys):
    rc = main(["reproduce", "fig3", "--scale", "smoke", "--out", str(tmp_path / "o"), "--quiet", "--dry-run", *args])
    err = capsys.readouterr().err
    if message is None:
        assert rc == 0, err
    else:
        assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_paired_on_an_experiment_without_sweep_points_is_a_message(tmp_path, capsys):
    assert main(["reproduce", "fig4", "--scale", "smoke", "--out", str(tmp_path / "o"), "--quiet", "--paired"]) == 2
    err = capsys.readouterr().err
    assert "--paired: fig4 has no sweep points to pair" in err and "fig1" in err


def test_population_that_is_not_a_number_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "fig3", "--scale", "smoke", "--out", str(tmp_path / "o"), "--population", "x"])
    assert e.value.code == 2 and "--population takes 'auto' or a positive int" in capsys.readouterr().err
