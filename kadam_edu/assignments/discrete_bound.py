r"""Assignment 1: the exact discrete-time max-update bound (``book/assignments/a1_discrete_bound``).

Students derive by Cauchy-Schwarz the bound on Adam's update |u_n| (eps = 0) that holds for every
gradient sequence (:func:`kadam_edu.bounds.discrete_max_update_bound`), implement it, Adam's updates
(Eq. 1), the gradient sequence that attains the bound and the slope of its logarithm
(:func:`kadam_edu.bounds.discrete_growth_rate`), and compare that slope with the continuous-time
law of Eq. 5. The checks here test those four functions; :func:`gradient_families` gives the
random gradient sequences of the stress test.
"""

from __future__ import annotations

import math

import numpy as np

from kadam_edu import bounds, validate
from kadam_edu.assignments.engine import (CheckResult, NotAnswered, _agree, _args, _collect, _describe_exception,
                                          _hidden_rng,
                                          _exception_hints, _g, _match_mistake, _Mistake, _nonfinite_note, _pair,
                                          _Raised, _result, _stops_at_time_limit, _StudentCode,
                                          _to_array, _to_float)

__all__ = ["check_discrete_bound", "check_adam_updates", "check_extremal_sequence", "check_discrete_rate",
           "gradient_families"]


# ---- the bound (Cauchy-Schwarz on the finite sums of m_n and v_n) -------------------------


def _bias(n, beta, gamma, shift=1):
    """Adam's bias correction sqrt(1 - beta^(n+shift)) / (1 - gamma^(n+shift)) (Eq. 1), raw."""
    return np.sqrt(1.0 - np.float64(beta) ** (n + shift)) / (1.0 - np.float64(gamma) ** (n + shift))


def _geometric(terms, r):
    """sum_{j=0}^{terms-1} r^j in float64 (inf on overflow), exact at r = 1."""
    r = np.float64(r)
    if r == 1.0:
        return np.float64(terms)
    return (r ** terms - 1.0) / (r - 1.0)


def _bound_raw(n, beta, gamma, *, bias="right", ratio="right", sqrt_sum=True, terms=1, prefactor=True):
    """The discrete bound with one ingredient changed (for diagnosing wrong answers)."""
    beta, gamma = np.float64(beta), np.float64(gamma)
    with np.errstate(all="ignore"):
        c = {"right": lambda: _bias(n, beta, gamma), "none": lambda: 1.0, "n": lambda: _bias(n, beta, gamma, shift=0),
             "inverted": lambda: 1.0 / _bias(n, beta, gamma)}[bias]()
    r = {"right": gamma ** 2 / beta, "gamma_over_beta": gamma / beta, "sqrt": gamma / np.sqrt(beta)}[ratio]
    s = _geometric(n + terms, r)
    k = (1.0 - gamma) / np.sqrt(1.0 - beta) if prefactor else 1.0
    return float(c * k * (np.sqrt(s) if sqrt_sum else s))


def _reference_bound(n, beta, gamma) -> float:
    return float(bounds.discrete_max_update_bound(n, beta, gamma))


