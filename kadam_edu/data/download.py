"""The data root, checksums and atomic, verified downloads (:func:`fetch`).

Files live under the *data root* (:func:`data_root`): ``$KADAM_EDU_DATA`` when set, otherwise
a per-user cache directory (``$XDG_CACHE_HOME/kadam_edu`` or ``~/.cache/kadam_edu``).
:func:`fetch` downloads a file once, verifies its checksum and size, writes it atomically
(temp file + ``os.replace``), detects and replaces a corrupt copy, and never writes when the
file on disk is already valid (a read-only root works). Offline without the file it raises
:class:`DataUnavailableError` saying what to download and where to put it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from kadam_edu import validate

__all__ = ["ENV_VAR", "DataUnavailableError", "ChecksumError", "data_root", "fetch"]

#: The environment variable naming the data root.
ENV_VAR = "KADAM_EDU_DATA"

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
#: fetch's expected size: None (not checked) or a number of bytes
_SIZE = validate.Optional(validate.Int(0, meaning="bytes"))


def _check_hex(name: str, value, length: int) -> str | None:
    """None, or a hex digest of ``length`` characters (returned in lower case)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != length or any(
        c not in "0123456789abcdefABCDEF" for c in value
    ):
        raise ValueError(f"{name} must be None or a {length}-character hex digest; got {value!r}")
    return value.lower()


def _as_path(name: str, value) -> Path:
    """A non-empty str or os.PathLike as a Path, ``~`` expanded."""
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
    size = _SIZE("size", size)
    download = validate.boolean("download", download)
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
