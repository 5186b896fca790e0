"""GPU under-utilisation: the GPU sits idle inside requests, and no more specific finding explains why.

Every ns the device idles during a request is charged to what the serving thread was doing at that moment
(model/activity.py): running its own code, inside a launch, a sync or a copy call, blocked on a lock, off the CPU while
runnable, or blocked in sleep / file or socket I/O (data loading). Runs last: causes that another finding already
names (cpu_processing, launch_overhead, cuda_sync, memory_transfer, thread_contention) are left to it; what remains,
typically a request that sleeps or reads its input before the GPU can start, is this finding, with the cause
breakdown. Decisions are made on pool ids (POOLS), never on the words shown.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import activity as cs
from ..model.arrays import uniq
from ..model.changes import RemoveCpuTime
from ..model.intervals import covered
from ..model.trace import table_len
from ..report import Evidence
from .common import WORST, device_idle, events_in_requests, instance, make_finding

MIN_IDLE_SHARE = 0.10     # of request latency; healthy 0.02, membw/fp32/graphed < 0.01, every starved zoo profile > 0.8
MIN_SAVING_PCT = 3.0      # of mean latency: below, the remainder is noise
MIN_SAVING_NS = 200_000   # absolute floor: in sub-ms requests (llama3-inference demo: 0.03 ms, dlprof dummy cnn
                          # 0.01 ms) the "idle" is the latency of one launch or copy, nothing to fix
EXPLAINING = ("high", "medium")   # a finding of this severity names its cause; a low one explains only its impact
TOP_CALLS = 5             # blocking OS calls named in the evidence
MIN_CALL_NS = 10_000      # per request: a call family under 10 us per request is not worth naming
CATEGORIES = ("gpu_underutilization",)
NEEDS = ("kernels", "api_calls", "os_calls", "sched", "samples")

# CPU-bound idle is never counted here: a faster CPU path (pre/post-processing off the critical path, fewer or
# batched launches, CUDA graphs) is what removes it, and those findings own it (launch_bound: 95% idle, all CPU)
CPU_CATEGORIES = ("cpu_preprocessing", "cpu_postprocessing", "launch_overhead", "cuda_sync")
DATA = "data"             # the pool of sleeps and I/O: the only one whose fix is a prefetching data loader
CPU = "cpu"               # the pool of the thread's own CPU work: never this finding's (CPU_CATEGORIES own it)
# idle pools: id -> (label in the evidence, the causes they gather, the categories whose findings explain them)
POOLS = {
    DATA: ("blocked in sleep or I/O (data loading)", ("sleep", "io", "other_os"), ("model_loading",)),
    CPU: ("CPU busy in its own code or launching", ("cpu", "launch"), CPU_CATEGORIES),
    "sync": ("inside sync or copy calls", ("sync", "copy"), ("cuda_sync", "memory_transfer")),
    "lock": ("waiting on locks or for a CPU", ("lock", "runqueue"), ("thread_contention",)),
    "outside": ("after the request thread left the range", ("outside",), ("cuda_sync", "memory_transfer")),
}


@dataclass
class Measurement:
    saving: float             # mean ns per measured request of idle no other finding explains
    idle_share: float         # device idle / latency over measured requests
    pools: dict               # pool id -> mean ns per measured request
    explained: dict           # pool id -> the categories that explain it (or none when CPU-bound without one)
    per_req: np.ndarray       # per request: unexplained idle
    idle_all: np.ndarray      # per request: device idle until its latency end
    main: str                 # pool id: the largest not explained by a medium or high finding
    blocking: tuple           # (tid, start_ns, end_ns) of the sleep / I/O calls inside measured requests
    calls: list               # the largest blocking OS calls: (name id, ns per request, calls per request)
    cpu_owned: bool           # a CPU-side finding exists (the CPU pool is its)


def _idle_by_cause(ctx, within):
    """Per request: ns of device idle per cause (model.activity.CAUSES and "outside"), and the idle up to the end
    of its latency."""
    t, n = ctx.requests.table, ctx.requests.count
    lat_end = t["start_ns"] + t["latency_ns"]
    by = {c: np.zeros(n, np.int64) for c in cs.CAUSES}
    for tid in uniq(t["tid"]):
        rows = np.flatnonzero(t["tid"] == tid)
        got = cs.causes_in_windows(ctx, int(tid), t["start_ns"][rows], t["end_ns"][rows], within)
        for c in cs.CAUSES:
            by[c][rows] = got[c]
    idle_all = covered(within[0], within[1], t["start_ns"], lat_end)
    by["outside"] = np.maximum(idle_all - covered(within[0], within[1], t["start_ns"], t["end_ns"]), 0)
    return by, idle_all


def _unexplained(ctx, by, found):
    """Per pool: mean ns, which categories explain it; and per request the idle left to this finding."""
    m, n = ctx.requests.measured, ctx.requests.count
    pools, explained, per_req = {}, {}, np.zeros(n, float)
    for pool, (_, causes, cats) in POOLS.items():
        v = sum(by[c] for c in causes).astype(float)
        mean = float(v[m].mean())
        pools[pool] = mean
        naming = [f for f in found if f.category in cats and f.severity in EXPLAINING]
        if pool == CPU:
            explained[pool] = sorted({f.category for f in found if f.category in cats})
            continue
        if naming:
            explained[pool] = sorted({f.category for f in naming})
            continue
        low = sum(f.impact_ms * 1e6 for f in found if f.category in cats)
        if low > 0:
            explained[pool] = sorted({f.category for f in found if f.category in cats})
        keep = max(mean - low, 0.0)
        per_req += v * (keep / mean if mean > 0 else 0.0)
    return pools, explained, per_req


def _blocking_calls(ctx):
    """The sleep / I/O OS calls inside measured requests (tid, start, end), and the largest call names among them."""
    trace, req = ctx.trace, ctx.requests
    n_meas = len(req.measured)
    osc = trace.table("os_calls")
    if not table_len(osc):
        return (np.zeros(0, np.int64),) * 3, []
    r = events_in_requests(ctx, osc["tid"], osc["start_ns"])
    cls = cs.os_call_class(trace, osc["name_id"])
    sel = (r >= req.warmup) & np.isin(cls, [cs.CAUSES.index(c) for c in POOLS[DATA][1]])
    calls = []
    if sel.any():
        ids, inv = np.unique(osc["name_id"][sel], return_inverse=True)
        tot = np.bincount(inv, weights=(osc["end_ns"][sel] - osc["start_ns"][sel]).astype(float))
        for k in np.argsort(-tot)[:TOP_CALLS]:
            if tot[k] / n_meas >= MIN_CALL_NS:
                calls.append((int(ids[k]), float(tot[k]) / n_meas, float((inv == k).sum()) / n_meas))
    return (osc["tid"][sel], osc["start_ns"][sel], osc["end_ns"][sel]), calls


def _idle_share(ctx) -> float | None:
    """Device idle / latency over the measured requests; None when there is nothing to measure."""
    t, m = ctx.requests.table, ctx.requests.measured
    if len(m) == 0 or ctx.mean_latency_ns <= 0:
        return None
    return float(t["idle_ns"][m].sum()) / max(float(t["latency_ns"][m].sum()), 1.0)


def _idle_causes(ctx):
    """_idle_by_cause over the whole span of the requests, computed once (prepare or measure, whichever is first)."""
    def compute():
        t = ctx.requests.table
        lat_end = t["start_ns"] + t["latency_ns"]
        return _idle_by_cause(ctx, device_idle(ctx, int(t["start_ns"].min()), int(lat_end.max())))
    return ctx.once(("gpu_underutilization", "idle_by_cause"), compute)


def prepare(ctx) -> None:
    """What measure computes before it needs the other findings: run beside the other diagnoses
    (diagnose_all), not alone after them."""
    share = _idle_share(ctx)
    if share is not None and share >= MIN_IDLE_SHARE:
        _idle_causes(ctx)


def measure(ctx) -> Measurement | None:
    idle_share = _idle_share(ctx)
    if idle_share is None or idle_share < MIN_IDLE_SHARE:
        return None
    m = ctx.requests.measured
    by, idle_all = _idle_causes(ctx)
    found = [f for f in ctx.cache.get("findings", []) if f.category != "gpu_underutilization"]
    pools, explained, per_req = _unexplained(ctx, by, found)
    saving = float(per_req[m].mean())
    if saving < MIN_SAVING_NS or 100.0 * saving / ctx.mean_latency_ns < MIN_SAVING_PCT:
        return None
    blocking, calls = _blocking_calls(ctx)
    # the main pool is chosen on the values the evidence shows (ms, 3 decimals): ties go to the first pool
    shown = {p: round(v / 1e6, 3) for p, v in pools.items()}
    left = {p: v for p, v in shown.items() if p != CPU and not any(
        f.severity in EXPLAINING for f in found if f.category in POOLS[p][2])}
    main = max(left, key=left.get) if left else max(shown, key=shown.get)
    return Measurement(saving=saving, idle_share=idle_share, pools=pools, explained=explained, per_req=per_req,
                       idle_all=idle_all, main=main, blocking=blocking, calls=calls,
                       cpu_owned=any(f.category in CPU_CATEGORIES for f in found))


def change(m: Measurement) -> list:
    """Data loading: the sleeps and reads inside requests are done ahead (prefetched). Other causes belong to the
    findings that name them, or have no one fix (an empty list: nothing to replay)."""
    if m.main != DATA:
        return []
    tid, start, end = m.blocking
    return [RemoveCpuTime(tid=tid, start_ns=start, end_ns=end)]


def finding(ctx, m: Measurement) -> list:
    trace, req = ctx.trace, ctx.requests
    t, meas = req.table, req.measured
    lat_end = t["start_ns"] + t["latency_ns"]
    saving, idle_share = m.saving, m.idle_share
    pools = {POOLS[p][0]: round(v / 1e6, 3) for p, v in m.pools.items()}
    explained = {POOLS[p][0]: (v or ["CPU-bound (not a wait)"] if p == CPU else v) for p, v in m.explained.items()}
    calls = [{"call": trace.name(i), "ms_per_request": round(ns / 1e6, 3), "calls_per_request": round(c, 1)}
             for i, ns, c in m.calls]
    numbers = {"gpu_idle_ms_per_request": round(float(t["idle_ns"][meas].mean()) / 1e6, 3),
               "gpu_idle_share_pct": round(100 * idle_share, 1),
               "idle_by_cause_ms_per_request": pools,
               "explained_by_other_findings": explained,
               "unexplained_idle_ms_per_request": round(saving / 1e6, 3)}
    if calls:
        numbers["blocking_calls"] = calls
    worst = [instance(ctx, int(r), t["start_ns"][r], lat_end[r],
                      f"GPU idle {m.idle_all[r] / 1e6:.1f} ms, {m.per_req[r] / 1e6:.1f} ms of it unexplained",
                      int(t["tid"][r]), name=calls[0]["call"] if calls else None)
             for r in meas[np.argsort(-m.per_req[meas])[:WORST]]]
    notes = []
    for tab, what in (("os_calls", "sleep / I/O / lock waits"), ("sched", "run-queue delay"),
                      ("samples", "CPU work")):
        if not trace.has(tab):
            notes.append(f"{what} not recorded ({trace.absent.get(tab, 'table absent')}): counted as CPU time")
    cpu_label = POOLS[CPU][0]
    if pools[cpu_label] * 1e6 > saving and not m.cpu_owned:
        notes.append(f"{pools[cpu_label]:.1f} ms per request of the idle is the serving thread busy on the CPU "
                     "(its own code, launches): a CPU-bound request, not counted here")
    main = POOLS[m.main][0]
    data = m.main == DATA
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


def diagnose(ctx) -> list:
    m = measure(ctx)
    return [] if m is None else finding(ctx, m)
