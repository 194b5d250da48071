"""Tests for kadam_edu.bounds (Eq. 5, App. E, App. P, and the exact discrete bound).

Every check compares against a formula written out independently here, or
against a direct simulation of Adam's moving averages (Eq. 1, eps = 0).
Notation: beta = second-moment decay, gamma = first-moment decay (the paper's).
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kadam_edu import bounds

# Any RuntimeWarning (numpy overflow, divide, invalid) fails the test.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

FAST = settings(max_examples=50, deadline=None)

decays = st.floats(0.01, 0.9999)  # beta, or gamma > 0
gammas_or_zero = st.one_of(st.just(0.0), st.floats(0.01, 0.999))


# ---------------------------------------------------------------------------
# independent reference formulas
# ---------------------------------------------------------------------------


def c_paper(beta, gamma):
    """C as printed in the paper (Section 3.1)."""
    return (2 * beta * (1 - gamma) - gamma * (1 - beta)) / (beta * gamma)


def eq5_direct(n, beta, gamma, tol=1e-12):
    """Eq. 5 literally, in plain floating point (moderate n only)."""
    c = c_paper(beta, gamma)
    if c > tol:
        b_n = 1 / math.sqrt(c)
    elif c < -tol:
        b_n = math.exp(n * abs(c) / 2) / math.sqrt(abs(c))
    else:
        b_n = math.sqrt(n)
    return (
        math.sqrt(1 - beta ** (n + 1))
        / (1 - gamma ** (n + 1))
        * (1 - gamma)
        / gamma
        * math.sqrt(beta / (1 - beta))
        * b_n
    )


def discrete_direct(n, beta, gamma):
    """The discrete bound with S_n summed term by term."""
    s_n = sum((gamma * gamma / beta) ** j for j in range(n + 1))
    return (
        math.sqrt(1 - beta ** (n + 1))
        / (1 - gamma ** (n + 1))
        * (1 - gamma)
        / math.sqrt(1 - beta)
        * math.sqrt(s_n)
    )


def simulate_updates(g, beta, gamma):
    """Adam's bias-corrected update u_n (Eq. 1, eps = 0) for gradients g[0..N-1].

    g may have trailing batch dimensions; returns an array of g's shape.
    """
    m = np.zeros_like(g[0])
    v = np.zeros_like(g[0])
    u = np.empty_like(g)
    for n in range(len(g)):
        m = gamma * m + (1 - gamma) * g[n]
        v = beta * v + (1 - beta) * g[n] ** 2
        with np.errstate(invalid="ignore"):  # 0/0 while all gradients so far are zero
            u[n] = math.sqrt(1 - beta ** (n + 1)) / (1 - gamma ** (n + 1)) * m / np.sqrt(v)
    return u


def spacings(betas, gammas):
    """Chord lengths between consecutive points."""
    return np.hypot(np.diff(betas), np.diff(gammas))


def arc_lengths(betas, gammas, gamma_of, increasing, sub=400):
    """Arc lengths along the curve gamma = gamma_of(beta) between consecutive points.

    Independent of the library's polyline: parametrise by p = beta + s*gamma
    (s = +1 for an increasing curve, -1 for a decreasing one), along which both
    coordinates have derivatives bounded by 1 even where the curve is vertical,
    and solve for beta on each p by bisection.
    """
    s = 1.0 if increasing else -1.0
    p = betas + s * gammas
    grid = p[:-1, None] + (p[1:] - p[:-1])[:, None] * np.linspace(0, 1, sub + 1)
    lo = np.broadcast_to(betas[:-1, None], grid.shape)
    hi = np.broadcast_to(betas[1:, None], grid.shape)
    for _ in range(60):
        mid = (lo + hi) / 2
        below = s * gamma_of(mid) + mid - grid < 0  # increasing in beta along each row
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    b = (lo + hi) / 2
    g = s * (grid - b)
    return np.hypot(np.diff(b, axis=1), np.diff(g, axis=1)).sum(axis=1)


def normal_gamma_of(beta0, gamma0):
    k = 2 * beta0**3 + gamma0**3
    return lambda b: np.cbrt(k - 2 * b**3)


def level_gamma_of(c):
    return lambda b: 2 * b / ((c + 1) * b + 1)


# ---------------------------------------------------------------------------
# C and regions
# ---------------------------------------------------------------------------


@FAST
@given(beta=decays, gamma=decays)
def test_stability_constant_matches_paper(beta, gamma):
    c = bounds.stability_constant(beta, gamma)
    assert isinstance(c, float)
    assert c == pytest.approx(c_paper(beta, gamma), rel=1e-9, abs=1e-9)
    assert c == pytest.approx(2 / gamma - 1 / beta - 1, rel=1e-9, abs=1e-9)


def test_stability_constant_vectorised_and_gamma_zero():
    betas = np.array([0.999, 0.5, 0.9])
    gammas = np.array([0.9, 0.68, 0.0])
    c = bounds.stability_constant(beta=betas, gamma=gammas)
    assert isinstance(c, np.ndarray) and c.shape == (3,)
    np.testing.assert_allclose(c[:2], c_paper(betas[:2], gammas[:2]), rtol=1e-12)
    assert c[2] == math.inf
    grid = bounds.stability_constant(betas[:, None], gammas[None, :2])
    assert grid.shape == (3, 2)


def test_region_examples_and_tol():
    assert bounds.region(0.999, 0.9) == "B+"  # torch defaults (betas=(0.9, 0.999))
    assert bounds.region(beta=0.5, gamma=0.9) == "B-"
    assert bounds.region(0.9, 0.0) == "B+"
    b0 = 0.5
    assert bounds.region(b0, 2 * b0 / (1 + b0)) == "B0"  # C = 0 is gamma = 2 beta/(1+beta)
    # a point with C = +1e-9: B+ at the default tol, B0 for tol = 1e-8
    gamma_eps = 2 / (1e-9 + 1 + 1 / b0)
    assert c_paper(b0, gamma_eps) == pytest.approx(1e-9, rel=1e-4)
    assert bounds.region(b0, gamma_eps) == "B+"
    assert bounds.region(b0, gamma_eps, tol=1e-8) == "B0"
    out = bounds.region([0.999, 0.5, b0], [0.9, 0.9, 2 * b0 / (1 + b0)])
    assert isinstance(out, np.ndarray)
    assert out.tolist() == ["B+", "B-", "B0"]
    assert isinstance(bounds.region(0.999, 0.9), str)


@FAST
@given(beta=decays, gamma=gammas_or_zero)
def test_beta_greater_than_gamma_is_stable(beta, gamma):
    if beta > gamma:
        assert bounds.region(beta, gamma) == "B+"
        assert bounds.stability_constant(beta, gamma) > 0


# ---------------------------------------------------------------------------
# Eq. 5 (continuous-time bound)
# ---------------------------------------------------------------------------

EQ5_POINTS = [(0.999, 0.9), (0.95, 0.9), (0.5, 0.9), (0.6, 0.85), (0.5, 2 / 3), (0.3, 0.1)]


@pytest.mark.parametrize("beta,gamma", EQ5_POINTS)
@pytest.mark.parametrize("n", [0, 1, 5, 50, 300])
def test_eq5_matches_direct_piecewise(n, beta, gamma):
    expected = eq5_direct(n, beta, gamma)
    got = bounds.max_update_bound(n, beta, gamma)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-300)
    if expected > 0:
        log_got = bounds.log_max_update_bound(n, beta, gamma)
        assert log_got == pytest.approx(math.log(expected), rel=1e-10, abs=1e-10)


def test_eq5_vectorised_over_n():
    n = np.arange(0, 40)
    got = bounds.max_update_bound(n, 0.6, 0.85)
    assert got.shape == n.shape
    np.testing.assert_allclose(got, [eq5_direct(int(k), 0.6, 0.85) for k in n], rtol=1e-10)


def test_eq5_overflows_to_inf_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bounds.max_update_bound(1e6, 0.5, 0.9) == math.inf
        assert bounds.max_update_bound(math.inf, 0.5, 0.9) == math.inf
        assert bounds.max_update_bound(5, 0.9, 0.0) == math.inf  # gamma = 0 degenerates
        assert bounds.log_max_update_bound(5, 0.9, 0.0) == math.inf
        assert bounds.max_update_bound(0, 0.5, 2 / 3) == 0.0  # B0: sqrt(n) at n = 0
        assert bounds.log_max_update_bound(0, 0.5, 2 / 3) == -math.inf
        # n -> inf in B+: the bound tends to its constant value
        limit = (1 - 0.9) / 0.9 * math.sqrt(0.999 / 0.001) / math.sqrt(c_paper(0.999, 0.9))
        assert bounds.max_update_bound(math.inf, 0.999, 0.9) == pytest.approx(limit, rel=1e-12)


def test_log_eq5_finite_at_huge_n():
    beta, gamma = 0.5, 0.9
    c = c_paper(beta, gamma)
    log_bound = bounds.log_max_update_bound(1e9, beta, gamma)
    assert math.isfinite(log_bound)
    # log of Eq. 5 for n -> inf in B-: prefactor (bias terms -> 1) + n|C|/2 - log|C|/2
    expected = (
        math.log((1 - gamma) / gamma * math.sqrt(beta / (1 - beta)))
        + 1e9 * abs(c) / 2
        - 0.5 * math.log(abs(c))
    )
    assert log_bound == pytest.approx(expected, rel=1e-14)
    assert np.all(np.isfinite(bounds.log_max_update_bound([1e12, 1e15], 0.3, 0.95)))


@pytest.mark.parametrize("beta,gamma", [(0.5, 0.9), (0.99, 0.995), (0.999, 0.9), (0.9, 0.0)])
def test_growth_rate_is_slope_of_log_eq5(beta, gamma):
    rate = bounds.growth_rate(beta, gamma)
    assert rate == pytest.approx(max(0.0, -c_paper(beta, gamma)) / 2 if gamma else 0.0)
    n = 1e7
    slope = (bounds.log_max_update_bound(n + 1e5, beta, gamma)
             - bounds.log_max_update_bound(n, beta, gamma)) / 1e5
    if gamma == 0:
        assert math.isinf(bounds.log_max_update_bound(n, beta, gamma))
    else:
        assert slope == pytest.approx(rate, rel=1e-6, abs=1e-12)


# ---------------------------------------------------------------------------
# the exact discrete-time bound
# ---------------------------------------------------------------------------

DISCRETE_POINTS = [(0.999, 0.9), (0.5, 0.9), (0.5, 0.68), (0.81, 0.9), (0.3, 0.0), (0.99, 0.2)]


@pytest.mark.parametrize("beta,gamma", DISCRETE_POINTS)
def test_discrete_bound_matches_direct_sum(beta, gamma):
    n = np.arange(0, 40)
    got = bounds.discrete_max_update_bound(n, beta, gamma)
    np.testing.assert_allclose(got, [discrete_direct(int(k), beta, gamma) for k in n], rtol=1e-11)
    assert bounds.discrete_max_update_bound(0, beta, gamma) == pytest.approx(1.0)  # u_0 = sign(g_0)
    log_got = bounds.log_discrete_max_update_bound(n, beta, gamma)
    np.testing.assert_allclose(np.exp(log_got), got, rtol=1e-12)


@pytest.mark.parametrize(
    "beta,gamma", [(0.999, 0.9), (0.5, 0.9), (0.5, 0.68), (0.95, 0.99), (0.2, 0.6)]
)
def test_discrete_bound_attained_by_geometric_gradients(beta, gamma):
    ratio = beta / gamma
    steps = min(200, int(250 / max(abs(math.log10(ratio)), 1e-3)))  # keep g^2 in float range
    g = ratio ** np.arange(steps, dtype=float)
    u = simulate_updates(g, beta, gamma)
    bound = bounds.discrete_max_update_bound(np.arange(steps), beta, gamma)
    np.testing.assert_allclose(np.abs(u), bound, rtol=1e-9)


def test_discrete_bound_rmsprop_gamma_zero():
    beta = 0.9
    n = np.arange(30)
    expected = np.sqrt((1 - beta ** (n + 1)) / (1 - beta))  # S_n = 1
    np.testing.assert_allclose(bounds.discrete_max_update_bound(n, beta, 0.0), expected, rtol=1e-12)
    # attained by a gradient that is zero except at the last step
    for last in (0, 5, 29):
        g = np.zeros(last + 1)
        g[last] = -3.0
        assert abs(simulate_updates(g, beta, 0.0)[-1]) == pytest.approx(expected[last], rel=1e-12)
    assert bounds.discrete_growth_rate(beta, 0.0) == 0.0


def _gradients(kind, rng, steps, beta, gamma):
    if kind == "normal":
        return rng.normal(size=(steps, 8))
    if kind == "cauchy":
        return rng.standard_cauchy(size=(steps, 8))
    if kind == "student_t":
        return rng.standard_t(1.5, size=(steps, 8))
    if kind == "spiky":
        g = rng.normal(size=(steps, 8)) * 1e-3
        g[rng.random(size=g.shape) < 0.05] *= 1e6
        return g
    if kind == "geometric":  # random ratios, signs, scales, incl. the extremal beta/gamma
        ratios = rng.uniform(0.5, 2.0, size=8)
        if gamma > 0:
            ratios[0] = beta / gamma
        ratios = np.clip(ratios, 1e-2, 10 ** (120 / steps))
        signs = rng.choice([-1.0, 1.0], size=8)
        return signs * rng.uniform(0.1, 10, size=8) * ratios ** np.arange(steps)[:, None]
    raise AssertionError(kind)


@FAST
@given(
    beta=decays,
    gamma=gammas_or_zero,
    kind=st.sampled_from(["normal", "cauchy", "student_t", "spiky", "geometric"]),
    steps=st.integers(1, 120),
    seed=st.integers(0, 2**32 - 1),
)
def test_discrete_bound_never_exceeded(beta, gamma, kind, steps, seed):
    g = _gradients(kind, np.random.default_rng(seed), steps, beta, gamma)
    u = simulate_updates(g, beta, gamma)
    bound = bounds.discrete_max_update_bound(np.arange(steps), beta, gamma)
    assert np.all(np.abs(u) <= bound[:, None] * (1 + 1e-9))


@FAST
@given(beta=st.floats(0.05, 0.999), gamma=st.floats(0.01, 0.999))
def test_discrete_bound_bounded_iff_gamma_squared_below_beta(beta, gamma):
    r = gamma**2 / beta
    if abs(math.log(r)) < 1e-3:
        return  # too close to the boundary to tell apart at n = 1e6
    at_inf = bounds.discrete_max_update_bound(math.inf, beta, gamma)
    at_big = bounds.discrete_max_update_bound(1e6, beta, gamma)
    if r < 1:
        limit = (1 - gamma) / math.sqrt(1 - beta) / math.sqrt(1 - r)
        assert at_inf == pytest.approx(limit, rel=1e-9)
        assert at_big == pytest.approx(limit, rel=1e-9)
        assert bounds.discrete_growth_rate(beta, gamma) == 0.0
    else:
        assert at_inf == math.inf
        log_big = bounds.log_discrete_max_update_bound(1e6, beta, gamma)
        assert bounds.log_discrete_max_update_bound(2e6, beta, gamma) > log_big + 1.0
        assert bounds.discrete_growth_rate(beta, gamma) > 0


def test_discrete_boundary_grows_like_sqrt_n():
    beta = 0.64
    gamma = 0.8  # gamma^2 == beta (up to rounding): S_n = n + 1
    n = np.array([1e4, 1e6, 1e8])
    expected = 0.5 * np.log(n + 1) + math.log((1 - gamma) / math.sqrt(1 - beta))
    got = bounds.log_discrete_max_update_bound(n, beta, gamma)
    np.testing.assert_allclose(got, expected, rtol=1e-8)


@pytest.mark.parametrize("beta,gamma", [(0.5, 0.9), (0.9, 0.99), (0.999, 0.9999), (0.5, 0.68)])
def test_discrete_growth_rate_is_slope_of_log_bound(beta, gamma):
    rate = bounds.discrete_growth_rate(beta, gamma)
    assert rate == pytest.approx(max(0.0, math.log(gamma) - 0.5 * math.log(beta)))
    n = 1e9
    slope = (bounds.log_discrete_max_update_bound(n + 1e6, beta, gamma)
             - bounds.log_discrete_max_update_bound(n, beta, gamma)) / 1e6
    assert math.isfinite(bounds.log_discrete_max_update_bound(n, beta, gamma))
    assert slope == pytest.approx(rate, rel=1e-6, abs=1e-12)


# ---------------------------------------------------------------------------
# continuous (Eq. 5) versus discrete: where they agree and where they differ
# ---------------------------------------------------------------------------


def test_limits_agree_near_one():
    ratios = []
    for beta, gamma in [(0.99, 0.9), (0.999, 0.99), (0.9999, 0.999)]:
        ratios.append(bounds.max_update_bound(math.inf, beta, gamma)
                      / bounds.discrete_max_update_bound(math.inf, beta, gamma))
    assert abs(ratios[-1] - 1) < 0.01
    assert abs(ratios[0] - 1) > abs(ratios[1] - 1) > abs(ratios[2] - 1)  # -> 1


def test_boundaries_differ():
    betas = np.linspace(0.05, 0.95, 19)
    c_zero = 2 * betas / (1 + betas)
    np.testing.assert_allclose(bounds.stability_constant(betas, c_zero), 0, atol=1e-12)
    assert set(bounds.region(betas, c_zero).tolist()) == {"B0"}
    disc = np.sqrt(betas)
    np.testing.assert_allclose(bounds.discrete_growth_rate(betas, disc), 0, atol=1e-15)
    assert np.all(c_zero < disc)  # the continuous boundary lies strictly below the discrete one


def test_point_between_the_boundaries():
    beta, gamma = 0.5, 0.68
    assert 2 * beta / (1 + beta) < gamma < math.sqrt(beta)
    assert bounds.region(beta, gamma) == "B-"
    assert bounds.growth_rate(beta, gamma) > 0
    assert bounds.discrete_growth_rate(beta, gamma) == 0.0
    n = np.array([1e3, 1e5, 1e7])
    cont = bounds.log_max_update_bound(n, beta, gamma)
    disc = bounds.log_discrete_max_update_bound(n, beta, gamma)
    assert np.all(np.diff(cont) > 10)  # Eq. 5 grows exponentially ...
    assert np.ptp(disc) < 1e-6  # ... while the exact discrete bound stays put
    r = gamma**2 / beta
    limit = (1 - gamma) / math.sqrt(1 - beta) / math.sqrt(1 - r)
    assert bounds.discrete_max_update_bound(math.inf, beta, gamma) == pytest.approx(limit)


def test_growth_rates_agree_to_leading_order():
    # along beta = 1 - 3t, gamma = 1 - t: |C|/2 ~ t/2 and ln(gamma) - ln(beta)/2 ~ t/2
    errors = []
    for t in [1e-2, 1e-3, 1e-4]:
        beta, gamma = 1 - 3 * t, 1 - t
        cont, disc = bounds.growth_rate(beta, gamma), bounds.discrete_growth_rate(beta, gamma)
        assert cont == pytest.approx(t / 2, rel=20 * t)
        errors.append(abs(cont / disc - 1))
    assert errors[0] > 5 * errors[1] > 25 * errors[2]  # relative gap is O(t)
    assert errors[-1] < 1e-3


# ---------------------------------------------------------------------------
# normal curves (App. E)
# ---------------------------------------------------------------------------

CURVE_POINTS = [(0.999, 0.9), (0.95, 0.9), (0.5, 0.5), (0.1, 0.9), (0.9, 0.05), (0.3, 0.2)]


def _normal_curve_ends(beta0, gamma0):
    """Boundary ends of gamma^3 + 2 beta^3 = k inside the unit square (low beta, high beta)."""
    k = 2 * beta0**3 + gamma0**3
    start = ((k - 1) / 2) ** (1 / 3) if k > 1 else 0.0, min(1.0, k ** (1 / 3))
    end = (1.0, (k - 2) ** (1 / 3)) if k >= 2 else ((k / 2) ** (1 / 3), 0.0)
    return start, end


@pytest.mark.parametrize("beta0,gamma0", CURVE_POINTS)
def test_normal_curve_geometry(beta0, gamma0):
    betas, gammas = bounds.normal_curve(beta0, gamma0, 64)
    k = 2 * beta0**3 + gamma0**3
    assert betas.shape == gammas.shape == (64,)
    np.testing.assert_allclose(gammas**3 + 2 * betas**3, k, rtol=0, atol=1e-9)
    assert np.all((betas > 0) & (betas < 1) & (gammas > 0) & (gammas < 1))
    assert np.all(np.diff(betas) > 0) and np.all(np.diff(gammas) < 0)
    d = spacings(betas, gammas)
    assert d.std() / d.mean() < 1e-3
    # uniform in arc length; both ends lie on the square's boundary: half a spacing away
    start, end = _normal_curve_ends(beta0, gamma0)
    arcs = arc_lengths(
        np.r_[start[0], betas, end[0]], np.r_[start[1], gammas, end[1]],
        normal_gamma_of(beta0, gamma0), increasing=False,
    )
    h = arcs[1:-1].mean()
    assert arcs[1:-1].std() / h < 1e-5
    assert arcs[0] == pytest.approx(h / 2, rel=1e-5) and arcs[-1] == pytest.approx(h / 2, rel=1e-5)
    # the curve passes through (beta0, gamma0)
    assert betas[0] < beta0 < betas[-1]


@pytest.mark.parametrize("beta0,gamma0", CURVE_POINTS)
def test_normal_curve_passes_through_point(beta0, gamma0):
    start, end = _normal_curve_ends(beta0, gamma0)
    hi = (beta0 + min(end[0], 0.9999)) / 2
    betas, gammas = bounds.normal_curve(beta0, gamma0, 50, beta_range=(beta0, hi))
    assert betas[0] == beta0 and gammas[0] == pytest.approx(gamma0, abs=1e-12)
    assert betas[-1] == hi  # ends cut by beta_range are included
    d = spacings(betas, gammas)
    assert d.std() / d.mean() < 1e-3


@settings(max_examples=30, deadline=None)
@given(
    beta0=st.floats(0.01, 0.99),
    gamma0=st.floats(0.01, 0.99),
    num=st.integers(1, 200),
    cut=st.one_of(st.none(), st.tuples(st.floats(0.0, 0.98), st.floats(0.01, 0.5))),
)
def test_normal_curve_properties(beta0, gamma0, num, cut):
    beta_range = None
    if cut is not None:
        lo = cut[0] + 1e-3
        beta_range = (lo, min(lo + cut[1], 0.999))
        start, end = _normal_curve_ends(beta0, gamma0)
        if beta_range[0] >= end[0] or beta_range[1] <= start[0]:
            with pytest.raises(ValueError, match="does not intersect"):
                bounds.normal_curve(beta0, gamma0, num, beta_range=beta_range)
            return
    betas, gammas = bounds.normal_curve(beta0, gamma0, num, beta_range=beta_range)
    assert len(betas) == len(gammas) == num
    k = 2 * beta0**3 + gamma0**3
    np.testing.assert_allclose(gammas**3 + 2 * betas**3, k, rtol=0, atol=1e-9)
    assert np.all((betas > 0) & (betas < 1) & (gammas > 0) & (gammas < 1))
    if beta_range is not None:
        assert np.all((betas >= beta_range[0]) & (betas <= beta_range[1]))
    if num > 2:
        assert np.all(np.diff(betas) > 0)
        arcs = arc_lengths(betas, gammas, normal_gamma_of(beta0, gamma0), increasing=False)
        assert arcs.std() / arcs.mean() < 1e-5


@pytest.mark.parametrize("beta0,gamma0", [(0.999, 0.9), (0.5, 0.5), (0.9, 0.05)])
def test_normal_curve_orthogonal_to_level_curves(beta0, gamma0):
    betas, gammas = bounds.normal_curve(beta0, gamma0, 2001)
    tangent = np.stack([betas[2:] - betas[:-2], gammas[2:] - gammas[:-2]])
    b, g = betas[1:-1], gammas[1:-1]
    grad_c = np.stack([1 / b**2, -2 / g**2])  # grad of 2/gamma - 1/beta - 1
    level_tangent = np.stack([np.ones_like(b), g**2 / (2 * b**2)])  # implicit differentiation

    def cos(x, y):
        return np.sum(x * y, axis=0) / np.linalg.norm(x, axis=0) / np.linalg.norm(y, axis=0)

    assert np.all(np.abs(cos(tangent, grad_c)) > 1 - 1e-6)  # parallel to grad C
    assert np.all(np.abs(cos(tangent, level_tangent)) < 1e-3)  # perpendicular to the level curve
    # ... and to the library's own level curve through a few of the points
    for i in (100, 1000, 1900):
        c = c_paper(b[i], g[i])
        lb, lg = bounds.level_curve(c, 2, beta_range=(b[i] - 1e-5, b[i] + 1e-5))
        chord = np.array([lb[1] - lb[0], lg[1] - lg[0]])
        assert abs(cos(tangent[:, i], chord)) < 1e-3


def test_normal_curve_through_torch_defaults_crosses_regions():
    betas, gammas = bounds.normal_curve(0.999, 0.9, 64)
    c = c_paper(betas, gammas)
    assert np.all(np.diff(c) > 0)  # C is monotone along a normal curve
    assert c[0] < 0 < c[-1]
    regions = bounds.region(betas, gammas)
    assert regions[0] == "B-" and regions[-1] == "B+"
    switch = np.flatnonzero(regions[:-1] != regions[1:])
    assert len(switch) == 1  # a single crossing from B- to B+


def test_normal_curve_single_point():
    betas, gammas = bounds.normal_curve(0.5, 0.5, 1)  # both ends open: the midpoint
    assert betas.shape == (1,)
    full_b, full_g = bounds.normal_curve(0.5, 0.5, 3)
    assert (betas[0], gammas[0]) == pytest.approx((full_b[1], full_g[1]), abs=1e-9)


# ---------------------------------------------------------------------------
# level curves
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("c", [-50.0, -1.0, -0.3, 0.0, 0.2212, 5.0, 1e3])
def test_level_curve(c):
    betas, gammas = bounds.level_curve(c, 64)
    assert betas.shape == gammas.shape == (64,)
    np.testing.assert_allclose(c_paper(betas, gammas), c, rtol=1e-9, atol=1e-9)
    assert np.all((betas > 0) & (betas < 1) & (gammas > 0) & (gammas < 1))
    assert np.all(np.diff(betas) > 0) and np.all(np.diff(gammas) > 0)
    d = spacings(betas, gammas)
    assert d.std() / d.mean() < 1e-3
    # uniform in arc length; open ends at (0, 0) and at the exit through gamma = 1
    # (c <= 0) or beta = 1 (c > 0), each half a spacing away
    end = (1 / (1 - c), 1.0) if c <= 0 else (1.0, 2 / (c + 2))
    arcs = arc_lengths(np.r_[0.0, betas, end[0]], np.r_[0.0, gammas, end[1]],
                       level_gamma_of(c), increasing=True)
    h = arcs[1:-1].mean()
    assert arcs[1:-1].std() / h < 1e-5
    assert arcs[0] == pytest.approx(h / 2, rel=1e-5) and arcs[-1] == pytest.approx(h / 2, rel=1e-5)


def test_level_curve_with_beta_range():
    betas, gammas = bounds.level_curve(0.3, 40, beta_range=(0.2, 0.8))
    assert betas[0] == 0.2 and betas[-1] == 0.8
    np.testing.assert_allclose(c_paper(betas, gammas), 0.3, atol=1e-12)
    d = spacings(betas, gammas)
    assert d.std() / d.mean() < 1e-3
    # range beyond the curve's exit through gamma = 1 at beta = 1/(1 - c) = 0.5
    betas, gammas = bounds.level_curve(-1.0, 10, beta_range=(0.1, 0.9))
    assert betas[0] == 0.1 and betas[-1] < 0.5 and gammas[-1] < 1


# ---------------------------------------------------------------------------
# Eq. 15 (App. P)
# ---------------------------------------------------------------------------


def test_annealed_lr_cancels_growth_in_b_minus():
    beta, gamma, lr0 = 0.5, 0.9, 3e-4
    n = np.arange(0, 500, 7)
    expected = lr0 * np.exp(-n * abs(c_paper(beta, gamma)) / 2)
    np.testing.assert_allclose(bounds.annealed_lr(n, lr0, beta, gamma), expected, rtol=1e-12)
    # the annealed step bound lr_n * Eq. 5 tends to a constant (B+-like)
    big = np.array([400.0, 800.0, 1200.0])
    log_step = np.log(bounds.annealed_lr(big, lr0, beta, gamma)) + bounds.log_max_update_bound(
        big, beta, gamma
    )
    np.testing.assert_allclose(log_step, log_step[-1], rtol=1e-12)


@pytest.mark.parametrize("beta,gamma", [(0.999, 0.9), (0.5, 2 / 3), (0.9, 0.0)])
def test_annealed_lr_constant_outside_b_minus(beta, gamma):
    n = np.array([0.0, 10.0, 1e6, math.inf])
    np.testing.assert_array_equal(bounds.annealed_lr(n, 1e-3, beta, gamma), 1e-3)
    assert bounds.annealed_lr(5, 1e-3, beta=beta, gamma=gamma) == 1e-3


def test_annealed_lr_underflows_quietly():
    assert bounds.annealed_lr(math.inf, 1e-3, 0.5, 0.9) == 0.0
    assert bounds.annealed_lr(1e9, 1e-3, 0.5, 0.9) == 0.0


# ---------------------------------------------------------------------------
# no warnings, return types, bad input
# ---------------------------------------------------------------------------


def test_no_runtime_warning_on_edge_inputs():
    edge_n = np.array([0.0, 1.0, 1e9, 1e300, math.inf])
    edge_beta = np.array([1e-300, 0.5, 1 - 1e-16])[:, None, None]
    edge_gamma = np.array([0.0, 1e-300, 0.5, 1 - 1e-16])[None, :, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in (bounds.max_update_bound, bounds.log_max_update_bound,
                  bounds.discrete_max_update_bound, bounds.log_discrete_max_update_bound):
            out = f(edge_n, edge_beta, edge_gamma)
            assert out.shape == (3, 4, 5)
            assert not np.any(np.isnan(out))
        for f in (bounds.stability_constant, bounds.growth_rate, bounds.discrete_growth_rate):
            assert not np.any(np.isnan(f(edge_beta, edge_gamma)))
        bounds.region(edge_beta, edge_gamma)
        assert not np.any(np.isnan(bounds.annealed_lr(edge_n, 1.0, edge_beta, edge_gamma)))
        bounds.normal_curve(1e-6, 1 - 1e-6, 10)
        bounds.level_curve(-1e6, 10)


def test_scalar_in_float_out():
    for f in (bounds.max_update_bound, bounds.log_max_update_bound,
              bounds.discrete_max_update_bound, bounds.log_discrete_max_update_bound):
        assert type(f(3, 0.999, 0.9)) is float
        assert isinstance(f([3], 0.999, 0.9), np.ndarray)
    for f in (bounds.stability_constant, bounds.growth_rate, bounds.discrete_growth_rate):
        assert type(f(0.999, 0.9)) is float
    assert type(bounds.annealed_lr(3, 1e-3, 0.5, 0.9)) is float


BETA_MSG = (
    r"beta must lie in \(0, 1\) \(the paper's second-moment decay, torch's betas\[1\]\); got "
)
GAMMA_MSG = (
    r"gamma must lie in \[0, 1\) \(the paper's first-moment decay, torch's betas\[0\]\); got "
)
RANGE_MSG = r"beta_range must be a pair \(lo, hi\) with 0 < lo < hi < 1"

BAD_INPUTS = [
    (lambda: bounds.stability_constant(1.0, 0.9), BETA_MSG + "1.0"),
    (lambda: bounds.stability_constant(0.0, 0.9), BETA_MSG + "0.0"),
    (lambda: bounds.region(float("nan"), 0.9), BETA_MSG + "nan"),
    (lambda: bounds.growth_rate([0.5, 1.5], 0.9), BETA_MSG + "1.5"),
    (lambda: bounds.stability_constant("abc", 0.9), r"beta must be a real number or array"),
    (lambda: bounds.stability_constant(0.9, 1.0), GAMMA_MSG + "1.0"),
    (lambda: bounds.discrete_growth_rate(0.9, -0.1), GAMMA_MSG + "-0.1"),
    (lambda: bounds.max_update_bound(3, 0.9, float("nan")), GAMMA_MSG + "nan"),
    (lambda: bounds.max_update_bound(-1, 0.9, 0.9), r"n must lie in \[0, inf\] .*; got -1.0"),
    (lambda: bounds.log_discrete_max_update_bound(float("nan"), 0.9, 0.9), r"n must .*got nan"),
    (lambda: bounds.annealed_lr(-2, 1e-3, 0.5, 0.9), r"n must lie in .*got -2.0"),
    (lambda: bounds.annealed_lr(1, -1e-3, 0.5, 0.9), r"lr0 must lie in \[0, inf\) .*got -0.001"),
    (lambda: bounds.annealed_lr(1, float("nan"), 0.5, 0.9), r"lr0 must lie in .*got nan"),
    (lambda: bounds.region(0.5, 0.5, tol=-1.0), r"tol must lie in \[0, inf\)"),
    (lambda: bounds.normal_curve(0.5, 0.5, 0), r"num must lie in \[1, inf\) .*got 0"),
    (lambda: bounds.normal_curve(0.5, 0.5, 2.5), r"num must be an integer .*got 2.5"),
    (lambda: bounds.level_curve(0.0, True), r"num must be an integer .*got True"),
    (lambda: bounds.normal_curve(1.0, 0.5, 5), r"beta0 must lie in \(0, 1\) .*got 1.0"),
    (lambda: bounds.normal_curve(0.5, 0.0, 5), r"gamma0 must lie in \(0, 1\) .*got 0.0"),
    (lambda: bounds.normal_curve(0.5, float("nan"), 5), r"gamma0 must lie in \(0, 1\) .*got nan"),
    (lambda: bounds.normal_curve(0.5, 0.5, 5, beta_range=(0.4, 0.3)), RANGE_MSG),
    (lambda: bounds.normal_curve(0.5, 0.5, 5, beta_range=(0.0, 0.3)), RANGE_MSG),
    (lambda: bounds.level_curve(0.0, 5, beta_range=(0.2, 1.0)), RANGE_MSG),
    (lambda: bounds.level_curve(0.0, 5, beta_range=(0.2,)), RANGE_MSG),
    (lambda: bounds.level_curve(0.0, 5, beta_range=(float("nan"), 0.5)), RANGE_MSG),
    (lambda: bounds.level_curve(0.0, 5, beta_range="ab"), RANGE_MSG),
    (lambda: bounds.normal_curve(0.999, 0.9, 5, beta_range=(0.1, 0.5)), r"does not intersect"),
    (lambda: bounds.level_curve(-1.0, 5, beta_range=(0.6, 0.9)), r"does not intersect the curve"),
    (lambda: bounds.level_curve(float("nan"), 5), r"c must lie in \(-inf, inf\) .*got nan"),
    (lambda: bounds.level_curve(float("inf"), 5), r"c must lie in .*got inf"),
    (lambda: bounds.level_curve([0.1, 0.2], 5), r"c must be a real number in"),
]


@pytest.mark.parametrize("call,message", BAD_INPUTS, ids=[m[:30] for _, m in BAD_INPUTS])
def test_bad_input_raises_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------
# issue 10, item 12: subnormal and tiny decays, non-numeric input, shapes
# ---------------------------------------------------------------------------

mpmath = pytest.importorskip("mpmath")
mp = mpmath.mp
TINY = 5e-324  # the smallest positive (subnormal) double


def c_mp(beta, gamma):
    """C(beta, gamma) = 2/gamma - 1/beta - 1 in 80-digit arithmetic (+inf at gamma = 0)."""
    with mp.workdps(80):
        if gamma == 0:
            return mpmath.inf
        return 2 / mpmath.mpf(gamma) - 1 / mpmath.mpf(beta) - 1


def log_eq5_mp(n, beta, gamma, tol=1e-12):
    """log of Eq. 5 in 80-digit arithmetic, exact at the float inputs (n may be +inf)."""
    with mp.workdps(80):
        if gamma == 0:
            return mpmath.inf
        n, b, g, c = mpmath.mpf(n), mpmath.mpf(beta), mpmath.mpf(gamma), c_mp(beta, gamma)
        if c > tol:
            log_b = -mpmath.log(c) / 2
        elif c < -tol:
            log_b = (n * abs(c) - mpmath.log(abs(c))) / 2 if n > 0 else -mpmath.log(abs(c)) / 2
        else:
            log_b = mpmath.log(n) / 2 if n > 0 else -mpmath.inf
        bias = 0 if mpmath.isinf(n) else mpmath.log(1 - b ** (n + 1)) / 2 - mpmath.log(1 - g ** (n + 1))
        return bias + mpmath.log(1 - g) - mpmath.log(g) + (mpmath.log(b) - mpmath.log(1 - b)) / 2 + log_b


def assert_log_close(got, ref, rel=1e-11):
    """got (a float) equals the mpmath value ref: equal infinities, else |diff| <= rel (1 + |ref|)."""
    ref = float(ref)  # +-inf when out of float range
    if math.isinf(ref):
        assert got == ref
    else:
        assert abs(got - ref) <= rel * (1 + abs(ref)), (got, ref)


# (n, beta, gamma): subnormal and tiny decays, where C or beta*gamma leaves the float range
TINY_DECAY_POINTS = [
    (5, 1e-310, 0.9),        # C ~ -1e310 overflows: B-, the bound is +inf (was nan)
    (0, 1e-310, 0.9),        # n = 0: exp(n|C|/2) = 1, bound ~ beta/gamma (was nan)
    (1e-300, 1e-310, 0.9),   # continuous time, n|C|/2 ~ 5.6e9 finite although |C| overflows (was nan)
    (math.inf, 1e-310, 0.9),
    (5, 0.999, 1e-308),      # C ~ 2e308 overflows: B+, bound ~ 1/sqrt(2 gamma) ~ 1.7e153 (was 0.0)
    (0, 0.999, 1e-308),
    (5, 0.999, TINY),
    (5, TINY, TINY),         # C = 1/gamma - 1: bound -> 1 (was 0.0)
    (5, TINY, 2 * TINY),     # C = -1 exactly, but beta*gamma and the numerator underflow (was B0)
    (3, 1e-200, 1e-200),     # beta*gamma = 1e-400 underflows, C = 1e200 - 1 (was +inf)
    (3, 1e-200, 1e-150),     # C ~ -1e200
    (7, 0.5, 1e-300),
    (7, 1 - 2**-53, 1 - 2**-53),  # largest decays below 1
    (7, 1 - 2**-53, 0.5),
]


@pytest.mark.parametrize("n,beta,gamma", TINY_DECAY_POINTS)
def test_tiny_decays_match_high_precision(n, beta, gamma):
    """Eq. 5, C and its region at decays down to the smallest subnormal (issue 10, item 12)."""
    c_ref = c_mp(beta, gamma)
    assert_log_close(bounds.stability_constant(beta, gamma), c_ref, rel=1e-14)
    assert bounds.region(beta, gamma) == ("B+" if c_ref > 1e-12 else "B-" if c_ref < -1e-12 else "B0")
    assert_log_close(bounds.growth_rate(beta, gamma), max(0, -c_ref) / 2, rel=1e-14)
    ref = log_eq5_mp(n, beta, gamma)
    assert_log_close(bounds.log_max_update_bound(n, beta, gamma), ref)
    with mp.workdps(80):
        expected = float(mpmath.exp(ref)) if ref < 710 else math.inf
    assert bounds.max_update_bound(n, beta, gamma) == pytest.approx(expected, rel=1e-10, abs=0)


@pytest.mark.parametrize("n,beta,gamma", [(0, 1e-310, 0.9), (1e-320, 1e-310, 0.9), (1e-300, 1e-310, 0.9),
                                          (5, 1e-310, 0.9), (0, TINY, 2 * TINY), (4, TINY, 2 * TINY)])
def test_annealed_lr_at_tiny_decays(n, beta, gamma):
    """Eq. 15: lr0 exp(-n|C|/2) with |C| past the float range stays exact (was nan at n = 0)."""
    with mp.workdps(80):
        expected = float(1e-3 * mpmath.exp(-mpmath.mpf(n) * abs(c_mp(beta, gamma)) / 2))
    assert bounds.annealed_lr(n, 1e-3, beta, gamma) == pytest.approx(expected, rel=1e-12, abs=0)


# every float in the open unit interval, subnormals included
open_decays = st.floats(0.0, 1.0, exclude_min=True, exclude_max=True)
steps_any = st.one_of(st.integers(0, 10**6), st.floats(0.0, 1e6), st.just(math.inf))


@settings(max_examples=200, deadline=None)
@given(n=steps_any, beta=open_decays, gamma=st.one_of(st.just(0.0), open_decays))
def test_log_eq5_matches_high_precision_on_the_whole_domain(n, beta, gamma):
    """log Eq. 5 to ~1e-11 relative wherever float C can be trusted (it rounds at ~eps*|terms|)."""
    c_ref = c_mp(beta, gamma)
    if gamma > 0:
        with mp.workdps(80):
            err_c = 8 * 2.0**-52 * (2 / mpmath.mpf(gamma) + 1 / mpmath.mpf(beta) + 1)
            # far from the B0 band edge, and float C accurate to 1e-6 relative
            assume(abs(abs(c_ref) - 1e-12) > err_c and err_c < 1e-6 * abs(c_ref))
    ref = log_eq5_mp(n, beta, gamma)
    assert_log_close(bounds.log_max_update_bound(n, beta, gamma), ref, rel=1e-10)


@settings(max_examples=100, deadline=None)
@given(n=steps_any, beta=open_decays, gamma=st.one_of(st.just(0.0), open_decays))
def test_no_nan_or_warning_anywhere_in_the_domain(n, beta, gamma):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in (bounds.max_update_bound, bounds.log_max_update_bound,
                  bounds.discrete_max_update_bound, bounds.log_discrete_max_update_bound):
            assert not math.isnan(f(n, beta, gamma)), f.__name__
        for f in (bounds.stability_constant, bounds.growth_rate, bounds.discrete_growth_rate):
            assert not math.isnan(f(beta, gamma)), f.__name__
        assert bounds.region(beta, gamma) in ("B+", "B0", "B-")
        assert 0.0 <= bounds.annealed_lr(n, 1e-3, beta, gamma) <= 1e-3
        assert bounds.max_update_bound(n, beta, gamma) >= 0.0


# Every public function, with each argument given a value that is not a real number.
N_BG = [("n", "beta", "gamma"), (5, 0.999, 0.9)]
SIGNATURES = {
    bounds.stability_constant: [("beta", "gamma"), (0.999, 0.9)],
    bounds.region: [("beta", "gamma", "tol"), (0.999, 0.9, 1e-12)],
    bounds.max_update_bound: N_BG,
    bounds.log_max_update_bound: N_BG,
    bounds.growth_rate: [("beta", "gamma"), (0.999, 0.9)],
    bounds.discrete_max_update_bound: N_BG,
    bounds.log_discrete_max_update_bound: N_BG,
    bounds.discrete_growth_rate: [("beta", "gamma"), (0.999, 0.9)],
    bounds.normal_curve: [("beta0", "gamma0", "num"), (0.999, 0.9, 5)],
    bounds.level_curve: [("c", "num"), (0.5, 5)],
    bounds.annealed_lr: [("n", "lr0", "beta", "gamma"), (5, 1e-3, 0.5, 0.9)],
}
NOT_REAL = {"str": "5", "str decay": "0.5", "bytes": b"0.5", "bool": True, "numpy bool": np.bool_(False),
            "bool array": np.array([True, False]), "str array": np.array(["0.5"]),
            "mixed list": [0.5, "0.9"], "None": None, "complex": 0.5 + 0j}
TYPE_CASES = [(f, name, kind) for f, (names, _) in SIGNATURES.items() for name in names for kind in NOT_REAL]


@pytest.mark.parametrize("f,name,kind", TYPE_CASES,
                         ids=[f"{f.__name__}-{name}-{kind}" for f, name, kind in TYPE_CASES])
def test_non_numeric_input_is_refused(f, name, kind):
    """Strings, bools and None are refused, naming the argument (n='5' was read as 5)."""
    names, good = SIGNATURES[f]
    kwargs = dict(zip(names, good))
    kwargs[name] = NOT_REAL[kind]
    with pytest.raises(ValueError, match=rf"^{name} must be (a real number|an integer)\b.*; got "):
        f(**kwargs)


@pytest.mark.parametrize("value", ["0.1", True, None, b"0.1"])
def test_beta_range_must_hold_numbers(value):
    for call in (lambda: bounds.level_curve(0.1, 5, beta_range=(value, 0.9)),
                 lambda: bounds.normal_curve(0.5, 0.5, 5, beta_range=(0.1, value))):
        with pytest.raises(ValueError, match=RANGE_MSG):
            call()


def test_numbers_that_are_not_floats_still_work():
    from fractions import Fraction

    assert bounds.stability_constant(Fraction(1, 2), np.float32(0.5)) == pytest.approx(1.0)
    assert bounds.max_update_bound(np.int64(5), 0.999, 0.9) == bounds.max_update_bound(5.0, 0.999, 0.9)
    assert bounds.level_curve(np.float64(0.5), np.int32(3))[0].shape == (3,)
    assert bounds.region(0.999, 0.9) == bounds.region(0.999, 0.9, tol=0)  # positional beta, gamma


SHAPE_CASES = [
    (lambda: bounds.max_update_bound([1, 2, 3], [0.9, 0.99], 0.9),
     r"n, beta and gamma must broadcast together; got shapes \(3,\), \(2,\), \(\)"),
    (lambda: bounds.log_max_update_bound(1, [0.9, 0.99], [0.5, 0.6, 0.7]),
     r"n, beta and gamma must broadcast together; got shapes \(\), \(2,\), \(3,\)"),
    (lambda: bounds.discrete_max_update_bound(np.zeros((2, 3)), 0.9, [0.1, 0.2]),
     r"n, beta and gamma must broadcast together; got shapes \(2, 3\), \(\), \(2,\)"),
    (lambda: bounds.log_discrete_max_update_bound([1, 2], [0.9, 0.99, 0.5], 0.9),
     r"n, beta and gamma must broadcast together; got shapes \(2,\), \(3,\), \(\)"),
    (lambda: bounds.stability_constant([0.9, 0.99], [0.5, 0.6, 0.7]),
     r"beta and gamma must broadcast together; got shapes \(2,\), \(3,\)"),
    (lambda: bounds.growth_rate([0.9, 0.99], [0.5, 0.6, 0.7]), r"beta and gamma must broadcast"),
    (lambda: bounds.discrete_growth_rate([0.9, 0.99], [0.5, 0.6, 0.7]), r"beta and gamma must broadcast"),
    (lambda: bounds.region([0.9, 0.99], 0.5, tol=[0.0, 0.1, 0.2]),
     r"beta, gamma and tol must broadcast together; got shapes \(2,\), \(\), \(3,\)"),
    (lambda: bounds.annealed_lr([1, 2, 3], [1e-3, 1e-2], 0.5, 0.9),
     r"n, lr0, beta and gamma must broadcast together; got shapes \(3,\), \(2,\), \(\), \(\)"),
]


@pytest.mark.parametrize("call,message", SHAPE_CASES,
                         ids=[f"{i}-{m.split(' must')[0]}" for i, (_, m) in enumerate(SHAPE_CASES)])
def test_mismatched_shapes_name_the_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


EDGE_DECAYS = [("beta", 0.0), ("beta", 1.0), ("gamma", 1.0), ("beta", -TINY), ("gamma", -TINY),
               ("beta", math.nan), ("gamma", math.inf)]


@pytest.mark.parametrize("f", [f for f in SIGNATURES if "beta" in SIGNATURES[f][0]], ids=lambda f: f.__name__)
@pytest.mark.parametrize("name,value", EDGE_DECAYS)
def test_decays_outside_the_domain_say_the_allowed_range(f, name, value):
    names, good = SIGNATURES[f]
    kwargs = dict(zip(names, good), **{name: value})
    interval = r"\(0, 1\)" if name == "beta" else r"\[0, 1\)"
    with pytest.raises(ValueError, match=rf"^{name} must lie in {interval} "):
        f(**kwargs)
