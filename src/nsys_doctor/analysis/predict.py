"""Predicted savings from the replay: after the diagnoses ran, each finding's fix (its diagnosis's `change`, in
model/changes.py's vocabulary) is turned into a model.replay.Change, the requests are replayed with it, and the
finding's impact_ms becomes the predicted saving in the metric that bounds the run (analysis/impact.py: mean latency
in latency-bound runs, the request interval in throughput-bound ones); the severity follows. The finding carries the
prediction as `whatif`. Where the replay cannot follow the profile, or the fix has no change to replay, the
diagnosis's own estimate stays (and `estimate` says so). `combined` replays every high and medium finding's fix at
once.

Rates and costs come from the `before` profile itself (its own median cudaGraphLaunch, its best copy rate of the same
direction, set by the diagnosis) or from documented device constants (named where they are defined), never from a
recording of the fixed program.
"""
from __future__ import annotations

import numpy as np

from ..diagnose.common import HIGH_PCT, MEDIUM_PCT
from ..model import changes as C
from ..model import replay as R
from ..model.api_names import base_name
from ..report import Finding, severity_for

# Above this many CUDA calls and GPU operations the replay is skipped (the diagnoses' own estimates stand, a note
# says so): building the graph costs ~0.4 s CPU per million (benchmarks/bench_replay.py: 6.3 s for launch_bound x40's
# 16M), and each finding's replay ~0.1 s per million; at 2M that is ~1.5 s, about what analyze itself costs there.
# Measured in analyze on launch_bound (0.37M): +0.11 s CPU (0.33 -> 0.44 s), one finding replayed.
MAX_REPLAY_EVENTS = 2_000_000
GRAPH_LAUNCH_CALLS = ("cudaGraphLaunch", "cuGraphLaunch")
# The categories whose replayed fix matched the real fix on before/after pairs (benchmarks/calibrate.py over
# tests/data/pairs.json: predicted / measured within [0.75, 1.33]); their impact_ms is the replay's prediction. The
# others carry the replay's `whatif` too, but keep their diagnosis's estimate as impact_ms until pairs validate them:
# cuda_sync's replay (each avoidable host read removed whole: its wait, the small copy or event record that fed it
# and that call, the CPU dispatch right before, up to GRAPH_DISPATCH_MAX_NS) holds where removing the waits leaves the
# GPU to bound the run (ex_sleep 1.12) but not where the CPU bounds it: 3.3x the real saving on ex_sync (1.84x the
# mean of its three fixed runs: the fix added GPU work, and one fixed run's CPU was slower), 0.53x on ex_polling (the
# fixed program's CPU did the rest of a request's work in 2.4 ms against the `before` run's 4.0 ms) and 0.25x on
# ex_exit (24 reads/request of ~60 us CPU each, 21 us of it before the wait; the fixed run's launch calls are 1.25x
# faster and the Python between all its ops shorter), which no replay of `before` sees; on zoo sync_heavy it
# predicts 0.77 ms (its waits find the GPU done: only the reads' CPU time goes) against the estimate's 2.56;
# memory_bandwidth, memory_allocation, model_loading and communication have no replayed pair yet.
CALIBRATED = ("launch_overhead", "memory_transfer", "cpu_preprocessing", "cpu_postprocessing", "precision",
              "gpu_underutilization", "thread_contention")
# The profile formats the pairs were recorded in: every pair is an nsys export. A PyTorch profiler trace replays
# unchanged exactly, but its changed replays are unchecked, and on kineto-tbplugin-samples resnet50 (0 vs 4
# DataLoader workers: 33 ms per step measured) removing the DataLoader stage predicts nothing; there the findings
# carry `whatif` and keep their estimates.
CALIBRATED_SOURCES = ("nsys-sqlite",)


def median_graph_launch_ns(trace) -> int | None:
    """The median cudaGraphLaunch of this profile, None when it has none (cli/whatif.py's --graph uses it too)."""
    api = trace.table("api_calls")
    if len(api["name_id"]) == 0:
        return None
    ids = np.unique(api["name_id"])
    gl = [i for i in ids if base_name(trace.name(int(i))) in GRAPH_LAUNCH_CALLS]
    if not gl:
        return None
    sel = np.isin(api["name_id"], gl)
    return int(np.median(api["end_ns"][sel] - api["start_ns"][sel]))


def graph_launch_cost_ns(trace) -> tuple[int, str]:
    """The CPU cost of one graph launch: the median cudaGraphLaunch of this profile, else the zoo's measurement."""
    cost = median_graph_launch_ns(trace)
    if cost is not None:
        return cost, "the median cudaGraphLaunch of this profile"
    return R.GRAPH_LAUNCH_FALLBACK_NS, "cudaGraphLaunch as measured in the zoo's launch_bound_graphed (H100)"


