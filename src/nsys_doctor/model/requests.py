"""Requests: NVTX range instances, with the GPU work they launched projected onto them by correlation id.

Per request: CPU-side duration, end-to-end latency (range start to whichever ends later, the range or its last GPU
work: asynchronous requests queue behind earlier ones), and a breakdown of that latency into the request's own
compute, its copies, other work the GPU did meanwhile (queued earlier requests), and GPU idle. Without NVTX the
repeating unit of work is inferred from the synchronisation that ends each iteration (model/iterations.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .intervals import covered, group_union_length, union
from .trace import Table, Trace, table_len, take
from .arrays import id_mask, uniq

# A range a library opens for its own bookkeeping is not a request. Domains of NVIDIA libraries (nsys names them so).
LIBRARY_DOMAINS = {"cuBLAS", "cuDNN", "CUDA", "NCCL", "cuFFT", "cuSPARSE", "nvJPEG", "NVSHMEM"}
# Range names that libraries push in the default domain (seen: cublasCreate_v2 in all zoo profiles).
LIBRARY_NAME_PREFIXES = ("cublas", "cudnn", "cufft", "cusparse", "nccl", "cudaProfiler",
                         # per-operator ranges of torch.autograd.profiler.emit_nvtx and DLProf's markers: one per
                         # op, not per request (dlprof-dummy-cnn in shared/external)
                         "aten::", "{'tracemarker'", '{"tracemarker"')  # compared lower-cased
MIN_INSTANCES = 2            # a request repeats; a range seen once is set-up or a whole run
MIN_GPU_SHARE = 0.5          # at least half of its instances launch GPU work (a user's request encloses inference)
WARMUP_FACTOR = 1.5          # a leading request slower than 1.5x the steady median is warm-up (cuDNN autotune,
                             # lazy init: 10-50x slower in the zoo profiles; steady requests vary by < 1.3x)
WARMUP_MAX_SHARE = 0.2       # never call more than a fifth of the requests warm-up
WARMUP_MAX = 10


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


GPU_TABLES = ("kernels", "copies", "memsets", "graphs")


def find_requests(trace: Trace, range_name: str | None = None, skip: int | None = None) -> Requests:
    from ..errors import NoData
    ranges = trace.table("ranges")
    if range_name is not None:
        if table_len(ranges) == 0:
            raise NoData(trace.path, f"no NVTX ranges in the profile, so --range {range_name!r} matches nothing "
                                     "(record with nsys profile --trace=nvtx)")
        pick = ranges["name"] == range_name
        if not pick.any():
            names = _top_names(ranges)
            raise NoData(trace.path, f"no NVTX range named {range_name!r}; the profile has: {names}")
        domain = str(ranges["domain"][np.flatnonzero(pick)[0]])
        reason = "chosen with --range"
        cands = []
        inst = _outermost(take(ranges, pick))
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
        if good:
            best = good[0]
            pick = (ranges["name"] == best["name"]) & (ranges["domain"] == best["domain"])
            inst = _outermost(take(ranges, pick))
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


def _top_names(ranges: Table, n: int = 8) -> str:
    names, counts = np.unique(ranges["name"].astype(str), return_counts=True)
    order = np.argsort(-counts)[:n]
    return ", ".join(f"{str(names[i])!r} x{int(counts[i])}" for i in order) or "none"


def _outermost(r: Table) -> Table:
    """Drop instances nested inside another instance of the same range on the same thread (recursion)."""
    if table_len(r) < 2:
        return r
    keep = np.ones(table_len(r), bool)
    for th in uniq(r["tid"]):
        m = np.flatnonzero(r["tid"] == th)
        m = m[np.argsort(r["start_ns"][m], kind="stable")]
        run_end = np.maximum.accumulate(r["end_ns"][m])
        keep[m[1:]] = r["end_ns"][m[1:]] > run_end[:-1]
    r = take(r, keep)
    return take(r, np.argsort(r["start_ns"], kind="stable"))


def _launch_calls(trace: Trace) -> np.ndarray:
    """Boolean mask over api_calls: the call launched GPU work (its (process, correlation id) appears on the GPU).
    Computed once per trace: requests, iterations and several diagnoses ask for it."""
    cached = trace._cache.get("_launch_mask")
    if cached is not None:
        return cached
    api = trace.table("api_calls")
    keys = [gpu_corr_key(trace, t) for t in GPU_TABLES if trace.has(t)]
    if not keys or table_len(api) == 0:
        mask = np.zeros(table_len(api), bool)
    else:
        key = api_corr_key(trace)
        gpu = np.concatenate(keys) if len(keys) > 1 else keys[0]
        lo, hi = int(gpu.min()), int(gpu.max())
        if hi - lo < 16 * len(key) + (1 << 20):
            # correlation ids of one process are small dense ints: a lookup table instead of a sort and a search
            k_lo, k_hi = int(key.min()), int(key.max())
            if lo <= k_lo and k_hi <= hi:
                lut = np.zeros(hi - lo + 1, bool)
                lut[gpu - lo] = True
                mask = lut[key - lo]
            elif max(hi, k_hi) - min(lo, k_lo) < 16 * len(key) + (1 << 20):
                lo, hi = min(lo, k_lo), max(hi, k_hi)
                lut = np.zeros(hi - lo + 1, bool)
                lut[gpu - lo] = True
                mask = lut[key - lo]
            else:
                lut = np.zeros(hi - lo + 1, bool)
                lut[gpu - lo] = True
                inr = (key >= lo) & (key <= hi)
                mask = np.zeros(len(key), bool)
                mask[inr] = lut[key[inr] - lo]
        else:
            gpu = uniq(gpu)
            pos = np.clip(np.searchsorted(gpu, key), 0, len(gpu) - 1)
            mask = gpu[pos] == key
    trace._cache["_launch_mask"] = mask
    return mask


def api_corr_key(trace: Trace) -> np.ndarray:
    """_corr_key(api["tid"] >> 24 << 24, api["correlation"]) over api_calls (a call's process is the top bits of its
    thread id), computed once per trace and in place. Read-only: shared by every caller."""
    cached = trace._cache.get("_api_corr_key")
    if cached is not None:
        return cached
    api = trace.table("api_calls")
    key = api["tid"] >> 24
    if key.dtype != np.int64:
        key = key.astype(np.int64)
    key &= 0x7FFFFFFF
    key <<= 32
    key |= api["correlation"].astype(np.int64, copy=False) & 0xFFFFFFFF
    key.flags.writeable = False
    trace._cache["_api_corr_key"] = key
    return key


def gpu_corr_key(trace: Trace, table: str) -> np.ndarray:
    """_corr_key(pid, correlation) of a GPU activity table, computed once per trace. Read-only."""
    ck = ("_gpu_corr_key", table)
    cached = trace._cache.get(ck)
    if cached is not None:
        return cached
    g = trace.table(table)
    key = _corr_key(g["pid"], g["correlation"])
    key.flags.writeable = False
    trace._cache[ck] = key
    return key


def gpu_busy_union(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """union() of every GPU activity (all tables, all devices) as int64, computed once per trace. Read-only."""
    cached = trace._cache.get("_gpu_busy_union")
    if cached is not None:
        return cached
    # each table on its own first (each is in time order: no sort), then the union of those few blocks; the same
    # set as one union of everything, when no interval ends before it starts
    cols = [(trace.table(t)["start_ns"].astype(np.int64, copy=False),
             trace.table(t)["end_ns"].astype(np.int64, copy=False)) for t in GPU_TABLES]
    cols = [c for c in cols if len(c[0])]
    if len(cols) > 1 and not all(bool((e >= s).all()) for s, e in cols):
        parts = [(np.concatenate([c[0] for c in cols]), np.concatenate([c[1] for c in cols]))]
        parts = [union(*parts[0])]
    else:
        parts = [union(s, e) for s, e in cols]
    if not parts:
        out = union(np.zeros(0, np.int64), np.zeros(0, np.int64))
    elif len(parts) == 1:
        out = parts[0]
    else:
        out = union(np.concatenate([p[0] for p in parts]).astype(np.int64, copy=False),
                    np.concatenate([p[1] for p in parts]).astype(np.int64, copy=False))
    for a in out:
        a.flags.writeable = False
    trace._cache["_gpu_busy_union"] = out
    return out


def _is_sorted(a: np.ndarray) -> bool:
    return len(a) < 2 or bool((a[1:] >= a[:-1]).all())


def _pid(tid: np.ndarray) -> np.ndarray:
    """The process part of nsys's global thread ids (bits 24 and up)."""
    return (np.asarray(tid, np.int64) >> 24) << 24


