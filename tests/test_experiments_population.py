"""Populations in the experiments (issue 11): a sweep trained ``population`` points at a time
as one batched model gives the Result of the sequential sweep, point for point."""

import math

import numpy as np
import pytest
import torch

from kadam_edu import bounds, experiments
from kadam_edu.experiments import common, edge_of_stability, kadam_cifar, merge, noise, stability
from kadam_edu.experiments.common import AUTO_MEMBERS, AUTO_MEMBERS_CPU, check_population, chunks, member_bytes, population_size
from kadam_edu.experiments.edge_of_stability import eos
from kadam_edu.experiments.kadam_cifar import fig2
from kadam_edu.experiments.noise import batch_scaling
from kadam_edu.experiments.stability import fig1, fig3, fig9, fig12
from kadam_edu.models import cnn_config, gpt_config

TIMING = {"seconds"}  # wall time: the one field allowed to differ


def assert_close(a, b, path, rtol):
    """Nested JSON-like values equal: floats to ``rtol`` (abs 1e-7 for values near 0), everything else exactly."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            if k not in TIMING:
                assert_close(a[k], b[k], f"{path}.{k}", rtol)
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{path}[{i}]", rtol)
    elif isinstance(a, float) and not isinstance(b, bool):
        assert isinstance(b, float), (path, a, b)
        assert b == pytest.approx(a, rel=rtol, abs=1e-7, nan_ok=True), path
    else:
        assert type(a) is type(b) and a == b, (path, a, b)  # ints (diverged_at, steps_done, index), str, None


def assert_same_result(a, b, *, rtol=1e-5, loose=(), loose_rtol=1e-3):
    """``b`` is ``a`` computed another way: figure, scale, config, data (with every point summary)
    and every array agree; float arrays to ``rtol`` (the arrays named in ``loose``: ``loose_rtol``),
    integer arrays exactly; timing fields are ignored."""
    assert (a.figure, a.scale) == (b.figure, b.scale)
    assert a.config == b.config
    assert_close(a.data, b.data, "data", rtol)
    assert a.arrays.keys() == b.arrays.keys()
    for key, x in a.arrays.items():
        y = b.arrays[key]
        assert x.shape == y.shape and x.dtype == y.dtype, key
        if np.issubdtype(x.dtype, np.floating):
            tol = loose_rtol if key.split("/")[-1] in loose else rtol
            np.testing.assert_allclose(y, x, rtol=tol, atol=0, err_msg=key)
        else:
            np.testing.assert_array_equal(y, x, err_msg=key)


# --------------------------------------------------------------------------- the argument
BAD_POPULATIONS = [0, -1, 2.5, True, "8", "Auto", None, [2]]
POPULATION_FIGURES = ["fig1", "fig3", "fig9", "fig10", "fig11", "fig12", "fig2", "eos", "noise_batch_scaling"]


class WorkStarted(Exception):
    pass


@pytest.fixture
def no_work(monkeypatch):
    """The first step of real work of these experiments raises WorkStarted."""
    def boom(*args, **kwargs):
        raise WorkStarted

    monkeypatch.setattr(common, "load_shakespeare", boom)  # CharTask: fig1-12, eos
    monkeypatch.setattr(noise, "load_shakespeare", boom)
    monkeypatch.setattr(kadam_cifar, "load_images", boom)
    for module in (common, kadam_cifar, noise, edge_of_stability, stability):
        if hasattr(module, "train"):
            monkeypatch.setattr(module, "train", boom)


@pytest.mark.parametrize("name", POPULATION_FIGURES)
def test_every_population_experiment_takes_population_and_checks_it_before_any_work(name, no_work):
    with pytest.raises(WorkStarted):  # a good value goes through to the work
        experiments.reproduce(name, "smoke", population=2, progress=False)
    for bad in BAD_POPULATIONS:
        with pytest.raises(ValueError, match=r"population must be a positive int .* or 'auto'; got"):
            experiments.reproduce(name, "smoke", population=bad, progress=False)
        with pytest.raises(ValueError, match="population must be"):
            experiments.plan(name, "smoke", population=bad)


@pytest.mark.parametrize("name", ["fig1", "fig2"])
def test_paired_must_be_a_bool_before_any_work(name, no_work):
    with pytest.raises(ValueError, match="paired must be"):
        experiments.reproduce(name, "smoke", paired="yes", progress=False)


def test_experiments_that_train_one_model_at_a_time_accept_and_drop_population(no_work):
    """reproduce/plan give population to the experiments that take it and drop it for the others
    (checked all the same), so one call works for every figure."""
    assert experiments.plan("fig4", "smoke", population=8)["run"] == {}
    assert experiments.plan("fig1", "smoke", population=8)["run"] == {"population": 8}
    with pytest.raises(WorkStarted):
        experiments.reproduce("fig4", "smoke", population="auto", progress=False)
    with pytest.raises(ValueError, match="population must be"):
        experiments.reproduce("fig4", "smoke", population=0, progress=False)


def test_auto_off_cuda_is_the_measured_size_per_model_and_an_int_is_taken_as_given():
    cpu = torch.device("cpu")
    assert check_population("auto") == "auto" and check_population(np.int64(3)) == 3
    assert population_size("auto", cpu, bytes_per_member=1) == 1  # no model named
    # off CUDA: what benchmarks/sweep_throughput.py measured fastest on 2 CPU cores
    assert population_size("auto", cpu, bytes_per_member=1, model=gpt_config("cpu")) == AUTO_MEMBERS_CPU["gpt"] == 4
    assert population_size("auto", cpu, bytes_per_member=1, model=cnn_config("cpu")) == AUTO_MEMBERS_CPU["cnn"] == 1
    assert population_size(5, cpu, bytes_per_member=1) == 5
    assert AUTO_MEMBERS > 1


def test_auto_on_cuda_fits_the_members_in_half_the_device_memory(monkeypatch):
    class Props:
        total_memory = 16 * 2**30  # a T4

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props)
    cuda = torch.device("cuda")
    small = member_bytes(gpt_config("cpu"), 32)
    assert population_size("auto", cuda, bytes_per_member=small) == AUTO_MEMBERS
    big = member_bytes(cnn_config("paper"), 512)  # fig2 at paper scale
    assert 1 <= population_size("auto", cuda, bytes_per_member=big) < AUTO_MEMBERS
    assert population_size("auto", cuda, bytes_per_member=big) * big <= 8 * 2**30
    assert population_size("auto", cuda, bytes_per_member=10**12) == 1


def test_member_bytes_grows_with_the_model_and_the_batch():
    assert member_bytes(gpt_config("paper"), 64) > member_bytes(gpt_config("cpu"), 64) > member_bytes(gpt_config("cpu"), 8)
    assert member_bytes(cnn_config("paper"), 512) > member_bytes(cnn_config("smoke"), 512) > 0


def test_chunks_keep_order_and_never_mix_keys():
    assert chunks(range(7), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert chunks([1, 3, 5], 1) == [[1], [3], [5]]
    k = {0: 1, 1: 1, 2: 2, 3: 2, 4: 2, 5: 2, 6: 1}
    assert chunks(range(7), 3, key=k.get) == [[0, 1, 6], [2, 3, 4], [5]]


# --------------------------------------------------------------------------- same result
@pytest.fixture
def populations(monkeypatch):
    """The member counts of the populations the experiments train (so a test sees them happen)."""
    sizes = []

    def spy(module, name, members):
        real = getattr(module, name)

        def wrapped(*args, **kwargs):
            sizes.append(members(args, kwargs))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapped)

    spy(stability, "char_gpt_population_run", lambda a, kw: len(kw["seeds"]))
    spy(noise, "char_gpt_population_run", lambda a, kw: len(kw["seeds"]))
    spy(kadam_cifar, "init_population", lambda a, kw: len(a[1]))
    spy(edge_of_stability, "init_population", lambda a, kw: len(a[1]))
    return sizes


@pytest.fixture(scope="module")
def fig1_sequential():
    return fig1("smoke", population=1, progress=False)


def test_fig1_is_the_same_result_whatever_the_population(fig1_sequential, populations):
    together = fig1("smoke", population=3, progress=False)
    assert populations == [3]
    assert_same_result(fig1_sequential, together)
    assert fig1_sequential.provenance["population"] == 1 and together.provenance["population"] == 3
    assert together.provenance["paired"] is False and together.data["paired"] is False
    assert "population" not in together.config  # the result does not depend on it


def test_fig1_points_that_diverge_do_so_at_the_same_step_in_a_population(populations):
    """lr = 1e6: the first step (u_0 = sign(g)) throws every weight ~1e6 from its start and step 1
    overflows for every point. Beyond step 1 divergence at this lr is chaotic (KAdam's eps = 1e-30
    makes the update scale-free: a gradient that rounds to 0 one way and 1e-20 the other moves a
    weight by lr), so no single-lr fig1 run at smoke scale has a point that diverges reproducibly
    next to one that does not; fig2's test below has both (per-point lr)."""
    kwargs = dict(lr=1e6, points=3, steps=3, slope_at=1, slope_half=1, progress=False)
    alone, together = fig1("smoke", population=1, **kwargs), fig1("smoke", population=3, **kwargs)
    assert [p["diverged_at"] for p in alone.points] == [1, 1, 1]
    assert all(len(alone.point_arrays(i)["loss"]) == 1 for i in range(3))
    assert populations == [3]
    assert_same_result(alone, together)


def test_fig1_shards_cut_their_own_points_into_populations(fig1_sequential, populations):
    """Shard 0/2 holds points 0 and 2 (one population of 2), shard 1/2 point 1 (alone): merged,
    they are the whole sequential sweep, and merge takes shards that used different populations."""
    shards = [fig1("smoke", shard="0/2", population=2, progress=False),
              fig1("smoke", shard="1/2", population=4, progress=False)]
    assert [[p["index"] for p in s.points] for s in shards] == [[0, 2], [1]]
    assert populations == [2]
    merged = merge(shards)
    assert_same_result(fig1_sequential, merged)


def test_paired_points_share_their_initialisation_and_batches(populations):
    """paired=True: every point starts from point 0's weights and reads its batches, so the loss
    before the first update is the same at every point (and differs without pairing); the
    population reproduces the paired sequential sweep."""
    kwargs = dict(points=3, progress=False)
    alone, together = fig3("smoke", paired=True, population=1, **kwargs), fig3("smoke", paired=True, population=3, **kwargs)
    first = [alone.point_arrays(i)["loss"][0] for i in range(3)]
    assert first[0] == first[1] == first[2]
    unpaired = fig3("smoke", population=1, **kwargs)
    assert len({unpaired.point_arrays(i)["loss"][0] for i in range(3)}) == 3
    assert alone.data["paired"] is True and alone.provenance["paired"] is True
    assert populations == [3]
    assert_same_result(alone, together)
    # paired point 0 is the unpaired point 0 (the shared seed is point 0's)
    np.testing.assert_array_equal(alone.point_arrays(0)["loss"], unpaired.point_arrays(0)["loss"])


