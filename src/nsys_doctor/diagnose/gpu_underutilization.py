"""GPU under-utilisation: the GPU sits idle inside requests, and no more specific finding explains why.

Every ns the device idles during a request is charged to what the serving thread was doing at that moment
(cpu_samples): running its own code, inside a launch, a sync or a copy call, blocked on a lock, off the CPU while
runnable, or blocked in sleep / file or socket I/O (data loading). Runs last: causes that another finding already
names (cpu_work, launch_overhead, cuda_sync, transfers, thread_contention) are left to it; what remains, typically a
request that sleeps or reads its input before the GPU can start, is this finding, with the cause breakdown.
"""
from __future__ import annotations

import numpy as np

from ..model.trace import table_len
from ..report import Evidence
from ..model import activity as cs
from .common import WORST, events_in_requests, instance, make_finding
from .cpu_processing import device_idle
from ..model.arrays import uniq

MIN_IDLE_SHARE = 0.10     # of request latency; healthy 0.02, membw/fp32/graphed < 0.01, every starved zoo profile > 0.8
MIN_SAVING_PCT = 3.0      # of mean latency: below, the remainder is noise
MIN_SAVING_NS = 200_000   # absolute floor: in sub-ms requests (llama3-inference demo: 0.03 ms, dlprof dummy cnn
                          # 0.01 ms) the "idle" is the latency of one launch or copy, nothing to fix
EXPLAINING = ("high", "medium")   # a finding of this severity names its cause; a low one explains only its impact
NEEDS = ("kernels", "api_calls", "os_calls", "sched", "samples")

# CPU-bound idle is never counted here: a faster CPU path (pre/post-processing off the critical path, fewer or
# batched launches, CUDA graphs) is what removes it, and those findings own it (launch_bound: 95% idle, all CPU)
CPU_CATEGORIES = ("cpu_preprocessing", "cpu_postprocessing", "launch_overhead", "cuda_sync")
# idle causes -> the categories whose findings explain them (none: this finding is the only one that can)
POOLS = {
    "blocked in sleep or I/O (data loading)": (("sleep", "io", "other_os"), ("model_loading",)),
    "CPU busy in its own code or launching": (("cpu", "launch"), CPU_CATEGORIES),
    "inside sync or copy calls": (("sync", "copy"), ("cuda_sync", "memory_transfer")),
    "waiting on locks or for a CPU": (("lock", "runqueue"), ("thread_contention",)),
    "after the request thread left the range": (("outside",), ("cuda_sync", "memory_transfer")),
}


