"""CUDA synchronisation: the serving thread waits for the GPU inside a request (cudaDeviceSynchronize after every
layer, `.item()` / `.cpu()` in the loop, synchronous copies). Each wait empties the GPU queue, so after it returns
the GPU sits idle until the CPU has launched the next work: the request pays for CPU and GPU one after the other.

The waits themselves (explicit synchronize calls, copies that block the host, runs of completion queries spun until
the GPU is done) are found in model/host_waits.py. A copy's own transfer time belongs to the memory-transfer
diagnosis; here only its wait for earlier GPU work counts. Frees that synchronise the device (cudaFree) are host
waits too, but memory_allocation claims them with the rest of the allocation calls: they are left out here, so no
millisecond is counted by both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.api_names import EVENT_RECORD_CALLS, EVENT_SYNC_CALLS, QUERY_CALLS, base_name, name_ids
from ..model.arrays import dense_groups, distinct_ids, id_mask, is_sorted, uniq
from ..model.changes import RemoveCpuTime, RemoveHostWaits, ScaleGpuWork
from ..model.host_waits import (ASYNC_COPY, COPY, COPY_WAIT, FREE_WAIT, POLL, REFILL_MAX_NS, SYNC, bare_syncs,
                                merge_reads, read_calls, select)
from ..model.replay import GRAPH_DISPATCH_MAX_NS
from ..model.projection import corr_key, launch_calls, rows_for_calls
from ..model.trace import table_len
from ..report import Evidence
from .common import WORST, host_waits, instance, make_finding, per_request_mean
from .common import no_data, not_evaluated

MIN_REPORT_PCT = 1.0           # under 1% of request latency a sync is not worth a line (memcpy_pageable 0.2%,
                               # cpu_postproc, thread_contention: only the final wait for the result)

CATEGORIES = ("cuda_sync",)
NEEDS = ("api_calls", "kernels", "copies", "syncs")


@dataclass
class Measurement:
    impact_ns: float        # mean over measured requests of the avoidable waits' cost, bounded per request
    waits: dict             # model.host_waits: the host waits inside measured requests (parallel arrays)
    avoid: np.ndarray       # per wait: avoidable (not a request's final wait for its result)
    cost: np.ndarray        # per wait: ns blocked plus the GPU refill after it, 0 when not avoidable
    reads: dict | None = None   # model.host_waits.read_calls of the avoidable waits: what the fix drops with them
    reads_events: dict | None = None   # the same where bare synchronize calls become CUDA event records instead
    checks: np.ndarray | None = None      # completion_checks: api_calls rows of the polling code's one-query checks
    check_cost: np.ndarray | None = None  # per check: ns of CPU from its record's dispatch to the query's return


def measure(ctx) -> Measurement | None:
    trace, rq = ctx.trace, ctx.requests
    if "api_calls" in trace.absent:
        return not_evaluated(ctx, CATEGORIES, no_data(trace, "api_calls", "CUDA API calls"))
    if ctx.mean_latency_ns <= 0:
        return None
    sc = host_waits(ctx)
    sc = select(sc, (sc["kind"] != FREE_WAIT) & (sc["kind"] != COPY_WAIT))  # memory_allocation's, memory_transfer's
    checks = completion_checks(trace, rq, sc)
    if len(sc["row"]) == 0 and len(checks) == 0:
        return None
    n_req = len(ctx.measured)
    avoid = ~sc["last"]
    # the CPU dispatch of an event wait before its calls is bounded as the framework's per-op dispatch elsewhere;
    # the polling code's checks that found the GPU done go the same way (completion_checks)
    api = trace.table("api_calls")
    ext = {"row": np.r_[sc["row"], checks], "poll_rows": sc["poll_rows"], "poll_wait": sc["poll_wait"],
           "start_ns": np.r_[sc["start_ns"], api["start_ns"][checks]].astype(np.int64)}
    # a bare synchronize goes whole too, with the framework code before it (torch.cuda.synchronize()); replaced by
    # CUDA event records (per-layer timing) that code stays: the alternative form of the fix (alternatives())
    ev = event_waits(trace, sc)
    bare = avoid & bare_syncs(trace, sc) & ~ev
    no_checks = np.zeros(len(checks), bool)
    reads = read_calls(trace, ext, np.r_[avoid & ev, np.ones(len(checks), bool)], GRAPH_DISPATCH_MAX_NS)
    # a check's cost: the CPU from the dispatch before its record to the query's return (its window is among the
    # last k, after the waits')
    k = len(checks)
    check_cost = (api["end_ns"][checks] - reads["start_ns"][len(reads["start_ns"]) - k:]).astype(np.float64) \
        if k else np.zeros(0)
    reads_events = None
    if bare.any():
        reads_events = reads
        reads = merge_reads(reads, read_calls(trace, ext, np.r_[bare, no_checks], GRAPH_DISPATCH_MAX_NS))
    cost = (sc["blocked_ns"] + sc["refill_ns"]) * avoid
    # fixing can't make a request faster than its own GPU work: bound per request by latency - own busy time
    per_req = np.bincount(np.r_[sc["request"], rq.api_request[checks]], weights=np.r_[cost, check_cost],
                          minlength=rq.count)
    t = rq.table
    bound = np.maximum(t["latency_ns"] - t["busy_ns"], 0)
    saved = np.minimum(per_req, bound)[rq.warmup:]
    impact_ns = float(saved.mean()) if n_req else 0.0
    if 100.0 * impact_ns / ctx.mean_latency_ns < MIN_REPORT_PCT:
        return None
    return Measurement(impact_ns=impact_ns, waits=sc, avoid=avoid, cost=cost, reads=reads, checks=checks,
                       check_cost=check_cost, reads_events=reads_events)


def completion_checks(trace, rq, waits: dict) -> np.ndarray:
    """api_calls rows: completion checks of the work just queued that found it done. `ev.record(); while not
    ev.query(): ...` is one query when the GPU has finished before the first check (the CPU was the slower side):
    no wait, so host_waits counts no loop, but it is polling code, and the fix drops it with its record and the
    dispatch before it. A check here: a completion query (QUERY_CALLS) inside a measured request, in no polling
    loop, that found the work done (its return code, where the export has them), whose thread recorded an event
    after the request's last launch or host wait before it, of that very event (_asks_its_record), and before the
    request's final wait. A query of an older event (a pipelined server asking whether request i-16 is done, the
    caching allocators' checks) follows a launch or a wait instead, or asks about another event, and stays.
    Measured in one process (examples/polling_wait.py --ab, record_examples.sh abtrace, benchmarks/ab_blocks.py):
    3.8 of the 16 waits per request were such checks in ex_polling_abt_r2, and in a block whose CPU ran slow
    (5.3 ms/request against 4.5) most were: the replay without them predicted 0.16 ms where the fix saved 2.0. At
    --tokens 1024 (abtrace2) every wait was one: no loop at all, 0.64-1.02 ms/request saved by removing them."""
    none = np.zeros(0, np.int64)
    api = trace.table("api_calls")
    if table_len(api) == 0 or len(rq.api_request) != table_len(api):
        return none
    names = api["name_id"]
    qids = name_ids(trace, distinct_ids(names), lambda n: n in QUERY_CALLS)
    if len(qids) == 0:
        return none
    is_q = id_mask(names, qids)
    inreq = rq.api_request >= rq.warmup
    cand = np.flatnonzero(is_q & inreq)
    cand = cand[~id_mask(cand, waits["poll_rows"])]
    if len(cand) == 0:
        return none
    if "status" in api or "status" in getattr(api, "lazy_names", ()):
        st = np.asarray(api["status"])[cand]
        if (st >= 0).all():
            cand = cand[st == 0]                      # found the work done (cudaSuccess)
    if len(cand) == 0:
        return none
    # the calls of those threads inside measured requests, by thread then start
    tid_all = np.asarray(api["tid"])
    rows = np.flatnonzero(inreq & np.isin(tid_all, uniq(tid_all[cand])))
    o = rows[np.lexsort((np.asarray(api["start_ns"])[rows], tid_all[rows]))]
    rec = id_mask(names[o], name_ids(trace, names[o], lambda n: n.startswith(EVENT_RECORD_CALLS)))
    stop = launch_calls(trace)[o] | id_mask(o, waits["row"]) | id_mask(o, waits["poll_rows"]) | is_q[o]
    pos = np.arange(len(o))
    last_rec = np.maximum.accumulate(np.where(rec, pos, -1))
    last_stop = np.maximum.accumulate(np.where(stop, pos, -1))
    # each candidate's position in that order: a search where the rows are in time order already (the usual case)
    if is_sorted(o):
        at = np.searchsorted(o, cand)
    else:
        inv = np.empty(table_len(api), np.int64)
        inv[o] = pos
        at = inv[cand]
    prev_rec = np.where(at > 0, last_rec[np.maximum(at - 1, 0)], -1)
    prev_stop = np.where(at > 0, last_stop[np.maximum(at - 1, 0)], -1)
    same_thread = (prev_rec >= 0) & (tid_all[o[np.maximum(prev_rec, 0)]] == tid_all[cand])
    same_req = (prev_rec >= 0) & (rq.api_request[o[np.maximum(prev_rec, 0)]] == rq.api_request[cand])
    ok = same_thread & same_req & (prev_rec > prev_stop)
    cand, recs = cand[ok], o[np.maximum(prev_rec, 0)][ok]
    cand = cand[_asks_its_record(trace, waits, cand, recs)]
    # before the request's final wait (the one for its result stays, and so does what follows it)
    final = np.full(rq.count, np.iinfo(np.int64).max, np.int64)
    last = waits["last"]
    np.minimum.at(final, waits["request"][last], waits["start_ns"][last].astype(np.int64))
    start = np.asarray(api["start_ns"])[cand].astype(np.int64)
    return cand[start < final[rq.api_request[cand]]]


def _asks_its_record(trace, waits: dict, queries: np.ndarray, records: np.ndarray) -> np.ndarray:
    """Per (query, the event record before it): does the query ask about that very event? By CUPTI's event ids
    where the export has them (the synchronisation record of a query that found its event done, the event record
    of the record call, both by correlation id): PyTorch's pinned-memory allocator also records an event after a
    copy and queries its oldest events at the next allocation (hta ns_resolution_trace: 79 such queries per step),
    which is no polling the user wrote. Without event ids (PyTorch profiler traces), only on a thread whose polling
    code did wait somewhere (an avoidable polling loop in the requests)."""
    out = np.zeros(len(queries), bool)
    if len(queries) == 0:
        return out
    ev_q = _event_of(trace, "syncs", queries)
    ev_r = _event_of(trace, "event_records", records)
    known = (ev_q >= 0) & (ev_r >= 0)
    out[known] = ev_q[known] == ev_r[known]
    if (~known).any():
        api = trace.table("api_calls")
        poll = ~waits["last"] & (waits["kind"] == POLL)
        looped = uniq(np.asarray(api["tid"])[waits["row"][poll]].astype(np.int64))
        out[~known] = np.isin(np.asarray(api["tid"])[queries[~known]], looped)
    return out


def _event_of(trace, table: str, rows: np.ndarray) -> np.ndarray:
    """The CUPTI event id that table (syncs: a query's or sync's record; event_records: a record call's) holds
    for these api_calls rows, by (process, correlation id); -1 where it has none."""
    at = rows_for_calls(trace, table, rows)
    if not (at >= 0).any() or "event" not in trace.table(table):
        return np.full(len(rows), -1, np.int64)
    return np.where(at >= 0, np.asarray(trace.table(table)["event"]).astype(np.int64)[np.maximum(at, 0)], -1)


def event_waits(trace, waits: dict) -> np.ndarray:
    """Per host wait: is it a wait on an event recorded only to be waited on (a polling loop of completion queries,
    an event synchronize)? The fix drops such a wait whole, with its event's record and the code that made it:
    nothing replaces it. Every other avoidable wait goes as a wait (a synchronize call with it): a value read
    (`.item()`, `.cpu()` of a small tensor: a device-to-host copy, then a wait) keeps its value on the GPU, where an
    op of the same launch cost takes the copy's place; a bare synchronize leaves the code around it (per-layer
    timing, logging) in another form.
    Measured with both variants alternating in one process (examples/*.py --ab; tests/data/pairs.json "ab"): the
    early-exit reads' fix (`confs[i] = conf` for `conf.item()`) saved -0.07 ms/request (per process 0.02, -1.03,
    -0.07) where removing each read's copy call and dispatch as well predicted 0.72; per-layer synchronize for
    timing replaced by CUDA events saved -0.11 (0.18, -1.00) where 0.60 was predicted that way; the polling loops'
    fix saved 1.26 (1.23-1.33), of which the wait alone explained 0.37."""
    out = waits["kind"] == POLL
    sync = waits["kind"] == SYNC
    if sync.any():
        names = trace.table("api_calls")["name_id"][waits["row"][sync]]
        out[sync] = id_mask(names, name_ids(trace, names, lambda n: n.startswith(EVENT_SYNC_CALLS)))
    return out


def change(m: Measurement, reads: dict | None = None) -> list:
    """The avoidable host waits no longer block (a polling loop: all its queries), so the CPU queues the next GPU
    work ahead. A wait on an event (event_waits) or a bare synchronize (host_waits.bare_syncs) goes whole with the
    code that made it: its calls (the event's record) and the CPU dispatch right before it (host_waits.read_calls,
    up to GRAPH_DISPATCH_MAX_NS: the framework's `torch.cuda.synchronize()`, `event.record()`); a value read keeps
    its copy call and the CPU time before it (see event_waits). The final wait a request needs for its result
    stays. `reads`: another read_calls result in place of the measurement's (alternatives())."""
    reads = m.reads if reads is None else reads
    rows = m.waits["row"][m.avoid]
    loops = m.waits["poll_rows"][np.isin(m.waits["poll_wait"], rows)]
    # a synchronize call goes with its wait (nothing is left to call); a copy that waited stays, as the op that
    # keeps its value on the GPU
    gone = m.waits["row"][m.avoid & (m.waits["kind"] == SYNC)]
    if reads is not None:
        gone = uniq(np.concatenate([gone, reads["call_rows"]]))
    # np.union1d's np.unique takes numpy's slow hash path (model/arrays.py): uniq sorts
    out = [RemoveHostWaits(api_rows=uniq(np.concatenate([rows, loops])),
                           read_calls=gone if len(gone) else None)]
    if reads is not None and len(reads["start_ns"]):
        out.append(RemoveCpuTime(tid=reads["tid"], start_ns=reads["start_ns"], end_ns=reads["end_ns"]))
        if len(reads["copy_rows"]):
            out.append(ScaleGpuWork(table="copies", rows=reads["copy_rows"], factor=0.0))
    return out


def alternatives(m: Measurement) -> list:
    """Another form of the fix, predicted beside the main one: where bare synchronize calls time the layers, they
    become CUDA event records, whose `event.record()` costs the CPU about what the synchronize call did, so only the
    wait goes. Measured (examples/*.py --ab, tests/data/pairs.json): layer_timing_sync's events fix saved -0.11
    ms/request (per process 0.18, -1.00, -0.11; the wait alone predicts 0.12), the same layers' syncs deleted
    (transformer_sync.py) saved 0.48 (0.36, 0.48, 0.89; deleted with their calls 0.58)."""
    if m.reads_events is None:
        return []
    return [("events", "the bare synchronize calls replaced by CUDA event records (per-layer timing): only their "
             "waits go", change(m, m.reads_events))]


def _by_call(trace, rows_name_id: np.ndarray, n_req: int):
    """Per wait its call's base name, and waits per request by base name (most first)."""
    uid, inv = dense_groups(rows_name_id)        # names judged once per distinct API name
    names = np.array([base_name(trace.name(i)) for i in uid], object)[inv]
    n_of: dict[str, int] = {}
    for nm, c in zip((base_name(trace.name(i)) for i in uid), np.bincount(inv, minlength=len(uid)).tolist()):
        n_of[nm] = n_of.get(nm, 0) + c
    # most first, ties by name (a set's order of strings changes from run to run with the hash seed)
    by_api = {str(nm): round(float(n_of[nm]) / n_req, 2)
              for nm in sorted(set(names.tolist()), key=lambda x: (-n_of[x], x))}
    return names, by_api


def finding(ctx, m: Measurement) -> list:
    trace = ctx.trace
    sc, avoid, cost = m.waits, m.avoid, m.cost
    n_req = len(ctx.measured)
    req = sc["request"]
    api = trace.table("api_calls")
    if len(sc["row"]) == 0:
        return _checks_finding(ctx, m)
    names, by_api = _by_call(trace, api["name_id"][sc["row"]], n_req)
    per = lambda v: per_request_mean(v.astype(np.float64), req, ctx) / 1e6  # noqa: E731
    numbers = {
        "syncs_per_request": round(len(req) / n_req, 2),
        "avoidable_syncs_per_request": round(float(avoid.sum()) / n_req, 2),
        "blocked_ms_per_request": round(per(sc["blocked_ns"]), 3),
        "gpu_idle_after_sync_ms_per_request": round(per(sc["refill_ns"] * avoid), 3),
        "avoidable_blocked_ms_per_request": round(per(sc["blocked_ns"] * avoid), 3),
        "syncs_by_call_per_request": by_api,
        "implicit_copy_syncs_per_request": round(float(np.isin(sc["kind"], (COPY, ASYNC_COPY)).sum()) / n_req, 2),
        "mean_latency_ms": round(ctx.mean_latency_ns / 1e6, 3),
    }
    polls = sc["kind"] == POLL
    if polls.any():
        numbers["polling_loops_per_request"] = round(float(polls.sum()) / n_req, 2)
        numbers["queries_per_polling_loop"] = round(len(sc["poll_rows"]) / float(polls.sum()), 1)
    if m.checks is not None and len(m.checks):
        numbers.update(_check_numbers(ctx, m))
    notes = []
    types = _sync_types(ctx, sc["row"])
    if types:
        numbers["sync_records_by_type"] = types
    elif "syncs" in trace.absent:
        notes.append(f"no CUPTI synchronisation records ({trace.absent['syncs']}); waits found by API name")

    # worst instances: the avoidable waits that cost most
    worst = []
    for i in np.argsort(-cost)[:WORST]:
        if cost[i] <= 0:
            break
        row = int(sc["row"][i])
        worst.append(instance(ctx, int(req[i]), sc["start_ns"][i], sc["end_ns"][i] + sc["idle_ns"][i],
                              f"{names[i]}{' loop' if sc['kind'][i] == POLL else ''} blocked "
                              f"{sc['blocked_ns'][i] / 1e6:.3f} ms, then GPU idle "
                              f"{sc['idle_ns'][i] / 1e6:.3f} ms until the next launch",
                              tid=int(api["tid"][row]), name=str(names[i]),
                              code=_call_site(trace, int(api["callchain"][row]))))
    if not (api["callchain"][sc["row"]] >= 0).any():
        notes.append("call sites unknown: CUDA API backtraces were not recorded (nsys profile --cudabacktrace=all)")
    top = max(by_api, key=by_api.get)
    loop = " polling loop" if top in QUERY_CALLS else ""
    title = (f"{numbers['syncs_per_request']:g} host waits per request ({by_api[top]:g}x {top}{loop}), "
             f"{numbers['avoidable_syncs_per_request']:g} of them before more GPU work: the GPU idles "
             f"{numbers['gpu_idle_after_sync_ms_per_request']:.2f} ms after them")
    estimate = ("per request: sum over its host waits except the final one(s) after which it launches no more GPU "
                "work (the result must reach the host once) of the "
                "time blocked waiting for earlier GPU work plus the GPU idle from the return until the device runs "
                f"again (each up to {REFILL_MAX_NS / 1e6:g} ms), bounded by latency minus the request's own GPU busy "
                "time; mean over measured requests. An upper bound where the CPU, not the wait, paces the launches")
    fix = _fix(top, numbers)
    why = ("A synchronising call returns only when the GPU has finished everything queued, so the CPU cannot queue "
           "the next layer ahead: after each wait the GPU idles while the CPU dispatches and launches again, and "
           "CPU and GPU time add up instead of overlapping.")
    return [make_finding(ctx, "cuda_sync", title, m.impact_ns, estimate,
                         Evidence(numbers=numbers, worst=worst, notes=notes), fix, why)]


def _check_numbers(ctx, m: Measurement) -> dict:
    n_req = len(ctx.measured)
    req = ctx.requests.api_request[m.checks]
    return {"completion_checks_per_request": round(len(m.checks) / n_req, 2),
            "completion_check_cpu_ms_per_request": round(per_request_mean(m.check_cost, req, ctx) / 1e6, 3)}


def _checks_finding(ctx, m: Measurement) -> list:
    """The finding when the polling code never waited: every check found the GPU done (the CPU is the slower side),
    and the code's cost is its CPU time (event record, query and the dispatch around them)."""
    trace = ctx.trace
    api = trace.table("api_calls")
    numbers = _check_numbers(ctx, m)
    numbers["mean_latency_ms"] = round(ctx.mean_latency_ns / 1e6, 3)
    top = base_name(trace.name(int(api["name_id"][m.checks[0]])))
    worst = []
    for i in np.argsort(-m.check_cost)[:WORST]:
        row = int(m.checks[i])
        start = int(api["end_ns"][row] - m.check_cost[i])
        worst.append(instance(ctx, int(ctx.requests.api_request[row]), start, int(api["end_ns"][row]),
                              f"event record then {top}: {m.check_cost[i] / 1e6:.3f} ms of CPU, the GPU already "
                              f"done", tid=int(api["tid"][row]), name=top,
                              code=_call_site(trace, int(api["callchain"][row]))))
    title = (f"{numbers['completion_checks_per_request']:g} completion checks per request ({top} right after an "
             f"event record) found the GPU done: the code around them costs "
             f"{numbers['completion_check_cpu_ms_per_request']:.2f} ms of CPU per request")
    estimate = ("per request: the CPU time from the dispatch before each check's event record (back to the last "
                f"launch, at most {GRAPH_DISPATCH_MAX_NS / 1e3:g} us) to the check's return, bounded by latency minus "
                "the request's own GPU busy time; mean over measured requests")
    fix = ("Remove the completion checks: a `while not event.query()` loop (or a progress check) after each stage "
           "found the GPU done every time, because the CPU is the slower side; it waits for nothing and costs an "
           "event record, a query and the Python around them per stage. Wait once per request, where the host "
           "needs the result.")
    why = ("The request's CPU thread bounds its latency (the GPU finishes each stage before the check runs), so "
           "every microsecond of CPU work in it is latency; the checks add work without ordering anything.")
    return [make_finding(ctx, "cuda_sync", title, m.impact_ns, estimate,
                         Evidence(numbers=numbers, worst=worst, notes=[]), fix, why)]


def diagnose(ctx) -> list:
    m = measure(ctx)
    return [] if m is None else finding(ctx, m)


def _call_site(trace, chain: int) -> str | None:
    """The first frame of a CUDA API backtrace outside the CUDA and system libraries, as "function (module)"."""
    if chain < 0:
        return None
    cc = trace.table("os_callchains")
    m = np.flatnonzero(cc["id"] == chain)
    for j in m[np.argsort(cc["depth"][m])]:
        mod = trace.name(cc["module_id"][j])
        base = mod.rsplit("/", 1)[-1]
        if not base.startswith(("libcuda", "libcudart", "libcupti", "libToolsInjection", "libc.", "libc-",
                                "libpthread", "ld-linux", "[")):
            return f"{trace.name(cc['symbol_id'][j])} ({base})"
    return None


def _fix(top: str, numbers: dict) -> str:
    parts = []
    if top in QUERY_CALLS:
        parts.append("Stop spinning on event.query()/cudaEventQuery until the GPU is done: the loop is a "
                     "synchronize that also burns a core. Wait only where the host needs the result, once per "
                     "request; order GPU work with stream.wait_event (GPU-side), or block once with "
                     "event.synchronize().")
    elif top.startswith(("cudaDeviceSynchronize", "cuCtxSynchronize", "cudaThreadSynchronize")):
        parts.append("Remove torch.cuda.synchronize()/cudaDeviceSynchronize between layers; wait once per request, "
                     "where the host reads the result (for timing use CUDA events, not device syncs).")
    elif top.startswith(("cudaStreamSynchronize", "cuStreamSynchronize")):
        parts.append("Stop synchronising the stream mid-request: .item(), .cpu(), .tolist(), printing a tensor and "
                     "data-dependent Python branches each wait; keep such values on the GPU until the end.")
    elif top.startswith(("cudaEventSynchronize", "cuEventSynchronize")):
        parts.append("Order work with cudaStreamWaitEvent (GPU-side) instead of cudaEventSynchronize on the host.")
    else:
        parts.append("Make device-to-host copies asynchronous: copy into pinned memory with non_blocking=True and "
                     "wait once per request.")
    if numbers["implicit_copy_syncs_per_request"] > 1:
        parts.append("Copies into pageable host memory block too: use pinned buffers and copy once.")
    return " ".join(parts)


def _sync_types(ctx, rows: np.ndarray) -> dict[str, float]:
    """CUPTI synchronisation records of these calls per request, keyed "API: sync type". The type label is kept
    as nsys wrote it (2025.3 labels cudaStreamSynchronize's records 'Stream wait sync'), so the API name comes too."""
    trace = ctx.trace
    sy = trace.table("syncs")
    if table_len(sy) == 0 or len(rows) == 0:
        return {}
    api = trace.table("api_calls")
    key = corr_key(trace, trace.ids.process_of(api["tid"][rows]), api["correlation"][rows])
    o = np.argsort(key, kind="stable")
    skey = corr_key(trace, sy["pid"], sy["correlation"])
    pos = np.clip(np.searchsorted(key[o], skey), 0, len(key) - 1)
    hit = key[o][pos] == skey
    if not hit.any():
        return {}
    call_name = api["name_id"][rows[o[pos[hit]]]]
    st = sy["sync_type"][hit].astype(np.int64)
    # np.unique(np.stack([call_name, st]), axis=1) through one int64 key (same lexicographic order)
    s_lo, span = int(st.min()), int(st.max()) - int(st.min()) + 1
    c_lo = int(call_name.min())
    key, cnt = np.unique((call_name.astype(np.int64) - c_lo) * span + (st - s_lo), return_counts=True)
    pair = np.stack([key // span + c_lo, key % span + s_lo])
    n = max(len(ctx.measured), 1)
    return {f"{base_name(trace.name(a))}: {trace.enum('CUPTI_SYNC_TYPE', b, str(int(b)))}": round(float(c) / n, 2)
            for (a, b), c in zip(pair.T, cnt)}
