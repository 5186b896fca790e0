"""Model loading: requests wait while the server reads model weights from disk and uploads them to the GPU.

A weight load is a large host-to-device upload (hundreds of MB, once per model) preceded by file reads on the thread
that issues it. Before the first request it is the cold start: set-up, reported low with no per-request impact. A
load inside a request (a model swap: the request needs a model that is not resident) or between requests (the next
request queues behind it) adds its whole duration to that request's latency; the impact is that extra latency,
spread over all measured requests. Uploads in most requests are per-request input traffic, memory_transfer's.
"""
from __future__ import annotations

import numpy as np

from ..model.projection import api_corr_key, corr_key
from ..model.trace import table_len
from ..report import Evidence
from .common import WORST, instance, make_finding
from ..model.arrays import median

LOAD_MIN_BYTES = 64 << 20       # weights: one upload of 64 MiB or more (model_server: 384 MiB fp16 blobs; a request's
                                # own inputs in the zoo are < 64 MiB except memcpy_pageable, ruled out by the share)
MAX_LOADING_SHARE = 0.25        # loads in more than a quarter of the requests are per-request input, not model loads
COLD_MIN_BYTES = 256 << 20      # a cold start worth a line: 256 MiB of weights uploaded before the first request
FILE_READS = ("read", "pread", "pread64", "readv", "preadv", "preadv2", "fread", "fread_unlocked", "__read_chk",
              "__fread_chk", "__pread_chk", "__pread64_chk")   # OS runtime calls that read a file (or a socket)
HTOD = 1                        # ENUM_CUDA_MEMCPY_OPER host-to-device when the profile has no enum table

NEEDS = ("copies", "api_calls", "os_calls")


def _uploads(trace):
    """Large HtoD copies, by GPU start: (copy rows, start_ns, end_ns, bytes, issuing thread, CPU start of the call)."""
    c, api = trace.table("copies"), trace.table("api_calls")
    vals = [v for v, lab in trace.enums.get("CUDA_MEMCPY_OPER", {}).items() if lab.lower() == "host-to-device"]
    big = np.flatnonzero(np.isin(c["kind"], vals or [HTOD]) & (c["bytes"] >= LOAD_MIN_BYTES))
    tid = np.full(len(big), -1, np.int64)
    cpu = c["start_ns"][big].astype(np.int64)
    if len(big) and table_len(api):
        key = api_corr_key(trace)
        o = np.argsort(key, kind="stable")
        ck = corr_key(c["pid"][big], c["correlation"][big])
        pos = np.clip(np.searchsorted(key[o], ck), 0, len(o) - 1)
        hit = key[o][pos] == ck
        tid = np.where(hit, api["tid"][o[pos]], -1)
        cpu = np.where(hit, api["start_ns"][o[pos]], cpu)
    order = np.argsort(c["start_ns"][big], kind="stable")
    big = big[order]
    return (big, c["start_ns"][big].astype(np.int64), c["end_ns"][big].astype(np.int64), c["bytes"][big].astype(np.int64),
            tid[order], cpu[order])


def _read_time(trace, tid: int, lo: int, hi: int) -> tuple[float, int]:
    """Time (ns) and count of file-read calls on thread `tid` inside [lo, hi)."""
    o = trace.table("os_calls")
    if table_len(o) == 0:
        return 0.0, 0
    ids = trace._cache.get("_file_read_ids")
    if ids is None:
        names = np.unique(o["name_id"])
        ids = np.array([i for i in names if trace.name(i) in FILE_READS], np.int64)
        trace._cache["_file_read_ids"] = ids
    m = np.isin(o["name_id"], ids) & (o["tid"] == tid) & (o["start_ns"] >= lo) & (o["end_ns"] <= hi)
    return float((o["end_ns"][m] - o["start_ns"][m]).sum()), int(m.sum())


