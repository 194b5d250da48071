r"""Assignment 2: one adaptive normalization, and the optimizers built from it
(``book/assignments/a2_adaptive_normalization``).

App. R writes k-Adam as a chain of k adaptive normalizations A_{gamma_i, beta_i} (Eq. 10): students
implement one step of A, then RMSprop (gamma = 0), Adam (k = 1) and k-Adam from it on top of
:class:`FunctionalOptimizer`, and the checks here compare them with :class:`~kadam_edu.KAdam` in
float64, step by step, naming the likely mistake (the notation trap, a missing bias correction,
torch's eps placement, levels not chained, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from kadam_edu import validate
from kadam_edu.assignments.engine import (_COMPLEX_HINT, CheckResult, NotAnswered, _agree, _describe_exception,
                                          _exception_hints, _g, _hidden_rng, _match_mistake, _Mistake, _nonfinite_note,
                                          _not_answered, _pair, _preload_torch_optim, _Raised,
                                          _result, _stops_at_time_limit, _StudentCode, _to_array, _torch_seed)
from kadam_edu.optim import KAdam, Level, check_levels, kadam_levels

__all__ = ["FunctionalOptimizer", "check_adaptive_normalization", "check_rmsprop", "check_adam", "check_kadam"]


# ---- FunctionalOptimizer, and one step of App. R's operator ------------------------------


class FunctionalOptimizer(torch.optim.Optimizer):
    """A torch optimizer built from a direction function: theta <- theta - lr * u_n (App. R).

    ``direction(g, states, n, levels) -> u_n`` gets one parameter's gradient ``g`` (a tensor),
    ``states`` (a list with one ``(m, v)`` pair of tensors per level, zeros at the start;
    store the new pair back into ``states[i]``), the step index ``n`` (0 at the first step)
    and ``levels`` (a list of :class:`~kadam_edu.Level`). A direction that returns ``None``
    raises :class:`NotAnswered`.
    """

    def __init__(self, params, *, lr: float, levels: Sequence[Level], direction: Callable):
        lr = validate.finite_real("lr", lr, lo=0.0)
        if not callable(direction):
            raise TypeError(f"direction must be a function (g, states, n, levels) -> u; got {direction!r}")
        self.levels = check_levels(list(levels) if isinstance(levels, (list, tuple)) else levels)
        self.direction = direction
        super().__init__(params, dict(lr=float(lr)))

    @torch.no_grad()
    def step(self, closure=None):
        """One step for every parameter with a gradient; returns the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["n"] = 0
                    state["levels"] = [(torch.zeros_like(p), torch.zeros_like(p)) for _ in self.levels]
                u = self.direction(p.grad, state["levels"], state["n"], self.levels)
                if u is None:
                    raise NotAnswered("the direction function returned None (it is not answered yet)")
                u = self._real_tensor(u)
                if u.shape != p.shape:
                    raise ValueError(f"the direction has shape {tuple(u.shape)} but the parameter has shape "
                                     f"{tuple(p.shape)}")
                p.add_(u.to(dtype=p.dtype, device=p.device), alpha=-group["lr"])
                state["n"] += 1
        return loss

    @staticmethod
    def _real_tensor(u) -> torch.Tensor:
        """The direction's value as a real tensor (TypeError for a str, a complex or boolean tensor, ...)."""
        if not isinstance(u, torch.Tensor):
            try:
                u = torch.as_tensor(u)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"the direction returned {u!r} of type {type(u).__name__}; return a tensor shaped "
                                "like the gradient g") from None
        if u.is_complex():
            raise TypeError(f"the direction returned complex values (dtype {u.dtype}), but the update of a real "
                            f"parameter is real: {_COMPLEX_HINT}")
        if u.dtype == torch.bool:
            raise TypeError("the direction returned booleans (dtype torch.bool); return real numbers shaped like g")
        return u


