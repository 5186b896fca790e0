"""The trace model: tables of numpy columns, loaded on first use, and a string table.

A reader fills a Trace with *loaders* (one per table it can provide) and `absent` (tables the profile did not record,
with the `nsys profile` flag that records them). Nothing is read until a table is asked for, so an analysis loads only
the columns it needs. Column meanings are documented once in `model/columns.py`.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .columns import TABLES

Table = dict[str, np.ndarray]


def once(cache: dict, locks: dict, guard: threading.Lock, key, compute: Callable[[], object]):
    """cache[key], computed by the first thread that asks; one asking meanwhile waits for that result (a lock per key,
    made under `guard`). Trace.once and diagnose.Context.once."""
    if key in cache:
        return cache[key]
    with guard:
        lock = locks.setdefault(key, threading.Lock())
    with lock:
        if key not in cache:
            cache[key] = compute()
    return cache[key]


def on_own_thread(fn: Callable[[], object], name: str) -> Future:
    """fn() on a thread of its own (named nsys-doctor-NAME), started now; its future, for the caller to wait on
    before the trace it reads is closed."""
    pool = ThreadPoolExecutor(1, thread_name_prefix=f"nsys-doctor-{name}")
    fut = pool.submit(fn)
    pool.shutdown(wait=False)              # the thread ends when fn does
    return fut

@dataclass(frozen=True)
class Ids:
    """How the reader numbers threads and processes (the `tid` and `pid` columns, model/columns.py): the model
    asks these instead of knowing a layout."""
    process_of: Callable[[np.ndarray], np.ndarray]   # thread ids -> the ids of their processes (the `pid` values)
    process_key: Callable[[np.ndarray], np.ndarray]  # process ids -> int64 in [0, 2**31): a compact number, for
                                                     # (process, correlation id) keys and process ranks
    os_tid: Callable[[int], int]                     # a thread id -> the OS thread id (shown to users)
    os_pid: Callable[[int], int]                     # a process id -> the OS process id (shown to users)


class LazyTable(dict):
    """A table whose rarely used columns are read on first access (kernel launch geometry, API backtrace ids):
    `analyze` then reads only the columns its diagnoses touch."""

    def __init__(self, columns: dict, load_column: Callable[[str], np.ndarray], lazy_names: tuple[str, ...]):
        super().__init__(columns)
        self._lock = threading.Lock()
        self._load_column = load_column
        self.lazy_names = tuple(lazy_names)

    def __missing__(self, key):
        if key not in self.lazy_names:
            raise KeyError(key)
        with self._lock:        # one read per column when diagnoses on two threads ask at once
            if dict.__contains__(self, key):
                return dict.__getitem__(self, key)
            col = self._load_column(key)
            self[key] = col
        return col


def empty_table(name: str) -> Table:
    """A table with the documented columns and no rows."""
    return {col: np.zeros(0, dtype=np.int64) for col in TABLES[name]["columns"]}


def table_len(table: Table) -> int:
    for col in table.values():
        return len(col)
    return 0


def take(table: Table, index) -> Table:
    """Rows of a table selected by a boolean mask or an index array (lazy columns stay lazy)."""
    out = {k: v[index] for k, v in table.items()}
    if isinstance(table, LazyTable):
        missing = tuple(n for n in table.lazy_names if n not in out)
        return LazyTable(out, lambda k: table[k][index], missing)
    return out


@dataclass
class Trace:
    path: str
    source: str                                   # "nsys-sqlite" | "kineto-json"
    meta: dict = field(default_factory=dict)      # versions, capture span, GPUs, processes
    loaders: dict[str, Callable[[], Table]] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)   # table -> why it is missing / which flag records it
    strings: Callable[[int], str] = lambda i: f"<{i}>"     # id -> text for name columns
    ids: Ids | None = None                                  # the reader's thread/process numbering (read/ids.py)
    enums: dict[str, dict[int, str]] = field(default_factory=dict)  # enum name -> value -> label, from the profile
    _cache: dict[str, Table] = field(default_factory=dict)
    # rows per table as recorded, asked for by the summary only; a reader that knows counts cheaply sets it
    count_rows: Callable[["Trace", str], int] | None = None
    # the loaders may run on another thread (they read in C with the GIL released): prefetch() is allowed
    background: bool = False
    _pending: dict[str, Future] = field(default_factory=dict)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)     # one reader per table (diagnoses run on
    _guard: threading.Lock = field(default_factory=threading.Lock)      # several threads)

    def has(self, name: str) -> bool:
        return name in self.loaders and table_len(self.table(name)) > 0

    def table(self, name: str, in_turn: bool = False) -> Table:
        """The table, read on first use. `in_turn`: one still queued by prefetch() is waited for in its turn, not
        read here out of order (a helper thread that needs it only when the analysis would have it anyway)."""
        got = self._cache.get(name)
        if got is not None:
            return got
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._cache:
                fut = self._pending.pop(name, None)
                if fut is not None and (in_turn or not fut.cancel()):   # being read (or queued, in_turn): wait for
                    self._cache[name] = fut.result()                     # it; still queued: read it here
                else:
                    loader = self.loaders.get(name)
                    self._cache[name] = loader() if loader else empty_table(name)
        return self._cache[name]

    def once(self, key: str, compute: Callable[[], object]):
        """A per-trace intermediate (projection.py's keys, caches and unions), computed by the first thread that asks;
        one asking meanwhile waits for that result instead of computing it again."""
        return once(self._cache, self._locks, self._guard, key, compute)

    def prefetch(self, names) -> None:
        """Start reading these tables, in this order, on a background thread while the caller works with the ones
        it has; table() waits for each (a reading error is raised there, as without prefetching)."""
        todo = [n for n in names if n in self.loaders and n not in self._cache and n not in self._pending]
        if not self.background or not todo:
            return
        pool = ThreadPoolExecutor(1, thread_name_prefix="nsys-doctor-load")
        for n in todo:
            self._pending[n] = pool.submit(self.loaders[n])
        pool.shutdown(wait=False)

    def counts(self) -> dict[str, int]:
        """Rows per table: the reader's count, or the loaded tables' lengths (meta["counts"] for readers that
        count while parsing)."""
        if self.count_rows is not None:
            return {name: self.count_rows(self, name) for name in TABLES}
        return dict(self.meta.get("counts", {}))

    def name(self, string_id) -> str:
        try:
            return self.strings(int(string_id))
        except (KeyError, TypeError, ValueError):
            return f"<unknown {string_id}>"

    def names(self, string_ids) -> list[str]:
        return [self.name(i) for i in string_ids]

    def enum(self, enum: str, value, default: str = "unknown") -> str:
        return self.enums.get(enum, {}).get(int(value), default)

    def thread_name(self, tid: int) -> str:
        threads = self.table("threads")
        hit = np.flatnonzero(threads["tid"] == tid)
        name = self.name(threads["name_id"][hit[0]]) if len(hit) else "thread"
        return f"{name} ({self.ids.os_tid(int(tid))})"

    def close(self) -> None:
        pending = [f for f in self._pending.values() if not f.cancel()]
        self._pending.clear()
        wait(pending)           # a table being read still uses the reader's connections
        closer = self.meta.get("_close")
        if closer:
            closer()