def diagnose(ctx):
    trace, rq = ctx.trace, ctx.requests
    if "copies" in trace.absent or ctx.mean_latency_ns <= 0 or len(ctx.measured) == 0:
        return []
    rows, gs, ge, nbytes, tid, cpu = _uploads(trace)
    if len(gs) == 0:
        return []
    t = rq.table
    n, w = rq.count, rq.warmup
    first = int(t["start_ns"].min())
    # the request each upload belongs to: launched inside it (projection), else the next request on its thread
    proj = rq.gpu_request.get("copies", np.zeros(0, np.int64))
    own = proj[rows] if len(proj) else np.full(len(rows), -1, np.int64)
    cold = cpu < first
    nxt = np.full(len(gs), -1, np.int64)
    for i in np.flatnonzero((own < 0) & ~cold):
        later = np.flatnonzero((t["tid"] == tid[i]) & (t["start_ns"] >= ge[i]))
        if len(later):
            nxt[i] = later[np.argmin(t["start_ns"][later])]
    req = np.where(own >= 0, own, nxt)
    inside = own >= 0

    numbers, notes, worst = {}, [], []
    cold_read, _ = (_read_time(trace, int(tid[cold][0]), 0, int(ge[cold].max())) if cold.any() else (0.0, 0))
    if cold.any():
        numbers.update(cold_start_uploads=int(cold.sum()), cold_start_mib=round(float(nbytes[cold].sum()) / 2**20, 1),
                       cold_start_upload_ms=round(float((ge - gs)[cold].sum()) / 1e6, 1),
                       cold_start_file_read_ms=round(cold_read / 1e6, 1),
                       cold_start_before_first_request_ms=round((first - int(cpu[cold].min())) / 1e6, 1))

    loading = np.unique(req[(req >= w)])
    share = len(loading) / max(len(ctx.measured), 1)
    if len(loading) == 0 or share > MAX_LOADING_SHARE:
        if not cold.any() or nbytes[cold].sum() < COLD_MIN_BYTES:
            return []
        title = (f"Cold start: {numbers['cold_start_mib']:g} MiB of weights read and uploaded before the first request "
                 f"({numbers['cold_start_file_read_ms']:g} ms in file reads, {numbers['cold_start_upload_ms']:g} ms "
                 "uploading); set-up, not a request problem")
        if share > MAX_LOADING_SHARE:
            notes.append(f"large uploads in {share:.0%} of requests: per-request inputs (see memory_transfer)")
        return [make_finding(ctx, "model_loading", title, 0.0, "cold start happens once, before any request: no "
                             "per-request impact", Evidence(numbers=numbers, notes=notes),
                             "Load and upload the weights before the server takes traffic (readiness probe after "
                             "the load), from pinned memory or a safetensors mmap to shorten it.",
                             "A first request that arrives during the cold start waits for all of it; later ones "
                             "do not.")]

    # extra latency of the requests that waited on a load, against the typical request without one
    lat = t["latency_ns"]
    meas = np.arange(w, n)
    normal = np.setdiff1d(meas, loading)
    typical = float(median(lat[normal])) if len(normal) else 0.0
    extra = np.zeros(n)
    extra[loading] = np.maximum(lat[loading] - typical, 0.0)
    # a load between requests delays the next one by its own duration (the request queues; its range starts later)
    between = (~inside) & (req >= w)
    for i in np.flatnonzero(between):
        extra[req[i]] += float(ge[i] - cpu[i])
    impact_ns = float(extra[w:].sum()) / len(meas)

    read_ns, reads = 0.0, 0
    for r in loading:
        ups = np.flatnonzero(req == r)
        lo = int(t["start_ns"][r]) if inside[ups].all() else int(t["end_ns"][max(r - 1, 0)])
        rt, rc = _read_time(trace, int(tid[ups[0]]), lo, int(ge[ups].max()))
        read_ns += rt
        reads += rc
    m = (req >= w)
    numbers.update(loading_requests=int(len(loading)), loading_request_share_pct=round(100 * share, 1),
                   loads_inside_requests=int((inside & m).sum()), loads_between_requests=int(between.sum()),
                   upload_mib_per_load=round(float(nbytes[m].sum()) / 2**20 / max(len(loading), 1), 1),
                   upload_ms_per_load=round(float((ge - gs)[m].sum()) / 1e6 / len(loading), 1),
                   file_read_ms_per_load=round(read_ns / 1e6 / len(loading), 1), file_reads=reads,
                   loading_request_latency_ms=round(float(lat[loading].mean()) / 1e6, 1),
                   typical_latency_ms=round(typical / 1e6, 3),
                   extra_latency_ms_per_loading_request=round(float(extra[loading].mean()) / 1e6, 1))
    for r in loading[np.argsort(-extra[loading])][:WORST]:
        worst.append(instance(ctx, int(r), t["start_ns"][r], t["start_ns"][r] + lat[r],
                              f"request waited on a model load: {lat[r] / 1e6:.1f} ms against "
                              f"{typical / 1e6:.2f} ms typical", tid=int(t["tid"][r])))
    if "os_calls" in trace.absent:
        notes.append(f"file reads not measured: {trace.absent['os_calls']}")
    title = (f"{len(loading)} requests waited on a model load (file read {numbers['file_read_ms_per_load']:g} ms + "
             f"upload {numbers['upload_ms_per_load']:g} ms of {numbers['upload_mib_per_load']:g} MiB each): "
             f"{numbers['extra_latency_ms_per_loading_request']:g} ms extra latency each")
    estimate = ("per loading request: its latency minus the median latency of the measured requests without a load "
                "(plus the load's duration when it ran between requests), summed and spread over all measured "
                "requests")
    fix = ("Keep the served models resident on the GPU, or load the next model in the background (a loader thread "
           "reading into pinned memory and uploading on a side stream) and switch when it is ready; never load "
           "inside a request.")
    why = ("Reading hundreds of MB from disk and copying them to the GPU takes hundreds of milliseconds, and the "
           "request that triggers the swap (and every request queued behind it) waits for all of it before its own "
           "few milliseconds of GPU work can start.")
    return [make_finding(ctx, "model_loading", title, impact_ns, estimate,
                         Evidence(numbers=numbers, worst=worst, notes=notes), fix, why)]
