"""Requests: NVTX range instances, with the GPU work they launched projected onto them by correlation id.

Per request: CPU-side duration, end-to-end latency (range start to whichever ends later, the range or its last GPU
work: asynchronous requests queue behind earlier ones), and a breakdown of that latency into the request's own
compute, its copies, other work the GPU did meanwhile (queued earlier requests), and GPU idle. Without NVTX the
repeating unit of work is inferred from the synchronisation that ends each iteration (model/iterations.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from . import activity

from .arrays import id_mask, median, uniq
from .intervals import covered, group_union_length, union
from .projection import (GPU_TABLES, assign_calls, gpu_busy_union, launch_calls, launching_calls, pid_of,
                         sync_name_ids)
from .ranges import outermost, rank_ranges, sibling_steps, top_names
from .trace import Table, Trace, table_len, take

WARMUP_FACTOR = 1.5          # a leading request slower than 1.5x the steady median may be warm-up (cuDNN autotune,
                             # lazy init: 10-50x slower in the zoo profiles; steady requests vary by < 1.3x), but only
                             # with evidence of set-up inside it (SETUP_CALLS): slowness alone can be contention
WARMUP_MAX_SHARE = 0.2       # never call more than a fifth of the requests warm-up
WARMUP_MAX = 10              # and never more than 10: the zoo profiles' warm-up is 1-3 requests (cuDNN autotune, lazy
                             # module loading), so a longer slow start is the run itself, not set-up
MIN_REQUESTS_FOR_WARMUP = 4  # fewer requests (of the run, or of the thread before a drain) have no steady median to
                             # compare the first ones with
BARRIER_REPEAT_SHARE = 0.5   # a drain before at least half the later requests is the loop's own sync, not a barrier
# Tables find_requests reads, in the order it needs them (GPU_TABLES: every kind of GPU work is projected)
NEEDS = ("ranges", "api_calls") + GPU_TABLES


@dataclass
class Requests:
    """One row per request (all int64 ns unless noted), sorted by start; `measured` excludes warm-up."""
    range_name: str
    domain: str
    reason: str                       # why this range was chosen, in words
    inferred: bool                    # True when no NVTX range was used
    table: Table                      # start_ns end_ns tid gpu_start_ns gpu_end_ns latency_ns cpu_ns compute_ns
                                      # copy_ns other_gpu_ns idle_ns busy_ns launches kernels copies device
    warmup: int                       # leading requests left out of statistics
    warmup_reason: str
    candidates: list[dict] = field(default_factory=list)   # the other ranges considered
    # projection: for each api call / GPU activity row, the request index or -1
    api_request: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    gpu_request: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return table_len(self.table)

    @property
    def measured(self) -> np.ndarray:
        """Indices of the requests that count in statistics."""
        return np.arange(self.warmup, self.count)


def find_requests(trace: Trace, range_name: str | None = None, skip: int | None = None) -> Requests:
    from ..errors import NoData
    ranges = trace.table("ranges")
    if range_name is not None:
        if table_len(ranges) == 0:
            raise NoData(trace.path, f"no NVTX ranges in the profile, so --range {range_name!r} matches nothing "
                                     "(record with nsys profile --trace=nvtx)")
        pick = ranges["name"] == range_name
        if not pick.any():
            names = top_names(ranges)
            raise NoData(trace.path, f"no NVTX range named {range_name!r}; the profile has: {names}")
        domain = str(ranges["domain"][np.flatnonzero(pick)[0]])
        reason = "chosen with --range"
        cands = []
        inst = outermost(take(ranges, pick))
    else:
        cands = rank_ranges(trace)
        good = [c for c in cands if c["eligible"]]
        by_process = False
        if not good and table_len(ranges):
            # no range launches GPU work on its own thread: a server whose handler thread passes requests to a
            # GPU worker thread. Count the launches of any thread of the same process inside the range instead.
            by_thread = cands
            cands = rank_ranges(trace, by_process=True)
            good = [c for c in cands if c["eligible"]]
            by_process = bool(good)
            if not good:
                cands = by_thread
        steps = sibling_steps(trace, good) if good and not by_process else None
        if steps:
            inst, range_name, reason = steps
            return _measure(trace, inst, range_name, good[0]["domain"], reason, False, skip, cands)
        if good:
            best = good[0]
            pick = (ranges["name"] == best["name"]) & (ranges["domain"] == best["domain"])
            inst = outermost(take(ranges, pick))
            range_name, domain, reason = best["name"], best["domain"], best["why"]
            if by_process:
                reason += ("; its GPU work is launched by other threads of the same process, so a request owns "
                           "the launches its process made while it was open")
                return _measure(trace, inst, range_name, domain, reason, False, skip, cands, by_process=True)
        else:
            from .iterations import infer_iterations
            inst, range_name, reason = infer_iterations(trace)
            domain = ""
            return _measure(trace, inst, range_name, domain, reason, True, skip, cands)
    return _measure(trace, inst, range_name, domain, reason, False, skip, cands)


# ---------------------------------------------------------------------------------------------- measuring
def _measure(trace: Trace, inst: Table, name: str, domain: str, reason: str, inferred: bool,
             skip: int | None, cands: list[dict], by_process: bool = False) -> Requests:
    from ..errors import NoData
    n = table_len(inst)
    if n == 0:
        raise NoData(trace.path, "no requests found: no repeated NVTX range and no repeating GPU work")
    api = trace.table("api_calls")
    if by_process:   # the range's thread hands the work to others: a launch belongs to the request open in its process
        api_req = assign_calls({**inst, "tid": pid_of(trace, inst["tid"])}, pid_of(trace, api["tid"]),
                               api["start_ns"])
    else:
        api_req = assign_calls(inst, api["tid"], api["start_ns"])
    launch = launch_calls(trace)
    tab: Table = {"start_ns": inst["start_ns"].astype(np.int64), "end_ns": inst["end_ns"].astype(np.int64),
                  "tid": inst["tid"].astype(np.int64)}
    tab["cpu_ns"] = tab["end_ns"] - tab["start_ns"]
    tab["launches"] = np.bincount(api_req[launch & (api_req >= 0)], minlength=n).astype(np.int64)

    # GPU row -> the call that launched it (projection.launching_calls: one cached search by process and
    # correlation id, shared with launch_overhead and issuing_calls) -> that call's request
    gpu_req = {}
    for t in GPU_TABLES:
        g = trace.table(t)
        if table_len(g) == 0:
            gpu_req[t] = np.zeros(0, np.int64)
            continue
        call = launching_calls(trace, t)
        r = api_req[np.maximum(call, 0)] if len(api_req) else np.full(len(call), -1, np.int64)
        r[call < 0] = -1
        gpu_req[t] = r.astype(np.int64, copy=False)

    # first/last GPU activity of each request
    gs = np.full(n, np.iinfo(np.int64).max)
    ge = np.full(n, -1, np.int64)
    counts = {}
    for t in GPU_TABLES:
        g, r = trace.table(t), gpu_req[t]
        m = r >= 0
        if m.any():
            np.minimum.at(gs, r[m], g["start_ns"][m])
            np.maximum.at(ge, r[m], g["end_ns"][m])
        counts[t] = np.bincount(r[m], minlength=n) if m.any() else np.zeros(n, np.int64)
    has_gpu = ge >= 0
    tab["gpu_start_ns"] = np.where(has_gpu, gs, -1)
    tab["gpu_end_ns"] = ge
    tab["kernels"] = (counts["kernels"] + counts["graphs"]).astype(np.int64)
    tab["copies"] = counts["copies"].astype(np.int64)
    end = np.maximum(tab["end_ns"], ge)
    tab["latency_ns"] = end - tab["start_ns"]

    # breakdown of the latency window: own compute, own copies, other GPU work, idle
    def cat(parts):     # concatenate, without a copy when only one table has rows
        parts = [p for p in parts if len(p)] or parts[:1]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
    col = lambda tables, c: cat([trace.table(t)[c] for t in tables])  # noqa: E731
    compute_tables = ("kernels", "graphs")
    req_of = lambda tables: cat([gpu_req[t] for t in tables])  # noqa: E731
    compute = group_union_length(req_of(compute_tables), col(compute_tables, "start_ns"),
                                 col(compute_tables, "end_ns"), n)
    s_all, e_all, req_all = col(GPU_TABLES, "start_ns"), col(GPU_TABLES, "end_ns"), req_of(GPU_TABLES)
    busy = group_union_length(req_all, s_all, e_all, n)
    tab["compute_ns"] = compute
    tab["copy_ns"] = busy - compute
    tab["busy_ns"] = busy
    # the device each request mostly used, and everything that device did during the request
    dev_all = col(GPU_TABLES, "device")
    device = np.zeros(n, np.int64)
    m = req_all >= 0
    if m.any():
        device[req_all[m]] = dev_all[m]   # one device per request in practice; with several, the last listed
    tab["device"] = device
    dev_busy = np.zeros(n, np.int64)
    for d in uniq(device):
        md = dev_all == d
        if md.all():                     # one device: the busy union of the whole GPU (cached, cpu_work uses it)
            us, ue = gpu_busy_union(trace)
        else:
            us, ue = union(s_all[md], e_all[md])
        rows = device == d
        dev_busy[rows] = covered(us, ue, tab["start_ns"][rows], end[rows])
    tab["other_gpu_ns"] = np.maximum(dev_busy - busy, 0)
    tab["idle_ns"] = np.maximum(tab["latency_ns"] - dev_busy, 0)
    tab["device_busy_ns"] = dev_busy

    if not has_gpu.any():
        raise NoData(trace.path, f"the {n} instances of range {name!r} launch no GPU work "
                                 "(no CUDA activity recorded inside them: was it profiled with --trace=cuda?)")
    seen: dict = {}
    warm, why = _warmup(tab["latency_ns"], skip, _drain_barrier(trace, tab, api_req),
                        lambda k: _setup_evidence(trace, tab, api_req, k, seen), trace.path)
    return Requests(range_name=name, domain=domain, reason=reason, inferred=inferred, table=tab, warmup=warm,
                    warmup_reason=why, candidates=cands, api_request=api_req, gpu_request=gpu_req)


DRAIN_CALLS = ("cudaDeviceSynchronize", "cuCtxSynchronize")   # wait for all GPU work: ends a warm-up phase


def _drain_barrier(trace: Trace, tab: Table, api_req: np.ndarray) -> int:
    """k when the GPU was drained between request k-1 and request k with no request open, outside both: the benchmark
    idiom `warm up; torch.cuda.synchronize(); measure` (the drain may come from another thread of the process than
    the requests after it, as when warm-up runs on the main thread and worker threads serve). 0 when there is no such
    barrier among the first requests."""
    n = len(tab["start_ns"])
    limit = min(WARMUP_MAX, int(n * WARMUP_MAX_SHARE))
    api = trace.table("api_calls")
    if limit < 1 or len(api_req) == 0 or n < MIN_REQUESTS_FOR_WARMUP:
        return 0
    # the few drain calls first, then their processes (not the process of every call: 10M calls, 0.3 s)
    drain = np.flatnonzero(id_mask(api["name_id"], sync_name_ids(trace, DRAIN_CALLS)))
    drain = drain[api_req[drain] < 0]
    pids = uniq(pid_of(trace, tab["tid"]))
    drain = drain[np.isin(pid_of(trace, api["tid"][drain]), pids)]
    t = np.sort(api["start_ns"][drain])
    if len(t) == 0:
        return 0
    # gaps with no request open (requests are sorted by start): after the latest end so far, before the next start
    open_until = np.maximum.accumulate(tab["end_ns"])
    gap_lo, gap_hi = open_until[:-1], tab["start_ns"][1:]
    has = (gap_hi > gap_lo) & (np.searchsorted(t, gap_hi) > np.searchsorted(t, gap_lo, side="right"))
    early = has[:limit]
    # only a barrier that the steady loop does not repeat marks the end of warm-up
    later = has[limit:]
    if not early.any() or (len(later) and later.mean() >= BARRIER_REPEAT_SHARE):
        return 0
    return int(np.flatnonzero(early)[-1]) + 1


# One-time set-up a warm-up request does inside itself and a steady request does not, by what it is (CUDA API names)
SETUP_CALLS = {"module loading": ("cuModuleLoad", "cuLibraryLoad", "cudaModuleLoad"),
               "first allocations": ("cudaMalloc", "cuMemAlloc", "cudaHostAlloc", "cudaMallocHost", "cuMemHostAlloc",
                                     "cuMemCreate", "cuMemAddressReserve"),
               "stream/event creation": ("cudaStreamCreate", "cuStreamCreate", "cudaEventCreate", "cuEventCreate")}
# Compilation at first use (torch.compile / Triton, nvrtc, XLA) runs compilers as child processes: the request thread
# spawns and waits for them (OS runtime trace). Seen: ex_fusion_after's first request, 8 waitpid calls, 635 ms of 3.6 s
COMPILE_OS_CALLS = ("posix_spawn", "fork", "vfork", "clone", "execve", "waitpid", "wait4", "waitid")
STEADY_SHARE = 0.5      # a kind of call that half the steady requests also make is serving, not set-up (an allocator
                        # switched off mallocs in every request)
SETUP_SHARE = 0.05      # the set-up calls take >= 5% of the request's time over the steady median. Measured: dist/
                        # model_server 46% (75 of 165 ms, library loads), llama3 real_inference_simulation 10% (14 of
                        # 143 ms); thread_contention's first requests 0.2-0.9% (1-2 ms of per-thread cuBLAS set-up in
                        # 139-513 ms spent behind a lock or the run queue: real requests, they count)
AUTOTUNE_FACTOR = 2.0   # a leading request that launches 2x the steady median's kernels tries candidates (cuDNN
                        # autotuning, compilation benchmarks): in the zoo profiles steady requests launch the same count


DRIVER_MODULES = ("libcuda.so",)   # the CUDA driver: lazy context creation and module loading run in it, before (or
                                   # outside) the API call that nsys traces; seen: llama3-inference demo's first range,
                                   # 96 ms of samples in libcuda/libcudart with no traced call until its last 0.3 ms


def _setup_evidence(trace: Trace, tab: Table, api_req: np.ndarray, k: int, seen: dict) -> str:
    """What set-up request k does inside itself that the steady requests (the last half) do not, in words; '' when
    nothing, or when that set-up is too small a part of why it is slow (SETUP_SHARE). `seen` caches per-request
    arrays across the calls for one set of requests."""
    n = len(tab["start_ns"])
    steady = np.arange(n // 2, n)
    if len(steady) == 0 or k >= n // 2:
        return ""
    api = trace.table("api_calls")
    mine = np.flatnonzero(api_req == k)
    found, setup_ns = [], 0
    for what, prefixes in SETUP_CALLS.items():
        ids = sync_name_ids(trace, prefixes)
        if not len(ids):
            continue
        rows = mine[id_mask(api["name_id"][mine], ids)]
        if not len(rows):
            continue
        if what not in seen:
            seen[what] = np.bincount(api_req[id_mask(api["name_id"], ids) & (api_req >= 0)], minlength=n)
        if (seen[what][steady] > 0).mean() >= STEADY_SHARE:
            continue
        setup_ns += int((api["end_ns"][rows] - api["start_ns"][rows]).sum())
        names = sorted({trace.name(i).split("_v")[0] for i in api["name_id"][rows]})
        found.append(f"{what} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}: {len(rows)} "
                     f"call{'s' if len(rows) != 1 else ''})")
    excess = tab["latency_ns"][k] - median(tab["latency_ns"][steady])
    if excess > 0 and setup_ns < SETUP_SHARE * excess:
        if "compile" not in seen:
            seen["compile"] = _os_call_time(trace, tab, COMPILE_OS_CALLS)
        t_k, n_k = seen["compile"][0][k], seen["compile"][1][k]
        if n_k and (seen["compile"][1][steady] > 0).mean() < STEADY_SHARE:
            found.append(f"compilation ({n_k} child-process call{'s' if n_k != 1 else ''}: spawn/wait for a "
                         "compiler)")
            setup_ns += int(t_k)
    if excess > 0 and setup_ns < SETUP_SHARE * excess:
        if "driver" not in seen:
            seen["driver"] = _driver_time(trace, tab)
        drv = int(seen["driver"][k] - median(seen["driver"][steady]))
        if drv >= SETUP_SHARE * excess:
            found.append(f"CUDA driver initialisation ({drv / 1e6:.1f} ms of CPU samples in the driver outside any "
                         "traced CUDA call)")
            setup_ns += drv
    launches = tab["launches"]
    steady_launches = median(launches[steady])
    if steady_launches > 0 and launches[k] >= AUTOTUNE_FACTOR * steady_launches:
        found.append(f"autotuning or compilation ({int(launches[k])} launches against {steady_launches:.0f} in a "
                     f"steady request)")
        setup_ns = max(setup_ns, int(excess * SETUP_SHARE))   # the extra launches themselves are the set-up
    if not found or excess <= 0 or setup_ns < SETUP_SHARE * excess:
        return ""
    return "; ".join(found) + f", {setup_ns / 1e6:.1f} ms"


def _os_call_time(trace: Trace, tab: Table, prefixes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per request: time in and number of OS runtime calls named with one of `prefixes`, on its thread inside it."""
    n = len(tab["start_ns"])
    osc = trace.table("os_calls")
    if table_len(osc) == 0:
        return np.zeros(n, np.int64), np.zeros(n, np.int64)
    ids = uniq(osc["name_id"])
    want = ids[np.array([trace.name(i).startswith(prefixes) for i in ids], bool)] if len(ids) else ids
    rows = np.flatnonzero(id_mask(osc["name_id"], want))
    r = assign_calls(tab, osc["tid"][rows], osc["start_ns"][rows])
    m = r >= 0
    dur = (osc["end_ns"][rows] - osc["start_ns"][rows])[m]
    return (np.bincount(r[m], weights=dur, minlength=n).astype(np.int64),
            np.bincount(r[m], minlength=n).astype(np.int64))


