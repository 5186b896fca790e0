"""Memory transfers: host<->device copies inside requests run slowly (pageable host memory, staged by the driver and
blocking the CPU) or stall the GPU, because nothing computes while they run."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.arrays import distinct_ids, id_mask, uniq
from ..model.device import pinned_link_gbps
from ..model.changes import CopiesAtRate, RemoveHostWaits
from ..model.host_waits import COPY_WAIT, select
from ..model.projection import launch_calls
from ..model.intervals import covered, union
from ..model.projection import issuing_calls
from ..model.trace import table_len
from ..report import Evidence
from .common import WORST, host_waits, instance, make_finding, per_request_mean
from .common import no_data, not_evaluated

MIN_MEASURE_BYTES = 1 << 20        # below 1 MiB a copy's time is mostly fixed latency, its GB/s means nothing
PINNED_FLOOR_GBPS = 12.0           # pinned PCIe Gen3 x16 moves ~12 GB/s, the slowest link a current datacenter GPU sits
                                   # on; a faster rate measured in the same profile replaces it (healthy: 55 GB/s H2D)
MIN_SHARE_PCT = 1.0                # under 1% of request latency the copies are not worth a line (healthy: pinned async)
HOST_KINDS = {1: "HtoD", 2: "DtoH"}  # ENUM_CUDA_MEMCPY_OPER values used when the profile has no enum table
PAGEABLE = 0                       # ENUM_CUDA_MEM_KIND value of pageable host memory (fallback for the enum label)

ENQUEUE_FALLBACK_NS = 5_000       # a launch call's CPU cost where the profile launched no kernel in a request (5-9 us
                                   # median cudaLaunchKernel on the H100/H200 recordings in tests/data)
PAGEABLE_TITLE_SHARE = 0.5        # the finding is about pageable memory when half the copy time or more is pageable
CATEGORIES = ("memory_transfer",)
NEEDS = ("copies", "kernels", "api_calls")


def _direction(trace, kind: np.ndarray) -> np.ndarray:
    """'HtoD' / 'DtoH' per copy, '' for device-side copies (DtoD, PtoP, memsets are not host transfers)."""
    out = np.full(len(kind), "", object)
    for v in uniq(kind):
        label = trace.enum("CUDA_MEMCPY_OPER", v, "")
        if label:
            low = label.lower()
            d = "HtoD" if low.startswith("host-to-device") else "DtoH" if low.startswith("device-to-host") else ""
        else:
            d = HOST_KINDS.get(int(v), "")
        out[kind == v] = d
    return out


def _pageable(trace, mem_kind: np.ndarray) -> np.ndarray:
    labels = {int(v): trace.enum("CUDA_MEM_KIND", v, "") for v in uniq(mem_kind)}
    pag = {v for v, lab in labels.items() if lab.lower() == "pageable" or (not lab and v == PAGEABLE)}
    return np.isin(mem_kind, list(pag))


@dataclass
class Measurement:
    impact_ns: float          # mean per measured request: excess over the reference rate + hideable exposed time
    slow_ns: float            # the first part (what pinned buffers would save)
    overlap_ns: float         # the second (what a side stream would hide)
    direction: np.ndarray     # per copy: 'HtoD' / 'DtoH' / '' (device-side)
    pageable: np.ndarray      # per copy: from/to pageable host memory
    inreq: np.ndarray         # per copy: a host copy inside a measured request
    big: np.ndarray           # per copy: large enough to measure its rate
    rate: np.ndarray          # per copy: GB/s
    ref: dict                 # direction -> reference GB/s (the best measured, at least the floor)
    ref_rate: np.ndarray      # per copy: its direction's reference
    exposed: np.ndarray       # per copy: ns with no kernel on its device
    cost: np.ndarray          # per copy: what the fix saves on it
    link_gbps: float | None = None   # the GPU's documented pinned host link rate (model/device.py), None: unknown
    staged_tail_ns: float = 0.0      # mean per measured request: CPU time in pageable copy calls after their copy ended
    staged_small_ns: float = 0.0     # mean per measured request: small pageable copies' calls beyond an enqueue
    upload_waits: dict | None = None  # model.host_waits of kind COPY_WAIT: the syncs after pageable uploads
    upload_wait_ns: float = 0.0      # mean per measured request: their time blocked and the GPU refill after them


def _reference_rates(direction, big, rate):
    """Per direction the best rate measured in the whole profile (pinned or not), never below the floor."""
    ref = {}
    for d in ("HtoD", "DtoH"):
        m = big & (direction == d)
        ref[d] = max(PINNED_FLOOR_GBPS, float(rate[m].max()) if m.any() else 0.0)
    return ref, np.where(direction == "HtoD", ref["HtoD"], np.where(direction == "DtoH", ref["DtoH"],
                                                                      PINNED_FLOOR_GBPS))


def _calls(trace, c) -> tuple[np.ndarray, np.ndarray]:
    """Per copy: the start and end of the API call that launched it (by correlation id), -1 when none was traced."""
    call = issuing_calls(trace, "copies")
    if not len(call):
        none = np.full(table_len(c), -1, np.int64)
        return none, none
    api = trace.table("api_calls")
    i = np.maximum(call, 0)
    return (np.where(call >= 0, api["start_ns"][i], -1).astype(np.int64),
            np.where(call >= 0, api["end_ns"][i], -1).astype(np.int64))


def _enqueue_ns(ctx) -> float:
    """What a call that only enqueues costs in this profile: the median kernel launch call inside the measured
    requests (ex_fcopies_before: 8.4 us), else ENQUEUE_FALLBACK_NS."""
    api, rq = ctx.trace.table("api_calls"), ctx.requests
    if not len(rq.api_request):
        return ENQUEUE_FALLBACK_NS
    sel = launch_calls(ctx.trace) & (rq.api_request >= rq.warmup)
    if not sel.any():
        return ENQUEUE_FALLBACK_NS
    return float(np.median(api["end_ns"][sel] - api["start_ns"][sel]))


def _rates(trace, c):
    """Per copy: its direction ('HtoD' / 'DtoH' / ''), ns, bytes, large enough to measure a rate, GB/s."""
    direction = _direction(trace, c["kind"])
    dur = (c["end_ns"] - c["start_ns"]).astype(np.float64)
    nbytes = c["bytes"].astype(np.float64)
    big = (direction != "") & (nbytes >= MIN_MEASURE_BYTES) & (dur > 0)
    rate = np.where(dur > 0, nbytes / np.maximum(dur, 1), 0.0)          # bytes/ns == GB/s
    return direction, dur, nbytes, big, rate


def pinned_gbps(trace) -> tuple[float, str]:
    """One rate for pageable copies once pinned (`whatif --pinned`), by change()'s rule: the best reference rate of
    the two directions, at least the GPU's documented pinned link rate; and where it comes from, in words."""
    direction, _, _, big, rate = _rates(trace, trace.table("copies"))
    best = max(_reference_rates(direction, big, rate)[0].values())
    link = pinned_link_gbps(trace)
    if link and link >= best:
        return link, "the documented pinned host link rate of this GPU (model/device.py)"
    if best > PINNED_FLOOR_GBPS:
        return best, "the best host<->device copy rate of copies >= 1 MiB in this profile"
    return PINNED_FLOOR_GBPS, "pinned PCIe Gen3 x16 (no faster copy in this profile, GPU's link rate unknown)"