def diagnose(ctx) -> list:
    trace, req = ctx.trace, ctx.requests
    t, m = req.table, req.measured
    if len(m) == 0 or ctx.mean_latency_ns <= 0:
        return []
    lat_end = t["start_ns"] + t["latency_ns"]
    idle_share = float(t["idle_ns"][m].sum()) / max(float(t["latency_ns"][m].sum()), 1.0)
    if idle_share < MIN_IDLE_SHARE:
        return []
    n = req.count
    within = device_idle(ctx, int(t["start_ns"].min()), int(lat_end.max()))
    by = {c: np.zeros(n, np.int64) for c in cs.CAUSES}
    for tid in uniq(t["tid"]):
        rows = np.flatnonzero(t["tid"] == tid)
        got = cs.causes_in_windows(ctx, int(tid), t["start_ns"][rows], t["end_ns"][rows], within)
        for c in cs.CAUSES:
            by[c][rows] = got[c]
    from ..model.intervals import covered
    idle_all = covered(within[0], within[1], t["start_ns"], lat_end)
    by["outside"] = np.maximum(idle_all - covered(within[0], within[1], t["start_ns"], t["end_ns"]), 0)

    found = [f for f in ctx.cache.get("findings", []) if f.category != "gpu_underutilization"]
    pools, explained, per_req = {}, {}, np.zeros(n, float)
    for pool, (causes, cats) in POOLS.items():
        v = sum(by[c] for c in causes).astype(float)
        mean = float(v[m].mean())
        pools[pool] = round(mean / 1e6, 3)
        naming = [f for f in found if f.category in cats and f.severity in EXPLAINING]
        if cats is CPU_CATEGORIES:
            explained[pool] = sorted({f.category for f in found if f.category in cats}) or ["CPU-bound (not a wait)"]
            continue
        if naming:
            explained[pool] = sorted({f.category for f in naming})
            continue
        low = sum(f.impact_ms * 1e6 for f in found if f.category in cats)
        if low > 0:
            explained[pool] = sorted({f.category for f in found if f.category in cats})
        keep = max(mean - low, 0.0)
        per_req += v * (keep / mean if mean > 0 else 0.0)
    saving = float(per_req[m].mean())
    if saving < MIN_SAVING_NS or 100.0 * saving / ctx.mean_latency_ns < MIN_SAVING_PCT:
        return []
    # the OS calls behind the wait (names and ms per request), inside requests on the serving threads
    calls = []
    osc = trace.table("os_calls")
    if table_len(osc):
        r = events_in_requests(ctx, osc["tid"], osc["start_ns"])
        cls = cs.os_call_class(trace, osc["name_id"])
        sel = (r >= req.warmup) & np.isin(cls, [cs.CAUSES.index(c) for c in ("sleep", "io", "other_os")])
        if sel.any():
            ids, inv = np.unique(osc["name_id"][sel], return_inverse=True)
            tot = np.bincount(inv, weights=(osc["end_ns"][sel] - osc["start_ns"][sel]).astype(float))
            for k in np.argsort(-tot)[:5]:
                if tot[k] / len(m) >= 10_000:
                    calls.append({"call": trace.name(ids[k]), "ms_per_request": round(float(tot[k]) / len(m) / 1e6, 3),
                                  "calls_per_request": round(float((inv == k).sum()) / len(m), 1)})
    left = {p: v for p, v in pools.items() if POOLS[p][1] is not CPU_CATEGORIES and not any(
        f.severity in EXPLAINING for f in found if f.category in POOLS[p][1])}
    main = max(left, key=left.get) if left else max(pools, key=pools.get)
    numbers = {"gpu_idle_ms_per_request": round(float(t["idle_ns"][m].mean()) / 1e6, 3),
               "gpu_idle_share_pct": round(100 * idle_share, 1),
               "idle_by_cause_ms_per_request": pools,
               "explained_by_other_findings": explained,
               "unexplained_idle_ms_per_request": round(saving / 1e6, 3)}
    if calls:
        numbers["blocking_calls"] = calls
    worst = [instance(ctx, int(r), t["start_ns"][r], lat_end[r],
                      f"GPU idle {idle_all[r] / 1e6:.1f} ms, {per_req[r] / 1e6:.1f} ms of it unexplained",
                      int(t["tid"][r]), name=calls[0]["call"] if calls else None)
             for r in m[np.argsort(-per_req[m])[:WORST]]]
    notes = []
    for tab, what in (("os_calls", "sleep / I/O / lock waits"), ("sched", "run-queue delay"),
                      ("samples", "CPU work")):
        if not trace.has(tab):
            notes.append(f"{what} not recorded ({trace.absent.get(tab, 'table absent')}): counted as CPU time")
    cpu_pool = "CPU busy in its own code or launching"
    if pools[cpu_pool] * 1e6 > saving and not any(f.category in CPU_CATEGORIES for f in found):
        notes.append(f"{pools[cpu_pool]:.1f} ms per request of the idle is the serving thread busy on the CPU "
                     "(its own code, launches): a CPU-bound request, not counted here")
    data = "sleep or I/O" in main
    named = f" ({', '.join(c['call'] for c in calls[:3])})" if data and calls else ""
    title = f"GPU idles {saving / 1e6:.1f} ms per request while the request thread is {main}{named}"
    if data:
        fix = ("Load and decode the next inputs ahead of time: a prefetching data loader (worker processes, "
               "pin_memory, a bounded queue), asynchronous I/O or a cache, so the GPU never waits for a read or a "
               "remote fetch; batch requests so each GPU launch has more work.")
        why = (f"The GPU is idle {100 * idle_share:.0f}% of each request; {pools[main]:.1f} ms of it the serving "
               "thread is blocked sleeping or reading input, with nothing queued on the GPU.")
    else:
        fix = ("Keep the GPU fed: queue work for the next request before waiting on this one (CUDA streams, a "
               "pipeline of requests, batching), and remove the wait named in the cause breakdown.")
        why = (f"The GPU is idle {100 * idle_share:.0f}% of each request; the largest part not named by another "
               f"finding is time the serving thread is {main}.")
    return [make_finding(ctx, "gpu_underutilization", title, saving,
                         "device-idle time inside requests, charged to what the serving thread did at each moment; "
                         "minus the causes other findings already name (fully when they are medium or high, their "
                         "impact when low): the wait that overlapping or prefetching would hide",
                         Evidence(numbers=numbers, worst=worst, code=[], notes=notes), fix, why)]
