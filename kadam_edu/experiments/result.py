"""Result objects: what an experiment returns, saves, loads and hands to ``kadam_edu.plots``.

A :class:`Result` is JSON (figure, scale, config, provenance and small summaries in ``data``)
plus an npz of arrays. Sweeps store one entry per point in ``data["points"]`` (each with its
``index`` along the sweep), the number of points of the whole sweep in ``data["sweep_size"]``
and each point's arrays under ``"p{index}/..."``; shards of a sweep are joined by :func:`merge`.
A sweep run once per base seed (``seeds``) is one flat sweep of seeds x grid points, seed-major:
each point also records its ``seed`` and ``point`` (its place in the grid), and ``data`` the
``seeds`` and the ``grid_size`` (results written before seeds lack these keys).

On disk a result is ``<figure>.json`` and the npz it names, ``<figure>-<sha12>.npz`` (the first
12 hex digits of its sha256, which the JSON records in full and :meth:`Result.load` checks). A
save writes the npz, then the JSON, each into a temporary sibling that is fsynced and renamed;
the JSON's rename is the commit: until then the previous JSON and its npz are untouched, after
it the previous npz is removed. A save that fails or is killed at any point leaves a result that
loads: the previous one or the new one, never a mix. One writer per figure and directory at a
time (the CLI makes sure of it). Results written before checksums (``<figure>.json`` +
``<figure>.npz``, e.g. ``reference/cpu/fig1.json``) still load.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import platform
import re
import secrets
import subprocess
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = ["Result", "provenance", "merge", "parse_shard", "slurm_shard"]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(*, scale: str, device: torch.device, seed: int, shard: tuple[int, int] | None = None) -> dict:
    """Where and how a result was computed."""
    from kadam_edu import __version__

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {
        "scale": scale,
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kadam_edu": __version__,
        "git_commit": _git_commit(),
        "seed": seed,
        "shard": None if shard is None else list(shard),
        # TF32 in CUDA matmuls / cuDNN convolutions (kadam_edu.scale.float32_precision); a CPU has none
        "tf32": device.type == "cuda" and bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None  # JSON has no inf/nan; a missing value is None
    return x


_FIGURE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_META = {"figure": str, "scale": str, "config": dict, "data": dict, "provenance": dict, "arrays": list}


def _fsync_dir(directory: Path) -> None:
    """Make the renames and removals in ``directory`` durable (POSIX; Windows cannot open a directory)."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` all at once: a temporary sibling ``.<name>~<hex8>.tmp``, written
    and fsynced, renamed over ``path``, then the directory fsynced. On any failure before the
    rename ``path`` is untouched and the temporary is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}~{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _is_leftover(name: str, figure: str, keep: str) -> bool:
    """Whether ``name`` is a file of ``figure`` that its current JSON (naming npz ``keep``) does not use:
    an older npz, the legacy ``<figure>.npz``, or a temporary of an interrupted write."""
    f = re.escape(figure)
    if re.fullmatch(rf"{f}(-[0-9a-f]{{12}})?\.npz", name):
        return name != keep
    return re.fullmatch(rf"\.{f}(-[0-9a-f]{{12}}\.npz|\.json|\.png)~[0-9a-f]{{8}}\.tmp", name) is not None


def _check_figure(figure) -> None:
    if not isinstance(figure, str) or not _FIGURE_NAME.fullmatch(figure):
        raise ValueError(f"figure must be a file-name-safe name (letters, digits, '_', '.', '-', not starting "
                         f"with '.' or '-'); got {figure!r}")


@dataclass
class Result:
    """figure, scale, config (settings used), data (JSON summaries), arrays (npz), provenance."""

    figure: str
    scale: str
    config: dict
    data: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    @property
    def points(self) -> list[dict]:
        return self.data.get("points", [])

    def point_arrays(self, index: int) -> dict[str, np.ndarray]:
        """The arrays of sweep point ``index`` (keys without the ``p{index}/`` prefix)."""
        head = f"p{index}/"
        return {k[len(head):]: v for k, v in self.arrays.items() if k.startswith(head)}

    def table(self, columns, *, fmt=None, headers=None, rows=None, seed=None, over_seeds=False) -> str:
        """An aligned plain-text table of the point summaries' ``columns`` (or of ``rows``, mappings).

        ``fmt``: a format spec per column, e.g. ``{"C": "+.3f"}`` (default ``.4g`` for floats);
        ``headers``: a header per column; None prints as ``--``. ``seed``: that seed's points only;
        ``over_seeds``: one row per grid point, each number ``median [lo, hi]`` over the seeds (one
        value where they agree). ``seed`` and ``point`` are columns of every result, a legacy one
        too. See :func:`kadam_edu.experiments.analysis.result_table`.
        """
        from kadam_edu.experiments.analysis import result_table  # analysis imports this module

        return result_table(self, columns, fmt=fmt, headers=headers, rows=rows, seed=seed, over_seeds=over_seeds)

    def save(self, path) -> Path:
        """Write ``<path>/<figure>.json`` and the npz it names into directory ``path`` (created if
        missing), atomically (see the module docstring); return the JSON's path.

        Everything is checked and serialised before the disk is touched: a figure name that is
        not a plain file name or an object array is a ValueError, a config that JSON cannot hold
        a TypeError, and either leaves ``path`` as it was.
        """
        _check_figure(self.figure)
        directory = Path(path)
        arrays = {}
        for key, value in self.arrays.items():
            arr = np.asarray(value)
            if not isinstance(key, str) or arr.dtype == object:
                raise ValueError(f"arrays must map names to numeric arrays; {key!r} is {arr.dtype} "
                                 "(an npz cannot hold Python objects without pickle)")
            arrays[key] = arr
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        blob = buf.getvalue()
        digest = hashlib.sha256(blob).hexdigest()
        npz = f"{self.figure}-{digest[:12]}.npz"
        meta = {
            "figure": self.figure,
            "scale": self.scale,
            "config": _jsonable(self.config),
            "provenance": _jsonable(self.provenance),
            "data": _jsonable(self.data),
            "arrays": sorted(arrays),
            "npz": npz,
            "npz_sha256": digest,
        }
        text = json.dumps(meta, indent=1, allow_nan=False).encode()
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"cannot save into {directory}: it is a file, not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        json_path = directory / f"{self.figure}.json"
        write_atomic(directory / npz, blob)
        write_atomic(json_path, text)  # the commit
        try:  # best effort: a leftover is ignored by load and removed by the next save
            for leftover in directory.iterdir():
                if _is_leftover(leftover.name, self.figure, npz):
                    os.unlink(leftover)
            _fsync_dir(directory)
        except OSError:
            pass
        return json_path

    @classmethod
    def load(cls, path, figure: str | None = None) -> "Result":
        """Load from a JSON file, or from a directory (with ``figure`` when it holds several).

        A missing file is a FileNotFoundError; a JSON that is not a result, an npz that does not
        match the checksum its JSON records, or one that is not a readable npz is a ValueError
        naming the file.
        """
        path = Path(path)
        if path.is_dir():
            if figure is None:
                found = sorted(path.glob("*.json"))
                if not found:
                    raise FileNotFoundError(f"no result in {path}: it holds no <figure>.json")
                if len(found) > 1:
                    raise ValueError(
                        f"{path} holds {len(found)} results ({[f.stem for f in found]}); pass figure=NAME"
                    )
                path = found[0]
            else:
                path = path / f"{figure}.json"
        if not path.is_file():
            raise FileNotFoundError(f"no result at {path}: no such file")
        meta = _read_meta(path)
        if figure is not None and meta["figure"] != figure:
            raise ValueError(f"{path} holds figure {meta['figure']!r}, not {figure!r}")
        npz_path = path.parent / meta.get("npz", path.with_suffix(".npz").name)
        if not npz_path.is_file():
            raise FileNotFoundError(f"{path} keeps its arrays in {npz_path.name}, which is missing")
        blob = npz_path.read_bytes()
        if "npz_sha256" in meta and hashlib.sha256(blob).hexdigest() != meta["npz_sha256"]:
            raise ValueError(f"{npz_path.name} does not match the sha256 that {path} records: the two files "
                             "were not written together (or the npz was changed or cut short)")
        try:
            with np.load(io.BytesIO(blob)) as npz_file:
                arrays = {k: npz_file[k] for k in npz_file.files}
        except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, KeyError) as e:
            raise ValueError(f"{npz_path} is not a readable npz ({type(e).__name__}: {e})") from None
        if sorted(arrays) != sorted(meta["arrays"]):
            raise ValueError(f"{npz_path} holds arrays {sorted(arrays)} but {path} lists {sorted(meta['arrays'])}")
        return cls(
            figure=meta["figure"], scale=meta["scale"], config=meta["config"], data=meta["data"],
            arrays=arrays, provenance=meta["provenance"],
        )


