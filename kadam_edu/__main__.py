"""Command line: reproduce the paper's figures and the book's extra experiments.

    python -m kadam_edu list
    python -m kadam_edu reproduce noise_sde --scale smoke --out results/smoke/noise_sde   # a book extra (Chapter 5)
    python -m kadam_edu reproduce fig1 --scale cpu --out results/cpu/fig1
    python -m kadam_edu reproduce fig1 --scale cpu --seeds 3 --out results/cpu/fig1   # base seeds 0, 1, 2, paired
    python -m kadam_edu reproduce fig9 --scale paper --shard 3/16 --out results/fig9-shard3
    python -m kadam_edu merge results/fig9-shard* --out results/paper/fig9
    python -m kadam_edu reproduce fig1 --scale paper --shard auto --out 'results/fig1/shard-{shard}'  # Slurm array
    python -m kadam_edu reproduce fig1 --scale paper --shard 3/64 --dry-run    # check it all, run nothing

``--shard auto`` takes the shard from the Slurm array job's variables (``sbatch --array=0-63``:
task ID - MIN of COUNT; :func:`kadam_edu.experiments.slurm_shard`). A literal ``{shard}`` in
``--out`` becomes the shard's index I, so one command line serves the whole array; a sharded run
without ``--out`` writes ``results/FIGURE/shard-I``. The figure, scale, settings, seed and shard
are checked (:func:`kadam_edu.experiments.plan`) before ``--out`` is touched; ``--dry-run`` stops
there, after checking ``--out`` too, and prints what the run would do. ``--seeds N`` (the base
seeds 0..N-1) or ``--seeds 5,7`` (a list) repeats the run per base seed, for the experiments that
take seeds; its points are then paired within each seed unless ``--unpaired`` is given.

``--out`` is checked before any work: it must be (or be creatable as) a writable directory, and
an existing one must be empty unless ``--force`` is given; ``--force`` replaces only that
figure's result and PNG there. While a run computes it holds ``<out>/.<figure>.lock``, so a
second run into the same directory is refused rather than overwriting it. The result is saved
atomically (:meth:`kadam_edu.experiments.Result.save`); the figure's old PNG is removed before
the new result is committed, and the new PNG (if any) is renamed into place once fully written,
so a result never sits beside a picture of another.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import socket
import sys
from contextlib import contextmanager
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


def cmd_list(args) -> int:
    from kadam_edu.experiments import COST_MACHINE, FIGURES, costs, estimate, ordered
    from kadam_edu.experiments.estimate import DEVICES, reference_file
    from kadam_edu.scale import format_seconds

    names = ordered(FIGURES)
    width = max(len("figure"), *map(len, names))
    print(f"{'figure':{width}s}  {'from':9s} {'smoke':>8s} {'cpu':>8s} {'gpu (T4 est.)':>13s}  sweep  title")
    measured = False
    for name in names:
        f = FIGURES[name]
        c = f.cost
        e = estimate(name, "gpu", "t4")
        gpu = format_seconds(e["seconds"]) + ("*" if e["basis"] != "estimated" else "")
        measured |= e["basis"] != "estimated"
        print(f"{name:{width}s}  {f.label:9s} {c.get('smoke', '?'):>8s} {c.get('cpu', '?'):>8s} {gpu:>13s}  "
              f"{'yes' if f.sweep else 'no ':5s}  {f.title}")
    print("\nfrom: 'paper' = a figure of Gould & Tanaka (2024); 'book chN' = an extra experiment of the book's Chapter N")
    print(f"smoke, cpu: wall time measured on {costs().get('_machine', COST_MACHINE)}")
    print(f"gpu: estimated for one {DEVICES['t4'].name} (16 GB) by kadam_edu.experiments.estimate from counted FLOPs, "
          "bytes and kernel launches, no GPU run behind it; paper: experiments.estimate(name, 'paper')")
    if measured:
        print(f"*: projected from step times measured by benchmarks/gpu_check.py ({reference_file('t4')})")
    return 0


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot become a writable directory, before any work."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory")
    base = out
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise ValueError(f"--out {out} cannot be created: {base} is a file, not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out} is not writable: {base} does not allow this user to write into it")


def _check_target(out: Path, name: str, *, force: bool) -> None:
    """:func:`_check_out`, and refuse a non-empty ``out`` unless ``force``: nothing is created."""
    _check_out(out)
    if not force and out.is_dir() and any(out.iterdir()):
        held = sorted(p.name for p in out.iterdir())
        running = [h for h in held if h.endswith(".lock")]
        note = f" ({', '.join(running)}: another run is writing there, or one was killed)" if running else ""
        shown = ", ".join(held[:6]) + (f", ... ({len(held)} entries)" if len(held) > 6 else "")
        raise ValueError(f"--out {out} is not empty: it holds {shown}{note}. Choose an empty or new directory, "
                         "or pass --force to replace this figure's result and PNG there (other files stay)")


@contextmanager
def _claim(out: Path, name: str, *, force: bool):
    """Hold ``out`` for this run: checked (:func:`_check_target`: refused if not empty unless
    ``force``), created, and marked by ``.<name>.lock`` (created exclusively) until the run ends.
    Directories created here are removed again if the run leaves them empty."""
    _check_target(out, name, force=force)
    created, lock, locked = [], out / f".{name}.lock", False
    try:
        for d in reversed([out, *out.parents]):
            if not d.exists():
                try:
                    d.mkdir()
                except FileExistsError:  # made meanwhile by another run
                    continue
                created.append(d)
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL), 0o666)
        except FileExistsError:
            raise ValueError(f"--out {out}: another run is writing {name} there ({lock.name} exists; "
                             "if no run is, one was killed: remove it or pass --force)") from None
        locked = True
        with os.fdopen(fd, "w") as f:
            f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        yield
    finally:
        if locked:
            lock.unlink(missing_ok=True)
        for d in reversed(created):
            try:
                d.rmdir()  # only if still empty
            except OSError:
                break


def _commit(result, out: Path, *, plot: bool) -> Path:
    """Save ``result`` into ``out`` with a PNG that shows it, or none: the figure's old PNG goes
    before the new result is committed; the new one is drawn in memory and renamed into place."""
    from kadam_edu import plots
    from kadam_edu.experiments.result import write_atomic

    png = out / f"{result.figure}.png"
    png.unlink(missing_ok=True)
    path = result.save(out)
    print(f"wrote {path} and {out / json.loads(path.read_text())['npz']}")
    if plot:
        import matplotlib.pyplot as plt

        fig = plots.plot(result)
        try:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        finally:
            plt.close(fig)
        write_atomic(png, buf.getvalue())
        print(f"wrote {png}")
    return path


SHARD_FIELD = "{shard}"
_RUN_OPTIONS = {"seed": "--seed", "seeds": "--seeds", "device": "--device", "shard": "--shard", "progress": "--quiet",
                "population": "--population", "paired": "--paired"}


def _population(text: str):
    """``--population``: "auto" or a positive int (checked by the experiment before any work)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--population takes 'auto' or a positive int; got {text!r}") from None


