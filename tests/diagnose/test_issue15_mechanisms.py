"""memory_allocation, polling waits (cuda_sync) and per-request model reloads (model_loading) on the H200 recordings
in tests/data: facts counted with plain SQL on the export (calls inside the measured 'Inference' ranges on their
thread), then the findings."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from nsys_doctor.analysis import analyze
from nsys_doctor.diagnose import memory_allocation
from nsys_doctor.model.changes import RemoveCpuTime, RemoveHostWaits
from nsys_doctor.model.requests import find_requests

from ..conftest import DATA, expand

WARMUP = 3   # every example serves 3 warm-up requests first (tests/data/README.md)
_REPORTS: dict = {}


def _report(name):
    if name not in _REPORTS:
        _REPORTS[name] = analyze(expand(DATA / f"{name}.sqlite.xz"))
    return _REPORTS[name]


def _calls(name: str, where: str) -> tuple[int, float, int]:
    """(count, total ms) of runtime calls whose name matches the SQL condition `where` (on i.value) inside the
    measured ranges on their thread, and the number of measured ranges."""
    db = sqlite3.connect(f"file:{expand(DATA / f'{name}.sqlite.xz')}?mode=ro", uri=True)
    try:
        ranges = db.execute("SELECT e.start, e.end, e.globalTid FROM NVTX_EVENTS e LEFT JOIN StringIds t "
                            "ON e.textId = t.id WHERE coalesce(e.text, t.value) = 'Inference' ORDER BY e.start"
                            ).fetchall()[WARMUP:]
        n, ns = 0, 0
        for s, e, tid in ranges:
            c, d = db.execute("SELECT count(*), coalesce(sum(r.end - r.start), 0) FROM CUPTI_ACTIVITY_KIND_RUNTIME r "
                              f"JOIN StringIds i ON i.id = r.nameId WHERE r.globalTid = ? AND r.start BETWEEN ? AND ? "
                              f"AND ({where})", (tid, s, e)).fetchone()
            n, ns = n + c, ns + d
        return n, ns / 1e6, len(ranges)
    finally:
        db.close()


def _finding(report, category):
    return next((f for f in report.findings if f.category == category), None)


def test_alloc_before_allocation_is_the_top_finding_with_the_calls_counted_by_sql():
    n_malloc, _, n = _calls("ex_alloc_before", "i.value LIKE 'cudaMalloc%'")
    n_free, _, _ = _calls("ex_alloc_before", "i.value LIKE 'cudaFree%'")
    calls, ms, _ = _calls("ex_alloc_before", "i.value LIKE 'cudaMalloc%' OR i.value LIKE 'cudaFree%' OR "
                          "i.value LIKE 'cudaHostAlloc%'")
    assert n == 40 and n_malloc + n_free == calls and calls / n > 300      # PyTorch's caching allocator is off
    rep = _report("ex_alloc_before")
    top = rep.findings[0]
    assert top.category == "memory_allocation" and top.severity == "high"
    num = top.evidence.numbers
    assert num["allocation_calls_per_request"] == pytest.approx(calls / n, abs=0.01)
    assert num["allocation_calls_by_name_per_request"]["cudaMalloc"] == pytest.approx(n_malloc / n, abs=0.01)
    assert num["allocation_api_ms_per_request"] == pytest.approx(ms / n, rel=1e-3)
    assert num["waiting_frees_per_request"] == pytest.approx(n_free / n, abs=0.01)
    # the claim covers the calls' own time at least, and cannot exceed the latency
    assert ms / n <= top.impact_ms <= num["mean_latency_ms"]
    # the program's own clock: 20.89 ms/request with the allocator off, 3.82 with it on (tests/data/pairs.json);
    # the prediction is within the calibration band [0.75, 1.33] of that measured saving
    assert 0.75 <= top.impact_ms / (20.89 - 3.82) <= 1.33
    # cudaFree waits are claimed here, not again by cuda_sync
    sync = _finding(rep, "cuda_sync")
    assert sync is None or "cudaFree" not in sync.evidence.numbers["syncs_by_call_per_request"]


def test_alloc_after_has_no_allocation_finding():
    calls, _, _ = _calls("ex_alloc_after", "i.value LIKE 'cudaMalloc%' OR i.value LIKE 'cudaFree%'")
    assert calls == 0                                  # the caching allocator serves every request
    assert _finding(_report("ex_alloc_after"), "memory_allocation") is None


def test_alloc_change_is_said_in_the_change_vocabulary():
    from nsys_doctor.analysis import open_trace
    from nsys_doctor.diagnose import Context
    from nsys_doctor.model.requests import find_requests
    trace = open_trace(expand(DATA / "ex_alloc_before.sqlite.xz"))
    try:
        ctx = Context(trace, find_requests(trace))
        m = memory_allocation.measure(ctx)
        ch = memory_allocation.change(m)
        assert [type(c) for c in ch] == [RemoveHostWaits, RemoveCpuTime]
        api = trace.table("api_calls")
        names = {trace.name(i).split("_")[0] for i in np.unique(api["name_id"][ch[0].api_rows])}
        assert names == {"cudaFree"}
        # the calls themselves, then the CPU time between two of them (test_alloc_load_changes.py)
        assert len(ch[1].tid) == len(m.rows) + len(m.gaps[0])
        assert (ch[1].start_ns[:len(m.rows)] == api["start_ns"][m.rows]).all()
    finally:
        trace.close()


def test_polling_before_spin_loops_are_host_waits():
    queries, _, n = _calls("ex_polling_before", "i.value LIKE 'cudaEventQuery%'")
    assert queries / n > 100                           # the program spins on torch.cuda.Event.query()
    f = _finding(_report("ex_polling_before"), "cuda_sync")
    assert f is not None and f.severity in ("medium", "high")
    num = f.evidence.numbers
    assert next(iter(num["syncs_by_call_per_request"])) == "cudaEventQuery"
    # at most one loop per block (16 blocks, examples/polling_wait.py); loops cover most of the queries
    assert 8 <= num["polling_loops_per_request"] <= 16
    assert num["polling_loops_per_request"] * num["queries_per_polling_loop"] <= queries / n
    assert num["polling_loops_per_request"] * num["queries_per_polling_loop"] >= 0.8 * queries / n
    # a real saving: 4.45 -> 2.89 ms/request by the program's own clock (pairs.json); the claim is below the latency
    assert 0.1 * num["mean_latency_ms"] < f.impact_ms < num["mean_latency_ms"]


def test_polling_after_gets_no_sync_finding():
    queries, _, _ = _calls("ex_polling_after", "i.value LIKE 'cudaEventQuery%'")
    assert queries == 0
    assert _finding(_report("ex_polling_after"), "cuda_sync") is None


def _reload_facts(name):
    """Per measured request (SQL): host-to-device bytes copied, OS read calls on the request's thread."""
    db = sqlite3.connect(f"file:{expand(DATA / f'{name}.sqlite.xz')}?mode=ro", uri=True)
    try:
        ranges = db.execute("SELECT e.start, e.end, e.globalTid FROM NVTX_EVENTS e LEFT JOIN StringIds t "
                            "ON e.textId = t.id WHERE coalesce(e.text, t.value) = 'Inference' ORDER BY e.start"
                            ).fetchall()[WARMUP:]
        up, reads = 0, 0
        for s, e, tid in ranges:
            up += db.execute("SELECT coalesce(sum(m.bytes), 0) FROM CUPTI_ACTIVITY_KIND_MEMCPY m JOIN "
                             "CUPTI_ACTIVITY_KIND_RUNTIME r ON r.correlationId = m.correlationId WHERE m.copyKind = 1 "
                             "AND r.globalTid = ? AND r.start BETWEEN ? AND ?", (tid, s, e)).fetchone()[0]
            reads += db.execute("SELECT count(*) FROM OSRT_API o JOIN StringIds i ON i.id = o.nameId WHERE "
                                "i.value IN ('read', 'pread', 'pread64') AND o.globalTid = ? "
                                "AND o.start BETWEEN ? AND ?", (tid, s, e)).fetchone()[0]
        return up / len(ranges), reads / len(ranges)
    finally:
        db.close()


