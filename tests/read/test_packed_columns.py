"""Packed columns (sqlfetch.Packing): the reader asks SQLite for several small ids as one int64 and splits it again;
a row that cannot be packed (NULL, text, negative or too large) makes it read the table unpacked, so the columns are
always what Python's sqlite3 reads from the plain query. Expected values here come from sqlite3 and a conversion
written in this file (NULL or non-numeric text -> -1, a REAL -> truncated), not from the reader's own helpers."""
from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

from nsys_doctor.read import nsys_sqlite, open_trace, sqlfetch

from ..conftest import zoo

KERNEL_COLS = {"device": "deviceId", "stream": "streamId", "correlation": "correlationId"}
API_COLS = {"correlation": "correlationId", "name_id": "nameId"}


def _as_int(v) -> int:
    if v is None:
        return -1
    if isinstance(v, (bytes, str)):
        try:
            return int(float(v))
        except ValueError:
            return -1
    return int(v)


def _expected(path, table: str, cols: dict[str, str], where: str = "") -> dict[str, np.ndarray]:
    """sqlite3's reading of the plain columns, in the reader's row order (rowid order, then stable by start)."""
    db = sqlite3.connect(path)
    rows = db.execute(f'SELECT "start", {", ".join(cols.values())} FROM {table} {where} ORDER BY rowid').fetchall()
    db.close()
    start = np.array([r[0] for r in rows], np.int64)
    order = np.argsort(start, kind="stable")
    return {name: np.array([_as_int(r[k + 1]) for r in rows], np.int64)[order] for k, name in enumerate(cols)}


def _read(path):
    trace = open_trace(str(path))
    try:
        got = {name: {k: np.asarray(v).copy() for k, v in trace.table(name).items()}
               for name in ("kernels", "api_calls")}
        return got, list(trace.meta["_close"].__self__.fallbacks), list(trace.meta["_queries"])
    finally:
        trace.close()


def test_a_real_export_is_read_packed_and_equals_sqlite3():
    path = zoo("launch_bound")
    got, fallbacks, queries = _read(path)
    assert fallbacks == []
    assert any("<<" in q and "CUPTI_ACTIVITY_KIND_KERNEL" in q for q in queries)    # the packed query ran
    assert any("<<" in q and "CUPTI_ACTIVITY_KIND_RUNTIME" in q for q in queries)
    for name, value in _expected(path, "CUPTI_ACTIVITY_KIND_KERNEL", KERNEL_COLS).items():
        np.testing.assert_array_equal(got["kernels"][name], value)
    where = 'WHERE "eventClass" IN (0, 1)'
    want = _expected(path, "CUPTI_ACTIVITY_KIND_RUNTIME", {**API_COLS, "driver": "eventClass"}, where)
    for name in API_COLS:
        np.testing.assert_array_equal(got["api_calls"][name], want[name])
    np.testing.assert_array_equal(got["api_calls"]["driver"], want["driver"] == 1)
    assert 0 < got["api_calls"]["driver"].sum() < len(want["driver"])     # both kinds of call are there


# a synthetic edge case each: a copy of a real export with odd values written into the packed columns
ODD = [
    ("CUPTI_ACTIVITY_KIND_KERNEL", "correlationId", str(2**31)),       # one past the 31 bits
    ("CUPTI_ACTIVITY_KIND_KERNEL", "streamId", str(2**24)),            # one past the 24 bits
    ("CUPTI_ACTIVITY_KIND_KERNEL", "deviceId", "-3"),                  # negative
    ("CUPTI_ACTIVITY_KIND_KERNEL", "correlationId", "NULL"),
    ("CUPTI_ACTIVITY_KIND_KERNEL", "streamId", "'x'"),                  # text
    ("CUPTI_ACTIVITY_KIND_KERNEL", "correlationId", "X'00ff'"),         # a blob
    ("CUPTI_ACTIVITY_KIND_RUNTIME", "nameId", str(2**40)),
    ("CUPTI_ACTIVITY_KIND_RUNTIME", "correlationId", "NULL"),
    ("CUPTI_ACTIVITY_KIND_RUNTIME", "nameId", "'12abc'"),
]


@pytest.mark.parametrize("table,column,value", ODD, ids=[f"{c}={v}" for _, c, v in ODD])
def test_odd_values_read_the_table_unpacked(tmp_path, table, column, value):
    path = tmp_path / "odd.sqlite"
    shutil.copy(zoo("launch_bound"), path)
    db = sqlite3.connect(path)
    db.execute(f"UPDATE {table} SET {column} = {value} WHERE rowid % 997 = 5")
    db.commit()
    db.close()
    got, fallbacks, _ = _read(path)
    assert any(f.startswith("packed:") and table in f for f in fallbacks)
    for name, want in _expected(path, "CUPTI_ACTIVITY_KIND_KERNEL", KERNEL_COLS).items():
        np.testing.assert_array_equal(got["kernels"][name], want)
    for name, want in _expected(path, "CUPTI_ACTIVITY_KIND_RUNTIME", API_COLS, 'WHERE "eventClass" IN (0, 1)').items():
        np.testing.assert_array_equal(got["api_calls"][name], want)


def test_reals_and_the_largest_values_are_packed_exactly(tmp_path):
    """Synthetic table: the top of each range packs and unpacks exactly; a REAL in range is truncated as sqlite3's
    reading converts it; one value past a range sends the whole read to the plain query."""
    path = tmp_path / "edge.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (a INTEGER, b INTEGER, c INTEGER)")
    rows = [(0, 0, 0), (2**31 - 1, 2**24 - 1, 255), (7.9, 3, 1), (5, 2.5, 0), (123456, 17, 3)]
    db.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    db.commit()
    db.close()
    cols = [("a", '"a"'), ("b", '"b"'), ("c", '"c"')]
    packing = sqlfetch.Packing(cols, [[("a", 31), ("b", 24), ("c", 8)]])
    f = sqlfetch.Fetcher(str(path))
    try:
        got = packing.unpack(f.columns(f"SELECT {packing.select} FROM t", packing.packed_names))
        for k, name in enumerate("abc"):
            np.testing.assert_array_equal(got[name], [_as_int(r[k]) for r in rows])
    finally:
        f.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE t SET c = 256 WHERE rowid = 3")
    db.commit()
    db.close()
    f = sqlfetch.Fetcher(str(path))
    try:
        assert packing.unpack(f.columns(f"SELECT {packing.select} FROM t", packing.packed_names)) is None
    finally:
        f.close()


def test_a_column_the_export_lacks_is_not_packed():
    """A missing column reads as the constant -1 (_Reader.col), which no range admits: it stays a plain column,
    and a group left with one part is not packed at all."""
    cols = [("s", '"start"'), ("corr", '"correlationId"'), ("stream", "-1"), ("dev", "-1")]
    p = sqlfetch.Packing(cols, [[("corr", nsys_sqlite.ID_BITS), ("stream", nsys_sqlite.STREAM_BITS),
                                 ("dev", nsys_sqlite.DEVICE_BITS)]])
    assert p.groups == [] and p.packed_names == ["s", "corr", "stream", "dev"]
