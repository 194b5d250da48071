"""The char GPT (nanoGPT, App. H, qk-norm scale invariance of Eq. 6) and the CIFAR-10 CNN."""

import math

import pytest
import torch

from kadam_edu.models import (
    CIFARNet,
    CNN_PRESETS,
    CNNConfig,
    GPT,
    GPT_PRESETS,
    GPTConfig,
    QKHead,
    cnn_config,
    count_parameters,
    flat_indices,
    gpt_config,
)


# --------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread is as fast and does not suffer from a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_gpt(scale="smoke", seed=0, dtype=torch.float32, **overrides):
    torch.manual_seed(seed)
    return GPT(gpt_config(scale, **overrides)).to(dtype)


def tokens(B, T, vocab=65, seed=1):
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


def flat_params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


# --------------------------------------------------------------------------- GPT shapes and loss
@pytest.mark.parametrize("scale", ["smoke", "cpu"])
@pytest.mark.parametrize("qk_norm", [False, True])
def test_gpt_shapes_and_initial_loss(scale, qk_norm):
    model = make_gpt(scale, qk_norm=qk_norm)
    T = model.config.block_size
    idx, tgt = tokens(3, T), tokens(3, T, seed=2)
    logits, loss = model(idx, tgt)
    assert logits.shape == (3, T, 65)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert abs(loss.item() - math.log(65)) < 0.3  # near-uniform predictions at init
    logits2, none = model(idx)
    assert none is None and torch.equal(logits, logits2)


def test_gpt_paper_preset_matches_app_h():
    cfg = gpt_config("paper")
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.dropout) == (6, 6, 384, 256, 0.2)
    model = make_gpt("paper")
    # nanoGPT's shakespeare-char model (+ position embeddings): 10,770,816 with biases.
    assert 10.7e6 < count_parameters(model) < 10.8e6
    model.eval()
    logits, loss = model(tokens(1, 8), tokens(1, 8, seed=3))
    assert logits.shape == (1, 8, 65) and abs(loss.item() - math.log(65)) < 0.3


def test_gpt_preset_parameter_counts():
    counts = {s: count_parameters(make_gpt(s)) for s in ("smoke", "cpu")}
    assert counts == {"smoke": 15_872, "cpu": 108_352}
    # qk-norm removes the q/k biases: 2 * n_embd per layer.
    assert count_parameters(make_gpt("cpu", qk_norm=True)) == 108_352 - 2 * 2 * 64


def test_gpt_init_follows_nanogpt():
    model = make_gpt("cpu", seed=3)
    std_cproj = 0.02 / math.sqrt(2 * model.config.n_layer)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            assert p.std().item() == pytest.approx(std_cproj, rel=0.1), name
        elif name.endswith("proj.weight") or name.endswith("c_fc.weight") or name.endswith("wte.weight"):
            assert p.std().item() == pytest.approx(0.02, rel=0.1), name
        elif name.endswith(".bias") and "ln_" not in name:
            assert torch.all(p == 0), name


def test_gpt_separate_qkv_projections():
    model = make_gpt("smoke")
    attn = model.transformer.h[0].attn
    names = {n for n, _ in model.named_parameters()}
    for proj in ("q_proj", "k_proj", "v_proj", "c_proj"):
        assert getattr(attn, proj).weight.shape == (32, 32)
        assert f"transformer.h.0.attn.{proj}.weight" in names
    assert not any("c_attn" in n for n in names)


def test_gpt_causality():
    model = make_gpt("cpu").double()
    idx = tokens(2, 20)
    base, _ = model(idx)
    for t in (0, 7, 18):
        changed = idx.clone()
        changed[:, t + 1] = (changed[:, t + 1] + 1) % 65
        out, _ = model(changed)
        assert torch.equal(out[:, : t + 1], base[:, : t + 1])
        assert not torch.allclose(out[:, t + 1], base[:, t + 1])


def test_gpt_tied_weights_counted_and_flattened_once():
    model = make_gpt("smoke")
    assert model.lm_head.weight is model.transformer.wte.weight
    params = list(model.parameters())
    assert sum(p is model.lm_head.weight for p in params) == 1
    assert count_parameters(model) == sum(p.numel() for p in params)
    assert count_parameters(model) < sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    # the tied weight is the first parameter: its indices start at 0 and cover it once
    idx = flat_indices(model, model.lm_head.weight)
    assert torch.equal(idx, torch.arange(65 * 32))