def _read_meta(path: Path) -> dict:
    """The JSON of a result, checked: an object with the keys and types :meth:`Result.save` writes."""
    try:
        meta = json.loads(path.read_bytes())
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a result: its JSON is a {type(meta).__name__}, not a JSON object")
    for key, kind in _META.items():
        if not isinstance(meta.get(key), kind):
            got = "missing" if key not in meta else f"a {type(meta[key]).__name__}"
            raise ValueError(f"{path} is not a result: {key!r} must be a {kind.__name__}, it is {got}")
    if "npz" in meta or "npz_sha256" in meta:
        npz, digest = meta.get("npz"), meta.get("npz_sha256")
        if not (isinstance(npz, str) and npz.endswith(".npz") and Path(npz).name == npz and "\\" not in npz):
            raise ValueError(f"{path}: 'npz' must be the name of an npz file beside it; got {npz!r}")
        if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
            raise ValueError(f"{path}: 'npz_sha256' must be 64 hex digits beside 'npz'; got {digest!r}")
    return meta


_SLURM = "SLURM_ARRAY_TASK_"
_SUPPORTED = ("--shard auto supports a Slurm array of consecutive indices starting at 0 or 1, such as "
              "--array=0-63 or --array=1-64 (a %K limit on running tasks is fine)")
