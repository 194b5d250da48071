"""KAdam step time against torch.optim.Adam(foreach=True) and a memory-bandwidth floor.

Parameter shapes are the paper's nanoGPT (App. H: 6 layers, 6 heads, 384 wide, block 256,
vocabulary 65; 10.8M parameters, biases included). All contenders are timed interleaved in
one run (round-robin, median of the rounds), so the ratios compare like with like on a
machine whose speed drifts.

The floor for k levels is one copy of the bytes a k-Adam step must move at least:
read g, theta, m_i, v_i and write theta, m_i, v_i, i.e. (3 + 4k) tensors of the
parameters' size, done as a copy of (3 + 4k)/2 parameter-sized buffers.

    python benchmarks/optimizer_step.py [--rounds 30] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from kadam_edu import KAdam


def nanogpt_shapes(n_layer=6, n_embd=384, vocab=65, block=256) -> list[tuple[int, ...]]:
    """Parameter shapes of nanoGPT's GPT with bias (the paper's App. H configuration)."""
    e = n_embd
    shapes = [(vocab, e), (block, e)]  # token and position embeddings (lm_head is tied)
    for _ in range(n_layer):
        shapes += [(e,), (e,), (3 * e, e), (3 * e,), (e, e), (e,)]  # ln_1, attention
        shapes += [(e,), (e,), (4 * e, e), (4 * e,), (e, 4 * e), (e,)]  # ln_2, MLP
    shapes += [(e,), (e,)]  # ln_f
    return shapes


def make_params(shapes, device) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    params = []
    for s in shapes:
        p = torch.nn.Parameter(torch.randn(s, generator=gen).to(device))
        p.grad = torch.randn(s, generator=gen).to(device)
        params.append(p)
    return params


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    shapes = nanogpt_shapes()
    numel = sum(torch.Size(s).numel() for s in shapes)

    contenders = {}
    torch_params = make_params(shapes, device)
    contenders["torch Adam foreach=True"] = torch.optim.Adam(torch_params, lr=1e-3, foreach=True).step
    for k in (1, 2, 3):
        for foreach in (None, False, True):
            ps = make_params(shapes, device)
            opt = KAdam(ps, lr=1e-3, k=k, foreach=foreach)

            def step(opt=opt):
                opt.step()
                return opt.last_max_update  # reading the max-update is part of the cost

            contenders[f"KAdam k={k} foreach={foreach}"] = step
    floors = {}
    for k in (1, 2, 3):
        n = (3 + 4 * k) * numel // 2
        src, dst = torch.randn(n, device=device), torch.empty(n, device=device)
        floors[k] = f"floor k={k} (copy)"
        contenders[floors[k]] = lambda src=src, dst=dst: dst.copy_(src)

    times = {name: [] for name in contenders}
    for r in range(args.warmup + args.rounds):
        for name, fn in contenders.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if r >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}

    base = med["torch Adam foreach=True"]
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{numel / 1e6:.2f}M parameters, median of {args.rounds} interleaved rounds")
    print(f"{'contender':32s} {'ms/step':>8s} {'/ torch Adam':>13s} {'/ floor':>8s}")
    for name, ms in med.items():
        k = int(name.split("k=")[1][0]) if "k=" in name else None
        floor = f"{ms / med[floors[k]]:8.2f}" if k is not None and not name.startswith("floor") else " " * 8
        print(f"{name:32s} {ms:8.2f} {ms / base:13.2f} {floor}")
    targets = {1: 0.6, 2: 1.0}
    for k, target in targets.items():
        ratio = med[f"KAdam k={k} foreach=None"] / base
        verdict = "meets" if ratio <= target else "MISSES"
        print(f"target k={k} (default path): {ratio:.2f}x torch Adam, target <= {target}x: {verdict}")


if __name__ == "__main__":
    main()
