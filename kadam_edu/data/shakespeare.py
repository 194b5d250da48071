"""tiny-shakespeare, character-level (nanoGPT's data): download, verify, tokenize, batches.

``<root>/tinyshakespeare/input.txt`` under the data root (:func:`kadam_edu.data.data_root`):
1,115,394 bytes with a known sha256, 65 characters; the first 90% of its tokens train, the
last 10% validate.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from kadam_edu import validate
from kadam_edu.data.download import _resolve_root, fetch

__all__ = [
    "SHAKESPEARE_URL",
    "SHAKESPEARE_SHA256",
    "SHAKESPEARE_SIZE",
    "CharCorpus",
    "shakespeare_path",
    "load_shakespeare",
    "get_batch",
]

SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_SIZE = 1_115_394  # bytes


@dataclass(repr=False)
class CharCorpus:
    """A character-level corpus: int64 token ids and the sorted vocabulary.

    train: the first 90% of the text's tokens; val: the last 10%;
    chars: the sorted vocabulary, token id ``i`` is ``chars[i]``.
    """

    train: Tensor
    val: Tensor
    chars: str

    def __post_init__(self):
        self._stoi = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        """Number of distinct characters (65 for tiny-shakespeare)."""
        return len(self.chars)

    def encode(self, s: str) -> Tensor:
        """The int64 token ids of string ``s``, shape [len(s)]."""
        if not isinstance(s, str):
            raise ValueError(f"s must be a str; got {type(s).__name__}")
        unknown = sorted(set(s) - self._stoi.keys())
        if unknown:
            raise ValueError(f"s contains characters outside the vocabulary: {unknown!r}")
        return torch.tensor([self._stoi[c] for c in s], dtype=torch.int64)

    def decode(self, ids) -> str:
        """The string of a 1-D sequence of token ids (tensor, array or list)."""
        arr = np.asarray(ids.detach().cpu() if isinstance(ids, Tensor) else ids)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"ids must be a 1-D sequence of ints; got shape {arr.shape}, dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(
                f"ids must lie in [0, {self.vocab_size}) (the vocabulary); "
                f"got values in [{arr.min()}, {arr.max()}]"
            )
        return "".join(self.chars[i] for i in arr.tolist())

    def __repr__(self) -> str:
        return (
            f"CharCorpus(train={len(self.train):,} tokens, val={len(self.val):,} tokens, "
            f"vocab_size={self.vocab_size})"
        )


def shakespeare_path(root=None) -> Path:
    """Where tiny-shakespeare lives: ``<root>/tinyshakespeare/input.txt``."""
    return _resolve_root(root) / "tinyshakespeare" / "input.txt"


@functools.lru_cache(maxsize=4)
def _char_tokens(path: str, size: int, mtime_ns: int) -> tuple[Tensor, str]:
    """Tokens and vocabulary of a text file, cached per (path, size, mtime)."""
    text = Path(path).read_text(encoding="utf-8")
    chars = "".join(sorted(set(text)))
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    vocab = np.frombuffer(chars.encode("utf-32-le"), dtype="<u4")  # sorted codepoints
    ids = np.searchsorted(vocab, codes).astype(np.int64)
    return torch.from_numpy(ids), chars


def load_shakespeare(root=None, download: bool = True) -> CharCorpus:
    """tiny-shakespeare as a :class:`CharCorpus` (65 characters; 1,003,854 / 111,540 tokens).

    Downloads and verifies ``input.txt`` (sha256) under ``root`` (default :func:`data_root`)
    when needed; the decoded corpus is cached in-process per file.
    """
    path = fetch(
        SHAKESPEARE_URL,
        shakespeare_path(root),
        sha256=SHAKESPEARE_SHA256,
        size=SHAKESPEARE_SIZE,
        download=download,
        name="tiny-shakespeare",
    )
    st = path.stat()
    tokens, chars = _char_tokens(str(path.resolve()), st.st_size, st.st_mtime_ns)
    n_train = int(0.9 * len(tokens))
    # Clones, so that a caller editing its tensors cannot corrupt the cache.
    return CharCorpus(train=tokens[:n_train].clone(), val=tokens[n_train:].clone(), chars=chars)


def get_batch(
    tokens: Tensor, *, block_size: int, batch_size: int, generator: torch.Generator, device="cpu"
) -> tuple[Tensor, Tensor]:
    """Random blocks of a 1-D token sequence for next-token prediction.

    Returns ``x, y`` of shape [batch_size, block_size] (int64); ``y[:, t]`` is the token
    after ``x[:, t]`` in the text (``y`` is ``x`` shifted by one). Start positions are drawn
    from ``generator`` (a CPU torch.Generator), so a seed fixes the batch on any device.
    """
    if not isinstance(tokens, Tensor):
        raise ValueError(f"tokens must be a 1-D integer tensor of token ids; got {type(tokens)!r}")
    if tokens.ndim != 1 or tokens.is_floating_point() or tokens.is_complex():
        raise ValueError(
            "tokens must be a 1-D integer tensor of token ids; got "
            f"shape {tuple(tokens.shape)}, dtype {tokens.dtype}"
        )
    block_size = validate.positive_int("block_size", block_size)
    batch_size = validate.positive_int("batch_size", batch_size)
    if block_size >= len(tokens):
        raise ValueError(
            f"block_size must be smaller than len(tokens) = {len(tokens)} "
            f"(each block needs a next token); got {block_size}"
        )
    generator = validate.generator("generator", generator, cpu=True)
    device = torch.device(device)
    starts = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator)
    idx = starts[:, None] + torch.arange(block_size)
    src = tokens.cpu()
    x, y = src[idx].long(), src[idx + 1].long()
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)
