"""Launch overhead: a request runs as many small kernels launched one by one, each shorter than the CPU takes to
launch it, so the GPU finishes each kernel and waits for the next launch. The request's latency is the CPU's launch
rate, not the GPU's work; CUDA graphs, fusion or larger batches turn it back into GPU time.

Work already replayed from a CUDA graph (graph trace rows, kernels with a graph node id, cudaGraphLaunch) has no
per-kernel launches and is never charged here.
"""
from __future__ import annotations

import re

import numpy as np

from ..model.requests import GPU_TABLES, _corr_key
from ..model.trace import table_len
from ..report import Evidence
from .common import WORST, instance, make_finding
from .cuda_sync import sync_calls
from ..model.arrays import uniq
from ..model.arrays import distinct_ids, id_mask

# Kernel launch calls (prefixes of API names; nsys appends _vNNNN and _ptsz).
LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchCooperativeKernel", "cuLaunchKernel", "cuLaunchCooperativeKernel",
                "cuLaunchGrid", "cudaLaunch")
NOT_LAUNCH = ("cudaLaunchHostFunc", "cuLaunchHostFunc")
GRAPH_LAUNCH_CALLS = ("cudaGraphLaunch", "cuGraphLaunch")
MIN_REPORT_PCT = 2.0           # under 2% of latency the launch waits are not worth a line (cpu_postproc 0.6%,
                               # healthy 0: its launches run far ahead of the GPU)
MIN_LAUNCHES_PER_REQUEST = 10  # fewer launches per request cannot add up to launch-bound latency (membw_bound: 6,
                               # fp32_gemm: 12 kernels of 0.02-1.3 ms each)

NEEDS = ("api_calls", "kernels")

_SUFFIX = re.compile(r"(_v\d+)?(_ptsz|_ptds)?(_v\d+)?$")


def _launch_name_ids(trace, name_ids: np.ndarray, prefixes: tuple[str, ...]) -> np.ndarray:
    return _select_names(trace, uniq(name_ids), prefixes)


def _select_names(trace, ids: np.ndarray, prefixes: tuple[str, ...]) -> np.ndarray:
    keep = []
    for i in ids:
        base = _SUFFIX.sub("", trace.name(i))
        if base.startswith(prefixes) and not base.startswith(NOT_LAUNCH):
            keep.append(i)
    return np.array(keep, np.int64)


def _name_class(name_id: np.ndarray, launch_ids: np.ndarray, graph_ids: np.ndarray) -> np.ndarray:
    """Per API row, uint8: bit 1 set for a kernel launch call, bit 2 for a graph launch (one lookup-table gather)."""
    n = len(name_id)
    lo, hi = (int(name_id.min()), int(name_id.max())) if n else (0, 0)
    if n == 0 or name_id.dtype.kind not in "iu" or lo < 0 or hi > 4 * n + (1 << 20):
        return id_mask(name_id, launch_ids).astype(np.uint8) | (id_mask(name_id, graph_ids).astype(np.uint8) << 1)
    lut = np.zeros(hi + 1, np.uint8)
    lut[launch_ids[(launch_ids >= 0) & (launch_ids <= hi)]] |= 1
    lut[graph_ids[(graph_ids >= 0) & (graph_ids <= hi)]] |= 2
    return lut[name_id]


def _api_corr_key(api) -> np.ndarray:
    """_corr_key(api["tid"] >> 24 << 24, api["correlation"]) (a call's process is the top bits of its thread id),
    computed in place: two full-length temporaries instead of eight."""
    key = api["tid"] >> 24
    if key.dtype != np.int64:
        key = key.astype(np.int64)
    key &= 0x7FFFFFFF
    key <<= 32
    key |= api["correlation"].astype(np.int64, copy=False) & 0xFFFFFFFF
    return key


def _sort_order(key: np.ndarray) -> np.ndarray | None:
    """np.argsort(key, kind="stable"), or None when the keys are already in order (the usual case: no sort, no
    reordering copies)."""
    if len(key) < 2 or bool((key[1:] >= key[:-1]).all()):
        return None
    return np.argsort(key, kind="stable")


