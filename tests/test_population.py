"""Populations (kadam_edu.population): E models of one architecture as one batched model.

Member e of a population must compute exactly what the ordinary model (App. H's char GPT
or the CIFAR CNN) holding member e's weights computes: logits, losses and gradients.
"""

import pytest
import torch

from kadam_edu.models import CIFARNet, GPT, cnn_config, count_parameters, gpt_config
from kadam_edu.population import PopulationCNN, PopulationGPT, init_population
from kadam_edu.scale import seed_everything

E = 3
SEEDS = [11, 22, 33]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread is as fast and does not suffer from a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- helpers
def gpts(scale="smoke", dtype=torch.float32, seeds=SEEDS, **overrides):
    config = gpt_config(scale, **overrides)
    out = []
    for s in seeds:
        torch.manual_seed(s)
        out.append(GPT(config).to(dtype))
    return out


def cnns(scale="smoke", dtype=torch.float32, seeds=SEEDS, **overrides):
    config = cnn_config(scale, **overrides)
    out = []
    for s in seeds:
        torch.manual_seed(s)
        out.append(CIFARNet(config).to(dtype))
    return out


def tokens(shape, vocab=65, seed=1):
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def images(shape, dtype, seed=1):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300)).item()


def tol(dtype):
    return 1e-5 if dtype == torch.float32 else 1e-12


def assert_grads_match(pop, models, dtype):
    """pop.<name>.grad[e] against models[e].<name>.grad for every parameter."""
    pop_params = dict(pop.named_parameters())
    for e, m in enumerate(models):
        names = dict(m.named_parameters())
        assert names.keys() == pop_params.keys()
        for name, p in names.items():
            g = pop_params[name].grad[e]
            assert g.shape == p.grad.shape, name
            assert rel_err(g, p.grad) <= tol(dtype), (name, e, rel_err(g, p.grad))


# --------------------------------------------------------------------------- GPT: member e = model e
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shared", [False, True], ids=["own_batches", "shared_batch"])
@pytest.mark.parametrize("qk_norm", [False, True])
@pytest.mark.parametrize("scale", ["smoke", "cpu"])
def test_gpt_members_match_ordinary_models(scale, qk_norm, shared, dtype):
    models = gpts(scale, dtype, qk_norm=qk_norm)
    pop = PopulationGPT.from_models(models)
    B, T = 2, models[0].config.block_size
    idx = tokens((B, T) if shared else (E, B, T))
    tgt = tokens((B, T) if shared else (E, B, T), seed=2)
    logits, loss = pop(idx, tgt)
    assert logits.shape == (E, B, T, 65) and loss.shape == (E,)
    loss.sum().backward()
    for e, m in enumerate(models):
        ref_logits, ref_loss = m(idx if shared else idx[e], tgt if shared else tgt[e])
        ref_loss.backward()
        assert rel_err(logits[e].detach(), ref_logits.detach()) <= tol(dtype)
        assert abs(loss[e].item() - ref_loss.item()) <= tol(dtype) * ref_loss.item()
    assert_grads_match(pop, models, dtype)


def test_gpt_ignored_targets_and_no_targets():
    models = gpts()
    pop = PopulationGPT.from_models(models)
    idx, tgt = tokens((E, 2, 8)), tokens((E, 2, 8), seed=2)
    tgt[0, :, :4] = -1  # ignored positions, as in nanoGPT
    logits, loss = pop(idx, tgt)
    for e, m in enumerate(models):
        assert abs(loss[e].item() - m(idx[e], tgt[e])[1].item()) < 1e-5
    logits2, none = pop(idx)
    assert none is None and torch.equal(logits, logits2)


def test_gpt_bad_token_id_raises_like_the_model():
    """Ids V or -1 of member 1 must not read member 2's or member 0's embedding table."""
    pop = PopulationGPT.from_models(gpts())
    for bad in (65, -1):
        idx = tokens((E, 1, 4))
        idx[1, 0, 0] = bad
        with pytest.raises(IndexError):
            pop(idx)