def test_gpt_sequence_too_long_and_bad_inputs():
    model = make_gpt("smoke")
    with pytest.raises(ValueError, match="block_size=32"):
        model(tokens(1, 33))
    with pytest.raises(ValueError, match="torch.long"):
        model(tokens(1, 4).float())
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        model(tokens(1, 4)[0])
    with pytest.raises(ValueError, match="shape of idx"):
        model(tokens(2, 4), tokens(2, 5))
    with pytest.raises(ValueError, match="GPTConfig"):
        GPT(CNNConfig())


def test_gpt_trains_a_little():
    """A few Adam steps on one batch lower the loss (the backward pass is wired up)."""
    model = make_gpt("smoke", qk_norm=True)
    idx, tgt = tokens(4, 32), tokens(4, 32, seed=5)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(15):
        opt.zero_grad()
        _, loss = model(idx, tgt)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first - 0.3


# --------------------------------------------------------------------------- qk-norm: Eq. 6
def _loss(model, idx, tgt):
    return model(idx, tgt)[1]


def _perturbed(model, seed=0):
    """Away from the init: random biases and LayerNorm parameters (zero / one would hide a
    q/k bias) and q/k matrices 10x larger (at init attention is nearly uniform)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        for h in model.query_key_heads():
            h.weight().mul_(10.0)
    return model


@pytest.mark.parametrize("qk_norm", [True, False])
def test_qk_norm_scale_invariance_of_the_loss(qk_norm):
    model = _perturbed(make_gpt("cpu", dtype=torch.float64, qk_norm=qk_norm))
    idx, tgt = tokens(2, 24), tokens(2, 24, seed=4)
    base = _loss(model, idx, tgt).item()
    heads = model.query_key_heads()
    one_q_head = next(h for h in heads if h.layer == 1 and h.kind == "q" and h.head == 2)
    with torch.no_grad():
        one_q_head.weight().mul_(3.7)
    scaled_head = _loss(model, idx, tgt).item()
    with torch.no_grad():
        one_q_head.weight().div_(3.7)
        model.transformer.h[0].attn.k_proj.weight.mul_(3.7)
    scaled_matrix = _loss(model, idx, tgt).item()
    if qk_norm:
        assert scaled_head == pytest.approx(base, abs=1e-10, rel=0)
        assert scaled_matrix == pytest.approx(base, abs=1e-10, rel=0)
    else:  # without qk-norm the same scalings change the loss
        assert abs(scaled_head - base) > 1e-6
        assert abs(scaled_matrix - base) > 1e-6


@pytest.mark.parametrize("qk_norm", [True, False])
def test_qk_norm_gradient_orthogonal_to_weight_eq6(qk_norm):
    """<W, grad_W L> = 0 for every scale-invariant W (Eq. 6, App. L)."""
    model = _perturbed(make_gpt("cpu", dtype=torch.float64, qk_norm=qk_norm))
    _loss(model, tokens(2, 32), tokens(2, 32, seed=6)).backward()
    cos = []
    for h in model.query_key_heads():
        W, G = h.weight().detach(), h.param.grad[h.rows]
        assert G.norm() > 0
        cos.append(abs((W * G).sum()).item() / (W.norm() * G.norm()).item())
    for kind in ("q", "k"):  # whole matrices too
        W = model.transformer.h[1].attn.get_submodule(f"{kind}_proj").weight
        cos.append(abs((W.detach() * W.grad).sum()).item() / (W.norm() * W.grad.norm()).item())
    if qk_norm:
        assert max(cos) < 1e-8
    else:
        assert max(cos) > 1e-3


def test_qk_norm_attention_temperature():
    assert make_gpt("cpu", qk_norm=True).transformer.h[0].attn.attn_scale == pytest.approx(4.0)
    assert make_gpt("cpu").transformer.h[0].attn.attn_scale is None  # SDPA default 1/sqrt(hd)
    attn = make_gpt("cpu", qk_norm=True).transformer.h[0].attn
    assert attn.q_proj.bias is None and attn.k_proj.bias is None and attn.v_proj.bias is not None


# --------------------------------------------------------------------------- query/key heads
def test_query_key_heads_count_order_and_shape():
    model = make_gpt("cpu")
    cfg = model.config
    heads = model.query_key_heads()
    assert len(heads) == cfg.n_layer * cfg.n_head * 2
    expected = [(l, k, h) for l in range(cfg.n_layer) for k in ("q", "k") for h in range(cfg.n_head)]
    assert [(h.layer, h.kind, h.head) for h in heads] == expected
    for h in heads:
        assert isinstance(h, QKHead)
        assert h.weight().shape == (cfg.head_dim, cfg.n_embd)
        proj = model.transformer.h[h.layer].attn.get_submodule(f"{h.kind}_proj")
        assert h.param is proj.weight
        assert h.rows == slice(h.head * cfg.head_dim, (h.head + 1) * cfg.head_dim)
        assert h.weight().data_ptr() == proj.weight[h.rows].data_ptr()  # a view
    assert heads[5].label == "L0 k h1"
    with pytest.raises(AttributeError):
        heads[0].head = 3  # frozen


def test_flat_indices_locate_one_head():
    model = make_gpt("cpu")
    params = [p for p in model.parameters() if p.requires_grad]
    theta = flat_params(model)
    head = model.query_key_heads()[13]  # layer 1, q, head 1
    idx = flat_indices(model, head.param, head.rows)
    assert idx.dtype == torch.long and idx.numel() == head.weight().numel()
    assert torch.equal(theta[idx], head.weight().detach().reshape(-1))
    # writing those entries of the flat vector changes exactly that head's rows
    before = [p.detach().clone() for p in params]
    new = theta.clone()
    new[idx] = 7.0
    torch.nn.utils.vector_to_parameters(new, params)
    for p, old in zip(params, before):
        if p is head.param:
            assert torch.all(p[head.rows] == 7.0)
            mask = torch.ones(p.shape[0], dtype=torch.bool)
            mask[head.rows] = False
            assert torch.equal(p[mask], old[mask])
        else:
            assert torch.equal(p, old)


def test_flat_indices_whole_parameters_partition_the_vector():
    model = make_gpt("smoke")
    params = [p for p in model.parameters() if p.requires_grad]
    allidx = torch.cat([flat_indices(model, p) for p in params])
    assert torch.equal(allidx, torch.arange(flat_params(model).numel()))


def test_flat_indices_respect_requires_grad():
    model = make_gpt("smoke")
    model.transformer.wpe.weight.requires_grad_(False)
    p = model.transformer.h[0].attn.q_proj.weight
    theta = torch.cat([q.detach().reshape(-1) for q in model.parameters() if q.requires_grad])
    assert torch.equal(theta[flat_indices(model, p)], p.detach().reshape(-1))
    with pytest.raises(ValueError, match="not a trainable"):
        flat_indices(model, model.transformer.wpe.weight)


@pytest.mark.parametrize(
    "param, rows, match",
    [
        (lambda m: torch.nn.Parameter(torch.zeros(3)), None, "not a trainable"),
        (lambda m: m.transformer.h[0].attn.q_proj.weight, 3, "slice"),
        (lambda m: m.transformer.h[0].attn.q_proj.weight, slice(40, 50), "select nothing"),
    ],
)
def test_flat_indices_errors(param, rows, match):
    model = make_gpt("smoke")
    with pytest.raises(ValueError, match=match):
        flat_indices(model, param(model), rows)


# --------------------------------------------------------------------------- generate
def test_generate_shape_vocab_and_determinism():
    model = make_gpt("smoke")
    model.train()
    prompt = tokens(3, 5)
    out = model.generate(prompt, 40, generator=torch.Generator().manual_seed(7))  # crosses block_size
    assert out.shape == (3, 45) and out.dtype == torch.long
    assert torch.equal(out[:, :5], prompt)
    assert out.min() >= 0 and out.max() < 65
    again = model.generate(prompt, 40, generator=torch.Generator().manual_seed(7))
    assert torch.equal(out, again)
    other = model.generate(prompt, 40, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(out, other)
    assert model.training  # mode restored
    greedy = model.generate(prompt, 6, temperature=0)
    assert torch.equal(greedy, model.generate(prompt, 6, temperature=0))
    assert model.generate(prompt, 0).shape == (3, 5)


@pytest.mark.parametrize(
    "kwargs, match", [({"max_new_tokens": -1}, "max_new_tokens"), ({"max_new_tokens": 2, "temperature": -1.0}, "temperature")]
)
def test_generate_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_gpt("smoke").generate(tokens(1, 3), **kwargs)


# --------------------------------------------------------------------------- configs
def test_gpt_presets_and_overrides():
    assert set(GPT_PRESETS) == {"paper", "gpu", "cpu", "smoke"}
    assert gpt_config("gpu") == GPTConfig(block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
    assert gpt_config("cpu") == GPTConfig(block_size=64, n_layer=2, n_head=4, n_embd=64, dropout=0.0)
    assert gpt_config("smoke") == GPTConfig(block_size=32, n_layer=1, n_head=2, n_embd=32, dropout=0.0)
    cfg = gpt_config("cpu", qk_norm=True, dropout=0.1)
    assert cfg.qk_norm and cfg.dropout == 0.1 and cfg.n_layer == 2
    assert not GPT_PRESETS["cpu"].qk_norm  # presets untouched


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: gpt_config("huge"), "unknown GPT scale 'huge'"),
        (lambda: gpt_config("cpu", n_layers=3), r"unknown GPTConfig field\(s\) \['n_layers'\]"),
        (lambda: GPTConfig(n_embd=64, n_head=5), "divisible by n_head"),
        (lambda: GPTConfig(n_layer=0), "n_layer must be a positive int"),
        (lambda: GPTConfig(n_head=2.0), "n_head must be a positive int"),
        (lambda: GPTConfig(block_size=True), "block_size must be a positive int"),
        (lambda: GPTConfig(vocab_size=0), "vocab_size must be a positive int"),
        (lambda: GPTConfig(dropout=1.0), r"GPTConfig.dropout must be a real in \[0, 1\) \(a dropout probability\); got 1.0"),
        (lambda: GPTConfig(dropout=-0.1), "dropout"),
        (lambda: GPTConfig(qk_norm="yes"), "GPTConfig.qk_norm must be True or False; got 'yes'"),
        (lambda: GPTConfig(bias=1), "GPTConfig.bias must be True or False; got 1"),
        (lambda: cnn_config("paper!"), "unknown CNN scale"),
        (lambda: cnn_config("cpu", width=(8,)), r"unknown CNNConfig field\(s\) \['width'\]"),
        (lambda: CNNConfig(widths=()), "widths must be a tuple of 1 to 5"),
        (lambda: CNNConfig(widths=(8,) * 6), "widths must be a tuple of 1 to 5"),
        (lambda: CNNConfig(widths=(8, 0)), r"widths\[1\] must be a positive int"),
        (lambda: CNNConfig(hidden=-1), "hidden must be a positive int"),
        (lambda: CNNConfig(num_classes=0), "num_classes must be a positive int"),
        (lambda: CNNConfig(dropout=1.5), r"CNNConfig.dropout must be a real in \[0, 1\) \(a dropout probability\); got 1.5"),
        (lambda: CNNConfig(batch_norm=None), "CNNConfig.batch_norm must be True or False; got None"),
        (lambda: CIFARNet(GPTConfig()), "CNNConfig"),
    ],
)
def test_bad_configs_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --------------------------------------------------------------------------- CIFAR-10 CNN
@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_cnn_output_shape(scale, batch_norm):
    torch.manual_seed(0)
    model = CIFARNet(cnn_config(scale, batch_norm=batch_norm))
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 * len(model.config.widths)
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)  # App. H
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == batch_norm


def test_cnn_parameter_counts():
    """paper: 2,196,810 (~2.2M); gpu: 814,122; cpu: 204,570; smoke: 17,490 (no batch norm)."""
    counts = {s: count_parameters(CIFARNet(c)) for s, c in CNN_PRESETS.items()}
    assert counts == {"paper": 2_196_810, "gpu": 814_122, "cpu": 204_570, "smoke": 17_490}


def test_cnn_overrides():
    model = CIFARNet(cnn_config("smoke", widths=[4, 8], num_classes=3, dropout=0.5))
    assert model.config.widths == (4, 8)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize(
    "shape", [(2, 1, 32, 32), (2, 3, 28, 28), (3, 32, 32), (2, 32, 32, 3)]
)
def test_cnn_bad_input_shape(shape):
    model = CIFARNet(cnn_config("smoke"))
    with pytest.raises(ValueError, match=r"\[B, 3, 32, 32\]"):
        model(torch.randn(*shape))
