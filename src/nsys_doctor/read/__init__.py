"""open_trace(path) -> Trace: sniff the file's format by its bytes, not its name, and pick the reader.

Formats: Nsight Systems SQLite exports (plain, .xz, .gz), .nsys-rep/.qdrep reports (exported with nsys first),
PyTorch profiler (Kineto) Chrome-trace JSON (plain or .gz): whichever reader in READERS accepts the content. A new
format is one new module here plus its name in READERS (the folder scan and the help text ask READERS too).
Inputs are never modified: compressed files are expanded into a cache folder, SQLite is opened read-only.
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


def sniff(path: pathlib.Path) -> tuple[object, pathlib.Path]:
    """-> (the reader that accepts the file, path of the uncompressed file)."""
    head = _head(path)
    if head.startswith(XZ_MAGIC):
        return sniff_inner(path, _expand(path, lzma.open, ".unxz"))
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


def open_trace(path: str | os.PathLike) -> Trace:
    p = pathlib.Path(path)
    if not p.exists():
        raise BadInput(p, "no such file")
    if p.is_dir():
        raise BadInput(p, "is a folder; pass a profile file")
    if not p.is_file():     # a pipe (<(xzcat ...)) would block the first read forever; a device is no profile
        raise BadInput(p, "not a regular file (a pipe or a device); save the profile to a file and pass that")
    try:
        reader, real = sniff(p)
    except PermissionError:
        raise BadInput(p, "permission denied")
    except OSError as err:
        raise BadInput(p, f"cannot be read ({err.strerror or err})")
    return reader.read(str(real), display_path=str(p))


# The readers, in the order they are asked: each module has SUFFIXES (its file name endings, uncompressed, lower
# case), DESCRIPTION (the format in words), accepts(head: bytes, path) -> bool (head: the first HEAD_BYTES of the
# uncompressed content, path: the file as the user named it), read(path, display_path) -> Trace, and optionally
# rejects(head, path) -> str | None (why a file that looks like its format is not a profile). A new format is one
# module here plus its name below. Imported here, after cache_dir, which nsys_rep imports from this package.
from . import kineto_json, nsys_rep, nsys_sqlite  # noqa: E402

READERS = [nsys_sqlite, nsys_rep, kineto_json]
