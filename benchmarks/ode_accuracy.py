"""Trajectory error of the Eq. 4 integrators against discrete Adam, per gradient evaluation.

For each problem and integrator this prints the gradient evaluations per optimizer step,
the error against discrete Adam (the quantity that matters to the book: max over steps of
||theta_ode - theta_adam|| as a fraction of the total displacement), and the error against
a converged solution of the ODE itself (the exponential integrator at 200 substeps), which
separates the integrator's own error from the ODE's modelling error.

Problems: an ill-conditioned quadratic (condition number 1e3, 20 parameters), a small MLP
trained on a fresh minibatch each step, and the cpu-scale char GPT (108k parameters; Euler
with 100 substeps costs it ~10^4 gradient evaluations per 100 steps, a few minutes on 2
cores). ``--problem`` picks one.

    python benchmarks/ode_accuracy.py [--steps 100] [--lr 1e-2]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from kadam_edu.continuous import discrete_adam_trajectory, solve_adam_ode

RUNS = [("euler", 100), ("euler", 20), ("euler", 10), ("euler", 4), ("exp", 1), ("exp", 2), ("exp", 4), ("exp", 9)]


def quadratic(R=20, cond=1e3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(R, R, generator=gen, dtype=torch.float64))[0]
    H = Q @ torch.diag(torch.logspace(0, math.log10(cond), R, dtype=torch.float64) / cond * 10) @ Q.T
    return torch.randn(R, generator=gen, dtype=torch.float64), (lambda th, n: 0.5 * th @ H @ th)


def mlp(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)).double()
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(4096, 8, generator=gen, dtype=torch.float64)
    Y = torch.sin(X.sum(1, keepdim=True)) + 0.1 * torch.randn(4096, 1, generator=gen, dtype=torch.float64)

    def loss_fn(m, n):
        idx = torch.arange(32) + (32 * n) % (4096 - 32)
        return torch.nn.functional.mse_loss(m(X[idx]), Y[idx])

    return model, loss_fn


def char_gpt(seed=0):
    """The cpu-scale char GPT (2 layers, 64 wide) on tiny-shakespeare, qk-norm, no dropout,
    a fresh batch of 32 blocks each step (needs the data: see KADAM_EDU_DATA)."""
    from kadam_edu.data import get_batch, load_shakespeare
    from kadam_edu.models import GPT, gpt_config

    torch.manual_seed(seed)
    config = gpt_config("cpu", dropout=0.0, qk_norm=True)
    model = GPT(config)
    corpus, gen = load_shakespeare(), torch.Generator().manual_seed(seed)
    batches = [get_batch(corpus.train, block_size=config.block_size, batch_size=32, generator=gen) for _ in range(1000)]
    return model, (lambda m, n: m(*batches[n])[1])


PROBLEMS = {"quadratic": quadratic, "mlp": mlp, "gpt": char_gpt}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--beta", type=float, default=0.999)
    ap.add_argument("--gamma", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--problem", choices=[*PROBLEMS, "all"], default="all")
    args = ap.parse_args(argv)
    kw = dict(steps=args.steps, lr=args.lr, beta=args.beta, gamma=args.gamma, weight_decay=args.weight_decay)
    print(f"steps {args.steps}, lr {args.lr}, (beta, gamma) = ({args.beta}, {args.gamma}), "
          f"weight decay {args.weight_decay}, torch {torch.__version__}")
    for name in PROBLEMS if args.problem == "all" else [args.problem]:
        model, loss_fn = PROBLEMS[name]()
        adam = discrete_adam_trajectory(model, loss_fn, **kw)
        exact = solve_adam_ode(model, loss_fn, substeps=200, method="exp", **kw)
        print(f"\n{name}: error as a fraction of the total displacement")
        print(f"{'method':>8s} {'K':>4s} {'grads/step':>11s} {'vs Adam':>9s} {'vs ODE':>9s} {'seconds':>8s}")
        for method, K in RUNS:
            t0 = time.perf_counter()
            ode = solve_adam_ode(model, loss_fn, substeps=K, method=method, **kw)
            secs = time.perf_counter() - t0
            print(f"{method:>8s} {K:4d} {ode.grad_evals / args.steps:11.2f} {ode.relative_error(adam):9.4f} "
                  f"{ode.relative_error(exact):9.2e} {secs:8.2f}")


if __name__ == "__main__":
    main()