def _driver_time(trace: Trace, tab: Table) -> np.ndarray:
    """Per request: CPU-sample time on its thread in the CUDA driver (DRIVER_MODULES anywhere on the stack) outside
    every traced CUDA API call of that thread. Zeros without CPU samples or call chains."""
    n = len(tab["start_ns"])
    s, cc = trace.table("samples"), trace.table("callchains")
    if table_len(s) == 0 or table_len(cc) == 0:
        return np.zeros(n, np.int64)
    win = activity.samples_in_windows(trace, tab["tid"], tab["start_ns"], tab["end_ns"])
    pick = np.flatnonzero(win >= 0)
    api = trace.table("api_calls")
    t, th = s["start_ns"][pick], s["tid"][pick]
    in_call = np.zeros(len(pick), bool)
    for x in uniq(th):
        m = th == x
        a = api["tid"] == x
        us, ue = union(api["start_ns"][a], api["end_ns"][a])
        pos = np.searchsorted(us, t[m], "right") - 1
        in_call[m] = (pos >= 0) & (t[m] < ue[np.maximum(pos, 0)]) if len(us) else False
    pick = pick[~in_call]
    mods = uniq(cc["module_id"])
    drv = np.array([os.path.basename(trace.name(x)).startswith(DRIVER_MODULES) if x >= 0 else False for x in mods],
                   bool)
    drv_chains = uniq(cc["id"][drv[np.searchsorted(mods, cc["module_id"])]]) if len(mods) else np.zeros(0, np.int64)
    hit = pick[np.isin(s["callchain"][pick], drv_chains)]
    return np.bincount(win[hit], minlength=n).astype(np.int64) * activity.sample_period_ns(trace)