_BOUND_MISTAKES = [
    _Mistake("continuous", lambda n, b, g: float(bounds.max_update_bound(n, b, g)),
             "This is the continuous-time bound of Eq. 5 (with B_n and C). The task asks for the exact bound "
             "that Cauchy-Schwarz gives on the finite sums m_n and v_n, with no continuous-time approximation."),
    _Mistake("swapped", lambda n, b, g: _bound_raw(n, g, b),
             "Notation trap: you used gamma where beta belongs (and beta where gamma belongs). In the paper "
             "beta is the second-moment decay (the one inside v_n) and gamma the first-moment decay (m_n)."),
    _Mistake("no_bias", lambda n, b, g: _bound_raw(n, b, g, bias="none"),
             "Bias correction missing: u_n carries Adam's bias-correction factor (Eq. 1), so the bound does too."),
    _Mistake("bias_n", lambda n, b, g: _bound_raw(n, b, g, bias="n"),
             "Off by one in the bias correction: steps are counted from n = 0 (u_0 is the first update), so the "
             "exponents in the bias correction are n + 1, not n; with n the factor is 0/0 at n = 0."),
    _Mistake("bias_inverted", lambda n, b, g: _bound_raw(n, b, g, bias="inverted"),
             "The bias-correction factor is upside down: the beta part multiplies, the gamma part divides."),
    _Mistake("ratio_gamma_over_beta", lambda n, b, g: _bound_raw(n, b, g, ratio="gamma_over_beta"),
             "The ratio of your geometric sum is off: after splitting gamma^(n-j) g_j into a part that pairs "
             "with v_n's weights and a remainder, square the remainder (Cauchy-Schwarz squares both factors)."),
    _Mistake("ratio_sqrt", lambda n, b, g: _bound_raw(n, b, g, ratio="sqrt"),
             "The ratio of your geometric sum is off: Cauchy-Schwarz puts the square of the leftover factor "
             "inside the sum, and the square root outside the whole sum."),
    _Mistake("no_sqrt", lambda n, b, g: _bound_raw(n, b, g, sqrt_sum=False),
             "Square root missing: Cauchy-Schwarz bounds |sum a_j b_j| by the square roots of sum a_j^2 and "
             "sum b_j^2, so the geometric sum enters under a square root."),
    _Mistake("terms_n", lambda n, b, g: _bound_raw(n, b, g, terms=0),
             "Your geometric sum has one term too few: at step n the averages hold the n + 1 gradients g_0..g_n."),
    _Mistake("terms_n_plus_2", lambda n, b, g: _bound_raw(n, b, g, terms=2),
             "Your geometric sum has one term too many: at step n the averages hold the n + 1 gradients g_0..g_n."),
    _Mistake("no_prefactor", lambda n, b, g: _bound_raw(n, b, g, prefactor=False),
             "A constant factor is missing: the weights (1 - gamma) of m_n and (1 - beta) of v_n leave a factor "
             "behind that does not depend on n."),
]

# (n, beta, gamma): ordinary points, B- (gamma^2 > beta), gamma^2 = beta exactly, gamma = 0 (RMSprop),
# n = 0 and large n.
_BOUND_CASES = [
    (0, 0.999, 0.9), (1, 0.999, 0.9), (10, 0.999, 0.9), (1000, 0.999, 0.9),
    (0, 0.9, 0.99), (5, 0.9, 0.99), (300, 0.9, 0.99),
    (0, 0.25, 0.5), (7, 0.25, 0.5), (100, 0.25, 0.5),
    (0, 0.3, 0.0), (9, 0.3, 0.0),
    (3, 0.5, 0.6), (50, 0.95, 0.97), (20, 0.6, 0.3), (2, 0.7, 0.95),
]


def _drawn_pair(rng, region=None) -> tuple[float, float]:
    """A random (beta, gamma) with 4 decimals; region "B-" asks for gamma^2 > beta, "exact" for
    gamma^2 = beta exactly (gamma a multiple of 1/16, so that its square is exact in binary)."""
    if region == "exact":
        gamma = int(rng.integers(4, 16)) / 16
        return gamma * gamma, gamma
    beta = round(float(rng.uniform(0.05, 0.995)), 4)
    if region == "B-":
        root = math.sqrt(beta)
        return beta, round(root + (1 - root) * float(rng.uniform(0.05, 0.95)), 4)
    return beta, round(float(rng.uniform(0.05, 0.995)), 4)


def _bound_cases(rng) -> list[tuple[int, float, float]]:
    """The published (n, beta, gamma) without a generator; else as many drawn ones, of the same kinds
    (n = 0, gamma = 0, gamma^2 = beta, gamma^2 > beta, ordinary points), with n < 60."""
    if rng is None:
        return _BOUND_CASES
    n = lambda: int(rng.integers(1, 60))  # noqa: E731
    cases = [(0, *_drawn_pair(rng)), (n(), _drawn_pair(rng)[0], 0.0), (n(), *_drawn_pair(rng, "exact")),
             (n(), *_drawn_pair(rng, "B-")), (0, *_drawn_pair(rng, "B-"))]
    return cases + [(n(), *_drawn_pair(rng)) for _ in range(len(_BOUND_CASES) - len(cases))]


