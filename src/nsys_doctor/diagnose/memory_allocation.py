"""Memory allocation in the request path: the serving thread allocates and frees device or pinned host memory inside
requests (a framework's caching allocator switched off, a TensorRT context allocating per enqueue, CuPy without a
pool, hand-written code calling cudaMalloc per tensor). Each call costs tens of microseconds of driver time, and a
free waits for the device (cudaFree synchronises implicitly), so after it the GPU sits idle until the CPU has
launched again, exactly as after a synchronize.

Allocation calls are the API names in model/api_names.ALLOC_CALLS (runtime, driver, stream-ordered and virtual memory
forms); the frees that wait are host waits (model/host_waits.py, kind FREE_WAIT). This diagnosis claims them: the
calls' own time and the GPU idle after a free's return; cuda_sync leaves the frees out, launch_overhead the gaps
after them, so each millisecond is counted once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.api_names import ALLOC_CALLS, base_name
from ..model.arrays import dense_groups, distinct_ids
from ..model.changes import RemoveCpuTime, RemoveHostWaits
from ..model.host_waits import FREE_WAIT, REFILL_MAX_NS, SETUP_CALL_NS, select
from ..model.intervals import union
from ..model.replay import GRAPH_DISPATCH_MAX_NS
from ..model.trace import table_len
from ..report import Evidence
from .common import WORST, host_waits, instance, make_finding

MIN_REPORT_PCT = 2.0           # under 2% of request latency allocation is not worth a line: ex_alloc_after (caching
                               # allocator on) and the twelve zoo profiles allocate nothing inside requests; ex_alloc_
                               # before spends 75% of its latency in 361 calls per request

# The CPU time between two allocation calls of a thread with no other CUDA call between them (a tensor freed, the
# next one allocated) goes with the calls: the allocator's and the framework's work around its driver calls, which a
# caching allocator's fast path skips. ex_alloc_before: 2.6 ms per request in such gaps (median 13 us between a free
# and the next malloc); without them the request thread's time outside CUDA calls is 3.0 ms per request, against
# 2.9 ms in ex_alloc_after (caching on; read as a check only). A longer gap is other work, which stays: up to the
# framework's dispatch of one op (model/replay.py GRAPH_DISPATCH_MAX_NS, 75 us).
ALLOC_GAP_MAX_NS = GRAPH_DISPATCH_MAX_NS

CATEGORIES = ("memory_allocation",)
NEEDS = ("api_calls", "kernels", "copies")


@dataclass
class Measurement:
    impact_ns: float        # mean over measured requests of the allocation calls' time and the GPU idle after frees
    rows: np.ndarray        # api_calls rows of the allocation calls inside measured requests
    request: np.ndarray     # per row: its request
    waits: dict             # model.host_waits: the frees that waited for the device (kind FREE_WAIT)
    avoid: np.ndarray       # per wait: GPU work followed it in the request (its refill is avoidable)
    per_request: np.ndarray  # per request: ns claimed (calls and refills, their union), bounded
    tid: np.ndarray         # per row: the calling thread, the call's start and end
    start_ns: np.ndarray
    end_ns: np.ndarray
    setup_calls: int = 0    # calls left out as context creation (SETUP_CALL_NS)
    gaps: tuple = ()        # _gaps_between: the CPU time between two allocation calls (tid, start_ns, end_ns)
    between: np.ndarray | None = None    # per row: a call of the serving loop between two requests (_alloc_rows)


def _alloc_rows(ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The allocation calls (api_calls rows) of the request path and the request each belongs to: those inside a
    measured request, and those of the serving loop between two measured requests on a request's thread (a cache
    emptied or a buffer freed after each request: they delay the next one, so they are in the request interval
    though in no range) -> (rows, request, between: True for the latter, each counted with the request before)."""
    trace, rq = ctx.trace, ctx.requests
    api = trace.table("api_calls")
    req = rq.api_request
    t = rq.table
    measured_tids = np.unique(t["tid"][rq.warmup:])
    cand = np.flatnonzero((req >= rq.warmup) | ((req < 0) & np.isin(api["tid"], measured_tids)))
    ids = distinct_ids(api["name_id"][cand])
    alloc = np.array([i for i in ids if base_name(trace.name(i)).startswith(ALLOC_CALLS)], np.int64)
    none = np.zeros(0, np.int64)
    if not len(alloc):
        return none, none, np.zeros(0, bool)
    rows = cand[np.isin(api["name_id"][cand], alloc)]
    inside = req[rows] >= rq.warmup
    owner = req[rows].copy()
    out = rows[~inside]
    if len(out):
        # per thread, the measured request that ended last before the call, if the thread starts another after it
        follows = np.full(len(out), -1, np.int64)
        for tid in np.unique(api["tid"][out]):
            mine = np.flatnonzero(api["tid"][out] == tid)
            r = np.flatnonzero(t["tid"] == tid)
            r = r[r >= rq.warmup]
            r = r[np.argsort(t["start_ns"][r], kind="stable")]
            s = api["start_ns"][out[mine]]
            k = np.searchsorted(t["end_ns"][r], s, side="right") - 1      # ranges on one thread do not overlap
            ok = (k >= 0) & (k + 1 < len(r))
            ok[ok] &= s[ok] < t["start_ns"][r[k[ok] + 1]]
            follows[mine[ok]] = r[k[ok]]
        owner[~inside] = follows
    keep = owner >= 0
    return rows[keep], owner[keep], ~inside[keep]


