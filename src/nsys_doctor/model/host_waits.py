"""Host waits: the calls inside requests that block the CPU until earlier GPU work is done (explicit synchronize
calls and copies that are synchronous for the host), with what each cost: the time blocked, and the GPU idle after
it returned until the device ran anything again. cuda_sync reports them; launch_overhead leaves the gaps after them
to it; the replay (issue 16) removes them.

Explicit waits are the *Synchronize calls (runtime and driver, version suffixes ignored); implicit ones are copies
that block the host: cudaMemcpy (not Async) and device-to-host copies into pageable memory (Async or not), and the
frees that synchronise the device (cudaFree, cudaFreeHost, cuMemFree). A run of completion queries on one thread
(cudaEventQuery/cudaStreamQuery spun until the work is done, with or without sleeps between the queries) is one
wait from its first to its last query (query_runs; model/graph.py folds the run into one host wait the same way).

Who claims which wait (each millisecond has one owner): a free's wait (kind FREE_WAIT) is memory_allocation's, which
counts the whole allocation call plus the GPU idle after it; a sync right after an upload from pageable memory
(kind COPY_WAIT: a framework's blocking `.to("cuda")`) is memory_transfer's, whose fix (pinned, non-blocking) removes
it; cuda_sync counts every other kind and leaves those out. launch_overhead leaves the gap after any of them to its owner.
"""
from __future__ import annotations

import numpy as np

from .api_names import FREE_WAIT_CALLS, QUERY_CALLS, SYNC_CALLS, base_name
from . import activity
from .arrays import distinct_ids, uniq
from .intervals import covered, union
from .projection import (GPU_TABLES, api_corr_key, device_busy_unions, gpu_corr_key, launch_calls,
                         rows_for_calls)
from .requests import Requests
from .trace import Trace, table_len

# Copies that are synchronous for the host whatever the memory (CUDA runtime docs, "API synchronization behavior").
SYNC_COPY_CALLS = ("cudaMemcpy", "cudaMemcpy2D", "cudaMemcpy3D", "cudaMemcpyToSymbol", "cudaMemcpyFromSymbol",
                   "cuMemcpy", "cuMemcpyDtoH", "cuMemcpyHtoD", "cuMemcpy2D", "cuMemcpy3D")
ASYNC_COPY_PREFIXES = ("cudaMemcpy", "cuMemcpy")   # ...Async forms: synchronous only into pageable host memory
DTOH = 2                       # ENUM_CUDA_MEMCPY_OPER device-to-host (fallback when the profile has no enum)
HTOD = 1                       # ENUM_CUDA_MEMCPY_OPER host-to-device
DTOD = 8                       # device-to-device copies never block the host
PAGEABLE = 0                   # ENUM_CUDA_MEM_KIND pageable
SYNC, COPY, ASYNC_COPY, FREE_WAIT, POLL, COPY_WAIT = 1, 2, 3, 4, 5, 6   # kinds of host wait
SETUP_CALL_NS = 50_000_000     # an allocation call over 50 ms is CUDA context creation (the cudaFree(0) idiom, or the
                               # first CUDA call of a process), set-up rather than a free waiting for the device:
                               # nvbitfi darknet1img_tiny's first cudaFree takes 655 ms, hta alexnet's first cudaMalloc
                               # seconds; ex_alloc_before's longest allocation call is 1.9 ms (a cudaHostAlloc)
POLL_MIN_QUERIES = 3           # a spin is 3+ queries in a row: ex_polling_before has 361 of its 688 runs at 10+
                               # (1-2 when the GPU was done already); ex_fusion_before's 369 pairs per 400 requests
                               # are a completion check on work already done, not a spin
POLL_GAP_MAX_NS = 100_000      # queries of one spin follow each other within 100 us: ex_polling_before's gaps are
                               # < 1 us for 7820 of 8580, the largest 59 us (the Python loop preempted)
NOT_READY = 600                # cudaErrorNotReady / CUDA_ERROR_NOT_READY: the query found the work unfinished
POLL_MIN_QUERIES_SEEN = 2      # with return codes recorded, a loop is one or more not-ready queries then the one that
                               # found the work done (ex_sleep_before: 0.5 ms sleeps, often one not-ready query a wait);
                               # a first query that found the work done (ex_fusion_before's checks) starts no loop
