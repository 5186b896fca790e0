"""Queueing and service time per request, and what bounds the run's throughput.

A request's end-to-end latency mixes two things: its own work (service) and the time its first GPU work waited
behind work queued before it (queue). When the CPU submits faster than the GPU finishes (asynchronous loops, batch
servers, benchmarks without back-pressure) the queue grows until it dominates latency, and latency no longer says how
fast the program is: the request interval (span of the measured requests / their number, 1/throughput) does.

Per request (columns added to Requests.table by `measure_queue`):
- queue_ns: device-busy time between the request's first launch call and the start of its first GPU work (the GPU
  was running other work: earlier requests', in practice); launch latency on an idle GPU is not queueing;
- service_ns: latency - queue;
- ahead: requests whose GPU work was still queued or running when this one's first launch was made.
Per run (`run_load`): interval, throughput, what bounds the interval (gpu / cpu / waiting), and the class
latency-bound / throughput-bound.
"""
from __future__ import annotations

import numpy as np

from .arrays import median, uniq
from .intervals import covered, union
from .projection import device_busy_unions, is_sorted, launch_calls
from .trace import Trace

# A run is throughput-bound when queueing is at least this share of the mean latency. Measured over the 74
# analysable profiles (../shared/profiles, tests/data, ../shared/external): the queued runs healthy 72%,
# launch_bound_graphed 98%, fp32_gemm 93%, membw_bound 93%, hambugy-trt-vit-orin 74%, the lowest the Kineto
# ns_resolution_trace at 40%; every other one <= 3.7% (each request waits for its result). 30% sits between.
QUEUE_SHARE_PCT = 30.0
# The GPU bounds the interval when the device runs something this share of the measured span ("busy through the
# run"). Measured: the queued runs healthy 97.8%, launch_bound_graphed 99.4%, fp32_gemm 99.6%, membw_bound 99.7%;
# ex_mixed_before 97.5% (strict fp32 GEMMs back to back). Below: the three recordings of one program ex_sync_after
# 83.4 / 88.6 / 89.1% (the CPU, 99% on it, waits for each request's result), memcpy_pageable 94.6% (CPU staging of
# pageable copies); 95% keeps repeated recordings on one side.
GPU_BOUND_PCT = 95.0
# Otherwise the largest part of the request threads' time inside their requests decides: on the CPU (running code,
# launching, staging copies: cpu), in synchronising calls (waiting for the GPU: gpu), or blocked on the rest (I/O,
# locks, sleeps, run queue: waiting). No threshold: cpu_preproc 100% on the CPU, thread_contention 72% in locks,
# ex_pinned_after 57% in syncs.
# A request's latency is "mostly queueing" (said in verdicts and on the timeline) from this share on.
MOSTLY_QUEUE_PCT = 50.0
ON_CPU_CAUSES = ("cpu", "launch", "copy")   # model/activity.py causes that keep the thread on the CPU


def measure_queue(trace: Trace, req) -> None:
    """Add queue_ns, service_ns, ahead and first_launch_ns to req.table (every request, warm-up included)."""
    t = req.table
    n = req.count
    gs, ge = t["gpu_start_ns"], t["gpu_end_ns"]
    has_gpu = ge >= 0
    api = trace.table("api_calls")
    first = np.full(n, np.iinfo(np.int64).max, np.int64)
    if len(req.api_request):
        sel = np.flatnonzero(launch_calls(trace) & (req.api_request >= 0))
        r, s = req.api_request[sel], api["start_ns"][sel].astype(np.int64, copy=False)
        if len(sel) and is_sorted(r) and is_sorted(s):   # calls in time order, requests one after another: the
            head = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])   # first call of each run is its first launch
            first[r[head]] = s[head]
        elif len(sel):
            np.minimum.at(first, r, s)
    # no launch call seen (GPU work projected otherwise): no queue measurable, the request starts at its GPU work
    launch = np.where(has_gpu, np.minimum(first, np.where(has_gpu, gs, first)), t["start_ns"])
    queue = np.zeros(n, np.int64)
    ahead = np.zeros(n, np.int64)
    for d, (us, ue) in device_busy_unions(trace, t["device"][has_gpu]).items():
        rows = np.flatnonzero(has_gpu & (t["device"] == d))
        queue[rows] = covered(us, ue, launch[rows], gs[rows])
        # requests on this device whose GPU work began before this one's and had not ended at its first launch
        s_sorted, e_sorted = np.sort(gs[rows]), np.sort(ge[rows])
        ahead[rows] = np.maximum(np.searchsorted(s_sorted, gs[rows], "left")
                                 - np.searchsorted(e_sorted, launch[rows], "right"), 0)
    ahead[queue == 0] = 0
    t["first_launch_ns"] = launch
    t["queue_ns"] = queue
    t["service_ns"] = np.maximum(t["latency_ns"] - queue, 0)
    t["ahead"] = ahead


def measured_span(req) -> tuple[int, int]:
    """(first start, last end) of the measured requests, end = start + latency."""
    t, m = req.table, req.measured
    if len(m) == 0:
        return 0, 0
    return int(t["start_ns"][m].min()), int((t["start_ns"][m] + t["latency_ns"][m]).max())


