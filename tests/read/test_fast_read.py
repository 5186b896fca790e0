"""The fast read path (ADBC -> Arrow C stream -> numpy, rowid slices on threads, read-ahead) gives exactly what
Python's sqlite3 gives, on real exports and on damaged copies of them."""
from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

from nsys_doctor.read import open_trace, sqlfetch
from nsys_doctor.read.nsys_sqlite import read

from ..conftest import zoo

API_SQL = ('SELECT "start", "end", "globalTid", "correlationId", "nameId", ("eventClass" = 1) '
           'FROM "CUPTI_ACTIVITY_KIND_RUNTIME"')
API_WHERE = '"eventClass" IN (0, 1)'
NAMES = ["start_ns", "end_ns", "tid", "correlation", "name_id", "driver"]


def by_sqlite3(path, sql):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = db.execute(sql).fetchall()
    db.close()
    return {n: np.array([r[i] for r in rows], np.int64) for i, n in enumerate(NAMES)}


@pytest.fixture
def small_slices(monkeypatch):
    """Slices of 1,000 rows at least: launch_bound's 245k API calls become MAX_SLICES slices on the reader threads."""
    monkeypatch.setattr(sqlfetch, "SLICE_ROWS", 1000)


def test_sliced_read_equals_sqlite3(small_slices):
    path = zoo("launch_bound")
    want = by_sqlite3(path, f"{API_SQL} WHERE {API_WHERE}")
    f = sqlfetch.Fetcher(str(path))
    try:
        got = f._columns_sliced(API_SQL, API_WHERE, "CUPTI_ACTIVITY_KIND_RUNTIME", NAMES, (), ())
        assert got is not None, "the table is large enough to be sliced"
        whole = f._columns_adbc(f"{API_SQL} WHERE {API_WHERE}", NAMES, (), ())
    finally:
        f.close()
    assert len(want["start_ns"]) == 245474
    for n in NAMES:
        np.testing.assert_array_equal(got[n], want[n])
        np.testing.assert_array_equal(whole[n], want[n])


def test_sliced_read_closes_rowid_gaps(tmp_path, small_slices):
    """A table with holes in its rowids (deleted rows) and a WHERE that drops more: the slices' rows are packed
    back together in rowid order."""
    path = tmp_path / "gaps.sqlite"
    shutil.copy(zoo("launch_bound"), path)
    db = sqlite3.connect(path)
    db.execute('DELETE FROM CUPTI_ACTIVITY_KIND_RUNTIME WHERE rowid % 7 = 3 OR rowid BETWEEN 50000 AND 90000')
    db.commit()
    db.close()
    where = f"{API_WHERE} AND \"nameId\" % 3 != 0"
    want = by_sqlite3(path, f"{API_SQL} WHERE {where}")
    f = sqlfetch.Fetcher(str(path))
    try:
        got = f.columns(API_SQL, NAMES, table="CUPTI_ACTIVITY_KIND_RUNTIME", where=where)
    finally:
        f.close()
    assert 0 < len(want["start_ns"]) < 200_000
    for n in NAMES:
        np.testing.assert_array_equal(got[n], want[n])


def test_arrow_conversion_edge_cases(tmp_path):
    """Synthetic table (edge cases no real export has together): NULLs in integer, float and text columns,
    integral REALs in an integer column, invalid UTF-8, an all-NULL column, an empty result."""
    path = tmp_path / "edge.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (i INTEGER, r, f REAL, s TEXT, z)")
    rows = [(1, 2.0, 1.5, "a", None), (None, 3.0, None, None, None), (7, None, 2, b"\xff\xfeok".decode("latin-1"),
                                                                          None)]
    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)
    db.execute("INSERT INTO t VALUES (8, 4.0, 3.0, CAST(X'C3A9FF' AS TEXT), NULL)")   # é then a stray byte
    db.commit()
    db.close()
    f = sqlfetch.Fetcher(str(path))
    try:
        # the Arrow path itself, not the sqlite3 fallback that columns() would take on an error
        got = f._columns_adbc("SELECT i, r, f, s, z FROM t", ["i", "r", "f", "s", "z"], ("s",), ("f",))
        empty = f._columns_adbc("SELECT i, s FROM t WHERE i > 100", ["i", "s"], ("s",), ())
    finally:
        f.close()
    assert got["i"].tolist() == [1, -1, 7, 8]
    assert got["r"].tolist() == [2, 3, -1, 4]
    assert got["f"][[0, 2, 3]].tolist() == [1.5, 2.0, 3.0] and np.isnan(got["f"][1])
    assert got["s"].tolist() == ["a", "", "\xff\xfeok", "é\ufffd"]
    assert got["z"].tolist() == [-1] * 4
    assert len(empty["i"]) == 0 and len(empty["s"]) == 0


