"""Result objects: what an experiment returns, saves, loads and hands to ``kadam_edu.plots``.

A :class:`Result` is JSON (figure, scale, config, provenance and small summaries in ``data``)
plus an npz of arrays. Sweeps store one entry per point in ``data["points"]`` (each with its
``index`` along the sweep) and that point's arrays under ``"p{index}/..."``; shards of a sweep
are joined by :func:`merge`.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = ["Result", "provenance", "merge", "parse_shard"]


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

    def save(self, path) -> Path:
        """Write ``<path>/<figure>.json`` and ``<path>/<figure>.npz`` (path: a directory); return the JSON path."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "figure": self.figure,
            "scale": self.scale,
            "config": _jsonable(self.config),
            "provenance": _jsonable(self.provenance),
            "data": _jsonable(self.data),
            "arrays": sorted(self.arrays),
        }
        json_path = path / f"{self.figure}.json"
        tmp = json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=1, allow_nan=False))
        np.savez_compressed(path / f"{self.figure}.npz", **self.arrays)
        tmp.replace(json_path)
        return json_path

    @classmethod
    def load(cls, path, figure: str | None = None) -> "Result":
        """Load from a JSON file, or from a directory (with ``figure`` when it holds several)."""
        path = Path(path)
        if path.is_dir():
            if figure is None:
                found = sorted(path.glob("*.json"))
                if len(found) != 1:
                    raise ValueError(
                        f"{path} holds {len(found)} results ({[f.stem for f in found]}); pass figure=NAME"
                    )
                path = found[0]
            else:
                path = path / f"{figure}.json"
        if not path.exists():
            raise FileNotFoundError(f"no result at {path}")
        meta = json.loads(path.read_text())
        with np.load(path.with_suffix(".npz")) as npz:
            arrays = {k: npz[k] for k in npz.files}
        return cls(
            figure=meta["figure"], scale=meta["scale"], config=meta["config"], data=meta["data"],
            arrays=arrays, provenance=meta["provenance"],
        )


def parse_shard(shard) -> tuple[int, int] | None:
    """"I/N" or (I, N) -> (I, N) with 0 <= I < N; None stays None."""
    if shard is None:
        return None
    try:
        i, n = (int(x) for x in (shard.split("/") if isinstance(shard, str) else shard))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"shard must be 'I/N' with 0 <= I < N; got {shard!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"shard must be 'I/N' with 0 <= I < N; got {shard!r}")
    return i, n


def merge(results: list[Result]) -> Result:
    """Join shards of one sweep (same figure, scale and config) into one result, points in order."""
    if not results:
        raise ValueError("merge needs at least one result")
    first = results[0]
    for r in results[1:]:
        if (r.figure, r.scale, r.config) != (first.figure, first.scale, first.config):
            raise ValueError(
                f"cannot merge {r.figure}/{r.scale} with {first.figure}/{first.scale}: figure, scale and config must match"
            )
    points = sorted((p for r in results for p in r.points), key=lambda p: p["index"])
    indices = [p["index"] for p in points]
    if len(set(indices)) != len(indices):
        raise ValueError(f"shards overlap: point indices {indices}")
    arrays = {}
    for r in results:
        arrays.update(r.arrays)
    data = {k: v for k, v in first.data.items() if k != "points"}
    data["points"] = points
    prov = dict(first.provenance)
    prov["shard"] = None
    prov["merged_from"] = [r.provenance.get("shard") for r in results]
    return Result(figure=first.figure, scale=first.scale, config=first.config, data=data, arrays=arrays, provenance=prov)
