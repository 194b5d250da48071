"""Measure the wall time of every figure at the given scales and record it for `python -m kadam_edu list`.

    python benchmarks/figure_costs.py --scales smoke cpu [--figures fig1 fig3] [--out results/costs]
    python benchmarks/figure_costs.py --scales smoke cpu --kind book    # only the book's extra experiments

Records the wall times in kadam_edu/experiments/costs.json (``experiments.record_costs``: merged
with what is there, written at once after each scale), saves each result and its PNG under --out,
and prints a table. Run it on an otherwise idle machine: the numbers are
what a reader of the book waits for.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from kadam_edu import experiments, plots
from kadam_edu.experiments import FIGURES
from kadam_edu.scale import SCALES


def _fmt(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", nargs="+", default=["smoke"], choices=SCALES)
    names = experiments.ordered(FIGURES)
    ap.add_argument("--figures", nargs="+", choices=names, metavar="NAME",
                    help=f"the names to measure (default: all, or those of --kind): {' '.join(names)}")
    ap.add_argument("--kind", choices=["paper", "book"], default=None,
                    help="measure only the paper's figures or only the book's extra experiments")
    ap.add_argument("--out", default="results/costs")
    args = ap.parse_args(argv)
    if args.figures is None:
        args.figures = [n for n in names if args.kind is None or FIGURES[n].kind == args.kind]
    elif args.kind is not None:
        args.figures = [n for n in args.figures if FIGURES[n].kind == args.kind]
    os.environ.setdefault("KADAM_PROGRESS", "0")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {device}, torch {torch.__version__}"
    for scale in args.scales:
        total, measured = 0.0, {}
        for name in args.figures:
            t0 = time.perf_counter()
            result = experiments.reproduce(name, scale, progress=False)
            seconds = time.perf_counter() - t0
            total += seconds
            out = Path(args.out) / scale
            result.save(out)
            plots.plot(result).savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")
            measured[name] = {scale: _fmt(seconds)}
            print(f"{scale:6s} {name:6s} {seconds:8.1f} s", flush=True)
        print(f"{scale:6s} total  {total:8.1f} s")
        experiments.record_costs(measured, machine=machine)  # keeps the notes recorded for this same machine


if __name__ == "__main__":
    main()