def run_load(ctx) -> dict:
    """Per run: interval, throughput, GPU busy share of the span, on-CPU share of the request threads, bound_by, load.
    `ctx` is the diagnoses' Context (thread activity is cached there)."""
    from .activity import request_causes
    trace, req = ctx.trace, ctx.requests
    t, m = req.table, req.measured
    if len(m) == 0:
        return {}
    lo, hi = measured_span(req)
    span = max(hi - lo, 1)
    interval = span / len(m)
    devs = t["device"][m][t["gpu_end_ns"][m] >= 0]
    gpu_busy = 0.0
    for _, (us, ue) in device_busy_unions(trace, devs).items():
        gpu_busy = max(gpu_busy, float(covered(us, ue, np.array([lo]), np.array([hi]))[0]) / span)
    lat = t["latency_ns"][m].astype(np.float64)
    queue = t["queue_ns"][m].astype(np.float64)
    queue_share = float(queue.mean() / lat.mean()) if lat.mean() > 0 else 0.0
    # the request threads: on the CPU, and waiting for the GPU (sync calls), inside their requests' CPU-side ranges
    on_cpu = total = sync = launch_time = 0.0
    threads = uniq(t["tid"][m])
    for tid in threads:
        rows = np.flatnonzero(t["tid"] == tid)
        keep = rows >= req.warmup                       # the thread's requests, measured ones only
        causes = {c: v[keep] for c, v in request_causes(ctx, int(tid)).items()}
        # overlapping ranges on one thread (ex_fusion_before: 16 requests in flight) count the same thread time once
        # per open request: count it once (their union over their sum, assuming the time is spread evenly)
        mine = rows[keep]
        us, ue = union(t["start_ns"][mine], t["end_ns"][mine])
        width = float((t["end_ns"][mine] - t["start_ns"][mine]).sum())
        once = float((ue - us).sum()) / width if width > 0 else 1.0
        on_cpu += once * float(sum(causes[c].sum() for c in ON_CPU_CAUSES))
        total += once * float(sum(v.sum() for v in causes.values()))
        sync += once * float(causes["sync"].sum())
        launch_time += once * float(causes["launch"].sum())
    cpu_share = on_cpu / total if total > 0 else 0.0
    sync_share = sync / total if total > 0 else 0.0
    if 100 * gpu_busy >= GPU_BOUND_PCT:
        bound_by = "gpu"
    else:   # the largest part of the request threads' time: on the CPU, waiting for the GPU, waiting for the rest
        parts = {"cpu": cpu_share, "gpu": sync_share, "waiting": 1.0 - cpu_share - sync_share}
        bound_by = max(parts, key=parts.get)
    load = "throughput-bound" if 100 * queue_share >= QUEUE_SHARE_PCT else "latency-bound"
    blocked = 0.0
    if load == "throughput-bound" and len(req.api_request):
        # with requests queued, launch calls block while the GPU's launch queue is full (healthy: 8 us median,
        # 34 us mean): that is the GPU holding the CPU back, not CPU work the CPU needs per request. Charge each
        # launch its median duration; the rest is waiting.
        from .activity import CAUSES, table_class
        api = trace.table("api_calls")
        # the calls the thread-activity breakdown counts as "launch" (not copies or memsets), that made GPU work
        sel = launch_calls(trace) & (req.api_request >= req.warmup) & \
            (table_class(ctx, "api_calls") == CAUSES.index("launch"))
        dur = (api["end_ns"][sel] - api["start_ns"][sel]).astype(np.int64, copy=False)
        if len(dur):
            blocked = max(0.0, launch_time - len(dur) * median(dur))
    return {"load": load, "bound_by": bound_by, "interval_ns": interval, "throughput_per_s": 1e9 / interval,
            "gpu_busy_share": gpu_busy, "cpu_share": cpu_share, "sync_share": sync_share, "queue_share": queue_share,
            "gpu_need_ns": interval * min(gpu_busy, 1.0),
            "gpu_idle_per_request_ns": interval * (1.0 - min(gpu_busy, 1.0)),
            # the CPU time one request needs, per interval: request threads work side by side
            "cpu_need_ns": (on_cpu - blocked) / len(m) / len(threads),
            "launch_blocked_per_request_ns": blocked / len(m),
            "sync_wait_per_request_ns": sync / len(m) / len(threads)}


def queue_sentence(t, r: int) -> str | None:
    """'this request waited 45 ms behind 3 earlier ones; its own work took 14 ms', when queueing is most of its
    latency (MOSTLY_QUEUE_PCT); None otherwise."""
    lat, q = int(t["latency_ns"][r]), int(t["queue_ns"][r])
    if lat <= 0 or 100 * q / lat < MOSTLY_QUEUE_PCT:
        return None
    k = int(t["ahead"][r])
    behind = f"behind {k} earlier one{'s' if k != 1 else ''}" if k else "behind other GPU work"
    return f"this request waited {q / 1e6:.3g} ms {behind}; its own work took {(lat - q) / 1e6:.3g} ms"
