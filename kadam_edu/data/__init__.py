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

Modules: :mod:`~kadam_edu.data.download` (the data root, :func:`fetch`),
:mod:`~kadam_edu.data.shakespeare` (tiny-shakespeare, :func:`get_batch`) and
:mod:`~kadam_edu.data.cifar` (CIFAR-10, the stand-in, :func:`augment`, :func:`image_batches`);
every public name is also here, as ``kadam_edu.data.<name>``.
"""

from kadam_edu.data.cifar import (
    CIFAR10_CLASSES,
    CIFAR10_MD5,
    CIFAR10_MEAN,
    CIFAR10_SIZE,
    CIFAR10_STD,
    CIFAR10_URL,
    ImageData,
    augment,
    cifar10_or_standin,
    cifar10_path,
    denormalize,
    image_batches,
    load_cifar10,
    normalize,
    synthetic_cifar10,
)
from kadam_edu.data.download import ENV_VAR, ChecksumError, DataUnavailableError, data_root, fetch
from kadam_edu.data.shakespeare import (
    SHAKESPEARE_SHA256,
    SHAKESPEARE_SIZE,
    SHAKESPEARE_URL,
    CharCorpus,
    get_batch,
    load_shakespeare,
    shakespeare_path,
)

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