_RERUN = ("to rerun single shards of an N-task array, give --shard ${SLURM_ARRAY_TASK_ID}/N (shard i/N is "
          "task i of --array=0-(N-1))")


def slurm_shard(environ=None) -> tuple[int, int]:
    """This Slurm array task's shard (ID - MIN, COUNT), from ``SLURM_ARRAY_TASK_ID``, ``_COUNT`` and
    ``_MIN`` (``environ``: default ``os.environ``), so that ``sbatch --array=0-63`` (or ``1-64``) runs
    shards 0/64 ... 63/64 with no arithmetic.

    ValueError, naming the variable, when one is missing (not a Slurm array job) or not an integer, and
    when the array is not one this numbering covers: a step (``--array=0-63:2``; ``_STEP`` is checked
    when set), gaps (``--array=0,1,5``; checked against ``_MAX`` when set, and by the task's place
    otherwise), a first index other than 0 or 1, or a single task (``--array=17`` reruns one task:
    give ``--shard 17/N`` for that).
    """
    env = os.environ if environ is None else environ
    values = {}
    for key in ("ID", "COUNT", "MIN", "MAX", "STEP"):
        text = env.get(_SLURM + key)
        if text is None:
            if key in ("ID", "COUNT", "MIN"):
                raise ValueError(f"{_SLURM + key} is not set: --shard auto (shard='auto') is for Slurm array jobs; "
                                 "submit with sbatch --array=0-63 (one task per shard), or give --shard I/N")
            continue
        try:
            values[key] = int(text.strip())
        except ValueError:
            raise ValueError(f"{_SLURM + key} must be an integer; got {text!r} ({_SUPPORTED})") from None
    task, count, low = values["ID"], values["COUNT"], values["MIN"]
    step, high = values.get("STEP", 1), values.get("MAX")
    if step != 1:
        raise ValueError(f"this Slurm array has step {step} ({_SLURM}STEP): {_SUPPORTED}; for {count} shards "
                         f"submit --array=0-{count - 1}")
    if low not in (0, 1):
        raise ValueError(f"this Slurm array starts at {low} ({_SLURM}MIN): {_SUPPORTED}; {_RERUN}")
    if count < 2:
        raise ValueError(f"this Slurm array has one task ({_SLURM}COUNT={count}): --shard auto would run the whole "
                         f"sweep as shard 0/1. {_SUPPORTED}; {_RERUN}; for the whole sweep in one job, "
                         "leave out --shard")
    if high is not None and high - low + 1 != count:
        raise ValueError(f"this Slurm array is not contiguous: indices {low}..{high} ({_SLURM}MIN, _MAX) hold only "
                         f"{count} tasks ({_SLURM}COUNT). {_SUPPORTED}; {_RERUN}")
    if not 0 <= task - low < count:
        raise ValueError(f"Slurm array task {task} is {task - low} past the first index {low}, but the array has only "
                         f"{count} tasks ({_SLURM}ID, _MIN, _COUNT): its indices have gaps. {_SUPPORTED}; {_RERUN}")
    return task - low, count