# beta = 0.5, gamma = 0.9, n = 2000: the bound is finite (about 1e209) but (gamma^2/beta)^(n+1) overflows.
_BOUND_OVERFLOW_CASE = (2000, 0.5, 0.9)


def _category_hint(cases, wrong, *, exclusive: bool = True) -> str | None:
    """A hint when the wrong cases share one feature (gamma^2 = beta, gamma = 0, n = 0, B-).

    ``exclusive``: the feature must also be absent from every right case ("wrong only
    where ..."); otherwise it is enough that every wrong case has it ("fails at every ...").
    """
    groups = {
        "gamma^2 = beta": (lambda n, b, g: g * g == b,
                           "the ratio of the geometric sum is exactly 1 there, so a closed form like "
                           "(1 - r^(n+1)) / (1 - r) is 0/0; that sum is just the number of terms."),
        "gamma = 0": (lambda n, b, g: g == 0.0,
                      "only the newest gradient counts at gamma = 0 (RMSprop). Check what your code does with "
                      "0 ** 0 (it is 1) and with divisions by gamma."),
        "n = 0": (lambda n, b, g: n == 0,
                  "with a single gradient g_0 there is nothing to sum over; check the step count (steps start at "
                  "n = 0) and the bias correction at n = 0."),
        "gamma^2 > beta": (lambda n, b, g: g * g > b,
                           "does your formula assume the ratio of the geometric sum is below 1 (e.g. an "
                           "infinite-sum limit)?"),
    }
    bad = [c for c, w in zip(cases, wrong) if w]
    good = [c for c, w in zip(cases, wrong) if not w]
    for name, (member, advice) in groups.items():
        if not bad or not all(member(*c) for c in bad):
            continue
        if exclusive and good and not any(member(*c) for c in good):
            return f"Wrong only where {name}: {advice}"
        if not exclusive:
            return f"It fails at points with {name}: {advice}"
    return None


@_stops_at_time_limit
def check_discrete_bound(fn, *, timeout: float = 10.0, seed: int | None = None) -> CheckResult:
    """Check ``fn(n, beta, gamma) -> float``, the exact discrete-time bound on |u_n| (eps = 0).

    Compares with :func:`kadam_edu.bounds.discrete_max_update_bound` at n = 0, small and
    large n, in B+ and B-, at gamma^2 = beta and gamma = 0 (relative tolerance 1e-9), and
    notes (without failing) whether very large n overflows. ``timeout``: seconds for all
    calls of ``fn`` together (default 10). ``seed``: None for the published test points, an int
    for as many other points of the same kinds (an autograder's hidden tests).
    """
    check = "check_discrete_bound"
    validate.student_function(check, fn, "discrete_bound(n, beta, gamma)")
    cases = _bound_cases(_hidden_rng(seed))
    run = _StudentCode(check, timeout)
    values, raised, early = _collect(run, "discrete_bound", fn, cases, lambda v, c: _to_float(v),
                                     ("n", "beta", "gamma"))
    if early is not None:
        return early
    student = [math.nan if v is None else v for v in values]
    reference = [_reference_bound(*case) for case in cases]
    wrong = [not _agree(s, r) for s, r in zip(student, reference)]
    if not any(wrong):
        span = f"n from 0 to {max(c[0] for c in cases)}"
        details = [f"Agrees with the library to 1e-9 at {len(cases)} points: {span}, bounded "
                   "and growing cases, gamma^2 = beta and gamma = 0.", _overflow_note(run, fn)]
        return _result(check, True, "your bound is exact.", details)
    skip = {i for i, _ in raised}
    mistake = _match_mistake(_BOUND_MISTAKES, cases, student, reference, skip=skip)
    hint = mistake.hint if mistake else (_category_hint(cases, wrong)
                                         or _constant_factor_hint(cases, student, reference))
    shown = [i for i, w in enumerate(wrong) if w and i not in skip]
    example = []
    if shown:
        n, b, g = cases[shown[0]]
        yours, right = _pair(student[shown[0]], reference[shown[0]])
        example = [f"At n={n}, beta={b}, gamma={g}: yours is {yours}, the bound is {right}.",
                   *_nonfinite_note(student[shown[0]])]
    if raised:
        i, exc = raised[0]
        more = f" (and at {len(raised) - 1} more test points)" if len(raised) > 1 else ""
        if not mistake:
            hint = _category_hint(cases, [k in skip for k in range(len(cases))], exclusive=False) or hint
        return _result(check, False, f"discrete_bound({_args(('n', 'beta', 'gamma'), cases[i])}) raised "
                       f"{_describe_exception(exc)}{more}.", _exception_hints(exc) + ([hint] if hint else []) + example)
    details = example + ([] if mistake else [f"{sum(wrong)} of {len(wrong)} test points disagree."])
    return _result(check, False, hint or "your bound does not match the exact discrete bound.", details)


