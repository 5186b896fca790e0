"""analyze(path) -> Report: read the profile, find and measure its requests, run the diagnoses."""
from __future__ import annotations

import numpy as np

from ..diagnose import Context, cap_severity, diagnose_all, not_evaluated
from ..errors import OutOfMemory, is_out_of_memory
from ..diagnose import needs as diagnosis_needs
from .kernel_summary import kernel_summary, syncs_per_request
from ..model import tensorrt
from ..model.requests import NEEDS as REQUEST_NEEDS
from ..model.queueing import measure_queue, queue_sentence, run_load
from ..model.requests import Requests, find_requests
from ..model.projection import GPU_TABLES, gpu_busy_union, launching_calls
from .impact import rebase
from . import gpu_bound
from .predict import combined as predict_combined, predict as predict_findings, start as predict_start
from ..model.trace import Trace, on_own_thread
from ..read import open_trace
from ..report import Report
from .timeline import build_timeline
from ..model.arrays import percentiles, uniq

PERCENTILES = (50, 90, 99)
SUMMARY_NEEDS = ("threads",)    # thread names in the request summary


def read_ahead() -> list[str]:
    """Tables every analysis reads, in the order it first needs them (requests, the summary, then each diagnosis's
    NEEDS): read on a background thread while the requests and diagnoses compute with the ones already there
    (launch_bound x40 of benchmarks/make_large.py: os_calls, sched and samples are read while requests are
    measured)."""
    out = list(REQUEST_NEEDS + SUMMARY_NEEDS)
    return out + [t for t in diagnosis_needs() if t not in out]
MS = 1e6


def analyze(path, range_name: str | None = None, skip: int | None = None, timeline: bool = True,
            export_beside: bool = False) -> Report:
    """Raises NsysDoctorError for bad input, OutOfMemory when an allocation (or a thread) failed on the way."""
    try:
        trace = open_trace(path, export_beside=export_beside)
        try:
            return analyze_trace(trace, range_name, skip, timeline)
        finally:
            trace.close()
    except (MemoryError, RuntimeError, ImportError) as err:
        if not is_out_of_memory(err):
            raise
        raise OutOfMemory(path) from None


def analyze_trace(trace: Trace, range_name: str | None = None, skip: int | None = None,
                  timeline: bool = True) -> Report:
    """`timeline=False` leaves out the timeline excerpts (HTML, Perfetto): fleet workers send back only numbers."""
    trace.prefetch(read_ahead())
    busy = _gpu_busy_ahead(trace)
    try:
        req = find_requests(trace, range_name, skip)
    finally:
        busy.exception()                   # done before the trace may close
    measure_queue(trace, req)
    ctx = Context(trace, req)
    replayer = predict_start(ctx)          # the replay's graph, built while the diagnoses wait for tables
    try:
        return _report(trace, req, ctx, timeline)
    finally:
        replayer.exception()               # done before the trace may close (an error in it is predict's to raise)


def _gpu_busy_ahead(trace: Trace):
    """The union of all GPU work (projection.gpu_busy_union, which measuring the requests ends with) on a thread of
    its own, computed as soon as the GPU tables are read while find_requests matches calls to requests
    (launch_bound x40: 0.24 s CPU). Returns its future. An error in it is not kept: the analysis asks for the union
    again and meets the error there, on its own thread."""
    from concurrent.futures import Future
    if not trace.background:               # tables read on first use: nothing to overlap
        done: Future = Future()
        done.set_result(None)
        return done

    def compute():
        try:
            for name in GPU_TABLES:        # in the order prefetch() reads them, never ahead of the API calls
                trace.table(name, in_turn=True)
            gpu_busy_union(trace)
            # then each GPU row's launch call (cached: find_requests asks next), searched here while the main
            # thread assigns the calls to requests
            trace.table("api_calls", in_turn=True)
            for name in GPU_TABLES:
                if trace.has(name):
                    launching_calls(trace, name)
        except Exception:                  # raised again where the analysis needs the union
            pass
    return on_own_thread(compute, "busy")


def _report(trace: Trace, req: Requests, ctx: Context, timeline: bool) -> Report:
    findings = diagnose_all(ctx)
    # what needs no finding, on a thread of its own while the findings are replayed and ranked: the stage after the
    # diagnoses otherwise runs on one core (launch_bound x40: 0.18 s of its 0.37 s)
    side = on_own_thread(lambda: (kernel_summary(trace, req), syncs_per_request(trace, req),
                                  tensorrt.detect(trace)), "summary")
    try:
        return _findings_report(trace, req, ctx, timeline, findings, side)
    finally:
        side.exception()                   # done before the trace may close


