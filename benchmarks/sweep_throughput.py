"""Member-steps per second of the cpu-scale char GPT and CNN: sequential against population.

A sweep trains E models of one architecture. "sequential" is a Python loop over E ordinary
models (kadam_edu.models.GPT / CIFARNet), each with its own optimizer; "population" is one
kadam_edu.population.PopulationGPT / PopulationCNN holding the same E members, trained on
loss.sum() with one optimizer over its stacked parameters. A step of either is forward +
backward + optimizer step for all E members, each on its own batch: the cpu preset's char
GPT (2 layers, 4 heads, width 64, block 64) at batch 32 and the cpu preset's CNN at batch 128
(the batch of kadam_cifar's cpu preset). The optimizer is KAdam(k=1, foreach=True) on both
sides, each member with its own learning rate: one KAdam(members=E, lr=Tensor[E]) for the
population, one KAdam per model for the loop. Where KAdam has no ``members`` (older
versions) both sides use torch.optim.Adam(foreach=True) with one learning rate, which is
element-wise, so one Adam over the stack steps every member as its own Adam would. The first
line printed says which.

E = 1, 4, 8, 24 (and 64 on a GPU). All contenders are timed interleaved in one run
(round-robin, one step each, median of the rounds), so the ratios compare like with like on
a machine whose speed drifts or is shared; read the ratios, not the absolute rates.

    OMP_NUM_THREADS=2 python benchmarks/sweep_throughput.py [--quick] [--rounds N] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from kadam_edu import KAdam
from kadam_edu.models import cnn_config, gpt_config
from kadam_edu.population import init_population


def kadam_has_members() -> bool:
    try:
        KAdam([torch.nn.Parameter(torch.zeros(1, 1))], members=1)
    except TypeError:
        return False
    return True


OPTIMIZER = "KAdam(k=1, foreach=True), per-member lr" if kadam_has_members() else "torch.optim.Adam(foreach=True)"


def optimizer(params, lr, members=None):
    """KAdam (``members``: a population group; lr a float or a tensor [E]), else torch Adam."""
    if OPTIMIZER.startswith("KAdam"):
        return KAdam(params, lr=lr, foreach=True, **({} if members is None else {"members": members}))
    return torch.optim.Adam(params, lr=1e-3, foreach=True)


def contenders(kind: str, E: int, device: torch.device, gen: torch.Generator) -> dict:
    """{"sequential": step, "population": step} for E members of the cpu-scale ``kind`` model."""
    config = gpt_config("cpu") if kind == "gpt" else cnn_config("cpu")
    pop = init_population(config, list(range(E))).to(device)
    models = [pop.member(e) for e in range(E)]
    if kind == "gpt":
        B, T = 32, config.block_size
        x = torch.randint(0, config.vocab_size, (E, B, T), generator=gen).to(device)
        y = torch.randint(0, config.vocab_size, (E, B, T), generator=gen).to(device)

        def seq_loss(e):
            return models[e](x[e], y[e])[1]

        def pop_loss():
            return pop(x, y)[1].sum()
    else:
        B = 128
        x = torch.randn(E, B, 3, 32, 32, generator=gen).to(device)
        y = torch.randint(0, config.num_classes, (E, B), generator=gen).to(device)

        def seq_loss(e):
            return F.cross_entropy(models[e](x[e]), y[e])

        def pop_loss():  # sum over members of each member's mean cross-entropy
            return F.cross_entropy(pop(x).flatten(0, 1), y.flatten(), reduction="sum") / B

    lrs = torch.linspace(1e-4, 1e-3, E)
    seq_opts = [optimizer(m.parameters(), float(lr)) for m, lr in zip(models, lrs)]
    pop_opt = optimizer(pop.parameters(), lrs.to(device), members=E)

    def sequential():
        for e, opt in enumerate(seq_opts):
            opt.zero_grad(set_to_none=True)
            seq_loss(e).backward()
            opt.step()

    def population():
        pop_opt.zero_grad(set_to_none=True)
        pop_loss().backward()
        pop_opt.step()

    return {"sequential": sequential, "population": population}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="E = 1, 4, 8 and 3 rounds (about 30 s on 2 cores)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5; 3 with --quick)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default="gpt,cnn", help="comma-separated subset of gpt,cnn")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    rounds = args.rounds or (3 if args.quick else 5)
    sizes = [1, 4, 8] if args.quick else [1, 4, 8, 24] + ([64] if device.type == "cuda" else [])
    kinds = [k for k in args.models.split(",") if k]
    if not rounds >= 1 or not set(kinds) <= {"gpt", "cnn"} or not kinds:
        ap.error("--rounds must be >= 1 and --models a non-empty subset of gpt,cnn")

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name} | torch {torch.__version__} | optimizer: {OPTIMIZER} | "
          f"rounds: {rounds} (median)")
    gen = torch.Generator().manual_seed(0)
    steps = {(k, E, c): fn for k in kinds for E in sizes for c, fn in contenders(k, E, device, gen).items()}

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t

    for fn in steps.values():
        for _ in range(args.warmup):
            fn()
    times = {key: [] for key in steps}
    keys = list(steps)
    for r in range(rounds):
        for key in keys if r % 2 == 0 else keys[::-1]:  # alternate the order: no contender always first
            times[key].append(timed(steps[key]))

    print(f"{'model':<6}{'E':>4}  {'sequential':>14}  {'population':>14}  {'population/sequential':>22}")
    print(f"{'':<6}{'':>4}  {'member-steps/s':>14}  {'member-steps/s':>14}")
    for k in kinds:
        for E in sizes:
            seq, pop = (statistics.median(times[(k, E, c)]) for c in ("sequential", "population"))
            print(f"{k:<6}{E:>4}  {E / seq:>14.1f}  {E / pop:>14.1f}  {seq / pop:>21.2f}x")


if __name__ == "__main__":
    main()
