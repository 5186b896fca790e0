"""Model loading: requests wait while the server reads model weights from disk and uploads them to the GPU.

A weight load is a large host-to-device upload (hundreds of MB, once per model) preceded by file reads on the thread
that issues it. Before the first request it is the cold start: set-up, reported low with no per-request impact. A
load inside a request (a model swap: the request needs a model that is not resident) or between requests (the next
request queues behind it) adds its whole duration to that request's latency; the impact is that extra latency,
spread over all measured requests. Uploads in most requests are per-request input traffic, memory_transfer's,
unless the uploading thread read files first for at least half as long as the uploads took (nsys records no byte
counts for reads: OSRT_API.returnValue is 0 for every read in tests/data): then it is a weight load however many
requests do it (a stateless handler reloading its checkpoint per request), and the impact is each load's window, from
its first file read to the end of its last upload.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model.arrays import median
from ..model.changes import MoveOutOfRequests
from ..model.projection import issuing_calls
from ..model.trace import table_len
from ..report import Evidence
from .common import WORST, instance, make_finding
from .common import no_data, not_evaluated

LOAD_MIN_BYTES = 64 << 20       # weights: one upload of 64 MiB or more (model_server: 384 MiB fp16 blobs; a request's
                                # own inputs in the zoo are < 64 MiB except memcpy_pageable, ruled out by the share)
MAX_LOADING_SHARE = 0.25        # loads in more than a quarter of the requests are per-request input, not model loads,
                                # unless file reads brought the bytes in (READ_MATCH)
READ_MATCH = 0.5                # file reads before the uploads on their thread, taking at least half the uploads' GPU
                                # time, make a weight load: ex_reload_before reads for 3.4x its upload time per request
                                # (torch.load of a 270 MB checkpoint, then .to('cuda')); memcpy_pageable uploads its
                                # inputs with no file reads at all
STATE_DICT_MIN_TENSORS = 16    # or, inside one request, at least this many uploads that together reach LOAD_MIN_BYTES:
                                # a checkpoint's tensors copied one by one (load_state_dict; ex_sdreload_before: 96
                                # copies of <= 8 MiB, 201 MB per request), where a request's inputs are one batch
                                # tensor or a few
COLD_MIN_BYTES = 256 << 20      # a cold start worth a line: 256 MiB of weights uploaded before the first request
FILE_READS = ("read", "pread", "pread64", "readv", "preadv", "preadv2", "fread", "fread_unlocked", "__read_chk",
              "__fread_chk", "__pread_chk", "__pread64_chk")   # OS runtime calls that read a file (or a socket)
HTOD = 1                        # ENUM_CUDA_MEMCPY_OPER host-to-device when the profile has no enum table

CATEGORIES = ("model_loading",)
NEEDS = ("copies", "api_calls", "os_calls")


def _htod(trace) -> np.ndarray:
    c = trace.table("copies")
    vals = [v for v, lab in trace.enums.get("CUDA_MEMCPY_OPER", {}).items() if lab.lower() == "host-to-device"]
    return np.isin(c["kind"], vals or [HTOD])


def _window_uploads(ctx, u) -> tuple[float, float, np.ndarray, np.ndarray]:
    """All host-to-device copies launched inside the loading requests (a checkpoint is many tensors; only the
    largest pass LOAD_MIN_BYTES; the request's own inputs are among them, small beside the weights): bytes, GPU ns,
    per request the end of its last one (0 when none), and their copies rows."""
    c = ctx.trace.table("copies")
    proj = ctx.requests.gpu_request.get("copies", np.zeros(0, np.int64))
    last = np.zeros(ctx.requests.count, np.int64)
    if len(proj) != table_len(c) or len(u.loading) == 0:
        return 0.0, 0.0, last, np.zeros(0, np.int64)
    own = (proj >= 0) & _htod(ctx.trace)
    own[own] = np.isin(proj[own], u.loading)
    np.maximum.at(last, proj[own], c["end_ns"][own])
    return (float(c["bytes"][own].sum()), float((c["end_ns"][own] - c["start_ns"][own]).sum()), last,
            np.flatnonzero(own))


def _uploads(trace, proj: np.ndarray | None = None):
    """Large HtoD copies, by GPU start: (copy rows, start_ns, end_ns, bytes, issuing thread, CPU start of the call).
    Large: LOAD_MIN_BYTES alone, or one of the STATE_DICT_MIN_TENSORS or more uploads of one request (`proj`: each
    copy's request, -1 outside) that together move LOAD_MIN_BYTES."""
    c, api = trace.table("copies"), trace.table("api_calls")
    htod = _htod(trace)
    large = htod & (c["bytes"] >= LOAD_MIN_BYTES)
    if proj is not None and len(proj) == table_len(c) and len(proj):
        inr = htod & (proj >= 0)
        n_req = max(int(proj.max()) + 1, 1)      # all -1 (no copy inside a request): one empty bin
        cnt = np.bincount(proj[inr], minlength=n_req)
        tot = np.bincount(proj[inr], weights=c["bytes"][inr].astype(np.float64), minlength=n_req)
        burst = (cnt >= STATE_DICT_MIN_TENSORS) & (tot >= LOAD_MIN_BYTES)
        large |= inr & burst[np.maximum(proj, 0)]
    big = np.flatnonzero(large)
    tid = np.full(len(big), -1, np.int64)
    cpu = c["start_ns"][big].astype(np.int64)
    if len(big) and table_len(api):
        call = issuing_calls(trace, "copies", big)
        hit = call >= 0
        tid = np.where(hit, api["tid"][np.maximum(call, 0)], -1)
        cpu = np.where(hit, api["start_ns"][np.maximum(call, 0)], cpu)
    order = np.argsort(c["start_ns"][big], kind="stable")
    big = big[order]
    return (big, c["start_ns"][big].astype(np.int64), c["end_ns"][big].astype(np.int64), c["bytes"][big].astype(np.int64),
            tid[order], cpu[order])


def _file_read_ids(ctx) -> np.ndarray:
    """The name ids of the file-read OS calls (cached for the analysis)."""
    def compute():
        names = np.unique(ctx.trace.table("os_calls")["name_id"])
        return np.array([i for i in names if ctx.trace.name(i) in FILE_READS], np.int64)
    return ctx.once("file_read_ids", compute)


def _reads(ctx, tid: int, lo: int, hi: int) -> tuple[float, int, int]:
    """Time (ns), count and first start of the file-read calls on thread `tid` inside [lo, hi); first = hi when
    none."""
    o = ctx.trace.table("os_calls")
    if table_len(o) == 0:
        return 0.0, 0, hi
    m = np.isin(o["name_id"], _file_read_ids(ctx)) & (o["tid"] == tid) & (o["start_ns"] >= lo) & (o["end_ns"] <= hi)
    first = int(o["start_ns"][m].min()) if m.any() else hi
    return float((o["end_ns"][m] - o["start_ns"][m]).sum()), int(m.sum()), first


def _read_time(ctx, tid: int, lo: int, hi: int) -> tuple[float, int]:
    """Time (ns) and count of file-read calls on thread `tid` inside [lo, hi)."""
    return _reads(ctx, tid, lo, hi)[:2]


@dataclass
class Measurement:
    rows: np.ndarray          # copies rows of the large uploads, by GPU start
    gs: np.ndarray            # per upload: GPU start, end, bytes, issuing thread, CPU start of its call
    ge: np.ndarray
    nbytes: np.ndarray
    tid: np.ndarray
    cpu: np.ndarray
    cold: np.ndarray          # per upload: before the first request
    req: np.ndarray           # per upload: the request that waited on it (-1 none)
    inside: np.ndarray        # per upload: launched inside its request
    cold_read_ns: float       # file reads before the last cold upload
    loading: np.ndarray       # measured requests that waited on a load (none: only a cold start)
    share: float              # their share of the measured requests
    impact_ns: float = 0.0
    extra: np.ndarray = field(default_factory=lambda: np.zeros(0))   # per request: latency over the typical
    typical_ns: float = 0.0
    read_ns: float = 0.0      # file reads before the loads of loading requests
    reads: int = 0
    upload_ns: float = 0.0    # GPU time of the large uploads of loading requests
    window_bytes: float = 0.0  # every upload launched inside the loading requests: bytes, GPU ns
    window_ns: float = 0.0
    window_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # their copies rows
    load_start: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))    # per loading request: its load
    load_end: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))      # window on the loading thread
    load_tid: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))      # (first file read .. last upload)

    @property
    def file_backed(self) -> bool:
        """The loading requests read files before their uploads, for a time comparable to the uploads: weights,
        whatever their share."""
        return self.upload_ns > 0 and self.read_ns >= READ_MATCH * self.upload_ns

    @property
    def cold_only(self) -> bool:
        return len(self.loading) == 0 or (self.share > MAX_LOADING_SHARE and not self.file_backed)


