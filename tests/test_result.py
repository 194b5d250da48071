"""Result files on disk (atomic saves, checksums, clear load errors) and merging the shards of a sweep."""

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from kadam_edu.experiments import Result, merge
from kadam_edu.experiments.common import sweep

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "cpu"


def _result(tag: float, figure="fig3", n=4) -> Result:
    """A small hand-made result whose every value depends on ``tag``."""
    return Result(
        figure=figure, scale="smoke", config={"lr": 1e-3, "tag": tag},
        data={"points": [{"index": i, "value": tag + i} for i in range(n)]},
        arrays={f"p{i}/loss": np.full(5, tag + i) for i in range(n)},
        provenance={"seed": 0, "shard": None},
    )


def _same(a: Result, b: Result) -> bool:
    return (a.figure, a.scale, a.config, a.data) == (b.figure, b.scale, b.config, b.data) and a.arrays.keys() == \
        b.arrays.keys() and all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


# --------------------------------------------------------------------------- saving


def test_save_names_its_npz_by_content_and_records_the_checksum(tmp_path):
    path = _result(1.0).save(tmp_path)
    meta = json.loads(path.read_text())
    npz = tmp_path / meta["npz"]
    assert path == tmp_path / "fig3.json"
    assert meta["npz_sha256"] == hashlib.sha256(npz.read_bytes()).hexdigest()
    assert meta["npz"] == f"fig3-{meta['npz_sha256'][:12]}.npz"
    assert _same(Result.load(tmp_path), _result(1.0))
    _result(2.0).save(tmp_path)  # a second save replaces the pair and leaves no old npz behind
    assert _files(tmp_path) == {"fig3.json", json.loads(path.read_text())["npz"]}
    assert _same(Result.load(tmp_path), _result(2.0))


def test_save_leaves_other_figures_alone(tmp_path):
    _result(1.0, figure="fig1").save(tmp_path)
    (tmp_path / "fig1.png").write_bytes(b"png")
    (tmp_path / "notes.txt").write_text("mine")
    before = _files(tmp_path)
    _result(2.0).save(tmp_path)
    _result(3.0).save(tmp_path)
    assert before <= _files(tmp_path)
    assert _same(Result.load(tmp_path, figure="fig1"), _result(1.0, figure="fig1"))
    assert _same(Result.load(tmp_path, figure="fig3"), _result(3.0))


class _Killed(BaseException):
    """A kill at that point: not an Exception, so nothing may catch it and carry on."""


