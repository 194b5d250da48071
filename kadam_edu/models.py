r"""The paper's two models (App. H): a character-level GPT and a CIFAR-10 CNN.

**Character GPT.** nanoGPT (the paper's ref. [28]) in one readable section: token +
position embeddings, pre-LayerNorm blocks of causal self-attention and a 4x GELU MLP,
a final LayerNorm and an ``lm_head`` tied to the token embedding. The ``"paper"``
preset is App. H's model: 6 layers, 6 heads, width 384, block 256, dropout 0.2.
Two changes from nanoGPT, both for Section 4 of the paper:

- queries, keys and values come from *separate* linear layers (``q_proj``,
  ``k_proj``, ``v_proj``) instead of a fused ``c_attn``, so every query/key matrix is
  its own parameter (same parameter count as nanoGPT);
- ``qk_norm=True`` normalizes every head's query and key vector to unit length
  without a learnable gain, which makes the loss *exactly* scale invariant under each
  head's query matrix and each head's key matrix (Section 4.1, Eq. 6, App. G, App. L).
  :meth:`GPT.query_key_heads` lists those matrices and :func:`flat_indices` locates
  them in the flattened parameter vector of :mod:`kadam_edu.continuous`.

**CIFAR-10 CNN.** :class:`CIFARNet`, a conventional stack of 3x3 / padding-1
convolutions. It stands in for the paper's Figure 6, whose layer list is not
available as text (App. H only says "all convolutional layers use a kernel size of
3x3 and a padding of 1").

Each model has a frozen config dataclass and ``"paper"`` / ``"gpu"`` / ``"cpu"`` / ``"smoke"``
presets (:func:`gpt_config`, :func:`cnn_config`); ``scale="auto"`` is resolved by
:mod:`kadam_edu.scale`, not here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kadam_edu import validate
from kadam_edu.scale import with_overrides

__all__ = [
    "GPTConfig",
    "GPT_PRESETS",
    "gpt_config",
    "GPT",
    "QKHead",
    "QK_NORM_EPS",
    "CNNConfig",
    "CNN_PRESETS",
    "cnn_config",
    "CIFARNet",
    "flat_indices",
    "count_parameters",
]


# --------------------------------------------------------------------------- presets
def _from_preset(presets: dict, kind: str, scale: str, overrides: dict):
    """``presets[scale]`` with the fields in ``overrides`` replaced (:func:`kadam_edu.scale.with_overrides`;
    the config's ``__post_init__`` checks the values); ValueError naming the unknown scale or fields."""
    if scale not in presets:
        raise ValueError(
            f"unknown {kind} scale {scale!r}; choose one of {sorted(presets)} "
            "(resolve 'auto' with kadam_edu.scale first)"
        )
    name = type(presets[scale]).__name__
    return with_overrides(presets[scale], overrides, what=f"{name} field(s)", owner=name)


# =========================================================================== character GPT
@dataclass(frozen=True)
class GPTConfig:
    """Hyperparameters of :class:`GPT` (nanoGPT's ``GPTConfig``; defaults = App. H).

    vocab_size: number of tokens (65 characters for tiny-shakespeare).
    block_size: longest context, in tokens. n_layer, n_head, n_embd: depth, heads per
    layer, width (``n_embd`` must be divisible by ``n_head``). dropout: in [0, 1).
    bias: biases in Linear and LayerNorm layers. qk_norm: unit-norm queries and keys
    per head, no gain (see :class:`CausalSelfAttention`).
    """

    vocab_size: int = 65
    block_size: int = 256
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.2
    bias: bool = True
    qk_norm: bool = False

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            validate.positive_int(f"GPTConfig.{name}", getattr(self, name))
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        validate.finite_real("GPTConfig.dropout", self.dropout, lo=0, hi=1, hi_open=True,
                             meaning="a dropout probability")
        validate.boolean("GPTConfig.bias", self.bias)
        validate.boolean("GPTConfig.qk_norm", self.qk_norm)

    @property
    def head_dim(self) -> int:
        """Width of one attention head, n_embd // n_head."""
        return self.n_embd // self.n_head


#: "paper": App. H. "cpu": the DESIGN's 2-core model. "smoke": CI-sized. "gpu": between cpu and
#: paper for the chapters whose quantity is about the model itself (the query/key heads of
#: Chapter 3, the batch-size curves of Chapter 5, App. T's levels): twice the cpu model's depth
#: and width, its context and 7.5x its parameters (0.82M; the paper's has 10.8M). One member step at
#: batch 32 is about 9 ms on a T4 (``experiments.estimate``), so 32 members train at once in
#: under 2 GB; dropout 0 as at cpu scale (the ODE and Hessian chapters need a deterministic loss).
GPT_PRESETS: dict[str, GPTConfig] = {
    "paper": GPTConfig(),
    "gpu": GPTConfig(block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
    "cpu": GPTConfig(block_size=64, n_layer=2, n_head=4, n_embd=64, dropout=0.0),
    "smoke": GPTConfig(block_size=32, n_layer=1, n_head=2, n_embd=32, dropout=0.0),
}


def gpt_config(scale: str, **overrides) -> GPTConfig:
    """The :data:`GPT_PRESETS` entry ``scale`` with ``overrides`` applied, e.g.
    ``gpt_config("cpu", qk_norm=True)``. ValueError for an unknown scale or field."""
    return _from_preset(GPT_PRESETS, "GPT", scale, overrides)


#: Clamp on a query/key norm, only to avoid 0/0; far below any real norm.
QK_NORM_EPS = 1e-12


class CausalSelfAttention(nn.Module):
    r"""Multi-head causal self-attention with separate query, key and value projections.

    With ``qk_norm=True`` this is the qk-norm of the paper's refs. [7, 8] *without* a
    learnable gain: each head's query and key vector is divided by its L2 norm
    (clamped below at :data:`QK_NORM_EPS` only to avoid 0/0), and ``q_proj`` /
    ``k_proj`` have no bias. The attention logits then depend on a head's query matrix
    W (rows ``h*hd:(h+1)*hd`` of ``q_proj.weight``) only through W/||W||, so the loss
    is exactly invariant under W -> alpha W (alpha > 0) and <W, dL/dW> = 0 (Eq. 6,
    App. L); the same holds for each key head and for whole ``q_proj.weight`` /
    ``k_proj.weight``. A gain (or a bias) would break the exact invariance.

    Normalized q.k lies in [-1, 1], so the logits use a fixed (not learned) temperature:
    ``scale = sqrt(head_dim)`` instead of attention's usual ``1/sqrt(head_dim)``. For
    random directions q.k has standard deviation about 1/sqrt(head_dim), so this keeps
    the logits at unit scale at initialisation, as in ordinary attention.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        n, qk_bias = config.n_embd, config.bias and not config.qk_norm
        self.n_head, self.head_dim, self.qk_norm = config.n_head, config.head_dim, config.qk_norm
        self.q_proj = nn.Linear(n, n, bias=qk_bias)
        self.k_proj = nn.Linear(n, n, bias=qk_bias)
        self.v_proj = nn.Linear(n, n, bias=config.bias)
        self.c_proj = nn.Linear(n, n, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        #: the softmax temperature: None = SDPA's default 1/sqrt(head_dim)
        self.attn_scale = math.sqrt(self.head_dim) if config.qk_norm else None

    def _heads(self, x: Tensor) -> Tensor:  # [B, T, C] -> [B, nh, T, hd]
        B, T, _ = x.shape
        return x.view(B, T, self.n_head, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        if self.qk_norm:
            q = F.normalize(q, dim=-1, eps=QK_NORM_EPS)
            k = F.normalize(k, dim=-1, eps=QK_NORM_EPS)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True, scale=self.attn_scale
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """n_embd -> 4 n_embd -> GELU -> n_embd, then dropout (nanoGPT)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


@dataclass(frozen=True, eq=False)
class QKHead:
    """One head's query or key matrix W: ``param[rows]``, shape [head_dim, n_embd].

    layer: block index. kind: "q" (rows of ``q_proj.weight``) or "k" (``k_proj.weight``).
    head: head index; ``rows = slice(head*head_dim, (head+1)*head_dim)``.
    Under ``qk_norm=True`` the loss is scale invariant in W (Eq. 6).
    """

    layer: int
    kind: Literal["q", "k"]
    head: int
    param: nn.Parameter = dataclasses.field(repr=False)
    rows: slice

    def weight(self) -> Tensor:
        """The view ``param[rows]`` (writes through to the model), [head_dim, n_embd]."""
        return self.param[self.rows]

    @property
    def label(self) -> str:
        """A short name for plots, e.g. ``"L0 q h1"``."""
        return f"L{self.layer} {self.kind} h{self.head}"


class GPT(nn.Module):
    """Character-level decoder-only transformer (nanoGPT, App. H); see the module docstring.

    ``forward(idx, targets)``: idx [B, T] token ids, T <= block_size -> (logits
    [B, T, vocab_size], mean cross-entropy over all positions or None); target -1 is
    ignored, as in nanoGPT. Initialisation is nanoGPT's: N(0, 0.02) for Linear and
    Embedding weights, zero biases, and N(0, 0.02/sqrt(2 n_layer)) for the two residual
    projections (``c_proj``) of each block.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"config must be a GPTConfig (see gpt_config); got {type(config).__name__}")
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying (one parameter)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if not torch.is_tensor(idx) or idx.ndim != 2 or idx.dtype != torch.long:
            raise ValueError(
                "idx must be a [B, T] tensor of torch.long token ids; got "
                + (f"{idx.dtype} of shape {tuple(idx.shape)}" if torch.is_tensor(idx) else type(idx).__name__)
            )
        B, T = idx.shape
        if not 1 <= T <= self.config.block_size:
            raise ValueError(f"sequence length T={T} must be in [1, block_size={self.config.block_size}]")
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        if targets is None:
            return logits, None
        if not torch.is_tensor(targets) or targets.shape != idx.shape:
            raise ValueError(
                f"targets must have the shape of idx {tuple(idx.shape)}; got "
                + (f"{tuple(targets.shape)}" if torch.is_tensor(targets) else type(targets).__name__)
            )
        loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def query_key_heads(self) -> list[QKHead]:
        """Every head's query and key matrix, n_layer * n_head * 2 of them, ordered by
        (layer, kind "q" then "k", head). Scale invariant when ``config.qk_norm`` (Eq. 6)."""
        hd = self.config.head_dim
        heads = []
        for layer, block in enumerate(self.transformer.h):
            for kind, proj in (("q", block.attn.q_proj), ("k", block.attn.k_proj)):
                for h in range(self.config.n_head):
                    heads.append(QKHead(layer, kind, h, proj.weight, slice(h * hd, (h + 1) * hd)))
        return heads

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Sample ``max_new_tokens`` tokens after ``idx`` [B, T]; returns [B, T + max_new_tokens].

        The context is cropped to the last ``block_size`` tokens. ``temperature`` > 0
        divides the logits; ``temperature=0`` picks the most likely token (greedy).
        Runs in eval mode (no dropout) and restores the previous mode afterwards;
        pass a seeded ``generator`` for reproducible samples.
        """
        max_new_tokens = validate.integer("max_new_tokens", max_new_tokens, lo=0)
        temperature = validate.real("temperature", temperature, lo=0, meaning="0 = greedy")
        was_training = self.training
        self.eval()
        try:
            for _ in range(max_new_tokens):
                logits, _ = self(idx[:, -self.config.block_size :])
                logits = logits[:, -1, :]
                if temperature == 0:
                    nxt = logits.argmax(dim=-1, keepdim=True)
                else:
                    probs = F.softmax(logits / temperature, dim=-1)
                    nxt = torch.multinomial(probs, num_samples=1, generator=generator)
                idx = torch.cat((idx, nxt), dim=1)
        finally:
            self.train(was_training)
        return idx


# =========================================================================== helpers
def _trainable(model: nn.Module) -> list[nn.Parameter]:
    # nn.Module.parameters() yields a tied parameter once; this is the flattening of
    # kadam_edu.continuous (torch.cat of p.reshape(-1) over these, in this order).
    return [p for p in model.parameters() if p.requires_grad]


def flat_indices(model: nn.Module, param: nn.Parameter, rows: slice | None = None) -> Tensor:
    """Positions of ``param`` (or of ``param[rows]``) in the flattened parameter vector
    ``torch.cat([p.reshape(-1) for p in model.parameters() if p.requires_grad])``,
    the vector that :mod:`kadam_edu.continuous` integrates. Returns a 1-D LongTensor,
    in the row-major order of ``param[rows]``. For a query/key head ``h``:
    ``flat_indices(model, h.param, h.rows)``.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module; got {type(model).__name__}")
    if rows is not None and not isinstance(rows, slice):
        raise ValueError(f"rows must be a slice over param's first dimension or None; got {rows!r}")
    offset = 0
    for p in _trainable(model):
        if p is param:
            idx = torch.arange(offset, offset + p.numel(), dtype=torch.long).view(p.shape)
            if rows is not None:
                if p.ndim == 0:
                    raise ValueError("rows cannot be used with a 0-d parameter")
                idx = idx[rows]
                if idx.numel() == 0:
                    raise ValueError(f"rows {rows!r} select nothing of a parameter of shape {tuple(p.shape)}")
            return idx.reshape(-1)
        offset += p.numel()
    raise ValueError("param is not a trainable (requires_grad) parameter of model")


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model``, each tied parameter counted once."""
    return sum(p.numel() for p in model.parameters())


# =========================================================================== CIFAR-10 CNN
@dataclass(frozen=True)
class CNNConfig:
    """Hyperparameters of :class:`CIFARNet`.

    widths: output channels of each stage (1 to 5 stages; each halves the 32x32 image).
    hidden: width of the classifier's hidden layer. dropout: in [0, 1), before the last
    Linear. batch_norm: BatchNorm after each convolution (off by default: the paper
    does not mention normalization layers for its CNN). num_classes: outputs.
    """

    widths: tuple[int, ...] = (64, 128, 256)
    hidden: int = 256
    dropout: float = 0.0
    batch_norm: bool = False
    num_classes: int = 10

    def __post_init__(self):
        w = self.widths
        if not isinstance(w, tuple) or not 1 <= len(w) <= 5:
            raise ValueError(
                f"CNNConfig.widths must be a tuple of 1 to 5 positive ints (one per 2x2 pooling of a "
                f"32x32 image); got {w!r}"
            )
        for i, c in enumerate(w):
            validate.positive_int(f"CNNConfig.widths[{i}]", c)
        validate.positive_int("CNNConfig.hidden", self.hidden)
        validate.positive_int("CNNConfig.num_classes", self.num_classes)
        validate.finite_real("CNNConfig.dropout", self.dropout, lo=0, hi=1, hi_open=True,
                             meaning="a dropout probability")
        validate.boolean("CNNConfig.batch_norm", self.batch_norm)


#: "paper": 64-128-256 channels (our stand-in for the paper's Figure 6). "cpu": a quarter of the
#: width. "gpu": half the paper's width, a quarter of its FLOPs. "smoke": CI-sized.
CNN_PRESETS: dict[str, CNNConfig] = {
    "paper": CNNConfig(),
    "gpu": CNNConfig(widths=(32, 64, 128), hidden=256),
    "cpu": CNNConfig(widths=(16, 32, 64), hidden=128),
    "smoke": CNNConfig(widths=(8, 16, 16), hidden=32),
}


def cnn_config(scale: str, **overrides) -> CNNConfig:
    """The :data:`CNN_PRESETS` entry ``scale`` with ``overrides`` applied, e.g.
    ``cnn_config("cpu", batch_norm=True)``. ValueError for an unknown scale or field."""
    if isinstance(overrides.get("widths"), list):
        overrides["widths"] = tuple(overrides["widths"])
    return _from_preset(CNN_PRESETS, "CNN", scale, overrides)


class CIFARNet(nn.Module):
    """CIFAR-10 classifier: [B, 3, 32, 32] images -> [B, num_classes] logits (App. H, Fig. 2).

    A stand-in for the paper's Figure 6, whose layer list is not available as text; App. H
    says only that "all convolutional layers use a kernel size of 3x3 and a padding of 1".
    Each stage is 2 x (Conv3x3, padding 1 -> [BatchNorm] -> ReLU) then 2x2 max-pool; the
    classifier is flatten -> Linear(hidden) -> ReLU -> Dropout -> Linear(num_classes).
    With ``batch_norm=True`` convolutions have no bias and each conv weight is scale
    invariant (Section 4.1). PyTorch's default initialisation.
    """

    IMAGE_SHAPE = (3, 32, 32)

    def __init__(self, config: CNNConfig):
        super().__init__()
        if not isinstance(config, CNNConfig):
            raise ValueError(f"config must be a CNNConfig (see cnn_config); got {type(config).__name__}")
        self.config = config
        layers: list[nn.Module] = []
        c_in = self.IMAGE_SHAPE[0]
        for c_out in config.widths:
            for _ in range(2):
                layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not config.batch_norm))
                if config.batch_norm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.ReLU(inplace=True))
                c_in = c_out
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = self.IMAGE_SHAPE[1] // 2 ** len(config.widths)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * side * side, config.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        if not torch.is_tensor(x) or x.ndim != 4 or tuple(x.shape[1:]) != self.IMAGE_SHAPE:
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"x must be a [B, 3, 32, 32] batch of CIFAR-10 images; got {got}")
        return self.classifier(self.features(x))