def to_replay(trace, changes: list) -> tuple[R.Change, list[str]]:
    """model/changes.py's changes -> one replay.Change, and the sources of the constants it used (in words)."""
    ch = R.Change()
    how: list[str] = []
    for c in changes:
        if isinstance(c, C.RemoveHostWaits):
            rows = np.asarray(c.api_rows, np.int64)
            ch = ch.combined(R.Change(remove_wait_rows=rows))
            if c.read_calls is not None and len(c.read_calls):
                ch = ch.combined(R.Change(remove_cpu_rows={"api_calls": np.asarray(c.read_calls, np.int64)}))
        elif isinstance(c, C.ScaleGpuWork):
            ch.gpu_scale.append((c.table, np.asarray(c.rows, np.int64), c.factor))
        elif isinstance(c, C.ShortenGpuWork):
            ch.gpu_shorten.append((c.table, np.asarray(c.rows, np.int64), np.asarray(c.by_ns, np.int64)))
        elif isinstance(c, C.CopiesAtRate):
            ch.copy_rate.append((np.asarray(c.rows, np.int64), np.asarray(c.gbps, np.float64) * 1e9, c.overlap))
        elif isinstance(c, C.GraphLaunches):
            if len(c.api_rows):
                cost, src = graph_launch_cost_ns(trace)
                ch.graph_launch_ns = cost if ch.graph_launch_ns is None else min(ch.graph_launch_ns, cost)
                how.append(f"one graph launch costs {cost / 1e3:.0f} us of CPU ({src})")
        elif isinstance(c, C.RemoveCpuTime):
            ch.remove_cpu_windows.append((np.asarray(c.tid, np.int64), np.asarray(c.start_ns, np.int64),
                                          np.asarray(c.end_ns, np.int64)))
        elif isinstance(c, C.MoveOutOfRequests):
            ch.gpu_scale.append((c.table, np.asarray(c.rows, np.int64), 0.0))
            ch.remove_cpu_windows.append((np.asarray(c.tid, np.int64), np.asarray(c.start_ns, np.int64),
                                          np.asarray(c.end_ns, np.int64)))
        elif isinstance(c, C.OwnStreams):
            ch.stream_per_thread = ch.stream_per_thread or len(c.tid) > 1
        else:
            raise TypeError(f"no replay rule for {type(c).__name__}")
    return ch, how


class _Replayer:
    """The unchanged replay (the baseline every saving is measured from) and the graph, built once per analysis."""

    def __init__(self, ctx):
        self.trace, self.reqs = ctx.trace, ctx.requests       # not ctx: ctx.cache holds this (no cycle)
        self.error: str | None = None
        self.base = None
        events = sum(len(self.trace.table(t)["start_ns"]) for t in ("api_calls", "kernels", "copies", "memsets"))
        if len(self.reqs.measured) == 0:
            self.error = "no measured requests"
        elif events > MAX_REPLAY_EVENTS:
            self.error = (f"the profile has {events:,} CUDA calls and GPU operations, more than the replay's "
                          f"limit of {MAX_REPLAY_EVENTS:,}")
        else:
            try:
                self.base = R.replay(self.trace, self.reqs)
            except (R.ReplayError, ValueError) as err:
                self.error = f"the replay cannot follow this profile ({err})"

    def run(self, ch: R.Change):
        try:
            return R.replay(self.trace, self.reqs, ch), None
        except (R.ReplayError, ValueError) as err:
            return None, f"the replay cannot follow this fix in this profile ({err})"


# A fix that makes requests overlap (the replayed mean latency over this many replayed request intervals: more than
# one and a half requests in flight, where the recording had at most that) turns the run throughput-bound: the
# CPU now submits faster than the GPU finishes (zoo launch_bound, no wait per request, graphed: 1.85 ms interval,
# 4.7 ms latency of which most is queueing). Its saving is then counted in the request interval, the metric that
# bounds the run after it. A one-request-at-a-time loop has latency ~ interval (ratio 1.0).
IN_FLIGHT_MAX = 1.5


def _overlapped(out) -> bool:
    iv = out.interval_ns
    return iv > 0 and out.mean_latency_ns > IN_FLIGHT_MAX * iv


def _basis(load: dict | None) -> str:
    return "interval" if load and load.get("load") == "throughput-bound" else "latency"


def _basis_after(basis: str, base, out) -> str:
    """The basis after the fix: a latency-bound run whose fix makes requests queue is counted in the interval."""
    if basis == "latency" and _overlapped(out) and not _overlapped(base):
        return "interval"
    return basis


