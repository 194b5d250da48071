"""Paired multi-seed experiments (issue 14): ``seeds=`` (an int S for seeds 0..S-1, or a list) and
``paired=`` on every experiment whose findings a chapter states: the Result holds one point per
(seed, grid point), seed-major, each with its ``seed`` and ``point``; within a seed paired points
share their initialisation and batches, across seeds they differ; shards of a multi-seed sweep
merge to the unsharded result, and populations may hold points of different seeds."""

import json

import numpy as np
import pytest

from kadam_edu import experiments
from kadam_edu.__main__ import main
from kadam_edu.experiments import Result, common, edge_of_stability, kadam_cifar, merge, noise, stability
from kadam_edu.validate import MAX_SEED
from test_experiments_population import assert_same_result  # tests/

#: Every experiment that takes seeds: the sweeps, and the two Chapter 5 experiments that state findings.
SEEDED = ["fig1", "fig3", "fig9", "fig10", "fig11", "fig12", "fig2", "eos", "noise_batch_scaling",
          "noise_stability"]
#: The smallest runs the presets allow, a few steps each.
TINY = {
    "fig1": dict(points=2, steps=4, slope_at=1, slope_half=1),
    "fig3": dict(points=2, steps=3),
    "fig2": dict(n_train=64, n_test=64, batch_size=32, eval_batch_size=64),
    "eos": dict(steps=4, measure_every=2, lanczos_iters=2),
    "noise_batch_scaling": dict(kappas=[1, 2], samples=64, evals=2, eval_batches=1),
    "noise_stability": dict(gpt_kappas=[1, 4], gpt_steps=6, toy_kappas=[1, 8], toy_steps=90, toy_off_at=30),
}
BAD_SEEDS = [0, -1, [1, 1], "3", 2.5, [MAX_SEED + 1], True, [], [1.0], (2, -3), {"a": 1}]


def same_arrays(a: Result, b: Result) -> None:
    assert a.arrays.keys() == b.arrays.keys()
    for key in a.arrays:
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key], err_msg=key)


def without_timing(points):
    return [{k: v for k, v in p.items() if k != "seconds"} for p in points]


# --------------------------------------------------------------------------- the arguments
def test_check_seeds_reads_a_count_or_a_list_and_none_is_the_single_seed():
    assert common.check_seeds(None, 0) == [0] and common.check_seeds(None, 7) == [7]
    assert common.check_seeds(3, 0) == [0, 1, 2] and common.check_seeds(np.int64(2), 0) == [0, 1]
    assert common.check_seeds([5, 7], 0) == [5, 7] and common.check_seeds((9, 2), 0) == [9, 2]
    assert common.check_seeds([MAX_SEED], 0) == [MAX_SEED]
    for bad in BAD_SEEDS:
        with pytest.raises(ValueError, match=r"seeds must be .*; got") as info:
            common.check_seeds(bad, 0)
        assert "seeds" in str(info.value)
    with pytest.raises(ValueError, match=r"seeds must be .* given twice: 1"):
        common.check_seeds([1, 2, 1], 0)
    with pytest.raises(ValueError, match=r"seed=5 and seeds=3 .*one of them"):
        common.check_seeds(3, 5)


def test_check_paired_defaults_to_pairing_several_seeds():
    assert common.check_paired(None, [0]) is False and common.check_paired(None, [0, 1]) is True
    assert common.check_paired(False, [0, 1]) is False and common.check_paired(np.bool_(True), [4]) is True
    with pytest.raises(ValueError, match="paired must be"):
        common.check_paired("yes", [0])
    # experiments whose runs always share the base seed's initialisation
    assert common.check_paired(None, [0], always=True) is True and common.check_paired(True, [0, 1], always=True) is True
    with pytest.raises(ValueError, match=r"paired=False.*always"):
        common.check_paired(False, [0, 1], always=True, figure="eos")


class WorkStarted(Exception):
    pass