def _seeds(text: str):
    """``--seeds``: N (the base seeds 0..N-1) or a comma list of seeds ("5,7"); checked by the
    experiment (:func:`kadam_edu.experiments.common.check_seeds`) before any work."""
    try:
        return [int(x) for x in text.split(",")] if "," in text else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes N (the base seeds 0..N-1) or a comma list of seeds such as "
                                         f"5,7; got {text!r}") from None


def _run_kwargs(args) -> dict:
    """The run options an experiment takes besides scale, seed, device, shard and progress."""
    from kadam_edu import experiments

    out = {"population": args.population}
    if args.paired or args.unpaired:
        if args.paired and args.unpaired:
            raise ValueError("--paired and --unpaired contradict each other: give one")
        flag = "--paired" if args.paired else "--unpaired"
        takes = [n for n in experiments.FIGURES if experiments.FIGURES[n].takes("paired")]
        if args.figure in experiments.FIGURES and args.figure not in takes:
            raise ValueError(f"{flag}: {args.figure} has no sweep points to pair; the experiments that take it: "
                             f"{', '.join(experiments.ordered(takes))}")
        out["paired"] = bool(args.paired)
    if args.seeds is not None:
        out["seeds"] = args.seeds
    return out


def _out_dir(out: str | None, figure: str, shard: tuple[int, int] | None) -> Path:
    """``--out`` with a literal ``{shard}`` replaced by the shard's index I; by default
    ``results/FIGURE``, or ``results/FIGURE/shard-I`` for a sharded run."""
    text = out if out is not None else f"results/{figure}" + ("" if shard is None else f"/shard-{SHARD_FIELD}")
    if SHARD_FIELD in text:
        if shard is None:
            raise ValueError(f"--out {text} holds {SHARD_FIELD}, which stands for the shard's index I, but no --shard "
                             "was given: add --shard I/N or --shard auto, or write the directory out")
        text = text.replace(SHARD_FIELD, str(shard[0]))
    return Path(text)


def _dry_run(args, planned: dict, out: Path) -> None:
    """Print what ``reproduce`` would run and write: the checks are done, nothing is computed."""
    from kadam_edu.scale import pick_device

    shard = planned["shard"]
    where = "the whole run" if shard is None else \
        f"shard {shard[0]}/{shard[1]} (the sweep's points with index = {shard[0]} mod {shard[1]})"
    try:
        device = str(pick_device(args.device))
    except ValueError as e:  # a login node may lack the GPU the job will get
        device = f"{args.device} (note: {e}; checked again when it runs)"
    settings = ", ".join(f"{k}={v!r}" for k, v in planned["config"].items())
    writes = f"{out / (args.figure + '.json')} and its npz"
    if not args.no_plot:
        writes += f", {out / (args.figure + '.png')}"
    seeds = f"seed {planned['seed']}" if len(planned["seeds"]) == 1 else \
        f"seeds {planned['seeds']} ({'paired' if planned['paired'] else 'unpaired'})"
    print(f"dry run, nothing computed or written: {args.figure} at scale {planned['scale']}, {seeds}, "
          f"{where}\n  settings: {settings}\n  device: {device}\n  would write {writes}")


