r"""Populations: E runs of one architecture trained at once as one batched model.

A sweep over hyperparameters trains E copies of the same model. On a GPU a small model
trained alone is launch-bound, so :class:`PopulationGPT` and :class:`PopulationCNN` hold
all E *members* in one module whose parameters carry a leading member dimension:
nn.Linear's ``weight [out, in]`` becomes ``[E, out, in]``, a LayerNorm gain ``[C]``
becomes ``[E, C]``, and so on. One forward pass computes every member:

- linear layers are batched matmuls (``torch.baddbmm`` over the member dimension);
- attention folds the members into the batch (``scaled_dot_product_attention`` on
  ``[E*B, n_head, T, head_dim]``);
- convolutions fold the members into the channels and run as one grouped convolution
  (``groups=E``);
- LayerNorm is ``F.layer_norm`` without affine, then each member's gain and bias;
- dropout draws independent masks for every member (and is the identity at dropout 0,
  as in the ``"cpu"`` and ``"smoke"`` presets).

Parameter and buffer *names* are those of the ordinary model (:class:`~kadam_edu.models.GPT`,
:class:`~kadam_edu.models.CIFARNet`), so ``pop.state_dict()[name][e]`` is member e's
``model.state_dict()[name]``. Members never interact: the gradient of ``loss.sum()`` with
respect to ``param[e]`` is member e's own gradient, and any element-wise optimizer
(Adam, KAdam) stepping the population steps every member as if it were alone.
:func:`init_population` reproduces a sequential sweep's initialisation, seed for seed.

Weights keep nn.Linear's [out, in] layout per member, so stacking is a plain copy, the tied
``lm_head`` *is* the [E, vocab, n_embd] embedding and a head's rows are the GPT's; an
[E, in, out] layout measured the same within noise on CPU. On a CPU the population is no
faster than a loop over the models (its E-fold larger activations leave the caches; see
``benchmarks/sweep_throughput.py``): it is meant for GPUs.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kadam_edu import validate
from kadam_edu.models import QK_NORM_EPS, GPT, CIFARNet, CNNConfig, GPTConfig

__all__ = ["PopulationGPT", "PopulationCNN", "PopulationQKHead", "init_population"]


# =========================================================================== batched layers
class BatchedLinear(nn.Module):
    """E independent ``nn.Linear(in, out)``: weight [E, out, in] (nn.Linear's layout,
    stacked), bias [E, out]. x [E, ..., in] -> [E, ..., out], one ``torch.baddbmm``."""

    def __init__(self, members: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(members, out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        E, n_out, n_in = self.weight.shape
        x2 = x.reshape(E, -1, n_in)
        w = self.weight.transpose(1, 2)  # [E, in, out]
        y = torch.bmm(x2, w) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), x2, w)
        return y.view(*x.shape[:-1], n_out)


class BatchedLayerNorm(nn.Module):
    """E independent ``nn.LayerNorm(n)``: weight (gain) and bias [E, n]. x [E, ..., n] -> same."""

    def __init__(self, members: int, n: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, n))
        self.bias = nn.Parameter(torch.empty(members, n)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        E, n = self.weight.shape
        shape = (E,) + (1,) * (x.ndim - 2) + (n,)
        y = F.layer_norm(x, (n,), eps=1e-5)  # nn.LayerNorm's eps
        if self.bias is None:
            return y * self.weight.view(shape)
        return torch.addcmul(self.bias.view(shape), y, self.weight.view(shape))


class BatchedEmbedding(nn.Module):
    """E independent ``nn.Embedding(num, dim)``: weight [E, num, dim]. ids [E, ...] -> [E, ..., dim].

    One ``F.embedding`` on the stacked table [E*num, dim], with member e's ids offset by
    e*num; an id outside [0, num) is sent to -1, so it raises IndexError as in the ordinary
    model instead of reading another member's row (no host synchronisation)."""

    def __init__(self, members: int, num: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, num, dim))

    def forward(self, ids: Tensor) -> Tensor:
        E, num, dim = self.weight.shape
        offsets = torch.arange(0, E * num, num, device=ids.device).view(E, *(1,) * (ids.ndim - 1))
        flat = torch.where((ids >= 0) & (ids < num), ids + offsets, -1)
        return F.embedding(flat, self.weight.view(E * num, dim))


