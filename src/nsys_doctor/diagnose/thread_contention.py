"""Thread contention: request threads wait for each other (one lock around a shared model, the Python GIL) or sit
runnable but not running because more threads want the CPU than there are cores.

Only the threads that serve requests, only inside requests: background threads that block in poll/epoll or a
condition variable all the time (CUDA event handler, CUPTI worker, BLAS pools) are idle by design. Lock waits that
happen inside a CUDA call (the driver's own futex while a sync waits) belong to the sync, not to contention
(model/activity.py charges a ns to the CUDA call first). Run-queue delay is off-CPU time (context-switch trace) that no
OS-runtime or CUDA call explains: the thread was switched out without blocking on anything.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import activity as cs
from ..model.arrays import uniq
from ..model.changes import OwnStreams, RemoveCpuTime
from ..model.trace import table_len
from ..report import Evidence
from .common import WORST, events_in_requests, instance, make_finding
from .common import no_data, not_evaluated

MIN_SAVING_NS = 1_000_000   # 1 ms per request; every zoo profile without contention has lock wait 0 and run-queue
                            # median 0 (max 0.24 ms in cpu_postproc); thread_contention has 46 + 3 ms
MIN_SAVING_PCT = 3.0        # of mean latency; below, not worth a line
MIN_HANDOFF_NS = 100_000    # lock waits shorter than 0.1 ms are uncontended: they say nothing about hand-offs
TOP_CALLS = 4               # lock calls named in the evidence
MINOR_SHARE = 0.2           # the title names a wait (lock or CPU) when it is at least a fifth of the other
CATEGORIES = ("thread_contention",)
NEEDS = ("os_calls", "sched", "api_calls")


def _overlapping_requests(t: dict, m: np.ndarray) -> float:
    """Mean number of requests of other threads open at each measured request's start."""
    s, e = t["start_ns"], t["end_ns"]
    order = np.argsort(s)
    ss = s[order]
    es_sorted = np.sort(e)
    open_at = np.searchsorted(ss, s[m], "right") - np.searchsorted(es_sorted, s[m], "right") - 1
    return float(np.mean(np.maximum(open_at, 0))) if len(m) else 0.0


def _interleaving(ctx, tids: np.ndarray) -> int:
    """How many times lock waits alternate between request threads (serialised on one lock), inside requests."""
    osc = ctx.trace.table("os_calls")
    if table_len(osc) == 0 or len(tids) < 2:
        return 0
    pick = np.isin(osc["tid"], tids)
    cls = cs.os_call_class(ctx.trace, osc["name_id"][pick])
    lock = cls == cs.CAUSES.index("lock")
    th = osc["tid"][pick][lock]
    st = osc["start_ns"][pick][lock]
    dur = osc["end_ns"][pick][lock] - st
    big = dur > MIN_HANDOFF_NS
    th = th[big][np.argsort(st[big])]
    return int((th[1:] != th[:-1]).sum()) if len(th) > 1 else 0


@dataclass
class Measurement:
    lock: np.ndarray          # per request: ns blocked on locks (outside CUDA calls)
    runq: np.ndarray          # per request: ns runnable but switched out
    lock_ns: float            # means over measured requests
    runq_ns: float
    tids: np.ndarray          # the request threads
    calls: list               # the largest lock calls: (name id, ns per request, calls per request)
    lock_waits: tuple         # (tid, start_ns, end_ns) of the lock calls inside measured requests
    stalls: tuple = ()        # (tid, start_ns, end_ns): lock and run-queue time inside measured requests (activity)


