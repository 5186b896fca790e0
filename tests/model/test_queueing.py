"""Queueing vs service time per request, the request interval and what bounds a run (model/queueing.py), and the
impact of findings restated in the request interval for throughput-bound runs (analysis/impact.py).

healthy (profiles/README: GPU 98% busy, CPU ranges 20 ms, latency 82 ms) is checked against an independent SQL
query of the export: the first launch of each request's thread inside its range, the start of the first GPU work
those launches made (by correlation id), and the GPU's busy time in between, merged here in plain Python.
"""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from nsys_doctor.model.queueing import GPU_BOUND_PCT, QUEUE_SHARE_PCT
from tests.conftest import zoo, zoo_report

WARMUP = 3          # the first three ranges of every zoo profile are warm-up (profiles/README.md)
GPU_TABLES = ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_MEMSET")


def _sql_queue(path) -> dict:
    """Per measured `Inference` range, from SQL only: queue (GPU busy time between the range's first launch and its
    first GPU work), latency (range start to the later of range end and its last GPU work), and the span."""
    db = sqlite3.connect(path)
    rng = db.execute("SELECT e.start, e.end, e.globalTid FROM NVTX_EVENTS e LEFT JOIN StringIds s ON e.textId = s.id "
                     "WHERE coalesce(e.text, s.value) = 'Inference' ORDER BY e.start").fetchall()
    gpu = []
    for t in GPU_TABLES:
        gpu += db.execute(f"SELECT start, end, correlationId FROM {t}").fetchall()
    runtime = db.execute("SELECT r.start, r.globalTid, r.correlationId, r.end, s.value "
                         "FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s ON s.id = r.nameId").fetchall()
    db.close()
    by_corr: dict = {}
    for s, e, c in gpu:
        by_corr.setdefault(c, []).append((s, e))
    # the GPU's busy intervals, merged
    busy = []
    for s, e in sorted((s, e) for s, e, _ in gpu):
        if busy and s <= busy[-1][1]:
            busy[-1][1] = max(busy[-1][1], e)
        else:
            busy.append([s, e])
    bs = np.array([b[0] for b in busy])
    be = np.array([b[1] for b in busy])

    def busy_in(lo, hi):
        i = np.flatnonzero((be > lo) & (bs < hi))
        return float(np.sum(np.minimum(be[i], hi) - np.maximum(bs[i], lo))) if len(i) else 0.0

    rt = sorted((s, tid, c, e, name) for s, tid, c, e, name in runtime if c in by_corr)   # calls that made GPU work
    queue, latency, ends, launch_ns = [], [], [], []
    for start, end, tid in rng[WARMUP:]:
        calls = [(s, c) for s, t, c, _, _ in rt if t == tid and start <= s <= end]
        # kernel and graph launches (copies and memsets are another kind of call)
        launch_ns += [e - s for s, t, _, e, name in rt if t == tid and start <= s <= end
                      and "Memcpy" not in name and "Memset" not in name]
        first_launch = calls[0][0]
        work = [iv for _, c in calls for iv in by_corr[c]]
        first_gpu, last_gpu = min(s for s, _ in work), max(e for _, e in work)
        queue.append(busy_in(first_launch, first_gpu) / 1e6)
        latency.append((max(end, last_gpu) - start) / 1e6)
        ends.append(max(end, last_gpu))
    starts = [r[0] for r in rng[WARMUP:]]
    return {"queue": np.array(queue), "latency": np.array(latency),
            "interval": (max(ends) - min(starts)) / len(starts) / 1e6, "launch_ns": np.array(launch_ns)}