@pytest.mark.parametrize("mode", ["enospc", "kill"])
def test_a_save_that_fails_at_any_step_leaves_a_result_that_loads(mode, tmp_path, monkeypatch):
    """Fault injection: fail the second save at each write / fsync / rename / unlink in turn."""
    steps = ("write", "fsync", "replace", "unlink")
    real = {name: getattr(os, name) for name in steps}
    calls = []

    def recorder(name):
        def call(*args, **kwargs):
            calls.append((name, args))
            return real[name](*args, **kwargs)
        return call

    with monkeypatch.context() as m:  # a clean run: which primitive calls does a save make?
        _result(1.0).save(tmp_path / "probe")
        for name in steps:
            m.setattr(os, name, recorder(name))
        _result(2.0).save(tmp_path / "probe")
    commit = next(j for j, (name, args) in enumerate(calls) if name == "replace" and str(args[1]).endswith(".json"))
    assert {name for name, _ in calls} == set(steps) and len(calls) >= 8, calls

    for fail_at in range(len(calls)):
        directory = tmp_path / f"at{fail_at}"
        _result(1.0).save(directory)
        counter = iter(range(10**6))
        dead = []

        def faulty(name):
            def call(*args, **kwargs):
                if dead:  # killed: nothing more reaches the disk
                    raise _Killed
                if next(counter) != fail_at:
                    return real[name](*args, **kwargs)
                if name == "write":  # the disk fills up (or the kill comes) half-way through the file
                    real["write"](args[0], bytes(args[1])[: len(args[1]) // 2])
                if mode == "kill":
                    dead.append(name)
                    raise _Killed
                raise OSError(errno.ENOSPC, "No space left on device")
            return call

        with monkeypatch.context() as m:
            for name in steps:
                m.setattr(os, name, faulty(name))
            try:
                _result(2.0).save(directory)
            except (OSError, _Killed):
                pass
        where = (fail_at, calls[fail_at][0], str(calls[fail_at][1][-1]))
        back = Result.load(directory)  # always loads: the previous result until the commit, then the new one
        assert _same(back, _result(1.0) if fail_at <= commit else _result(2.0)), where
        if mode == "enospc" and fail_at <= commit:  # a failed save cleans up after itself
            assert not [n for n in _files(directory) if n.endswith(".tmp")], (where, _files(directory))
        _result(3.0).save(directory)  # the next save cleans whatever a kill left behind
        assert _same(Result.load(directory), _result(3.0))
        meta = json.loads((directory / "fig3.json").read_text())
        assert _files(directory) == {"fig3.json", meta["npz"]}, (where, _files(directory))


def test_bad_input_to_save_changes_nothing(tmp_path):
    _result(1.0).save(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    bad_config = _result(2.0)
    bad_config.config["when"] = object()
    with pytest.raises(TypeError):
        bad_config.save(tmp_path)
    for figure in ("../fig3", "a/b", "", ".hidden"):
        with pytest.raises(ValueError, match="figure"):
            _result(2.0, figure=figure).save(tmp_path)
    objects = _result(2.0)
    objects.arrays["p0/loss"] = np.array([{"a": 1}], dtype=object)
    with pytest.raises(ValueError, match="p0/loss"):
        objects.save(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    with pytest.raises(ValueError, match="not a directory"):
        _result(2.0).save(tmp_path / "fig3.json")


# --------------------------------------------------------------------------- loading


def test_old_json_with_a_new_npz_is_refused(tmp_path):
    """A JSON and an npz that were not written together: the checksum tells."""
    _result(1.0).save(tmp_path / "a")
    _result(2.0).save(tmp_path / "b")
    npz_a = tmp_path / "a" / json.loads((tmp_path / "a" / "fig3.json").read_text())["npz"]
    npz_b = tmp_path / "b" / json.loads((tmp_path / "b" / "fig3.json").read_text())["npz"]
    shutil.copyfile(npz_b, npz_a)
    with pytest.raises(ValueError, match=r"sha256.*fig3\.json|fig3\.json.*sha256"):
        Result.load(tmp_path / "a")


def test_truncated_or_missing_npz_is_a_clear_error(tmp_path):
    _result(1.0).save(tmp_path)
    npz = tmp_path / json.loads((tmp_path / "fig3.json").read_text())["npz"]
    npz.write_bytes(npz.read_bytes()[:50])
    with pytest.raises(ValueError, match=npz.name):
        Result.load(tmp_path)
    npz.unlink()
    with pytest.raises(FileNotFoundError, match=npz.name):
        Result.load(tmp_path)


def test_legacy_layout_still_loads(tmp_path):
    """<figure>.json + <figure>.npz without a checksum, as reference/cpu/fig1.json was written."""
    ref = Result.load(REFERENCE, figure="fig1")
    assert ref.figure == "fig1" and ref.scale == "cpu" and len(ref.points) == ref.config["points"]
    assert ref.point_arrays(0)["max_update"].shape == (ref.config["steps"],)
    assert Result.load(REFERENCE / "fig1.json").points == ref.points
    legacy = _result(1.0)
    meta = {"figure": "fig3", "scale": "smoke", "config": legacy.config, "provenance": legacy.provenance,
            "data": legacy.data, "arrays": sorted(legacy.arrays)}
    (tmp_path / "fig3.json").write_text(json.dumps(meta))
    np.savez_compressed(tmp_path / "fig3.npz", **legacy.arrays)
    assert _same(Result.load(tmp_path), legacy)
    (tmp_path / "fig3.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="fig3.npz"):
        Result.load(tmp_path)
    np.savez_compressed(tmp_path / "fig3.npz", **legacy.arrays)
    _result(2.0).save(tmp_path)  # re-saving in the new layout removes the legacy npz
    assert "fig3.npz" not in _files(tmp_path) and _same(Result.load(tmp_path), _result(2.0))


@pytest.mark.parametrize("text, match", [
    ("[1, 2, 3]", "not a JSON object"),
    ("garbage{", "not valid JSON"),
    ("\xff\xfe", "not valid JSON"),
    (json.dumps({"figure": "fig3", "scale": "smoke", "config": {}, "data": {}, "arrays": []}), "provenance"),
    (json.dumps({"figure": "fig3", "scale": "smoke", "config": [], "data": {}, "provenance": {}, "arrays": []}),
     "config"),
    (json.dumps({"figure": "fig3", "scale": "smoke", "config": {}, "data": {}, "provenance": {}, "arrays": [],
                 "npz": "../elsewhere/fig3-000000000000.npz", "npz_sha256": "0" * 64}), "npz"),
    (json.dumps({"figure": "fig3", "scale": "smoke", "config": {}, "data": {}, "provenance": {}, "arrays": [],
                 "npz": "fig3-000000000000.npz"}), "npz_sha256"),
])
def test_a_broken_json_is_a_clear_error_naming_the_file(text, match, tmp_path):
    (tmp_path / "fig3.json").write_text(text, encoding="latin-1")
    with pytest.raises(ValueError, match=match) as info:
        Result.load(tmp_path)
    assert "fig3.json" in str(info.value)


def test_load_of_nothing_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Result.load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no result"):
        Result.load(tmp_path)  # an empty directory
    _result(1.0).save(tmp_path)
    with pytest.raises(FileNotFoundError, match="fig1.json"):
        Result.load(tmp_path, figure="fig1")
    _result(1.0, figure="fig1").save(tmp_path)
    with pytest.raises(ValueError, match="figure="):
        Result.load(tmp_path)
    (tmp_path / "fig1.json").rename(tmp_path / "other.json")
    with pytest.raises(ValueError, match="fig1"):
        Result.load(tmp_path / "other.json", figure="other")


def test_leftover_temporaries_are_ignored_by_load(tmp_path):
    _result(1.0).save(tmp_path)
    (tmp_path / ".fig3.json~0badf00d.tmp").write_text("[half a json")
    (tmp_path / "fig3-0123456789ab.npz").write_bytes(b"an orphan")
    assert _same(Result.load(tmp_path), _result(1.0))


# --------------------------------------------------------------------------- merging


def _shard(i, n, size=5, *, seed=0, lr=1e-3, figure="fig3", points=None, data=None):
    """Shard i/n of a hand-made sweep of ``size`` points."""
    points = [j for j in range(size) if j % n == i] if points is None else points
    return Result(
        figure=figure, scale="smoke", config={"lr": lr, "points": size},
        data={"reference": [0.999, 0.9], "sweep_size": size, **(data or {}),
              "points": [{"index": j, "beta": 0.9 + j / 100} for j in points]},
        arrays={f"p{j}/loss": np.arange(3.0) + j for j in points},
        provenance={"seed": seed, "shard": [i, n], "device": f"dev{i}", "created": f"t{i}"},
    )


def test_merge_joins_a_complete_set_and_records_what_it_merged():
    merged = merge([_shard(2, 3), _shard(0, 3), _shard(1, 3)])
    assert [p["index"] for p in merged.points] == [0, 1, 2, 3, 4]
    assert all(np.array_equal(merged.arrays[f"p{j}/loss"], np.arange(3.0) + j) for j in range(5))
    assert merged.data["sweep_size"] == 5 and merged.data["reference"] == [0.999, 0.9]
    prov = merged.provenance
    assert prov["seed"] == 0 and prov["shard"] is None
    assert [m["shard"] for m in prov["merged_from"]] == [[0, 3], [1, 3], [2, 3]]
    assert [m["device"] for m in prov["merged_from"]] == ["dev0", "dev1", "dev2"]


def test_merge_refuses_an_incomplete_set():
    with pytest.raises(ValueError, match="missing.*2/3"):
        merge([_shard(0, 3), _shard(1, 3)])
    with pytest.raises(ValueError, match="different splits"):
        merge([_shard(0, 2), _shard(1, 3), _shard(2, 3)])
    cut = _shard(1, 2, points=[1])  # shard 1/2 of 5 points must hold 1 and 3
    with pytest.raises(ValueError, match=r"shard 1/2 holds points \[1\].*\[1, 3\]"):
        merge([_shard(0, 2), cut])


def test_merge_refuses_overlaps():
    with pytest.raises(ValueError, match="shards overlap: shard 0/2 is given twice"):
        merge([_shard(0, 2), _shard(0, 2), _shard(1, 2)])
    with pytest.raises(ValueError, match="shard 1/2 holds points"):
        merge([_shard(0, 2), _shard(1, 2, points=[1, 2, 3])])


def test_merge_refuses_shards_of_different_runs():
    with pytest.raises(ValueError, match="seed differs: 0 in shard 0/2 vs 1 in shard 1/2"):
        merge([_shard(0, 2), _shard(1, 2, seed=1)])
    with pytest.raises(ValueError, match="config key 'lr' differs: 0.001 in shard 0/2 vs 0.01 in shard 1/2"):
        merge([_shard(0, 2), _shard(1, 2, lr=0.01)])
    with pytest.raises(ValueError, match="data key 'dataset' differs"):
        merge([_shard(0, 2, data={"dataset": "CIFAR-10"}), _shard(1, 2, data={"dataset": "SYNTHETIC"})])
    with pytest.raises(ValueError, match="sweep_size"):
        merge([_shard(0, 2), _shard(1, 2, data={"sweep_size": 6})])
    with pytest.raises(ValueError, match="figure differs"):
        merge([_shard(0, 2), _shard(1, 2, figure="fig1")])


def test_merge_refuses_arrays_that_belong_to_another_shard():
    a, b = _shard(0, 2), _shard(1, 2)
    a.arrays, b.arrays = b.arrays, a.arrays  # the npz swapped between the shards
    with pytest.raises(ValueError, match="shard 0/2.*p1/loss"):
        merge([a, b])


def test_merge_refuses_what_is_not_a_shard():
    with pytest.raises(ValueError, match="at least one"):
        merge([])
    with pytest.raises(TypeError, match="item 1"):
        merge([_shard(0, 2), {"figure": "fig3"}])
    whole = _shard(0, 1)
    whole.provenance["shard"] = None
    with pytest.raises(ValueError, match="not a shard"):
        merge([whole])


def test_merge_of_shards_saved_and_loaded(tmp_path):
    for i in range(2):
        _shard(i, 2).save(tmp_path / str(i))
    merged = merge([Result.load(tmp_path / str(i)) for i in range(2)])
    assert [p["index"] for p in merged.points] == list(range(5))
    # an npz swapped between the two shard directories is caught when loading, by its checksum
    meta = [json.loads((tmp_path / str(i) / "fig3.json").read_text()) for i in range(2)]
    shutil.copyfile(tmp_path / "1" / meta[1]["npz"], tmp_path / "0" / meta[0]["npz"])
    with pytest.raises(ValueError, match="sha256"):
        Result.load(tmp_path / "0")


def test_sweep_records_its_size_in_every_shard():
    def run_point(i, beta, gamma):
        return {"index": i, "beta": beta, "gamma": gamma}, {"x": np.array([beta])}

    betas, gammas = [0.9, 0.95, 0.99], [0.8, 0.85, 0.9]
    cpu = torch.device("cpu")
    shards = [sweep("fig3", "smoke", {"points": 3}, betas, gammas, run_point, seed=0, device=cpu, shard=s)
              for s in ("0/2", "1/2")]
    assert [s.data["sweep_size"] for s in shards] == [3, 3]
    assert [p["index"] for p in merge(shards).points] == [0, 1, 2]
    with pytest.raises(ValueError, match="missing"):
        merge(shards[:1])