def _findings_report(trace: Trace, req: Requests, ctx: Context, timeline: bool, findings: list, side) -> Report:
    load = run_load(ctx)                   # after the diagnoses: the request threads' activity is cached by then
    findings, pnotes = predict_findings(ctx, findings, load)    # each fix replayed: the predicted saving
    findings = rebase(findings, load)      # the others' estimates: impact in the metric that bounds the run
    findings = cap_severity(findings)      # after every step that sets severity from impact
    report = Report(profile=describe_profile(trace, req), requests=summarize_requests(trace, req, load),
                    findings=findings, per_request=per_request_columns(req))
    report.requests["whatif_combined"] = predict_combined(ctx, findings, load)
    report.notes.extend(pnotes)
    report.notes.extend(trace.meta.get("notes", ()))    # the reader's: what it skipped or found absent
    excerpts = build_timeline(trace, req, findings) if timeline else None    # while `side` finishes
    kernels, syncs, trt = side.result()
    report.requests["kernels"] = kernels
    report.requests["syncs_per_request"] = syncs
    report.profile["not_evaluated"] = not_evaluated(ctx)   # categories whose data the profile lacks, and why
    bound = gpu_bound.gpu_bound_by(ctx, report.requests, findings)
    if bound is not None:
        report.requests["gpu_bound_by"] = bound
    report.profile["tensorrt"] = trt or False
    if report.profile["tensorrt"]:
        report.requests["tensorrt_layers"] = tensorrt.layer_table(trace, req)[:tensorrt.TOP_LAYERS]
    report.verdict = verdict(report, typical_queue_sentence(req))
    if timeline:
        report.timeline = excerpts
    return report


def _stats(values_ns: np.ndarray) -> dict:
    if len(values_ns) == 0:
        return {}
    v = values_ns / MS
    out = {f"p{p}": round(x, 3) for p, x in zip(PERCENTILES, percentiles(v, PERCENTILES))}
    out.update(max=round(float(v.max()), 3), min=round(float(v.min()), 3), mean=round(float(v.mean()), 3))
    return out


def describe_profile(trace: Trace, req: Requests) -> dict:
    m = trace.meta
    span = None
    if "capture_start_ns" in m:
        span = round((m["capture_end_ns"] - m["capture_start_ns"]) / 1e9, 3)
    return {"path": trace.path, "format": trace.source, "nsys_version": m.get("nsys_version"),
            "schema_version": m.get("schema_version"), "duration_s": span,
            "gpus": [g.get("name") for g in m.get("gpus", [])],
            "counts": trace.counts(),
            "absent": dict(trace.absent), "tensorrt": False}     # filled in by analyze_trace


def summarize_requests(trace: Trace, req: Requests, load: dict | None = None) -> dict:
    t, m = req.table, req.measured
    lat = t["latency_ns"][m]
    mean_lat = float(lat.mean()) if len(lat) else 0.0
    parts = {"compute": "compute_ns", "copies": "copy_ns", "other_gpu_work": "other_gpu_ns", "gpu_idle": "idle_ns"}
    breakdown = {k: round(float(t[c][m].mean()) / MS, 3) if len(m) else 0.0 for k, c in parts.items()}
    busy = t["device_busy_ns"][m] / np.maximum(t["latency_ns"][m], 1)
    own = t["busy_ns"][m] / np.maximum(t["latency_ns"][m], 1)
    threads = sorted({trace.thread_name(x) for x in uniq(t["tid"][m])})
    return {
        "range": req.range_name, "domain": req.domain, "chosen_because": req.reason, "inferred": req.inferred,
        "count": int(len(m)), "total": req.count, "warmup": req.warmup, "warmup_reason": req.warmup_reason,
        "threads": threads,
        "latency_ms": _stats(lat), "cpu_ms": _stats(t["cpu_ns"][m]),
        "gpu_busy_pct": round(100 * float(busy.mean()), 1) if len(m) else 0.0,
        "own_gpu_busy_pct": round(100 * float(own.mean()), 1) if len(m) else 0.0,
        "breakdown_ms": breakdown,
        "breakdown_pct": {k: round(100 * v * MS / mean_lat, 1) if mean_lat else 0.0 for k, v in breakdown.items()},
        "launches_per_request": round(float(t["launches"][m].mean()), 1) if len(m) else 0.0,
        "kernels_per_request": round(float(t["kernels"][m].mean()), 1) if len(m) else 0.0,
        "copies_per_request": round(float(t["copies"][m].mean()), 1) if len(m) else 0.0,
        "candidates": [{k: c[k] for k in ("name", "domain", "count", "eligible", "why")} for c in req.candidates[:6]],
        **_load_fields(t, m, load),
    }