def parse_shard(shard) -> tuple[int, int] | None:
    """"I/N" or (I, N) -> (I, N) with 0 <= I < N; "auto" -> this Slurm array task's shard
    (:func:`slurm_shard`); None stays None."""
    if shard is None:
        return None
    if isinstance(shard, str) and shard.strip() == "auto":
        return slurm_shard()
    allowed = "shard must be 'I/N' with 0 <= I < N, (I, N), or 'auto' (a Slurm array task's)"
    try:
        i, n = (int(x) for x in (shard.split("/") if isinstance(shard, str) else shard))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"{allowed}; got {shard!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"{allowed}; got {shard!r}")
    return i, n


_MISSING = "(missing)"


def _shard_of(r: Result, j: int) -> tuple[int, int]:
    shard = r.provenance.get("shard") if isinstance(r.provenance, dict) else None
    if shard is None:
        raise ValueError(f"result {j} ({r.figure}) is not a shard: its provenance has shard None; "
                         "merge joins the shards of one sweep, run with shard='I/N'")
    try:
        return parse_shard(tuple(shard))
    except (ValueError, TypeError):
        raise ValueError(f"result {j} ({r.figure}) records shard {shard!r}; expected [I, N] with 0 <= I < N") from None


def _first_difference(a: dict, b: dict) -> tuple[str, object, object] | None:
    """The first key (in sorted order) whose value differs between ``a`` and ``b``, with both values."""
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        if va != vb:
            return key, va, vb
    return None


def _point_index(point, name: str) -> int:
    index = point.get("index") if isinstance(point, dict) else None
    if not isinstance(index, int) or isinstance(index, bool):
        raise ValueError(f"{name} has a point without an integer 'index': {point!r}")
    return index