# --------------------------------------------------------------------------- CNN: member e = model e
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shared", [False, True], ids=["own_batches", "shared_batch"])
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("scale", ["smoke", "cpu"])
def test_cnn_members_match_ordinary_models(scale, batch_norm, shared, dtype):
    models = cnns(scale, dtype, batch_norm=batch_norm)
    pop = PopulationCNN.from_models(models)
    B = 3
    x = images((B, 3, 32, 32) if shared else (E, B, 3, 32, 32), dtype)
    y = torch.randint(0, 10, (E, B), generator=torch.Generator().manual_seed(3))
    logits = pop(x)
    assert logits.shape == (E, B, 10)
    torch.nn.functional.cross_entropy(logits.reshape(E * B, 10), y.reshape(-1), reduction="sum").backward()
    for e, m in enumerate(models):
        ref = m(x if shared else x[e])
        torch.nn.functional.cross_entropy(ref, y[e], reduction="sum").backward()
        assert rel_err(logits[e].detach(), ref.detach()) <= tol(dtype)
    assert_grads_match(pop, models, dtype)
    if batch_norm:  # running statistics moved the same way; eval mode uses them
        pop.eval()
        for m in models:
            m.eval()
        for e, m in enumerate(models):
            for name, buf in m.named_buffers():
                assert rel_err(dict(pop.named_buffers())[name][e], buf) <= tol(dtype) or buf.dtype == torch.long
                if buf.dtype == torch.long:
                    assert torch.equal(dict(pop.named_buffers())[name][e], buf)
            assert rel_err(pop(x)[e].detach(), m(x if shared else x[e]).detach()) <= tol(dtype)


# --------------------------------------------------------------------------- training, dropout
def test_adam_on_a_population_trains_every_member_like_its_own_adam():
    # qk-norm: no key bias, whose gradient is exactly 0 in theory and rounding noise in practice
    models = gpts(dtype=torch.float64, qk_norm=True)
    pop = PopulationGPT.from_models(models)
    opt = torch.optim.Adam(pop.parameters(), lr=1e-2, foreach=True)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2, foreach=True) for m in models]
    for step in range(3):
        idx, tgt = tokens((E, 2, 16), seed=10 + step), tokens((E, 2, 16), seed=20 + step)
        opt.zero_grad()
        pop(idx, tgt)[1].sum().backward()
        opt.step()
        for e, (m, o) in enumerate(zip(models, opts)):
            o.zero_grad()
            m(idx[e], tgt[e])[1].backward()
            o.step()
    for e, m in enumerate(models):
        for name, t in pop.member(e).state_dict().items():
            assert rel_err(t, m.state_dict()[name]) < 1e-10, name


def test_dropout_masks_are_independent_across_members_and_off_in_eval():
    models = gpts("smoke", seeds=[5, 5], dropout=0.5)  # two identical members
    pop = PopulationGPT.from_models(models)
    idx = tokens((2, 8))  # one shared batch
    logits, _ = pop(idx)
    assert not torch.allclose(logits[0], logits[1])
    pop.eval()
    logits, _ = pop(idx)
    assert torch.equal(logits[0], logits[1])
    cnn = PopulationCNN.from_models(cnns(seeds=[5, 5], dropout=0.5))
    out = cnn(images((4, 3, 32, 32), torch.float32))
    assert not torch.allclose(out[0], out[1])