def _whatif(words: list[str], how: list[str], base, out, basis: str) -> tuple[dict, float, float]:
    lat0, lat1 = base.mean_latency_ns, out.mean_latency_ns
    iv0, iv1 = base.interval_ns, out.interval_ns
    before, after = (iv0, iv1) if basis == "interval" else (lat0, lat1)
    saved = max(0.0, before - after)
    w = {"change": words, "mean_latency_ms": round(lat1 / 1e6, 4), "interval_ms": round(iv1 / 1e6, 4),
         "mean_latency_before_ms": round(lat0 / 1e6, 4), "interval_before_ms": round(iv0 / 1e6, 4),
         "saving_ms": round(saved / 1e6, 4), "basis": basis,
         "how": ("replay of the profile's dependency graph (model/graph.py: each thread's calls, each stream's "
                 "GPU work, launches, host waits, waits between streams) with the change applied; replayed "
                 "unchanged it gives back the recording" + ("; " + "; ".join(how) if how else ""))}
    return w, saved, before


def predict(ctx, findings: list[Finding], load: dict | None) -> tuple[list[Finding], list[str]]:
    """Replay each finding's fix; set whatif, impact_ms, impact_pct, impact_basis and severity from the prediction.
    Findings without a change, whose replay failed, or of a category not in CALIBRATED keep the diagnosis's estimate
    (rebased later by impact.py; `whatif.used` says whether impact_ms is the replay's).
    Returns the findings ranked by impact and the notes for the report."""
    store = ctx.cache.get("changes", {})
    todo = [f for f in findings if store.get(id(f))]
    notes: list[str] = []
    if not todo:
        return findings, notes
    rp = ctx.once("replayer", lambda: _Replayer(ctx))
    if rp.base is None:
        notes.append(f"Savings are the diagnoses' own estimates, not replayed: {rp.error}.")
        for f in todo:
            f.estimate = f"{f.estimate} (not replayed: {rp.error})"
        return findings, notes
    basis = _basis(load)
    for f in todo:
        ch, how = to_replay(ctx.trace, store[id(f)])
        if ch.is_empty():
            continue
        out, err = rp.run(ch)
        if out is None:
            f.estimate = f"{f.estimate} (the diagnosis's own estimate: {err})"
            continue
        b = _basis_after(basis, rp.base, out)
        if b != basis:
            how = how + [f"after this fix requests queue (replayed: {out.mean_latency_ns / 1e6:.3g} ms latency, "
                         f"one every {out.interval_ns / 1e6:.3g} ms), so the saving counted is in the interval"]
        w, saved, before = _whatif(ch.describe(), how, rp.base, out, b)
        old = f.impact_ms
        f.whatif = w
        if f.category not in CALIBRATED or ctx.trace.source not in CALIBRATED_SOURCES:
            w["used"] = False
            what = "fix" if f.category not in CALIBRATED else f"fix in a {ctx.trace.source} profile"
            f.estimate = (f"{f.estimate} (replayed, not used: this {what}'s replay is not yet calibrated against "
                          f"real fixes; it predicts {saved / 1e6:.3g} ms)")
            continue
        w["used"] = True
        f.impact_basis = b
        f.impact_ms = round(saved / 1e6, 3)
        f.impact_pct = round(min(100.0, 100.0 * saved / before) if before > 0 else 0.0, 1)
        f.severity = severity_for(f.impact_pct, HIGH_PCT, MEDIUM_PCT)
        metric = "request interval" if b == "interval" else "mean latency"
        f.estimate = (f"predicted by replaying the requests with the fix applied ({'; '.join(w['change'])}): "
                      f"{metric} {before / 1e6:.3g} -> {(before - saved) / 1e6:.3g} ms"
                      + (f" ({'; '.join(how)})" if how else "")
                      + f"; the diagnosis's own estimate was {old:.3g} ms ({f.estimate})")
    findings.sort(key=lambda f: -f.impact_ms)
    return findings, notes


def combined(ctx, findings: list[Finding], load: dict | None) -> dict | None:
    """One prediction for applying every high and medium finding's fix together (None when none has a change or
    the replay cannot run)."""
    store = ctx.cache.get("changes", {})
    chosen = [f for f in findings if f.severity in ("high", "medium") and store.get(id(f))]
    if not chosen:
        return None
    rp = ctx.once("replayer", lambda: _Replayer(ctx))
    if rp.base is None:
        return None
    ch, how = R.Change(), []
    for f in chosen:
        c, h = to_replay(ctx.trace, store[id(f)])
        ch, how = ch.combined(c), how + [x for x in h if x not in how]
    if ch.is_empty():
        return None
    out, err = rp.run(ch)
    if out is None:
        return {"findings": [f.category for f in chosen], "error": err}
    b = _basis_after(_basis(load), rp.base, out)
    w, saved, before = _whatif(ch.describe(), how, rp.base, out, b)
    w["findings"] = [f.category for f in chosen]
    # as for single findings: a prediction to rely on only where every fix in it is calibrated
    w["used"] = ctx.trace.source in CALIBRATED_SOURCES and all(f.category in CALIBRATED for f in chosen)
    w["saving_pct"] = round(min(100.0, 100.0 * saved / before) if before > 0 else 0.0, 1)
    return w