def _exposed(trace, c, dur, inreq):
    """Per copy: copy time during which the same device runs no kernel (the GPU waits on it)."""
    k = trace.table("kernels")
    exposed = np.zeros(len(dur))
    for dev in uniq(c["device"][inreq]):
        km = k["device"] == dev
        us, ue = union(k["start_ns"][km], k["end_ns"][km])
        cm = inreq & (c["device"] == dev)
        exposed[cm] = dur[cm] - covered(us, ue, c["start_ns"][cm], c["end_ns"][cm])
    return exposed


def _between_kernels(ctx, c, req, inreq):
    """Per copy: inside a measured request, between its first and last kernel (only those can overlap compute)."""
    rq, k = ctx.requests, ctx.trace.table("kernels")
    n = rq.count
    k_req = rq.gpu_request.get("kernels", np.full(table_len(k), -1))
    own = k_req >= 0
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(first, k_req[own], k["start_ns"][own])
    np.maximum.at(last, k_req[own], k["end_ns"][own])
    r = np.clip(req, 0, max(n - 1, 0))
    return inreq & (c["start_ns"] >= first[r]) & (c["end_ns"] <= last[r])


def measure(ctx) -> Measurement | None:
    trace, rq = ctx.trace, ctx.requests
    if "copies" in trace.absent and "kernels" in trace.absent:     # no CUDA activity traced (else: no copies made)
        return not_evaluated(ctx, CATEGORIES, no_data(trace, "copies", "CUDA memory copies"))
    if not trace.has("copies") or ctx.mean_latency_ns <= 0:
        return None
    c = trace.table("copies")
    req = rq.gpu_request.get("copies", np.zeros(0, np.int64))
    direction, dur, nbytes, big, rate = _rates(trace, c)
    host = direction != ""
    pageable = host & (_pageable(trace, c["src_kind"]) | _pageable(trace, c["dst_kind"]))
    ref, ref_rate = _reference_rates(direction, big, rate)
    link = pinned_link_gbps(trace)
    if link:   # a profile of only pageable copies never shows the pinned rate: the GPU's documented link rate
        ref_rate = np.where(pageable, np.maximum(ref_rate, link), ref_rate)
    inreq = host & (req >= rq.warmup)
    if not inreq.any():
        return None
    # 1) slow copies: time above what the reference rate needs (only for copies big enough to measure)
    ideal = np.where(big, nbytes / np.maximum(ref_rate, 1e-9), dur)
    slow_ns = np.where(big, np.clip(dur - ideal, 0, None), 0.0)
    # 2) copies the GPU waits on: copy time during which the same device runs no kernel
    exposed = _exposed(trace, c, dur, inreq)
    # after the rate fix, the exposed part shrinks in proportion; a side stream can hide it behind the request's
    # other kernels, at most as much compute as the request itself has. Only copies between the request's first
    # and last kernel can overlap its compute: its input upload before the first kernel and its result download
    # after the last are on its critical path (pipelining them raises throughput, not this request's latency)
    mid = _between_kernels(ctx, c, req, inreq)
    exposed_after = np.where(mid, exposed * np.where(dur > 0, np.minimum(ideal, dur) / np.maximum(dur, 1), 0), 0)
    per_req_exposed = np.bincount(req[inreq], weights=exposed_after[inreq], minlength=rq.count)
    hide = np.minimum(per_req_exposed, rq.table["compute_ns"].astype(np.float64))
    meas = np.arange(rq.count) >= rq.warmup
    overlap_ns = float(hide[meas].mean()) if meas.any() else 0.0
    slow_mean = per_request_mean(slow_ns, np.where(inreq, req, -1), ctx)
    # 3) a pageable copy's call goes on after its copy ends: the CPU finishing the staged copy (out of the driver's
    # bounce buffer, page faults of fresh host memory); a pinned copy has no such step. Under MIN_MEASURE_BYTES the
    # call's end after the copy is the thread's wake-up, not staging
    call_start, call_end = _calls(trace, c)
    tail = np.where(inreq & pageable & big, np.clip(call_end - c["end_ns"], 0, None), 0).astype(np.float64)
    staged_tail = per_request_mean(tail, np.where(inreq, req, -1), ctx)
    # 4) a small pageable upload (no rate to measure) costs its call: the driver copies the bytes into its bounce
    # buffer on the CPU before the DMA, so the call takes far longer than an enqueue (ex_fcopies_before: 48 copies
    # of 32-512 KB per request, 35 us per call against a 6 us copy); pinned, the call only enqueues
    call_ns = np.where(call_start >= 0, call_end - call_start, 0).astype(np.float64)
    # (uploads only: a small read-back's call mostly waits for the GPU work before it, cuda_sync's or the final wait)
    small = inreq & pageable & ~big & (call_ns > 0) & (direction == "HtoD")
    staged_small = per_request_mean(np.where(small, np.clip(call_ns - _enqueue_ns(ctx), 0, None), 0.0),
                                    np.where(inreq, req, -1), ctx) if small.any() else 0.0
    # 5) the framework's sync after each pageable upload (host_waits COPY_WAIT) goes with it
    sc = host_waits(ctx)
    waits = select(sc, sc["kind"] == COPY_WAIT)
    avoid = ~waits["last"]
    n_meas = max(len(ctx.measured), 1)
    upload_wait = float(((waits["blocked_ns"] + waits["refill_ns"]) * avoid).sum()) / n_meas
    impact = slow_mean + overlap_ns + staged_tail + staged_small + upload_wait
    if 100.0 * impact / ctx.mean_latency_ns < MIN_SHARE_PCT:
        return None
    return Measurement(impact_ns=impact, slow_ns=slow_mean, overlap_ns=overlap_ns, direction=direction,
                       pageable=pageable, inreq=inreq, big=big, rate=rate, ref=ref, ref_rate=ref_rate,
                       exposed=exposed, cost=slow_ns + exposed_after + tail, link_gbps=link,
                       staged_tail_ns=staged_tail, staged_small_ns=staged_small, upload_waits=waits,
                       upload_wait_ns=upload_wait)