def _constant_factor_hint(cases, student, reference) -> str | None:
    """A hint when student/reference is a constant per (beta, gamma) (prefactor) or overall."""
    ratios: dict[tuple, list] = {}
    for (n, b, g), s, r in zip(cases, student, reference):
        if np.isfinite(s) and np.isfinite(r) and r != 0:
            ratios.setdefault((b, g), []).append(s / r)
    if not ratios:
        return None
    flat = [x for v in ratios.values() for x in v]
    if np.allclose(flat, flat[0], rtol=1e-9):
        return (f"Yours is exactly {_g(flat[0])} times the bound at every test point: a constant factor is "
                "off.")
    per_point = [v for v in ratios.values() if len(v) > 1]
    if per_point and all(np.allclose(v, v[0], rtol=1e-9) for v in per_point):
        return ("Yours is off by a factor that depends on beta and gamma but not on n: the n-dependent parts "
                "are right; check the constant factor in front.")
    return None


def _overflow_note(run: _StudentCode, fn) -> str:
    """A note (never a failure) on ``fn`` at a point where naive powers overflow; a timeout propagates."""
    n, b, g = _BOUND_OVERFLOW_CASE
    try:
        value = _to_float(run.call(f"discrete_bound(n={n}, beta={b}, gamma={g})", fn, n, b, g))
        gives = f"gives {_g(value)}"
    except _Raised as err:
        value, gives = math.nan, f"raises {_describe_exception(err.error)}"
    except (NotAnswered, TypeError):
        value, gives = math.nan, "gives no number"
    expected = _reference_bound(n, b, g)
    if _agree(value, expected):
        return f"It even stays finite at n={n}, beta={b}, gamma={g}, where naive powers overflow."
    return (f"Not required, but worth knowing: at n={n}, beta={b}, gamma={g} yours {gives} although "
            f"the bound is finite ({_g(expected)}): a power overflows before the square root brings it back. "
            "Working with logarithms avoids that.")


# ---- Adam's updates on a gradient sequence (eps = 0) -----------------------------------


def _adam_raw(grads, beta, gamma, *, bias="right", square=True, root=True, weights="right", absolute=False):
    """Adam's u_n (Eq. 1, eps = 0) along axis 0 of ``grads``, with one ingredient changeable."""
    grads = np.asarray(grads, dtype=float)
    m = np.zeros(grads.shape[1:])
    v = np.zeros(grads.shape[1:])
    out = np.empty_like(grads)
    for n, g in enumerate(grads):
        if weights == "right":
            m = gamma * m + (1.0 - gamma) * g
            v = beta * v + (1.0 - beta) * (g * g if square else g)
        else:  # the weights of old and new swapped
            m = (1.0 - gamma) * m + gamma * g
            v = (1.0 - beta) * v + beta * (g * g if square else g)
        with np.errstate(all="ignore"):
            c = 1.0 if bias == "none" else _bias(n, beta, gamma, shift=0 if bias == "n" else 1)
            out[n] = c * m / (np.sqrt(v) if root else v)
    return np.abs(out) if absolute else out