def test_fig12_gives_each_member_its_own_annealing_schedule(populations):
    alone, together = fig12("smoke", population=1, progress=False), fig12("smoke", population=2, progress=False)
    assert populations == [2]
    assert_same_result(alone, together)
    for p in together.points:  # Eq. 15 with the point's own C, member by member
        lr = together.point_arrays(p["index"])["lr"]
        expected = bounds.annealed_lr(np.arange(len(lr)), together.config["lr"], p["beta"], p["gamma"])
        np.testing.assert_allclose(lr, expected, rtol=1e-12)
    lrs = [together.point_arrays(p["index"])["lr"] for p in together.points]
    assert not np.allclose(lrs[0], lrs[1])


def test_fig9_evaluates_each_member_on_its_own_validation_batches(populations):
    alone, together = fig9("smoke", population=1, progress=False), fig9("smoke", population=2, progress=False)
    assert populations == [2]
    assert_same_result(alone, together)
    evals = [together.point_arrays(p["index"])["eval_loss"] for p in together.points]
    assert len(evals[0]) == together.config["steps"] // together.config["eval_every"]
    assert not np.allclose(evals[0], evals[1])
    assert all(p["best_test_loss_30"] == pytest.approx(min(e)) for p, e in zip(together.points, evals))


FIG2_DIVERGING = dict(lrs=[1e-3, 1e12], strategies=["inverse_exp", "naive"])


