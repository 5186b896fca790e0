"""Fetch a SQL query's result as numpy columns, fast, from a SQLite file opened read-only.

Python's sqlite3 builds a tuple per row, about 8x slower than SQLite's own scan (launch_bound: 0.17 s against
0.022 s for 120k kernels); the ADBC SQLite driver hands back Arrow columns built in C (0.04 s), which numpy copies
out of the Arrow C stream (arrow_c.py). ADBC infers a column's type from its first rows, so a hostile file with
mixed types can fail there: we then fall back to sqlite3, for those errors only (FALLBACK_ERRORS); anything else is
a bug and is raised, not hidden behind a 3x slower read. Every fallback is logged in `Fetcher.fallbacks`.
"""
from __future__ import annotations

import functools
import os
import pathlib
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from ..errors import room_to_map
from . import arrow_c

try:  # optional fast path; the reader works without it. ADBC's low-level API: its DB-API module needs pyarrow
    import adbc_driver_manager as _adbc_dm
    import adbc_driver_sqlite as _adbc
except ImportError:  # pragma: no cover - exercised only where it is missing
    _adbc = _adbc_dm = None

# What the fast path may legitimately fail with on a file that sqlite3 still reads: the driver's own errors (a type
# that changes mid-column, a driver limit), a failed Arrow stream call, and arrow_c's refusals of a column (text or
# fractional REALs in an integer column, a short buffer). MemoryError and bugs (KeyError, AttributeError...) are not
# in the list: they are raised.
DRIVER_ERRORS = (_adbc_dm.Error,) if _adbc_dm is not None else ()
FALLBACK_ERRORS = DRIVER_ERRORS + (arrow_c.StreamError, TypeError, ValueError)

BATCH_ROWS = 262_144   # rows per Arrow batch from the ADBC SQLite driver
INT_NULL = -1       # integer NULLs become -1: every id and time in an export is >= 0
# SQLite decodes a query's rows on one core; a large table read as rowid slices on several threads takes the wall
# time of one slice (launch_bound x40: 9.8M API calls 3.2 s on one thread, 1.7 s on two)
READ_THREADS = max(1, min(4, os.cpu_count() or 1))     # one per core, at most 4 (measured on 2 cores only)
SLICE_ROWS = 1 << 15     # rows per slice at least: below, a slice costs more in query set-up than it saves
# two per thread: when one thread is slowed (another process on its core), the other takes the remaining slice
# instead of idling (launch_bound x40 on the 2-core VM under load 2.7-3.2, best of 3-4: 9.8M API calls 2.73 -> 2.07 s,
# 4.9M kernels 1.76 -> 1.53 s; eight per thread no better than two)
MAX_SLICES = 2 * READ_THREADS
MAX_SPAN = 1 << 28   # rowid spans beyond this (gaps in a damaged file) are read whole: no span-sized buffers
SHRINK = 0.75    # a sliced result below this share of its rowid span is copied out of the span-sized buffer
# The ADBC SQLite driver (1.13) crashes the process (SIGSEGV in ArrowBufferReset) when an allocation fails while it
# builds a batch: under `ulimit -v 150-190 MB` on launch_bound, for example. So a query goes to the driver only while
# the process can still map this much more (per reading thread); with less, sqlite3 reads it, where a failed
# allocation is a MemoryError. 64 MiB: a batch of BATCH_ROWS rows is 2 MiB per column, buffers grow by doubling and
# the slices' queries select up to 8 columns; under limits of 100-300 MB in steps of 5 MB no run crashed with it
# (tests/robustness/test_low_memory.py).
DRIVER_HEADROOM = 64 << 20


