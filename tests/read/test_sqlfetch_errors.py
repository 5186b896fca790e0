"""sqlfetch's fast path falls back to sqlite3 only for the errors a hostile file can cause (issue 13 item 8); a bug
in it is raised instead of silently making every read 3x slower, and each fallback is logged."""
from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

from nsys_doctor.read import arrow_c, open_trace, sqlfetch

from ..conftest import zoo

pytestmark = pytest.mark.skipif(sqlfetch._adbc is None, reason="the ADBC driver is not installed")


def test_real_export_is_read_without_a_fallback():
    trace = open_trace(zoo("launch_bound"))
    try:
        for name in trace.loaders:
            trace.table(name)
        fetcher = trace.meta["_close"].__self__
        assert fetcher.fast and fetcher.fallbacks == []
    finally:
        trace.close()


def test_a_bug_in_the_fast_path_is_raised(monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("a bug")
    monkeypatch.setattr(arrow_c, "numbers_into", broken)
    f = sqlfetch.Fetcher(str(zoo("launch_bound")))
    try:
        with pytest.raises(KeyError):
            f.columns('SELECT "start" FROM CUPTI_ACTIVITY_KIND_KERNEL', ["start_ns"])
        with pytest.raises(KeyError):       # the sliced read on the reader threads too
            f.columns('SELECT "start" FROM CUPTI_ACTIVITY_KIND_RUNTIME', ["start_ns"],
                      table="CUPTI_ACTIVITY_KIND_RUNTIME")
    finally:
        f.close()


def test_mixed_types_fall_back_and_say_so(tmp_path):
    """Text in an integer column of a copy of a real export: the driver refuses it, sqlite3 reads it; logged."""
    path = tmp_path / "mixed.sqlite"
    shutil.copy(zoo("launch_bound"), path)
    db = sqlite3.connect(path)
    db.execute("UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET correlationId = 'x' WHERE rowid % 1000 = 7")
    db.commit()
    want = np.array([r[0] if isinstance(r[0], int) else -1 for r in
                     db.execute("SELECT correlationId FROM CUPTI_ACTIVITY_KIND_KERNEL")], np.int64)
    db.close()
    f = sqlfetch.Fetcher(str(path))
    try:
        got = f.columns("SELECT correlationId FROM CUPTI_ACTIVITY_KIND_KERNEL", ["correlation"])["correlation"]
        assert f.fallbacks and "CUPTI_ACTIVITY_KIND_KERNEL" in f.fallbacks[-1]
    finally:
        f.close()
    np.testing.assert_array_equal(got, want)