def _an_step(x, m, v, n, gamma, beta, *, eps=1e-30, mistake=None):
    """One adaptive-normalization step (App. R, Algorithm 1's inner loop), optionally wrong."""
    if mistake == "swapped":
        gamma, beta = beta, gamma
    if mistake == "weights":
        m = (1 - gamma) * m + gamma * x
        v = (1 - beta) * v + beta * x * x
    else:
        m = gamma * m + (1 - gamma) * x
        v = beta * v + (1 - beta) * (x if mistake == "no_square" else x * x)
    if mistake == "no_bias":
        c = 1.0
    elif mistake == "bias_no_sqrt":
        c = (1 - beta ** (n + 1)) / (1 - gamma ** (n + 1))
    else:  # the right factor, or with exponent n instead of n + 1 (0/0 at n = 0)
        k = n if mistake == "bias_n" else n + 1
        c = math.sqrt(1 - beta**k) / (1 - gamma**k) if gamma**k != 1 else math.inf
    root = v if mistake == "no_root" else torch.sqrt(v)
    if mistake == "eps_torch":  # torch.optim.Adam: eps = 1e-8 added after bias correction
        u = (m / (1 - gamma ** (n + 1))) / (root / math.sqrt(1 - beta ** (n + 1)) + 1e-8)
    else:
        u = c * m / (root + eps)
    return u, m, v


_AN_HINTS = {
    "swapped": "Notation trap: you used gamma where beta belongs. gamma is the first-moment decay (m), beta "
               "the second-moment decay (v); Level(gamma=..., beta=...) and torch's betas=(gamma, beta).",
    "no_bias": "Bias correction missing: your u at n = 0 should already be a properly weighted average, so "
               "the moving averages need App. R's bias correction (Eq. 1's factor).",
    "bias_n": "Off by one in the bias correction: the first step is n = 0, so the exponents are n + 1 "
              "(with n, the factor is 0/0 at n = 0).",
    "bias_no_sqrt": "The beta part of the bias correction belongs under a square root (v is a mean of squares).",
    "no_square": "v averages the element-wise squares of x.",
    "no_root": "Square root missing: divide by the square root of v.",
    "weights": "The weights of your moving averages are swapped: the decay multiplies the old average and its "
               "complement the new element.",
    "stateless": "Right at n = 0, wrong later: return the updated m and v (the next call receives them), "
                 "rather than the ones you were given.",
    "eps_torch": "Close but not exact: this looks like torch.optim.Adam's eps = 1e-8 added after the bias "
                 "correction. App. R / Algorithm 1 add eps (1e-30) to sqrt(v) before it.",
}

_AN_CASES = [(0.9, 0.999), (0.0, 0.9), (0.99, 0.9), (0.5, 0.7)]  # (gamma, beta)
_AN_STEPS = 8


def _an_cases(rng) -> list[tuple[float, float]]:
    """(gamma, beta): the published pairs without a generator, else drawn ones of the same kinds
    (Adam-like, gamma = 0, gamma^2 > beta, anywhere)."""
    if rng is None:
        return _AN_CASES
    u = lambda lo, hi: round(float(rng.uniform(lo, hi)), 4)  # noqa: E731
    beta = u(0.3, 0.95)
    return [(u(0.5, 0.95), u(0.95, 0.9999)), (0.0, u(0.3, 0.99)), (u(math.sqrt(beta) + 0.01, 0.999), beta),
            (u(0.05, 0.95), u(0.05, 0.95))]


def _an_inputs(seed=3):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, generator=gen, dtype=torch.float64) * (1 + n) for n in range(_AN_STEPS)]


def _an_sequence(xs, gamma, beta, mistake=None):
    m = torch.zeros_like(xs[0])
    v = torch.zeros_like(xs[0])
    out = []
    for n, x in enumerate(xs):
        if mistake == "stateless":
            m, v = torch.zeros_like(x), torch.zeros_like(x)
        u, m, v = _an_step(x, m, v, n, gamma, beta, mistake=None if mistake == "stateless" else mistake)
        out.append(u.numpy().copy())
    return np.stack(out)