def test_healthy_is_throughput_bound_by_the_gpu_and_mostly_queueing():
    r = zoo_report("healthy")
    req = r.requests
    sql = _sql_queue(zoo("healthy"))
    assert req["load"] == "throughput-bound" and req["bound_by"] == "gpu"
    # measured: queue p50 60.7 ms, service p50 21.5 ms, latency p50 82.2 ms, interval 20.07 ms
    assert req["queue_ms"]["p50"] == pytest.approx(np.percentile(sql["queue"], 50), rel=0.01)
    assert req["queue_ms"]["mean"] == pytest.approx(sql["queue"].mean(), rel=0.01)
    service = sql["latency"] - sql["queue"]
    assert req["service_ms"]["p50"] == pytest.approx(np.percentile(service, 50), rel=0.01)
    assert 55 < req["queue_ms"]["p50"] < 65 and 18 < req["service_ms"]["p50"] < 23
    assert req["interval_ms"] == pytest.approx(sql["interval"], rel=0.001)
    assert req["throughput_per_s"] == pytest.approx(1000 / sql["interval"], rel=0.001)
    assert req["load_evidence"]["queue_pct_of_latency"] >= QUEUE_SHARE_PCT
    assert req["load_evidence"]["gpu_busy_pct_of_span"] >= GPU_BOUND_PCT
    # per request columns: the same numbers, warm-up included and flagged
    pr = r.per_request
    keep = [i for i, w in enumerate(pr["warmup"]) if not w]
    assert np.allclose([pr["queue_ms"][i] for i in keep], sql["queue"], rtol=0.01, atol=0.01)
    assert np.allclose([pr["latency_ms"][i] - pr["queue_ms"][i] for i in keep],
                       [pr["service_ms"][i] for i in keep], atol=1e-3)
    # each request queues behind the ~4 before it (latency 82 ms / interval 20 ms)
    assert np.median([pr["queued_behind"][i] for i in keep]) == 4
    # launch calls block while the GPU's queue is full (median 8 us, mean 34 us): beyond their median duration
    # that is waiting, so the CPU needs ~11 ms per request of its 20 ms ranges and the GPU (19.6 ms) bounds
    d = sql["launch_ns"]
    blocked = (d.sum() - len(d) * np.median(d)) / len(sql["queue"]) / 1e6
    ev = req["load_evidence"]
    assert ev["launch_blocked_ms_per_request"] == pytest.approx(blocked, rel=0.02)
    assert ev["cpu_ms_per_request"] < ev["gpu_ms_per_request"] < req["interval_ms"]


def test_healthy_verdict_and_timeline_say_requests_queue():
    r = zoo_report("healthy")
    assert "Requests queue" in r.verdict and "behind 4 earlier ones" in r.verdict
    typical = next(e for e in r.timeline["excerpts"] if e["id"] == "typical")
    assert "waited" in typical["title"] and "its own work took" in typical["title"]
    # nothing high: the fusion of its BatchNorm/ReLU chains is at most medium (tests/diagnose/test_memory_bandwidth.py)
    assert not any(f.severity == "high" for f in r.findings)


@pytest.mark.parametrize("name", ["sync_heavy", "cpu_preproc", "dataload_starved"])
def test_requests_that_wait_for_their_result_are_latency_bound(name):
    req = zoo_report(name).requests
    sql = _sql_queue(zoo(name))
    assert req["load"] == "latency-bound"
    assert sql["queue"].mean() < 0.02 * sql["latency"].mean()      # independent: no queueing to speak of
    assert req["queue_ms"]["mean"] == pytest.approx(sql["queue"].mean(), abs=0.05)
    assert req["bound_by"] in ("cpu", "waiting")
    for f in zoo_report(name).findings:       # latency-bound: impact stays a share of mean latency
        assert f.impact_basis == "latency"
        assert f.impact_pct == pytest.approx(min(100, 100 * f.impact_ms / req["latency_ms"]["mean"]), abs=0.2)


def test_thread_contention_is_bound_by_waiting():
    # 4 threads take turns on one lock: their requests overlap in time, none queues on the GPU
    req = zoo_report("thread_contention").requests
    assert req["load"] == "latency-bound" and req["bound_by"] == "waiting"
    assert req["interval_ms"] < req["latency_ms"]["mean"] / 2      # measured: 17.0 vs 59.4 ms


def test_fp32_gemm_precision_impact_is_in_the_interval():
    # requests queue 14 deep behind the same SGEMMs: the fix saves GPU time per request, i.e. interval, not the
    # 39.6 ms of latency the queue multiplies it into
    r = zoo_report("fp32_gemm")
    req = r.requests
    assert req["load"] == "throughput-bound" and req["bound_by"] == "gpu"
    f = next(f for f in r.findings if f.category == "precision")
    assert f.impact_basis == "interval" and f.severity == "high"
    # the replay's prediction (analysis/predict.py): the SGEMMs at the H100's documented tensor-core speed-up
    # (model/device.py) shorten a GPU-bound interval by the GPU time they save
    from nsys_doctor.model.device import TENSOR_CORE_SPEEDUP
    speedup = dict(TENSOR_CORE_SPEEDUP)[r"H100|H200|H800|GH200"]
    gpu_saved = f.evidence.numbers["cuda_core_gemm_ms_per_request"] * (1 - 1 / speedup)
    assert f.whatif["used"] and f.impact_ms == pytest.approx(gpu_saved, rel=0.02)
    assert f.impact_ms < req["interval_ms"]
    assert f.impact_pct == pytest.approx(100 * f.impact_ms / req["interval_ms"], abs=0.2)
    assert "of the request interval" in r.verdict