def _owner(ctx, rows, ge, tid, cold):
    """The request each upload belongs to: launched inside it (projection), else the next request on its thread;
    and whether it was inside."""
    t = ctx.requests.table
    proj = ctx.requests.gpu_request.get("copies", np.zeros(0, np.int64))
    own = proj[rows] if len(proj) else np.full(len(rows), -1, np.int64)
    nxt = np.full(len(ge), -1, np.int64)
    for i in np.flatnonzero((own < 0) & ~cold):
        later = np.flatnonzero((t["tid"] == tid[i]) & (t["start_ns"] >= ge[i]))
        if len(later):
            nxt[i] = later[np.argmin(t["start_ns"][later])]
    return np.where(own >= 0, own, nxt), own >= 0


def _extra_latency(ctx, u: Measurement) -> None:
    """Extra latency of the requests that waited on a load, against the typical request without one; the file
    reads before their loads."""
    t, n, w = ctx.requests.table, ctx.requests.count, ctx.requests.warmup
    lat, loading, req = t["latency_ns"], u.loading, u.req
    meas = np.arange(w, n)
    normal = np.setdiff1d(meas, loading)
    typical = float(median(lat[normal])) if len(normal) else 0.0
    extra = np.zeros(n)
    extra[loading] = np.maximum(lat[loading] - typical, 0.0)
    # a load between requests delays the next one by its own duration (the request queues; its range starts later)
    between = (~u.inside) & (req >= w)
    for i in np.flatnonzero(between):
        extra[req[i]] += float(u.ge[i] - u.cpu[i])
    u.window_bytes, u.window_ns, last_up, u.window_rows = _window_uploads(ctx, u)
    read_ns, reads, window = 0.0, 0, np.zeros(n)
    u.load_start, u.load_end, u.load_tid = (np.zeros(len(loading), np.int64) for _ in range(3))
    for r in loading:
        ups = np.flatnonzero(req == r)
        lo = int(t["start_ns"][r]) if u.inside[ups].all() else int(t["end_ns"][max(r - 1, 0)])
        rt, rc, first = _reads(ctx, int(u.tid[ups[0]]), lo, int(u.ge[ups].max()))
        read_ns += rt
        reads += rc
        j = int(np.searchsorted(loading, r))
        u.load_start[j] = min(first, int(u.cpu[ups].min()))
        u.load_end[j] = max(int(u.ge[ups].max()), int(last_up[r]))
        u.load_tid[j] = int(u.tid[ups[0]])
        window[r] = u.load_end[j] - u.load_start[j]
    u.read_ns, u.reads = read_ns, reads
    u.upload_ns = float((u.ge - u.gs)[req >= w].sum())
    if len(normal) == 0:
        # every request loads: no typical request to compare with; each pays its load window (first file read to
        # the end of its last upload: deserialising and building the model included), bounded by its latency
        extra = np.minimum(window, lat.astype(np.float64))
        extra[:w] = 0.0
    u.impact_ns, u.extra, u.typical_ns = float(extra[w:].sum()) / len(meas), extra, typical