@pytest.fixture
def no_work(monkeypatch):
    """The first step of real work of the seeded experiments raises WorkStarted."""
    def boom(*args, **kwargs):
        raise WorkStarted

    monkeypatch.setattr(common, "load_shakespeare", boom)
    monkeypatch.setattr(noise, "load_shakespeare", boom)
    monkeypatch.setattr(kadam_cifar, "load_images", boom)
    for module in (common, kadam_cifar, noise, edge_of_stability, stability):
        if hasattr(module, "train"):
            monkeypatch.setattr(module, "train", boom)


@pytest.mark.parametrize("name", SEEDED)
def test_every_seeded_experiment_checks_seeds_before_any_work(name, no_work):
    with pytest.raises(WorkStarted):  # good seeds go through to the work
        experiments.reproduce(name, "smoke", seeds=[3, 4], progress=False)
    for bad in BAD_SEEDS + [[4, 4]]:
        for call in (experiments.reproduce, experiments.plan, experiments.load_or_reproduce):
            with pytest.raises(ValueError, match="seeds"):
                call(name, "smoke", seeds=bad, progress=False)
        with pytest.raises(ValueError, match="seeds must be|given twice"):  # the function itself, too
            experiments.get(name)("smoke", seeds=bad, progress=False)
    with pytest.raises(ValueError, match="seeds"):
        experiments.reproduce(name, "smoke", seed=2, seeds=2, progress=False)


@pytest.mark.parametrize("name", ["fig4", "noise_sde", "level_bounds"])
def test_experiments_without_seeds_refuse_them_and_take_none(name, no_work):
    with pytest.raises(ValueError, match=rf"{name} takes no seeds.*fig1"):
        experiments.reproduce(name, "smoke", seeds=2)
    with pytest.raises(ValueError, match=rf"{name} takes no seeds"):
        experiments.plan(name, "smoke", seeds=[1])
    with pytest.raises(ValueError, match=rf"{name} takes no paired"):
        experiments.plan(name, "smoke", paired=True)
    assert experiments.plan(name, "smoke", seeds=None, paired=None)["seeds"] == [0]


def test_plan_resolves_seeds_and_paired():
    planned = experiments.plan("fig1", "smoke", seeds=3)
    assert planned["seeds"] == [0, 1, 2] and planned["paired"] is True and planned["seed"] == 0
    assert planned["run"] == {}
    planned = experiments.plan("fig1", "smoke", seed=4)
    assert planned["seeds"] == [4] and planned["paired"] is False and planned["seed"] == 4
    assert experiments.plan("eos", "smoke")["paired"] is True  # its runs always share the seed's initialisation
    assert experiments.plan("fig2", "smoke", seeds=[5, 7], paired=False)["paired"] is False


def test_sweep_members_are_seed_major():
    members = common.sweep_members(2, [5, 7], paired=True)
    assert [(m.index, m.seed, m.point) for m in members] == [(0, 5, 0), (1, 5, 1), (2, 7, 0), (3, 7, 1)]
    assert [m.run_seed for m in members] == [common.run_seed(5, 0, True)] * 2 + [common.run_seed(7, 0, True)] * 2
    unpaired = common.sweep_members(2, [5, 7], paired=False)
    assert [m.run_seed for m in unpaired] == [common.point_seed(s, p) for s in (5, 7) for p in (0, 1)]
    # shards split the flat (seed, point) index; populations may hold points of different seeds
    assert common.shard_chunks(3, None, 4, seeds=2) == [[0, 1, 2, 3], [4, 5]]
    assert common.shard_chunks(3, "1/2", 4, seeds=2) == [[1, 3, 5]]
    assert common.shard_chunks(2, None, 4, key=lambda p: p, seeds=2) == [[0, 2], [1, 3]]  # key of the grid point


# --------------------------------------------------------------------------- the sweeps
@pytest.fixture(scope="module")
def fig1_three():
    return experiments.reproduce("fig1", "smoke", seeds=3, population=1, progress=False, **TINY["fig1"])