def test_reload_before_every_request_loads_the_model():
    up, reads = _reload_facts("ex_reload_before")
    assert up > 250 * 2**20 and reads > 10           # each request reads its checkpoint and uploads ~288 MiB
    rep = _report("ex_reload_before")
    top = rep.findings[0]
    assert top.category == "model_loading" and top.severity == "high"
    assert "resident" in top.fix and "cache" in top.fix
    num = top.evidence.numbers
    assert num["loading_requests"] == 20 and num["loading_request_share_pct"] == 100.0
    assert num["all_uploads_mib_per_load"] == pytest.approx(up / 2**20, rel=1e-3)
    # the program's own clock: 239.43 -> 2.73 ms/request with the model resident (pairs.json)
    assert 0.75 <= top.impact_ms / (239.43 - 2.73) <= 1.33
    assert _finding(rep, "gpu_underutilization") is None   # not reported as data loading


def test_reload_after_gets_no_model_loading():
    up, reads = _reload_facts("ex_reload_after")
    assert up == 512 * 16384 * 4 and reads == 0     # only its input batch (512 x 16384 fp32) is uploaded
    assert _finding(_report("ex_reload_after"), "model_loading") is None


def test_reload_change_moves_every_upload_of_the_loads():
    from nsys_doctor.analysis import open_trace
    from nsys_doctor.diagnose import Context, model_loading
    from nsys_doctor.model.changes import MoveOutOfRequests
    up, _ = _reload_facts("ex_reload_before")
    trace = open_trace(expand(DATA / "ex_reload_before.sqlite.xz"))
    try:
        ctx = Context(trace, find_requests(trace))
        (ch,) = model_loading.change(model_loading.measure(ctx))
        assert isinstance(ch, MoveOutOfRequests) and ch.table == "copies"
        assert trace.table("copies")["bytes"][ch.rows].sum() == pytest.approx(20 * up, rel=1e-9)
        # one load window per loading request, inside its request
        t = ctx.requests.table
        assert len(ch.tid) == 20
        assert np.all(ch.start_ns >= t["start_ns"][3:]) and np.all(ch.end_ns <= t["start_ns"][3:] + t["latency_ns"][3:])
    finally:
        trace.close()


