"""open_trace(path) -> Trace: sniff the file's format by its bytes, not its name, and pick the reader.

Formats: Nsight Systems SQLite exports (plain, .xz, .gz), .nsys-rep/.qdrep reports (exported with nsys first),
PyTorch profiler (Kineto) Chrome-trace JSON (plain or .gz). A new format is one new module here plus one line below.
Inputs are never modified: compressed files are expanded into a cache folder, SQLite is opened read-only.
"""
from __future__ import annotations

import errno
import gzip
import importlib
import lzma
import os
import pathlib
import shutil
import zlib

from ..errors import BadInput
from ..model.trace import Trace

SQLITE_MAGIC = b"SQLite format 3\x00"
XZ_MAGIC = b"\xfd7zXZ\x00"
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"   # none of ours, named so the message can say so
QDREP_SUFFIXES = (".nsys-rep", ".qdrep")
EXPANDED = (".unxz", ".ungz")      # suffixes of the cache's expanded copies
# The cache must never fill the disk: expanding stops while less than this would stay free (a decompression bomb,
# or a 10 GB export on a small disk), and once the cache holds more than CACHE_MAX_BYTES of expanded copies the
# least recently used go. launch_bound x40 expands to 0.9 GB; the largest export in ../shared/external to 0.3 GB.
MIN_FREE_BYTES = 2 << 30
CACHE_MAX_BYTES = 32 << 30
CHECK_EVERY = 64 << 20     # bytes written between two looks at the free space


def cache_dir() -> pathlib.Path:
    base = os.environ.get("NSYS_DOCTOR_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "nsys-doctor")
    path = pathlib.Path(base)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    import tempfile     # only for compressed inputs and reports
    path = pathlib.Path(tempfile.gettempdir()) / f"nsys-doctor-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _head(path: pathlib.Path, n: int = 64) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _expand(path: pathlib.Path, opener, suffix: str) -> pathlib.Path:
    """Decompress once into the cache, keyed by the file's identity; reused while the source is unchanged."""
    st = path.stat()
    import hashlib      # only compressed inputs need it
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]
    cache = cache_dir()
    out = cache / f"{key}{suffix}"
    if out.exists():
        os.utime(out)       # recently used: the last to be evicted
        return out
    tmp = out.with_name(out.name + f".part{os.getpid()}")
    try:
        with opener(path) as src, open(tmp, "wb") as dst:
            written, next_check = 0, 0
            while chunk := src.read(1 << 22):
                if written >= next_check:
                    if shutil.disk_usage(cache).free < MIN_FREE_BYTES + len(chunk):
                        raise _NoRoom(written)
                    next_check = written + CHECK_EVERY
                dst.write(chunk)
                written += len(chunk)
        os.replace(tmp, out)
    except _NoRoom as err:
        tmp.unlink(missing_ok=True)
        raise BadInput(path, f"expanding it would leave less than {MIN_FREE_BYTES >> 30} GiB free in {cache} "
                             f"({err.written / 2**30:.1f} GiB expanded so far); free some space or set "
                             "NSYS_DOCTOR_CACHE to a folder on a larger disk")
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno == errno.ENOSPC:
            raise BadInput(path, f"no space left in {cache} to expand it; free some space or set NSYS_DOCTOR_CACHE "
                                 "to a folder on a larger disk")
        raise BadInput(path, f"compressed file is truncated or corrupt ({err})")
    except (lzma.LZMAError, gzip.BadGzipFile, EOFError, zlib.error) as err:
        tmp.unlink(missing_ok=True)
        raise BadInput(path, f"compressed file is truncated or corrupt ({err})")
    _evict(cache, keep=out)
    return out


class _NoRoom(Exception):
    def __init__(self, written: int):
        self.written = written


def _evict(cache: pathlib.Path, keep: pathlib.Path) -> None:
    """Remove the least recently used expanded copies until they hold CACHE_MAX_BYTES or less (never `keep`)."""
    try:
        entries = [(e.stat().st_mtime, e.stat().st_size, e) for e in cache.iterdir()
                   if e.suffix in EXPANDED and e.is_file()]
    except OSError:
        return
    total = sum(size for _, size, _ in entries)
    for _, size, e in sorted(entries, key=lambda x: x[0]):
        if total <= CACHE_MAX_BYTES:
            break
        if e == keep:
            continue
        try:
            e.unlink()
            total -= size
        except OSError:
            pass        # in use or gone: another run's business


def sniff(path: pathlib.Path) -> tuple[str, pathlib.Path]:
    """-> (format, path of the uncompressed file). Formats: 'sqlite', 'nsys-rep', 'json'."""
    head = _head(path)
    if head.startswith(XZ_MAGIC):
        return sniff_inner(path, _expand(path, lzma.open, ".unxz"))
    if head.startswith(GZIP_MAGIC):
        return sniff_inner(path, _expand(path, gzip.open, ".ungz"))
    return sniff_inner(path, path)


def sniff_inner(original: pathlib.Path, path: pathlib.Path) -> tuple[str, pathlib.Path]:
    head = _head(path)
    if head.startswith(SQLITE_MAGIC):
        return "sqlite", path
    if original.suffix.lower() in QDREP_SUFFIXES or original.name.lower().endswith(
            tuple(s + ".gz" for s in QDREP_SUFFIXES)):
        return "nsys-rep", path
    if head.lstrip()[:1] in (b"{", b"["):
        return "json", path
    if not head:
        raise BadInput(original, "file is empty")
    if head.startswith(ZIP_MAGIC):
        raise BadInput(original, "a zip archive, not a profile; unpack it and pass the .sqlite, .nsys-rep or .json")
    raise BadInput(original, "not a profile: expected an Nsight Systems .sqlite export (or .xz/.gz of one), "
                             "an .nsys-rep/.qdrep report, or a PyTorch profiler .json trace")


READERS = {"sqlite": "nsys_sqlite", "nsys-rep": "nsys_rep", "json": "kineto_json"}


def require_file(path: str | os.PathLike, what: str = "profile") -> pathlib.Path:
    """`path` as a Path when it is a regular file; else the one error that says what it is instead. Every input
    (profile, saved report, baseline, config) goes through here before it is opened."""
    p = pathlib.Path(path)
    if not p.exists():
        raise BadInput(p, "no such file")
    if p.is_dir():
        raise BadInput(p, f"is a folder; pass a {what} file")
    if not p.is_file():     # a pipe (<(xzcat ...)) would block the first read forever; a device is no profile
        raise BadInput(p, f"not a regular file (a pipe or a device); save the {what} to a file and pass that")
    return p


def open_trace(path: str | os.PathLike) -> Trace:
    p = require_file(path)
    try:
        fmt, real = sniff(p)
    except PermissionError:
        raise BadInput(p, "permission denied")
    except OSError as err:
        raise BadInput(p, f"cannot be read ({err.strerror or err})")
    try:
        reader = importlib.import_module(f"{__name__}.{READERS[fmt]}")
    except ModuleNotFoundError:
        raise BadInput(p, f"{fmt} input is not supported by this build")
    return reader.read(str(real), display_path=str(p))
