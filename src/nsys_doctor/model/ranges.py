"""Which NVTX range is a request: every distinct range, whether it can be one and why, best first.

A request repeats, encloses GPU launches (by the thread that opened it, or by other threads of its process when
none does so on its own), is not a library's own bookkeeping range, and is the outermost such range (a request
encloses its phases). The reason is said in words, so a user can tell whether to override it with --range.
"""
from __future__ import annotations

import numpy as np

from .arrays import uniq
from .projection import launch_calls, pid_of
from .trace import Table, Trace, table_len, take

# A range a library opens for its own bookkeeping is not a request. Domains of NVIDIA libraries (nsys names them so).
LIBRARY_DOMAINS = {"cuBLAS", "cuDNN", "CUDA", "NCCL", "cuFFT", "cuSPARSE", "nvJPEG", "NVSHMEM"}


# Range names that libraries push in the default domain (seen: cublasCreate_v2 in all zoo profiles).
LIBRARY_NAME_PREFIXES = ("cublas", "cudnn", "cufft", "cusparse", "nccl", "cudaProfiler",
                         # per-operator ranges of torch.autograd.profiler.emit_nvtx and DLProf's markers: one per
                         # op, not per request (dlprof-dummy-cnn in shared/external)
                         "aten::", "{'tracemarker'", '{"tracemarker"')  # compared lower-cased


MIN_INSTANCES = 2            # a request repeats; a range seen once is set-up or a whole run


MIN_GPU_SHARE = 0.5          # at least half of its instances launch GPU work (a user's request encloses inference)


def top_names(ranges: Table, n: int = 8) -> str:
    names, counts = np.unique(ranges["name"].astype(str), return_counts=True)
    order = np.argsort(-counts)[:n]
    return ", ".join(f"{str(names[i])!r} x{int(counts[i])}" for i in order) or "none"


def outermost(r: Table) -> Table:
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


def rank_ranges(trace: Trace, by_process: bool = False) -> list[dict]:
    """Every distinct NVTX range, with whether it can be a request and why, best first. `by_process`: a range
    encloses the launches of every thread of its process, not only of its own thread."""
    ranges = trace.table("ranges")
    if table_len(ranges) == 0:
        return []
    api = trace.table("api_calls")
    launch = launch_calls(trace)
    l_start, l_tid = api["start_ns"][launch], api["tid"][launch]
    if by_process:
        ranges = {**ranges, "tid": pid_of(trace, ranges["tid"])}
        l_tid = pid_of(trace, l_tid)
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
    outer = "the only such range" if others == 0 else f"outermost of {others + 1} such ranges"
    return (f"repeated {c['count']} times, {c['gpu_share']:.0%} of them launch GPU work "
            f"({c['launches']} launches), {outer}")


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


MIN_SIBLINGS = 2             # a step split into ranges has at least two of them
STEP_SHARE = 0.9             # of the instances that must follow the one repeating order (a last step cut short by the
                             # end of the capture, or an odd extra range, leaves the rest intact)


def sibling_steps(trace: Trace, good: list[dict]) -> tuple[Table, str, str] | None:
    """When the best candidates are siblings (same nesting depth, same count) that follow each other in one fixed
    order on their thread with nothing repeating around them (per-layer ranges of an LLM decode, one set per token),
    any one of them is a slice of a step: group each run of consecutive siblings into one step. None otherwise.
    A parent that repeats around them is itself eligible and outermost, so it is chosen before this is asked."""
    if len(good) < MIN_SIBLINGS:
        return None
    top = good[0]
    sib = [c for c in good if c["depth"] == top["depth"] and c["count"] == top["count"]]
    if len(sib) < MIN_SIBLINGS:
        return None
    ranges = trace.table("ranges")
    keys = {f"{c['domain']}\x1f{c['name']}" for c in sib}
    pick = np.fromiter((f"{d}\x1f{n}" in keys for d, n in zip(ranges["domain"].tolist(), ranges["name"].tolist())),
                       bool, table_len(ranges))
    r = take(ranges, pick)
    period = len(sib)
    starts, ends, tids = [], [], []
    order_seen = None
    for th in uniq(r["tid"]):
        m = np.flatnonzero(r["tid"] == th)
        m = m[np.argsort(r["start_ns"][m], kind="stable")]
        names = r["name"][m].astype(str)
        full = len(m) // period * period
        if full == 0:
            return None
        cycles = names[:full].reshape(-1, period)
        order = tuple(str(x) for x in cycles[0])
        if len(set(order)) != period or (order_seen is not None and order != order_seen):
            return None
        order_seen = order
        same = (cycles == cycles[0]).all(axis=1)
        if same.mean() < STEP_SHARE:
            return None
        rows = m[:full].reshape(-1, period)[same]
        starts.append(r["start_ns"][rows].min(axis=1))
        ends.append(r["end_ns"][rows].max(axis=1))
        tids.append(np.full(len(rows), th))
    s, e, t = np.concatenate(starts), np.concatenate(ends), np.concatenate(tids)
    o = np.argsort(s, kind="stable")
    first, last = order_seen[0], order_seen[-1]
    name = f"step ({first} .. {last})"
    inst = {"start_ns": s[o], "end_ns": e[o], "tid": t[o], "name": np.full(len(o), name, object),
            "domain": np.full(len(o), top["domain"], object)}
    reason = (f"{period} sibling ranges ({', '.join(repr(x) for x in order_seen[:4])}"
              f"{', ...' if period > 4 else ''}) repeat {top['count']} times in one order with no range around them: "
              f"each alone is a slice of a step, so each run from {first!r} to {last!r} is taken as one step")
    return inst, name, reason