def measure(ctx) -> Measurement | None:
    trace, rq = ctx.trace, ctx.requests
    if "copies" in trace.absent and "kernels" in trace.absent:     # no CUDA activity traced (else: no copies made)
        return not_evaluated(ctx, CATEGORIES, no_data(trace, "copies", "CUDA memory copies"))
    if "copies" in trace.absent or ctx.mean_latency_ns <= 0 or len(ctx.measured) == 0:
        return None
    rows, gs, ge, nbytes, tid, cpu = _uploads(trace, rq.gpu_request.get("copies"))
    if len(gs) == 0:
        return None
    cold = cpu < int(rq.table["start_ns"].min())
    req, inside = _owner(ctx, rows, ge, tid, cold)
    cold_read, _ = (_read_time(ctx, int(tid[cold][0]), 0, int(ge[cold].max())) if cold.any() else (0.0, 0))
    loading = np.unique(req[(req >= rq.warmup)])
    u = Measurement(rows=rows, gs=gs, ge=ge, nbytes=nbytes, tid=tid, cpu=cpu, cold=cold, req=req, inside=inside,
                    cold_read_ns=cold_read, loading=loading, share=len(loading) / max(len(ctx.measured), 1))
    if len(loading):
        _extra_latency(ctx, u)            # also the file reads that tell a weight load from per-request input
    if u.cold_only:
        u.impact_ns = 0.0
        return u if cold.any() and nbytes[cold].sum() >= COLD_MIN_BYTES else None
    return u