# --------------------------------------------------------------------------- conversions, seeds
@pytest.mark.parametrize("kind", ["gpt", "cnn"])
def test_from_models_member_round_trip(kind):
    models = gpts(dtype=torch.float64) if kind == "gpt" else cnns(dtype=torch.float64, batch_norm=True)
    cls = PopulationGPT if kind == "gpt" else PopulationCNN
    rng = torch.get_rng_state()
    pop = cls.from_models(models)
    assert torch.equal(rng, torch.get_rng_state())  # no random draws
    assert pop.members == E and pop.config == models[0].config
    assert all(p.dtype == torch.float64 and p.shape[0] == E for p in pop.parameters())
    for e, m in enumerate(models):
        copy = pop.member(e)
        assert type(copy) is type(m) and copy.config == m.config
        ref = m.state_dict()
        assert copy.state_dict().keys() == ref.keys()
        assert all(torch.equal(t, ref[k]) and t.dtype == ref[k].dtype for k, t in copy.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    copy = pop.member(1)
    with torch.no_grad():
        for p in copy.parameters():
            p.add_(1.0)
    assert all(torch.equal(t, models[1].state_dict()[k]) for k, t in pop.member(1).state_dict().items())
    pop.load_member(0, copy)  # load_member writes member 0 only
    for e, ref in enumerate([copy, models[1], models[2]]):
        assert all(torch.equal(t, ref.state_dict()[k]) for k, t in pop.member(e).state_dict().items())


def test_member_copy_keeps_the_weight_tying():
    pop = PopulationGPT.from_models(gpts())
    assert pop.lm_head.weight is pop.transformer.wte.weight
    m = pop.member(2)
    assert m.lm_head.weight is m.transformer.wte.weight
    assert count_parameters(m) == pop.count_member_parameters()
    assert count_parameters(m) * E == sum(p.numel() for p in pop.parameters())
    c = cnns("cpu")
    assert PopulationCNN.from_models(c).count_member_parameters() == count_parameters(c[0])


@pytest.mark.parametrize("kind", ["gpt", "cnn"])
def test_init_population_reproduces_a_sequential_sweeps_initialisation(kind):
    config = gpt_config("smoke") if kind == "gpt" else cnn_config("smoke")
    model_cls = GPT if kind == "gpt" else CIFARNet
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    pop = init_population(config, SEEDS)
    assert torch.equal(rng, torch.get_rng_state())  # the caller's RNG is left alone
    assert isinstance(pop, PopulationGPT if kind == "gpt" else PopulationCNN) and pop.members == E
    for e, s in enumerate(SEEDS):
        seed_everything(s)  # how experiments.common.char_gpt_run seeds its model
        ref = model_cls(config).state_dict()
        assert all(torch.equal(t, ref[k]) for k, t in pop.member(e).state_dict().items())


def test_constructor_draws_members_in_sequence_from_the_global_rng():
    config = gpt_config("smoke", qk_norm=True)
    torch.manual_seed(7)
    pop = PopulationGPT(config, 2)
    torch.manual_seed(7)
    refs = [GPT(config), GPT(config)]
    for e, ref in enumerate(refs):
        assert all(torch.equal(t, ref.state_dict()[k]) for k, t in pop.member(e).state_dict().items())
    torch.manual_seed(7)
    cnn = PopulationCNN(cnn_config("smoke"), 2)
    torch.manual_seed(7)
    refs = [CIFARNet(cnn_config("smoke")), CIFARNet(cnn_config("smoke"))]
    for e, ref in enumerate(refs):
        assert all(torch.equal(t, ref.state_dict()[k]) for k, t in cnn.member(e).state_dict().items())


def test_query_key_heads_view_every_members_heads():
    models = gpts("cpu", qk_norm=True)
    pop = PopulationGPT.from_models(models)
    heads = pop.query_key_heads()
    for e, m in enumerate(models):
        ref = m.query_key_heads()
        assert [h.label for h in heads] == [h.label for h in ref]
        for h, r in zip(heads, ref):
            assert h.weight().shape == (E, *r.weight().shape)
            assert torch.equal(h.weight(e), r.weight()) and torch.equal(h.weight()[e], r.weight())
    with torch.no_grad():  # a view: writes go to the population's parameter
        heads[0].weight(1).mul_(2.0)
    assert torch.equal(pop.member(1).query_key_heads()[0].weight(), 2 * models[1].query_key_heads()[0].weight())


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "3", None])
def test_members_must_be_a_positive_int(bad):
    for cls, config in ((PopulationGPT, gpt_config("smoke")), (PopulationCNN, cnn_config("smoke"))):
        with pytest.raises(ValueError, match="members must be a positive int"):
            cls(config, bad)


