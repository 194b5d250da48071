"""The float32 policy: TF32 off wherever a max-update or a norm is analysed, on only for fig2."""

import pytest
import torch

from kadam_edu import experiments
from kadam_edu.experiments import FIGURES, Figure
from kadam_edu.scale import PRECISIONS, float32_precision


def flags():
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.mark.parametrize("start", [(False, True), (True, False)])
def test_float32_precision_sets_both_flags_and_restores_them(start):
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = start
    try:
        with float32_precision("exact"):
            assert flags() == (False, False)
        assert flags() == start
        with float32_precision("tf32"):
            assert flags() == (True, True)
        assert flags() == start
        with pytest.raises(RuntimeError, match="boom"), float32_precision("tf32"):
            raise RuntimeError("boom")
        assert flags() == start  # restored after an error too
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True


@pytest.mark.parametrize("bad", ["bf16", "", None, 32])
def test_an_unknown_precision_is_refused(bad):
    with pytest.raises(ValueError, match="precision must be one of"):
        with float32_precision(bad):
            pass
    with pytest.raises(ValueError, match="precision must be one of"):
        Figure("x", "x", "stability", False, precision=bad)


def test_only_fig2_allows_tf32():
    assert {n for n, f in FIGURES.items() if f.precision == "tf32"} == {"fig2"}
    assert set(PRECISIONS) == {"exact", "tf32"}


@pytest.mark.parametrize("name, expected", [("fig1", (False, False)), ("fig2", (True, True)), ("eos", (False, False))])
def test_reproduce_runs_each_experiment_under_its_precision(name, expected, monkeypatch):
    seen = []
    monkeypatch.setattr(experiments, "get", lambda n: lambda scale, **kw: seen.append(flags()))
    before = flags()
    experiments.reproduce(name, "smoke")
    assert seen == [expected] and flags() == before


def test_provenance_records_tf32_off_on_a_cpu():
    from kadam_edu.experiments import provenance

    assert provenance(scale="smoke", device=torch.device("cpu"), seed=0)["tf32"] is False
