"""Interval helpers shared by the model and the diagnoses (model/intervals.py, model/arrays.py)."""
from __future__ import annotations

import numpy as np

from nsys_doctor.model.arrays import is_lex_sorted, lexsort2, sort_order
from nsys_doctor.model.intervals import free_within, group_running_max, points_inside, subtract, union
from nsys_doctor.model.requests import find_requests
from nsys_doctor.read import open_trace

from ..conftest import zoo


def _loop_running_max(g, v):
    out = np.empty(len(v), np.int64)
    for x in np.unique(g):
        m = np.flatnonzero(g == x)
        out[m] = np.maximum.accumulate(v[m])
    return out


def test_group_running_max_on_requests_kernels():
    # the end of everything a request ran so far, per request, from launch_bound's kernels (what launch_overhead
    # measures its launch gaps against), checked against a plain per-request loop
    tr = open_trace(zoo("launch_bound"))
    try:
        rq = find_requests(tr)
        r = rq.gpu_request["kernels"]
        k = tr.table("kernels")
        m = r >= 0
        g, s, e = r[m], k["start_ns"][m], k["end_ns"][m]
        o = lexsort2(s, g)
        if o is not None:
            g, e = g[o], e[o]
        assert np.array_equal(group_running_max(g, e), _loop_running_max(g, e))
    finally:
        tr.close()


def test_group_running_max_cannot_overflow():
    # synthetic edge case: times at both ends of int64 in many groups, where shifting the times by group would wrap
    g = np.repeat(np.arange(5), 4)
    v = np.array([np.iinfo(np.int64).min + 1, 5, np.iinfo(np.int64).max - 1, 0] * 5, np.int64)
    assert np.array_equal(group_running_max(g, v), _loop_running_max(g, v))


def test_sort_helpers_agree_with_numpy():
    rng = np.random.default_rng(3)
    major, minor = rng.integers(0, 5, 200), rng.integers(-10, 10, 200)
    o = lexsort2(minor, major)
    assert np.array_equal(o, np.lexsort((minor, major)))
    o2 = np.lexsort((minor, major))
    assert is_lex_sorted(major[o2], minor[o2]) and lexsort2(minor[o2], major[o2]) is None
    assert sort_order(np.arange(5)) is None and np.array_equal(sort_order(minor), np.argsort(minor, kind="stable"))


def test_free_within_is_the_complement_of_busy():
    busy = union(np.array([10, 30, 35, 80]), np.array([20, 40, 50, 80]))   # synthetic: one empty block at 80
    fs, fe = free_within(*busy, 0, 100)
    assert list(zip(fs.tolist(), fe.tolist())) == [(0, 10), (20, 30), (50, 100)]
    ss, se = subtract(np.array([0]), np.array([100]), *busy)
    assert np.array_equal(ss, fs) and np.array_equal(se, fe)
    assert points_inside(np.array([0, 10, 19, 20, 45, 80]), *busy).tolist() == [False, True, True, False, True,
                                                                               False]