class Packing:
    """Small non-negative integer columns of a query read as one int64 each: the ADBC driver's cost is per value
    (sqlite3_column_* and an Arrow append each), so fewer values through it is less CPU. `cols` is the query's
    (name, SQL expression) list; each group lists (name, bits) from most to least significant, 63 bits at most.
    A group's value is NULL unless every part is an integer (or REAL: shifts truncate it as _int does) in its
    range; NULL parts, text, negative or larger values come back as INT_NULL, and then unpack() says so (None)
    and the caller reads the plain query: an odd or hostile file is read exactly as before. A part whose range
    is known (a comparison: 0, 1 or NULL) is given as (name, bits, False): no range test in SQL."""

    def __init__(self, cols: list[tuple[str, str]], groups: list[list[tuple]]):
        exprs = dict(cols)
        self.names = [n for n, _ in cols]
        self.groups: list[tuple[str, list[tuple[str, int, int]]]] = []   # packed name, [(part, shift, bits)]
        packed_of: dict[str, str] = {}
        for k, group in enumerate(groups):
            # a column the export lacks is the constant -1 (_Reader.col): never packable, left as it is
            parts = [(g[0], g[1], g[2] if len(g) > 2 else True) for g in group if exprs[g[0]] != "-1"]
            if len(parts) < 2:
                continue
            if sum(b for _, b, _ in parts) > 63:
                raise ValueError("a packed group needs more than 63 bits")
            name = f"packed{k}"
            tests, terms, layout, shift = [], [], [], sum(b for _, b, _ in parts)
            for part, bits, checked in parts:
                shift -= bits
                e = exprs[part]
                if checked:
                    tests.append(f"({e}) BETWEEN 0 AND {(1 << bits) - 1}")
                terms.append(f"(({e}) << {shift})" if shift else f"({e})")
                layout.append((part, shift, bits))
                packed_of[part] = name
            value = " | ".join(terms)
            exprs[name] = f"CASE WHEN {' AND '.join(tests)} THEN {value} END" if tests else value
            self.groups.append((name, layout))
        # the packed column takes the place of its first part
        self.packed_names, seen = [], set()
        for n in self.names:
            m = packed_of.get(n, n)
            if m not in seen:
                seen.add(m)
                self.packed_names.append(m)
        self.select = ", ".join(exprs[n] for n in self.packed_names)

    def unpack(self, got: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """The packed query's columns -> the plain query's, in its order; None when a row could not be packed."""
        parts = {}
        for name, _ in self.groups:
            if len(got[name]) and int(got[name].min()) < 0:
                return None
        for name, layout in self.groups:
            v = got[name]
            for part, shift, bits in layout:
                if shift:
                    parts[part] = (v >> shift) & ((1 << bits) - 1)
                else:       # the last part in place: one column less at peak (10M API calls: 78 MB)
                    parts[part] = np.bitwise_and(v, (1 << bits) - 1, out=v)
        return {n: parts[n] if n in parts else got[n] for n in self.names}


def readonly_uri(path: str) -> str:
    # immutable=1: no locks and no journal files next to the user's file; we never write.
    return pathlib.Path(path).resolve().as_uri() + "?mode=ro&immutable=1"


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(readonly_uri(path), uri=True, check_same_thread=False)
    db.text_factory = _decode     # names are arbitrary bytes in a damaged export: never fail on them
    return db


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class Fetcher:
    """Read-only connections to one file: sqlite3 for probes and the fallback path, and one ADBC connection per
    thread that reads (a connection is not shared between threads)."""

    def __init__(self, path: str):
        self.path = path
        self.log: list[str] = []        # every bulk query run, for the benchmark's same-columns baseline
        self.db = connect(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list = []          # every ADBC connection opened, closed together
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        self.fallbacks: list[str] = []  # why a query left the fast path (the error), one entry each time
        self.on_close: list = []        # called after the connections are closed (a private copy's removal)
        self.fast = _adbc is not None and self._adbc_conn() is not None

    def _adbc_conn(self):
        conn = getattr(self._local, "adbc", False)
        if conn is False:
            conn = None
            try:
                lib = _driver_library()
                db = _adbc_dm.AdbcDatabase(driver=lib, uri=readonly_uri(self.path)) if lib else \
                    _adbc.connect(readonly_uri(self.path))
                with self._lock:
                    self._conns.append(db)
                conn = _adbc_dm.AdbcConnection(db)
                with self._lock:
                    self._conns.insert(0, conn)      # connections close before their database
            except DRIVER_ERRORS + (OSError,) as err:   # no driver library, or it cannot open the file
                with self._lock:
                    self.fallbacks.append(f"no ADBC connection: {type(err).__name__}: {err}")
                conn = None
            self._local.adbc = conn
        return conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:     # slices still being read finish first: their connections close below
            pool.shutdown(wait=True, cancel_futures=True)
        self.db.close()
        for conn in self._conns:
            try:
                conn.close()
            except DRIVER_ERRORS:
                pass        # already closed, or a statement still open on it: the process is done with it
        self._conns = []
        callbacks, self.on_close = self.on_close, []
        for done in callbacks:
            done()

    def columns(self, sql: str, names: list[str], text: tuple[str, ...] = (), floats: tuple[str, ...] = (),
                params: tuple = (), table: str | None = None, where: str = "") -> dict[str, np.ndarray]:
        """Run `sql` + " WHERE `where`" (selecting exactly `names`, in order) -> {name: array}. Text columns are
        object arrays. With `table`, `sql` reads that one table and has no ORDER BY: a large one is read in rowid
        slices on several threads and put back together in rowid order, the order of a plain scan."""
        full = f"{sql} WHERE {where}" if where else sql
        self.log.append(full)
        room = room_to_map()
        if self.fast and not params and room >= DRIVER_HEADROOM:
            if table and READ_THREADS > 1 and room >= READ_THREADS * DRIVER_HEADROOM:
                try:
                    sliced = self._columns_sliced(sql, where, table, names, text, floats)
                    if sliced is not None:
                        return sliced
                except FALLBACK_ERRORS as err:  # the whole query below reads what the slices could not
                    self.fell_back("slices", full, err)
            try:
                return self._columns_adbc(full, names, text, floats)
            except FALLBACK_ERRORS as err:  # mixed types or a driver limit: sqlite3 handles anything SQLite returns
                self.fell_back("query", full, err)
        return self._columns_sqlite(full, names, text, floats, params)

    def fell_back(self, what: str, sql: str, err: BaseException | str) -> None:
        why = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
        with self._lock:
            self.fallbacks.append(f"{what}: {why} ({sql[:120]})")

    def _columns_sliced(self, sql, where, table, names, text, floats):
        """Rows come in rowid order and rowids are unique, so a slice of rowids [a, b) holds at most b - a rows:
        each thread streams its slice's batches straight into the output at the slice's rowid offset (no Arrow table
        and no concatenation: 0.5 GB less at peak for 10M API calls), then the holes that rowid gaps or `where` left
        are closed."""
        if text:
            return None
        # two b-tree descents; min() and max() in one SELECT would scan the whole table
        lo, hi = self.db.execute(f'SELECT (SELECT min(rowid) FROM "{table}"), (SELECT max(rowid) FROM "{table}")'
                                 ).fetchone()
        if lo is None or hi - lo + 1 < 2 * SLICE_ROWS or hi - lo + 1 > MAX_SPAN:
            return None
        span = hi - lo + 1
        n = min(MAX_SLICES, span // SLICE_ROWS)
        bounds = [lo + span * k // n for k in range(n)] + [hi + 1]
        cond = f"({where}) AND " if where else ""
        out = {name: np.empty(span, np.float64 if name in floats else np.int64) for name in names}
        if room_to_map() < min(n, READ_THREADS) * DRIVER_HEADROOM:   # batches being built at once: one per thread
            return None         # the output took the room the threads' batches need: one query instead
        jobs = []
        with self._lock:
            if self._closed:
                return None
            if self._pool is None:
                self._pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="nsys-doctor-read")
            try:
                for a, b in zip(bounds, bounds[1:]):
                    jobs.append(self._pool.submit(self._read_slice, f"{sql} WHERE {cond}rowid >= {a} AND rowid < {b}",
                                                  names, floats, out, a - lo, b - a))
            except RuntimeError:        # "can't start new thread": no memory left for its stack
                started = False
            else:
                started = True
        wait(jobs)      # every slice has stopped writing into `out` before an error of one is raised
        if not started:
            for job in jobs:
                job.result()
            return None          # read as one query on this thread
        rows = [job.result() for job in jobs]
        dest = 0
        for a, k in zip(bounds, rows):
            if a - lo != dest:     # moves rows down; numpy buffers an overlapping copy
                for col in out.values():
                    col[dest:dest + k] = col[a - lo:a - lo + k]
            dest += k
        if dest < span:    # a much smaller result gets its own buffer instead of holding the whole span
            out = {k: (v[:dest].copy() if dest < SHRINK * span else v[:dest]) for k, v in out.items()}
        return out

    def _read_slice(self, sql, names, floats, out, offset, limit) -> int:
        stmt = self._statement(sql)
        try:
            pos, end = offset, offset + limit
            for fmts, cols in _batches(stmt):
                n = cols[0].length if cols else 0
                if pos + n > end:
                    raise ValueError("a rowid slice returned more rows than rowids")
                for i, name in enumerate(names):
                    arrow_c.numbers_into(out[name][pos:pos + n], cols[i], fmts[i], name in floats, INT_NULL)
                pos += n
            return pos - offset
        finally:
            stmt.close()

    def _statement(self, sql):
        conn = self._adbc_conn()
        if conn is None:
            raise arrow_c.StreamError("no ADBC connection in this thread")
        stmt = _adbc_dm.AdbcStatement(conn)
        try:
            try:   # the driver's default of 1024 rows per batch costs ~15% on 10M-row tables (launch_bound x40)
                stmt.set_options(**{"adbc.sqlite.query.batch_rows": str(BATCH_ROWS)})
            except DRIVER_ERRORS:
                pass        # a driver without the option: its default batch size
            stmt.set_sql_query(sql)
        except BaseException:
            stmt.close()
            raise
        return stmt

    def _columns_adbc(self, sql, names, text, floats):
        stmt = self._statement(sql)
        parts: list[list[np.ndarray]] = [[] for _ in names]
        try:
            for fmts, cols in _batches(stmt):
                if len(cols) != len(names):
                    raise ValueError(f"query returned {len(cols)} columns, expected {len(names)}")
                for i, name in enumerate(names):
                    parts[i].append(arrow_c.to_numpy(cols[i], fmts[i], _kind(name, text, floats), INT_NULL))
        finally:
            stmt.close()
        out = {}
        for name, p in zip(names, parts):
            if not p:
                out[name] = np.zeros(0, object if name in text else np.float64 if name in floats else np.int64)
            else:
                out[name] = p[0] if len(p) == 1 else np.concatenate(p)
        return out

    def _columns_sqlite(self, sql, names, text, floats, params):
        rows = self.db.execute(sql, params).fetchall()
        out = {}
        for i, name in enumerate(names):
            vals = [r[i] for r in rows]
            if name in text:
                out[name] = np.array([_text(v) for v in vals], dtype=object)
            elif name in floats:
                out[name] = np.array([_num(v, np.nan) for v in vals], dtype=np.float64)
            else:
                out[name] = np.array([_int(v) for v in vals], dtype=np.int64)
        return out


@functools.lru_cache(maxsize=1)
def _driver_library() -> str | None:
    """The SQLite driver library that the adbc-driver-sqlite wheel ships beside its module; None for other installs
    (conda, system packages), where adbc_driver_sqlite.connect() finds it (through importlib.resources: 10 ms)."""
    here = os.path.join(os.path.dirname(_adbc.__file__), "libadbc_driver_sqlite.so")
    return here if os.path.isfile(here) else None


def _batches(stmt):
    """Run a prepared ADBC statement -> (column formats, columns) per Arrow batch of its result (arrow_c.batches)."""
    handle, _ = stmt.execute_query()
    try:
        yield from arrow_c.batches(handle.address)
    finally:
        handle.release()


def _kind(name: str, text, floats) -> str:
    return "text" if name in text else "float" if name in floats else "int"


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


INT64_MAX = np.iinfo(np.int64).max


def _int(v) -> int:
    """An int64 column value: NULL, NaN, text that is no number -> INT_NULL; +-inf and beyond int64 -> clamped."""
    v = _num(v, INT_NULL)
    if isinstance(v, float):
        if v != v:
            return INT_NULL
        if not -INT64_MAX <= v <= INT64_MAX:
            return INT64_MAX if v > 0 else -INT64_MAX
        return int(v)
    return v


def _num(v, default):
    if v is None:
        return default
    if isinstance(v, (int, float)):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return default