def test_seeds_3_gives_3_p_points_seed_major_with_seed_and_point(fig1_three):
    r = fig1_three
    assert [(p["index"], p["seed"], p["point"]) for p in r.points] == [
        (0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1), (4, 2, 0), (5, 2, 1)]
    assert r.data["seeds"] == [0, 1, 2] and r.data["grid_size"] == 2 and r.data["sweep_size"] == 6
    assert r.data["paired"] is True and r.provenance["paired"] is True and r.provenance["seed"] == 0
    assert {k.split("/")[0] for k in r.arrays} == {f"p{i}" for i in range(6)}
    # each seed's block holds the same grid
    assert [(p["beta"], p["gamma"]) for p in r.points[:2]] == [(p["beta"], p["gamma"]) for p in r.points[4:]]


def test_paired_points_share_the_initialisation_within_a_seed_and_not_across(fig1_three):
    first = [fig1_three.point_arrays(i)["loss"][0] for i in range(6)]
    assert first[0] == first[1] and first[2] == first[3] and first[4] == first[5]
    assert len({first[0], first[2], first[4]}) == 3
    # seed k's block is the paired single-seed run with seed k
    alone = experiments.reproduce("fig1", "smoke", seed=1, paired=True, population=1, progress=False, **TINY["fig1"])
    for p in (0, 1):
        for key, value in alone.point_arrays(p).items():
            np.testing.assert_array_equal(fig1_three.point_arrays(2 + p)[key], value, err_msg=key)