def _lock_calls(ctx):
    """The lock OS calls inside measured requests (tid, start, end), and the largest call names among them."""
    trace, req = ctx.trace, ctx.requests
    n_meas = len(req.measured)
    osc = trace.table("os_calls")
    calls, none = [], (np.zeros(0, np.int64),) * 3
    if not table_len(osc):
        return none, calls
    r = events_in_requests(ctx, osc["tid"], osc["start_ns"])
    sel = (r >= req.warmup) & (cs.os_call_class(trace, osc["name_id"]) == cs.CAUSES.index("lock"))
    if not sel.any():
        return none, calls
    ids, inv = np.unique(osc["name_id"][sel], return_inverse=True)
    tot = np.bincount(inv, weights=(osc["end_ns"][sel] - osc["start_ns"][sel]).astype(float))
    for k in np.argsort(-tot)[:TOP_CALLS]:
        calls.append((int(ids[k]), float(tot[k]) / n_meas, float((inv == k).sum()) / n_meas))
    return (osc["tid"][sel], osc["start_ns"][sel], osc["end_ns"][sel]), calls


def measure(ctx) -> Measurement | None:
    trace, req = ctx.trace, ctx.requests
    t, m = req.table, req.measured
    if len(m) == 0 or ctx.mean_latency_ns <= 0:
        return None
    if not trace.has("os_calls") and not trace.has("sched"):
        return not_evaluated(ctx, CATEGORIES, no_data(trace, "os_calls", "OS runtime calls") + "; "
                             + no_data(trace, "sched", "CPU scheduling"))
    n = req.count
    lock = np.zeros(n, np.int64)
    runq = np.zeros(n, np.int64)
    for tid in uniq(t["tid"]):
        rows = np.flatnonzero(t["tid"] == tid)
        got = cs.request_causes(ctx, int(tid))
        lock[rows], runq[rows] = got["lock"], got["runqueue"]
    lock_ns = float(lock[m].mean())
    runq_ns = float(runq[m].mean())
    saving = lock_ns + runq_ns
    if saving < MIN_SAVING_NS or 100.0 * saving / ctx.mean_latency_ns < MIN_SAVING_PCT:
        return None
    waits, calls = _lock_calls(ctx)
    return Measurement(lock=lock, runq=runq, lock_ns=lock_ns, runq_ns=runq_ns, tids=uniq(t["tid"][m]), calls=calls,
                       lock_waits=waits, stalls=_stalls(ctx))


def _stalls(ctx) -> tuple:
    """The request threads' lock and run-queue intervals (model/activity.py's causes, the same time `lock` and
    `runq` count) inside their measured requests, clipped to the request: what the fix takes off each thread."""
    t, w = ctx.requests.table, ctx.requests.warmup
    out = ([], [], [])
    for tid in uniq(t["tid"][ctx.measured]):
        rows = np.flatnonzero(t["tid"] == tid)
        rows = rows[rows >= w]
        lo, hi = t["start_ns"][rows], t["end_ns"][rows]
        order = np.argsort(lo, kind="stable")
        lo, hi = lo[order], hi[order]
        act = cs.thread_activity(ctx, int(tid))
        for cause in ("lock", "runqueue"):
            s, e = act[cause]
            if not len(s):
                continue
            # the request open when the interval starts, or the one that starts inside it
            k = np.searchsorted(lo, s, side="right") - 1
            k2 = np.searchsorted(lo, e, side="left") - 1
            k = np.where((k >= 0) & (s < hi[np.clip(k, 0, None)]), k, k2)
            ok = k >= 0
            kk = np.clip(k, 0, None)
            a, b = np.maximum(s, lo[kk]), np.minimum(e, hi[kk])
            ok &= b > a
            out[0].append(np.full(int(ok.sum()), tid, np.int64))
            out[1].append(a[ok])
            out[2].append(b[ok])
    cat = lambda x: np.concatenate(x).astype(np.int64) if x else np.zeros(0, np.int64)  # noqa: E731
    return cat(out[0]), cat(out[1]), cat(out[2])