def _load_fields(t, m, load: dict | None) -> dict:
    """requests.load, bound_by, interval_ms, throughput_per_s, service_ms, queue_ms, load_evidence
    (model/queueing.py)."""
    if not load or "queue_ns" not in t:
        return {}
    return {"load": load["load"], "bound_by": load["bound_by"], "interval_ms": round(load["interval_ns"] / MS, 4),
            "throughput_per_s": round(load["throughput_per_s"], 2),
            "service_ms": _stats(t["service_ns"][m]), "queue_ms": _stats(t["queue_ns"][m]),
            "queued_behind_per_request": round(float(t["ahead"][m].mean()), 1) if len(m) else 0.0,
            "load_evidence": {"queue_pct_of_latency": round(100 * load["queue_share"], 1),
                              "gpu_busy_pct_of_span": round(100 * load["gpu_busy_share"], 1),
                              "request_threads_on_cpu_pct": round(100 * load["cpu_share"], 1),
                              "request_threads_in_sync_pct": round(100 * load["sync_share"], 1),
                              "cpu_ms_per_request": round(load["cpu_need_ns"] / MS, 3),
                              "launch_blocked_ms_per_request": round(load["launch_blocked_per_request_ns"] / MS, 3),
                              "gpu_ms_per_request": round(load["gpu_need_ns"] / MS, 3)}}


def typical_queue_sentence(req: Requests) -> str | None:
    """The queueing sentence of the median-latency measured request, when its latency is mostly queueing."""
    t, m = req.table, req.measured
    if len(m) == 0 or "queue_ns" not in t:
        return None
    r = int(m[np.argsort(t["latency_ns"][m], kind="stable")[(len(m) - 1) // 2]])
    return queue_sentence(t, r)


def per_request_columns(req: Requests) -> dict:
    t = req.table
    ms = lambda c: [round(float(x) / MS, 4) for x in t[c]]  # noqa: E731
    return {"start_ns": [int(x) for x in t["start_ns"]], "latency_ms": ms("latency_ns"), "cpu_ms": ms("cpu_ns"),
            "compute_ms": ms("compute_ns"), "copy_ms": ms("copy_ns"), "other_gpu_ms": ms("other_gpu_ns"),
            "idle_ms": ms("idle_ns"), "launches": [int(x) for x in t["launches"]],
            **({"queue_ms": ms("queue_ns"), "service_ms": ms("service_ns"),
                "queued_behind": [int(x) for x in t["ahead"]]} if "queue_ns" in t else {}),
            "warmup": [i < req.warmup for i in range(req.count)]}


def verdict(report: Report, queueing: str | None = None) -> str:
    """The top finding, or what bounds the run; `queueing` (queue_sentence of the typical request) is added when
    its latency is mostly queueing."""
    r = report.requests
    top = [f for f in report.findings if f.severity in ("high", "medium")]
    queued = r.get("load") == "throughput-bound"
    tail = ""
    if queued:
        qpct = (r.get("load_evidence") or {}).get("queue_pct_of_latency", 0)
        tail = (f" Requests queue: {r.get('throughput_per_s', 0):g} requests/s, one every "
                f"{r.get('interval_ms', 0):.3g} ms; {qpct:.0f}% of latency is waiting behind earlier requests")
        tail += f": {queueing.replace('this request', 'the typical request', 1)}." if queueing else "."
    bound = r.get("gpu_bound_by")
    what = gpu_bound.sentence(bound) if bound and bound.get("classes") else None
    if top:
        f = top[0]
        unit = "of the request interval" if f.impact_basis == "interval" else "of latency"
        # the title may quote a measured time per request: say which number is the predicted saving
        gpu_line = f" The GPU is the bottleneck: {what}." if what else ""
        return (f"{f.title} (fixing it would save about {f.impact_ms:.1f} ms per request, {f.impact_pct:.0f}% "
                f"{unit})" + (f".{gpu_line}{tail}" if gpu_line or tail else ""))
    busy = r.get("gpu_busy_pct", 0)
    if busy >= 90:
        return (f"The GPU is the bottleneck: it is busy {busy:.0f}% of each request's latency, and nothing "
                "else costs much." + (f" {what[0].upper()}{what[1:]}; no class is far enough from its limit for one "
                                      "fix to name." if what else " Faster kernels (precision, fusion, a smaller "
                                      "model) are what would help.") + tail)
    return f"No dominant bottleneck found; the GPU is busy {busy:.0f}% of each request's latency." + tail
