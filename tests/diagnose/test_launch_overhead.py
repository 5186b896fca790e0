"""launch_overhead on the zoo profiles: facts counted independently with SQL on the export, then the finding."""
from __future__ import annotations

import sqlite3

from tests.conftest import zoo, zoo_report
from tests.diagnose.test_cuda_sync import _calls_in_requests


def _finding(report, category="launch_overhead"):
    return next((f for f in report.findings if f.category == category), None)


def test_launch_bound_is_launch_overhead():
    # batch-1 MLP of 150 layers, eager: 600 cudaLaunchKernel per request (zoo.py launch_bound)
    calls, n = _calls_in_requests("launch_bound", "cudaLaunchKernel%")
    assert calls == 600 * n
    report = zoo_report("launch_bound")
    top = report.findings[0]
    assert top.category == "launch_overhead" and top.severity == "high"
    num = top.evidence.numbers
    assert num["launches_per_request"] == 600
    assert num["median_kernel_us"] < num["median_launch_call_us"]      # 1.3 us kernels, 7.6 us launch calls
    # the GPU waits on the CPU for most of the request (measured 94%), the saving counts only launch calls
    assert num["gpu_waiting_share_of_latency_pct"] > 50
    assert top.impact_ms <= num["gpu_waiting_on_cpu_between_kernels_ms_per_request"]
    assert top.impact_ms <= num["mean_latency_ms"] - num["kernel_time_ms_per_request"]


def test_graphed_work_is_not_flagged():
    # the same MLP replayed from a CUDA graph: one cudaGraphLaunch and one graph execution per request
    db = sqlite3.connect(f"file:{zoo('launch_bound_graphed')}?mode=ro", uri=True)
    try:
        graphs = db.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_GRAPH_TRACE").fetchone()[0]
    finally:
        db.close()
    launches, n = _calls_in_requests("launch_bound_graphed", "cudaGraphLaunch%")
    assert launches == n and graphs >= launches
    f = _finding(zoo_report("launch_bound_graphed"))
    assert f is None or f.severity == "low"


def test_healthy_not_flagged():
    # batch 256: launches run far ahead of a ~98% busy GPU, so no kernel waits for its launch
    f = _finding(zoo_report("healthy"))
    assert f is None or f.severity != "high"


def test_sync_heavy_ranks_above_its_syncs():
    # sync_heavy: 12 layers of small kernels, a device sync after each. The CPU bounds the request (SQL in
    # test_cuda_sync.py: kernels 0.49 ms of a 9 ms request): its launches cost more than its syncs, whose waits find
    # the GPU done (labels.json names cuda_sync primary: see test_cuda_sync.test_sync_heavy_syncs_find_the_gpu_done)
    report = zoo_report("sync_heavy")
    f, s = _finding(report), _finding(report, "cuda_sync")
    assert f is not None and s is not None and f.impact_ms > s.impact_ms


def test_graph_fix_names_the_waits_that_would_break_capture():
    # a CUDA graph capture fails on a host wait inside it: sync_heavy's 12 cudaDeviceSynchronize per request (SQL
    # in test_cuda_sync.py) must go first, and the fix says so; launch_bound waits only for each request's result
    import sqlite3
    from tests.conftest import zoo
    db = sqlite3.connect(f"file:{zoo('sync_heavy')}?mode=ro", uri=True)
    try:
        rng = db.execute("SELECT n.start, n.end FROM NVTX_EVENTS n LEFT JOIN StringIds s ON s.id = n.textId WHERE "
                         "coalesce(n.text, s.value) = 'Inference' ORDER BY n.start").fetchall()[3:]
        (syncs,) = db.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s ON s.id = "
                              "r.nameId WHERE s.value LIKE 'cudaDeviceSynchronize%' AND r.start BETWEEN ? AND ?",
                              (rng[0][0], rng[-1][1])).fetchone()
    finally:
        db.close()
    f = _finding(zoo_report("sync_heavy"))
    assert f.evidence.numbers["host_waits_before_more_gpu_work_per_request"] == syncs / len(rng) == 12
    assert "capture fails" in f.fix
    g = _finding(zoo_report("launch_bound"))
    assert "host_waits_before_more_gpu_work_per_request" not in g.evidence.numbers and "capture fails" not in g.fix