def change(m: Measurement) -> list:
    """The host copies inside requests move at the reference (pinned) rate of their direction (pageable ones at least
    at the GPU's documented pinned link rate), on a side stream; their calls only enqueue, and a read-back is waited
    for once (model/replay.py)."""
    rows = np.flatnonzero(m.inreq)
    out = [CopiesAtRate(rows=rows, gbps=m.ref_rate[rows], overlap=True)]
    if m.upload_waits is not None and len(m.upload_waits["row"]):     # the framework's syncs after the uploads
        out.append(RemoveHostWaits(api_rows=m.upload_waits["row"]))
    return out


def _numbers(ctx, m: Measurement, c) -> dict:
    req = ctx.requests.gpu_request.get("copies", np.zeros(0, np.int64))
    dur = (c["end_ns"] - c["start_ns"]).astype(np.float64)
    nbytes = c["bytes"].astype(np.float64)
    inreq, rq_of = m.inreq, np.where(m.inreq, req, -1)
    copy_ms = per_request_mean(dur, rq_of, ctx) / 1e6
    pag_ms = per_request_mean(np.where(m.pageable, dur, 0), rq_of, ctx) / 1e6
    numbers = {
        "copies_per_request": round(per_request_mean(np.ones(len(dur)), rq_of, ctx), 2),
        "copy_ms_per_request": round(copy_ms, 3),
        "bytes_per_request_MiB": round(per_request_mean(nbytes, rq_of, ctx) / 2**20, 2),
        "pageable_copy_ms_per_request": round(pag_ms, 3),
        "slow_excess_ms_per_request": round(m.slow_ns / 1e6, 3),
        "gpu_waits_on_copy_ms_per_request": round(per_request_mean(m.exposed, rq_of, ctx) / 1e6, 3),
        "hideable_by_overlap_ms_per_request": round(m.overlap_ns / 1e6, 3),
        "staged_copy_cpu_after_copy_ms_per_request": round(m.staged_tail_ns / 1e6, 3),
        # small pageable copies: their calls' time beyond what an enqueue costs (the driver's staging on the CPU)
        "small_pageable_call_ms_per_request": round(m.staged_small_ns / 1e6, 3),
        # the framework's syncs right after pageable uploads (host_waits COPY_WAIT) and what they cost
        "upload_syncs_per_request": round(len((m.upload_waits or {}).get("row", [])) / max(len(ctx.measured), 1), 2),
        "upload_sync_ms_per_request": round(m.upload_wait_ns / 1e6, 3),
    }
    for d in ("HtoD", "DtoH"):
        dm = inreq & (m.direction == d) & m.big
        if dm.any():
            numbers[f"{d}_GBps_in_requests"] = round(float(nbytes[dm].sum() / dur[dm].sum()), 2)
            numbers[f"{d}_reference_GBps"] = round(float(m.ref_rate[dm].max()), 2)
    blocked, n_sync = _host_blocking(ctx)
    numbers["memcpy_api_blocked_ms_per_request"] = round(blocked / 1e6, 3)
    numbers["synchronous_memcpy_calls_per_request"] = round(n_sync, 2)
    return numbers, copy_ms, pag_ms


