"""Launch overhead: a request runs as many small kernels launched one by one, each shorter than the CPU takes to
launch it, so the GPU finishes each kernel and waits for the next launch. The request's latency is the CPU's launch
rate, not the GPU's work; CUDA graphs, fusion or larger batches turn it back into GPU time.

Work already replayed from a CUDA graph (graph trace rows, kernels with a graph node id, cudaGraphLaunch) has no
per-kernel launches and is never charged here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.activity import hot_functions
from ..model.api_names import GRAPH_LAUNCH_CALLS, base_name
from ..model.arrays import distinct_ids, group_sums, id_mask, lexsort2, lut_fits, median
from ..model.changes import GraphLaunches, RemoveHostWaits
from ..model.host_waits import SYNC
from ..model.intervals import group_running_max
from ..model.projection import GPU_TABLES, launching_calls
from ..model.trace import table_len
from ..report import Evidence
from .common import WORST, host_waits, instance, make_finding
from .common import no_data, not_evaluated

# Kernel launch calls (prefixes of API names; nsys appends _vNNNN and _ptsz).
LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchCooperativeKernel", "cuLaunchKernel", "cuLaunchCooperativeKernel",
                "cuLaunchGrid", "cudaLaunch")
NOT_LAUNCH = ("cudaLaunchHostFunc", "cuLaunchHostFunc")
MIN_REPORT_PCT = 2.0           # under 2% of latency the launch waits are not worth a line (cpu_postproc 0.6%,
                               # healthy 0: its launches run far ahead of the GPU)
MIN_LAUNCHES_PER_REQUEST = 10  # fewer launches per request cannot add up to launch-bound latency (membw_bound: 6,
                               # fp32_gemm: 12 kernels of 0.02-1.3 ms each)
MIN_HOT_SAMPLES = 10           # CPU samples inside the launch gaps below which hot functions are not shown: a few
                               # samples name whatever happened to run (launch_bound: hundreds in its gaps)

CATEGORIES = ("launch_overhead",)
NEEDS = ("api_calls", "kernels")


def _select_names(trace, ids: np.ndarray, prefixes: tuple[str, ...]) -> np.ndarray:
    keep = []
    for i in ids:
        base = base_name(trace.name(i))
        if base.startswith(prefixes) and not base.startswith(NOT_LAUNCH):
            keep.append(i)
    return np.array(keep, np.int64)


def _name_class(name_id: np.ndarray, launch_ids: np.ndarray, graph_ids: np.ndarray) -> np.ndarray:
    """Per API row, uint8: bit 1 set for a kernel launch call, bit 2 for a graph launch (one lookup-table gather)."""
    n = len(name_id)
    lo, hi = (int(name_id.min()), int(name_id.max())) if n else (0, 0)
    if n == 0 or name_id.dtype.kind not in "iu" or lo < 0 or not lut_fits(hi, n):
        return id_mask(name_id, launch_ids).astype(np.uint8) | (id_mask(name_id, graph_ids).astype(np.uint8) << 1)
    lut = np.zeros(hi + 1, np.uint8)
    lut[launch_ids[(launch_ids >= 0) & (launch_ids <= hi)]] |= 1
    lut[graph_ids[(graph_ids >= 0) & (graph_ids <= hi)]] |= 2
    return lut[name_id]


@dataclass
class Measurement:
    impact_ns: float                 # mean over measured requests of the GPU time waiting inside launch calls
    launches: float                  # kernel launch calls per measured request
    graph_launches: float            # graph launch calls per measured request
    own_kernels: int                 # kernels (not graphed) of measured requests
    graphed_share: float             # share of the requests' GPU rows replayed from a graph
    median_kernel_ns: float
    median_launch_ns: float
    shorter_share: float             # share of own kernels shorter than the median launch call
    starved: int                     # kernels that waited for their launch (all measured requests)
    saved: np.ndarray                # per measured request: the saving (wait inside launch calls, bounded)
    per_req_wait: np.ndarray         # per request: GPU wait inside launch calls
    per_req_gap: np.ndarray          # per request: GPU wait for the CPU between kernels (the upper bound)
    gap_req: np.ndarray              # per starved kernel: its request, the GPU's idle window before it
    gap_lo: np.ndarray
    gap_hi: np.ndarray
    launch_mask: np.ndarray          # api_calls rows: kernel launch calls inside measured requests
    waits: np.ndarray | None = None  # api_calls rows: the host waits inside the measured requests' captured region
    sync_calls: np.ndarray | None = None   # those of them that are synchronize calls (they go with their wait)


def _request_gpu_rows(ctx):
    """The measured requests' GPU work in (request, start) order, as parallel arrays: request, start, end, the
    api_calls row that launched it (-1: none found), is a kernel, replayed from a graph. None when there is none."""
    trace, rq = ctx.trace, ctx.requests
    W = rq.warmup
    cols = {k: [] for k in ("req", "s", "e", "call", "kernel", "graphed")}
    for t in GPU_TABLES:
        g, r = trace.table(t), rq.gpu_request.get(t, np.zeros(0, np.int64))
        if len(r) == 0:
            continue
        m = r >= W
        n_m = int(np.count_nonzero(m))
        sel = slice(None) if n_m == len(m) else np.flatnonzero(m)   # a view when every row is measured
        call = launching_calls(trace, t)[sel]      # cached, read-only: shared with the request projection
        cols["req"].append(r[sel])
        cols["s"].append(g["start_ns"][sel])
        cols["e"].append(g["end_ns"][sel])
        cols["call"].append(call)
        cols["kernel"].append(np.full(n_m, t == "kernels"))
        graphed = (g["graph_node"][sel] != 0) if t == "kernels" else np.full(n_m, t == "graphs")
        cols["graphed"].append(graphed)
    if not cols["req"]:
        return None
    R, S, E, C, K, G = (v[0] if len(v) == 1 else np.concatenate(v)
                        for v in (cols[k] for k in ("req", "s", "e", "call", "kernel", "graphed")))
    del cols
    o = lexsort2(S, R)
    if o is not None:
        R, S, E, C, K, G = R[o], S[o], E[o], C[o], K[o], G[o]
    return R, S, E, C, K, G


def _starved(ctx, cls, R, S, E, C, K, G):
    """The kernels whose launch call began after the GPU had finished all earlier work of their request (gaps
    after a host wait excluded: cuda_sync's): (row index into the arrays minus one, the call's start, the end of
    everything before)."""
    api = ctx.trace.table("api_calls")
    run_end = group_running_max(R, E)     # end of everything the request ran so far
    prev_end = run_end[:-1]
    # candidates: the next row of the same request starts after everything before it ended, and is an own kernel
    # (not graphed) launched by a kernel launch call that began after that end
    starved = R[1:] == R[:-1]
    starved &= K[1:]
    starved &= ~G[1:]
    starved &= C[1:] >= 0
    idx = np.flatnonzero(starved)
    del starved
    call = C[1:][idx]
    keep = (cls[call] & 1) != 0
    call_start = api["start_ns"][call]
    keep &= call_start > prev_end[idx]
    idx, call_start = idx[keep], call_start[keep]
    # the GPU had finished everything before this kernel's launch call began: it waited for the launch
    # a gap that follows a host wait is the wait's refill (cuda_sync), not launch rate
    sc = host_waits(ctx)
    if len(sc["end_ns"]):
        sync_end = np.sort(sc["end_ns"])
        after_sync = (np.searchsorted(sync_end, call_start, "right")
                      > np.searchsorted(sync_end, prev_end[idx], "right"))
        if after_sync.any():
            keep = ~after_sync
            idx, call_start = idx[keep], call_start[keep]
    return idx, call_start, prev_end[idx]


def measure(ctx) -> Measurement | None:
    trace, rq = ctx.trace, ctx.requests
    if "api_calls" in trace.absent:
        return not_evaluated(ctx, CATEGORIES, no_data(trace, "api_calls", "CUDA API calls"))
    if ctx.mean_latency_ns <= 0 or table_len(trace.table("api_calls")) == 0:
        return None
    api = trace.table("api_calls")
    W, n_req = rq.warmup, len(ctx.measured)
    if n_req == 0 or len(rq.api_request) != table_len(api):
        return None
    inreq = rq.api_request >= W
    name_id = api["name_id"]
    ids_in = distinct_ids(name_id[inreq])
    cls = _name_class(name_id, _select_names(trace, ids_in, LAUNCH_CALLS),
                      _select_names(trace, ids_in, GRAPH_LAUNCH_CALLS))
    is_launch = (cls & 1) != 0
    is_launch &= inreq
    graph_launches = float(np.count_nonzero(inreq & ((cls & 2) != 0))) / n_req
    launches = float(is_launch.sum()) / n_req
    if launches < MIN_LAUNCHES_PER_REQUEST:
        return None
    rows = _request_gpu_rows(ctx)     # the request's own GPU work in time order, each with its launch call
    if rows is None or len(rows[0]) < 2:
        return None
    R, S, E, C, K, G = rows
    idx, call_start, lo_st = _starved(ctx, cls, *rows)
    # what the launch itself cost the GPU: from the launch call to the kernel's start (the rest of the gap is
    # framework dispatch, which CUDA graphs also remove: reported as the upper bound)
    s_st = S[1:][idx]
    gap = s_st - lo_st          # > 0: the launch call began after lo_st and the kernel starts after its call
    np.maximum(gap, 0, out=gap)
    wait = np.minimum(gap, s_st - np.minimum(call_start, s_st))
    rn = R[1:][idx]
    per_req_wait = group_sums(rn, wait, rq.count)
    per_req_gap = group_sums(rn, gap, rq.count)
    t = rq.table
    bound = np.maximum(t["latency_ns"] - t["compute_ns"], 0)
    saved = np.minimum(per_req_wait, bound)[W:]
    impact_ns = float(saved.mean())
    if 100.0 * impact_ns / ctx.mean_latency_ns < MIN_REPORT_PCT:
        return None
    # kernel and launch-call durations
    own = K & ~G
    n_own = int(np.count_nonzero(own))
    kd = E - S if n_own == len(own) else E[own] - S[own]
    li = np.flatnonzero(is_launch)
    ld = api["end_ns"][li] - api["start_ns"][li]
    del li
    med_k = median(kd, overwrite=True) if len(kd) else 0.0       # both are fresh arrays: partitioned in place
    med_l = median(ld, overwrite=True) if len(ld) else 0.0
    # a host wait inside the captured region ends the capture with an error (CUDA programming guide, "Prohibited
    # and Unhandled Operations"): the fix removes the waits inside the region first
    sc = host_waits(ctx)
    in_capture = np.zeros(len(sc["row"]), bool)
    if len(sc["row"]) and len(li_all := np.flatnonzero(is_launch)):
        # inside the captured region: after the request's first kernel launch and before its last
        req_of = rq.api_request[li_all]
        first = np.full(rq.count, np.iinfo(np.int64).max)
        last = np.full(rq.count, -1)
        np.minimum.at(first, req_of, api["start_ns"][li_all])
        np.maximum.at(last, req_of, api["start_ns"][li_all])
        r = np.clip(sc["request"], 0, rq.count - 1)
        in_capture = (~sc["last"] & (sc["request"] >= W) & (sc["start_ns"] > first[r])
                      & (sc["start_ns"] < last[r]))
    return Measurement(impact_ns=impact_ns, launches=launches, graph_launches=graph_launches, own_kernels=n_own,
                       graphed_share=float(G.sum()) / max(len(G), 1), median_kernel_ns=med_k,
                       median_launch_ns=med_l,
                       shorter_share=float((kd < med_l).mean()) if len(kd) else 0.0, starved=len(idx),
                       saved=saved, per_req_wait=per_req_wait, per_req_gap=per_req_gap, gap_req=rn, gap_lo=lo_st,
                       gap_hi=s_st, launch_mask=is_launch, waits=sc["row"][in_capture],
                       sync_calls=sc["row"][in_capture & (sc["kind"] == SYNC)])


def change(m: Measurement) -> list:
    """CUDA graphs: the measured requests' launch calls become one graph launch per request, after the host waits
    inside the captured region are gone (a capture cannot hold one; a synchronize call goes with its wait)."""
    out = [GraphLaunches(api_rows=np.flatnonzero(m.launch_mask))]
    if m.waits is not None and len(m.waits):
        out.append(RemoveHostWaits(api_rows=m.waits, read_calls=m.sync_calls if len(m.sync_calls) else None))
    return out


def _numbers(ctx, m: Measurement) -> dict:
    rq = ctx.requests
    t, W, n_req = rq.table, rq.warmup, len(ctx.measured)
    lat = t["latency_ns"][W:].astype(np.float64)
    return {
        "launches_per_request": round(m.launches, 1),
        "kernels_per_request": round(float(m.own_kernels) / n_req, 1),
        "graph_launches_per_request": round(m.graph_launches, 2),
        "graphed_kernel_share": round(m.graphed_share, 3),
        "median_kernel_us": round(m.median_kernel_ns / 1e3, 2),
        "median_launch_call_us": round(m.median_launch_ns / 1e3, 2),
        "kernels_shorter_than_launch_share": round(m.shorter_share, 3),
        "starved_launches_per_request": round(float(m.starved) / n_req, 1),
        "gpu_waiting_on_launch_calls_ms_per_request": round(m.impact_ns / 1e6, 3),
        "gpu_waiting_on_cpu_between_kernels_ms_per_request": round(float(m.per_req_gap[W:].mean()) / 1e6, 3),
        "gpu_waiting_share_of_latency_pct": round(100.0 * float((m.per_req_gap[W:] / np.maximum(lat, 1)).mean()),
                                                  1),
        "kernel_time_ms_per_request": round(float(t["compute_ns"][W:].mean()) / 1e6, 3),
        "mean_latency_ms": round(ctx.mean_latency_ns / 1e6, 3),
    }


def finding(ctx, m: Measurement) -> list:
    rq = ctx.requests
    t, W = rq.table, rq.warmup
    numbers = _numbers(ctx, m)
    worst = []
    req_ids = np.arange(rq.count)[W:]
    for i in np.argsort(-m.saved)[:WORST]:
        r = int(req_ids[i])
        worst.append(instance(ctx, r, t["start_ns"][r], t["start_ns"][r] + t["latency_ns"][r],
                              f"{int(t['launches'][r])} launches; GPU waited {m.per_req_gap[r] / 1e6:.2f} ms for the "
                              f"CPU between kernels, {m.per_req_wait[r] / 1e6:.2f} ms of it inside launch calls",
                              tid=int(t["tid"][r])))
    code = _hot_code(ctx, m.gap_req, m.gap_lo, m.gap_hi)
    med_k, med_l = m.median_kernel_ns, m.median_launch_ns
    title = (f"{numbers['kernels_per_request']:g} kernels per request of {med_k / 1e3:.1f} us median, each launched "
             f"in {med_l / 1e3:.1f} us: the GPU waits on launches")
    estimate = ("per request: for each kernel whose launch call began after the GPU had finished all earlier work "
                "of the request (gaps after a host wait excluded: cuda_sync), the time from the launch call to the "
                "kernel's start; bounded by latency minus kernel time; mean over measured requests. Conservative: "
                "CUDA graphs also remove the framework dispatch between launches, up to "
                f"{numbers['gpu_waiting_on_cpu_between_kernels_ms_per_request']:g} ms per request")
    fix = ("Capture the request in a CUDA graph (torch.cuda.graphs / CUDAGraph.replay, or torch.compile("
           "mode=\"reduce-overhead\")) so it is one launch; fuse small ops (torch.compile, TensorRT); or batch "
           "requests so each kernel does more work per launch.")
    # a host wait inside the captured region ends the capture with an error (CUDA programming guide, "Prohibited
    # and Unhandled Operations"): the request's own waits must go first
    sc = host_waits(ctx)
    waits = float((~sc["last"]).sum()) / max(len(ctx.measured), 1) if len(sc["row"]) else 0.0
    if waits >= 1:
        numbers["host_waits_before_more_gpu_work_per_request"] = round(waits, 2)
        fix += (f" First remove its {waits:g} host waits per request before more GPU work (synchronize calls, "
                "`.item()`/`.cpu()` reads: see cuda_sync): a CUDA graph capture fails on any of them.")
    why = (f"Each of the {numbers['kernels_per_request']:g} kernels runs for ~{med_k / 1e3:.1f} us but takes "
           f"~{med_l / 1e3:.1f} us of launch call plus framework dispatch on the CPU, so the GPU finishes each kernel "
           "before the next is launched and idles in between; the request's latency is set by how fast one CPU "
           "thread can launch, not by the GPU.")
    return [make_finding(ctx, "launch_overhead", title, m.impact_ns, estimate,
                         Evidence(numbers=numbers, worst=worst, code=code), fix, why)]


def diagnose(ctx) -> list:
    m = measure(ctx)
    return [] if m is None else finding(ctx, m)


def _hot_code(ctx, req: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[dict]:
    """Hot CPU functions on the request threads while the GPU waited for launches (when CPU samples exist)."""
    if not ctx.trace.has("samples") or len(req) == 0:
        return []
    tid = ctx.requests.table["tid"][req]
    order = lexsort2(lo, tid)
    if order is not None:
        tid, lo, hi = tid[order], lo[order], hi[order]
    tid, lo, hi = _sampled_windows(ctx.trace.table("samples"), tid, lo, hi)
    funcs, n = hot_functions(ctx.trace, tid, lo, hi)
    return funcs if n >= MIN_HOT_SAMPLES else []


def _sampled_windows(s, tid: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """The windows (sorted by thread, then start) that a CPU sample can be assigned to: per sample, the window of
    its thread that starts last at or before it (with any windows starting at the same time). A sample is counted
    only inside that window, so the others change nothing; millions of launch gaps hold a few thousand samples."""
    n = len(tid)
    s_tid, s_t = s["tid"], s["start_ns"]
    if n == 0 or len(s_t) == 0:
        return tid[:0], lo[:0], hi[:0]
    keep = np.zeros(n, bool)
    first = np.flatnonzero(np.r_[True, tid[1:] != tid[:-1]])
    bounds = np.r_[first, n]
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        ts = s_t[s_tid == tid[a]]
        if len(ts) == 0:
            continue
        w = lo[a:b]
        slot = np.searchsorted(w, ts, "right") - 1
        slot = slot[slot >= 0]
        if len(slot) == 0:
            continue
        keep[a + slot] = True
        # windows starting at the same time as a slot window (rare): keep the whole tie group
        left = np.searchsorted(w, w[slot], "left")
        for x, y in zip(left[left < slot].tolist(), slot[left < slot].tolist()):
            keep[a + x:a + y] = True
    k = np.flatnonzero(keep)
    return tid[k], lo[k], hi[k]
