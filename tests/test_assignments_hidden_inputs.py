"""Issue 16: every check that runs a student's function takes ``seed=``, so that an autograder's hidden
tests can run the same check on inputs the students never see. ``seed=None`` keeps the published inputs;
an int draws other inputs of the same kinds (the same ones for the same seed)."""

import numpy as np
import pytest
import torch

import _assignment_answers as ans  # tests/
from kadam_edu import KAdam, assignments


def _optimizer_inputs(factory):
    """Wrap an optimizer factory so that every gradient its optimizers step on is recorded."""
    seen = []

    def make(params, **kw):
        opt = factory(params, **kw)
        step = opt.step

        def recording_step(*a, **k):
            seen.extend(p.grad.detach().clone().numpy().ravel().tolist() for p in opt.param_groups[0]["params"])
            return step(*a, **k)

        opt.step = recording_step
        return opt

    return make, seen


def _recording(fn):
    """Wrap a student function so that the arguments it is called with are recorded."""
    seen = []

    def wrapped(*args, **kwargs):
        seen.append(repr([np.asarray(a).tolist() if isinstance(a, (np.ndarray, torch.Tensor)) else a
                          for a in list(args) + sorted(kwargs.items())]))
        return fn(*args, **kwargs)

    return wrapped, seen


def _wrong_rate(beta, gamma):
    return 0.0 if gamma == 0 else max(0.0, 2 * np.log(gamma) - np.log(beta))


def _wrong_bound(n, beta, gamma):
    return ans.discrete_bound(n, beta, gamma) * (1 - gamma)


def _wrong_step(x, m, v, n, *, gamma, beta, eps=1e-30):
    return ans.adaptive_normalization(x, m, v, n, gamma=beta, beta=gamma)


def _wrong_slope(mu, start, stop):
    return ans.log_slope(mu, 0, len(mu))


def _wrong_optimizer(params, *, beta, gamma, lr):
    return KAdam(params, lr=lr, betas=(gamma, beta), eps=1e-8)


# (check, right answer, wrong answer); the optimizer checks record gradients, the others arguments
PLAIN = [
    (assignments.check_discrete_bound, ans.discrete_bound, _wrong_bound),
    (assignments.check_adam_updates, ans.adam_updates, lambda g, b, c: ans.adam_updates(g, c, b)),
    (assignments.check_extremal_sequence, ans.extremal_gradients, lambda s, b, g: np.ones(s)),
    (assignments.check_discrete_rate, ans.discrete_rate, _wrong_rate),
    (assignments.check_adaptive_normalization, ans.adaptive_normalization, _wrong_step),
    (assignments.check_make_optimizer, ans.make_optimizer, _wrong_optimizer),
    (assignments.check_log_slope, ans.log_slope, _wrong_slope),
]
OPTIMIZERS = [
    (assignments.check_rmsprop, ans.rmsprop, lambda params, *, lr, beta: ans.rmsprop(params, lr=2 * lr, beta=beta)),
    (assignments.check_adam, ans.adam, lambda params, *, lr, beta, gamma: ans.adam(params, lr=lr, beta=gamma,
                                                                                   gamma=beta)),
    (assignments.check_kadam, ans.kadam, lambda params, *, lr, levels: ans.kadam(params, lr=lr, levels=levels[:1])),
]
IDS = [c.__name__ for c, _, _ in PLAIN]
OPT_IDS = [c.__name__ for c, _, _ in OPTIMIZERS]


def _inputs(check, answer, seed, optimizer=False):
    wrapped, seen = (_optimizer_inputs if optimizer else _recording)(answer)
    result = check(wrapped, seed=seed)
    return result, seen


@pytest.mark.parametrize("check, right, wrong", PLAIN + OPTIMIZERS, ids=IDS + OPT_IDS)
def test_a_seed_draws_other_inputs_and_the_same_for_the_same_seed(check, right, wrong):
    optimizer = (check, right, wrong) in OPTIMIZERS
    published, seen_published = _inputs(check, right, None, optimizer)
    drawn, seen_drawn = _inputs(check, right, 1, optimizer)
    again, seen_again = _inputs(check, right, 1, optimizer)
    other, seen_other = _inputs(check, right, 2, optimizer)
    assert published.passed and drawn.passed and again.passed and other.passed, (published, drawn, other)
    assert seen_published and seen_drawn, "the check did not call the function"
    assert seen_drawn == seen_again, "the same seed must give the same inputs"
    assert seen_drawn != seen_published and seen_drawn != seen_other, "a seed must draw other inputs"
    assert check(right).passed and check(right, seed=None).passed


@pytest.mark.parametrize("check, right, wrong", PLAIN + OPTIMIZERS, ids=IDS + OPT_IDS)
@pytest.mark.parametrize("seed", [None, 1, 12345])
def test_a_wrong_answer_fails_on_drawn_inputs_too(check, right, wrong, seed):
    result = check(wrong, seed=seed)
    assert result.answered and not result.passed, result


@pytest.mark.parametrize("check, right, wrong", PLAIN + OPTIMIZERS, ids=IDS + OPT_IDS)
def test_the_seed_is_validated(check, right, wrong):
    """kadam_edu.validate's convention for seeds: a clear error naming ``seed`` before any work."""
    for bad in ("1", 1.5, True, -1):
        with pytest.raises((TypeError, ValueError), match="seed"):
            check(right, seed=bad)