_ADAM_MISTAKES = [
    _Mistake("swapped", lambda G, b, g: _adam_raw(G, g, b),
             "Notation trap: you used gamma where beta belongs. In the paper gamma is the first-moment decay "
             "(m_n) and beta the second-moment decay (v_n); torch's betas=(gamma, beta)."),
    _Mistake("no_bias", lambda G, b, g: _adam_raw(G, b, g, bias="none"),
             "Bias correction missing: Eq. 1 multiplies m_n / sqrt(v_n) by a factor that depends on n."),
    _Mistake("bias_n", lambda G, b, g: _adam_raw(G, b, g, bias="n"),
             "Off by one in the bias correction: the first step is n = 0, so the exponents are n + 1."),
    _Mistake("no_square", lambda G, b, g: _adam_raw(G, b, g, square=False),
             "v_n averages the squared gradients, element-wise."),
    _Mistake("no_root", lambda G, b, g: _adam_raw(G, b, g, root=False),
             "Square root missing: u_n divides by the square root of v_n."),
    _Mistake("weights", lambda G, b, g: _adam_raw(G, b, g, weights="swapped"),
             "The weights of your moving averages are swapped: the decay multiplies the old average, its "
             "complement multiplies the new gradient."),
    _Mistake("absolute", lambda G, b, g: _adam_raw(G, b, g, absolute=True),
             "You return |u_n|; return the signed update u_n (the check takes absolute values itself)."),
]


def _adam_cases(drawn=None):
    """(grads, beta, gamma): the published sequences without a generator ``drawn``; else other
    sequences and pairs of the same kinds (2-D and 1-D, B-, gamma = 0) drawn from it."""
    rng = np.random.default_rng(1) if drawn is None else drawn
    pairs = ([(0.999, 0.9), (0.9, 0.99), (0.25, 0.5), (0.6, 0.0), (0.95, 0.8)] if drawn is None else
             [_drawn_pair(rng), _drawn_pair(rng, "B-"), _drawn_pair(rng), (_drawn_pair(rng)[0], 0.0),
              _drawn_pair(rng)])
    return [
        (rng.normal(size=(12, 3)), *pairs[0]),
        (rng.normal(size=(10, 2)) * np.exp(-0.3 * np.arange(10))[:, None], *pairs[1]),
        (np.abs(rng.standard_cauchy(size=(9, 4))) + 0.1, *pairs[2]),
        (rng.normal(size=(8, 1)), *pairs[3]),
        (rng.normal(size=(7,)), *pairs[4]),
    ]


def _reference_adam(grads, beta, gamma):
    return _adam_raw(grads, beta, gamma)