def _lexsort2(minor: np.ndarray, major: np.ndarray) -> np.ndarray | None:
    """np.lexsort((minor, major)) for int64 columns (None when already in that order), as one stable sort of a
    combined int64 key when it fits."""
    if len(minor) < 2:
        return None
    if bool((major[1:] >= major[:-1]).all()):
        ties = major[1:] == major[:-1]
        if not (ties & (minor[1:] < minor[:-1])).any():
            return None
    mlo, mhi = int(minor.min()), int(minor.max())
    jlo, jhi = int(major.min()), int(major.max())
    span = mhi - mlo + 1
    if (jhi - jlo + 1) * span >= 2 ** 62:
        return np.lexsort((minor, major))
    key = (major.astype(np.int64) - jlo) * span + (minor.astype(np.int64) - mlo)
    return np.argsort(key, kind="stable")


def diagnose(ctx):
    trace, rq = ctx.trace, ctx.requests
    if "api_calls" in trace.absent or ctx.mean_latency_ns <= 0 or table_len(trace.table("api_calls")) == 0:
        return []
    api = trace.table("api_calls")
    W, n_req = rq.warmup, len(ctx.measured)
    if n_req == 0 or len(rq.api_request) != table_len(api):
        return []
    inreq = rq.api_request >= W
    name_id = api["name_id"]
    ids_in = distinct_ids(name_id[inreq])
    launch_ids = _select_names(trace, ids_in, LAUNCH_CALLS)
    graph_ids = _select_names(trace, ids_in, GRAPH_LAUNCH_CALLS)
    cls = _name_class(name_id, launch_ids, graph_ids)
    is_launch = (cls & 1) != 0
    is_launch &= inreq
    graph_launches = float(np.count_nonzero(inreq & ((cls & 2) != 0))) / n_req
    launches = float(is_launch.sum()) / n_req
    if launches < MIN_LAUNCHES_PER_REQUEST:
        return []

    # the request's own GPU work in time order, each with the API call that launched it
    akey = _api_corr_key(api)
    ao = _sort_order(akey)
    ak = akey if ao is None else akey[ao]
    cols = {k: [] for k in ("req", "s", "e", "call", "kernel", "graphed")}
    for t in GPU_TABLES:
        g, r = trace.table(t), rq.gpu_request.get(t, np.zeros(0, np.int64))
        if len(r) == 0:
            continue
        m = r >= W
        key = _corr_key(g["pid"][m], g["correlation"][m])
        pos = np.clip(np.searchsorted(ak, key), 0, len(ak) - 1)
        cols["req"].append(r[m])
        cols["s"].append(g["start_ns"][m])
        cols["e"].append(g["end_ns"][m])
        cols["call"].append(np.where(ak[pos] == key, pos if ao is None else ao[pos], -1))
        cols["kernel"].append(np.full(int(m.sum()), t == "kernels"))
        graphed = (g["graph_node"][m] != 0) if t == "kernels" else np.full(int(m.sum()), t == "graphs")
        cols["graphed"].append(graphed)
    if not cols["req"]:
        return []
    R, S, E, C, K, G = (np.concatenate(cols[k]) for k in ("req", "s", "e", "call", "kernel", "graphed"))
    o = _lexsort2(S, R)
    if o is not None:
        R, S, E, C, K, G = R[o], S[o], E[o], C[o], K[o], G[o]
    if len(R) < 2:
        return []
    # end of everything the request ran so far (running max, restarted per request)
    base = int(S.min())
    off = (R - R.min()).astype(np.int64) * (int(E.max()) - base + 1)
    run_end = E - base
    run_end += off
    np.maximum.accumulate(run_end, out=run_end)
    run_end -= off
    run_end += base
    nxt = slice(1, None)
    same = R[1:] == R[:-1]
    gap = np.clip(S[nxt] - run_end[:-1], 0, None)
    call = C[nxt]
    has_call = call >= 0
    call_start = np.where(has_call, api["start_ns"][np.clip(call, 0, None)], np.iinfo(np.int64).max)
    launched = has_call & ((cls[np.clip(call, 0, None)] & 1) != 0) & K[nxt] & ~G[nxt]
    # the GPU had finished everything before this kernel's launch call began: it waited for the launch
    starved = same & launched & (call_start > run_end[:-1])
    # a gap that follows a host wait is the wait's refill (cuda_sync), not launch rate
    sc = sync_calls(ctx)
    sync_end = np.sort(sc["end_ns"])
    after_sync = np.searchsorted(sync_end, call_start, "right") > np.searchsorted(sync_end, run_end[:-1], "right")
    starved &= ~after_sync
    # what the launch itself cost the GPU: from the launch call to the kernel's start (the rest of the gap is
    # framework dispatch, which CUDA graphs also remove: reported as the upper bound)
    wait = np.where(starved, np.minimum(gap, S[nxt] - np.minimum(call_start, S[nxt])), 0)
    starved_gap = np.where(starved, gap, 0)
    rn = R[nxt]
    per_req_wait = np.bincount(rn, weights=wait, minlength=rq.count)
    per_req_gap = np.bincount(rn, weights=starved_gap, minlength=rq.count)
    t = rq.table
    bound = np.maximum(t["latency_ns"] - t["compute_ns"], 0)
    saved = np.minimum(per_req_wait, bound)[W:]
    impact_ns = float(saved.mean())
    if 100.0 * impact_ns / ctx.mean_latency_ns < MIN_REPORT_PCT:
        return []

    # kernel and launch-call durations
    own = K & ~G
    kd = E[own] - S[own]
    ld = api["end_ns"][is_launch] - api["start_ns"][is_launch]
    med_k, med_l = float(np.median(kd)) if len(kd) else 0.0, float(np.median(ld)) if len(ld) else 0.0
    lat = t["latency_ns"][W:].astype(np.float64)
    numbers = {
        "launches_per_request": round(launches, 1),
        "kernels_per_request": round(float((K & ~G).sum()) / n_req, 1),
        "graph_launches_per_request": round(graph_launches, 2),
        "graphed_kernel_share": round(float(G.sum()) / max(len(G), 1), 3),
        "median_kernel_us": round(med_k / 1e3, 2),
        "median_launch_call_us": round(med_l / 1e3, 2),
        "kernels_shorter_than_launch_share": round(float((kd < med_l).mean()) if len(kd) else 0.0, 3),
        "starved_launches_per_request": round(float(starved.sum()) / n_req, 1),
        "gpu_waiting_on_launch_calls_ms_per_request": round(impact_ns / 1e6, 3),
        "gpu_waiting_on_cpu_between_kernels_ms_per_request": round(float(per_req_gap[W:].mean()) / 1e6, 3),
        "gpu_waiting_share_of_latency_pct": round(100.0 * float((per_req_gap[W:] / np.maximum(lat, 1)).mean()), 1),
        "kernel_time_ms_per_request": round(float(t["compute_ns"][W:].mean()) / 1e6, 3),
        "mean_latency_ms": round(ctx.mean_latency_ns / 1e6, 3),
    }
    worst = []
    req_ids = np.arange(rq.count)[W:]
    for i in np.argsort(-saved)[:WORST]:
        r = int(req_ids[i])
        worst.append(instance(ctx, r, t["start_ns"][r], t["start_ns"][r] + t["latency_ns"][r],
                              f"{int(t['launches'][r])} launches; GPU waited {per_req_gap[r] / 1e6:.2f} ms for the "
                              f"CPU between kernels, {per_req_wait[r] / 1e6:.2f} ms of it inside launch calls",
                              tid=int(t["tid"][r])))
    code = _hot_code(ctx, rn[starved], run_end[:-1][starved], S[nxt][starved])
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
    why = (f"Each of the {numbers['kernels_per_request']:g} kernels runs for ~{med_k / 1e3:.1f} us but takes "
           f"~{med_l / 1e3:.1f} us of launch call plus framework dispatch on the CPU, so the GPU finishes each kernel "
           "before the next is launched and idles in between; the request's latency is set by how fast one CPU "
           "thread can launch, not by the GPU.")
    return [make_finding(ctx, "launch_overhead", title, impact_ns, estimate,
                         Evidence(numbers=numbers, worst=worst, code=code), fix, why)]


def _hot_code(ctx, req: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[dict]:
    """Hot CPU functions on the request threads while the GPU waited for launches (when CPU samples exist)."""
    if not ctx.trace.has("samples") or len(req) == 0:
        return []
    try:
        from .cpu_samples import hot_functions
    except ImportError:
        return []
    tid = ctx.requests.table["tid"][req]
    order = np.lexsort((lo, tid))
    funcs, n = hot_functions(ctx.trace, tid[order], lo[order], hi[order])
    return funcs if n >= 10 else []