def rank_ranges(trace: Trace, by_process: bool = False) -> list[dict]:
    """Every distinct NVTX range, with whether it can be a request and why, best first. `by_process`: a range
    encloses the launches of every thread of its process, not only of its own thread."""
    ranges = trace.table("ranges")
    if table_len(ranges) == 0:
        return []
    api = trace.table("api_calls")
    launch = _launch_calls(trace)
    l_start, l_tid = api["start_ns"][launch], api["tid"][launch]
    if by_process:
        ranges = {**ranges, "tid": _pid(ranges["tid"])}
        l_tid = _pid(l_tid)
    # distinct (domain, name), sorted as np.unique would; through a dict, not fixed-width numpy strings, which are as
    # wide as the longest name for every row (100k ranges and one 5000-char name: 2 GB, and minutes to sort)
    keys = [f"{d}\x1f{n}" for d, n in zip(ranges["domain"].tolist(), ranges["name"].tolist())]
    uniq = sorted(set(keys))
    where = {k: i for i, k in enumerate(uniq)}
    inv = np.fromiter((where[k] for k in keys), np.int64, len(keys))
    # launches inside each range instance (same thread, between start and end)
    inside = _count_inside(ranges, l_tid, l_start)
    depth = _nesting_depth(trace.table("ranges"))     # nesting on the thread itself, in either mode
    # per distinct range, without a pass over all instances for each (100k distinct names took minutes)
    inv = inv.reshape(-1)
    counts = np.bincount(inv, minlength=len(uniq))
    with_gpu_all = np.bincount(inv, weights=(inside > 0), minlength=len(uniq)) / np.maximum(counts, 1)
    launches_all = np.bincount(inv, weights=inside, minlength=len(uniq))
    order = np.lexsort((depth, inv))                      # depths sorted within each range: the median by index
    first = np.r_[0, np.cumsum(counts)[:-1]]
    d_sorted = depth[order].astype(np.float64)
    median_all = (d_sorted[first + (counts - 1) // 2] + d_sorted[first + counts // 2]) / 2
    out = []
    for k, key in enumerate(uniq):
        domain, name = str(key).split("\x1f", 1)
        n = int(counts[k])
        with_gpu = float(with_gpu_all[k])
        lib = domain in LIBRARY_DOMAINS or name.lower().startswith(LIBRARY_NAME_PREFIXES)
        eligible = n >= MIN_INSTANCES and with_gpu >= MIN_GPU_SHARE and not lib
        out.append({"name": name, "domain": domain, "count": n, "gpu_share": round(with_gpu, 3),
                    "launches": int(launches_all[k]), "depth": float(median_all[k]),
                    "library": lib, "eligible": eligible})
    # outermost first (a request encloses its phases), then the most GPU launches, then the most instances
    out.sort(key=lambda c: (not c["eligible"], c["depth"], -c["launches"], -c["count"]))
    n_eligible = sum(1 for c in out if c["eligible"])
    for c in out:
        c["why"] = _why(c, out, n_eligible)
    return out


def _why(c: dict, allc: list[dict], n_eligible: int | None = None) -> str:
    if c["library"]:
        return "a library's own range"
    if c["count"] < MIN_INSTANCES:
        return "occurs once"
    if c["gpu_share"] < MIN_GPU_SHARE:
        return f"only {c['gpu_share']:.0%} of its instances launch GPU work"
    if n_eligible is None:
        n_eligible = sum(1 for o in allc if o["eligible"])
    others = n_eligible - (1 if c["eligible"] else 0)
    return (f"repeated {c['count']} times, {c['gpu_share']:.0%} of them launch GPU work "
            f"({c['launches']} launches), outermost of {others + 1} such ranges")


def _count_inside(ranges: Table, tid: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per range instance: how many of the points (tid, t) fall inside it."""
    out = np.zeros(table_len(ranges), np.int64)
    order = np.lexsort((t, tid))
    tid, t = tid[order], t[order]
    for th in uniq(ranges["tid"]):
        lo, hi = np.searchsorted(tid, th, "left"), np.searchsorted(tid, th, "right")
        ts = t[lo:hi]
        m = np.flatnonzero(ranges["tid"] == th)
        out[m] = np.searchsorted(ts, ranges["end_ns"][m], "right") - np.searchsorted(ts, ranges["start_ns"][m], "left")
    return out


def _nesting_depth(ranges: Table) -> np.ndarray:
    """How many other ranges on the same thread enclose each range."""
    depth = np.zeros(table_len(ranges), np.int64)
    for th in uniq(ranges["tid"]):
        m = np.flatnonzero(ranges["tid"] == th)
        s, e = ranges["start_ns"][m], ranges["end_ns"][m]
        if len(m) > 2000:   # many ranges: enclosing count through sorted starts (approximate for ties)
            order = np.argsort(s, kind="stable")
            ends_sorted = np.maximum.accumulate(e[order])
            pos = np.searchsorted(s[order], s, "left")
            depth[m] = (pos > 0) & (ends_sorted[np.clip(pos - 1, 0, None)] >= e)
            continue
        enc = (s[None, :] <= s[:, None]) & (e[None, :] >= e[:, None])
        depth[m] = enc.sum(axis=1) - 1
    return depth


# ---------------------------------------------------------------------------------------------- measuring
def _measure(trace: Trace, inst: Table, name: str, domain: str, reason: str, inferred: bool,
             skip: int | None, cands: list[dict], by_process: bool = False) -> Requests:
    from ..errors import NoData
    n = table_len(inst)
    if n == 0:
        raise NoData(trace.path, "no requests found: no repeated NVTX range and no repeating GPU work")
    api = trace.table("api_calls")
    if by_process:   # the range's thread hands the work to others: a launch belongs to the request open in its process
        api_req = _assign_calls({**inst, "tid": _pid(inst["tid"])}, _pid(api["tid"]), api["start_ns"])
    else:
        api_req = _assign_calls(inst, api["tid"], api["start_ns"])
    launch = _launch_calls(trace)
    tab: Table = {"start_ns": inst["start_ns"].astype(np.int64), "end_ns": inst["end_ns"].astype(np.int64),
                  "tid": inst["tid"].astype(np.int64)}
    tab["cpu_ns"] = tab["end_ns"] - tab["start_ns"]
    tab["launches"] = np.bincount(api_req[launch & (api_req >= 0)], minlength=n).astype(np.int64)

    # correlation ids -> request, per process (correlation ids are unique within a process)
    gpu_req = {}
    key_api = api_corr_key(trace)
    sel = api_req >= 0
    all_sel = bool(sel.all())
    k_sel = key_api if all_sel else key_api[sel]
    r_sel = api_req if all_sel else api_req[sel]
    if _is_sorted(k_sel):            # api calls are in time order, and so are their correlation ids: no sort
        k_sorted, r_sorted = k_sel, r_sel
    else:
        k_sorted_idx = np.argsort(k_sel, kind="stable")
        k_sorted = k_sel[k_sorted_idx]
        r_sorted = r_sel[k_sorted_idx]
    for t in GPU_TABLES:
        g = trace.table(t)
        if table_len(g) == 0:
            gpu_req[t] = np.zeros(0, np.int64)
            continue
        if not len(k_sorted):
            gpu_req[t] = np.full(table_len(g), -1, np.int64)
            continue
        key = gpu_corr_key(trace, t)
        pos = np.searchsorted(k_sorted, key)
        np.minimum(pos, len(k_sorted) - 1, out=pos)
        r = r_sorted[pos]
        r[k_sorted[pos] != key] = -1
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
    warm, why = _warmup(tab["latency_ns"], skip, _drain_barrier(trace, tab, api_req))
    return Requests(range_name=name, domain=domain, reason=reason, inferred=inferred, table=tab, warmup=warm,
                    warmup_reason=why, candidates=cands, api_request=api_req, gpu_request=gpu_req)


def _corr_key(pid: np.ndarray, corr: np.ndarray) -> np.ndarray:
    # globalPid carries the pid in bits 24..55; keep 31 bits of it above a 32-bit correlation id
    return ((pid.astype(np.int64) >> 24) & 0x7FFFFFFF) << 32 | (corr.astype(np.int64) & 0xFFFFFFFF)


def _assign_calls(inst: Table, tid: np.ndarray, t: np.ndarray) -> np.ndarray:
    """For each call (tid, t): index of the request open on that thread at t, or -1."""
    out = np.full(len(t), -1, np.int64)
    t_sorted = None
    for th in uniq(inst["tid"]):
        ri = np.flatnonzero(inst["tid"] == th)
        rs, re = inst["start_ns"][ri], inst["end_ns"][ri]
        order = np.argsort(rs)
        ri, rs, re = ri[order], rs[order], re[order]
        mine = tid == th
        if len(mine) and mine[0] and mine.all():      # one thread makes all the calls: no gathers
            if t_sorted is None:
                t_sorted = _is_sorted(t)
            if t_sorted:
                out = _assign_sorted(ri, rs, re, t)
                continue
            ci = slice(None)
        else:
            ci = np.flatnonzero(mine)
        tc = t[ci]
        slot = np.searchsorted(rs, tc, side="right") - 1
        ok = (slot >= 0) & (tc <= re[np.clip(slot, 0, None)])
        if isinstance(ci, slice):
            out[ok] = ri[slot[ok]]
        else:
            out[ci[ok]] = ri[slot[ok]]
    return out


def _assign_sorted(ri: np.ndarray, rs: np.ndarray, re: np.ndarray, t: np.ndarray) -> np.ndarray:
    """_assign_calls for one thread whose call times t are sorted: each request's calls are one run of rows, so the
    labels are runs of values (np.repeat) instead of a search per call. Same result: the call at t belongs to the
    last request starting at or before t (slot), if t <= its end."""
    n = len(t)
    a = np.searchsorted(t, rs, side="left")            # first call at or after each start
    nxt = np.empty(len(a), np.int64)
    nxt[:-1] = a[1:]
    nxt[-1] = n                                        # calls of slot k: [a[k], a[k+1])
    b = np.minimum(np.maximum(np.searchsorted(t, re, side="right"), a), nxt)   # ... with t <= re[k]
    vals = np.empty(2 * len(a) + 1, np.int64)
    lens = np.empty(2 * len(a) + 1, np.int64)
    vals[0], lens[0] = -1, a[0]                        # before the first request
    vals[1::2], lens[1::2] = ri, b - a
    vals[2::2], lens[2::2] = -1, nxt - b
    return np.repeat(vals, lens)


DRAIN_CALLS = ("cudaDeviceSynchronize", "cuCtxSynchronize")   # wait for all GPU work: ends a warm-up phase


def sync_name_ids(trace: Trace, prefixes: tuple[str, ...]) -> np.ndarray:
    """String ids of the API calls whose names start with one of `prefixes`."""
    ids = trace._cache.get("_api_name_ids")
    if ids is None:
        names = trace.table("api_calls")["name_id"]
        if len(names) and int(names.min()) < 0:
            names = names[names >= 0]
        # bincount is the fast unique for string ids (small ints); a damaged id (up to 2**63-1) would make it
        # allocate that many counters, and at 2**63-1 numpy 2.4 corrupts the heap (max + 1 wraps): np.unique then
        small = len(names) and int(names.max()) < 1 << 24
        ids = np.flatnonzero(np.bincount(names)) if small else np.unique(names)
        trace._cache["_api_name_ids"] = ids
    return np.array([i for i in ids if trace.name(i).startswith(prefixes)], np.int64)


def _drain_barrier(trace: Trace, tab: Table, api_req: np.ndarray) -> int:
    """k when the request thread drained the GPU between request k-1 and k, outside both: the benchmark idiom
    `warm up; torch.cuda.synchronize(); measure`. 0 when there is no such barrier among the first requests."""
    n = len(tab["start_ns"])
    limit = min(WARMUP_MAX, int(n * WARMUP_MAX_SHARE))
    api = trace.table("api_calls")
    if limit < 1 or len(api_req) == 0:
        return 0
    drain = id_mask(api["name_id"], sync_name_ids(trace, DRAIN_CALLS))
    drain &= api_req < 0
    tid0 = tab["tid"][0]
    drain &= api["tid"] == tid0
    t = np.sort(api["start_ns"][drain])
    idx = np.flatnonzero(tab["tid"] == tid0)
    if len(idx) < 4 or len(t) == 0:
        return 0
    # a drain in the gap before each request of this thread
    gap_lo, gap_hi = tab["end_ns"][idx[:-1]], tab["start_ns"][idx[1:]]
    has = np.searchsorted(t, gap_hi) > np.searchsorted(t, gap_lo, side="right")
    early = has[:limit]
    # only a barrier that the steady loop does not repeat marks the end of warm-up
    later = has[limit:]
    if not early.any() or (len(later) and later.mean() >= 0.5):
        return 0
    last = int(np.flatnonzero(early)[-1])
    return int(idx[last + 1])


def _warmup(latency: np.ndarray, skip: int | None, barrier: int = 0) -> tuple[int, str]:
    n = len(latency)
    if skip is not None:
        k = max(0, min(int(skip), n - 1))
        return k, f"--skip {skip}"
    if n < 4:
        return 0, "too few requests to tell warm-up apart"
    limit = min(WARMUP_MAX, int(n * WARMUP_MAX_SHARE))
    if barrier:
        return barrier, f"the first {barrier} end in a full GPU drain (device synchronize) before the rest began"
    k = 0
    while k < limit:
        steady = np.median(latency[k + 1:])
        if latency[k] > WARMUP_FACTOR * steady:
            k += 1
            continue
        break
    if k == 0:
        return 0, "no slow leading requests"
    return k, f"the first {k} took {latency[:k].min() / 1e6:.1f}-{latency[:k].max() / 1e6:.1f} ms, " \
              f"over {WARMUP_FACTOR}x the steady median ({np.median(latency[k:]) / 1e6:.1f} ms)"
