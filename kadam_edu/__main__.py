"""Command line: reproduce the paper's figures and the book's extra experiments.

    python -m kadam_edu list
    python -m kadam_edu reproduce noise_sde --scale smoke --out results/smoke   # a book extra (Chapter 5)
    python -m kadam_edu reproduce fig1 --scale cpu --out results/cpu
    python -m kadam_edu reproduce fig9 --scale paper --shard 3/16 --out results/fig9-shard3
    python -m kadam_edu merge results/fig9-shard* --out results/paper
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE; got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _costs() -> dict:
    path = Path(__file__).parent / "experiments" / "costs.json"
    return json.loads(path.read_text()) if path.exists() else {}


def cmd_list(args) -> int:
    from kadam_edu.experiments import COST_MACHINE, FIGURES, _order

    costs = _costs()
    names = sorted(FIGURES, key=_order)
    width = max(len("figure"), *map(len, names))
    print(f"{'figure':{width}s}  {'from':9s} {'smoke':>8s} {'cpu':>8s} {'paper':>10s}  sweep  title")
    for name in names:
        f = FIGURES[name]
        c = costs.get(name, {})
        print(f"{name:{width}s}  {f.label:9s} {c.get('smoke', '?'):>8s} {c.get('cpu', '?'):>8s} {c.get('paper', '?'):>10s}  "
              f"{'yes' if f.sweep else 'no ':5s}  {f.title}")
    print("\nfrom: 'paper' = a figure of Gould & Tanaka (2024); 'book chN' = an extra experiment of the book's Chapter N")
    print(f"costs: wall time measured on {costs.get('_machine', COST_MACHINE)}")
    return 0


def cmd_reproduce(args) -> int:
    from kadam_edu import experiments, plots

    overrides = dict(args.set or [])
    result = experiments.reproduce(args.figure, args.scale, seed=args.seed, device=args.device,
                                   shard=args.shard, progress=not args.quiet, **overrides)
    out = Path(args.out)
    path = result.save(out)
    print(f"wrote {path} and {path.with_suffix('.npz')}")
    if not args.no_plot:
        fig = plots.plot(result)
        png = out / f"{result.figure}.png"
        fig.savefig(png, dpi=120, bbox_inches="tight")
        print(f"wrote {png}")
    return 0


def cmd_merge(args) -> int:
    from kadam_edu import plots
    from kadam_edu.experiments import Result, merge

    results = [Result.load(p, figure=args.figure) for p in args.shards]
    merged = merge(results)
    path = merged.save(args.out)
    print(f"merged {len(results)} shards ({len(merged.points)} points) into {path}")
    if not args.no_plot:
        plots.plot(merged).savefig(Path(args.out) / f"{merged.figure}.png", dpi=120, bbox_inches="tight")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kadam_edu", description="Reproduce the figures of Gould & Tanaka (2024) and the book's extra experiments.")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the figures and the book's extra experiments with their measured cost at each scale").set_defaults(func=cmd_list)

    rp = sub.add_parser("reproduce", help="run one figure or book experiment, save its result (JSON + npz) and a PNG")
    rp.add_argument("figure")
    rp.add_argument("--scale", default="auto", help="smoke, cpu, paper or auto (default; KADAM_SCALE overrides auto)")
    rp.add_argument("--out", default="results", help="output directory (default: results)")
    rp.add_argument("--shard", default=None, help="I/N: run the sweep points with index = I mod N (sweeps only; see `list`)")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    rp.add_argument("--set", action="append", type=_override, metavar="KEY=VALUE", help="override a preset setting")
    rp.add_argument("--no-plot", action="store_true")
    rp.add_argument("--quiet", action="store_true", help="no progress bars")
    rp.set_defaults(func=cmd_reproduce)

    mp = sub.add_parser("merge", help="join the shards of a sweep into one result")
    mp.add_argument("shards", nargs="+", help="result directories or JSON files of the shards")
    mp.add_argument("--out", required=True)
    mp.add_argument("--figure", default=None, help="the figure, when a directory holds several")
    mp.add_argument("--no-plot", action="store_true")
    mp.set_defaults(func=cmd_merge)

    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