@_stops_at_time_limit
def check_adam_updates(fn, *, timeout: float = 10.0, seed: int | None = None) -> CheckResult:
    """Check ``fn(grads, beta, gamma) -> u``: Adam's signed updates u_n (Eq. 1, eps = 0).

    ``grads`` has shape [N] or [N, p] (step n along axis 0); the answer must have the same
    shape and be real. Compared with a float64 reference (itself tested against :class:`KAdam`).
    ``timeout``: seconds for all calls of ``fn`` together (default 10). ``seed``: None for the
    published sequences, an int for other ones of the same kinds (an autograder's hidden tests).
    """
    check = "check_adam_updates"
    validate.student_function(check, fn, "adam_updates(grads, beta, gamma)")
    cases = _adam_cases(_hidden_rng(seed))
    run = _StudentCode(check, timeout)
    calls = [(grads.copy(), b, g) for grads, b, g in cases]
    values, raised, early = _collect(run, "adam_updates", fn, calls, lambda v, c: _to_array(v, c[0].shape),
                                     ("grads", "beta", "gamma"))
    if early is not None:
        if early.answered and "expected shape" in early.message and any(c[0].ndim == 2 for c in cases):
            return _result(check, False, early.message.split("\n")[0],
                           ["Work element-wise (one column per coordinate) so that grads of shape [N, p] work too."])
        return early
    if raised:
        i, exc = raised[0]
        grads, b, g = cases[i]
        only_2d = all(cases[j][0].ndim == 2 for j, _ in raised) and any(
            c[0].ndim == 1 for k, c in enumerate(cases) if k not in {j for j, _ in raised})
        return _result(check, False, f"adam_updates raised {_describe_exception(exc)} for grads of shape "
                       f"{grads.shape}, beta={b}, gamma={g}.",
                       _exception_hints(exc) + (["It works for one coordinate (shape [N]) but not for shape [N, p]: "
                                                 "work element-wise, one column per coordinate."] if only_2d else []))
    student = values
    reference = [_reference_adam(grads, b, g) for grads, b, g in cases]
    wrong = [not _agree(s, r, rtol=1e-9, atol=1e-300) for s, r in zip(student, reference)]
    if not any(wrong):
        return _result(check, True, "your updates match Adam's (Eq. 1, eps = 0) to 1e-9.",
                       [f"{len(cases)} gradient sequences, 1-D and 2-D, in B+ and B-, and gamma = 0."])
    mistake = _match_mistake(_ADAM_MISTAKES, cases, student, reference)
    i = wrong.index(True)
    grads, b, g = cases[i]
    with np.errstate(all="ignore"):
        bad = ~np.isclose(student[i], reference[i], rtol=1e-9, atol=1e-300)
    idx = tuple(np.argwhere(bad)[0])
    yours, right = _pair(student[i][idx], reference[i][idx])
    example = [f"For the sequence with beta={b}, gamma={g}, the first difference is at step n={idx[0]}: yours "
               f"{yours}, Adam's {right}.", *_nonfinite_note(student[i][idx])]
    if mistake is not None:
        return _result(check, False, mistake.hint, example)
    if idx[0] > 0 and all(_agree(s[:1], r[:1], rtol=1e-9) for s, r in zip(student, reference)):
        return _result(check, False, "right at n = 0, wrong later: are m and v carried from one step to the "
                       "next (and started at zero)?", example)
    return _result(check, False, "your updates differ from Adam's.", example)


# ---- the extremal sequence -------------------------------------------------------------

_EXTREMAL_CASES = [(0.999, 0.9), (0.9, 0.99), (0.25, 0.5), (0.5, 0.3), (0.95, 0.97)]
_EXTREMAL_STEPS = 60