def change(m: Measurement) -> list:
    """The weights stay resident (or load ahead): the uploads that requests waited on, and the CPU time from each
    load's first file read (else its upload call) to the end of its last upload, leave the requests. A cold start is
    no request's: nothing to change."""
    if m.cold_only:
        return []
    if m.share > MAX_LOADING_SHARE:
        # every (or most) request loads from files: each one's whole load window and all its uploads leave it
        return [MoveOutOfRequests("copies", m.window_rows, m.load_tid, m.load_start, m.load_end)]
    sel = m.req >= 0
    sel &= ~m.cold
    rest = sel & ~np.isin(m.req, m.loading)       # uploads of warm-up requests: no load window of their own
    # each load's CPU time from its upload call to the upload's end, and from its first file read on (the window of
    # each loading request: the read of the weights is the load too; tests/data/dist/model_server: 4 swaps of
    # ~270 ms, of which the uploads' windows alone are 51 ms, the rest fread of the 384 MiB file)
    return [MoveOutOfRequests("copies", m.rows[sel], np.r_[m.load_tid, m.tid[rest]], np.r_[m.load_start, m.cpu[rest]],
                              np.r_[m.load_end, m.ge[rest]])]


def _cold_numbers(ctx, m: Measurement) -> dict:
    cold = m.cold
    if not cold.any():
        return {}
    first = int(ctx.requests.table["start_ns"].min())
    return dict(cold_start_uploads=int(cold.sum()), cold_start_mib=round(float(m.nbytes[cold].sum()) / 2**20, 1),
                cold_start_upload_ms=round(float((m.ge - m.gs)[cold].sum()) / 1e6, 1),
                cold_start_file_read_ms=round(m.cold_read_ns / 1e6, 1),
                cold_start_before_first_request_ms=round((first - int(m.cpu[cold].min())) / 1e6, 1))


def _cold_finding(ctx, m: Measurement, numbers: dict):
    notes = []
    title = (f"Cold start: {numbers['cold_start_mib']:g} MiB of weights read and uploaded before the first request "
             f"({numbers['cold_start_file_read_ms']:g} ms in file reads, {numbers['cold_start_upload_ms']:g} ms "
             "uploading); set-up, not a request problem")
    if m.share > MAX_LOADING_SHARE:
        notes.append(f"large uploads in {m.share:.0%} of requests: per-request inputs (see memory_transfer)")
    return make_finding(ctx, "model_loading", title, 0.0, "cold start happens once, before any request: no "
                        "per-request impact", Evidence(numbers=numbers, notes=notes),
                        "Load and upload the weights before the server takes traffic (readiness probe after "
                        "the load), from pinned memory or a safetensors mmap to shorten it.",
                        "A first request that arrives during the cold start waits for all of it; later ones "
                        "do not.")