def _claimed(req: np.ndarray, s: np.ndarray, e: np.ndarray, n: int) -> np.ndarray:
    """Per request: the length of the union of these intervals (a malloc inside a free's refill counts once)."""
    out = np.zeros(n, np.int64)
    o = np.lexsort((s, req))
    req, s, e = req[o], s[o], e[o]
    cuts = np.flatnonzero(np.diff(req)) + 1
    for r, a, b in zip(np.split(req, cuts), np.split(s, cuts), np.split(e, cuts)):
        if len(r):
            us, ue = union(a, b)
            out[r[0]] = int((ue - us).sum())
    return out


def measure(ctx) -> Measurement | None:
    trace, rq = ctx.trace, ctx.requests
    api = trace.table("api_calls")
    if "api_calls" in trace.absent or ctx.mean_latency_ns <= 0 or table_len(api) == 0 or len(ctx.measured) == 0 \
            or len(rq.api_request) != table_len(api):
        return None
    rows, req, between = _alloc_rows(ctx)
    setup = (api["end_ns"][rows] - api["start_ns"][rows]) > SETUP_CALL_NS
    setup_calls, rows, req, between = int(setup.sum()), rows[~setup], req[~setup], between[~setup]
    if len(rows) == 0:
        return None
    sc = host_waits(ctx)
    inside = rows[~between]
    waits = select(sc, (sc["kind"] == FREE_WAIT) & np.isin(sc["row"], inside))
    avoid = ~waits["last"]
    # the calls themselves, and the GPU idle from each waiting free's return until the device runs again
    s = np.r_[api["start_ns"][inside], waits["end_ns"][avoid]]
    e = np.r_[api["end_ns"][inside], waits["end_ns"][avoid] + waits["refill_ns"][avoid]]
    per_req = _claimed(np.r_[req[~between], waits["request"][avoid]], s, e, rq.count)
    t = rq.table
    per_req = np.minimum(per_req, np.maximum(t["latency_ns"] - t["busy_ns"], 0))   # not below its own GPU work
    # the serving loop's calls between requests add to the interval whole: no GPU work of the request overlaps them;
    # they count where they are MIN_REPORT_PCT of the time from one request's start to the next's
    per_between = _claimed(req[between], api["start_ns"][rows[between]], api["end_ns"][rows[between]], rq.count)
    starts = t["start_ns"][rq.warmup:]
    spacing = float(starts.max() - starts.min()) / (len(starts) - 1) if len(starts) > 1 else 0.0
    if between.any() and not (spacing > 0 and 100.0 * per_between[rq.warmup:].mean() / spacing >= MIN_REPORT_PCT):
        keep = ~between
        rows, req, between, per_between = rows[keep], req[keep], between[keep], np.zeros_like(per_between)
    if len(rows) == 0 or (100.0 * per_req[rq.warmup:].mean() / ctx.mean_latency_ns < MIN_REPORT_PCT
                          and not between.any()):
        return None
    per_req = per_req + per_between
    impact_ns = float(per_req[rq.warmup:].mean())
    return Measurement(impact_ns=impact_ns, rows=rows, request=req, waits=waits, avoid=avoid, per_request=per_req,
                       tid=api["tid"][rows], start_ns=api["start_ns"][rows], end_ns=api["end_ns"][rows],
                       setup_calls=setup_calls, gaps=_gaps_between(ctx, rows, req), between=between)


