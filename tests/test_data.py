"""kadam_edu.data: tiny-shakespeare on the real file, fetch, a tiny CIFAR-10 archive, augmentation.

The real tiny-shakespeare file is found via $KADAM_EDU_DATA (CI sets it to ../shared/data).
CIFAR-10 is never downloaded here: tests build a tiny archive in the real format.
"""

import hashlib
import io
import os
import pickle
import shutil
import tarfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from kadam_edu import data
from kadam_edu.data import cifar as data_cifar
from kadam_edu.data import download as data_download
from kadam_edu.data import shakespeare as data_shakespeare
from kadam_edu.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    ChecksumError,
    DataUnavailableError,
    ImageData,
    augment,
    cifar10_or_standin,
    denormalize,
    fetch,
    get_batch,
    image_batches,
    load_cifar10,
    load_shakespeare,
    synthetic_cifar10,
)

REPO = Path(__file__).resolve().parents[1]


def shakespeare_root() -> Path:
    """$KADAM_EDU_DATA, else ../shared/data beside the repo, else the default data root."""
    if os.environ.get("KADAM_EDU_DATA"):
        return Path(os.environ["KADAM_EDU_DATA"])
    shared = REPO.parent / "shared" / "data"
    return shared if (shared / "tinyshakespeare" / "input.txt").is_file() else data.data_root()


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def snapshot(directory: Path) -> dict:
    """Every path under directory with its mtime and size: detects any write."""
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in [directory, *directory.rglob("*")]}


@pytest.fixture
def no_network(monkeypatch):
    """urlopen raises URLError, as offline; records the URLs asked for."""
    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    return calls