def test_merge_refuses_shards_of_another_grid_or_seed_list():
    def shard(i, seeds, grid):
        mine = [j for j in range(len(seeds) * grid) if j % 2 == i]
        return Result("fig3", "smoke", {"lr": 1e-3}, provenance={"seed": seeds[0], "shard": [i, 2]},
                      data={"sweep_size": len(seeds) * grid, "seeds": seeds, "grid_size": grid,
                            "points": [{"index": j, "seed": seeds[j // grid], "point": j % grid} for j in mine]},
                      arrays={f"p{j}/loss": np.arange(2.0) + j for j in mine})

    assert [p["seed"] for p in merge([shard(1, [0, 1], 2), shard(0, [0, 1], 2)]).points] == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="data key 'grid_size' differs: 2 in shard 0/2 vs 1 in shard 1/2"):
        merge([shard(0, [0, 1], 2), shard(1, [0, 1, 2, 3], 1)])
    with pytest.raises(ValueError, match=r"data key 'seeds' differs: \[0, 1\] in shard 0/2 vs \[0, 2\]"):
        merge([shard(0, [0, 1], 2), shard(1, [0, 2], 2)])


def test_unpaired_seeds_and_a_seed_list():
    r = experiments.reproduce("fig1", "smoke", seeds=[5, 7], paired=False, population=1, progress=False,
                              **TINY["fig1"])
    assert [p["seed"] for p in r.points] == [5, 5, 7, 7] and r.data["seeds"] == [5, 7]
    assert r.data["paired"] is False and r.provenance["seed"] == 5
    first = [r.point_arrays(i)["loss"][0] for i in range(4)]
    assert len(set(first)) == 4  # every point its own initialisation
    alone = experiments.reproduce("fig1", "smoke", seed=7, population=1, progress=False, **TINY["fig1"])
    np.testing.assert_array_equal(r.point_arrays(3)["max_update"], alone.point_arrays(1)["max_update"])


def test_one_seed_is_the_single_seed_run_with_its_new_keys():
    default = experiments.reproduce("fig1", "smoke", population=1, progress=False, **TINY["fig1"])
    one = experiments.reproduce("fig1", "smoke", seeds=1, population=1, progress=False, **TINY["fig1"])
    assert [(p["seed"], p["point"], p["index"]) for p in default.points] == [(0, 0, 0), (0, 1, 1)]
    assert default.data["seeds"] == [0] and default.data["grid_size"] == 2 and default.data["paired"] is False
    assert without_timing(default.points) == without_timing(one.points) and default.data.keys() == one.data.keys()
    same_arrays(default, one)


def test_shards_of_a_two_seed_sweep_merge_to_the_unsharded_result():
    kwargs = dict(seeds=2, population=1, progress=False, points=3, steps=3)
    whole = experiments.reproduce("fig3", "smoke", **kwargs)
    shards = [experiments.reproduce("fig3", "smoke", shard=f"{i}/4", **kwargs) for i in range(4)]
    assert [[p["index"] for p in s.points] for s in shards] == [[0, 4], [1, 5], [2], [3]]
    assert [s.data["sweep_size"] for s in shards] == [6] * 4
    merged = merge(shards)
    assert without_timing(merged.points) == without_timing(whole.points)
    assert {k: v for k, v in merged.data.items() if k != "points"} == \
        {k: v for k, v in whole.data.items() if k != "points"}
    same_arrays(whole, merged)
    # shards of another seed list are not shards of this sweep
    other = experiments.reproduce("fig3", "smoke", shard="3/4", **dict(kwargs, seeds=[0, 2]))
    with pytest.raises(ValueError, match="data key 'seeds' differs"):
        merge(shards[:3] + [other])


def test_a_population_may_hold_points_of_different_seeds(monkeypatch):
    sizes = []
    real = stability.char_gpt_population_run

    def spy(*args, **kwargs):
        sizes.append(list(kwargs["seeds"]))
        return real(*args, **kwargs)

    kwargs = dict(TINY["fig1"], seeds=2, progress=False, points=3)
    alone = experiments.reproduce("fig1", "smoke", population=1, **kwargs)
    monkeypatch.setattr(stability, "char_gpt_population_run", spy)
    together = experiments.reproduce("fig1", "smoke", population=4, **kwargs)
    auto = experiments.reproduce("fig1", "smoke", **kwargs)  # 4 members on a CPU
    run = common.run_seed
    assert sizes == [[run(0, 0, True)] * 3 + [run(1, 0, True)], [run(1, 0, True)] * 2] * 2  # chunk 0 mixes seeds
    assert together.provenance["population"] == auto.provenance["population"] == 4
    assert_same_result(alone, together)
    assert_same_result(alone, auto)


def test_fig2_runs_its_grid_once_per_seed_and_ranks_per_seed():
    r = experiments.reproduce("fig2", "smoke", seeds=2, progress=False, **TINY["fig2"])
    assert [(p["seed"], p["point"], p["k"]) for p in r.points] == [(0, 0, 1), (0, 1, 2), (1, 0, 1), (1, 1, 2)]
    assert r.data["grid_size"] == 2 and r.data["sweep_size"] == 4 and r.data["seeds"] == [0, 1]
    first = [r.point_arrays(i)["loss"][0] for i in range(4)]
    assert first[0] == first[1] and first[2] == first[3] and first[0] != first[2]  # paired within a seed
    rows = r.data["best"]
    assert [(row["seed"], row["k"]) for row in rows] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert rows[2]["index"] == 2 and rows[2]["best_test_accuracy"] == r.points[2]["best_test_accuracy"]
    single = kadam_cifar.best_by_k(r.points[:2])  # one seed: the rows as before, no seed field
    assert [sorted(row) for row in single] == [sorted(k for k in rows[0] if k != "seed")] * 2


def test_eos_runs_every_lr_per_seed_from_that_seed_s_initialisation():
    kwargs = dict(progress=False, **TINY["eos"])
    r = experiments.reproduce("eos", "smoke", seeds=2, population=1, **kwargs)
    assert [(p["index"], p["seed"], p["point"]) for p in r.points] == [(i, i // 3, i % 3) for i in range(6)]
    assert r.data["seeds"] == [0, 1] and r.data["grid_size"] == 3 and r.data["sweep_size"] == 6
    first = [r.point_arrays(i)["loss"][0] for i in range(6)]
    assert first[0] == first[1] and first[3] == first[4] and first[0] != first[3]  # full-batch: same batch
    alone = experiments.reproduce("eos", "smoke", seed=1, population=1, **kwargs)
    for p in range(3):
        for key, value in alone.point_arrays(p).items():
            np.testing.assert_array_equal(r.point_arrays(3 + p)[key], value, err_msg=key)
    shards = [experiments.reproduce("eos", "smoke", seeds=2, population=1, shard=f"{i}/4", **kwargs)
              for i in range(4)]
    merged = merge(shards)
    assert without_timing(merged.points) == without_timing(r.points)
    same_arrays(r, merged)
    # one population of both seeds' runs; Lanczos (2 products) amplifies the rounding of the batched
    # model to ~1e-5 in the sharpness (as for one seed: 8e-6 at these settings)
    assert_same_result(r, experiments.reproduce("eos", "smoke", seeds=2, population=4, **kwargs), rtol=2e-4)
    with pytest.raises(ValueError, match=r"paired=False"):
        experiments.reproduce("eos", "smoke", seeds=2, paired=False, **kwargs)


def test_noise_batch_scaling_repeats_every_run_per_seed():
    kwargs = dict(progress=False, **TINY["noise_batch_scaling"])
    r = experiments.reproduce("noise_batch_scaling", "smoke", seeds=2, **kwargs)
    assert [(p["seed"], p["point"], p["rule"], p["kappa"]) for p in r.points] == [
        (s, i, rule, k) for s in (0, 1) for i, (rule, k) in enumerate([("sqrt", 1), ("sqrt", 2), ("linear", 1),
                                                                      ("linear", 2)])]
    assert r.data["seeds"] == [0, 1] and r.data["grid_size"] == 4
    alone = experiments.reproduce("noise_batch_scaling", "smoke", seed=1, **kwargs)
    np.testing.assert_allclose(common.arrays_of_seed(r, 1)["sqrt/k2/eval_loss"], alone.arrays["sqrt/k2/eval_loss"],
                               rtol=1e-5)
    assert common.arrays_of_seed(alone, 1).keys() == alone.arrays.keys()
    assert not np.allclose(common.arrays_of_seed(r, 0)["sqrt/k1/eval_loss"], common.arrays_of_seed(r, 1)["sqrt/k1/eval_loss"])
    # the seed floor: each seed's kappa = 1 run against the next seed's
    floor = noise.curve_mismatch(common.arrays_of_seed(r, 0)["sqrt/k1/eval_loss"], common.arrays_of_seed(r, 1)["sqrt/k1/eval_loss"])
    assert r.data["floors"] == pytest.approx([floor, floor]) and r.data["floor"] == pytest.approx(floor)
    per_seed = [np.mean([p["mismatch"] for p in r.points if p["seed"] == s and p["rule"] == "linear"
                         and p["kappa"] > 1]) for s in (0, 1)]
    assert r.data["mismatch"]["linear"] == pytest.approx(np.mean(per_seed))
    with pytest.raises(ValueError, match="seeds"):
        common.arrays_of_seed(r, 3)


def test_noise_stability_repeats_every_run_per_seed():
    kwargs = dict(progress=False, **TINY["noise_stability"])
    r = experiments.reproduce("noise_stability", "smoke", seeds=[2, 3], **kwargs)
    assert [(p["seed"], p["point"], p["model"]) for p in r.points] == [
        (s, i, m) for s in (2, 3) for i, m in enumerate(["gpt", "gpt", "toy", "toy"])]
    alone = experiments.reproduce("noise_stability", "smoke", seed=3, **kwargs)
    assert common.arrays_of_seed(r, 3).keys() == alone.arrays.keys()
    for key, value in alone.arrays.items():
        np.testing.assert_array_equal(common.arrays_of_seed(r, 3)[key], value, err_msg=key)
    assert not np.array_equal(common.arrays_of_seed(r, 2)["toy/k8/max_update"], common.arrays_of_seed(r, 3)["toy/k8/max_update"])
    with pytest.raises(ValueError, match=r"paired=False"):
        experiments.reproduce("noise_stability", "smoke", seeds=2, paired=False, **kwargs)


# --------------------------------------------------------------------------- load_or_reproduce, estimate, CLI
def test_load_or_reproduce_compares_seeds_and_paired_with_the_stored_result(tmp_path, monkeypatch):
    stored = experiments.reproduce("fig3", "smoke", seeds=2, progress=False, points=2, steps=2)
    stored.scale = "paper"  # stands in for a merged paper-scale result
    stored.config = experiments.plan("fig3", "paper", points=2, steps=2)["config"]
    stored.save(tmp_path / "fig3")
    monkeypatch.setenv("KADAM_RESULTS", str(tmp_path))

    def must_not_run(*args, **kwargs):
        raise AssertionError("reproduce was called")

    monkeypatch.setattr(experiments, "reproduce", must_not_run)
    got = experiments.load_or_reproduce("fig3", "paper", seeds=2, points=2, steps=2)
    assert got.data["seeds"] == [0, 1]
    for asked, says in [({}, r"seeds is \[0, 1\] in the stored result but \[0\] here"),
                        ({"seeds": 3}, r"seeds is \[0, 1\] in the stored result but \[0, 1, 2\] here"),
                        ({"seeds": 2, "paired": False}, "paired is True in the stored result but False here")]:
        with pytest.raises(ValueError, match=says):
            experiments.load_or_reproduce("fig3", "paper", points=2, steps=2, **asked)


def test_estimate_scales_with_the_number_of_seeds():
    one, three = experiments.estimate("fig1", "cpu"), experiments.estimate("fig1", "cpu", seeds=3)
    assert [w["runs"] for w in three["workloads"]] == [3 * w["runs"] for w in one["workloads"]]
    assert three["seconds"] > 2 * one["seconds"]
    assert experiments.estimate("fig1", "cpu", seeds=[4]) == one
    stab = experiments.estimate("noise_stability", "cpu", seeds=2)
    assert stab["host_seconds"] == pytest.approx(2 * experiments.estimate("noise_stability", "cpu")["host_seconds"])
    with pytest.raises(ValueError, match="fig4 takes no seeds"):
        experiments.estimate("fig4", "cpu", seeds=2)
    with pytest.raises(ValueError, match="seeds must be"):
        experiments.estimate("fig1", "cpu", seeds=0)


def test_cli_takes_seeds_as_a_count_or_a_comma_list(tmp_path, capsys):
    args = ["reproduce", "fig1", "--scale", "smoke", "--quiet", "--population", "1"]
    tiny = [x for k, v in TINY["fig1"].items() for x in ("--set", f"{k}={v}")]
    assert main([*args, "--seeds", "3", "--out", str(tmp_path / "a"), *tiny]) == 0
    r = Result.load(tmp_path / "a")
    assert r.data["seeds"] == [0, 1, 2] and len(r.points) == 6 and r.data["paired"] is True
    assert (tmp_path / "a" / "fig1.png").is_file()
    assert main([*args, "--seeds", "5,7", "--unpaired", "--no-plot", "--out", str(tmp_path / "b"), *tiny]) == 0
    r = Result.load(tmp_path / "b")
    assert r.data["seeds"] == [5, 7] and r.data["paired"] is False
    assert main([*args, "--seeds", "2", "--paired", "--unpaired", "--out", str(tmp_path / "d")]) == 2
    assert "--paired and --unpaired" in capsys.readouterr().err
    capsys.readouterr()
    assert main([*args, "--seeds", "3", "--dry-run", "--out", str(tmp_path / "c"), *tiny]) == 0
    assert "seeds [0, 1, 2] (paired)" in capsys.readouterr().out
    for bad, says in (("0", "seeds must be"), ("1,1", "given twice"), ("3", "seed=2 and seeds=3")):
        extra = ["--seed", "2"] if bad == "3" else []
        assert main([*args, "--seeds", bad, *extra, "--out", str(tmp_path / "d"), *tiny]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err and not (tmp_path / "d").exists()
    assert main([*args, "--set", "seeds=3", "--out", str(tmp_path / "d")]) == 2
    assert "use --seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([*args, "--seeds", "x", "--out", str(tmp_path / "d")])
    assert e.value.code == 2 and "--seeds takes" in capsys.readouterr().err
    assert main(["reproduce", "fig4", "--scale", "smoke", "--seeds", "2", "--out", str(tmp_path / "d")]) == 2
    assert "fig4 takes no seeds" in capsys.readouterr().err


def test_a_multi_seed_result_saves_and_loads_with_its_keys(fig1_three, tmp_path):
    back = Result.load(fig1_three.save(tmp_path))
    assert back.data["seeds"] == [0, 1, 2] and [p["seed"] for p in back.points] == [0, 0, 1, 1, 2, 2]
    assert json.loads((tmp_path / "fig1.json").read_text())["data"]["grid_size"] == 2