@_stops_at_time_limit
def check_extremal_sequence(fn, *, timeout: float = 10.0, seed: int | None = None) -> CheckResult:
    """Check ``fn(steps, beta, gamma) -> g`` (shape [steps], real): a gradient sequence whose Adam
    updates attain the discrete bound at every step n = 0..steps-1 (ratio 1 to 1e-9).
    ``timeout``: seconds for all calls of ``fn`` together (default 10). ``seed``: None for the
    published pairs, an int for other pairs of the same kinds (an autograder's hidden tests)."""
    check = "check_extremal_sequence"
    validate.student_function(check, fn, "extremal_gradients(steps, beta, gamma)")
    rng = _hidden_rng(seed)
    pairs = _EXTREMAL_CASES if rng is None else [
        _drawn_pair(rng), _drawn_pair(rng, "B-"), _drawn_pair(rng, "exact"), _drawn_pair(rng), _drawn_pair(rng)]
    cases = [(_EXTREMAL_STEPS, b, g) for b, g in pairs]
    run = _StudentCode(check, timeout)
    values, raised, early = _collect(run, "extremal_gradients", fn, cases,
                                     lambda v, c: _to_array(v, (c[0],)), ("steps", "beta", "gamma"))
    if early is not None:
        return early
    if raised:
        i, exc = raised[0]
        return _result(check, False, f"extremal_gradients({_args(('steps', 'beta', 'gamma'), cases[i])}) raised "
                       f"{_describe_exception(exc)}.", _exception_hints(exc))
    for (steps, b, g), grads in zip(cases, values):
        if not np.all(np.isfinite(grads)) or grads[0] == 0:
            problem = "non-finite values" if not np.all(np.isfinite(grads)) else "g_0 = 0"
            return _result(check, False, f"for beta={b}, gamma={g} your sequence has {problem}.",
                           ["Every gradient must be a finite number, and g_0 nonzero (u_0 is 0/0 otherwise)."])
        with np.errstate(all="ignore"):
            u = np.abs(_reference_adam(grads, b, g))
            ratio = u / np.array([_reference_bound(n, b, g) for n in range(steps)])
        off = np.flatnonzero(~np.isclose(ratio, 1.0, rtol=0, atol=1e-9))
        if len(off):
            n = int(off[0])
            details = [f"|u_n| / bound is 1 for n < {n} and {_g(ratio[n])} at n = {n}; at n = {steps - 1} "
                       f"it is {_g(ratio[-1])}."]
            if n == 1:
                details.append("Any nonzero g_0 attains the bound at n = 0; the point is to attain it at every n "
                               "at once.")
            if np.allclose(grads, grads[0]):
                details.append("A constant gradient makes m_n and v_n settle down; it is not the worst case.")
            details.append("Equality in Cauchy-Schwarz needs the two sequences it pairs to be proportional, for "
                           "every n at the same time. Write both as functions of j and solve for g_j.")
            return _result(check, False, f"for beta={b}, gamma={g} your sequence does not attain the bound at "
                           "every step.", details)
    return _result(check, True, "your sequence attains the bound at every step (ratio 1 to 1e-9).",
                   [f"{len(cases)} (beta, gamma) pairs, in B+ and B- and at gamma^2 = beta, "
                    f"{_EXTREMAL_STEPS} steps each."])


# ---- the slope of the log bound --------------------------------------------------------

_RATE_CASES = [(0.999, 0.9), (0.9, 0.99), (0.25, 0.5), (0.3, 0.0), (0.5, 0.9), (0.95, 0.99), (0.999, 0.9995),
               (0.6, 0.7), (0.8, 0.95), (0.2, 0.9)]


def _continuous_rate(b, g):
    return float(bounds.growth_rate(b, g))


_RATE_MISTAKES = [  # math.log(0) raises ValueError: gamma = 0 is then left out of the comparison
    _Mistake("continuous", _continuous_rate,
             "This is the continuous-time prediction max(0, -C)/2 of Eq. 5. It agrees with the exact "
             "discrete slope only near (1, 1); the task asks for the slope of the exact discrete bound."),
    _Mistake("swapped", lambda b, g: max(0.0, math.log(b) - 0.5 * math.log(g)),
             "Notation trap: you used gamma where beta belongs."),
    _Mistake("no_max", lambda b, g: math.log(g) - 0.5 * math.log(b),
             "Negative in the bounded region: there the bound tends to a constant, so the slope of its log "
             "tends to 0, not to a negative number."),
    _Mistake("abs", lambda b, g: abs(math.log(g) - 0.5 * math.log(b)),
             "Positive in the bounded region: there the bound tends to a constant, so the slope of its log "
             "tends to 0."),
    _Mistake("factor2", lambda b, g: max(0.0, 2 * math.log(g) - math.log(b)),
             "Twice the slope: the geometric sum sits under a square root, which halves the exponent."),
    _Mistake("log10", lambda b, g: max(0.0, math.log10(g) - 0.5 * math.log10(b)),
             "Your slopes are 1/ln(10) times too small: use the natural logarithm (the slope of ln |u_n|)."),
]