def test_emptycache_frees_between_requests_are_the_request_paths_and_move_the_interval():
    """empty_cache.py (tests/data ex_emptycache_before, range 'predict'): torch.cuda.empty_cache() after each request
    frees every cached block between the ranges, and the next request allocates them again. SQL on the export: the
    cudaFree calls on the serving thread after each measured range and before the next; the finding counts them as
    the request path's, and its replay lowers the request interval by more than the latency (the program's own
    clock, 1/throughput: saving 1.20-2.89 ms/request in three --ab processes, tests/data/pairs.json)."""
    db = sqlite3.connect(f"file:{expand(DATA / 'ex_emptycache_before.sqlite.xz')}?mode=ro", uri=True)
    try:
        ranges = db.execute("SELECT e.start, e.end, e.globalTid FROM NVTX_EVENTS e LEFT JOIN StringIds t "
                            "ON e.textId = t.id WHERE coalesce(e.text, t.value) = 'predict' ORDER BY e.start"
                            ).fetchall()[WARMUP:]
        frees = ms = 0
        for (_, e, tid), (s2, _, _) in zip(ranges, ranges[1:]):
            c, d = db.execute("SELECT count(*), coalesce(sum(r.end - r.start), 0) FROM CUPTI_ACTIVITY_KIND_RUNTIME r "
                              "JOIN StringIds i ON i.id = r.nameId WHERE r.globalTid = ? AND r.start > ? AND "
                              "r.start < ? AND i.value LIKE 'cudaFree%'", (tid, e, s2)).fetchone()
            frees, ms = frees + c, ms + d / 1e6
        inside = sum(db.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds i ON "
                                "i.id = r.nameId WHERE r.globalTid = ? AND r.start BETWEEN ? AND ? AND i.value LIKE "
                                "'cudaFree%'", (tid, s, e)).fetchone()[0] for s, e, tid in ranges)
    finally:
        db.close()
    n = len(ranges)
    assert n == 30 and inside == 0 and frees / n > 5       # every free is outside the ranges
    rep = _report("ex_emptycache_before")
    f = _finding(rep, "memory_allocation")
    num = f.evidence.numbers
    # the last request's frees come after no further request: not counted
    assert num["between_requests_calls_per_request"] == pytest.approx(frees / n, abs=0.01)
    assert num["allocation_calls_by_name_per_request"]["cudaFree"] == pytest.approx(frees / n, abs=0.01)
    w = f.whatif
    d_lat = w["mean_latency_before_ms"] - w["mean_latency_ms"]
    d_iv = w["interval_before_ms"] - w["interval_ms"]
    # the frees' own time leaves the interval, which the latency does not hold
    assert d_iv - d_lat >= 0.8 * ms / n and f.impact_basis == "interval" and f.impact_ms == pytest.approx(d_iv, abs=1e-3)
