"""open_trace(path) -> Trace: sniff the file's format by its bytes, not its name, and pick the reader.

Formats: Nsight Systems SQLite exports (plain, .xz, .gz), .nsys-rep/.qdrep reports (exported with nsys first),
PyTorch profiler (Kineto) Chrome-trace JSON (plain or .gz). A new format is one new module here plus one line below.
Inputs are never modified: compressed files are expanded into the cache folder (read/cache.py), SQLite is opened
read-only.
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
# The cache must never fill the disk: expanding stops while less than this would stay free (a decompression bomb,
# or a 10 GB export on a small disk). The cache's own size cap is read/cache.py CACHE_MAX_BYTES.
MIN_FREE_BYTES = 2 << 30
CHECK_EVERY = 64 << 20     # bytes written between two looks at the free space
CHUNK = 1 << 22            # bytes expanded per read; the first chunk's head is checked before anything is written


def _head(path: pathlib.Path, n: int = 64) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


class _XzStreams:
    """Reads every stream of an .xz file, skipping the stream padding (null bytes) the format allows between and
    after streams (`xz` accepts it; Python's lzma.open rejects padding as a truncated file)."""

    def __init__(self, path):
        self._f = open(path, "rb")
        self._d = lzma.LZMADecompressor(lzma.FORMAT_XZ)
        self._pending = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def read(self, n: int) -> bytes:
        while True:
            if self._d.eof:         # a stream ended: padding, then maybe another stream
                self._pending = (self._d.unused_data + self._pending).lstrip(b"\0")
                while not self._pending:
                    more = self._f.read(1 << 16)
                    if not more:
                        return b""
                    self._pending = more.lstrip(b"\0")
                self._d = lzma.LZMADecompressor(lzma.FORMAT_XZ)
            if not self._pending and self._d.needs_input:
                self._pending = self._f.read(1 << 16)
                if not self._pending:
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
            out = self._d.decompress(self._pending, max_length=n)
            self._pending = b""
            if out:
                return out


def _looks_like_a_profile(head: bytes, original: pathlib.Path) -> bool:
    if head.startswith(SQLITE_MAGIC) or head.lstrip()[:1] in (b"{", b"["):
        return True
    return original.name.lower().endswith(tuple(s + ".gz" for s in QDREP_SUFFIXES))


def _expand(path: pathlib.Path, opener, suffix: str) -> pathlib.Path:
    """Decompress once into the cache, keyed by the file's identity; reused while the source is unchanged and the
    copy is still whole (read/cache.py checks it)."""
    from . import cache
    key = cache.identity(path)
    folder = cache.cache_dir()
    out = folder / f"{key}{suffix}"
    if cache.lookup(out):
        return out
    cache.tidy(folder)
    fd, tmp = cache.new_part(out)
    try:
        with opener(path) as src, os.fdopen(fd, "wb") as dst:
            written, next_check = 0, 0
            while chunk := src.read(CHUNK):
                if written == 0 and not _looks_like_a_profile(chunk[:4096], path):
                    raise BadInput(path, "expands to something that is not a profile (neither SQLite nor JSON); "
                                         "nothing was kept")
                if written >= next_check:
                    if shutil.disk_usage(folder).free < MIN_FREE_BYTES + len(chunk):
                        raise _NoRoom(written)
                    next_check = written + CHECK_EVERY
                dst.write(chunk)
                written += len(chunk)
        cache.commit(tmp, out)
    except _NoRoom as err:
        raise BadInput(path, f"expanding it would leave less than {MIN_FREE_BYTES >> 30} GiB free in {folder} "
                             f"({err.written / 2**30:.1f} GiB expanded so far); free some space or set "
                             "NSYS_DOCTOR_CACHE to a folder on a larger disk")
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise BadInput(path, f"no space left in {folder} to expand it; free some space or set NSYS_DOCTOR_CACHE "
                                 "to a folder on a larger disk")
        if getattr(err, "filename", None) and str(folder) in str(err.filename):
            raise BadInput(err.filename, f"cannot write the expanded copy ({err.strerror})")
        raise BadInput(path, f"compressed file is truncated or corrupt ({err})")
    except (lzma.LZMAError, gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise BadInput(path, f"compressed file is truncated or corrupt ({err})")
    finally:
        tmp.unlink(missing_ok=True)     # renamed into place, or a failure/interrupt: never left behind
    cache.tidy(folder, keep=out)
    return out


class _NoRoom(Exception):
    def __init__(self, written: int):
        self.written = written


def sniff(path: pathlib.Path) -> tuple[str, pathlib.Path]:
    """-> (format, path of the uncompressed file). Formats: 'sqlite', 'nsys-rep', 'json'."""
    head = _head(path)
    if head.startswith(XZ_MAGIC):
        return sniff_inner(path, _expand(path, _XzStreams, ".unxz"))
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


def open_trace(path: str | os.PathLike, export_beside: bool = False) -> Trace:
    """The trace of a profile. `export_beside`: a .nsys-rep's export goes next to it, not into the cache."""
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
    if fmt == "nsys-rep":
        return reader.read(str(real), display_path=str(p), export_beside=export_beside)
    return reader.read(str(real), display_path=str(p))