def change(m: Measurement) -> list:
    """A caching allocator or a pool: the allocation calls leave the request with the CPU time between two of them
    (m.gaps), and the frees no longer wait."""
    gt, gs, ge = m.gaps
    return [RemoveHostWaits(api_rows=m.waits["row"]),
            RemoveCpuTime(tid=np.r_[m.tid, gt], start_ns=np.r_[m.start_ns, gs], end_ns=np.r_[m.end_ns, ge])]


def _gaps_between(ctx, rows: np.ndarray, req: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CPU time between two of these allocation calls (api_calls rows, of request `req` each) that follow each
    other on their thread, both inside one request or both between the same two requests, with no other CUDA call
    between, up to ALLOC_GAP_MAX_NS: (tid, start_ns, end_ns)."""
    api, rq = ctx.trace.table("api_calls"), ctx.requests
    # pairs form within one owner: a measured request, or the stretch after one (key count + request; other calls
    # outside requests have none)
    owner = rq.api_request.copy()
    out_rows = rq.api_request[rows] < 0
    owner[rows[out_rows]] = rq.count + req[out_rows]
    mine = np.flatnonzero(np.isin(api["tid"], np.unique(api["tid"][rows])) & (owner >= rq.warmup))
    o = mine[np.lexsort((api["start_ns"][mine], api["tid"][mine]))]
    is_alloc = np.isin(o, rows)
    tid, s, e, r = api["tid"][o], api["start_ns"][o], api["end_ns"][o], owner[o]
    # a call nested in the one before it (starting before that one ended) makes no gap
    pair = is_alloc[1:] & is_alloc[:-1] & (tid[1:] == tid[:-1]) & (r[1:] == r[:-1])
    lo, hi = e[:-1], s[1:]
    pair &= (hi >= lo) & (hi - lo <= ALLOC_GAP_MAX_NS)
    return tid[1:][pair], lo[pair], hi[pair]


def finding(ctx, m: Measurement) -> list:
    trace = ctx.trace
    api = trace.table("api_calls")
    n_req = len(ctx.measured)
    uid, inv = dense_groups(api["name_id"][m.rows])
    count: dict[str, int] = {}
    for i, c in zip(uid, np.bincount(inv, minlength=len(uid)).tolist()):
        nm = base_name(trace.name(i))
        count[nm] = count.get(nm, 0) + c
    by_call = {nm: round(c / n_req, 2) for nm, c in sorted(count.items(), key=lambda x: (-x[1], x[0]))}
    dur = (api["end_ns"][m.rows] - api["start_ns"][m.rows]).astype(np.float64)
    w = m.waits
    calls_only = _claimed(m.request, m.start_ns, m.end_ns, ctx.requests.count)[ctx.requests.warmup:]
    between = m.between if m.between is not None else np.zeros(len(m.rows), bool)
    numbers = {
        "allocation_calls_per_request": round(len(m.rows) / n_req, 2),
        # of them: the serving loop's, after a request's range and before the next one's, on its thread
        "between_requests_calls_per_request": round(int(between.sum()) / n_req, 2),
        "allocation_calls_by_name_per_request": by_call,
        "allocation_api_ms_per_request": round(float(dur.sum()) / n_req / 1e6, 3),
        "waiting_frees_per_request": round(len(w["row"]) / n_req, 2),
        # GPU idle after the frees beyond the allocation calls themselves (a malloc inside it counted once)
        "gpu_idle_after_frees_ms_per_request": round(max(m.impact_ns - float(calls_only.mean()), 0.0) / 1e6, 3),
        "claimed_ms_per_request": round(m.impact_ns / 1e6, 3),
        "mean_latency_ms": round(ctx.mean_latency_ns / 1e6, 3),
    }
    notes = ["bytes per allocation are not read: the API rows do not carry them (nsys records sizes only with "
             "--cuda-memory-usage=true, in a table this tool does not read yet)"]
    if m.setup_calls:
        notes.append(f"{m.setup_calls} allocation call(s) over {SETUP_CALL_NS / 1e6:g} ms left out: CUDA context "
                     "creation (the cudaFree(0) idiom or a first CUDA call), set-up rather than allocation")
    worst = []
    t = ctx.requests.table
    for r in np.argsort(-m.per_request[ctx.requests.warmup:])[:WORST] + ctx.requests.warmup:
        mine = m.request == r
        after = int((mine & between).sum())
        worst.append(instance(ctx, int(r), t["start_ns"][r], t["start_ns"][r] + t["latency_ns"][r],
                              f"{int(mine.sum())} allocation calls ({dur[mine].sum() / 1e6:.2f} ms"
                              + (f"; {after} of them after the request, before the next" if after else "")
                              + f"), {m.per_request[r] / 1e6:.2f} ms with the GPU idle after frees",
                              tid=int(t["tid"][r])))
    top = next(iter(by_call))
    title = (f"{numbers['allocation_calls_per_request']:g} memory allocation calls per request ({by_call[top]:g}x "
             f"{top}), {numbers['allocation_api_ms_per_request']:.2f} ms of API time; "
             f"{numbers['waiting_frees_per_request']:g} frees wait for the GPU"
             + (f"; {numbers['between_requests_calls_per_request']:g} of the calls between requests"
                if between.any() else ""))
    estimate = ("per request: the union of the allocation calls' own time and, after each free that waited for the "
                f"device and was followed by more GPU work, the GPU idle until the device ran again (each up to "
                f"{REFILL_MAX_NS / 1e6:g} ms), bounded by latency minus the request's own GPU busy time; mean over "
                "measured requests" + ("; the calls between two requests on the request's thread (after its range, "
                                       "before the next) added whole" if between.any() else "")
                + ". An upper bound where the CPU, not the allocation, paces the launches")
    fix = ("Allocate once, not per request: keep a caching allocator or a memory pool in front of cudaMalloc. "
           "PyTorch: do not set PYTORCH_NO_CUDA_MEMORY_CACHING (its caching allocator reuses freed blocks); CuPy: "
           "use its memory pool (cupy.cuda.MemoryPool, the default) and a pinned memory pool; TensorRT: give the "
           "execution context a preallocated workspace (or an IGpuAllocator that reuses memory); own code: "
           "preallocate buffers at start-up, or cudaMallocAsync/cudaFreeAsync from a pool whose release threshold "
           "keeps the memory (cudaMemPoolAttrReleaseThreshold)."
           + (" The calls between requests hand memory back for the next request to allocate again: do not empty the "
              "cache or free buffers after each request (PyTorch: no torch.cuda.empty_cache() in the serving loop; "
              "cap memory with PYTORCH_CUDA_ALLOC_CONF instead)." if between.any() else ""))
    why = ("cudaMalloc and cudaFree are driver calls of tens of microseconds each, and cudaFree (and cudaFreeHost) "
           "waits until the device has finished all its work: every free empties the GPU queue, and the GPU idles "
           "while the CPU allocates and launches again. A caching allocator pays that once, at start-up.")
    return [make_finding(ctx, "memory_allocation", title, m.impact_ns, estimate,
                         Evidence(numbers=numbers, worst=worst, notes=notes), fix, why)]


def diagnose(ctx) -> list:
    m = measure(ctx)
    return [] if m is None else finding(ctx, m)