@pytest.fixture
def no_writes(monkeypatch):
    """Any attempt to download or create a temp file fails the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("kadam_edu.data tried to write or download")

    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    monkeypatch.setattr(data_download.tempfile, "mkstemp", forbidden)


def read_only(monkeypatch, directory: Path):
    """chmod directory (and its contents) read-only; as root, where chmod does not bind,
    also make kadam_edu see it as unwritable."""
    for p in sorted([directory, *directory.rglob("*")], reverse=True):
        p.chmod(0o555 if p.is_dir() else 0o444)
    if os.access(directory, os.W_OK):  # root
        real = data_download._writable_dir
        monkeypatch.setattr(
            data_download, "_writable_dir", lambda d: False if Path(d).resolve().is_relative_to(directory.resolve()) else real(d)
        )


@pytest.fixture
def restore_perms(tmp_path):
    yield
    for p in [tmp_path, *tmp_path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


# --------------------------------------------------------------------------- tiny-shakespeare
@pytest.fixture(scope="module")
def corpus():
    return load_shakespeare(shakespeare_root())


def test_shakespeare_real_file(corpus):
    text = (shakespeare_root() / "tinyshakespeare" / "input.txt").read_text()
    assert corpus.vocab_size == 65 and len(corpus.chars) == 65
    assert corpus.chars == "".join(sorted(set(text)))
    assert len(corpus.train) == 1_003_854 and len(corpus.val) == 111_540
    assert corpus.train.dtype == corpus.val.dtype == torch.int64
    assert corpus.decode(corpus.train[:200]) == text[:200]
    assert corpus.decode(corpus.val[-200:]) == text[-200:]
    assert corpus.decode(torch.cat([corpus.train, corpus.val])) == text
    s = "First Citizen:\nBefore we proceed any further, hear me speak."
    assert corpus.decode(corpus.encode(s)) == s
    assert corpus.decode(corpus.encode(s).tolist()) == s
    assert "1,003,854" in repr(corpus)


def test_shakespeare_cache_is_cheap_and_isolated(corpus):
    again = load_shakespeare(shakespeare_root())
    assert torch.equal(again.train, corpus.train) and again.chars == corpus.chars
    again.train[:10] = 0  # a caller editing its copy must not change later loads
    assert torch.equal(load_shakespeare(shakespeare_root()).train[:10], corpus.train[:10])
    assert data_shakespeare._char_tokens.cache_info().hits >= 2


def test_get_batch_shapes_shift_and_seed(corpus):
    x, y = get_batch(corpus.train, block_size=64, batch_size=8, generator=gen(1))
    assert x.shape == y.shape == (8, 64) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:])
    x2, y2 = get_batch(corpus.train, block_size=64, batch_size=8, generator=gen(1))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = get_batch(corpus.train, block_size=64, batch_size=8, generator=gen(2))
    assert not torch.equal(x, x3)


def test_get_batch_blocks_are_contiguous_and_in_range():
    tokens = torch.arange(10)  # block 9 leaves exactly one start position
    x, y = get_batch(tokens, block_size=9, batch_size=3, generator=gen())
    assert torch.equal(x, torch.arange(9).expand(3, 9)) and torch.equal(y, x + 1)
    tokens = torch.arange(1000)
    x, y = get_batch(tokens, block_size=16, batch_size=256, generator=gen())
    assert torch.equal(x, x[:, :1] + torch.arange(16)) and torch.equal(y, x + 1)
    assert int(y.max()) <= 999 and len(set(x[:, 0].tolist())) > 100


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(block_size=0), "block_size must be a positive int"),
        (dict(block_size=2.5), "block_size must be a positive int"),
        (dict(block_size=True), "block_size must be a positive int"),
        (dict(block_size=100), "smaller than len"),
        (dict(batch_size=-1), "batch_size must be a positive int"),
        (dict(generator=None), "generator must be a seeded CPU torch.Generator"),
        (dict(generator=0), "generator must be a seeded CPU torch.Generator"),
        (dict(tokens=torch.rand(100)), "1-D integer tensor"),
        (dict(tokens=torch.zeros(2, 50, dtype=torch.long)), "1-D integer tensor"),
        (dict(tokens=[1, 2, 3]), "1-D integer tensor"),
    ],
)
def test_get_batch_bad_inputs(kwargs, match):
    args = dict(tokens=torch.arange(100), block_size=8, batch_size=4, generator=gen())
    args.update(kwargs)
    tokens = args.pop("tokens")
    with pytest.raises(ValueError, match=match):
        get_batch(tokens, **args)


def test_encode_decode_bad_inputs(corpus):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        corpus.encode("café")
    with pytest.raises(ValueError, match="must be a str"):
        corpus.encode(b"abc")
    with pytest.raises(ValueError, match=r"\[0, 65\)"):
        corpus.decode([0, 65])
    with pytest.raises(ValueError, match="1-D"):
        corpus.decode(torch.zeros(2, 2, dtype=torch.long))


def test_shared_read_only_root_is_never_written(no_writes):
    root = shakespeare_root()
    before = snapshot(root)
    assert load_shakespeare(root, download=True).vocab_size == 65
    assert snapshot(root) == before


def test_read_only_copy_works(tmp_path, monkeypatch, no_writes, restore_perms):
    root = tmp_path / "ro"
    (root / "tinyshakespeare").mkdir(parents=True)
    shutil.copy(shakespeare_root() / "tinyshakespeare" / "input.txt", root / "tinyshakespeare")
    read_only(monkeypatch, root)
    monkeypatch.setenv("KADAM_EDU_DATA", str(root))
    before = snapshot(root)
    corpus = load_shakespeare()  # via the environment variable
    assert corpus.vocab_size == 65 and len(corpus.val) == 111_540
    assert snapshot(root) == before


def test_read_only_root_missing_file_says_not_writable(tmp_path, monkeypatch, no_network, restore_perms):
    root = tmp_path / "ro"
    root.mkdir()
    read_only(monkeypatch, root)
    with pytest.raises(DataUnavailableError) as info:
        load_shakespeare(root)
    msg = str(info.value)
    assert "not writable" in msg and str(root) in msg and "KADAM_EDU_DATA" in msg
    assert data.SHAKESPEARE_URL in msg and data.SHAKESPEARE_SHA256 in msg
    assert str(root / "tinyshakespeare" / "input.txt") in msg
    assert no_network == [] and list(root.iterdir()) == []  # nothing created


def test_read_only_root_corrupt_file(tmp_path, monkeypatch, no_network, restore_perms):
    root = tmp_path / "ro"
    (root / "tinyshakespeare").mkdir(parents=True)
    (root / "tinyshakespeare" / "input.txt").write_text("not shakespeare")
    read_only(monkeypatch, root)
    with pytest.warns(UserWarning, match="corrupt"), pytest.raises(DataUnavailableError, match="not writable"):
        load_shakespeare(root)
    assert (root / "tinyshakespeare" / "input.txt").read_text() == "not shakespeare"


def test_download_false_missing(tmp_path, no_network):
    with pytest.raises(DataUnavailableError, match="download=False") as info:
        load_shakespeare(tmp_path, download=False)
    assert data.SHAKESPEARE_URL in str(info.value) and no_network == []
    assert list(tmp_path.iterdir()) == []


def test_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("KADAM_EDU_DATA", str(tmp_path / "d"))
    assert data.data_root() == tmp_path / "d"
    assert data.shakespeare_path() == tmp_path / "d" / "tinyshakespeare" / "input.txt"
    assert data.cifar10_path("/x") == Path("/x/cifar-10/cifar-10-python.tar.gz")
    monkeypatch.delenv("KADAM_EDU_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.data_root() == tmp_path / "xdg" / "kadam_edu"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.data_root() == tmp_path / "home" / ".cache" / "kadam_edu"
    assert not (tmp_path / "home").exists()  # nothing is created
    with pytest.raises(ValueError, match="root must be"):
        load_shakespeare(root=123)


# --------------------------------------------------------------------------- fetch
@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src" / "payload.bin"
    src.parent.mkdir()
    src.write_bytes(np.random.default_rng(0).bytes(300_000))
    raw = src.read_bytes()
    return dict(
        url=src.as_uri(),
        raw=raw,
        sha256=hashlib.sha256(raw).hexdigest(),
        md5=hashlib.md5(raw).hexdigest(),
        size=len(raw),
    )


def test_fetch_downloads_verifies_atomically(tmp_path, source):
    dest = tmp_path / "root" / "sub" / "payload.bin"
    got = fetch(source["url"], dest, sha256=source["sha256"], md5=source["md5"], size=source["size"])
    assert got == dest and dest.read_bytes() == source["raw"]
    assert [p.name for p in dest.parent.iterdir()] == ["payload.bin"]  # no temp file left
    mtime = dest.stat().st_mtime_ns
    fetch(source["url"], dest, sha256=source["sha256"], size=source["size"])  # valid: untouched
    assert dest.stat().st_mtime_ns == mtime


def test_fetch_valid_file_needs_no_network(tmp_path, source, no_writes):
    dest = tmp_path / "payload.bin"
    dest.write_bytes(source["raw"])
    assert fetch("https://example.invalid/x", dest, md5=source["md5"]) == dest


def test_fetch_replaces_corrupt_file(tmp_path, source):
    dest = tmp_path / "payload.bin"
    dest.write_bytes(b"x" + source["raw"][1:])  # same size, wrong content
    with pytest.warns(UserWarning) as record:
        fetch(source["url"], dest, sha256=source["sha256"], size=source["size"])
    msg = str(record[0].message)
    assert str(dest) in msg and source["sha256"] in msg and "got" in msg
    assert dest.read_bytes() == source["raw"]
    assert [p.name for p in tmp_path.iterdir() if p.name != "src"] == ["payload.bin"]


def test_fetch_truncated_file_is_corrupt(tmp_path, source):
    dest = tmp_path / "payload.bin"
    dest.write_bytes(source["raw"][:1000])
    with pytest.warns(UserWarning, match="size: expected 300,000 bytes, got 1,000"):
        fetch(source["url"], dest, size=source["size"], md5=source["md5"])
    assert dest.read_bytes() == source["raw"]


def test_fetch_checksum_mismatch_keeps_nothing(tmp_path, source):
    dest = tmp_path / "out" / "payload.bin"
    with pytest.raises(ChecksumError, match="does not verify") as info:
        fetch(source["url"], dest, sha256="0" * 64)
    assert isinstance(info.value, DataUnavailableError)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    with pytest.raises(ChecksumError, match="size"):
        fetch(source["url"], dest, md5=source["md5"], size=source["size"] + 1)
    assert list(dest.parent.iterdir()) == []


def test_fetch_offline(tmp_path, no_network):
    url = "https://example.org/data/payload.bin"
    dest = tmp_path / "root" / "payload.bin"
    with pytest.raises(DataUnavailableError) as info:
        fetch(url, dest, sha256="ab" * 32, size=1234)
    msg = str(info.value)
    assert url in msg and str(dest) in msg and "KADAM_EDU_DATA" in msg
    assert "ab" * 32 in msg and "1,234 bytes" in msg
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, FileNotFoundError)
    assert no_network == [url] and list(dest.parent.iterdir()) == []


def test_fetch_failure_midway_removes_temp(tmp_path, monkeypatch):
    class Broken(io.BytesIO):
        def read(self, n=-1):
            if self.tell() > 0:
                raise ConnectionResetError("connection lost")
            return super().read(10)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Broken(b"0123456789" * 10))
    with pytest.raises(DataUnavailableError, match="connection lost"):
        fetch("https://example.org/f", tmp_path / "f", size=100)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(url=""), "url must be a non-empty str"),
        (dict(path=None), "path must be"),
        (dict(sha256="abc"), "sha256 must be None or a 64-character hex digest"),
        (dict(md5="z" * 32), "md5 must be None or a 32-character hex digest"),
        (dict(size=-1), r"size must be None or a non-negative int \(bytes\); got -1"),
        (dict(download="yes"), "download must be True or False"),
    ],
)
def test_fetch_bad_inputs(tmp_path, kwargs, match):
    args = dict(url="file:///nonexistent", path=tmp_path / "f")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fetch(args.pop("url"), args.pop("path"), **args)


# --------------------------------------------------------------------------- CIFAR-10
def make_cifar_archive(path: Path, n: int = 20, seed: int = 0) -> dict:
    """A tiny archive in the real format: 5 train batches and a test batch of n images each."""
    rng = np.random.default_rng(seed)
    batches = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {
                b"batch_label": name.encode(),
                b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                b"labels": rng.integers(0, 10, size=n).tolist(),
            }
            payload = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
            batches[name] = batch
    raw = path.read_bytes()
    return dict(batches=batches, md5=hashlib.md5(raw).hexdigest(), size=len(raw))


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    root = tmp_path / "root"
    archive = make_cifar_archive(root / "cifar-10" / "cifar-10-python.tar.gz")
    monkeypatch.setattr(data_cifar, "CIFAR10_MD5", archive["md5"])
    monkeypatch.setattr(data_cifar, "CIFAR10_SIZE", archive["size"])
    return dict(root=root, **archive)


def test_load_tiny_cifar(tiny_cifar, no_writes):
    d = load_cifar10(tiny_cifar["root"])
    b = tiny_cifar["batches"]
    assert d.train_x.shape == (100, 3, 32, 32) and d.test_x.shape == (20, 3, 32, 32)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert not d.synthetic and d.description == "CIFAR-10 (100 train / 20 test)"
    train_y = sum((b[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert d.train_y.tolist() == train_y and d.test_y.tolist() == b["test_batch"][b"labels"]
    row = b["data_batch_1"][b"data"][0]
    pixels = denormalize(d.train_x) * 255
    # R plane first, then G, then B; each plane row-major with rows of 32.
    assert pixels[0, 0, 0, 0].item() == pytest.approx(row[0], abs=1e-3)
    assert pixels[0, 0, 0, 1].item() == pytest.approx(row[1], abs=1e-3)
    assert pixels[0, 0, 1, 0].item() == pytest.approx(row[32], abs=1e-3)
    assert pixels[0, 1, 0, 0].item() == pytest.approx(row[1024], abs=1e-3)
    assert pixels[0, 2, 31, 31].item() == pytest.approx(row[3071], abs=1e-3)
    all_train = np.concatenate([b[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    assert np.array_equal(pixels.round().to(torch.uint8).numpy(), all_train.reshape(100, 3, 32, 32))
    test_pixels = (denormalize(d.test_x) * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(test_pixels, b["test_batch"][b"data"].reshape(20, 3, 32, 32))
    expected = (torch.from_numpy(all_train[:1].reshape(1, 3, 32, 32)).float() / 255
                - torch.tensor(CIFAR10_MEAN).view(3, 1, 1)) / torch.tensor(CIFAR10_STD).view(3, 1, 1)
    assert torch.allclose(d.train_x[:1], expected, atol=1e-6)


def test_cifar_downloads_via_fetch(tmp_path, tiny_cifar, monkeypatch):
    src = tiny_cifar["root"] / "cifar-10" / "cifar-10-python.tar.gz"
    monkeypatch.setattr(data_cifar, "CIFAR10_URL", src.as_uri())
    root = tmp_path / "fresh"
    d = load_cifar10(root)
    assert d.train_x.shape == (100, 3, 32, 32)
    assert (root / "cifar-10" / "cifar-10-python.tar.gz").read_bytes() == src.read_bytes()
    assert [p.name for p in (root / "cifar-10").iterdir()] == ["cifar-10-python.tar.gz"]


def test_cifar_corrupt_archive_detected(tiny_cifar, no_network):
    path = tiny_cifar["root"] / "cifar-10" / "cifar-10-python.tar.gz"
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match=f"corrupt.*md5: expected {tiny_cifar['md5']}"):
        with pytest.raises(DataUnavailableError, match="downloading it failed"):
            load_cifar10(tiny_cifar["root"])
    assert no_network == [data.CIFAR10_URL]


def test_cifar_offline_message(tmp_path, no_network):
    with pytest.raises(DataUnavailableError) as info:
        load_cifar10(tmp_path)
    msg = str(info.value)
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg
    assert "c58f30108f718f92721af3b95e74349a" in msg and "170,498,071 bytes" in msg
    assert str(tmp_path / "cifar-10" / "cifar-10-python.tar.gz") in msg and "KADAM_EDU_DATA" in msg


def test_cifar10_or_standin_falls_back(tmp_path, no_network, capsys):
    with pytest.warns(UserWarning, match="SYNTHETIC stand-in of the same shape, not real CIFAR-10"):
        d = cifar10_or_standin(tmp_path, n_train=40, n_test=20, seed=3)
    assert d.synthetic and d.description.startswith("SYNTHETIC") and "not real data" in d.description
    assert d.train_x.shape == (40, 3, 32, 32) and d.test_x.shape == (20, 3, 32, 32)
    out = capsys.readouterr().out
    assert "CIFAR-10 is not available here" in out and "cifar-10-python.tar.gz" in out


def test_cifar10_or_standin_prefers_real(tiny_cifar):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = cifar10_or_standin(tiny_cifar["root"], n_train=40)
    assert not d.synthetic and d.train_x.shape == (100, 3, 32, 32)
    with pytest.raises(TypeError, match="n_trian"):
        cifar10_or_standin(tiny_cifar["root"], n_trian=40)
    with pytest.raises(ValueError, match="n_train must be a positive int"):
        cifar10_or_standin(tiny_cifar["root"], n_train=0)


def test_synthetic_cifar10():
    d = synthetic_cifar10(n_train=2000, n_test=500, seed=0)
    assert isinstance(d, ImageData) and d.synthetic and d.description.startswith("SYNTHETIC")
    assert d.train_x.shape == (2000, 3, 32, 32) and d.test_x.shape == (500, 3, 32, 32)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert torch.bincount(d.train_y, minlength=10).tolist() == [200] * 10
    # Normalized like CIFAR-10: pixels are uint8 levels, channel statistics near (0, 1).
    pixels = denormalize(d.train_x) * 255
    assert torch.allclose(pixels, pixels.round(), atol=1e-3) and pixels.min() >= -1e-3
    assert d.train_x.mean().abs() < 0.2 and 0.5 < d.train_x.std() < 1.5
    # Learnable but not trivial: nearest class mean is well above chance and far from perfect.
    means = torch.stack([d.train_x[d.train_y == c].mean(0) for c in range(10)]).flatten(1)
    acc = (torch.cdist(d.test_x.flatten(1), means).argmin(1) == d.test_y).float().mean().item()
    assert 0.2 < acc < 0.8, acc
    again = synthetic_cifar10(n_train=2000, n_test=500, seed=0)
    assert torch.equal(again.train_x, d.train_x) and torch.equal(again.test_y, d.test_y)
    other = synthetic_cifar10(n_train=2000, n_test=500, seed=1)
    assert not torch.equal(other.train_x, d.train_x)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(n_train=0), "n_train"), (dict(n_test=1.5), "n_test"), (dict(seed=-1), "seed")],
)
def test_synthetic_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic_cifar10(**kwargs)


# --------------------------------------------------------------------------- augmentation, batches
@pytest.fixture
def images():
    return torch.rand(64, 3, 8, 8, generator=gen(5)) + 1.0  # no zeros: padding is recognisable


def test_augment_shapes_and_determinism(images):
    x = images.clone()
    out = augment(x, generator=gen(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, images)  # input untouched
    assert torch.equal(out, augment(x, generator=gen(0)))
    assert not torch.equal(out, augment(x, generator=gen(1)))
    ident = augment(x, generator=gen(0), flip=False, crop=False)
    assert torch.equal(ident, x) and ident is not x
    assert torch.equal(augment(x, generator=gen(0), flip=False, padding=0), x)


def test_augment_flip_is_exact_mirror(images):
    out = augment(images, generator=gen(0), crop=False)
    mirrored = torch.tensor([torch.equal(o, x.flip(-1)) for o, x in zip(out, images)])
    same = torch.tensor([torch.equal(o, x) for o, x in zip(out, images)])
    assert bool((mirrored | same).all()) and 10 < int(mirrored.sum()) < 54


def test_augment_crop_is_zero_padded_shift(images):
    p = 2
    out = augment(images, generator=gen(0), flip=False, padding=p)
    padded = torch.nn.functional.pad(images, (p, p, p, p))
    offsets = set()
    for i in range(len(images)):
        matches = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8])
        ]
        assert len(matches) == 1, i
        offsets.add(matches[0])
    assert len(offsets) > 10  # offsets vary per image


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x=torch.rand(3, 8, 8)), r"x must be a float tensor \[N, C, H, W\]"),
        (dict(x=torch.zeros(1, 3, 8, 8, dtype=torch.uint8)), "x must be a float tensor"),
        (dict(padding=-1), "padding must be a non-negative int"),
        (dict(flip=1), "flip must be True or False"),
        (dict(generator=None), "generator must be a seeded CPU torch.Generator"),
    ],
)
def test_augment_bad_inputs(kwargs, match):
    args = dict(x=torch.rand(2, 3, 8, 8), generator=gen())
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        augment(args.pop("x"), **args)


def tagged_data(n_train=23, n_test=7):
    """ImageData whose images carry their own index, to follow them through batching."""
    def split(n):
        x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 32, 32).clone()
        return x, torch.arange(n) % 10
    (tx, ty), (vx, vy) = split(n_train), split(n_test)
    return ImageData(tx, ty, vx, vy, synthetic=True, description="SYNTHETIC test data")


def test_image_batches_train_epoch():
    d = tagged_data()
    batches = list(image_batches(d, batch_size=5, generator=gen(0), augment_train=False))
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    order = torch.cat([x[:, 0, 0, 0] for x, _ in batches]).long()
    assert sorted(order.tolist()) == list(range(23)) and order.tolist() != list(range(23))
    assert torch.equal(torch.cat([y for _, y in batches]), order % 10)
    again = list(image_batches(d, batch_size=5, generator=gen(0), augment_train=False))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    aug = list(image_batches(d, batch_size=5, generator=gen(0)))
    assert torch.equal(torch.cat([y for _, y in aug]), torch.cat([y for _, y in batches]))
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(aug, batches))  # augmented


def test_image_batches_test_in_order():
    d = tagged_data()
    batches = list(image_batches(d, batch_size=4, generator=None, train=False))
    assert [len(y) for _, y in batches] == [4, 3]
    assert torch.equal(torch.cat([x for x, _ in batches]), d.test_x)  # in order, not augmented
    assert torch.equal(torch.cat([y for _, y in batches]), d.test_y)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size must be a positive int"),
        (dict(generator=None), "generator must be a seeded CPU torch.Generator"),
        (dict(data="cifar"), "data must be an ImageData"),
        (dict(train="no"), "train must be True or False"),
    ],
)
def test_image_batches_bad_inputs(kwargs, match):
    args = dict(data=tagged_data(), batch_size=4, generator=gen())
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        image_batches(args.pop("data"), **args)  # raised at the call, not at the first next()


# --------------------------------------------------------------------------- the package
def test_the_package_re_exports_every_public_name_of_its_modules():
    """``kadam_edu.data.X`` and ``from kadam_edu.data import X`` keep working for every name the
    three modules define (the same objects, so a patch of the defining module is what callers see)."""
    for module in (data_download, data_shakespeare, data_cifar):
        for name in module.__all__:
            assert getattr(data, name) is getattr(module, name), name
    assert sorted(data.__all__) == sorted(data_shakespeare.__all__ + data_cifar.__all__ + [
        n for n in data_download.__all__ if n != "ENV_VAR"])
    assert data.ENV_VAR == "KADAM_EDU_DATA"
