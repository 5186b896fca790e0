"""CUDA synchronisation: the serving thread waits for the GPU inside a request (cudaDeviceSynchronize after every
layer, `.item()` / `.cpu()` in the loop, synchronous copies). Each wait empties the GPU queue, so after it returns
the GPU sits idle until the CPU has launched the next work: the request pays for CPU and GPU one after the other.

Explicit waits are the *Synchronize calls (runtime and driver, version suffixes ignored); implicit ones are copies
that block the host: cudaMemcpy (not Async) and device-to-host copies into pageable memory (Async or not). The
copy's own transfer time belongs to the memory-transfer diagnosis; here only its wait for earlier GPU work counts.
"""
from __future__ import annotations


import numpy as np

from ..model.intervals import union
from ..model.projection import GPU_TABLES, corr_key, gpu_corr_key
from ..model.trace import table_len
from ..report import Evidence
from .common import WORST, instance, make_finding, per_request_mean
from ..model.api_names import SYNC_CALLS, base_name
from ..model.arrays import uniq
from ..model.arrays import dense_groups, distinct_ids, sorted_union

# Copies that are synchronous for the host whatever the memory (CUDA runtime docs, "API synchronization behavior").
SYNC_COPY_CALLS = ("cudaMemcpy", "cudaMemcpy2D", "cudaMemcpy3D", "cudaMemcpyToSymbol", "cudaMemcpyFromSymbol",
                   "cuMemcpy", "cuMemcpyDtoH", "cuMemcpyHtoD", "cuMemcpy2D", "cuMemcpy3D")
ASYNC_COPY_PREFIXES = ("cudaMemcpy", "cuMemcpy")   # ...Async forms: synchronous only into pageable host memory
DTOH = 2                       # ENUM_CUDA_MEMCPY_OPER device-to-host (fallback when the profile has no enum)
DTOD = 8                       # device-to-device copies never block the host
PAGEABLE = 0                   # ENUM_CUDA_MEM_KIND pageable
REFILL_MAX_NS = 1_000_000      # GPU idle after a sync counted up to 1 ms: the refill after a drain is the framework
                               # dispatching the next op (sync_heavy: median 0.21, p99 0.63 ms per sync); a longer gap
                               # is a CPU stage of its own (cpu_work's), which removing the sync would not shorten
                               # (darknet-yolo external profile: a tail of 5-24 ms gaps after its cudaMemcpy calls)
MIN_REPORT_PCT = 1.0           # under 1% of request latency a sync is not worth a line (memcpy_pageable 0.2%,
                               # cpu_postproc, thread_contention: only the final wait for the result)

NEEDS = ("api_calls", "kernels", "copies", "syncs")