@_stops_at_time_limit
def check_discrete_rate(fn, *, timeout: float = 10.0, seed: int | None = None) -> CheckResult:
    """Check ``fn(beta, gamma) -> float``: the slope of ln(discrete bound) per step as n -> inf
    (finite everywhere, 0 at gamma = 0). ``timeout``: seconds for all calls of ``fn`` together (default 10).
    ``seed``: None for the published pairs, an int for other pairs of the same kinds (hidden tests)."""
    check = "check_discrete_rate"
    validate.student_function(check, fn, "discrete_rate(beta, gamma)")
    rng = _hidden_rng(seed)
    cases = _RATE_CASES if rng is None else ([(_drawn_pair(rng)[0], 0.0)] + [_drawn_pair(rng, "B-") for _ in range(4)]
                                             + [_drawn_pair(rng) for _ in range(5)])
    run = _StudentCode(check, timeout)
    values, raised, early = _collect(run, "discrete_rate", fn, cases, lambda v, c: _to_float(v), ("beta", "gamma"))
    if early is not None:
        return early
    student = [math.nan if v is None else v for v in values]
    reference = [float(bounds.discrete_growth_rate(b, g)) for b, g in cases]
    wrong = [not _agree(s, r, rtol=1e-9, atol=1e-15) for s, r in zip(student, reference)]
    if not any(wrong):
        return _result(check, True, "your slopes are exact.",
                       [f"{len(cases)} points, bounded and growing, near (1, 1) and far from it, and gamma = 0."])
    skip = {i for i, _ in raised}
    mistake = _match_mistake(_RATE_MISTAKES, cases, student, reference, skip=skip)
    shown = [i for i, w in enumerate(wrong) if w and i not in skip]
    example = []
    if shown:
        b, g = cases[shown[0]]
        yours, right = _pair(student[shown[0]], reference[shown[0]])
        example = [f"At beta={b}, gamma={g}: yours {yours}, expected {right}.", *_nonfinite_note(student[shown[0]])]
    only_g0 = all(cases[i][1] == 0 for i, w in enumerate(wrong) if w)
    g0_hint = "At gamma = 0, ln(gamma) is -inf: what does the bound do there (and so its slope)?"
    if raised:
        i, exc = raised[0]
        b, g = cases[i]
        hints = _exception_hints(exc) + ([mistake.hint] if mistake else [])
        if g == 0:
            hints.append(g0_hint)
        return _result(check, False, f"discrete_rate(beta={b}, gamma={g}) raised {_describe_exception(exc)}.",
                       hints + example)
    if mistake is not None:
        return _result(check, False, mistake.hint, example)
    if only_g0:
        return _result(check, False, "right except at gamma = 0. " + g0_hint,
                       [f"At gamma = 0 yours is {_g(student[wrong.index(True)])}."])
    return _result(check, False, "your slopes differ from the exact discrete bound's.", example)


# ---- gradient sequences for the stress test --------------------------------------------


def gradient_families(steps: int = 200, p: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Random gradient sequences of several kinds, each of shape [steps, p] (float64).

    "gaussian", "heavy-tailed" (Cauchy), "growing" and "shrinking" (geometric trends with
    noise), "sparse" (mostly zero after a nonzero g_0), "alternating" (sign flips) and
    "one spike" (a single large gradient among small ones). g_0 is nonzero everywhere, so
    u_n is defined with eps = 0.
    """
    steps = validate.Int(1, meaning="the sequence length")("steps", steps)
    p = validate.Int(1, meaning="coordinates per gradient")("p", p)
    seed = validate.integer("seed", seed, lo=0)
    rng = np.random.default_rng(seed)
    n = np.arange(steps)[:, None]
    fam = {
        "gaussian": rng.normal(size=(steps, p)),
        "heavy-tailed": rng.standard_cauchy(size=(steps, p)),
        "growing": rng.normal(size=(steps, p)) * np.exp(0.05 * n),
        "shrinking": rng.normal(size=(steps, p)) * np.exp(-0.05 * n),
        "sparse": rng.normal(size=(steps, p)) * (rng.random((steps, p)) < 0.05),
        "alternating": (-1.0) ** n * (1.0 + 0.1 * rng.normal(size=(steps, p))),
        "one spike": 0.01 * rng.normal(size=(steps, p)),
    }
    fam["one spike"][min(steps - 1, steps // 3)] += 100.0
    for g in fam.values():
        g[0] = np.where(g[0] == 0.0, 1.0, g[0])
    return fam