class BatchedConv2d(nn.Module):
    """E independent ``nn.Conv2d(c_in, c_out, 3, padding=1)``: weight [E, c_out, c_in, 3, 3],
    bias [E, c_out]. Members are folded into the channels: x [B, E*c_in, H, W] ->
    [B, E*c_out, H, W] by one grouped convolution (groups=E). A shared input [B, c_in, H, W]
    feeds every member through one ordinary convolution (groups=1)."""

    def __init__(self, members: int, c_in: int, c_out: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, c_out, c_in, 3, 3))
        self.bias = nn.Parameter(torch.empty(members, c_out)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        E, c_out, c_in = self.weight.shape[:3]
        w = self.weight.reshape(E * c_out, c_in, 3, 3)
        b = None if self.bias is None else self.bias.reshape(E * c_out)
        return F.conv2d(x, w, b, padding=1, groups=x.shape[1] // c_in)


class BatchedBatchNorm2d(nn.Module):
    """E independent ``nn.BatchNorm2d(c)`` on member-folded channels [B, E*c, H, W]:
    weight, bias, running_mean, running_var [E, c]; num_batches_tracked [E]."""

    def __init__(self, members: int, c: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, c))
        self.bias = nn.Parameter(torch.empty(members, c))
        self.register_buffer("running_mean", torch.zeros(members, c))
        self.register_buffer("running_var", torch.ones(members, c))
        self.register_buffer("num_batches_tracked", torch.zeros(members, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, self.running_mean.view(-1), self.running_var.view(-1), self.weight.view(-1),
                            self.bias.view(-1), self.training, 0.1, 1e-5)  # nn.BatchNorm2d's defaults


class MembersFirst(nn.Module):
    """Flatten member-folded feature maps: [B, E*C, h, w] -> [E, B, C*h*w] (nn.Flatten per member)."""

    def __init__(self, members: int):
        super().__init__()
        self.members = members

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], self.members, -1).transpose(0, 1)


# =========================================================================== the shared machinery
def _shape(x) -> str:
    return f"{tuple(x.shape)}" if torch.is_tensor(x) else type(x).__name__


class _Population(nn.Module):
    """Conversions shared by the populations: ``model_class`` is the ordinary model."""

    model_class: type[nn.Module]
    config_class: type

    def __init__(self, config, members: int):
        validate.positive_int("members", members, meaning="the number of models E")
        if not isinstance(config, self.config_class):
            raise ValueError(f"config must be a {self.config_class.__name__}; got {type(config).__name__}")
        super().__init__()
        self.config, self.members = config, int(members)

    def _draw_members(self) -> None:
        """Member e := the e-th ``model_class(config)`` built in sequence from the global RNG."""
        for e in range(self.members):
            self.load_member(e, self.model_class(self.config))

    def _tie_weights(self) -> None:
        """Re-tie shared parameters after ``to_empty`` (which unties them)."""

    @classmethod
    def _empty(cls, config, members: int, device, dtype):
        # built on the meta device: no memory, no random draws; the values are loaded after
        with torch.device("meta"):
            pop = cls(config, members)
        pop = pop.to_empty(device=device).to(dtype)
        pop._tie_weights()
        return pop

    @classmethod
    def from_models(cls, models: list) -> "_Population":
        """Stack ordinary models (one config) into a population: member e = ``models[e]``
        (a copy), on the device and dtype of ``models[0]``. Draws no random numbers."""
        name = cls.model_class.__name__
        if not isinstance(models, (list, tuple)) or not models or not all(
            isinstance(m, cls.model_class) for m in models
        ):
            raise ValueError(f"models must be a non-empty list of {name}; got {models!r:.200}")
        configs = {m.config for m in models}
        if len(configs) != 1:
            raise ValueError(f"models must share one config to form a population; got {len(configs)} configs")
        p = next(models[0].parameters())
        pop = cls._empty(models[0].config, len(models), p.device, p.dtype)
        for e, m in enumerate(models):
            pop.load_member(e, m)
        return pop

    def _check_index(self, e) -> None:
        if isinstance(e, bool) or not isinstance(e, numbers.Integral) or not 0 <= e < self.members:
            raise ValueError(f"member index must be an int in [0, {self.members}); got {e!r}")

    def member(self, e: int) -> nn.Module:
        """A new ordinary model holding a copy of member e's weights and buffers, on the
        population's device and dtype, in its training mode. Leaves the global RNG alone."""
        self._check_index(e)
        p = next(self.parameters())
        with torch.random.fork_rng(devices=[]):
            model = self.model_class(self.config).to(device=p.device, dtype=p.dtype)
        model.load_state_dict({k: t[e] for k, t in self.state_dict().items()})
        return model.train(self.training)

    @torch.no_grad()
    def load_member(self, e: int, model: nn.Module) -> None:
        """Copy ``model``'s weights and buffers into member e (the other members are untouched)."""
        self._check_index(e)
        if not isinstance(model, self.model_class) or model.config != self.config:
            raise ValueError(
                f"model must be a {self.model_class.__name__} with the population's config {self.config}; got "
                + (f"config {model.config}" if isinstance(model, self.model_class) else type(model).__name__)
            )
        source = model.state_dict()
        for k, t in self.state_dict().items():
            t[e].copy_(source[k])

    def count_member_parameters(self) -> int:
        """Scalar parameters of one member (= ``count_parameters`` of the ordinary model)."""
        return sum(p[0].numel() for p in self.parameters())