@_stops_at_time_limit
def check_adaptive_normalization(step_fn, *, timeout: float = 10.0, seed: int | None = None) -> CheckResult:
    """Check ``step_fn(x, m, v, n, *, gamma, beta) -> (u, m, v)``: one step of App. R's operator
    A_{gamma,beta} on the newest element ``x`` (float64 tensors), fed its own ``m, v`` back.

    Runs 8 steps for (gamma, beta) in {(0.9, 0.999), (0, 0.9), (0.99, 0.9), (0.5, 0.7)} and
    compares u with the reference (App. R with eps = 1e-30 added to sqrt(v), as KAdam does);
    u, m and v must be real and shaped like x. ``timeout``: seconds for all calls of
    ``step_fn`` together (default 10). ``seed``: None for the published inputs, an int for other
    elements and pairs of the same kinds (an autograder's hidden tests).
    """
    check = "check_adaptive_normalization"
    validate.student_function(check, step_fn, "adaptive_normalization(x, m, v, n, *, gamma, beta)")
    rng = _hidden_rng(seed)
    cases = _an_cases(rng)
    xs = _an_inputs(_torch_seed(rng, 3))
    run = _StudentCode(check, timeout)
    student, reference = [], []
    for gamma, beta in cases:
        m = torch.zeros_like(xs[0])
        v = torch.zeros_like(xs[0])
        us = []
        for n, x in enumerate(xs):
            where = f"at n={n} with gamma={gamma}, beta={beta}"
            try:
                out = run.call(f"adaptive_normalization(x, m, v, n={n}, gamma={gamma}, beta={beta})", step_fn,
                               x.clone(), m, v, n, gamma=gamma, beta=beta)
            except _Raised as err:
                exc = err.error
                hints = _exception_hints(exc) or [
                    "At n = 0 (the first step) check the exponents of the bias correction: they are n + 1."
                    if n == 0 and isinstance(exc, ArithmeticError) else
                    "It is called as adaptive_normalization(x, m, v, n, gamma=..., beta=...) with float64 "
                    "tensors x, m, v and an int n."]
                return _result(check, False, f"adaptive_normalization raised {_describe_exception(exc)} {where}.",
                               hints)
            if out is None:
                return _not_answered(check, "adaptive_normalization")
            if not isinstance(out, (tuple, list)) or len(out) != 3:
                got = (f"a {type(out).__name__} of {len(out)} items" if isinstance(out, (tuple, list))
                       else type(out).__name__)
                return _result(check, False, f"adaptive_normalization returned {got} {where}; return the tuple "
                               "(u, m, v): the update and the new moving averages.")
            parts = []
            for name, part in zip("umv", out):
                try:
                    parts.append(_to_array(part, x.shape))
                except (NotAnswered, TypeError) as exc:
                    got = "returned None" if isinstance(exc, NotAnswered) else str(exc)
                    return _result(check, False, f"adaptive_normalization {where}, as its {name}: {got}.",
                                   ["Return (u, m, v), each a real tensor shaped like x."])
            u, m, v = parts[0], torch.from_numpy(parts[1]), torch.from_numpy(parts[2])
            us.append(u)
        student.append(np.stack(us))
        reference.append(_an_sequence(xs, gamma, beta))
    wrong = [not _agree(s, r, rtol=1e-10, atol=1e-300) for s, r in zip(student, reference)]
    if not any(wrong):
        return _result(check, True, "your step is App. R's adaptive normalization.",
                       [f"{_AN_STEPS} steps for (gamma, beta) = " + ", ".join(f"({g}, {b})" for g, b in cases)
                        + ", including gamma = 0 (RMSprop) and gamma^2 > beta."])
    i = wrong.index(True)
    gamma, beta = cases[i]
    with np.errstate(all="ignore"):
        bad = ~np.isclose(student[i], reference[i], rtol=1e-10, atol=1e-300)
    n, *idx = (int(k) for k in np.argwhere(bad)[0])
    where = ", ".join(map(str, idx))
    yours, right = _pair(student[i][(n, *idx)], reference[i][(n, *idx)])
    example = [f"With gamma={gamma}, beta={beta} at n={n}: your u[{where}] is {yours}, it should be {right}.",
               *_nonfinite_note(student[i][(n, *idx)])]
    compute = lambda mk, case: _an_sequence(xs, case[0], case[1], mistake=mk.name)  # noqa: E731
    mistakes = [_Mistake(name, None, hint) for name, hint in _AN_HINTS.items()]
    mistake = _match_mistake(mistakes, cases, student, reference, compute)
    if mistake is not None:
        return _result(check, False, mistake.hint, example)
    if n == 0 and not np.all(np.isfinite(student[i][0])):
        return _result(check, False, "your u is not finite at n = 0: check the bias correction's exponents "
                       "(the first step is n = 0).", example)
    if all(np.allclose(s, r, rtol=1e-5, atol=1e-7) for s, r in zip(student, reference)):
        return _result(check, False, "close but not float64-exact: are some tensors float32 (e.g. torch.zeros "
                       "without dtype), or is eps different from 1e-30?", example)
    return _result(check, False, "your step differs from App. R's adaptive normalization.", example)


