"""kadam_edu.validate: the generic argument checks (values, messages, normalization)."""

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from kadam_edu import validate
from kadam_edu.validate import MAX_SEED, Bool, Choice, Dict, Int, ListOf, Optional, Pair, Real, Seed


def test_validate_imports_nothing_from_kadam_edu():
    tree = ast.parse(Path(validate.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] == "kadam_edu" for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and (node.module or "").split(".")[0] != "kadam_edu", node.module


GOOD = [
    (validate.positive_int, (), 1, 1),
    (validate.positive_int, (), np.int64(7), 7),
    (lambda n, v: validate.integer(n, v, lo=0, hi=10), (), 10, 10),
    (lambda n, v: validate.integer(n, v, lo=-3), (), -3, -3),
    (validate.real, (), -math.inf, -math.inf),
    (validate.real, (), 2, 2.0),
    (lambda n, v: validate.finite_real(n, v, lo=0, lo_open=True), (), np.float32(0.5), 0.5),
    (validate.decay, (), 0.999, 0.999),
    (validate.probability, (), 0, 0.0),
    (validate.probability, (), 1.0, 1.0),
    (validate.seed, (), 0, 0),
    (validate.seed, (), MAX_SEED, 2**63 - 1),
    (validate.seed, (), np.uint32(5), 5),
    (validate.boolean, (), False, False),
    (lambda n, v: validate.choice(n, v, ["euler", "exp"]), (), "exp", "exp"),
]


@pytest.mark.parametrize("fn, _, value, expected", GOOD)
def test_good_values_pass_normalized(fn, _, value, expected):
    out = fn("x", value)
    assert out == expected and type(out) is type(expected)


BAD = [
    (validate.positive_int, 0, "x must be a positive int; got 0"),
    (validate.positive_int, -1, "positive int"),
    (validate.positive_int, 2.0, "positive int; got 2.0"),
    (validate.positive_int, True, "got True"),
    (validate.positive_int, "3", "got '3'"),
    (validate.positive_int, None, "got None"),
    (lambda n, v: validate.integer(n, v, lo=0, hi=10), 11, r"int in \[0, 10\]; got 11"),
    (lambda n, v: validate.integer(n, v, lo=2), 1, "int >= 2; got 1"),
    (validate.real, math.nan, "x must be a real; got nan"),
    (validate.real, "1.0", "got '1.0'"),
    (validate.real, False, "got False"),
    (validate.finite_real, math.inf, "finite real; got inf"),
    (lambda n, v: validate.finite_real(n, v, lo=0, lo_open=True), 0.0, "finite real > 0; got 0.0"),
    (lambda n, v: validate.finite_real(n, v, hi=1), 1.5, "finite real <= 1; got 1.5"),
    (validate.decay, 0.0, r"real in \(0, 1\); got 0.0"),
    (validate.decay, 1, r"\(0, 1\); got 1"),
    (validate.decay, math.nan, "got nan"),
    (validate.probability, 1.01, r"real in \[0, 1\]; got 1.01"),
    (validate.probability, -1e-9, "got -1e-09"),
    (validate.seed, "0", "x must be a non-negative int <= 2\\*\\*63 - 1.*; got '0'"),
    (validate.seed, -1, "non-negative int.*got -1"),
    (validate.seed, 2**63, "got 9223372036854775808"),
    (validate.seed, 2**70, "got 1180591620717411303424"),
    (validate.seed, True, "got True"),
    (validate.seed, 1.0, "got 1.0"),
    (validate.boolean, 1, "x must be True or False; got 1"),
    (validate.boolean, "True", "got 'True'"),
    (lambda n, v: validate.choice(n, v, ["euler", "exp"]), "rk4", r"x must be one of \['euler', 'exp'\]; got 'rk4'"),
    (lambda n, v: validate.choice(n, v, [1, 2]), True, "got True"),
    (lambda n, v: validate.choice(n, v, [1, 2]), "1", "got '1'"),
    (lambda n, v: validate.choice(n, v, ["a"]), np.array(["a", "a"]), "one of"),
]


@pytest.mark.parametrize("fn, value, match", BAD)
def test_bad_values_name_the_argument_the_rule_and_the_value(fn, value, match):
    with pytest.raises(ValueError, match=match) as err:
        fn("x", value)
    assert str(err.value).startswith("x must ")


def test_rule_objects_for_declared_settings():
    ints = ListOf(Int(1), unique=True)
    assert ints("ks", (1, np.int64(2))) == [1, 2]
    with pytest.raises(ValueError, match=r"ks must hold positive ints, as a non-empty list without repeats; got \[0\] "
                                         r"\(entry 0 is 0\)"):
        ints("ks", [0])
    with pytest.raises(ValueError, match="repeats"):
        ints("ks", [1, 1])
    with pytest.raises(ValueError, match="got 'ab'"):
        ints("ks", "ab")
    with pytest.raises(ValueError, match=r"got \[\]"):
        ints("ks", [])
    assert ListOf(Real(0, lo_open=True), min_len=0)("lrs", []) == []
    strategies = ListOf(Choice(("inverse_exp", "naive")))
    with pytest.raises(ValueError, match=r"strategies must be among \['inverse_exp', 'naive'\]"):
        strategies("strategies", ["cosine"])

    decays = Pair(Real(0, 1, lo_open=True, hi_open=True))
    assert decays("beta_range", [0.9, 0.99]) == (0.9, 0.99)
    for bad in (5, (0.99, 0.9), (0.9, 0.9), (0.5, 1.0), (0.9,), (0.1, 0.2, 0.3), "ab", None):
        with pytest.raises(ValueError, match=r"beta_range must be a pair \(lo, hi\) of reals in \(0, 1\) with lo < hi"):
            decays("beta_range", bad)

    maybe = Optional(Int(1), "all")
    assert maybe("n_train", None) is None and maybe("n_train", 5) == 5
    with pytest.raises(ValueError, match=r"n_train must be None \(all\) or a positive int; got 0"):
        maybe("n_train", 0)

    assert Dict()("model_overrides", {"dropout": 0.0}) == {"dropout": 0.0}
    for bad in ([("dropout", 0.0)], {1: 2}, None):
        with pytest.raises(ValueError, match="model_overrides must be a dict"):
            Dict()("model_overrides", bad)
    assert Bool()("coupled", True) is True and Seed()("floor_seed", 3) == 3


def test_real_keeps_python_ints_and_says_what_it_means():
    lr = Real(0, lo_open=True, meaning="the learning rate")
    assert lr("lr", 2) == 2 and type(lr("lr", 2)) is int
    assert type(lr("lr", np.float64(0.1))) is float and type(lr("lr", np.int32(3))) is float
    with pytest.raises(ValueError, match=r"lr must be a finite real > 0 \(the learning rate\); got -1"):
        lr("lr", -1)
    assert Real(0, 1, hi_open=True).noun == "a real in [0, 1)"


# --------------------------------------------------------------------------- what the modules share
GOOD_SHARED = [
    (validate.positive_real, {}, np.float32(0.5), 0.5),
    (validate.positive_real, {}, 3, 3.0),
    (validate.decay, dict(allow_zero=True), 0, 0.0),
    (validate.decay, dict(allow_zero=True), 0.9, 0.9),
    (validate.boolean, {}, np.bool_(True), True),
    (validate.integer, dict(lo=0, meaning="steps"), np.int64(0), 0),
    (validate.second_moment_decay, {}, np.float64(0.999), 0.999),
    (validate.second_moment_decay, dict(allow_zero=True), 0.0, 0.0),
    (validate.first_moment_decay, {}, 0, 0.0),
]


@pytest.mark.parametrize("fn, kw, value, expected", GOOD_SHARED)
def test_shared_checks_pass_good_values_normalized(fn, kw, value, expected):
    out = fn("x", value, **kw)
    assert out == expected and type(out) is type(expected)


BAD_SHARED = [
    (validate.positive_real, {}, 0.0, "x must be a finite real > 0; got 0.0"),
    (validate.positive_real, {}, math.inf, "x must be a finite real > 0; got inf"),
    (validate.positive_real, {}, True, "x must be a finite real > 0; got True"),
    (validate.positive_real, dict(meaning="the learning rate"), -1, r"x must be a finite real > 0 \(the learning rate\); got -1"),
    (validate.decay, dict(allow_zero=True), 1.0, r"x must be a real in \[0, 1\); got 1.0"),
    (validate.decay, dict(allow_zero=True), -0.1, r"x must be a real in \[0, 1\); got -0.1"),
    (validate.decay, dict(meaning="second-moment decay"), 0.0,
     r"x must be a real in \(0, 1\) \(second-moment decay\); got 0.0"),
    (validate.integer, dict(lo=0, meaning="steps"), -1, r"x must be a non-negative int \(steps\); got -1"),
    (validate.positive_int, dict(meaning="the number of models E"), 0,
     r"x must be a positive int \(the number of models E\); got 0"),
    (validate.real, dict(lo=0, meaning="a weight decay"), -1.0, r"x must be a real >= 0 \(a weight decay\); got -1.0"),
    (validate.finite_real, dict(lo=0, hi=1, hi_open=True, meaning="a probability"), 1.0,
     r"x must be a real in \[0, 1\) \(a probability\); got 1.0"),
    (validate.probability, dict(meaning="of a flip"), 2.0, r"x must be a real in \[0, 1\] \(of a flip\); got 2.0"),
    (validate.boolean, dict(meaning="flip images"), 0, r"x must be True or False \(flip images\); got 0"),
    (validate.second_moment_decay, {}, 0.0,
     r"x must be a real in \(0, 1\) \(the paper's second-moment decay, torch's betas\[1\]\); got 0.0"),
    (validate.second_moment_decay, dict(allow_zero=True), 1.0, r"x must be a real in \[0, 1\) \(.*\); got 1.0"),
    (validate.first_moment_decay, {}, 1.0,
     r"x must be a real in \[0, 1\) \(the paper's first-moment decay, torch's betas\[0\]\); got 1.0"),
    (validate.first_moment_decay, {}, "0.9", r"x must be a real in \[0, 1\) \(.*\); got '0.9'"),
    (validate.choice, dict(options=("a", "b"), meaning="Section 4.2"), "c",
     r"x must be one of \['a', 'b'\] \(Section 4.2\); got 'c'"),
]


@pytest.mark.parametrize("fn, kw, value, match", BAD_SHARED)
def test_shared_checks_name_the_argument_the_rule_and_the_value(fn, kw, value, match):
    with pytest.raises(ValueError, match=f"^{match}$"):
        fn("x", value, **kw)


def test_generator_is_a_torch_generator_optionally_none_or_on_the_cpu():
    gen = torch.Generator().manual_seed(0)
    assert validate.generator("generator", gen) is gen
    assert validate.generator("generator", gen, cpu=True) is gen
    assert validate.generator("generator", None, optional=True) is None
    with pytest.raises(ValueError, match=r"^generator must be a torch.Generator; got None$"):
        validate.generator("generator", None)
    with pytest.raises(ValueError, match=r"^generator must be None or a torch.Generator; got 0$"):
        validate.generator("generator", 0, optional=True)
    with pytest.raises(ValueError, match=r"^gen must be a seeded CPU torch.Generator, e.g. "
                                         r"torch.Generator\(\).manual_seed\(0\); got 'seed'$"):
        validate.generator("gen", "seed", cpu=True)

    class CudaGenerator(torch.Generator):  # a stand-in: no CUDA device is needed to test the refusal
        @property
        def device(self):
            return torch.device("cuda", 0)

    with pytest.raises(ValueError, match=r"^gen must be a seeded CPU torch.Generator.*\(drawn on the CPU\); "
                                         r"got one on cuda:0$"):
        validate.generator("gen", CudaGenerator(), cpu=True, meaning="drawn on the CPU")
    assert isinstance(validate.generator("gen", CudaGenerator()), CudaGenerator)  # any device without cpu=True
