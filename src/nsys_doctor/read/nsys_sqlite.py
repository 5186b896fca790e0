"""Nsight Systems SQLite export -> trace model tables. Opened read-only; asks the file what it has.

Exports from 2022.x to 2025.3 differ in tables and columns (e.g. `greenContextId`, NVTX `textId`, `ENUM_*` tables);
we probe for them instead of trusting version strings. Enum meanings come from the profile's own `ENUM_*` tables.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import sqlite3
import tempfile
from typing import Callable

import numpy as np

from ..errors import BadInput
from ..model.columns import GPU_METRICS_USED, TABLES
from ..model.trace import LazyTable, Trace, table_len
from .ids import NSYS_IDS
from .sqlfetch import Fetcher, Packing, _num, _text

SUFFIXES = (".sqlite",)
DESCRIPTION = "an Nsight Systems .sqlite export"
SQLITE_MAGIC = b"SQLite format 3\x00"


def accepts(head: bytes, path) -> bool:
    """Any SQLite database: one that is not an export is refused by read() with the reason."""
    return head.startswith(SQLITE_MAGIC)


# Tables that carry CUDA activity. A file with none of these and no NVTX is not something we can analyse.
ACTIVITY_TABLES = ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_RUNTIME",
                   "NVTX_EVENTS", "OSRT_API")
DEFAULT_ENUMS = {  # same values in every export that has the tables (2022.4-2025.3)
    "CUDA_MEMCPY_OPER": {0: "Unknown", 1: "Host-to-Device", 2: "Device-to-Host", 3: "Host-to-Array",
                         4: "Array-to-Host", 5: "Array-to-Array", 6: "Array-to-Device", 7: "Device-to-Array",
                         8: "Device-to-Device", 9: "Host-to-Host", 10: "Peer-to-Peer", 11: "Unified Host-to-Device",
                         12: "Unified Device-to-Host", 13: "Unified Device-to-Device"},
    "CUDA_MEM_KIND": {0: "Pageable", 1: "Pinned", 2: "Device", 3: "Array", 4: "Managed", 5: "Device Static",
                      6: "Managed Static", 7: "Unknown"},
    "CUPTI_SYNC_TYPE": {0: "Unknown", 1: "Event sync", 2: "Stream wait sync", 3: "Stream sync", 4: "Context sync"},
}
NVTX_PUSH_POP, NVTX_START_END, NVTX_DOMAIN_CREATE = 59, 60, 75   # ENUM_NSYS_EVENT_TYPE ids (2022.x-2025.3)
# A time beyond 2**53 ns (104 days) from capture start is damage, not data: clamped so that end - start and sums of
# durations cannot wrap around int64 in the model.
MAX_TIME_NS = 2**53
# Columns of each export table, by what their absence does. REQUIRED: a measurement needs them (times, the
# correlation ids that tie GPU work to its launch, the calling thread, the API name); a table of GPU work, API calls
# or NVTX ranges without one is refused, since the reader would fill it with -1 and measure nonsense (a kernel
# table without `end` gave exit 0 and another headline); any other table without one is left out as absent. One of
# each ALTERNATIVES group is needed. OPTIONAL: read as -1 (or the default named in the reader) when absent, and
# listed in Trace.absent as "table.column" and in a note. Present in every export of ../shared (79 files, nsys
# 2022.1-2025.3) except SCHED_EVENTS threadState/threadBlock in two of them.
COLUMNS = {   # export table -> (model table, required, optional, alternatives)
    "CUPTI_ACTIVITY_KIND_KERNEL": ("kernels", ("start", "end", "correlationId", "deviceId", "streamId"),
                                   ("globalPid", "graphNodeId", "demangledName", "gridX", "gridY", "gridZ", "blockX",
                                    "blockY", "blockZ", "registersPerThread"), (("shortName", "demangledName"),)),
    "CUPTI_ACTIVITY_KIND_MEMCPY": ("copies", ("start", "end", "correlationId", "deviceId", "streamId"),
                                   ("globalPid", "bytes", "copyKind", "srcKind", "dstKind"), ()),
    "CUPTI_ACTIVITY_KIND_MEMSET": ("memsets", ("start", "end", "correlationId", "deviceId", "streamId"),
                                   ("globalPid", "bytes"), ()),
    "CUPTI_ACTIVITY_KIND_GRAPH_TRACE": ("graphs", ("start", "end", "correlationId", "deviceId", "streamId"),
                                        ("globalPid", "graphId"), ()),
    "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION": ("syncs", ("start", "end", "correlationId"),
                                            ("streamId", "globalPid", "syncType", "eventId"), ()),
    "CUPTI_ACTIVITY_KIND_CUDA_EVENT": ("event_records", ("correlationId", "streamId", "eventId"),
                                       ("globalPid", "deviceId"), ()),
    "CUPTI_ACTIVITY_KIND_RUNTIME": ("api_calls", ("start", "end", "correlationId", "globalTid", "nameId"),
                                    ("eventClass", "callchainId", "returnValue"), ()),
    "NVTX_EVENTS": ("ranges", ("start", "end", "globalTid"), ("domainId", "eventType"), (("text", "textId"),)),
    "OSRT_API": ("os_calls", ("start", "end", "globalTid", "nameId"), ("callchainId",), ()),
    "SCHED_EVENTS": ("sched", ("start", "globalTid", "isSchedIn"), ("cpu", "threadState", "threadBlock"), ()),
    "COMPOSITE_EVENTS": ("samples", ("start", "globalTid", "id"), ("cpu",), ()),
    "SAMPLING_CALLCHAINS": ("callchains", ("id", "stackDepth", "symbol"), ("module",), ()),
    "OSRT_CALLCHAINS": ("os_callchains", ("id", "stackDepth", "symbol"), ("module",), ()),
    "GPU_METRICS": ("gpu_metrics", ("timestamp", "metricId", "value"), ("typeId",), ()),
    "ThreadNames": ("threads", ("globalTid", "nameId"), (), ()),
    "PROCESSES": ("processes", ("globalPid",), ("pid", "name"), ()),
}
REFUSED_WITHOUT = ("kernels", "copies", "memsets", "graphs", "syncs", "api_calls", "ranges")
# Bits of the packed columns (sqlfetch.Packing): a row beyond them reads the table unpacked, so these bound only
# the fast path. CUPTI correlation ids and StringIds ids are 32-bit counters (31 bits: the packed value stays >= 0);
# stream ids count the streams of a process (the x40 profile: 7; 24 bits is 16M streams); device ids are GPU
# ordinals (8 bits: 256 GPUs).
ID_BITS, STREAM_BITS, DEVICE_BITS = 31, 24, 8
WAL_MODE = 2       # byte 18 of the SQLite header (read version): 2 in a WAL-mode database
# SQLite's message about a damaged schema can carry the damage (invalid UTF-8), and Python then fails to decode
# the message itself: that is a damaged file too
DB_ERRORS = (sqlite3.DatabaseError, UnicodeDecodeError)


def _event_id(expr: str) -> str:
    """CUPTI's event id column as an expression: 0xFFFFFFFF (CUPTI's 'none') and NULL read as -1."""
    return f"coalesce(nullif({expr}, 4294967295), -1)" if expr != "-1" else "-1"


def read(path: str, display_path: str | None = None) -> Trace:
    shown = display_path or path
    f = None
    path, wal_note, cleanup = _with_wal(path, shown)
    try:
        try:
            f = Fetcher(path)
            if cleanup:
                f.on_close.append(cleanup)
            tables = {name: _columns(f.db, name) for (name,) in
                      f.db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()}
        except DB_ERRORS as err:
            raise BadInput(shown, f"not a readable SQLite database ({err}); "
                                  "expected an `nsys export --type sqlite` file")
        if not tables:
            raise BadInput(shown, "empty SQLite database: no tables; the export did not finish or holds no data")
        if not any(t in tables for t in ACTIVITY_TABLES) and "StringIds" not in tables:
            raise BadInput(shown, "SQLite file is not an Nsight Systems export "
                                  "(no StringIds, CUPTI, NVTX or OSRT tables)")
        r = _Reader(f, tables, shown)
        t = r.trace()
        if wal_note:
            t.meta.setdefault("notes", []).insert(0, wal_note)
        return t
    except BaseException:
        if f is not None:      # its connections (sqlite3 and ADBC) are not left for the collector: fleet mode
            f.close()          # reads thousands of files in one process
        elif cleanup:
            cleanup()
        raise


def _with_wal(path: str, shown: str) -> tuple[str, str | None, Callable[[], None] | None]:
    """A WAL-mode database whose last commits are still in its `-wal` file beside it: immutable=1 (sqlfetch) would
    read it without them. Copy both into a private temporary folder and fold the log into the copy there (the
    user's files are only read: no checkpoint, no -shm beside them) -> (path to read, note, cleanup), or the path
    as it is when there is no such log. A copy that fails leaves the log out, and the note says so."""
    wal = pathlib.Path(path + "-wal")
    try:
        if not wal.is_file() or wal.stat().st_size == 0:
            return path, None, None
        with open(path, "rb") as fh:
            header = fh.read(20)
    except OSError:
        return path, None, None
    if len(header) < 20 or header[18] != WAL_MODE:    # not a WAL database: SQLite itself would ignore the file
        return path, None, None
    folder = None
    try:
        folder = tempfile.mkdtemp(prefix="nsys-doctor-wal-")     # 0700, a fresh name
        copy = os.path.join(folder, "export.sqlite")
        shutil.copyfile(path, copy)
        shutil.copyfile(wal, copy + "-wal")
        db = sqlite3.connect(copy)
        try:
            db.execute("PRAGMA journal_mode=DELETE")      # checkpoints the copy's log into the copy
        finally:
            db.close()
    except (OSError, sqlite3.Error) as err:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
        return path, (f"its -wal file ({wal.stat().st_size} bytes of commits not yet in the database) was ignored: "
                      f"it could not be read from a private copy ({err})"), None
    return copy, (f"read with the commits of its -wal file ({wal.stat().st_size} bytes), folded into a private "
                  "copy; the files beside it were not changed"), lambda: shutil.rmtree(folder, ignore_errors=True)


def _columns(db, table: str) -> set[str]:
    return {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}


class _Reader:
    def __init__(self, f: Fetcher, tables: dict[str, set[str]], shown: str):
        self.f, self.tables, self.shown = f, tables, shown

    def has(self, table: str, *cols: str) -> bool:
        return table in self.tables and all(c in self.tables[table] for c in cols)

    def col(self, table: str, col: str, default: str = "-1", alias: str = "") -> str:
        """Column expression (qualified with `alias.` in a join), or a constant when the export has no such column."""
        if col not in self.tables.get(table, ()):
            return default
        return f'{alias}."{col}"' if alias else f'"{col}"'

    def count(self, table: str) -> int:
        if table not in self.tables:
            return 0
        try:
            return self.f.db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        except DB_ERRORS as err:
            raise BadInput(self.shown, f"table {table} cannot be read ({err}): the file is truncated or corrupt")

    def nonempty(self, table: str) -> bool:
        if table not in self.tables:
            return False
        try:
            return self.f.db.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone() is not None
        except DB_ERRORS as err:
            raise BadInput(self.shown, f"table {table} cannot be read ({err}): the file is truncated or corrupt")

    def fetch(self, sql: str, names: list[str], lazy: dict[str, str] | None = None, table: str | None = None,
              where: str = "", packing: Packing | None = None, **kw) -> dict[str, np.ndarray]:
        """Run `sql` (+ WHERE `where`) -> columns; `lazy` maps more column names to expressions over the same FROM
        clause (the part of `sql` from " FROM "), read only when a diagnosis first asks for them, in the same row
        order. `table`: `sql` reads only that table (no join, no ORDER BY), so it may be read in parallel slices.
        `packing` (of `sql`'s columns): read with its packed columns, and as `sql` if a row cannot be packed."""
        try:
            cols = None
            if packing is not None and packing.groups:
                cols = packing.unpack(self.f.columns(f"SELECT {packing.select}{sql[sql.index(' FROM '):]}",
                                                     packing.packed_names, table=table, where=where, **kw))
                if cols is None:
                    self.f.fell_back("packed", sql, f"a row of {table or 'the query'} outside the packed "
                                                    "columns' ranges: read unpacked")
            if cols is None:
                cols = self.f.columns(sql, names, table=table, where=where, **kw)
        except DB_ERRORS as err:
            raise BadInput(self.shown, f"cannot read the export ({err}): the file is truncated or corrupt")
        for k in ("start_ns", "end_ns"):
            # min/max are single passes without temporaries; clip only the rare hostile file
            if k in cols and len(cols[k]) and (cols[k].max() > MAX_TIME_NS or cols[k].min() < -MAX_TIME_NS):
                cols[k] = np.clip(cols[k], -MAX_TIME_NS, MAX_TIME_NS)
        first = cols.get(names[0]) if names else None
        order = None
        if names and names[0] == "start_ns" and first is not None and len(first) > 1 and \
                bool((first[1:] < first[:-1]).any()):
            # time order, which every model function expects; exports are usually stored so already
            order = np.argsort(first, kind="stable")
            cols = {k: v[order] for k, v in cols.items()}
        if not lazy:
            return cols
        source = sql[sql.index(" FROM "):]

        def load_column(name: str) -> np.ndarray:
            try:
                col = self.f.columns(f"SELECT {lazy[name]}{source}", [name], table=table, where=where)[name]
            except DB_ERRORS as err:
                raise BadInput(self.shown, f"cannot read the export ({err}): the file is truncated or corrupt")
            return col if order is None else col[order]
        return LazyTable(cols, load_column, tuple(lazy))

    # ---------------------------------------------------------------- the trace
    def trace(self) -> Trace:
        strings = self._strings()
        t = Trace(path=self.shown, source="nsys-sqlite", strings=strings.__getitem__, background=True, ids=NSYS_IDS)
        t.enums = self._enums()
        t.meta = self._meta()
        self._metric_names = t.meta.get("gpu_metric_names")
        t.meta["_close"] = self.f.close
        t.meta["_queries"] = self.f.log     # what was read, for the benchmark's same-columns baseline
        specs = {
            "kernels": self._kernels, "copies": self._copies, "memsets": self._memsets, "graphs": self._graphs,
            "syncs": self._syncs, "api_calls": self._api_calls, "ranges": self._ranges, "os_calls": self._os_calls,
            "sched": self._sched, "samples": self._samples, "callchains": self._callchains,
            "os_callchains": self._os_callchains, "gpu_metrics": self._gpu_metrics, "threads": self._threads,
            "processes": self._processes, "event_records": self._event_records,
        }
        source = {"kernels": "CUPTI_ACTIVITY_KIND_KERNEL", "copies": "CUPTI_ACTIVITY_KIND_MEMCPY",
                  "memsets": "CUPTI_ACTIVITY_KIND_MEMSET", "graphs": "CUPTI_ACTIVITY_KIND_GRAPH_TRACE",
                  "syncs": "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION", "api_calls": "CUPTI_ACTIVITY_KIND_RUNTIME",
                  "ranges": "NVTX_EVENTS", "os_calls": "OSRT_API", "sched": "SCHED_EVENTS",
                  "samples": "COMPOSITE_EVENTS", "callchains": "SAMPLING_CALLCHAINS",
                  "os_callchains": "OSRT_CALLCHAINS", "gpu_metrics": "GPU_METRICS", "threads": "ThreadNames",
                  "processes": "PROCESSES", "event_records": "CUPTI_ACTIVITY_KIND_CUDA_EVENT"}
        unread = self._check_columns(t)
        for name, loader in specs.items():
            if name in unread:
                continue
            if self.nonempty(source[name]):
                t.loaders[name] = loader
            elif source[name] not in self.tables and TABLES[name]["absent_flag"]:
                t.absent[name] = f"not recorded (nsys profile {TABLES[name]['absent_flag']})"

        def count(t: Trace, name: str) -> int:     # the trace as an argument: a closure over it would be a cycle
            # rows of the model's table: a table already read is counted by its length (the API table less nsys's
            # backtrace duplicates, GPU metrics only those the diagnoses use); count(*) walks the whole table (2 s of
            # 10M API calls), so it runs only for tables never read
            if name in t._cache:
                return table_len(t._cache[name])
            return self.count(source[name]) if name in t.loaders else 0
        t.count_rows = count
        t.meta["tables"] = sorted(self.tables)
        return t

    def _check_columns(self, t: Trace) -> set[str]:
        """Refuse an export whose GPU work, API calls or ranges lack a column a measurement needs; list the model
        tables left out for a missing column (returned) and the optional columns read as defaults (COLUMNS)."""
        unread, defaulted = set(), []
        for table, (model, required, optional, alternatives) in COLUMNS.items():
            have = self.tables.get(table)
            if have is None or not self.nonempty(table):
                continue
            missing = [c for c in required if c not in have]
            missing += [" or ".join(group) for group in alternatives if not any(c in have for c in group)]
            if missing and model in REFUSED_WITHOUT:
                raise BadInput(self.shown, f"table {table} has no {', '.join(missing)} column, which measuring "
                                           f"its rows needs; the export is damaged or not from nsys")
            if missing:
                unread.add(model)
                t.absent[model] = f"not read: table {table} has no {', '.join(missing)} column"
                continue
            for c in optional:
                if c not in have:
                    defaulted.append(f"{table}.{c}")
                    t.absent[f"{model}.{c}"] = f"no {c} column in {table}: read as unknown"
        if "StringIds" in self.tables and not self.has("StringIds", "id", "value"):
            raise BadInput(self.shown, "table StringIds has no id or value column: no name in the export can be "
                                       "read; the export is damaged or not from nsys")
        if defaulted:
            t.meta.setdefault("notes", []).append(
                "columns this export does not have, read as unknown: " + ", ".join(defaulted))
        return unread

    def _strings(self) -> "_Strings":
        if not self.has("StringIds", "id", "value"):
            return _Strings({})
        rows = self.fetch('SELECT id, value FROM StringIds', ["id", "value"], text=("value",))
        return _Strings(dict(zip(rows["id"].tolist(), rows["value"].tolist())))

    def _enums(self) -> dict[str, dict[int, str]]:
        # 2022.1/2 exports (schema 2.9.1) have no ENUM_* tables; their values are those of later exports
        out = {k: dict(v) for k, v in DEFAULT_ENUMS.items()}
        for table, cols in self.tables.items():
            if table.startswith("ENUM_") and {"id", "label"} <= cols:
                try:
                    out[table[5:].replace("KRENEL", "KERNEL")] = {int(i): str(lab) for i, lab in
                                      self.f.db.execute(f'SELECT id, label FROM "{table}"') if i is not None}
                except (sqlite3.DatabaseError, ValueError, TypeError, OverflowError):
                    continue
        return out

    def _meta(self) -> dict:
        meta: dict = {}
        meta_table = next((t for t in ("META_DATA_EXPORT", "EXPORT_META_DATA") if t in self.tables), None)
        if meta_table:   # EXPORT_META_DATA in schema 2.9-3.1 (2022.1-2023.1)
            try:
                kv = dict(self.f.db.execute(f"SELECT name, value FROM {meta_table}").fetchall())
                meta["nsys_version"] = _text(kv.get("EXPORT_PRODUCT_VERSION")) or None    # a blob or a number
                meta["schema_version"] = _text(kv.get("EXPORT_SCHEMA_VERSION")) or None   # in a damaged file
            except DB_ERRORS:
                pass
        if self.has("ANALYSIS_DETAILS", "startTime", "stopTime"):
            try:
                row = self.f.db.execute("SELECT min(startTime), max(stopTime) FROM ANALYSIS_DETAILS").fetchone()
                if row and row[0] is not None:
                    meta["capture_start_ns"], meta["capture_end_ns"] = int(row[0]), int(row[1] or row[0])
            except (sqlite3.DatabaseError, TypeError, ValueError, OverflowError):
                pass
        if "TARGET_INFO_GPU" in self.tables:
            try:
                cols = self.tables["TARGET_INFO_GPU"]
                sel = ", ".join(c if c in cols else "NULL" for c in ("name", "memoryBandwidth", "smCount", "id"))
                meta["gpus"] = [{"name": _text(r[0]) or "GPU", "memory_bandwidth_Bps": _num(r[1], None),
                                 "sm_count": _num(r[2], None), "id": _num(r[3], None)}
                                for r in self.f.db.execute(f"SELECT {sel} FROM TARGET_INFO_GPU")]
            except DB_ERRORS:
                pass
        if self.has("DIAGNOSTIC_EVENT", "severity", "text"):
            try:   # nsys's own warnings and errors (2 and 3 in ENUM_DIAGNOSTIC_SEVERITY_LEVEL): why data is missing
                meta["diagnostics"] = [str(t) for sev, t in self.f.db.execute(
                    "SELECT severity, text FROM DIAGNOSTIC_EVENT WHERE severity IN (2, 3) ORDER BY severity DESC")
                    if t]
            except DB_ERRORS:
                pass
        if self.has("TARGET_INFO_GPU_METRICS", "metricId", "metricName"):
            try:
                meta["gpu_metric_names"] = {int(i): str(n) for i, n in self.f.db.execute(
                    "SELECT DISTINCT metricId, metricName FROM TARGET_INFO_GPU_METRICS")}
            except (sqlite3.DatabaseError, TypeError, ValueError, OverflowError):
                pass
        return meta

    # ---------------------------------------------------------------- GPU activity
    def _gpu_activity(self, table: str, extra: list[tuple[str, str]],
                      lazy: list[tuple[str, str]] = (), packs: list[list[tuple]] = ()) -> dict[str, np.ndarray]:
        c = lambda col: self.col(table, col)  # noqa: E731
        cols = [("start_ns", c("start")), ("end_ns", c("end")), ("device", c("deviceId")),
                ("stream", c("streamId")), ("correlation", c("correlationId")), ("pid", c("globalPid"))] + extra
        sql = "SELECT " + ", ".join(expr for _, expr in cols) + f' FROM "{table}"'
        return self.fetch(sql, [n for n, _ in cols], lazy=dict(lazy) or None, table=table,
                          packing=Packing(cols, packs) if packs else None)

    def _kernels(self):
        t = "CUPTI_ACTIVITY_KIND_KERNEL"
        c = lambda col, d="-1": self.col(t, col, d)  # noqa: E731
        name = c("shortName") if "shortName" in self.tables[t] else c("demangledName")
        grid = f"{c('gridX')}*{c('gridY')}*{c('gridZ')}" if self.has(t, "gridX", "gridY", "gridZ") else "-1"
        block = f"{c('blockX')}*{c('blockY')}*{c('blockZ')}" if self.has(t, "blockX", "blockY", "blockZ") else "-1"
        # full names: TensorRT detection reads them on every profile; in the same scan they cost one more integer
        # per row, a second scan costs a walk of the whole table (0.5 s of 4.9M kernels)
        extra = [("name_id", name), ("graph_node", f"coalesce({c('graphNodeId', '0')}, 0)"),
                 ("full_name_id", c("demangledName"))]
        # read on first use only: few diagnoses need launch geometry
        lazy = [("grid", grid), ("block", block),
                ("registers", c("registersPerThread"))]
        # correlation, stream and device ids as one value: 3M kernels of launch_bound x40 on one thread, best of 5,
        # 1.125 -> 1.045 s. Packing the two name ids as well saved nothing more (1.054 s): the range tests and
        # shifts cost SQLite about what one value less saves in the driver.
        packs = [[("correlation", ID_BITS), ("stream", STREAM_BITS), ("device", DEVICE_BITS)]]
        return self._gpu_activity(t, extra, lazy, packs)

    def _copies(self):
        t = "CUPTI_ACTIVITY_KIND_MEMCPY"
        c = lambda col, d="-1": self.col(t, col, d)  # noqa: E731
        return self._gpu_activity(t, [("bytes", c("bytes")), ("kind", c("copyKind")),
                                      ("src_kind", c("srcKind")), ("dst_kind", c("dstKind"))])

    def _memsets(self):
        t = "CUPTI_ACTIVITY_KIND_MEMSET"
        return self._gpu_activity(t, [("bytes", self.col(t, "bytes"))])

    def _graphs(self):
        return self._gpu_activity("CUPTI_ACTIVITY_KIND_GRAPH_TRACE",
                                  [("graph_id", self.col("CUPTI_ACTIVITY_KIND_GRAPH_TRACE", "graphId"))])

    def _syncs(self):
        t = "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION"
        c = lambda col, d="-1": self.col(t, col, d)  # noqa: E731
        # 2025.3 re-exports of older captures put 0 in syncType and the real value in deprecatedSyncType
        if self.has(t, "syncType", "deprecatedSyncType"):
            sync_type = 'coalesce(nullif("syncType", 0), "deprecatedSyncType", 0)'
        else:
            sync_type = c("syncType")
        cols = [("start_ns", c("start")), ("end_ns", c("end")), ("stream", c("streamId")), ("pid", c("globalPid")),
                ("correlation", c("correlationId")), ("sync_type", sync_type), ("event", _event_id(c("eventId")))]
        return self.fetch("SELECT " + ", ".join(e for _, e in cols) + f' FROM "{t}"', [n for n, _ in cols], table=t)

    def _event_records(self):
        t = "CUPTI_ACTIVITY_KIND_CUDA_EVENT"
        c = lambda col, d="-1": self.col(t, col, d)  # noqa: E731
        cols = [("correlation", c("correlationId")), ("stream", c("streamId")), ("device", c("deviceId")),
                ("pid", c("globalPid")), ("event", _event_id(c("eventId")))]
        return self.fetch("SELECT " + ", ".join(e for _, e in cols) + f' FROM "{t}"', [n for n, _ in cols], table=t)

    # ---------------------------------------------------------------- CPU side
    def _api_calls(self):
        t = "CUPTI_ACTIVITY_KIND_RUNTIME"
        c = lambda col, d="-1": self.col(t, col, d)  # noqa: E731
        # eventClass 1 is TRACE_PROCESS_EVENT_CUDA_DRIVER (ENUM_NSYS_EVENT_CLASS); runtime and driver share the table.
        # eventClass 67 (CUDA backtrace, 2022 exports) repeats real calls with the same correlation id
        where = '"eventClass" IN (0, 1)' if "eventClass" in self.tables[t] else ""
        cols = [("start_ns", c("start")), ("end_ns", c("end")), ("tid", c("globalTid")),
                ("correlation", c("correlationId")), ("name_id", c("nameId")),
                # 1 for a driver call: eventClass itself, 0 or 1 by `where` (no comparison for SQLite to evaluate)
                ("driver", c("eventClass", "0"))]     # eager: the timeline labels API lanes with it
        lazy = {"callchain": f"coalesce({c('callchainId')}, -1)", "status": f"coalesce({c('returnValue')}, -1)"}
        # correlation id, API name id and the driver flag as one value: 3M calls of launch_bound x40 on one thread,
        # best of 5, 0.761 -> 0.702 s (with a comparison for the flag: 0.721 s)
        packing = Packing(cols, [[("correlation", ID_BITS), ("name_id", ID_BITS), ("driver", 1, False)]])
        rows = self.fetch("SELECT " + ", ".join(e for _, e in cols) + f' FROM "{t}"',
                          [n for n, _ in cols], lazy=lazy, table=t, where=where, packing=packing)
        rows["driver"] = rows["driver"] == 1          # one byte a call, not eight (10M calls: 70 MB)
        return rows

    def _ranges(self):
        t = "NVTX_EVENTS"
        c = lambda col, d="-1": self.col(t, col, d, alias="n")  # noqa: E731
        has_text_id = "textId" in self.tables[t] and self.has("StringIds", "id", "value")
        text = f"coalesce({c('text', 'NULL')}, s.value)" if has_text_id else c("text", "NULL")
        join = f"LEFT JOIN StringIds s ON s.id = {c('textId')}" if has_text_id else ""
        dom = c("domainId", "0")
        domains = {}
        if "domainId" in self.tables[t] and "eventType" in self.tables[t]:
            try:
                for did, name in self.f.db.execute(
                        f'SELECT domainId, text FROM "{t}" WHERE eventType = {NVTX_DOMAIN_CREATE}'):
                    domains[did] = "" if name is None else str(name)
            except DB_ERRORS:
                pass
        etype = c("eventType", str(NVTX_PUSH_POP))
        sql = (f"SELECT {c('start')}, {c('end')}, {c('globalTid')}, {text}, {dom}, ({etype} = {NVTX_PUSH_POP}) "
               f'FROM "{t}" n {join} WHERE {etype} IN ({NVTX_PUSH_POP}, {NVTX_START_END}) AND {c("end")} IS NOT NULL '
               f"AND {c('end')} >= {c('start')} ORDER BY 1")
        rows = self.fetch(sql, ["start_ns", "end_ns", "tid", "name", "domain_id", "push_pop"], text=("name",))
        dom_ids = rows.pop("domain_id")
        rows["domain"] = np.array([domains.get(int(d), "") for d in dom_ids], dtype=object)
        return rows

    def _os_calls(self):
        t = "OSRT_API"
        c = lambda col, d="-1": self.col(t, col, d)  # noqa: E731
        cols = [("start_ns", c("start")), ("end_ns", c("end")), ("tid", c("globalTid")), ("name_id", c("nameId"))]
        # backtrace ids on first use only: no diagnosis reads them (launch_bound x40: 1.6M calls, 12 MB)
        lazy = {"callchain": f"coalesce({c('callchainId')}, -1)"}
        return self.fetch("SELECT " + ", ".join(e for _, e in cols) + f' FROM "{t}"', [n for n, _ in cols],
                          lazy=lazy, table=t)

    def _sched(self):
        t = "SCHED_EVENTS"
        c = lambda col, d="-1": self.col(t, col, d)  # noqa: E731
        cols = [("start_ns", c("start")), ("tid", c("globalTid")), ("cpu", c("cpu")), ("sched_in", c("isSchedIn")),
                ("state", c("threadState")), ("block", f"coalesce({c('threadBlock')}, -1)")]
        return self.fetch("SELECT " + ", ".join(e for _, e in cols) + f' FROM "{t}"', [n for n, _ in cols], table=t)

    def _samples(self):
        t = "COMPOSITE_EVENTS"
        c = lambda col, d="-1": self.col(t, col, d)  # noqa: E731
        cols = [("start_ns", c("start")), ("tid", c("globalTid")), ("callchain", c("id")), ("cpu", c("cpu"))]
        return self.fetch("SELECT " + ", ".join(e for _, e in cols) + f' FROM "{t}"', [n for n, _ in cols], table=t)

    def _chains(self, t):
        c = lambda col, d="-1": self.col(t, col, d)  # noqa: E731
        cols = [("id", c("id")), ("depth", c("stackDepth")), ("symbol_id", c("symbol")), ("module_id", c("module"))]
        # in (id, depth) order; exports store them so, and a scan is cheaper than SQLite's ORDER BY through the
        # primary-key index (and can be sliced): sort here only when needed
        rows = self.fetch("SELECT " + ", ".join(e for _, e in cols) + f' FROM "{t}"', [n for n, _ in cols], table=t)
        i, d = rows["id"], rows["depth"]
        if len(i) > 1 and not bool(((i[1:] > i[:-1]) | ((i[1:] == i[:-1]) & (d[1:] >= d[:-1]))).all()):
            order = np.lexsort((d, i))
            rows = {k: v[order] for k, v in rows.items()}
        return rows

    def _callchains(self):
        return self._chains("SAMPLING_CALLCHAINS")

    def _os_callchains(self):
        return self._chains("OSRT_CALLCHAINS")

    def _gpu_metrics(self):
        t = "GPU_METRICS"
        c = lambda col, d="-1": self.col(t, col, d)  # noqa: E731
        cols = [("start_ns", c("timestamp")), ("metric", c("metricId")), ("value", c("value", "NULL")),
                ("gpu", c("typeId"))]
        names = self._metric_names or {}
        used = sorted(int(i) for i, n in names.items() if any(u in n for u in GPU_METRICS_USED))
        where = f'"metricId" IN ({", ".join(map(str, used))})' if used and "metricId" in self.tables[t] else ""
        return self.fetch("SELECT " + ", ".join(e for _, e in cols) + f' FROM "{t}"',
                          [n for n, _ in cols], floats=("value",), table=t, where=where)

    def _threads(self):
        t = "ThreadNames"
        c = lambda col, d="-1": self.col(t, col, d)  # noqa: E731
        rows = self.fetch(f'SELECT {c("globalTid")}, {c("nameId")} FROM "{t}"', ["tid", "name_id"])
        rows["pid"] = NSYS_IDS.process_of(rows["tid"])
        return rows

    def _processes(self):
        t = "PROCESSES"
        c = lambda col, d="-1": self.col(t, col, d)  # noqa: E731
        return self.fetch(f'SELECT {c("globalPid")}, {c("pid")}, {c("name", "NULL")} FROM "{t}"',
                          ["pid", "os_pid", "name"], text=("name",))


class _Strings(dict):
    def __missing__(self, key):
        return f"<string {key}>"
