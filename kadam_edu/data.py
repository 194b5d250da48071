"""Data for the book: tiny-shakespeare (char-level) and CIFAR-10, with no torchvision.

Files live under the *data root* (:func:`data_root`): ``$KADAM_EDU_DATA`` when set,
otherwise a per-user cache directory (``$XDG_CACHE_HOME/kadam_edu`` or
``~/.cache/kadam_edu``)::

    <root>/tinyshakespeare/input.txt
    <root>/cifar-10/cifar-10-python.tar.gz

:func:`fetch` downloads a file once, verifies its checksum and size, writes it
atomically (temp file + ``os.replace``), detects and replaces a corrupt copy,
and never writes when the file on disk is already valid (a read-only root
works). Offline without the file it raises :class:`DataUnavailableError`
saying what to download and where to put it.

Where CIFAR-10 cannot be had, :func:`cifar10_or_standin` says so and returns a
clearly labelled synthetic stand-in of the same shape (``synthetic=True``).
"""

from __future__ import annotations

import functools
import hashlib
import numbers
import os
import pickle
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DataUnavailableError",
    "ChecksumError",
    "data_root",
    "fetch",
    "SHAKESPEARE_URL",
    "SHAKESPEARE_SHA256",
    "SHAKESPEARE_SIZE",
    "CharCorpus",
    "shakespeare_path",
    "load_shakespeare",
    "get_batch",
    "CIFAR10_URL",
    "CIFAR10_MD5",
    "CIFAR10_SIZE",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10_CLASSES",
    "ImageData",
    "cifar10_path",
    "load_cifar10",
    "synthetic_cifar10",
    "cifar10_or_standin",
    "normalize",
    "denormalize",
    "augment",
    "image_batches",
]

ENV_VAR = "KADAM_EDU_DATA"

SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_SIZE = 1_115_394  # bytes

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_SIZE = 170_498_071  # bytes
#: Per-channel (R, G, B) mean and standard deviation of the CIFAR-10 training set, pixels in [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

_CHUNK = 1 << 20  # bytes per read when hashing or downloading


# --------------------------------------------------------------------------- errors
class DataUnavailableError(RuntimeError, FileNotFoundError):
    """A data file is missing or corrupt and could not be downloaded.

    The message says what to download (URL, checksum, size) and where to put it.
    A RuntimeError and a FileNotFoundError, so either ``except`` catches it.
    """


class ChecksumError(DataUnavailableError):
    """A downloaded file did not match its expected checksum or size (nothing was kept)."""