def finding(ctx, m: Measurement) -> list:
    trace, rq = ctx.trace, ctx.requests
    t, w = rq.table, rq.warmup
    numbers = _cold_numbers(ctx, m)
    if m.cold_only:
        return [_cold_finding(ctx, m, numbers)]
    loading, req, lat, extra, typical = m.loading, m.req, t["latency_ns"], m.extra, m.typical_ns
    sel = (req >= w)
    between = (~m.inside) & sel
    numbers.update(loading_requests=int(len(loading)), loading_request_share_pct=round(100 * m.share, 1),
                   loads_inside_requests=int((m.inside & sel).sum()), loads_between_requests=int(between.sum()),
                   upload_mib_per_load=round(float(m.nbytes[sel].sum()) / 2**20 / max(len(loading), 1), 1),
                   uploads_per_load=round(float(sel.sum()) / max(len(loading), 1), 1),
                   upload_ms_per_load=round(float((m.ge - m.gs)[sel].sum()) / 1e6 / len(loading), 1),
                   all_uploads_mib_per_load=round(m.window_bytes / 2**20 / len(loading), 1),
                   all_uploads_ms_per_load=round(m.window_ns / 1e6 / len(loading), 1),
                   file_read_ms_per_load=round(m.read_ns / 1e6 / len(loading), 1), file_reads=m.reads,
                   loading_request_latency_ms=round(float(lat[loading].mean()) / 1e6, 1),
                   typical_latency_ms=round(typical / 1e6, 3),
                   extra_latency_ms_per_loading_request=round(float(extra[loading].mean()) / 1e6, 1))
    worst, notes = [], []
    for r in loading[np.argsort(-extra[loading])][:WORST]:
        worst.append(instance(ctx, int(r), t["start_ns"][r], t["start_ns"][r] + lat[r],
                              f"request waited on a model load: {lat[r] / 1e6:.1f} ms against "
                              f"{typical / 1e6:.2f} ms typical", tid=int(t["tid"][r])))
    notes.append(f"a load: one host-to-device upload of >= {LOAD_MIN_BYTES >> 20} MiB, or >= "
                 f"{STATE_DICT_MIN_TENSORS} uploads of one request adding up to that (a checkpoint's tensors copied one "
                 f"by one); in most requests only after file reads of at least {READ_MATCH:g}x the uploads' time")
    if "os_calls" in trace.absent:
        notes.append(f"file reads not measured: {trace.absent['os_calls']}")
    title = (f"{len(loading)} requests waited on a model load (file read {numbers['file_read_ms_per_load']:g} ms + "
             f"upload {numbers['all_uploads_ms_per_load']:g} ms of {numbers['all_uploads_mib_per_load']:g} MiB each): "
             f"{numbers['extra_latency_ms_per_loading_request']:g} ms extra latency each")
    estimate = ("per loading request: its latency minus the median latency of the measured requests without a load "
                "(plus the load's duration when it ran between requests), summed and spread over all measured "
                "requests")
    fix = ("Keep the served models resident on the GPU: load each once (at start-up) and cache it by name instead of "
           "rebuilding it from its checkpoint per request; where models must be swapped, load the next one in the "
           "background (a loader thread reading into pinned memory and uploading on a side stream) and switch when it "
           "is ready; never load inside a request.")
    why = ("Reading hundreds of MB from disk and copying them to the GPU takes hundreds of milliseconds, and the "
           "request that triggers the swap (and every request queued behind it) waits for all of it before its own "
           "few milliseconds of GPU work can start.")
    return [make_finding(ctx, "model_loading", title, m.impact_ns, estimate,
                         Evidence(numbers=numbers, worst=worst, notes=notes), fix, why)]


def diagnose(ctx) -> list:
    m = measure(ctx)
    return [] if m is None else finding(ctx, m)