def finding(ctx, m: Measurement) -> list:
    trace, rq = ctx.trace, ctx.requests
    c = trace.table("copies")
    req = rq.gpu_request.get("copies", np.zeros(0, np.int64))
    dur = (c["end_ns"] - c["start_ns"]).astype(np.float64)
    nbytes = c["bytes"].astype(np.float64)
    numbers, copy_ms, pag_ms = _numbers(ctx, m, c)
    direction, pageable = m.direction, m.pageable
    idx = np.flatnonzero(m.inreq)
    idx = idx[np.argsort(-m.cost[idx], kind="stable")][:WORST]
    worst = []
    for i in idx:
        what = (f"{direction[i]} {'pageable' if pageable[i] else 'pinned/device'} {nbytes[i] / 2**20:.1f} MiB "
                f"in {dur[i] / 1e6:.2f} ms ({m.rate[i]:.1f} GB/s; reference {m.ref_rate[i]:.1f} GB/s)")
        worst.append(instance(ctx, int(req[i]), int(c["start_ns"][i]), int(c["end_ns"][i]), what,
                              tid=int(rq.table["tid"][req[i]]), name=f"memcpy {direction[i]}"))
    notes = [f"reference rate: the best host<->device rate of copies >= 1 MiB in this profile per direction, at least "
             f"{PINNED_FLOOR_GBPS:g} GB/s (pinned PCIe Gen3 x16); pinned PCIe Gen4/Gen5 reach ~25/~50 GB/s"
             + (f"; pageable copies at least this GPU's documented pinned link rate, {m.link_gbps:g} GB/s "
                "(model/device.py)" if m.link_gbps else "")]
    pag_share = pag_ms / copy_ms if copy_ms > 0 else 0.0
    if pag_share >= PAGEABLE_TITLE_SHARE:
        title = f"Pageable host copies take {copy_ms:.1f} ms per request"
        if m.staged_small_ns + m.upload_wait_ns > 0.1 * m.impact_ns:     # the calls, not the copies, are the cost
            parts = ([f"their calls take {m.staged_small_ns / 1e6:.2f} ms beyond an enqueue"]
                     if m.staged_small_ns >= 10_000 else []) + \
                ([f"{numbers['upload_syncs_per_request']:g} syncs after them"] if m.upload_wait_ns else [])
            title = (f"{numbers['copies_per_request']:g} pageable host copies per request"
                     + (f" ({', '.join(parts)})" if parts else "")
                     + f"; the copies themselves take {copy_ms:.2f} ms")
        fix = ("Copy from/to pinned (page-locked) host buffers allocated once: torch `tensor.pin_memory()` / "
               "`torch.empty(..., pin_memory=True)` reused across requests, `cudaHostAlloc`/`cudaHostRegister`, then "
               "`.to(device, non_blocking=True)` / cudaMemcpyAsync on a side stream so the next request's input "
               "moves while this one computes. Send fewer bytes if you can (fp16/uint8 inputs, crop before copying).")
        why = ("The driver cannot DMA from pageable memory: it copies through a small pinned staging buffer in "
               "chunks, at a fraction of the link's speed, and the calling thread is blocked for the whole copy "
               "(even cudaMemcpyAsync), so neither the CPU nor the GPU can do anything else meanwhile.")
    else:
        title = f"Host<->device copies stall the GPU for {numbers['gpu_waits_on_copy_ms_per_request']:.1f} ms " \
                f"per request"
        fix = ("Issue copies with cudaMemcpyAsync / `non_blocking=True` on a separate stream from pinned buffers, and "
               "double-buffer inputs so request N+1's upload overlaps request N's compute; copy fewer bytes.")
        why = ("A copy on the compute stream serialises with the kernels: the SMs sit idle while bytes cross PCIe. "
               "Copy engines run independently of the SMs, so on another stream the same copy costs nothing.")
    estimate = (f"per request: copy time above bytes / reference rate ({m.slow_ns / 1e6:.2f} ms; what pinned buffers "
                f"would save) + copy time with no kernel running between the request's first and last kernel, which a side stream "
                f"could overlap with its compute, at most the request's compute time ({m.overlap_ns / 1e6:.2f} ms) "
                f"+ CPU time in pageable copy calls after their copy ended, the staging a pinned copy does not do "
                f"({m.staged_tail_ns / 1e6:.2f} ms) + the calls of pageable uploads under 1 MiB beyond an enqueue "
                f"({m.staged_small_ns / 1e6:.2f} ms) + the syncs a framework makes after each pageable upload, "
                f"blocked and the GPU's refill after them ({m.upload_wait_ns / 1e6:.2f} ms)")
    return [make_finding(ctx, "memory_transfer", title, m.impact_ns, estimate,
                         Evidence(numbers=numbers, worst=worst, notes=notes), fix, why)]


def diagnose(ctx) -> list:
    m = measure(ctx)
    return [] if m is None else finding(ctx, m)


def _host_blocking(ctx) -> tuple[float, float]:
    """CPU time per measured request spent inside memcpy API calls, and synchronous (non-Async) memcpy calls."""
    api = ctx.trace.table("api_calls")
    r = ctx.requests.api_request
    if len(r) == 0 or len(r) != len(api["start_ns"]):
        return 0.0, 0.0
    ids = distinct_ids(api["name_id"][r >= ctx.requests.warmup])
    names = {int(i): ctx.trace.name(i) for i in ids}
    mem = [i for i, s in names.items() if s.startswith(("cudaMemcpy", "cuMemcpy"))]
    sync = [i for i in mem if "Async" not in names[i] and "Peer" not in names[i]]
    is_mem = id_mask(api["name_id"], mem)
    dur = (api["end_ns"] - api["start_ns"]).astype(np.float64)
    blocked = per_request_mean(np.where(is_mem, dur, 0.0), r, ctx)
    n_sync = per_request_mean(id_mask(api["name_id"], sync).astype(np.float64), r, ctx)
    return blocked, n_sync