def test_fractional_real_in_integer_column_falls_back_to_sqlite3(tmp_path):
    """ADBC hands back a double column; it is not silently truncated: the sqlite3 path reads it (and clamps)."""
    path = tmp_path / "frac.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (i)")
    db.executemany("INSERT INTO t VALUES (?)", [(1.5,), (2.0,), (1e30,)])
    db.commit()
    db.close()
    f = sqlfetch.Fetcher(str(path))
    try:
        with pytest.raises(TypeError):
            f._columns_adbc("SELECT i FROM t", ["i"], (), ())
        got = f.columns("SELECT i FROM t", ["i"])
    finally:
        f.close()
    assert got["i"].tolist() == [1, 2, np.iinfo(np.int64).max]


def test_read_ahead_gives_the_same_tables():
    path = str(zoo("sync_heavy"))
    plain, ahead = read(path), read(path)
    try:
        ahead.prefetch(list(ahead.loaders))
        for name in plain.loaders:
            a, b = plain.table(name), ahead.table(name)
            assert set(a) <= set(b)
            for col in a:
                np.testing.assert_array_equal(a[col], b[col], err_msg=f"{name}.{col}")
    finally:
        plain.close()
        ahead.close()


def test_close_while_reading_ahead_waits_and_raises_nothing():
    trace = open_trace(zoo("launch_bound"))
    trace.prefetch(list(trace.loaders))
    trace.close()      # the read-ahead thread still holds connections: close waits for it, then closes them


def test_read_ahead_error_is_raised_where_the_table_is_asked_for(tmp_path):
    """A table that cannot be read fails the analysis that asks for it, with the same one-line message, not the
    background thread."""
    path = tmp_path / "broken.sqlite"
    shutil.copy(zoo("sync_heavy"), path)
    trace = read(str(path))
    try:
        def broken():
            raise sqlite3.DatabaseError("database disk image is malformed")
        trace.loaders["kernels"] = broken
        trace.prefetch(["kernels"])
        with pytest.raises(sqlite3.DatabaseError):
            trace.table("kernels")
    finally:
        trace.close()


def test_counts_are_rows_of_the_model_tables():
    """Read tables are counted by length (API calls without nsys's backtrace duplicates); others by count(*)."""
    path = zoo("launch_bound")
    trace = read(str(path))
    try:
        trace.table("api_calls")
        counts = trace.counts()
    finally:
        trace.close()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    sql = {"kernels": "CUPTI_ACTIVITY_KIND_KERNEL", "os_calls": "OSRT_API", "threads": "ThreadNames"}
    for name, table in sql.items():
        assert counts[name] == db.execute(f"SELECT count(*) FROM {table}").fetchone()[0], name
    assert counts["api_calls"] == db.execute(
        "SELECT count(*) FROM CUPTI_ACTIVITY_KIND_RUNTIME WHERE eventClass IN (0, 1)").fetchone()[0]
    assert counts["memsets"] == 0
    db.close()


def test_an_analysed_trace_is_freed_without_the_cycle_collector():
    """No reference cycle keeps a trace's tables alive after its analysis: a fleet worker analyses hundreds in one
    process, and cycles wait for Python's slowest collection (a closure over the trace grew a worker from 137 MB to
    483 MB over 16 reports of launch_bound)."""
    import gc
    import weakref

    from nsys_doctor.analysis import analyze_trace
    gc.collect()
    gc.disable()
    try:
        trace = open_trace(zoo("sync_heavy"))
        ref = weakref.ref(trace)
        report = analyze_trace(trace)
        trace.close()
        del trace, report
        assert ref() is None
    finally:
        gc.enable()