def test_config_type_is_checked():
    with pytest.raises(ValueError, match="GPTConfig"):
        PopulationGPT(cnn_config("smoke"), 2)
    with pytest.raises(ValueError, match="CNNConfig"):
        PopulationCNN(gpt_config("smoke"), 2)
    with pytest.raises(ValueError, match="GPTConfig or a CNNConfig"):
        init_population("smoke", [0])


def test_gpt_batch_shape_errors_name_the_expected_shape():
    pop = PopulationGPT.from_models(gpts())
    with pytest.raises(ValueError, match=r"\[E, B, T\] with E = 3.*got torch.int64 of shape \(4, 2, 8\)"):
        pop(tokens((4, 2, 8)))
    with pytest.raises(ValueError, match=r"\[E, B, T\].*\[B, T\]"):
        pop(tokens((2,)))
    with pytest.raises(ValueError, match="torch.long"):
        pop(tokens((E, 2, 8)).float())
    with pytest.raises(ValueError, match=r"block_size=32"):
        pop(tokens((E, 1, 33)))
    with pytest.raises(ValueError, match=r"targets must be .*\(3, 2, 8\).*\(2, 8\).*got \(3, 2, 7\)"):
        pop(tokens((E, 2, 8)), tokens((E, 2, 7)))
    with pytest.raises(ValueError, match="targets"):
        pop(tokens((E, 2, 8)), [1, 2])


def test_cnn_batch_shape_errors_name_the_expected_shape():
    pop = PopulationCNN.from_models(cnns())
    with pytest.raises(ValueError, match=r"\[E, B, 3, 32, 32\] with E = 3.*\[B, 3, 32, 32\].*got \(2, 4, 3, 32, 32\)"):
        pop(torch.zeros(2, 4, 3, 32, 32))
    with pytest.raises(ValueError, match=r"got \(4, 3, 16, 16\)"):
        pop(torch.zeros(4, 3, 16, 16))
    with pytest.raises(ValueError, match="got list"):
        pop([1.0])


def test_conversion_errors_leave_the_population_unchanged():
    models = gpts()
    pop = PopulationGPT.from_models(models)
    before = {k: t.clone() for k, t in pop.state_dict().items()}
    for bad_e in (3, -1, 1.0, True):
        with pytest.raises(ValueError, match=r"member index must be an int in \[0, 3\)"):
            pop.member(bad_e)
        with pytest.raises(ValueError, match=r"member index must be an int in \[0, 3\)"):
            pop.load_member(bad_e, models[0])
    with pytest.raises(ValueError, match="must be a GPT with the population's config"):
        pop.load_member(0, gpts("smoke", seeds=[0], qk_norm=True)[0])
    with pytest.raises(ValueError, match="must be a GPT"):
        pop.load_member(0, cnns(seeds=[0])[0])
    assert all(torch.equal(t, before[k]) for k, t in pop.state_dict().items())
    with pytest.raises(ValueError, match="non-empty list of GPT"):
        PopulationGPT.from_models([])
    with pytest.raises(ValueError, match="one config"):
        PopulationGPT.from_models([models[0], gpts("smoke", seeds=[0], qk_norm=True)[0]])
    with pytest.raises(ValueError, match="non-empty list of CIFARNet"):
        PopulationCNN.from_models(models)


@pytest.mark.parametrize("bad", [[], [1, -2], [1.5], [True], 3, "01"])
def test_init_population_refuses_bad_seeds(bad):
    with pytest.raises(ValueError, match="seeds must be a non-empty list of non-negative ints"):
        init_population(gpt_config("smoke"), bad)