def merge(results: list[Result]) -> Result:
    """Join the shards of one sweep into one result, points in order.

    Refused with a ValueError naming the shard and what differs: results that are not shards
    (provenance ``shard`` None), an incomplete or overlapping set (shards must be I/N for every
    I in 0..N-1 exactly once, and shard I must hold exactly the points i = I mod N of the
    sweep's ``data["sweep_size"]``), a different figure, scale, seed, config key or data key
    (so, for a multi-seed sweep, other ``seeds`` or ``grid_size``: shards split the flat
    (seed, point) index and must come from one run), and arrays of points that a shard does not
    hold (an npz that belongs to another shard).
    The merged provenance is the first shard's with ``shard`` None, the common seed, and
    ``merged_from``: every shard's own provenance, in shard order.
    """
    results = list(results)
    if not results:
        raise ValueError("merge needs at least one result: the shards of one sweep")
    for j, r in enumerate(results):
        if not isinstance(r, Result):
            raise TypeError(f"merge takes Result objects; item {j} is a {type(r).__name__}")
    shards = [_shard_of(r, j) for j, r in enumerate(results)]
    order = sorted(range(len(results)), key=lambda j: shards[j])
    results, shards = [results[j] for j in order], [shards[j] for j in order]
    names = [f"shard {i}/{n}" for i, n in shards]
    splits = sorted({n for _, n in shards})
    if len(splits) > 1:
        raise ValueError(f"shards come from different splits (N = {splits}): {names}")
    n = splits[0]
    given = [i for i, _ in shards]
    twice = sorted({i for i in given if given.count(i) > 1})
    if twice:
        raise ValueError(f"shards overlap: shard {twice[0]}/{n} is given twice ({names})")
    missing = [i for i in range(n) if i not in given]
    if missing:
        raise ValueError(f"incomplete set of shards: missing {', '.join(f'{i}/{n}' for i in missing)} "
                         f"(got {', '.join(f'{i}/{n}' for i in given)})")

    first, name0 = results[0], names[0]
    sweep_data = [{k: v for k, v in _jsonable(r.data).items() if k != "points"} for r in results]
    for r, name, data in zip(results[1:], names[1:], sweep_data[1:]):
        for what, a, b in (("figure", first.figure, r.figure), ("scale", first.scale, r.scale),
                           ("seed", first.provenance.get("seed"), r.provenance.get("seed"))):
            if a != b:
                raise ValueError(f"{what} differs: {a!r} in {name0} vs {b!r} in {name}")
        for what, a, b in (("config", _jsonable(first.config), _jsonable(r.config)), ("data", sweep_data[0], data)):
            diff = _first_difference(a, b)
            if diff is not None:
                key, va, vb = diff
                raise ValueError(f"{what} key {key!r} differs: {va!r} in {name0} vs {vb!r} in {name}")

    held = [[_point_index(p, name) for p in r.points] for r, name in zip(results, names)]
    size = sweep_data[0].get("sweep_size")
    if size is None:  # a result from before sweeps recorded their size: the largest index is the last point
        size = 1 + max((i for idx in held for i in idx), default=-1)
    for (i, _), name, idx in zip(shards, names, held):
        expected = list(range(i, size, n))
        if sorted(idx) != expected or len(idx) != len(expected):
            raise ValueError(f"{name} holds points {sorted(idx)}, but shard {i}/{n} of a sweep of {size} points "
                             f"holds {expected}")

    arrays, shared = {}, {}
    for r, name, idx in zip(results, names, held):
        for key, value in r.arrays.items():
            m = re.match(r"p(\d+)/", key)
            if m is None:
                if key in shared and not np.array_equal(shared[key], value):
                    raise ValueError(f"array {key!r} differs between {name0} and {name}")
                shared[key] = value
            elif int(m.group(1)) not in idx:
                raise ValueError(f"{name}'s arrays hold {key!r}, but point {m.group(1)} is not one of its points "
                                 f"{sorted(idx)}: its JSON and npz do not belong together")
    points = sorted(((p, r) for r in results for p in r.points), key=lambda pr: pr[0]["index"])
    arrays.update(shared)
    for p, r in points:
        arrays.update({k: v for k, v in r.arrays.items() if k.startswith(f"p{p['index']}/")})
    data = {k: v for k, v in first.data.items() if k != "points"}
    data["points"] = [p for p, _ in points]
    data["sweep_size"] = size
    prov = dict(first.provenance)
    prov.update(shard=None, seed=first.provenance.get("seed"), merged_from=[dict(r.provenance) for r in results],
                created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return Result(figure=first.figure, scale=first.scale, config=first.config, data=data, arrays=arrays, provenance=prov)
