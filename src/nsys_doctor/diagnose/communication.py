"""Communication: requests wait in collectives (NCCL all-reduce, all-gather, ...) between GPUs.

Two different problems look alike on one GPU: a collective that waits for a slower rank (load imbalance: the fast
rank's kernel starts early and spins until the slowest arrives, and all end together), and a collective that moves
its data while nothing else runs (exposed communication that overlap with compute could hide). With every rank in
one report the i-th collective of each rank (ranks are (process, device) pairs, collectives in launch order) is the
same collective, and the spread of their start times is the time each rank waited for the slowest. With one rank
only, the waits of peers are not visible: a collective much slower than the fastest instance of the same kernel is
reported as a likely wait, and profiling all ranks is suggested.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.arrays import median, uniq
from ..model.changes import ShortenGpuWork
from ..model.intervals import covered, union
from ..model.trace import table_len
from ..report import Evidence
from .common import WORST, instance, make_finding
from .common import no_data, not_evaluated

# Collective kernels, by name: NCCL's own (ncclDevKernel_AllReduce_..., ncclKernel_...) and custom all-reduce kernels
# (vLLM's cross_device_reduce_*, TensorRT-LLM's *allreduce*). Lower-case substrings.
COLLECTIVE_WORDS = ("nccl", "allreduce", "all_reduce", "allgather", "all_gather", "reducescatter", "reduce_scatter",
                    "sendrecv", "cross_device_reduce", "alltoall", "all_to_all")
MIN_REPORT_PCT = 1.0        # under 1% of request latency communication is not worth a line
EXPOSED_HIDEABLE_SHARE = 0.25  # of exposed transfer time that overlap (async collectives, chunked/fused overlap
                               # schemes) recovers in practice; conservative: tp_balanced's all-reduces feed the next
                               # layer, so most of their 0.6 ms per request cannot overlap that request's compute
IMBALANCE_TITLE_SHARE = 0.5 # the title names imbalance when waiting for the slowest rank is half the exposed time or more
SLOW_FACTOR = 2.0           # one rank only: an instance over 2x the fastest instance of the same kernel is likely
                            # waiting for a peer (tp_balanced_rank0: p90/min 1.5 of all-reduce durations)
MAX_DEVICES = 1024          # a rank is (process, device): devices per process below this (CUDA numbers them 0..N-1)
PTOP = 10                   # ENUM_CUDA_MEMCPY_OPER peer-to-peer when the profile has no enum table

CATEGORIES = ("communication",)
NEEDS = ("kernels", "copies")


def _collective_ids(trace, name_ids: np.ndarray) -> np.ndarray:
    ids = uniq(name_ids)
    return np.array([i for i in ids if any(w in trace.name(i).lower() for w in COLLECTIVE_WORDS)], np.int64)


def _rank_waits(k, coll: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, dict]:
    """Per collective kernel row: time it waited for the slowest rank (start spread of the matched instances)."""
    wait = np.zeros(len(coll), np.int64)
    ranks = uniq(rank)
    info = {"ranks": int(len(ranks))}
    if len(ranks) < 2:
        return wait, info
    per = [coll[rank == r][np.argsort(k["start_ns"][coll[rank == r]], kind="stable")] for r in ranks]
    counts = [len(p) for p in per]
    n = min(counts)
    if len(set(counts)) > 1:
        info["unmatched_collectives"] = int(sum(counts) - n * len(ranks))
    rows = np.stack([p[:n] for p in per])                       # ranks x instances, kernel rows
    starts, ends = k["start_ns"][rows], k["end_ns"][rows]
    last = starts.max(axis=0)
    w = np.minimum(last[None, :] - starts, ends - starts)
    pos = {int(r): j for j, r in enumerate(coll)}
    flat = np.array([pos[int(r)] for r in rows.ravel()], np.int64)
    wait[flat] = w.ravel()
    info["end_spread_ms_median"] = round(float(median(ends.max(axis=0) - ends.min(axis=0))) / 1e6, 3) if n else 0
    info["start_spread_ms_median"] = round(float(median(last - starts.min(axis=0))) / 1e6, 3) if n else 0
    return wait, info


@dataclass
class Measurement:
    impact_ns: float          # mean per measured request: peer waits + the hideable share of exposed transfer
    coll: np.ndarray          # kernel rows of the collectives
    req: np.ndarray           # per collective: its request (-1 none)
    in_measured: np.ndarray   # per collective: inside a measured request
    dur: np.ndarray           # per collective: ns
    exposed: np.ndarray       # per collective: ns with no compute kernel on its device
    wait: np.ndarray          # per collective: ns waiting for the slowest rank (0 with one rank)
    likely: np.ndarray        # one rank only: ns over the fastest instance of the same kernel
    rank: np.ndarray          # per collective: its rank ((process, device) as one number)
    info: dict                # ranks, start/end spreads, unmatched collectives
    exp_r: np.ndarray         # per measured request: exposed ns
    wait_r: np.ndarray        # per measured request: waiting ns

    @property
    def single(self) -> bool:
        return self.info["ranks"] < 2


def _exposed(k, coll, is_coll, dur):
    """Per collective: its time with no compute kernel running on the same device (any process)."""
    exposed = np.zeros(len(coll), np.int64)
    for d in uniq(k["device"][coll]):
        comp = (~is_coll) & (k["device"] == d)
        us, ue = union(k["start_ns"][comp], k["end_ns"][comp])
        sel = k["device"][coll] == d
        exposed[sel] = dur[sel] - covered(us, ue, k["start_ns"][coll][sel], k["end_ns"][coll][sel])
    return exposed


def _likely_waits(k, coll, m, dur):
    """No peers in the report: per collective its excess over the fastest instance of the same kernel, when it is
    over SLOW_FACTOR x that."""
    likely = np.zeros(len(coll), np.int64)
    for nm in uniq(k["name_id"][coll][m]):
        sel = m & (k["name_id"][coll] == nm)
        fastest = dur[sel].min()
        likely[sel] = np.where(dur[sel] > SLOW_FACTOR * fastest, dur[sel] - fastest, 0)
    return likely


def measure(ctx) -> Measurement | None:
    trace, rq = ctx.trace, ctx.requests
    k = trace.table("kernels")
    if table_len(k) == 0:
        return not_evaluated(ctx, CATEGORIES, no_data(trace, "kernels", "CUDA kernels"))
    if ctx.mean_latency_ns <= 0 or len(ctx.measured) == 0:
        return None
    ids = _collective_ids(trace, k["name_id"])
    if len(ids) == 0:
        return None
    is_coll = np.isin(k["name_id"], ids)
    coll = np.flatnonzero(is_coll)
    req_k = rq.gpu_request.get("kernels", np.full(table_len(k), -1))
    n, w = rq.count, rq.warmup
    req = req_k[coll]
    m = req >= w
    dur = (k["end_ns"] - k["start_ns"])[coll]
    exposed = _exposed(k, coll, is_coll, dur)
    rank = trace.ids.process_key(k["pid"][coll]) * MAX_DEVICES + k["device"][coll].astype(np.int64)
    wait, info = _rank_waits(k, coll, rank)
    single = info["ranks"] < 2
    likely = _likely_waits(k, coll, m, dur) if single else np.zeros(len(coll), np.int64)

    per = lambda v: np.bincount(req[m], weights=v[m].astype(np.float64), minlength=n)[w:]  # noqa: E731
    exp_r, wait_r = per(exposed), per(wait)
    lat = rq.table["latency_ns"][w:].astype(np.float64)
    # balancing saves the wait; overlap can hide only part of the rest: in tensor parallelism the next layer needs
    # the reduced result, so a collective on the critical path stays there unless the model is restructured
    peer_r = wait_r if not single else per(likely)
    saved = np.minimum(peer_r + EXPOSED_HIDEABLE_SHARE * np.maximum(exp_r - peer_r, 0), lat)
    impact_ns = float(saved.mean())
    if 100.0 * impact_ns / ctx.mean_latency_ns < MIN_REPORT_PCT:
        return None
    return Measurement(impact_ns=impact_ns, coll=coll, req=req, in_measured=m, dur=dur, exposed=exposed, wait=wait,
                       likely=likely, rank=rank, info=info, exp_r=exp_r, wait_r=wait_r)


def change(m: Measurement) -> list:
    """Balanced ranks: each collective's wait for the slowest rank removed (with one rank, its excess over the
    fastest instance); overlap hides EXPOSED_HIDEABLE_SHARE of the exposed rest, said as that much shorter."""
    peer = m.likely if m.single else m.wait
    rows = m.coll[m.in_measured]
    rest = np.maximum(m.exposed - peer, 0)[m.in_measured]
    return [ShortenGpuWork("kernels", rows, peer[m.in_measured].astype(np.int64)),
            ShortenGpuWork("kernels", rows, (EXPOSED_HIDEABLE_SHARE * rest).astype(np.int64))]


def _numbers(ctx, m: Measurement) -> dict:
    trace, rq = ctx.trace, ctx.requests
    k = trace.table("kernels")
    n, w, n_req = rq.count, rq.warmup, len(ctx.measured)
    req, mm, coll, info = m.req, m.in_measured, m.coll, m.info
    per = lambda v: np.bincount(req[mm], weights=v[mm].astype(np.float64), minlength=n)[w:]  # noqa: E731
    numbers = {
        "collectives_per_request": round(float(mm.sum()) / n_req, 2),
        "collective_ms_per_request": round(float(per(m.dur).mean()) / 1e6, 3),
        "exposed_ms_per_request": round(float(m.exp_r.mean()) / 1e6, 3),
        "wait_for_slowest_rank_ms_per_request": round(float(m.wait_r.mean()) / 1e6, 3),
        "exposed_transfer_ms_per_request": round(float(np.maximum(m.exp_r - m.wait_r, 0).mean()) / 1e6, 3),
        "ranks_in_report": info["ranks"],
        "mean_latency_ms": round(ctx.mean_latency_ns / 1e6, 3),
    }
    for key in ("end_spread_ms_median", "start_spread_ms_median", "unmatched_collectives"):
        if key in info:
            numbers[key] = info[key]
    if not m.single:   # which rank waits: per rank, wait per request of that rank
        rows_rank = m.rank[mm]
        pids = k["pid"][coll][mm]
        waits = {}
        for r in uniq(rows_rank):
            mine = rows_rank == r
            reqs = len(uniq(req[mm][mine]))
            pid = trace.ids.os_pid(int(pids[np.argmax(mine)]))
            waits[f"pid {pid} GPU {int(r) % MAX_DEVICES}"] = round(
                float(m.wait[mm][mine].sum()) / max(reqs, 1) / 1e6, 3)
        numbers["wait_ms_per_request_by_rank"] = waits
    else:
        numbers["likely_peer_wait_ms_per_request"] = round(float(per(m.likely).mean()) / 1e6, 3)
    numbers.update(_copies(ctx))
    names = {}
    for nm in uniq(k["name_id"][coll][mm]):
        names[trace.name(nm).split("(")[0]] = round(float((k["name_id"][coll][mm] == nm).sum()) / n_req, 2)
    numbers["collective_kernels_per_request"] = names
    return numbers


def finding(ctx, m: Measurement) -> list:
    trace = ctx.trace
    k = trace.table("kernels")
    numbers = _numbers(ctx, m)
    single, coll, dur, exposed, wait = m.single, m.coll, m.dur, m.exposed, m.wait
    notes, worst = [], []
    cost = np.where(m.in_measured, np.maximum(wait, exposed), 0)
    for i in np.argsort(-cost)[:WORST]:
        if cost[i] <= 0:
            break
        row = coll[i]
        worst.append(instance(ctx, int(m.req[i]), k["start_ns"][row], k["end_ns"][row],
                              f"{trace.name(k['name_id'][row]).split('(')[0]} on GPU {int(k['device'][row])}: "
                              f"{dur[i] / 1e6:.3f} ms, {exposed[i] / 1e6:.3f} ms exposed, waited "
                              f"{wait[i] / 1e6:.3f} ms for the slowest rank", name=trace.name(k["name_id"][row])))
    imbalance = m.wait_r.mean() >= IMBALANCE_TITLE_SHARE * max(m.exp_r.mean(), 1.0)
    if single:
        notes.append("one rank in this report: time spent waiting for slower ranks cannot be told from transfer time; "
                     "profile every rank in one report (nsys profile torchrun ...) to measure imbalance")
        if numbers["likely_peer_wait_ms_per_request"] >= IMBALANCE_TITLE_SHARE * numbers["exposed_ms_per_request"]:
            imbalance = True
    if imbalance:
        by = numbers.get("wait_ms_per_request_by_rank", {"this rank": numbers.get("likely_peer_wait_ms_per_request", 0)})
        slow = max(by, key=by.get)
        title = (f"Ranks wait for each other in collectives: {slow} waits {by[slow]:.2f} ms per request for the "
                 f"slowest rank ({numbers['collectives_per_request']:g} collectives per request, "
                 f"{numbers['exposed_ms_per_request']:.2f} ms exposed)")
        fix = ("Balance the work between ranks: equal shards (split layers, heads or the feed-forward width evenly), "
               "the same batch per rank, and nothing else running on one GPU; then overlap what remains of the "
               "transfer with compute.")
    else:
        title = (f"{numbers['collectives_per_request']:g} collectives per request take "
                 f"{numbers['collective_ms_per_request']:.2f} ms, {numbers['exposed_ms_per_request']:.2f} ms of it "
                 "with no compute running (exposed communication)"
                 + ("; one rank profiled: waiting for a slower rank looks the same" if single else ""))
        fix = ("Overlap communication with compute: issue collectives asynchronously (async_op=True, a side stream) "
               "and compute the next independent part meanwhile, or fuse small collectives into fewer large ones.")
    estimate = ("per request: (a) the time its collectives waited for the slowest rank (start spread of the same "
                "collective across ranks; with one rank in the report, the excess over the fastest instance of the "
                f"same collective): what balancing would save, plus (b) {EXPOSED_HIDEABLE_SHARE:.0%} of the rest of "
                "its collective time with no compute kernel on the same GPU (what overlap typically hides), bounded "
                "by latency; mean over measured requests of every rank")
    why = ("A collective finishes only when every rank has joined it and its data has crossed the link; meanwhile the "
           "GPU runs nothing else of the request. A rank with more work makes every other rank wait inside each "
           "collective, and a transfer with no independent compute beside it adds its full time to the latency.")
    return [make_finding(ctx, "communication", title, m.impact_ns, estimate,
                         Evidence(numbers=numbers, worst=worst, notes=notes), fix, why)]


def diagnose(ctx) -> list:
    m = measure(ctx)
    return [] if m is None else finding(ctx, m)


def _copies(ctx) -> dict:
    """Copies between GPUs (peer-to-peer) and with the host inside measured requests, per request."""
    trace, rq = ctx.trace, ctx.requests
    c = trace.table("copies")
    r = rq.gpu_request.get("copies", np.zeros(0, np.int64))
    if table_len(c) == 0 or len(r) != table_len(c):
        return {}
    m = r >= rq.warmup
    n = max(len(ctx.measured), 1)
    ptop = [v for v, lab in trace.enums.get("CUDA_MEMCPY_OPER", {}).items() if lab.lower() == "peer-to-peer"]
    p = m & np.isin(c["kind"], ptop or [PTOP])
    host = m & np.isin(c["kind"], [v for v, lab in trace.enums.get("CUDA_MEMCPY_OPER", {}).items()
                                   if "host" in lab.lower()] or [1, 2])
    return {"peer_copies_per_request": round(float(p.sum()) / n, 2),
            "peer_copy_ms_per_request": round(float((c["end_ns"] - c["start_ns"])[p].sum()) / n / 1e6, 3),
            "host_copies_per_request": round(float(host.sum()) / n, 2)}