POLL_SLEEP_SHARE = 0.5         # a longer gap still belongs to the spin when the thread slept through most of it
                               # (`while not ev.query(): time.sleep(t)`): the CPU did nothing else then
REFILL_MAX_NS = 1_000_000      # GPU idle after a sync counted up to 1 ms: the refill after a drain is the framework
                               # dispatching the next op (sync_heavy: median 0.21, p99 0.63 ms per sync); a longer gap
                               # is a CPU stage of its own (cpu_processing's), which removing the sync would not shorten
                               # (darknet-yolo external profile: a tail of 5-24 ms gaps after its cudaMemcpy calls)


def _classify(trace, name_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct API name id: SYNC explicit sync, COPY always-synchronous copy, ASYNC_COPY async copy (blocks
    when pageable), FREE_WAIT a free that synchronises the device, POLL a completion query (a wait only in a run)."""
    ids = distinct_ids(name_ids)
    kind = np.zeros(len(ids), np.int8)
    for j, i in enumerate(ids):
        base = base_name(trace.name(i))
        if base.startswith(SYNC_CALLS):
            kind[j] = SYNC
        elif base in SYNC_COPY_CALLS:
            kind[j] = COPY
        elif base.startswith(ASYNC_COPY_PREFIXES) and base.endswith("Async") and "Peer" not in base:
            kind[j] = ASYNC_COPY
        elif base in FREE_WAIT_CALLS:
            kind[j] = FREE_WAIT
        elif base in QUERY_CALLS:
            kind[j] = POLL
    return ids, kind


def _copy_of_call(trace, api_rows: np.ndarray):
    """For API rows: (found, copy start, copy kind, dst mem kind) of the copy they launched (by correlation id)."""
    c = trace.table("copies")
    n = len(api_rows)
    found = np.zeros(n, bool)
    start = np.zeros(n, np.int64)
    kind = np.full(n, -1, np.int64)
    dst = np.full(n, -1, np.int64)
    if table_len(c) == 0 or n == 0:
        return found, start, kind, dst
    row = rows_for_calls(trace, "copies", api_rows)
    found = row >= 0
    row = np.maximum(row, 0)
    start = np.where(found, c["start_ns"][row], 0)
    kind = np.where(found, c["kind"][row], -1)
    dst = np.where(found, c["dst_kind"][row], -1)
    return found, start, kind, dst


def _enum_values(trace, enum: str, label_start: str, fallback: int) -> list[int]:
    vals = [v for v, lab in trace.enums.get(enum, {}).items() if lab.lower().startswith(label_start)]
    return vals or [fallback]


def host_waits(trace: Trace, rq: Requests) -> dict:
    """The host waits inside measured requests, as parallel arrays:
    row (api_calls index), request, start_ns, end_ns, blocked_ns (waiting for earlier GPU work), idle_ns (GPU idle
    after the return until the device ran anything again, within the request), refill_ns (idle_ns capped at
    REFILL_MAX_NS), last (a final wait: nothing more launched after it), kind (SYNC, COPY/ASYNC_COPY blocking copy,
    FREE_WAIT, POLL: a run of queries, whose row is its last query); poll_rows and poll_wait: every query of the
    runs and the row of the run's wait it belongs to (for a change that removes the whole loop).
    Diagnoses share one computation through diagnose.common.host_waits(ctx)."""
    api = trace.table("api_calls")
    out = {k: np.zeros(0, np.int64) for k in ("row", "request", "start_ns", "end_ns", "blocked_ns", "refill_ns",
                                               "idle_ns")}
    out["last"] = np.zeros(0, bool)
    out["kind"] = np.zeros(0, np.int8)
    out["poll_rows"] = out["poll_wait"] = np.zeros(0, np.int64)
    if table_len(api) == 0 or len(rq.api_request) != table_len(api):
        return out
    inreq = rq.api_request >= rq.warmup
    ids, kinds = _classify(trace, api["name_id"][inreq])
    if not (kinds > 0).any():
        return out
    rows = np.flatnonzero(inreq)
    k = kinds[np.searchsorted(ids, api["name_id"][rows])]
    polls = _poll_runs(trace, rq, rows, k) if (k == POLL).any() else None
    keep = (k > 0) & (k != POLL)
    rows, k = rows[keep], k[keep]
    # copies: which ones block the host, and how long the call waited before its copy started on the GPU
    found, c_start, c_kind, c_dst = _copy_of_call(trace, rows)
    dtoh = np.isin(c_kind, _enum_values(trace, "CUDA_MEMCPY_OPER", "device-to-host", DTOH))
    dtod = np.isin(c_kind, _enum_values(trace, "CUDA_MEMCPY_OPER", "device-to-device", DTOD))
    pageable = np.isin(c_dst, _enum_values(trace, "CUDA_MEM_KIND", "pageable", PAGEABLE))
    free = (k == FREE_WAIT) & (api["end_ns"][rows] - api["start_ns"][rows] <= SETUP_CALL_NS)
    blocking = (k == SYNC) | free | ((k == COPY) & ~dtod) | ((k == ASYNC_COPY) & found & dtoh & pageable)
    rows, k, found, c_start = rows[blocking], k[blocking], found[blocking], c_start[blocking]
    k = np.where((k == SYNC) & _after_pageable_upload(trace, rq, rows), COPY_WAIT, k).astype(np.int8)
    s, e = api["start_ns"][rows], api["end_ns"][rows]
    copy = (k == COPY) | (k == ASYNC_COPY)
    blocked = np.where(copy, np.clip(np.where(found, c_start, s) - s, 0, e - s), e - s)
    if polls is not None and len(polls[0]):
        last_row, first_start, run_end, out["poll_rows"], out["poll_wait"] = polls
        rows, s, e = np.r_[rows, last_row], np.r_[s, first_start], np.r_[e, run_end]
        blocked = np.r_[blocked, run_end - first_start]
        k = np.r_[k, np.full(len(last_row), POLL, np.int8)]
        o = np.argsort(rows, kind="stable")
        rows, s, e, blocked, k = rows[o], s[o], e[o], blocked[o], k[o]
    if len(rows) == 0:
        return out
    req = rq.api_request[rows]

    idle = _idle_after(trace, rq, req, e)
    refill = np.minimum(idle, REFILL_MAX_NS)
    last = _final(trace, rq, req, s, e, k != FREE_WAIT)
    out.update(row=rows, request=req, start_ns=s, end_ns=e, blocked_ns=blocked, refill_ns=refill, idle_ns=idle,
               last=last, kind=k)
    return out


def _after_pageable_upload(trace: Trace, rq: Requests, rows: np.ndarray) -> np.ndarray:
    """Per api_calls row: its thread's CUDA call just before it (in the same request) launched a host-to-device copy
    from pageable memory. That is a framework's blocking upload of pageable memory (PyTorch's tensor.to("cuda") of
    a pageable tensor: cudaMemcpyAsync, then cudaStreamSynchronize so the host buffer may be reused): the wait goes
    when the memory is pinned and the copy non-blocking (memory_transfer's fix), not by dropping a sync."""
    api, c = trace.table("api_calls"), trace.table("copies")
    out = np.zeros(len(rows), bool)
    if len(rows) == 0 or table_len(c) == 0:
        return out
    htod = np.isin(c["kind"], _enum_values(trace, "CUDA_MEMCPY_OPER", "host-to-device", HTOD))
    upload = htod & np.isin(c["src_kind"], _enum_values(trace, "CUDA_MEM_KIND", "pageable", PAGEABLE))
    if not upload.any():        # no pageable upload in the profile: no thread order to build
        return out
    o, pos = thread_order(trace)
    k = pos[rows]
    prev = o[np.maximum(k - 1, 0)]
    has_prev = (k > 0) & (api["tid"][prev] == api["tid"][rows]) & (rq.api_request[prev] == rq.api_request[rows])
    row = rows_for_calls(trace, "copies", prev[has_prev])
    out[np.flatnonzero(has_prev)] = (row >= 0) & upload[np.maximum(row, 0)]
    return out


def thread_order(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """The api_calls rows in thread order (by thread, then start), and each row's place in it: computed once per
    trace (read_calls and _after_pageable_upload walk the calls of a thread before a given one)."""
    def compute():
        api = trace.table("api_calls")
        o = np.lexsort((api["start_ns"], api["tid"]))
        pos = np.empty(len(o), np.int64)
        pos[o] = np.arange(len(o))
        return o, pos
    return trace.once("api_thread_order", compute)


def merge_reads(a: dict, b: dict) -> dict:
    """Two read_calls results of disjoint waits as one: their windows one after the other (the replay takes their
    union), their call and copy rows together."""
    out = {k: np.concatenate([a[k], b[k]]) for k in ("tid", "start_ns", "end_ns")}
    out.update({k: uniq(np.concatenate([a[k], b[k]])) for k in ("call_rows", "copy_rows")})
    return out


def bare_syncs(trace: Trace, waits: dict) -> np.ndarray:
    """Per host wait: is it a bare synchronize (`torch.cuda.synchronize()`): a SYNC whose previous call on its thread
    did not copy anything device-to-host (that would make it a value read: `.item()`, `.cpu()`)?"""
    out = waits["kind"] == SYNC
    if not out.any():
        return out
    api = trace.table("api_calls")
    o, pos = thread_order(trace)
    rows = waits["row"][out]
    k = pos[rows]
    prev = o[np.maximum(k - 1, 0)]
    has_prev = (k > 0) & (api["tid"][prev] == api["tid"][rows])
    found, _, c_kind, _ = _copy_of_call(trace, prev)
    dtoh = found & np.isin(c_kind, _enum_values(trace, "CUDA_MEMCPY_OPER", "device-to-host", DTOH))
    out[out] = ~(has_prev & dtoh)
    return out


def select(waits: dict, keep: np.ndarray) -> dict:
    """The waits where `keep` holds (the parallel arrays cut; the queries of the polling runs kept follow them)."""
    out = {k: v[keep] for k, v in waits.items() if k not in ("poll_rows", "poll_wait")}
    on = np.isin(waits["poll_wait"], out["row"])
    out["poll_rows"], out["poll_wait"] = waits["poll_rows"][on], waits["poll_wait"][on]
    return out


def _poll_runs(trace: Trace, rq: Requests, rows: np.ndarray, k: np.ndarray):
    """Runs of completion queries inside requests (query_runs, each run inside one request). Returns (last query
    row, first query's start, last query's end) per run, and every member row with its run's last row."""
    api = trace.table("api_calls")
    first, last, _, members, run = query_runs(trace, api, rows, k == POLL, group=rq.api_request[rows])
    return last, api["start_ns"][first], api["end_ns"][last], members, last[run]


def query_runs(trace: Trace | None, api, rows: np.ndarray, is_query: np.ndarray, group: np.ndarray | None = None):
    """Runs of completion queries (cudaEventQuery/cudaStreamQuery spun until the work is done) among these api_calls
    rows: queries in a row on one thread (no other CUDA call among `rows` between them, the same `group` where
    given), each within POLL_GAP_MAX_NS of the previous one's return, or after a longer gap that the thread spent at
    least POLL_SLEEP_SHARE asleep (a sleep-poll loop; needs `trace` for its OS runtime calls). Where the export has
    the calls' return codes, every query but a loop's last found the work unfinished (NOT_READY) and a loop has
    POLL_MIN_QUERIES_SEEN or more; otherwise POLL_MIN_QUERIES or more.
    Returns per run its first and last query row and the start of its last-but-one query (the latest time the work
    was seen unfinished), and every member row with the index of its run."""
    rows = np.asarray(rows, np.int64)
    none = np.zeros(0, np.int64)
    if int(np.count_nonzero(is_query)) < POLL_MIN_QUERIES_SEEN:
        return none, none, none, none, none
    tid, start, end = api["tid"][rows], api["start_ns"][rows], api["end_ns"][rows]
    status = _query_status(api, rows, is_query)
    if len(tid) and int(tid.min()) == int(tid.max()) and bool(np.all(start[1:] >= start[:-1])):
        o = np.arange(len(rows))             # one thread, in time order (most inference processes): no sort
    else:
        o = np.lexsort((start, tid))         # each thread's calls in time order
    r, t, s, e, q = rows[o], tid[o], start[o], end[o], np.asarray(is_query, bool)[o]
    joined = q[1:] & q[:-1] & (t[1:] == t[:-1])
    if status is not None:
        joined &= status[o][:-1] == NOT_READY    # the query before found the work unfinished: the loop goes on
    if group is not None:
        g = np.asarray(group)[o]
        joined &= g[1:] == g[:-1]
    gap = s[1:] - e[:-1]
    long_gap = joined & (gap > POLL_GAP_MAX_NS)
    if long_gap.any():
        li = np.flatnonzero(long_gap)
        joined[li] = _asleep(trace, t[li], e[li], s[li + 1]) >= POLL_SLEEP_SHARE * gap[li]
    new = np.r_[True, ~joined]                # a run starts wherever a query does not continue the previous one
    run = np.cumsum(new) - 1
    size = np.bincount(run)
    member = q & (size[run] >= (POLL_MIN_QUERIES if status is None else POLL_MIN_QUERIES_SEEN))
    first = np.flatnonzero(new & member)     # positions of each kept run's first query
    last_i = first + size[run[first]] - 1    # a run's members are consecutive in this order
    idx = np.searchsorted(first, np.flatnonzero(member), side="right") - 1
    return r[first], r[last_i], s[last_i - 1], r[member], idx


def _query_status(api, rows: np.ndarray, is_query: np.ndarray) -> np.ndarray | None:
    """The return codes of these rows, None when the export has none for their queries (the column absent, or -1)."""
    if "status" not in api and "status" not in getattr(api, "lazy_names", ()):   # a LazyTable reads it on first use
        return None
    st = np.asarray(api["status"])[rows]
    q = np.asarray(is_query, bool)
    return st if q.any() and bool((st[q] >= 0).all()) else None


def _first_at(tid_o: np.ndarray, s_o: np.ndarray, lo: np.ndarray, tid: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per (thread, time): the position of that thread's first call starting at or after t, in calls ordered by
    thread then start (tid_o, s_o; lo: each thread's first position)."""
    out = np.empty(len(t), np.int64)
    for u in uniq(tid).tolist():                      # a few threads: one search each over its own calls
        m = tid == u
        a = int(lo[m][0])
        b = int(np.searchsorted(tid_o, u, side="right"))
        out[m] = np.searchsorted(s_o[a:b], t[m], side="left") + a
    return out


def _asleep(trace: Trace | None, tid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per window (thread, lo, hi): the time that thread spent in sleep calls (model/activity.py SLEEP_CALLS)."""
    out = np.zeros(len(tid), np.int64)
    osc = trace.table("os_calls") if trace is not None else None
    if osc is None or table_len(osc) == 0:
        return out
    sleeping = activity.os_call_class(trace, osc["name_id"]) == activity.CAUSES.index("sleep")
    for t in np.unique(tid).tolist():
        on = np.flatnonzero(sleeping & (osc["tid"] == t))
        if len(on) == 0:
            continue
        us, ue = union(osc["start_ns"][on].astype(np.int64), osc["end_ns"][on].astype(np.int64))
        m = tid == t
        out[m] = covered(us, ue, lo[m].astype(np.int64), hi[m].astype(np.int64))
    return out


def _idle_after(trace: Trace, rq: Requests, req: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Per wait: the GPU idle after its return (at e) until the request's device runs anything again, 0 when the
    device was still busy or the request had no more GPU work."""
    t = rq.table
    req_end = t["start_ns"][req] + t["latency_ns"][req]
    dev = t["device"][req]
    idle = np.zeros(len(req), np.int64)
    for d, (us, ue) in device_busy_unions(trace, dev).items():
        m = np.flatnonzero(dev == d)
        if len(us) == 0:
            continue
        j = np.searchsorted(us, e[m], side="right")          # first block starting after the return
        busy_now = (j > 0) & (ue[np.clip(j - 1, 0, None)] > e[m])
        nxt = np.where(j < len(us), us[np.clip(j, 0, len(us) - 1)], np.iinfo(np.int64).max)
        later = nxt < req_end[m]                               # the request still had GPU work to come
        idle[m] = np.where(busy_now | ~later, 0, nxt - e[m])
    return idle


def _final(trace: Trace, rq: Requests, req: np.ndarray, s: np.ndarray, e: np.ndarray,
           for_result: np.ndarray) -> np.ndarray:
    """Per wait: a final one, which no fix removes."""
    # the request's final wait (the result is needed on the host) is not avoidable, nor is any wait after which
    # the request starts no more GPU work (`.cpu()` = a blocking copy then a stream sync: both wait for the result);
    # the final wait for the result is among `for_result` (a free at the end does not fetch the result)
    cand = np.flatnonzero(for_result)
    order = cand[np.lexsort((s[cand], req[cand]))]
    last = np.zeros(len(req), bool)
    last[order] = np.r_[req[order][1:] != req[order][:-1], True] if len(order) else np.zeros(0, bool)
    last_gpu = np.full(rq.count, -1, np.int64)
    for name in GPU_TABLES:
        r = rq.gpu_request.get(name, np.zeros(0, np.int64))
        if len(r) and (r >= 0).any():
            np.maximum.at(last_gpu, r[r >= 0], trace.table(name)["start_ns"][r >= 0])
    last |= last_gpu[req] <= e
    return last


def read_calls(trace: Trace, waits: dict, keep: np.ndarray, max_cpu_ns: int) -> dict:
    """What a host read costs besides its wait, for the waits `keep` selects: the CPU time on its thread right before
    the wait back to the previous call that launched other GPU work (kernels, input copies), at most `max_cpu_ns`
    (the framework's dispatch of `.item()`/`.cpu()`/`event.record()`), the calls wholly inside that stretch (the
    small device-to-host copy that fed the wait, an event record), and the device-to-host copies those calls
    launched. A code change that drops the read drops all of them. As parallel arrays: tid, start_ns, end_ns (one
    window of that CPU time per kept wait, ending where the wait starts), call_rows (api_calls: the calls inside
    the windows, and the wait calls themselves, a polling loop's every query), copy_rows (copies)."""
    api = trace.table("api_calls")
    rows = waits["row"][keep]
    out = {"tid": api["tid"][rows].astype(np.int64), "start_ns": waits["start_ns"][keep].astype(np.int64),
           "end_ns": waits["start_ns"][keep].astype(np.int64), "call_rows": np.zeros(0, np.int64),
           "copy_rows": np.zeros(0, np.int64)}
    if len(rows) == 0:
        return out
    launched = launch_calls(trace)
    found, _, c_kind, _ = _copy_of_call(trace, np.arange(table_len(api)))
    dtoh = found & np.isin(c_kind, _enum_values(trace, "CUDA_MEMCPY_OPER", "device-to-host", DTOH))
    stop = launched & ~dtoh                      # a call that launched other GPU work ends the read's stretch,
    stop[waits["row"]] = True                    # and so does another wait
    stop[waits["poll_rows"]] = True
    o, pos = thread_order(trace)
    tid_o, s_o, e_o = api["tid"][o], api["start_ns"][o], api["end_ns"][o]
    last_stop = np.maximum.accumulate(np.where(stop[o], np.arange(len(o)), -1))
    # the wait's first call (a polling loop's first query) in that order, and the stop call before it
    k = pos[rows]
    # the call that starts the wait (a loop's first query starts at waits.start_ns): the first of its thread's calls
    # (in start order) starting at or after it, never after the wait's own row; lo: its thread's first
    lo = np.searchsorted(tid_o, tid_o[k], side="left")
    k = np.minimum(k, _first_at(tid_o, s_o, lo, tid_o[k], out["start_ns"]))
    prev = np.where(k > 0, last_stop[np.maximum(k - 1, 0)], -1)
    ok = (prev >= 0) & (prev >= lo)
    floor = np.where(ok, e_o[np.clip(prev, 0, None)], out["start_ns"])
    start = np.maximum(floor, out["start_ns"] - int(max_cpu_ns))
    out["start_ns"] = np.minimum(start, out["start_ns"])
    # calls wholly inside [start, first call of the wait): the read's own calls (those of its thread starting in the
    # window before the wait's first call, ending by that call's start)
    j0 = np.minimum(_first_at(tid_o, s_o, lo, tid_o[k], out["start_ns"]), k)
    n = k - j0
    j = np.repeat(j0 - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))     # every position of those ranges
    inside = e_o[j] <= s_o[np.repeat(k, n)]
    cr = o[j[inside]]
    loops = waits["poll_rows"][np.isin(waits["poll_wait"], rows)]
    # np.union1d's np.unique takes numpy's slow hash path (model/arrays.py): one sort instead
    out["call_rows"] = uniq(np.concatenate([cr, rows, loops]).astype(np.int64))
    cr = out["call_rows"]
    if len(cr) and trace.has("copies"):
        ck = gpu_corr_key(trace, "copies")
        key = api_corr_key(trace)[cr[dtoh[cr]]]
        out["copy_rows"] = np.flatnonzero(np.isin(ck, key))
    return out
