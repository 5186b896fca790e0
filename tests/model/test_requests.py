"""Requests on the real zoo profiles, checked against independent SQL (tests/model/README: queries below)."""
import sqlite3

import numpy as np
import pytest

from nsys_doctor.model.requests import find_requests
from nsys_doctor.read import open_trace
from tests.conftest import zoo


def sql(path, q):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(q).fetchall()
    finally:
        db.close()


NVTX_COUNT = ("SELECT count(*) FROM NVTX_EVENTS WHERE eventType = 59 AND text = 'Inference'")


@pytest.mark.parametrize("name", ["healthy", "sync_heavy", "launch_bound", "thread_contention", "memcpy_pageable"])
def test_request_count_and_range_match_sql(name):
    path = zoo(name)
    (n,), = sql(path, NVTX_COUNT)
    req = find_requests(open_trace(path))
    assert req.range_name == "Inference" and not req.inferred
    assert req.count == n


def test_healthy_latency_includes_queued_gpu_work():
    # profiles/README: each range lasts ~20 ms on the CPU but its GPU work ends ~82 ms after it began
    path = zoo("healthy")
    req = find_requests(open_trace(path))
    t, m = req.table, req.measured
    assert 19 < np.median(t["cpu_ns"][m]) / 1e6 < 21.5
    assert 78 < np.median(t["latency_ns"][m]) / 1e6 < 86
    assert req.warmup == 3          # zoo.py warms up three times, then synchronises
    # independent check: end of the last kernel launched from inside request 10, by correlation id in SQL
    s, e, tid = (int(x) for x in (t["start_ns"][10], t["end_ns"][10], t["tid"][10]))
    (gpu_end,), = sql(path, f"""SELECT max(k.end) FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN CUPTI_ACTIVITY_KIND_RUNTIME r
                        ON r.correlationId = k.correlationId WHERE r.globalTid = {tid} AND r.start BETWEEN {s} AND {e}""")
    assert t["gpu_end_ns"][10] >= gpu_end
    assert abs(t["latency_ns"][10] - (max(gpu_end, e) - s)) < 1e6   # memcpy/memset may end later by < 1 ms


def test_breakdown_adds_up_to_latency():
    req = find_requests(open_trace(zoo("sync_heavy")))
    t = req.table
    total = t["compute_ns"] + t["copy_ns"] + t["other_gpu_ns"] + t["idle_ns"]
    assert np.all(np.abs(total - t["latency_ns"]) <= 1)


def test_no_nvtx_iterations_are_inferred():
    # zoo.py no_nvtx: 3 warm-up + 60 iterations, each ending in .cpu() (a stream synchronize)
    req = find_requests(open_trace(zoo("no_nvtx")))
    assert req.inferred
    assert 58 <= req.count <= 63
    lat = np.median(req.table["latency_ns"][req.measured]) / 1e6
    assert 5 < lat < 40


@pytest.mark.parametrize("name", ["healthy", "sync_heavy", "memcpy_pageable"])
def test_latency_percentiles_match_sql(name):
    """End-to-end latency per request computed in SQL alone: from the range's start to the later of its end and the
    end of the last kernel, copy or memset launched by a CUDA call on its thread inside it (correlation id join)."""
    from nsys_doctor.analysis import analyze
    path = zoo(name)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        db.execute("CREATE TEMP TABLE gpu AS SELECT correlationId c, globalPid p, end e FROM CUPTI_ACTIVITY_KIND_KERNEL "
                   "UNION ALL SELECT correlationId, globalPid, end FROM CUPTI_ACTIVITY_KIND_MEMCPY "
                   "UNION ALL SELECT correlationId, globalPid, end FROM CUPTI_ACTIVITY_KIND_MEMSET")
        db.execute("CREATE INDEX temp.gi ON gpu(c, p)")
        rows = db.execute("""
            SELECT n.start, max(n.end, coalesce((SELECT max(g.e) FROM CUPTI_ACTIVITY_KIND_RUNTIME r
                   JOIN gpu g ON g.c = r.correlationId AND g.p = (r.globalTid >> 24) << 24
                   WHERE r.globalTid = n.globalTid AND r.start BETWEEN n.start AND n.end), 0)) - n.start
            FROM NVTX_EVENTS n WHERE n.eventType = 59 AND n.text = 'Inference' ORDER BY n.start""").fetchall()
    finally:
        db.close()
    report = analyze(path)
    warm = report.requests["warmup"]
    lat_ms = np.array([r[1] for r in rows][warm:]) / 1e6
    for q in (50, 90, 99):
        assert report.requests["latency_ms"][f"p{q}"] == pytest.approx(np.percentile(lat_ms, q), rel=0.005)