def cmd_reproduce(args) -> int:
    from kadam_edu import experiments

    overrides = dict(args.set or [])
    clash = sorted(set(overrides) & set(_RUN_OPTIONS))
    if clash:
        raise ValueError(f"--set {clash[0]}=...: {clash[0]} is not a preset setting; use {_RUN_OPTIONS[clash[0]]}")
    planned = experiments.plan(args.figure, args.scale, seed=args.seed, shard=args.shard, **_run_kwargs(args),
                               **overrides)
    shard = planned["shard"]
    out = _out_dir(args.out, args.figure, shard)
    if args.dry_run:
        _check_target(out, args.figure, force=args.force)
        _dry_run(args, planned, out)
        return 0
    with _claim(out, args.figure, force=args.force):
        result = experiments.reproduce(args.figure, planned["scale"], seed=args.seed, device=args.device,
                                       shard=None if shard is None else f"{shard[0]}/{shard[1]}",
                                       progress=not args.quiet, **_run_kwargs(args), **overrides)
        _commit(result, out, plot=not args.no_plot)
    return 0


def cmd_merge(args) -> int:
    from kadam_edu.experiments import Result, merge

    out = Path(args.out)
    with _claim(out, args.figure or "merge", force=args.force):
        results = [Result.load(p, figure=args.figure) for p in args.shards]
        merged = merge(results)
        path = _commit(merged, out, plot=not args.no_plot)
    print(f"merged {len(results)} shards ({len(merged.points)} points) into {path}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kadam_edu", description="Reproduce the figures of Gould & Tanaka (2024) and the book's extra experiments.")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the figures and the book's extra experiments with their cost at each scale "
                                "(smoke, cpu: measured on CPU; gpu: estimated for a T4)").set_defaults(func=cmd_list)

    rp = sub.add_parser("reproduce", help="run one figure or book experiment, save its result (JSON + npz) and a PNG")
    rp.add_argument("figure")
    rp.add_argument("--scale", default="auto",
                    help="smoke, cpu, gpu, paper or auto (default: gpu with CUDA, else cpu; KADAM_SCALE overrides "
                         "auto; paper, a cluster job, only when named)")
    rp.add_argument("--out", default=None,
                    help="output directory, empty or new unless --force; a literal {shard} in it becomes the shard's "
                         "index I (default: results/FIGURE, or results/FIGURE/shard-{shard} with --shard)")
    rp.add_argument("--shard", default=None,
                    help="I/N: run the sweep points with index = I mod N (sweeps only; see `list`); auto: this Slurm "
                         "array task's shard, ID - MIN of COUNT (sbatch --array=0-63)")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--population", type=_population, default="auto",
                    help="sweep points trained at once as one batched model: 'auto' (default: 1 on CPU, "
                         "more on CUDA) or a positive int; the result does not depend on it")
    rp.add_argument("--seeds", type=_seeds, default=None, metavar="N|S1,S2,...",
                    help="repeat the run per base seed: N for the seeds 0..N-1, or a comma list (5,7); every point "
                         "records its seed (the experiments that take seeds; not with --seed other than 0)")
    rp.add_argument("--paired", action="store_true",
                    help="every sweep point of a seed shares the initialisation and batches of its point 0 (common "
                         "random numbers; the default with --seeds)")
    rp.add_argument("--unpaired", action="store_true",
                    help="with --seeds: every sweep point its own initialisation and batches")
    rp.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    rp.add_argument("--set", action="append", type=_override, metavar="KEY=VALUE", help="override a preset setting")
    rp.add_argument("--force", action="store_true",
                    help="write into a non-empty --out, replacing this figure's result and PNG there")
    rp.add_argument("--no-plot", action="store_true", help="no PNG (an old PNG of this figure in --out is removed)")
    rp.add_argument("--quiet", action="store_true",
                    help="no progress bars (a long run's projected wall time is printed all the same)")
    rp.add_argument("--dry-run", action="store_true",
                    help="check the figure, scale, settings, seed, shard and --out, print what would run; run nothing")
    rp.set_defaults(func=cmd_reproduce)

    mp = sub.add_parser("merge", help="join the shards of a sweep into one result")
    mp.add_argument("shards", nargs="+", help="result directories or JSON files of the shards")
    mp.add_argument("--out", required=True, help="output directory, empty or new unless --force")
    mp.add_argument("--figure", default=None, help="the figure, when a directory holds several")
    mp.add_argument("--force", action="store_true",
                    help="write into a non-empty --out, replacing this figure's result and PNG there")
    mp.add_argument("--no-plot", action="store_true", help="no PNG (an old PNG of this figure in --out is removed)")
    mp.set_defaults(func=cmd_merge)

    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
