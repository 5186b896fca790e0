"""One error family. Library code raises these; only `cli.main` turns them into one line and exit code 2."""
from __future__ import annotations

import os


class NsysDoctorError(Exception):
    """A problem with the user's input that they can act on: names the file and says what is wrong."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class BadInput(NsysDoctorError):
    """The file is not a readable profile (wrong type, truncated, corrupt, missing tables)."""


class NoData(NsysDoctorError):
    """The profile is readable but lacks what the analysis needs (no CUDA work, no requests)."""


class ToolMissing(NsysDoctorError):
    """An external tool (nsys) is needed and could not be found or failed."""


class OutOfMemory(NsysDoctorError):
    """An allocation failed while analysing the file: it needs more memory than the process may use."""

    def __init__(self, path: str | os.PathLike | None):
        super().__init__(path, out_of_memory_problem(path))


# What `analyze` maps at its peak (VmPeak of /proc/self/status after `analyze --format json`, with the settings
# above): about 150 MB whatever the file (the interpreter, numpy, the SQLite driver, reader and diagnosis threads'
# stacks; 137-156 MB for exports and traces under 5 MB), plus per MB of input 2.5 MB for an SQLite export
# (launch_bound 48 MB: 270 MB, healthy 37 MB: 225 MB, sync_heavy 29 MB: 210 MB) and 4.6 MB for Kineto JSON
# (hta df_index_resolver, 51 MB: 384 MB: a dict per event). Compressed inputs expand about 10x (launch_bound.sqlite.xz
# 5.4 -> 48.5 MB, healthy 3.3 -> 37 MB). An estimate for the message only; nothing is refused by it.
BASE_MB = 150
MB_PER_EXPORT_MB = 2.5
MB_PER_JSON_MB = 4.6
EXPANSION = 10


def needed_mb(path) -> int:
    """About how much address space analysing `path` takes, in MB (see BASE_MB), rounded up to 10 MB."""
    import os
    try:
        size = os.path.getsize(path) / 2**20
        with open(path, "rb") as f:
            head = f.read(8)
    except (OSError, TypeError, ValueError):
        return BASE_MB
    name = os.fspath(path).lower()
    if head.startswith((b"\xfd7zXZ\x00", b"\x1f\x8b")):
        size *= EXPANSION
        name = name.rsplit(".", 1)[0]
    per = MB_PER_JSON_MB if name.endswith(".json") or head.lstrip()[:1] in (b"{", b"[") else MB_PER_EXPORT_MB
    return int(-(-(BASE_MB + per * size) // 10) * 10)


def address_space_limit_mb() -> int | None:
    """This process's address-space limit (ulimit -v: RLIMIT_AS, or RLIMIT_DATA) in MB; None when unlimited."""
    try:
        import resource
    except ImportError:
        return None
    limits = [lim for lim in (resource.getrlimit(resource.RLIMIT_AS)[0], resource.getrlimit(resource.RLIMIT_DATA)[0])
              if lim != resource.RLIM_INFINITY]
    return min(limits) >> 20 if limits else None


def room_to_map() -> float:
    """Bytes this process may still map under its address-space limit (address_space_limit_mb); infinite when there
    is none (the usual case: two getrlimit calls)."""
    limit = address_space_limit_mb()
    if limit is None:
        return float("inf")
    try:
        with open("/proc/self/statm", "rb") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0.0          # a limit and no way to see how close we are: the safe path
    return float((limit << 20) - mapped)


# How a failed allocation shows when it is not a MemoryError (CPython and glibc say so only in the message): a
# thread whose stack could not be mapped, a C extension that could not be mapped in (dlopen) under `ulimit -v`
# 100 MB, seen on libsqlite3.
NO_MEMORY_MESSAGES = ("can't start new thread", "failed to map segment", "cannot allocate memory")


def is_out_of_memory(err: BaseException) -> bool:
    """A failed allocation: MemoryError, a RuntimeError or ImportError that says one failed (NO_MEMORY_MESSAGES), or
    an ImportError caused by a MemoryError (numpy's import under a very low limit)."""
    if isinstance(err, MemoryError):
        return True
    if not isinstance(err, (RuntimeError, ImportError)):
        return False
    text = str(err).lower()
    return any(m in text for m in NO_MEMORY_MESSAGES) or \
        (isinstance(err, ImportError) and isinstance(err.__cause__ or err.__context__, MemoryError))


def out_of_memory_problem(path) -> str:
    """The one-line problem for an analysis of `path` that ran out of memory (with the limit, when one is set)."""
    need = needed_mb(path) if path is not None else BASE_MB
    limit = address_space_limit_mb()
    if limit is None:
        return f"not enough memory to analyse it (needs about {need} MB)"
    if need <= limit:       # the estimate was low for this file: all we know is "more"
        return f"not enough memory to analyse it (needs more than the {limit} MB this process may map: ulimit -v)"
    return f"not enough memory to analyse it (needs about {need} MB; this process may map {limit} MB: ulimit -v)"