# ---- optimizers built from the step ----------------------------------------------------

_OPT_LR = 0.1
_OPT_STEPS = 6


def _opt_grads(seed=5):
    """A fixed gradient sequence for two parameters of shapes (3, 4) and (5,), float64."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.tensor([1.0, 0.5, 2.0, 0.1, 1.0, 3.0], dtype=torch.float64)
    return [[torch.randn(3, 4, generator=gen, dtype=torch.float64) * scale[t],
             torch.randn(5, generator=gen, dtype=torch.float64) * scale[t]] for t in range(_OPT_STEPS)]


def _opt_params(seed=6):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 4, generator=gen, dtype=torch.float64).requires_grad_(),
            torch.randn(5, generator=gen, dtype=torch.float64).requires_grad_()]


def _reference_chain(grads_seq, levels, mistake=None):
    """u_n^(k) for every step and parameter of a fixed gradient sequence (App. R), optionally wrong.

    Returns an array [steps, total parameter size].
    """
    levels = list(levels)
    if mistake == "reversed":
        levels = levels[::-1]
    if mistake == "last_only":
        levels = levels[-1:]
    if mistake == "first_only":
        levels = levels[:1]
    n_params = len(grads_seq[0])
    states = [[(torch.zeros_like(g), torch.zeros_like(g)) for _ in levels] for g in grads_seq[0]]
    out = []
    step_mistake = {"swapped": "swapped", "no_bias": "no_bias", "eps_torch": "eps_torch"}.get(mistake)
    for t, grads in enumerate(grads_seq):
        row = []
        for j in range(n_params):
            g = grads[j]
            x = g
            for i, level in enumerate(levels):
                m, v = states[j][i]
                if mistake == "stateless":
                    m, v = torch.zeros_like(g), torch.zeros_like(g)
                n = 0 if mistake == "n_fixed" else t
                inp = g if mistake == "no_chain" else x
                u, m, v = _an_step(inp, m, v, n, level.gamma, level.beta, mistake=step_mistake)
                states[j][i] = (m, v)
                x = u
            row.append(x.reshape(-1))
        out.append(torch.cat(row).numpy().copy())
    return np.stack(out)


_CHAIN_HINTS = {
    "no_chain": "Matches for k = 1 but not for k >= 2: is each level fed the previous level's output u^(i-1)? "
                "(Feeding every level the raw gradient g is not k-Adam.)",
    "reversed": "Your levels run in reverse order: level 1 acts on the gradient, level k produces the update.",
    "last_only": "Only one level acts (the last): k-Adam applies all k levels in turn.",
    "first_only": "Only one level acts (the first): k-Adam applies all k levels in turn.",
    "n_fixed": "Right at the first step, wrong later: the bias correction needs the current step n; is the step "
               "counter passed on and advanced?",
    "stateless": "Right at the first step, wrong later: each level's (m, v) must be stored back into states[i] "
                 "so the next step continues from it.",
    "swapped": "Notation trap: you used gamma where beta belongs. A Level is Level(gamma=first moment, "
               "beta=second moment); use level.gamma and level.beta by name.",
    "no_bias": "Bias correction missing at some level (App. R's M_gamma is the bias-corrected average).",
    "eps_torch": "Close but not exact: this looks like torch.optim.Adam's eps = 1e-8 after the bias correction. "
                 "Use eps = 1e-30 added to sqrt(v), as Algorithm 1.",
}


def _run_student_optimizer(run: _StudentCode, what: str, make, grads_seq, params_seed=6, lr=_OPT_LR):
    """Run ``make(params)`` through ``run`` on a fixed gradient sequence; return u per step [steps, size].

    ``what``: the call ``make(params)`` in messages. Raises NotAnswered (make returned None),
    TypeError (no step() method, or a parameter that stopped being a real float64 tensor of its
    shape), _Raised or _TimedOut.
    """
    params = _opt_params(params_seed)
    opt = run.call(what, make, params)
    if opt is None:
        raise NotAnswered
    if not callable(getattr(opt, "step", None)):
        raise TypeError(f"returned {type(opt).__name__}, which has no step() method; return a torch optimizer")
    rows = []
    for t, grads in enumerate(grads_seq):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        before = torch.cat([p.detach().reshape(-1).clone() for p in params])
        run.call(f"step {t} of the optimizer from {what}", opt.step)
        for p, g in zip(params, grads):
            if p.dtype != torch.float64 or p.shape != g.shape:
                kind = f"complex ({p.dtype})" if p.is_complex() else f"of dtype {p.dtype} and shape {tuple(p.shape)}"
                raise TypeError(f"made a parameter {kind} at step {t}; parameters stay real float64 tensors of their "
                                "shape, and so do their updates")
        after = torch.cat([p.detach().reshape(-1) for p in params])
        rows.append(((before - after) / lr).numpy().copy())
    return np.stack(rows)


def _compare_optimizer(run: _StudentCode, what, make_for, cases, extra_hints=None, seed=None):
    """Shared logic of check_rmsprop / check_adam / check_kadam.

    ``cases``: list of (label, levels, kwargs); ``make_for(kwargs)`` returns a function
    params -> optimizer, called through ``run``. ``seed``: None for the published gradients and
    parameters, an int for others (see the checks).
    """
    check = run.check
    _preload_torch_optim()
    rng = _hidden_rng(seed)
    grads_seq = _opt_grads(_torch_seed(rng, 5))
    params_seed = _torch_seed(rng, 6)
    student, reference = [], []
    for label, levels, kwargs in cases:
        call = f"{what}(params, {_kw(kwargs)})"
        try:
            student.append(_run_student_optimizer(run, call, make_for(kwargs), grads_seq, params_seed))
        except NotAnswered:
            return _not_answered(check, what), None
        except TypeError as exc:
            return _result(check, False, f"{call} {exc}."), None
        except _Raised as err:
            if isinstance(err.error, NotAnswered):  # raised by FunctionalOptimizer.step
                inner = "the direction function given to FunctionalOptimizer (kadam_direction)"
                return _not_answered(check, inner), None
            return _result(check, False, f"{label}: {err.what} raised {_describe_exception(err.error)}.",
                           _exception_hints(err.error)), None
        reference.append(_reference_chain(grads_seq, levels))
    wrong = [not _agree(s, r, rtol=1e-9, atol=1e-12) for s, r in zip(student, reference)]
    if not any(wrong):
        return None, (student, reference)
    i = wrong.index(True)
    label = cases[i][0]
    bad = np.flatnonzero(~np.all(np.isclose(student[i], reference[i], rtol=1e-9, atol=1e-12), axis=1))
    t = int(bad[0])
    worst = float(np.max(np.abs(student[i][t] - reference[i][t])))
    example = (f"{label}: the first step that differs is step {t} (counting from 0); the largest difference in "
               f"the update is {_g(worst)}.")
    ok_labels = [c[0] for c, w in zip(cases, wrong) if not w]
    if ok_labels:
        example += " Right for: " + ", ".join(ok_labels) + "."
    example = [example, *_nonfinite_note(student[i][t])]
    compute = lambda mk, case: _reference_chain(grads_seq, case[1], mistake=mk.name)  # noqa: E731
    hints = dict(_CHAIN_HINTS, **(extra_hints or {}))
    mistakes = [_Mistake(name, None, hint) for name, hint in hints.items()]
    mistake = _match_mistake(mistakes, cases, student, reference, compute)
    if mistake is not None:
        return _result(check, False, mistake.hint, example), None
    ratio = _constant_ratio(student, reference)
    if ratio is not None:
        if np.isclose(ratio, -1.0):
            return _result(check, False, "your optimizer moves uphill: theta <- theta - lr * u.", example), None
        return _result(check, False, f"your updates are {_g(ratio)} times k-Adam's at every step: is the "
                       "learning rate applied exactly once (theta <- theta - lr * u)?", example), None
    if all(np.allclose(s, r, rtol=1e-5, atol=1e-7) for s, r in zip(student, reference)):
        return _result(check, False, "close but not float64-exact: are some tensors float32 (e.g. torch.zeros "
                       "without dtype), or is eps different from 1e-30?", example), None
    return _result(check, False, "your updates differ from k-Adam's.", example), None


def _constant_ratio(student, reference):
    num = np.concatenate([s.ravel() for s in student])
    den = np.concatenate([r.ravel() for r in reference])
    mask = np.abs(den) > 1e-8
    if not mask.any():
        return None
    q = num[mask] / den[mask]
    if np.all(np.isfinite(q)) and np.allclose(q, q[0], rtol=1e-8) and not np.isclose(q[0], 1.0):
        return float(q[0])
    return None


def _kw(kwargs) -> str:
    return ", ".join(f"{k}={v}" for k, v in kwargs.items())


def _small_model_match(make, levels, steps=5, lr=0.05):
    """Train a small float64 MLP with ``make(params)`` and with KAdam; the largest parameter difference."""
    gen = torch.Generator().manual_seed(11)
    X = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    Y = torch.randn(16, 2, generator=gen, dtype=torch.float64)

    def model():
        torch.manual_seed(12)
        return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).double()

    a, b = model(), model()
    opt_a = KAdam(a.parameters(), lr=lr, levels=list(levels))
    opt_b = make(list(b.parameters()))
    for _ in range(steps):
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            ((net(X) - Y) ** 2).mean().backward()
            opt.step()
    return max(float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters()))


@_stops_at_time_limit
def check_rmsprop(factory, *, timeout: float = 30.0, seed: int | None = None) -> CheckResult:
    """Check ``factory(params, *, lr, beta) -> optimizer``: RMSprop as App. R's adaptive
    normalization with gamma = 0 (bias-corrected; equal to ``KAdam(betas=(0, beta))``).
    ``timeout``: seconds for building and stepping your optimizers, all together (default 30).
    ``seed``: None for the published gradients and parameters, an int for others (hidden tests)."""
    check = "check_rmsprop"
    validate.student_function(check, factory, "rmsprop(params, *, lr, beta)")
    run = _StudentCode(check, timeout)
    cases = [(f"RMSprop beta={b}", [Level(gamma=0.0, beta=b)], dict(lr=_OPT_LR, beta=b)) for b in (0.9, 0.5)]
    extra = {"no_bias": "Bias correction missing: that is torch.optim.RMSprop's update. App. R's RMSprop is A with "
                        "gamma = 0, which keeps the factor from the bias-corrected average of the squares."}
    failed, _ = _compare_optimizer(run, "rmsprop", lambda kw: (lambda params: factory(params, **kw)), cases, extra,
                                   seed)
    if failed is not None:
        return failed
    return _result(check, True, "your RMSprop matches KAdam(betas=(0, beta)) step by step.",
                   [f"beta = 0.9 and 0.5, {_OPT_STEPS} steps on a fixed gradient sequence, float64."])


@_stops_at_time_limit
def check_adam(factory, *, timeout: float = 30.0, seed: int | None = None) -> CheckResult:
    """Check ``factory(params, *, lr, beta, gamma) -> optimizer``: Adam in the paper's notation
    (beta: second moment, gamma: first moment), against ``KAdam(betas=(gamma, beta))``.
    ``timeout``: seconds for building and stepping your optimizers, all together (default 30).
    ``seed``: None for the published gradients and parameters, an int for others (hidden tests)."""
    check = "check_adam"
    validate.student_function(check, factory, "adam(params, *, lr, beta, gamma)")
    run = _StudentCode(check, timeout)
    pairs = [(0.999, 0.9), (0.9, 0.99), (0.7, 0.5)]
    cases = [(f"Adam beta={b}, gamma={g}", [Level(gamma=g, beta=b)], dict(lr=_OPT_LR, beta=b, gamma=g))
             for b, g in pairs]
    failed, _ = _compare_optimizer(run, "adam", lambda kw: (lambda params: factory(params, **kw)), cases,
                                   seed=seed)
    if failed is not None:
        return failed
    return _result(check, True, "your Adam matches KAdam(betas=(gamma, beta)) step by step.",
                   [f"(beta, gamma) = " + ", ".join(map(str, pairs)) + f", {_OPT_STEPS} steps, float64."])


@_stops_at_time_limit
def check_kadam(opt_factory, *, timeout: float = 30.0, seed: int | None = None) -> CheckResult:
    """Check ``opt_factory(params, *, lr, levels) -> optimizer``: k-Adam (Eq. 10, App. R) for
    k = 1, 2, 3 (including a gamma = 0 level), step by step on a fixed gradient sequence, then
    against :class:`KAdam` (float64) over 5 training steps of a small model.
    ``timeout``: seconds for building, stepping and training with your optimizers, all together
    (default 30). ``seed``: None for the published gradients and parameters, an int for others
    (an autograder's hidden tests)."""
    check = "check_kadam"
    validate.student_function(check, opt_factory, "kadam(params, *, lr, levels)")
    run = _StudentCode(check, timeout)
    cases = [
        ("k=1 (Adam)", [Level(gamma=0.9, beta=0.999)]),
        ("k=2", [Level(gamma=0.8, beta=0.95), Level(gamma=0.5, beta=0.9)]),
        ("k=2 with gamma_2 = 0", [Level(gamma=0.9, beta=0.99), Level(gamma=0.0, beta=0.9)]),
        ("k=3 (inverse_exp)", kadam_levels(3, beta=0.999, gamma=0.9)),
    ]
    cases = [(label, levels, dict(lr=_OPT_LR, levels=levels)) for label, levels in cases]
    failed, _ = _compare_optimizer(run, "kadam", lambda kw: (lambda params: opt_factory(params, **kw)), cases,
                                   seed=seed)
    if failed is not None:
        return failed
    levels = [Level(gamma=0.8, beta=0.95), Level(gamma=0.5, beta=0.9)]
    try:
        diff = run.call("5 training steps of a small model with kadam(params, lr=0.05, levels=...)",
                        _small_model_match, lambda params: opt_factory(params, lr=0.05, levels=levels), levels)
    except _Raised as err:
        return _result(check, False, f"right on the fixed gradients, but training a small model raised "
                       f"{_describe_exception(err.error)}.",
                       _exception_hints(err.error) + ["The optimizer must work with zero_grad(), backward() and "
                                                      "step() on the parameters of an nn.Module."])
    if not diff <= 1e-10:
        return _result(check, False, f"right on the fixed gradients, but training a small model drifts from "
                       f"KAdam by {_g(diff)} in 5 steps.", ["Does every parameter keep its own state?"])
    return _result(check, True, "your k-Adam matches KAdam.",
                   ["k = 1, 2, 3 step by step on fixed gradients (including a gamma = 0 level), and 5 training "
                    f"steps of a small float64 MLP 2-Adam: largest parameter difference {_g(diff)}."])