# --------------------------------------------------------------------------- validation
def _check_pos_int(name: str, value, what: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int{what}; got {value!r}")
    return int(value)


def _check_nonneg_int(name: str, value, what: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative int{what}; got {value!r}")
    return int(value)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def _check_generator(generator, name: str = "generator") -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            f"{name} must be a seeded CPU torch.Generator, e.g. "
            f"torch.Generator().manual_seed(0); got {generator!r}"
        )
    if generator.device.type != "cpu":
        raise ValueError(
            f"{name} must be a CPU torch.Generator (batches are drawn on the CPU so a seed "
            f"gives the same data on every device); got one on {generator.device}"
        )
    return generator


def _check_hex(name: str, value, length: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != length or any(
        c not in "0123456789abcdefABCDEF" for c in value
    ):
        raise ValueError(f"{name} must be None or a {length}-character hex digest; got {value!r}")
    return value.lower()


def _as_path(name: str, value) -> Path:
    if not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise ValueError(f"{name} must be a non-empty str or os.PathLike path; got {value!r}")
    return Path(value).expanduser()


# --------------------------------------------------------------------------- data root
def _default_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "kadam_edu"


def data_root() -> Path:
    """The data root: ``$KADAM_EDU_DATA`` if set, else ``$XDG_CACHE_HOME/kadam_edu``
    (``~/.cache/kadam_edu`` without XDG_CACHE_HOME). Nothing is created here."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else _default_root()


def _resolve_root(root) -> Path:
    return data_root() if root is None else _as_path("root", root)


# --------------------------------------------------------------------------- fetch
def _fmt_bytes(n: int) -> str:
    return f"{n:,} bytes" + (f" ({n / 1e6:.1f} MB)" if n >= 1_000_000 else "")


def _expected(sha256, md5, size) -> str:
    parts = [f"sha256 {sha256}"] if sha256 else []
    parts += [f"md5 {md5}"] if md5 else []
    parts += [_fmt_bytes(size)] if size is not None else []
    return ", ".join(parts) if parts else "no checksum given"


def _digests(path: Path, sha256, md5) -> tuple[str | None, str | None]:
    hs = hashlib.sha256() if sha256 else None
    hm = hashlib.md5(usedforsecurity=False) if md5 else None
    if hs or hm:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                if hs:
                    hs.update(chunk)
                if hm:
                    hm.update(chunk)
    return (hs.hexdigest() if hs else None), (hm.hexdigest() if hm else None)


def _mismatch(got_size, got_sha, got_md5, size, sha256, md5) -> str | None:
    """A description of what differs from the expectation, or None when all matches."""
    bad = []
    if size is not None and got_size != size:
        bad.append(f"size: expected {size:,} bytes, got {got_size:,}")
    if sha256 and got_sha != sha256:
        bad.append(f"sha256: expected {sha256}, got {got_sha}")
    if md5 and got_md5 != md5:
        bad.append(f"md5: expected {md5}, got {got_md5}")
    return "; ".join(bad) or None


# (resolved path, size, mtime_ns, sha256, md5) of files already verified in this process.
_VERIFIED: set[tuple] = set()


def _verify_existing(path: Path, sha256, md5, size) -> str | None:
    """None if the file on disk matches; otherwise what is wrong. Reads, never writes."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, sha256, md5, size)
    if key in _VERIFIED:
        return None
    if size is not None and st.st_size != size:  # cheap check first: no need to hash
        return f"size: expected {size:,} bytes, got {st.st_size:,}"
    got_sha, got_md5 = _digests(path, sha256, md5)
    problem = _mismatch(st.st_size, got_sha, got_md5, size, sha256, md5)
    if problem is None:
        _VERIFIED.add(key)
    return problem


def _instructions(url: str, path: Path, sha256, md5, size, name: str) -> str:
    return (
        f"To get {name} by hand, download\n"
        f"    {url}\n"
        f"({_expected(sha256, md5, size)}) and save it as\n"
        f"    {path}\n"
        f"e.g.  mkdir -p '{path.parent}' && curl -L -o '{path}' '{url}'\n"
        f"Data files live under the data root: ${ENV_VAR} if set, otherwise "
        f"{_default_root()} (data root now: {data_root()}). Set {ENV_VAR} to a directory "
        f"holding the file (or where it may be downloaded), or pass root=... ."
    )


def _writable_dir(directory: Path) -> bool:
    """Whether files can be created in ``directory`` (which must exist)."""
    return os.access(directory, os.W_OK | os.X_OK)


def _not_writable(directory: Path, url, path, sha256, md5, size, name, why: str = "") -> DataUnavailableError:
    return DataUnavailableError(
        f"{name} is missing or corrupt at {path} and cannot be downloaded: the directory "
        f"{directory} is not writable{why}.\n"
        f"Fix: set {ENV_VAR} to a writable directory (e.g. export {ENV_VAR}=$HOME/kadam_edu_data) "
        f"or pass root=<writable dir>, and it will be downloaded there; or place a valid copy "
        f"at the path below.\n" + _instructions(url, path, sha256, md5, size, name)
    )


def fetch(
    url: str,
    path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    download: bool = True,
    name: str | None = None,
) -> Path:
    """Return ``path``, downloading ``url`` there first if it is missing or fails verification.

    Verification: ``size`` in bytes and, when given, the ``sha256`` / ``md5`` hex digests.
    A valid existing file is returned untouched (nothing is written, so a read-only
    directory works). A corrupt one is reported with ``warnings.warn`` and replaced.
    The download goes to a temp file in the same directory, is verified, then
    ``os.replace``-d into place (atomic); on any failure the temp file is removed.

    Raises :class:`DataUnavailableError` (with what to download and where) when the
    file is missing or corrupt and ``download=False``, the download fails (offline),
    or the directory is not writable; :class:`ChecksumError` (a subclass) when the
    downloaded bytes do not verify. ``name`` labels the file in messages.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"url must be a non-empty str; got {url!r}")
    path = _as_path("path", path)
    sha256 = _check_hex("sha256", sha256, 64)
    md5 = _check_hex("md5", md5, 32)
    if size is not None:
        size = _check_nonneg_int("size", size, " (bytes) or None")
    download = _check_bool("download", download)
    name = path.name if name is None else str(name)

    problem = None
    if path.is_file():
        problem = _verify_existing(path, sha256, md5, size)
        if problem is None:
            return path
        warnings.warn(
            f"kadam_edu: {path} is corrupt or incomplete ({problem}); "
            + ("downloading it again." if download else "download=False, so not replacing it."),
            stacklevel=2,
        )
    elif path.exists():
        raise DataUnavailableError(
            f"{path} exists but is not a regular file; move it away.\n"
            + _instructions(url, path, sha256, md5, size, name)
        )

    state = f"corrupt ({problem})" if problem else "not found"
    if not download:
        raise DataUnavailableError(
            f"{name} is {state} at {path}, and download=False.\n"
            + _instructions(url, path, sha256, md5, size, name)
        )

    directory = path.parent
    existing = directory  # check before creating anything: the nearest existing ancestor
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not _writable_dir(existing):
        raise _not_writable(existing, url, path, sha256, md5, size, name)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _not_writable(directory, url, path, sha256, md5, size, name, f" ({err})") from err
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    except OSError as err:
        raise _not_writable(directory, url, path, sha256, md5, size, name, f" ({err})") from err

    tmp = Path(tmp_name)
    try:
        hs = hashlib.sha256() if sha256 else None
        hm = hashlib.md5(usedforsecurity=False) if md5 else None
        got_size = 0
        print(f"kadam_edu: downloading {url} -> {path}", file=sys.stderr, flush=True)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    got_size += len(chunk)
                    if hs:
                        hs.update(chunk)
                    if hm:
                        hm.update(chunk)
                out.flush()
                os.fsync(out.fileno())
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise DataUnavailableError(
                f"{name} is {state} at {path}, and downloading it failed "
                f"({type(err).__name__}: {reason}); are you offline?\n"
                + _instructions(url, path, sha256, md5, size, name)
            ) from err
        bad = _mismatch(
            got_size, hs and hs.hexdigest(), hm and hm.hexdigest(), size, sha256, md5
        )
        if bad:
            raise ChecksumError(
                f"the file downloaded from {url} does not verify ({bad}); nothing was kept. "
                f"The download may have been cut short or the upstream file changed.\n"
                + _instructions(url, path, sha256, md5, size, name)
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------- tiny-shakespeare
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
    block_size = _check_pos_int("block_size", block_size)
    batch_size = _check_pos_int("batch_size", batch_size)
    if block_size >= len(tokens):
        raise ValueError(
            f"block_size must be smaller than len(tokens) = {len(tokens)} "
            f"(each block needs a next token); got {block_size}"
        )
    generator = _check_generator(generator)
    device = torch.device(device)
    starts = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator)
    idx = starts[:, None] + torch.arange(block_size)
    src = tokens.cpu()
    x, y = src[idx].long(), src[idx + 1].long()
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


# --------------------------------------------------------------------------- CIFAR-10
@dataclass(repr=False)
class ImageData:
    """An image-classification data set, CIFAR-10 or its synthetic stand-in.

    train_x, test_x: float32 [N, 3, 32, 32], normalised per channel with
    CIFAR10_MEAN / CIFAR10_STD; train_y, test_y: int64 [N] class ids in [0, 10).
    synthetic: True for the stand-in, which is *not* CIFAR-10; description says which.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    synthetic: bool
    description: str

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"{split}_x must be [N, C, H, W] and {split}_y [N] with the same N; "
                    f"got {tuple(x.shape)} and {tuple(y.shape)}"
                )

    @property
    def num_classes(self) -> int:
        """Number of classes (10)."""
        return len(CIFAR10_CLASSES)

    def __repr__(self) -> str:
        return (
            f"ImageData({self.description!r}, train_x={tuple(self.train_x.shape)}, "
            f"test_x={tuple(self.test_x.shape)}, synthetic={self.synthetic})"
        )


def _channel_stats(like: Tensor) -> tuple[Tensor, Tensor]:
    mean = torch.tensor(CIFAR10_MEAN, dtype=like.dtype, device=like.device).view(3, 1, 1)
    std = torch.tensor(CIFAR10_STD, dtype=like.dtype, device=like.device).view(3, 1, 1)
    return mean, std


def normalize(x: Tensor) -> Tensor:
    """uint8 images [N, 3, H, W] (0..255) -> float32, (x/255 - CIFAR10_MEAN) / CIFAR10_STD."""
    if not isinstance(x, Tensor) or x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(
            "x must be a uint8 tensor [N, 3, H, W]; got "
            + (f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else repr(type(x)))
        )
    mean, std = _channel_stats(torch.empty(0, dtype=torch.float32, device=x.device))
    return (x.float().div_(255.0) - mean) / std


def denormalize(x: Tensor) -> Tensor:
    """Inverse of :func:`normalize` up to quantisation: pixels in [0, 1] (for plotting)."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError("x must be a float tensor [..., 3, H, W] of normalised images")
    mean, std = _channel_stats(x)
    return x * std + mean


def cifar10_path(root=None) -> Path:
    """Where CIFAR-10 lives: ``<root>/cifar-10/cifar-10-python.tar.gz``."""
    return _resolve_root(root) / "cifar-10" / "cifar-10-python.tar.gz"


_CIFAR_TRAIN = tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = ("cifar-10-batches-py/test_batch",)


@functools.lru_cache(maxsize=1)
def _cifar_arrays(path: str, size: int, mtime_ns: int) -> dict[str, np.ndarray]:
    """uint8 images [N, 3, 32, 32] and int64 labels from the archive, cached per file."""
    out = {}
    # The archive's md5 was verified by fetch before we unpickle anything from it.
    with tarfile.open(path, "r:gz") as tar:
        for split, members in (("train", _CIFAR_TRAIN), ("test", _CIFAR_TEST)):
            xs, ys = [], []
            for member in members:
                try:
                    f = tar.extractfile(member)
                except KeyError:
                    f = None
                if f is None:
                    raise ValueError(f"{path} is not a CIFAR-10 python archive: no file {member}")
                with f:
                    batch = pickle.load(f, encoding="bytes")
                data = np.asarray(batch[b"data"], dtype=np.uint8)
                labels = np.asarray(batch[b"labels"], dtype=np.int64)
                if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
                    raise ValueError(
                        f"{member} in {path}: expected data uint8 [N, 3072] and N labels; "
                        f"got {data.shape} and {labels.shape}"
                    )
                if labels.size and (labels.min() < 0 or labels.max() > 9):
                    raise ValueError(f"{member} in {path}: labels outside [0, 10)")
                # Each row is 1024 red, then 1024 green, then 1024 blue values, rows of 32.
                xs.append(data.reshape(-1, 3, 32, 32))
                ys.append(labels)
            out[f"{split}_x"] = np.concatenate(xs)
            out[f"{split}_y"] = np.concatenate(ys)
    return out


def load_cifar10(root=None, download: bool = True) -> ImageData:
    """CIFAR-10 (50,000 train / 10,000 test) from the python-pickle archive, no torchvision.

    Downloads and verifies ``cifar-10-python.tar.gz`` (md5, 170 MB) under ``root``
    (default :func:`data_root`) when needed. Images are float32 [N, 3, 32, 32] normalised
    with CIFAR10_MEAN / CIFAR10_STD; labels int64. Raises :class:`DataUnavailableError`
    when the archive cannot be had (see :func:`cifar10_or_standin`).
    """
    path = fetch(
        CIFAR10_URL,
        cifar10_path(root),
        md5=CIFAR10_MD5,
        size=CIFAR10_SIZE,
        download=download,
        name="CIFAR-10",
    )
    st = path.stat()
    arrays = _cifar_arrays(str(path.resolve()), st.st_size, st.st_mtime_ns)
    n_train, n_test = len(arrays["train_y"]), len(arrays["test_y"])
    return ImageData(
        train_x=normalize(torch.from_numpy(arrays["train_x"])),
        train_y=torch.from_numpy(arrays["train_y"].copy()),
        test_x=normalize(torch.from_numpy(arrays["test_x"])),
        test_y=torch.from_numpy(arrays["test_y"].copy()),
        synthetic=False,
        description=f"CIFAR-10 ({n_train:,} train / {n_test:,} test)",
    )


def _check_synthetic_args(n_train, n_test, seed) -> tuple[int, int, int]:
    return (
        _check_pos_int("n_train", n_train, " (number of synthetic training images)"),
        _check_pos_int("n_test", n_test, " (number of synthetic test images)"),
        _check_nonneg_int("seed", seed),
    )


def _smooth_field(n: int, channels: int, grid: int, generator: torch.Generator) -> Tensor:
    """Random low-frequency fields [n, channels, 32, 32]: a grid x grid N(0, 1) upsampled."""
    coarse = torch.randn(n, channels, grid, grid, generator=generator)
    return F.interpolate(coarse, size=(32, 32), mode="bicubic", align_corners=False)


def synthetic_cifar10(n_train: int = 5000, n_test: int = 1000, seed: int = 0) -> ImageData:
    """A SYNTHETIC stand-in for CIFAR-10 (not real data): same shapes, dtypes and normalisation.

    Each of 10 classes has a fixed random template: a low-frequency colour field plus an
    oriented grating (class-specific angle and frequency). A sample is its class template
    with random contrast, grating phase, shift (up to 4 px) and horizontal flip, plus
    low-frequency colour clutter and pixel noise, quantised to uint8 and normalised like
    CIFAR-10. Learnable but not trivial: a nearest-class-mean classifier is far from perfect.
    Classes are balanced; everything is fixed by ``seed``.
    """
    n_train, n_test, seed = _check_synthetic_args(n_train, n_test, seed)
    g = torch.Generator().manual_seed(seed)
    k = len(CIFAR10_CLASSES)
    colour = 0.06 * _smooth_field(k, 3, 4, g)  # [k, 3, 32, 32]
    angle = (torch.arange(k) + torch.rand(k, generator=g)) * (torch.pi / k)
    freq = 0.10 + 0.15 * torch.rand(k, generator=g)  # cycles per pixel
    tint = 0.5 + torch.rand(k, 3, generator=g)  # grating colour per class

    def sample(n: int) -> tuple[Tensor, Tensor]:
        y = torch.arange(n) % k
        y = y[torch.randperm(n, generator=g)]
        yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
        phase = 2 * torch.pi * torch.rand(n, generator=g)
        proj = torch.cos(angle[y])[:, None, None] * xx + torch.sin(angle[y])[:, None, None] * yy
        grating = torch.sin(2 * torch.pi * freq[y][:, None, None] * proj + phase[:, None, None])
        contrast = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
        img = contrast * (colour[y] + 0.065 * tint[y][:, :, None, None] * grating[:, None])
        img = img + 0.20 * _smooth_field(n, 3, 3, g)  # colour clutter shared by no class
        img = augment(img, generator=g, padding=4)  # random flip + shift (zero = grey here)
        img = img + 0.10 * torch.randn(img.shape, generator=g)
        img = img + torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
        img = (img.clamp(0, 1) * 255).round().to(torch.uint8)
        return normalize(img), y

    train_x, train_y = sample(n_train)
    test_x, test_y = sample(n_test)
    return ImageData(
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        synthetic=True,
        description=(
            f"SYNTHETIC stand-in for CIFAR-10 (not real data): {n_train:,} train / {n_test:,} "
            f"test images of 10 random colour-and-texture classes, seed {seed}"
        ),
    )


def cifar10_or_standin(root=None, download: bool = True, **synthetic_kwargs) -> ImageData:
    """Real CIFAR-10 if it can be had; otherwise say so and return :func:`synthetic_cifar10`.

    The fallback is announced with ``warnings.warn`` and a printed notice (so it shows in
    a notebook's output) and is marked ``synthetic=True``. ``synthetic_kwargs``
    (n_train, n_test, seed) go to :func:`synthetic_cifar10` and are checked up front.
    """
    unknown = set(synthetic_kwargs) - {"n_train", "n_test", "seed"}
    if unknown:
        raise TypeError(
            f"cifar10_or_standin got unexpected keyword arguments {sorted(unknown)}; "
            "synthetic_kwargs may be n_train, n_test, seed"
        )
    defaults = {"n_train": 5000, "n_test": 1000, "seed": 0}
    _check_synthetic_args(**{**defaults, **synthetic_kwargs})
    try:
        return load_cifar10(root, download=download)
    except DataUnavailableError as err:
        reason = str(err).splitlines()[0]
        notice = (
            f"CIFAR-10 is not available here ({reason}); using a SYNTHETIC stand-in of the "
            "same shape, not real CIFAR-10"
        )
        warnings.warn(notice, stacklevel=2)
        print(f"NOTE: {notice}.\nTo use the real data:\n{err}", flush=True)
        return synthetic_cifar10(**synthetic_kwargs)


# --------------------------------------------------------------------------- augmentation, batches
def augment(
    x: Tensor, *, generator: torch.Generator, flip: bool = True, crop: bool = True, padding: int = 4
) -> Tensor:
    """Random horizontal flips and random crops with zero padding, per image (vectorised).

    x: [N, C, H, W] float images (any device). Each image is mirrored left-right with
    probability 1/2 (``flip``) and/or shifted by a random crop of its zero-padded copy
    (``crop``, offsets 0..2*padding in each direction; zero is the mean colour for
    normalised images). Randomness comes from the CPU ``generator``. Returns a new tensor.
    """
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise ValueError(
            "x must be a float tensor [N, C, H, W]; got "
            + (f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else repr(type(x)))
        )
    generator = _check_generator(generator)
    flip, crop = _check_bool("flip", flip), _check_bool("crop", crop)
    padding = _check_nonneg_int("padding", padding, " (pixels of zero padding for crop)")
    n, c, h, w = x.shape
    out = x
    if flip:
        flipped = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out = torch.where(flipped[:, None, None, None], out.flip(-1), out)
    if crop and padding > 0:
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        padded = F.pad(out, (padding, padding, padding, padding))
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        rows = rows.expand(n, c, h, w + 2 * padding)
        out = torch.gather(padded, 2, rows)  # [n, c, h, w + 2p]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(n, c, h, w)
        out = torch.gather(out, 3, cols)
    return out.clone() if out is x else out


def image_batches(
    data: ImageData,
    *,
    batch_size: int,
    generator: torch.Generator | None,
    train: bool = True,
    augment_train: bool = True,
) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of ``(x, y)`` batches; the last batch may be smaller.

    ``train=True``: the training split shuffled with ``generator``, augmented with
    :func:`augment` when ``augment_train``. ``train=False``: the test split in order,
    never augmented (``generator`` may be None). Batches stay on the data's device.
    """
    if not isinstance(data, ImageData):
        raise ValueError(f"data must be an ImageData; got {type(data).__name__}")
    batch_size = _check_pos_int("batch_size", batch_size)
    train, augment_train = _check_bool("train", train), _check_bool("augment_train", augment_train)
    if train or generator is not None:
        generator = _check_generator(generator)

    def epoch() -> Iterator[tuple[Tensor, Tensor]]:
        if train:
            x_all, y_all = data.train_x, data.train_y
            order = torch.randperm(len(y_all), generator=generator).to(x_all.device)
        else:
            x_all, y_all = data.test_x, data.test_y
            order = None
        for start in range(0, len(y_all), batch_size):
            if order is None:
                xb, yb = x_all[start : start + batch_size], y_all[start : start + batch_size]
            else:
                idx = order[start : start + batch_size]
                xb, yb = x_all[idx], y_all[idx]
                if augment_train:
                    xb = augment(xb, generator=generator)
            yield xb, yb

    return epoch()
