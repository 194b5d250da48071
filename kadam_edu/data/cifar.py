"""CIFAR-10 from its python-pickle archive (no torchvision), a synthetic stand-in, augmentation, batches.

``<root>/cifar-10/cifar-10-python.tar.gz`` under the data root
(:func:`kadam_edu.data.data_root`): 170,498,071 bytes with a known md5. Where CIFAR-10 cannot
be had, :func:`cifar10_or_standin` says so and returns a clearly labelled synthetic stand-in of
the same shape (``synthetic=True``).
"""

from __future__ import annotations

import functools
import pickle
import tarfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kadam_edu import validate
from kadam_edu.data.download import DataUnavailableError, _resolve_root, fetch

__all__ = [
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


# --------------------------------------------------------------------------- CIFAR-10
@dataclass(repr=False)
class ImageData:
    """An image-classification data set, CIFAR-10 or its synthetic stand-in.

    train_x, test_x: float32 [N, 3, 32, 32], normalized per channel with
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
        raise ValueError("x must be a float tensor [..., 3, H, W] of normalized images")
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
    (default :func:`data_root`) when needed. Images are float32 [N, 3, 32, 32] normalized
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
    """The arguments of :func:`synthetic_cifar10` (also checked up front by :func:`cifar10_or_standin`)."""
    return (
        validate.positive_int("n_train", n_train, meaning="number of synthetic training images"),
        validate.positive_int("n_test", n_test, meaning="number of synthetic test images"),
        validate.seed("seed", seed),
    )


def _smooth_field(n: int, channels: int, grid: int, generator: torch.Generator) -> Tensor:
    """Random low-frequency fields [n, channels, 32, 32]: a grid x grid N(0, 1) upsampled."""
    coarse = torch.randn(n, channels, grid, grid, generator=generator)
    return F.interpolate(coarse, size=(32, 32), mode="bicubic", align_corners=False)


def synthetic_cifar10(n_train: int = 5000, n_test: int = 1000, seed: int = 0) -> ImageData:
    """A SYNTHETIC stand-in for CIFAR-10 (not real data): same shapes, dtypes and normalization.

    Each of 10 classes has a fixed random template: a low-frequency colour field plus an
    oriented grating (class-specific angle and frequency). A sample is its class template
    with random contrast, grating phase, shift (up to 4 px) and horizontal flip, plus
    low-frequency colour clutter and pixel noise, quantised to uint8 and normalized like
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
    normalized images). Randomness comes from the CPU ``generator``. Returns a new tensor.
    """
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise ValueError(
            "x must be a float tensor [N, C, H, W]; got "
            + (f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else repr(type(x)))
        )
    generator = validate.generator("generator", generator, cpu=True)
    flip, crop = validate.boolean("flip", flip), validate.boolean("crop", crop)
    padding = validate.integer("padding", padding, lo=0, meaning="pixels of zero padding for crop")
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
    batch_size = validate.positive_int("batch_size", batch_size)
    train, augment_train = validate.boolean("train", train), validate.boolean("augment_train", augment_train)
    if train or generator is not None:
        generator = validate.generator("generator", generator, cpu=True)

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