def change(m: Measurement) -> list:
    """No shared lock and no oversubscribed CPU: the lock waits and run-queue delay inside requests are removed
    (model/activity.py's lock and runqueue time of each request thread; the traced lock calls when it has none),
    and each request thread issues its GPU work on a stream of its own (the fix's advice: with the lock gone,
    threads sharing one stream would queue behind each other's work and waits)."""
    tid, start, end = m.stalls if m.stalls and len(m.stalls[0]) else m.lock_waits
    return [RemoveCpuTime(tid=tid, start_ns=start, end_ns=end), OwnStreams(tid=m.tids)]


def finding(ctx, m: Measurement) -> list:
    trace, req = ctx.trace, ctx.requests
    t, meas = req.table, req.measured
    lock, runq, lock_ms, runq_ms, tids = m.lock, m.runq, m.lock_ns, m.runq_ns, m.tids
    calls = [{"call": trace.name(i), "ms_per_request": round(ns / 1e6, 3), "calls_per_request": round(c, 1)}
             for i, ns, c in m.calls]
    funcs, _ = cs.hot_functions(trace, t["tid"][meas], t["start_ns"][meas], t["end_ns"][meas])
    numbers = {"lock_wait_ms_per_request": round(lock_ms / 1e6, 3),
               "run_queue_ms_per_request": round(runq_ms / 1e6, 3),
               "request_threads": int(len(tids)),
               "concurrent_requests_mean": round(_overlapping_requests(t, meas), 2),
               "lock_handoffs_between_request_threads": _interleaving(ctx, tids),
               "lock_calls": calls}
    notes = []
    if not trace.has("sched"):
        notes.append("no context-switch trace (--cpuctxsw=process-tree): run-queue delay not measured")
    if not trace.has("os_calls"):
        notes.append("no OS runtime trace (--trace=osrt): lock waits not measured")
    if calls and any(c["call"].startswith(("sem_", "pthread_cond_timedwait")) for c in calls):
        notes.append("CPython's threading.Lock waits in sem_wait/sem_timedwait and the GIL in "
                     "pthread_cond_timedwait, so these are Python-level lock and GIL waits")
    per = lock + runq
    worst = [instance(ctx, int(r), t["start_ns"][r], t["end_ns"][r],
                      f"blocked on locks {lock[r] / 1e6:.1f} ms, runnable but not running {runq[r] / 1e6:.1f} ms",
                      int(t["tid"][r]), name=calls[0]["call"] if calls else None)
             for r in meas[np.argsort(-per[meas])[:WORST]]]
    what = []
    if lock_ms >= runq_ms * MINOR_SHARE:
        what.append(f"wait {lock_ms / 1e6:.1f} ms on locks")
    if runq_ms >= lock_ms * MINOR_SHARE or runq_ms >= MIN_SAVING_NS:
        what.append(f"wait {runq_ms / 1e6:.1f} ms for a CPU")
    title = (f"Request threads ({len(tids)}) " + " and ".join(what) + " per request")
    fix = ("Stop serialising requests on one lock: give each worker thread its own model instance / CUDA stream, or "
           "queue requests to one dedicated inference thread (or batch them) instead of locking around the model; "
           "keep CPU-heavy side threads fewer than the free cores (or pin them) so serving threads get a core; "
           "for Python, release the GIL in heavy work or use processes.")
    why = (f"Inside each request the serving thread is blocked {lock_ms / 1e6:.1f} ms on a lock another thread holds "
           f"and {runq_ms / 1e6:.1f} ms ready to run but switched out; neither does any work, and the GPU waits too.")
    return [make_finding(ctx, "thread_contention", title, lock_ms + runq_ms,
                         "lock-wait OS-runtime time (outside CUDA calls) plus off-CPU time no call explains, on the "
                         "request thread inside requests: what removing the shared lock and the CPU oversubscription "
                         "would give back",
                         Evidence(numbers=numbers, worst=worst, code=funcs, notes=notes), fix, why)]


def diagnose(ctx) -> list:
    m = measure(ctx)
    return [] if m is None else finding(ctx, m)
