"""cuda_sync on the zoo profiles: facts counted independently with SQL on the export, then the finding."""
from __future__ import annotations

import sqlite3

from tests.conftest import zoo, zoo_report

WARMUP = 3   # the first three 'Inference' ranges are warm-up (profiles/README.md)


def _calls_in_requests(name: str, like: str) -> tuple[int, int]:
    """(calls whose name matches `like` inside the measured 'Inference' ranges on their thread, measured ranges)."""
    db = sqlite3.connect(f"file:{zoo(name)}?mode=ro", uri=True)
    try:
        ranges = db.execute("SELECT start, end, globalTid FROM NVTX_EVENTS WHERE text = 'Inference' "
                            "ORDER BY start").fetchall()[WARMUP:]
        n = 0
        for s, e, tid in ranges:
            n += db.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds i ON i.id = r.nameId "
                            "WHERE r.globalTid = ? AND r.start BETWEEN ? AND ? AND i.value LIKE ?",
                            (tid, s, e, like)).fetchone()[0]
        return n, len(ranges)
    finally:
        db.close()


def _finding(report, category="cuda_sync"):
    return next((f for f in report.findings if f.category == category), None)


def test_sync_heavy_ranks_sync_first():
    # 12 transformer layers, torch.cuda.synchronize() after each (zoo.py): 720 device syncs in 60 measured requests
    calls, n = _calls_in_requests("sync_heavy", "cudaDeviceSynchronize%")
    assert calls == 12 * n
    report = zoo_report("sync_heavy")
    top = report.findings[0]
    assert top.category == "cuda_sync" and top.severity == "high"
    num = top.evidence.numbers
    assert num["syncs_by_call_per_request"]["cudaDeviceSynchronize"] == calls / n
    assert num["syncs_per_request"] >= 13              # plus the .item() stream sync
    assert num["avoidable_syncs_per_request"] == 12    # the final wait for the result is needed
    # the cost is mostly the GPU idling after each return (measured 2.4 ms), not the wait itself (0.15 ms)
    assert num["gpu_idle_after_sync_ms_per_request"] > 5 * num["blocked_ms_per_request"]
    assert 0 < top.impact_ms < num["mean_latency_ms"]
    assert top.evidence.worst and top.evidence.worst[0].name == "cudaDeviceSynchronize"


def test_healthy_has_no_sync():
    # pinned async input and no per-request sync (zoo.py healthy): no synchronising call inside requests
    calls, _ = _calls_in_requests("healthy", "%Synchronize%")
    assert calls == 0
    assert _finding(zoo_report("healthy")) is None


def test_final_wait_only_is_not_flagged():
    # memcpy_pageable waits once, for its output copy at the end: needed, so at most a low finding
    f = _finding(zoo_report("memcpy_pageable"))
    assert f is None or f.severity == "low"