def test_fig2_is_the_same_result_whatever_the_population_divergence_included(populations):
    """Six points: k = 1 at two lrs, k = 2 under two strategies at two lrs. lr = 1e12 overflows at
    step 1 whatever the rounding; lr = 1e-3 trains to the end. population=3 cuts them into [0, 1]
    (k = 1), [2, 3, 4] and [5] (k = 2): a population where members diverge next to members that
    do not, with per-member levels, lr, weight decay and schedule. The max-updates are compared
    to 1e-3: they are maxima over parameters of m/sqrt(v), and a few ReLU units that are almost
    dead have gradients ~1e-6 of the others', whose 1e-5 rounding differences (grouped against
    ordinary convolutions) the near-cancelling moments amplify."""
    alone = fig2("smoke", population=1, progress=False, **FIG2_DIVERGING)
    assert populations == []
    together = fig2("smoke", population=3, progress=False, **FIG2_DIVERGING)
    assert populations == [2, 3]
    diverged = [p["diverged_at"] for p in alone.points]
    assert diverged == [None, 1, None, 1, None, 1]
    assert together.provenance["population"] == 3
    assert_same_result(alone, together, loose=("max_update", "level_max_updates"))
    for p in together.points:
        assert p["level_gamma"] == [lv.gamma for lv in kadam_cifar.kadam_levels(
            p["k"], beta=together.config["beta"], gamma=together.config["gamma"], strategy=p["strategy"])]


def test_evaluate_accuracy_of_a_population_is_each_member_s():
    from kadam_edu.data import synthetic_cifar10
    from kadam_edu.population import init_population

    data = synthetic_cifar10(64, 96, seed=0)
    pop = init_population(cnn_config("smoke"), [3, 4, 5])
    acc = kadam_cifar.evaluate_accuracy(pop, data, 40)
    assert isinstance(acc, np.ndarray) and acc.shape == (3,)
    assert list(acc) == [kadam_cifar.evaluate_accuracy(pop.member(e), data, 40) for e in range(3)]


def test_eos_is_the_same_result_whatever_the_population(populations):
    """Two full-batch runs and one minibatch run (all below the edge at smoke scale, where a run is
    stable), measured member by member; past the edge a run amplifies any rounding, as it should."""
    kwargs = dict(lrs=[1e-3, 3e-3], minibatch_lrs=[1e-3], progress=False)
    alone, together = eos("smoke", population=1, **kwargs), eos("smoke", population=3, **kwargs)
    assert populations == [3]
    assert together.provenance["population"] == 3
    assert all(len(together.point_arrays(i)["sharpness"]) == 3 for i in range(3))
    assert_same_result(alone, together)


def test_batch_scaling_shares_a_population_where_batch_and_eps_agree(populations):
    """kappa = 1 and the seed floor run together (one batch size, one eps); kappa = 2 alone."""
    kwargs = dict(kappas=[1, 2], samples=128, evals=2, progress=False)
    alone, together = batch_scaling("smoke", population=1, **kwargs), batch_scaling("smoke", population=4, **kwargs)
    assert populations == [2]
    assert together.provenance["population"] == 4
    assert math.isfinite(together.data["floor"])
    assert_same_result(alone, together, rtol=1e-4)