# =========================================================================== character GPT
class BatchedSelfAttention(nn.Module):
    """:class:`~kadam_edu.models.CausalSelfAttention` for E members: x [E, B, T, C] -> same.
    Members are folded into the batch of one SDPA call; qk-norm (Eq. 6) as in the GPT."""

    def __init__(self, config: GPTConfig, members: int):
        super().__init__()
        n, qk_bias = config.n_embd, config.bias and not config.qk_norm
        self.n_head, self.head_dim, self.qk_norm = config.n_head, config.head_dim, config.qk_norm
        self.q_proj = BatchedLinear(members, n, n, bias=qk_bias)
        self.k_proj = BatchedLinear(members, n, n, bias=qk_bias)
        self.v_proj = BatchedLinear(members, n, n, bias=config.bias)
        self.c_proj = BatchedLinear(members, n, n, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.attn_scale = math.sqrt(self.head_dim) if config.qk_norm else None

    def forward(self, x: Tensor) -> Tensor:
        E, B, T, C = x.shape

        def heads(t: Tensor) -> Tensor:  # [E, B, T, C] -> [E*B, nh, T, hd]
            return t.view(E * B, T, self.n_head, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        if self.qk_norm:
            q = F.normalize(q, dim=-1, eps=QK_NORM_EPS)
            k = F.normalize(k, dim=-1, eps=QK_NORM_EPS)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True, scale=self.attn_scale
        )
        y = y.transpose(1, 2).reshape(E, B, T, C)
        return self.resid_dropout(self.c_proj(y))


class BatchedMLP(nn.Module):
    """The GPT's MLP for E members: n_embd -> 4 n_embd -> GELU -> n_embd -> dropout."""

    def __init__(self, config: GPTConfig, members: int):
        super().__init__()
        self.c_fc = BatchedLinear(members, config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = BatchedLinear(members, 4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class BatchedBlock(nn.Module):
    """Pre-LayerNorm transformer block for E members: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig, members: int):
        super().__init__()
        self.ln_1 = BatchedLayerNorm(members, config.n_embd, config.bias)
        self.attn = BatchedSelfAttention(config, members)
        self.ln_2 = BatchedLayerNorm(members, config.n_embd, config.bias)
        self.mlp = BatchedMLP(config, members)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


@dataclass(frozen=True, eq=False)
class PopulationQKHead:
    """One head's query or key matrix in every member: ``param[:, rows]``, [E, head_dim, n_embd].

    Member e's is ``param[e, rows]``, the matrix that ``GPT.query_key_heads()`` of member e
    lists under the same label (scale invariant under qk-norm, Eq. 6).
    """

    layer: int
    kind: Literal["q", "k"]
    head: int
    param: nn.Parameter = field(repr=False)
    rows: slice

    def weight(self, member: int | None = None) -> Tensor:
        """A view (writes through): [E, head_dim, n_embd], or member ``member``'s [head_dim, n_embd]."""
        return self.param[:, self.rows] if member is None else self.param[member, self.rows]

    @property
    def label(self) -> str:
        """As ``QKHead.label``, e.g. ``"L0 q h1"``."""
        return f"L{self.layer} {self.kind} h{self.head}"


class PopulationGPT(_Population):
    """E char GPTs (App. H's nanoGPT, :class:`~kadam_edu.models.GPT`) as one batched model.

    ``forward(idx, targets=None)``: idx [E, B, T] (member e reads ``idx[e]``) or one shared
    batch [B, T] for every member; targets [E, B, T], a shared [B, T], or None -> (logits
    [E, B, T, vocab_size], loss [E] = each member's mean cross-entropy, or None). Target -1
    is ignored, as in the GPT. Train on ``loss.sum()``: members do not interact.

    ``PopulationGPT(config, members)`` draws member e as the e-th ``GPT(config)`` built in
    sequence from the global RNG; :func:`init_population` seeds each member, and
    :meth:`from_models` stacks existing models. Parameters have the GPT's names with a
    leading member dimension; ``lm_head`` is tied to the token embedding.
    """

    model_class, config_class = GPT, GPTConfig

    def __init__(self, config: GPTConfig, members: int):
        super().__init__(config, members)
        E = self.members
        self.transformer = nn.ModuleDict(
            dict(
                wte=BatchedEmbedding(E, config.vocab_size, config.n_embd),
                wpe=BatchedEmbedding(E, config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([BatchedBlock(config, E) for _ in range(config.n_layer)]),
                ln_f=BatchedLayerNorm(E, config.n_embd, config.bias),
            )
        )
        self.lm_head = BatchedLinear(E, config.n_embd, config.vocab_size, bias=False)
        self._tie_weights()
        self._draw_members()

    def _tie_weights(self) -> None:
        self.transformer.wte.weight = self.lm_head.weight  # [E, vocab, n_embd] (one parameter)

    def _batch(self, idx: Tensor) -> Tensor:
        E, bs = self.members, self.config.block_size
        if not torch.is_tensor(idx) or idx.dtype != torch.long or not (
            idx.ndim == 2 or (idx.ndim == 3 and idx.shape[0] == E)
        ):
            raise ValueError(
                f"idx must be a [E, B, T] with E = {E} members, or a shared [B, T], tensor of torch.long token "
                "ids; got " + (f"{idx.dtype} of shape {tuple(idx.shape)}" if torch.is_tensor(idx) else _shape(idx))
            )
        if not 1 <= idx.shape[-1] <= bs:
            raise ValueError(f"sequence length T={idx.shape[-1]} must be in [1, block_size={bs}]")
        return idx.expand(E, *idx.shape[-2:])

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        idx = self._batch(idx)
        E, B, T = idx.shape
        if targets is not None and not (torch.is_tensor(targets) and targets.shape in (idx.shape, idx.shape[1:])):
            raise ValueError(
                f"targets must be {tuple(idx.shape)} or a shared {tuple(idx.shape[1:])} (the shape of idx); "
                f"got {_shape(targets)}"
            )
        tok = self.transformer.wte(idx)  # [E, B, T, C]
        pos = self.transformer.wpe.weight[:, :T].unsqueeze(1)  # [E, 1, T, C]
        x = self.transformer.drop(tok + pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))  # [E, B, T, V]
        if targets is None:
            return logits, None
        targets = targets.expand(E, B, T)
        ce = F.cross_entropy(logits.reshape(E * B * T, -1), targets.reshape(-1), ignore_index=-1, reduction="none")
        loss = ce.view(E, B * T).sum(1) / (targets != -1).reshape(E, B * T).sum(1)  # each member's mean
        return logits, loss

    def query_key_heads(self) -> list[PopulationQKHead]:
        """Every head's query and key matrix for all members, ordered as ``GPT.query_key_heads``."""
        hd = self.config.head_dim
        heads = []
        for layer, block in enumerate(self.transformer.h):
            for kind, proj in (("q", block.attn.q_proj), ("k", block.attn.k_proj)):
                for h in range(self.config.n_head):
                    heads.append(PopulationQKHead(layer, kind, h, proj.weight, slice(h * hd, (h + 1) * hd)))
        return heads


# =========================================================================== CIFAR-10 CNN
class PopulationCNN(_Population):
    """E CIFAR-10 CNNs (:class:`~kadam_edu.models.CIFARNet`, App. H Fig. 2) as one batched model.

    ``forward(x)``: x [E, B, 3, 32, 32] (member e reads ``x[e]``) or one shared batch
    [B, 3, 32, 32] -> logits [E, B, num_classes]. Members are folded into the channels,
    [B, E*C, H, W], so each convolution is one grouped convolution and ReLU, max-pool and
    BatchNorm act per member unchanged. Layer names and indices are CIFARNet's.
    ``PopulationCNN(config, members)`` draws member e as the e-th ``CIFARNet(config)``.
    """

    model_class, config_class = CIFARNet, CNNConfig

    def __init__(self, config: CNNConfig, members: int):
        super().__init__(config, members)
        E = self.members
        layers: list[nn.Module] = []
        c_in = CIFARNet.IMAGE_SHAPE[0]
        for c_out in config.widths:
            for _ in range(2):
                layers.append(BatchedConv2d(E, c_in, c_out, bias=not config.batch_norm))
                if config.batch_norm:
                    layers.append(BatchedBatchNorm2d(E, c_out))
                layers.append(nn.ReLU(inplace=True))
                c_in = c_out
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = CIFARNet.IMAGE_SHAPE[1] // 2 ** len(config.widths)
        self.classifier = nn.Sequential(
            MembersFirst(E),
            BatchedLinear(E, c_in * side * side, config.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            BatchedLinear(E, config.hidden, config.num_classes),
        )
        self._draw_members()

    def forward(self, x: Tensor) -> Tensor:
        E, image = self.members, CIFARNet.IMAGE_SHAPE
        if not torch.is_tensor(x) or tuple(x.shape[-3:]) != image or not (
            x.ndim == 4 or (x.ndim == 5 and x.shape[0] == E)
        ):
            raise ValueError(
                f"x must be a [E, B, 3, 32, 32] with E = {E} members, or a shared [B, 3, 32, 32], batch of "
                f"CIFAR-10 images; got {_shape(x)}"
            )
        if x.ndim == 5:  # [E, B, 3, H, W] -> [B, E*3, H, W]: member e owns channels 3e..3e+2
            x = x.transpose(0, 1).reshape(x.shape[1], E * image[0], *image[1:])
        return self.classifier(self.features(x))


# =========================================================================== seeds
def init_population(config: GPTConfig | CNNConfig, seeds: list[int]) -> PopulationGPT | PopulationCNN:
    """A population whose member e is exactly the ordinary model built after
    ``torch.manual_seed(seeds[e])`` (as ``seed_everything`` does before ``GPT(config)`` in
    the experiments), so it reproduces a sequential sweep's initialisation. The model class
    follows the config (GPTConfig -> :class:`PopulationGPT`, CNNConfig -> :class:`PopulationCNN`);
    built on the CPU in the default dtype, as the models would be (move it with ``.to``). The
    global RNG state is restored.
    """
    kinds = {GPTConfig: PopulationGPT, CNNConfig: PopulationCNN}
    if type(config) not in kinds:
        raise ValueError(f"config must be a GPTConfig or a CNNConfig; got {type(config).__name__}")
    if not isinstance(seeds, (list, tuple)) or not seeds or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0 for s in seeds
    ):
        raise ValueError(f"seeds must be a non-empty list of non-negative ints (one per member); got {seeds!r}")
    cls = kinds[type(config)]
    pop = cls._empty(config, len(seeds), torch.device("cpu"), torch.get_default_dtype())
    with torch.random.fork_rng(devices=[]):
        for e, seed in enumerate(seeds):
            torch.manual_seed(int(seed))
            pop.load_member(e, cls.model_class(config))
    return pop