def _classify(trace, name_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct API name id: 1 explicit sync, 2 always-synchronous copy, 3 async copy (blocks when pageable)."""
    ids = distinct_ids(name_ids)
    kind = np.zeros(len(ids), np.int8)
    for j, i in enumerate(ids):
        base = base_name(trace.name(i))
        if base.startswith(SYNC_CALLS):
            kind[j] = 1
        elif base in SYNC_COPY_CALLS:
            kind[j] = 2
        elif base.startswith(ASYNC_COPY_PREFIXES) and base.endswith("Async") and "Peer" not in base:
            kind[j] = 3
    return ids, kind


def _copy_of_call(trace, api_rows: np.ndarray):
    """For API rows: (found, copy start, copy kind, dst mem kind) of the copy they launched (by correlation id)."""
    api, c = trace.table("api_calls"), trace.table("copies")
    n = len(api_rows)
    found = np.zeros(n, bool)
    start = np.zeros(n, np.int64)
    kind = np.full(n, -1, np.int64)
    dst = np.full(n, -1, np.int64)
    if table_len(c) == 0 or n == 0:
        return found, start, kind, dst
    ck = gpu_corr_key(trace, "copies")
    o = np.argsort(ck, kind="stable")
    ck = ck[o]
    key = corr_key(api["tid"][api_rows], api["correlation"][api_rows])
    pos = np.clip(np.searchsorted(ck, key), 0, len(ck) - 1)
    found = ck[pos] == key
    row = o[pos]
    start = np.where(found, c["start_ns"][row], 0)
    kind = np.where(found, c["kind"][row], -1)
    dst = np.where(found, c["dst_kind"][row], -1)
    return found, start, kind, dst


def _enum_values(trace, enum: str, label_start: str, fallback: int) -> list[int]:
    vals = [v for v, lab in trace.enums.get(enum, {}).items() if lab.lower().startswith(label_start)]
    return vals or [fallback]


def sync_calls(ctx) -> dict:
    """The host waits inside measured requests, as parallel arrays (cached in ctx.cache["sync_calls"]):
    row (api_calls index), request, start_ns, end_ns, blocked_ns (waiting for earlier GPU work), idle_ns (GPU idle
    after the return until the device ran anything again, within the request), refill_ns (idle_ns capped at
    REFILL_MAX_NS), last (a final wait: nothing more launched after it), kind (1 sync call, 2/3 blocking copy)."""
    return ctx.once("sync_calls", lambda: _sync_calls(ctx))


def _sync_calls(ctx) -> dict:
    trace, rq = ctx.trace, ctx.requests
    api = trace.table("api_calls")
    out = {k: np.zeros(0, np.int64) for k in ("row", "request", "start_ns", "end_ns", "blocked_ns", "refill_ns",
                                               "idle_ns")}
    out["last"] = np.zeros(0, bool)
    out["kind"] = np.zeros(0, np.int8)
    if table_len(api) == 0 or len(rq.api_request) != table_len(api):
        return out
    inreq = rq.api_request >= rq.warmup
    ids, kinds = _classify(trace, api["name_id"][inreq])
    if not (kinds > 0).any():
        return out
    rows = np.flatnonzero(inreq)
    k = kinds[np.searchsorted(ids, api["name_id"][rows])]
    rows, k = rows[k > 0], k[k > 0]
    # copies: which ones block the host, and how long the call waited before its copy started on the GPU
    found, c_start, c_kind, c_dst = _copy_of_call(trace, rows)
    dtoh = np.isin(c_kind, _enum_values(trace, "CUDA_MEMCPY_OPER", "device-to-host", DTOH))
    dtod = np.isin(c_kind, _enum_values(trace, "CUDA_MEMCPY_OPER", "device-to-device", DTOD))
    pageable = np.isin(c_dst, _enum_values(trace, "CUDA_MEM_KIND", "pageable", PAGEABLE))
    blocking = (k == 1) | ((k == 2) & ~dtod) | ((k == 3) & found & dtoh & pageable)
    rows, k, found, c_start = rows[blocking], k[blocking], found[blocking], c_start[blocking]
    s, e = api["start_ns"][rows], api["end_ns"][rows]
    req = rq.api_request[rows]
    blocked = np.where(k == 1, e - s, np.clip(np.where(found, c_start, s) - s, 0, e - s))

    # GPU idle after each return: until the device (the request's) runs anything again, inside the request
    t = rq.table
    req_end = t["start_ns"][req] + t["latency_ns"][req]
    dev = t["device"][req]
    idle = np.zeros(len(rows), np.int64)
    for d in uniq(dev):
        # union of each table's union (tables are usually time-sorted: no sort of all GPU rows)
        parts = []
        for n in GPU_TABLES:
            g = trace.table(n)
            on = np.flatnonzero(g["device"] == d)
            if len(on):
                parts.append(sorted_union(g["start_ns"][on], g["end_ns"][on]))
        us, ue = union(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])) if parts \
            else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        m = np.flatnonzero(dev == d)
        if len(us) == 0:
            continue
        j = np.searchsorted(us, e[m], side="right")          # first block starting after the return
        busy_now = (j > 0) & (ue[np.clip(j - 1, 0, None)] > e[m])
        nxt = np.where(j < len(us), us[np.clip(j, 0, len(us) - 1)], np.iinfo(np.int64).max)
        later = nxt < req_end[m]                               # the request still had GPU work to come
        idle[m] = np.where(busy_now | ~later, 0, nxt - e[m])
    refill = np.minimum(idle, REFILL_MAX_NS)
    # the request's final wait (the result is needed on the host) is not avoidable, nor is any wait after which
    # the request starts no more GPU work (`.cpu()` = a blocking copy then a stream sync: both wait for the result)
    order = np.lexsort((s, req))
    last = np.zeros(len(rows), bool)
    last[order] = np.r_[req[order][1:] != req[order][:-1], True] if len(order) else np.zeros(0, bool)
    last_gpu = np.full(rq.count, -1, np.int64)
    for name in GPU_TABLES:
        r = rq.gpu_request.get(name, np.zeros(0, np.int64))
        if len(r) and (r >= 0).any():
            np.maximum.at(last_gpu, r[r >= 0], trace.table(name)["start_ns"][r >= 0])
    last |= last_gpu[req] <= e
    out.update(row=rows, request=req, start_ns=s, end_ns=e, blocked_ns=blocked, refill_ns=refill, idle_ns=idle,
               last=last, kind=k)
    return out


def diagnose(ctx):
    trace, rq = ctx.trace, ctx.requests
    if "api_calls" in trace.absent or ctx.mean_latency_ns <= 0:
        return []
    sc = sync_calls(ctx)
    if len(sc["row"]) == 0:
        return []
    n_req = len(ctx.measured)
    req, last = sc["request"], sc["last"]
    avoid = ~last
    cost = (sc["blocked_ns"] + sc["refill_ns"]) * avoid
    # fixing can't make a request faster than its own GPU work: bound per request by latency - own busy time
    per_req = np.bincount(req, weights=cost, minlength=rq.count)
    t = rq.table
    bound = np.maximum(t["latency_ns"] - t["busy_ns"], 0)
    saved = np.minimum(per_req, bound)[rq.warmup:]
    impact_ns = float(saved.mean()) if n_req else 0.0
    if 100.0 * impact_ns / ctx.mean_latency_ns < MIN_REPORT_PCT:
        return []

    api = trace.table("api_calls")
    uid, inv = dense_groups(api["name_id"][sc["row"]])        # names judged once per distinct API name
    names = np.array([base_name(trace.name(i)) for i in uid], object)[inv]
    n_of: dict[str, int] = {}
    for nm, c in zip((base_name(trace.name(i)) for i in uid), np.bincount(inv, minlength=len(uid)).tolist()):
        n_of[nm] = n_of.get(nm, 0) + c
    by_api = {str(nm): round(float(n_of[nm]) / n_req, 2)
              for nm in sorted(set(names.tolist()), key=lambda x: -n_of[x])}
    per = lambda v: per_request_mean(v.astype(np.float64), req, ctx) / 1e6  # noqa: E731
    numbers = {
        "syncs_per_request": round(len(req) / n_req, 2),
        "avoidable_syncs_per_request": round(float(avoid.sum()) / n_req, 2),
        "blocked_ms_per_request": round(per(sc["blocked_ns"]), 3),
        "gpu_idle_after_sync_ms_per_request": round(per(sc["refill_ns"] * avoid), 3),
        "avoidable_blocked_ms_per_request": round(per(sc["blocked_ns"] * avoid), 3),
        "syncs_by_call_per_request": by_api,
        "implicit_copy_syncs_per_request": round(float((sc["kind"] > 1).sum()) / n_req, 2),
        "mean_latency_ms": round(ctx.mean_latency_ns / 1e6, 3),
    }
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
                              f"{names[i]} blocked {sc['blocked_ns'][i] / 1e6:.3f} ms, then GPU idle "
                              f"{sc['idle_ns'][i] / 1e6:.3f} ms until the next launch",
                              tid=int(api["tid"][row]), name=str(names[i]),
                              code=_call_site(trace, int(api["callchain"][row]))))
    if not (api["callchain"][sc["row"]] >= 0).any():
        notes.append("call sites unknown: CUDA API backtraces were not recorded (nsys profile --cudabacktrace=all)")
    top = max(by_api, key=by_api.get)
    title = (f"{numbers['syncs_per_request']:g} host waits per request ({by_api[top]:g}x {top}), "
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
    return [make_finding(ctx, "cuda_sync", title, impact_ns, estimate,
                         Evidence(numbers=numbers, worst=worst, notes=notes), fix, why)]


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
    if top.startswith(("cudaDeviceSynchronize", "cuCtxSynchronize", "cudaThreadSynchronize")):
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
    key = corr_key(api["tid"][rows], api["correlation"][rows])
    o = np.argsort(key, kind="stable")
    skey = corr_key(sy["pid"], sy["correlation"])
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
