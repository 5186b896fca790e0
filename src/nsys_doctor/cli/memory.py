"""Process-wide memory settings for a run of the command line (not applied on import: a library must not change its
host's allocator).

An analysis makes hundreds of short-lived arrays of 10-80 MB (launch_bound x40, made by benchmarks/make_large.py:
~30 GB allocated in all, 2.5 GB at peak). By default glibc gives each one fresh pages from the kernel and returns
them on free, and numpy asks for transparent huge pages on each: the kernel then zeroes every page again, which was 26% of all CPU time (perf:
clear_page_erms) and 5-8 s of system time on launch_bound x40. Keeping freed memory in the heap for reuse and leaving
huge pages to the kernel's default brought that run from 12-15 s to 9.1-9.3 s (3 runs each, peak +0.25 GB).
"""
from __future__ import annotations

import ctypes
import sys

# mallopt(3) parameters, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# Arrays below this come from the heap and go back to it on free; 1 GiB is above any column we hold
# (10M rows x 8 bytes = 80 MB), below which glibc's default (128 KiB, growing to 32 MiB) maps each one afresh.
MMAP_THRESHOLD = 1 << 30
# Free memory at the top of the heap kept for reuse instead of being returned to the kernel (mallopt takes an int).
TRIM_THRESHOLD = 2**31 - 1
# One heap for all threads: the reader and diagnosis threads' own arenas hand freed arrays back to the kernel
# (their heaps shrink on free), so their arrays were zeroed afresh each time (launch_bound x40: 4 s system time).
ARENA_MAX = 1

_done = False


def keep_freed_memory() -> bool:
    """Have glibc reuse freed arrays and numpy stop asking for huge pages. True when applied; a no-op elsewhere
    (macOS, musl, Windows) and on a second call."""
    global _done
    if _done:
        return True
    _done = True
    applied = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
            applied = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
                bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(libc.mallopt(M_ARENA_MAX, ARENA_MAX))
        except (OSError, AttributeError):
            applied = False
    try:   # numpy's own switch (also read from NUMPY_MADVISE_HUGEPAGE at import); private, hence guarded
        from numpy._core.multiarray import _set_madvise_hugepage
        _set_madvise_hugepage(False)
    except (ImportError, AttributeError):
        pass
    return applied


def give_back() -> None:
    """Return the heap's free pages to the kernel (malloc_trim): a fleet worker does so after each report, so that
    between reports it holds what it uses, not the peak of the largest report so far (16 launch_bound reports in
    one process: 39 MB held afterwards against 153 MB without; after one launch_bound x40 report: 41 MB against
    2.7 GB)."""
    if _done and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass

