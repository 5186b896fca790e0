"""Damage done to a real export, one SQL statement at a time: shared by the property tests and fuzz/fuzz_readers.py.

Each mutation is (kind, table, column, rows) applied with `apply(db, ...)` to a writable sqlite3 connection of a
*copy*. Statements that the schema refuses (a NOT NULL or PRIMARY KEY constraint, a column that cannot be dropped)
are skipped: what the file can hold is what a damaged export can hold.
"""
from __future__ import annotations

import random
import sqlite3

# The tables the reader loads, then the ones it reads for metadata. Mutations pick from those present in the file.
TABLES = ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_MEMSET",
          "CUPTI_ACTIVITY_KIND_RUNTIME", "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION", "CUPTI_ACTIVITY_KIND_GRAPH_TRACE",
          "NVTX_EVENTS", "StringIds", "ThreadNames", "PROCESSES", "OSRT_API", "OSRT_CALLCHAINS", "SCHED_EVENTS",
          "COMPOSITE_EVENTS", "SAMPLING_CALLCHAINS", "GPU_METRICS", "TARGET_INFO_GPU", "TARGET_INFO_GPU_METRICS",
          "ANALYSIS_DETAILS", "META_DATA_EXPORT", "DIAGNOSTIC_EVENT", "ENUM_NSYS_EVENT_TYPE", "ENUM_CUPTI_SYNC_TYPE",
          "ENUM_CUDA_MEMCPY_OPER")

INT64_MAX = 2**63 - 1
VALUE_KINDS = ("null", "negative", "zero", "huge", "int64_max", "int64_min", "real", "inf", "nan_text",
               "text", "markup", "blob", "non_utf8_text")
ROW_KINDS = ("duplicate", "delete", "swap_start_end", "zero_duration", "negative_duration", "shuffle_ids")
SCHEMA_KINDS = ("drop_table", "rename_column", "drop_column", "rename_table", "empty_table")
KINDS = VALUE_KINDS + ROW_KINDS + SCHEMA_KINDS

STRINGS = ("", "<script>alert(1)</script>", "[red]boom[/red]", "[/]", "\x1b[31mred", "a\x1fb", "x" * 5000,
           "naïve ☃", "\u202eevil", "%s%d{0}", "'; DROP TABLE StringIds; --")


def value_sql(kind: str, rnd: random.Random) -> tuple[str, tuple]:
    """(SQL expression, parameters) for a value mutation."""
    if kind == "null":
        return "NULL", ()
    if kind == "negative":
        return "?", (-rnd.choice((1, 2, 1000, 10**9, 10**15)),)
    if kind == "zero":
        return "0", ()
    if kind == "huge":
        return "?", (rnd.choice((2**31, 2**32 + 7, 2**53, 2**62, 10**18)),)
    if kind == "int64_max":
        return "?", (INT64_MAX,)
    if kind == "int64_min":
        return "?", (-INT64_MAX - 1,)
    if kind == "real":
        return "?", (rnd.choice((0.5, -0.5, 1e300, -1e300, 3.75e9)),)
    if kind == "inf":
        return rnd.choice(("9e999", "-9e999")), ()
    if kind == "nan_text":
        return "?", (rnd.choice(("NaN", "inf", "12abc", "0x10", " 5 ")),)
    if kind == "text":
        return "?", (rnd.choice(STRINGS),)
    if kind == "markup":
        return "?", (rnd.choice(("<script>x</script>", "[red]x[/red]", "[bold]", "</td><b>", "&amp;")),)
    if kind == "blob":
        return "?", (bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 12))),)
    if kind == "non_utf8_text":   # TEXT affinity but invalid UTF-8: what a broken writer leaves
        return "CAST(? AS TEXT)", (rnd.choice((b"\xff\xfe\x00x", b"\xc3\x28", b"ok\x80", b"\xed\xa0\x80")),)
    raise ValueError(kind)


def tables_of(db: sqlite3.Connection) -> dict[str, list[str]]:
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return {t: [r[1] for r in db.execute(f'PRAGMA table_info("{t}")')] for t in names}


def where_rows(db: sqlite3.Connection, table: str, rnd: random.Random, share: float) -> str:
    """A WHERE clause over rowids: all rows, one row, or a random share."""
    if share >= 1:
        return ""
    n = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    if n == 0:
        return ""
    if share <= 0:
        return f"WHERE rowid IN (SELECT rowid FROM \"{table}\" LIMIT 1 OFFSET {rnd.randrange(n)})"
    ids = [r[0] for r in db.execute(f'SELECT rowid FROM "{table}"')]
    pick = rnd.sample(ids, max(1, int(len(ids) * share)))
    return "WHERE rowid IN (" + ",".join(map(str, pick)) + ")"


def loosen(db: sqlite3.Connection, table: str) -> None:
    """Rebuild `table` without its NOT NULL / PRIMARY KEY constraints (CREATE TABLE AS keeps names and data only),
    so that a NULL or a duplicate id can be written where the export's schema forbids one."""
    db.execute(f'CREATE TABLE "{table}__loose" AS SELECT * FROM "{table}"')
    db.execute(f'DROP TABLE "{table}"')
    db.execute(f'ALTER TABLE "{table}__loose" RENAME TO "{table}"')


def apply(db: sqlite3.Connection, kind: str, table: str, column: str | None, share: float,
          rnd: random.Random) -> str:
    """Apply one mutation; returns what it did, in words (for failure messages). Never raises on a refused one."""
    what = f"{kind} {table}.{column} share={share}"
    cols = tables_of(db).get(table)
    if cols is None:
        return what + " (no such table)"
    if column not in cols:
        column = rnd.choice(cols) if cols else None
    try:
        return _apply(db, kind, table, column, cols, share, rnd, what)
    except sqlite3.IntegrityError:          # NOT NULL, PRIMARY KEY: write it anyway into a loosened copy
        try:
            loosen(db, table)
            return _apply(db, kind, table, column, cols, share, rnd, what) + " (constraints dropped)"
        except sqlite3.DatabaseError as err:
            return what + f" (refused: {err})"
    except sqlite3.DatabaseError as err:     # "cannot drop PRIMARY KEY column", ...
        return what + f" (refused: {err})"


def _apply(db, kind, table, column, cols, share, rnd, what) -> str:
    if kind in VALUE_KINDS:
        expr, params = value_sql(kind, rnd)
        db.execute(f'UPDATE "{table}" SET "{column}" = {expr} {where_rows(db, table, rnd, share)}', params)
    elif kind == "duplicate":
        db.execute(f'INSERT INTO "{table}" SELECT * FROM "{table}" {where_rows(db, table, rnd, share)}')
    elif kind == "delete":
        db.execute(f'DELETE FROM "{table}" {where_rows(db, table, rnd, share)}')
    elif kind in ("swap_start_end", "zero_duration", "negative_duration"):
        if "start" in cols and "end" in cols:
            expr = {"swap_start_end": '"start" = "end", "end" = "start"', "zero_duration": '"end" = "start"',
                    "negative_duration": '"end" = "start" - 1 - abs(random() % 1000000)'}[kind]
            db.execute(f'UPDATE "{table}" SET {expr} {where_rows(db, table, rnd, share)}')
    elif kind == "shuffle_ids":
        db.execute(f'UPDATE "{table}" SET "{column}" = abs(random()) % 1000 {where_rows(db, table, rnd, share)}')
    elif kind == "drop_table":
        db.execute(f'DROP TABLE "{table}"')
    elif kind == "rename_column":
        db.execute(f'ALTER TABLE "{table}" RENAME COLUMN "{column}" TO "{column}_gone"')
    elif kind == "drop_column":
        db.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
    elif kind == "rename_table":
        db.execute(f'ALTER TABLE "{table}" RENAME TO "{table}_old"')
    elif kind == "empty_table":
        db.execute(f'DELETE FROM "{table}"')
    else:
        raise ValueError(kind)
    return what


def random_mutation(db: sqlite3.Connection, rnd: random.Random) -> str:
    """One mutation picked at random among the tables this file has (for the fuzzer)."""
    have = tables_of(db)
    pool = [t for t in TABLES if t in have] or list(have)
    if not pool:
        return "no tables"
    table = rnd.choice(pool)
    cols = have[table]
    prefer = [c for c in cols if c in ("start", "end", "correlationId", "nameId", "globalTid", "globalPid", "id",
                                       "value", "text", "textId", "shortName", "demangledName", "deviceId",
                                       "eventType", "domainId", "bytes", "copyKind", "startTime", "stopTime")]
    column = rnd.choice(prefer or cols) if cols else None
    kind = rnd.choice(KINDS if rnd.random() < 0.15 else VALUE_KINDS + ROW_KINDS)
    share = rnd.choice((0.0, 0.0, 0.1, 0.5, 1.0))
    return apply(db, kind, table, column, share, rnd)