def _warmup(latency: np.ndarray, skip: int | None, barrier: int = 0, evidence=lambda k: "",
            path=None) -> tuple[int, str]:
    """Leading requests left out as warm-up: those before a drain barrier, else the leading ones that are slow AND
    show set-up inside them (evidence(k): what, in words). A slow start without set-up (threads queueing behind a lock
    at start-up) is real and counts."""
    n = len(latency)
    if skip is not None:
        if skip >= n:      # nothing would be left to measure: say so rather than quietly measure one request
            from ..errors import BadInput
            raise BadInput(path, f"--skip {skip} leaves no request to measure: the profile has {n} "
                                 f"request{'s' * (n != 1)} (use --skip {n - 1} or less)")
        return max(0, int(skip)), f"--skip {skip}"
    if n < MIN_REQUESTS_FOR_WARMUP:
        return 0, "too few requests to tell warm-up apart"
    limit = min(WARMUP_MAX, int(n * WARMUP_MAX_SHARE))
    if barrier:
        return barrier, f"the first {barrier} end in a full GPU drain (device synchronize) before the rest began"
    k, why = 0, []
    while k < limit:
        steady = median(latency[k + 1:])
        if latency[k] <= WARMUP_FACTOR * steady:
            break
        e = evidence(k)
        if not e:
            break
        why.append(e)
        k += 1
    slow = 0
    while slow < limit and latency[slow] > WARMUP_FACTOR * median(latency[slow + 1:]):
        slow += 1
    if k == 0:
        if slow:
            one = slow == 1
            return 0, (f"none: {_first(latency, slow)} slow (over {WARMUP_FACTOR}x the steady median) but "
                       f"show{'s' if one else ''} no set-up inside (module loading, first allocations, autotuning), "
                       f"so {'it counts' if one else 'they count'}")
        return 0, "no slow leading requests"
    return k, (f"{_first(latency, k)} over {WARMUP_FACTOR}x the steady median ({median(latency[k:]) / 1e6:.1f} ms), "
               f"with set-up inside: {why[0]}" + (" (in the first of them)" if k > 1 else ""))


def _first(latency: np.ndarray, k: int) -> str:
    if k == 1:
        return f"the first request ({latency[0] / 1e6:.1f} ms) is"
    return f"the first {k} ({latency[:k].min() / 1e6:.1f}-{latency[:k].max() / 1e6:.1f} ms) are"
