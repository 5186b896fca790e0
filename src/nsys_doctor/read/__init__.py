"""open_trace(path) -> Trace: sniff the file's format by its bytes, not its name, and pick the reader.

Formats: Nsight Systems SQLite exports (plain, .xz, .gz), .nsys-rep/.qdrep reports (exported with nsys first),
PyTorch profiler (Kineto) Chrome-trace JSON (plain or .gz): whichever reader in READERS accepts the content. A new
format is one new module here plus its name in READERS (the folder scan and the help text ask READERS too).
Inputs are never modified: compressed files are expanded into the cache folder
(read/cache.py), SQLite is opened read-only.
"""
from __future__ import annotations

import errno
import gzip
import lzma
import os
import pathlib
import shutil
import zlib

from ..errors import BadInput
from ..model.trace import Trace

XZ_MAGIC = b"\xfd7zXZ\x00"
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"   # none of ours, named so the message can say so
COMPRESSED = (".xz", ".gz")
# Bytes of the uncompressed start a reader judges a file by: a Kineto trace's "traceEvents" key comes after its
# header (deviceProperties): 0.1-4.6 KB into the 13 traces of ../shared/external/kineto (8 GPUs); 1 MiB leaves room
# for hosts with a hundred GPUs and costs one read.
HEAD_BYTES = 1 << 20
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
    """Whether a reader in READERS knows this content: it accepts it, or it says why it is none of its format (a
    JSON without traceEvents in this first chunk: _judge decides on the whole head and gives that reader's reason)."""
    return any(r.accepts(head, original) or getattr(r, "rejects", lambda h, p: None)(head, original)
               for r in READERS)


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
                if written == 0 and not _looks_like_a_profile(chunk[:HEAD_BYTES], path):
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


def sniff(path: pathlib.Path) -> tuple[object, pathlib.Path]:
    """-> (the reader that accepts the file, path of the uncompressed file)."""
    head = _head(path)
    if head.startswith(XZ_MAGIC):
        return sniff_inner(path, _expand(path, _XzStreams, ".unxz"))
    if head.startswith(GZIP_MAGIC):
        return sniff_inner(path, _expand(path, gzip.open, ".ungz"))
    return sniff_inner(path, path)


def sniff_inner(original: pathlib.Path, path: pathlib.Path) -> tuple[object, pathlib.Path]:
    with open(path, "rb") as fh:
        reader, why = _judge(fh, original)
    if reader is None:
        raise BadInput(original, why)
    return reader, path


def _judge(fh, path: pathlib.Path):
    """(reader, None) or (None, why not) for an open file's content: its first 64 bytes settle most formats (a
    folder of a thousand SQLite exports reads 64 KB to be scanned), the rest of HEAD_BYTES is read only if not."""
    head = fh.read(64)
    reader = pick(head, path)
    if reader is None and len(head) == 64:
        head += fh.read(HEAD_BYTES - 64)
        reader = pick(head, path)
    return (reader, None) if reader is not None else (None, not_a_profile(head, path))


def pick(head: bytes, path: pathlib.Path):
    """The first reader in READERS that accepts a file by the start of its (uncompressed) content and its name."""
    for reader in READERS:
        if reader.accepts(head, path):
            return reader
    return None


def not_a_profile(head: bytes, path: pathlib.Path) -> str:
    """Why no reader accepts the file: a reader's own reason (a JSON without traceEvents, a saved nsys-doctor
    report), or the list of formats."""
    if not head:
        return "file is empty"
    if head.startswith(ZIP_MAGIC):
        return "a zip archive, not a profile; unpack it and pass the profile inside"
    for reader in READERS:
        why = getattr(reader, "rejects", lambda h, p: None)(head, path)
        if why:
            return why
    return f"not a profile: expected {formats()} (each plain, .xz or .gz)"


def formats() -> str:
    """The formats the readers accept, in words (error messages and --help)."""
    names = [r.DESCRIPTION for r in READERS]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def suffixes() -> tuple[str, ...]:
    """File name endings of the formats (lower case), plain and compressed."""
    return tuple(s + c for r in READERS for s in r.SUFFIXES for c in ("",) + COMPRESSED)


def identify(path: str | os.PathLike):
    """For a folder scan: (the reader that accepts the file, None) or (None, why it is not a profile), from the first
    HEAD_BYTES of its content, decompressed in memory (nothing is expanded into the cache, nothing is written).
    BadInput when it cannot be read at all (permission, a compressed file damaged from its start)."""
    p = pathlib.Path(path)
    try:
        head = _head(p)
        opener = lzma.open if head.startswith(XZ_MAGIC) else gzip.open if head.startswith(GZIP_MAGIC) else open
        with opener(p, "rb") as fh:
            return _judge(fh, p)
    except PermissionError:
        raise BadInput(p, "permission denied")
    except (OSError, lzma.LZMAError, EOFError, zlib.error) as err:
        raise BadInput(p, f"cannot be read ({getattr(err, 'strerror', None) or err})")


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
        reader, real = sniff(p)
    except PermissionError:
        raise BadInput(p, "permission denied")
    except OSError as err:
        raise BadInput(p, f"cannot be read ({err.strerror or err})")
    if export_beside:
        import inspect      # here: 8 ms of import that only --export-beside needs
    if export_beside and "export_beside" in inspect.signature(reader.read).parameters:
        return reader.read(str(real), display_path=str(p), export_beside=True)
    return reader.read(str(real), display_path=str(p))


# The readers, in the order they are asked: each module has SUFFIXES (its file name endings, uncompressed, lower
# case), DESCRIPTION (the format in words), accepts(head: bytes, path) -> bool (head: the first HEAD_BYTES of the
# uncompressed content, path: the file as the user named it), read(path, display_path) -> Trace, and optionally
# rejects(head, path) -> str | None (why a file that looks like its format is not a profile). A new format is one
# module here plus its name below. Imported here, after cache_dir, which nsys_rep imports from this package.
from . import kineto_json, nsys_rep, nsys_sqlite  # noqa: E402

READERS = [nsys_sqlite, nsys_rep, kineto_json]
