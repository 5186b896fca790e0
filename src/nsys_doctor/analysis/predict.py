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

from dataclasses import dataclass

import numpy as np

from ..diagnose.common import HIGH_PCT, MEDIUM_PCT
from ..model import changes as C
from ..model import replay as R
from ..model import window as W
from ..model.arrays import distinct_ids, id_mask, median
from ..model.api_names import GRAPH_LAUNCH_CALLS, name_ids
from ..model.projection import issuing_calls
from ..model.trace import on_own_thread
from ..report import Finding, severity_for

# Above this many CUDA calls and GPU operations the replay covers a window of consecutive measured requests in the
# middle of the run (model/window.py) instead of the whole run, and each fix's saving per request in that window is
# taken for every request: building the graph costs ~0.4 s CPU per million events and each replay ~0.1 s per million
# (benchmarks/bench_replay.py: 6.3 s for launch_bound x40's 16M), which alone would take analyze on launch_bound x40
# past twice the raw scan of its columns (issue 16). Profiles up to this size (all of ../shared and tests/data: the
# largest, launch_bound, has 0.37M) are replayed whole.
MAX_REPLAY_EVENTS = 2_000_000
# The window's size in events (CUDA calls and GPU operations): launch_bound x40 (1.8k events per request) replays
# ~270 of its 8,120 requests, ~0.4 s of analyze's ~7 s there. Windowed predictions of a window of half the requests
# match the whole replay on every profile small enough to replay whole (tests/test_predict.py).
REPLAY_WINDOW_EVENTS = 500_000
# The categories whose replayed fix matched the real fix on before/after pairs (benchmarks/calibrate.py over
# tests/data/pairs.json: predicted / measured within [0.75, 1.33]); their impact_ms is the replay's prediction. The
# others carry the replay's `whatif` too, but keep their diagnosis's estimate as impact_ms until pairs validate them.
# cuda_sync since its fix removes each avoidable wait by what the wait was (diagnose/cuda_sync.event_waits) and its
# pairs were measured with both variants in one process: its estimate (time blocked plus the GPU idle after each
# wait) was 1.37 ms on ex_exit and 1.92 on ex_laysync where the fix saved nothing measurable, and 2.56 (28%) on zoo
# sync_heavy, whose 12 waits per request block 11.6 us each with the GPU busy 5% of the request: the idle after a
# wait is the CPU launching the next layer, which it does with or without the wait. communication has no replayed
# pair yet. memory_bandwidth (ex_fusion: 1.04), memory_allocation (ex_alloc: 0.95) and model_loading (ex_reload:
# 1.00) since their fixes are replayed by mechanism (a fused chain launched once; the CPU time between allocation
# calls; the upload calls leaving with the uploads).
CALIBRATED = ("launch_overhead", "memory_transfer", "cpu_preprocessing", "cpu_postprocessing", "precision",
              "gpu_underutilization", "thread_contention", "memory_bandwidth", "memory_allocation", "model_loading",
              "cuda_sync")
# The profile formats the pairs were recorded in: every pair is an nsys export. A PyTorch profiler trace replays
# unchanged exactly, but its changed replays are unchecked, and on kineto-tbplugin-samples resnet50 (0 vs 4
# DataLoader workers: 33 ms per step measured) removing the DataLoader stage predicts nothing; there the findings
# carry `whatif` and keep their estimates.
CALIBRATED_SOURCES = ("nsys-sqlite",)


def median_graph_launch_ns(trace) -> int | None:
    """The median cudaGraphLaunch of this profile, None when it has none (cli/whatif.py's --graph uses it too).
    Computed once per trace: every finding's fix and the combined one ask (0.15 s each on launch_bound x40)."""
    return trace.once("_median_graph_launch", lambda: _median_graph_launch_ns(trace))


def _median_graph_launch_ns(trace) -> int | None:
    api = trace.table("api_calls")
    if not len(api["name_id"]):
        return None
    # each distinct name judged once (a count per id, not a sort of every call)
    gl = name_ids(trace, distinct_ids(api["name_id"]), lambda n: n in GRAPH_LAUNCH_CALLS)
    if not len(gl):
        return None
    sel = id_mask(api["name_id"], gl)
    return int(median(api["end_ns"][sel] - api["start_ns"][sel]))


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
            # the calls that issued the moved work go with it: a pageable upload's call stages the bytes on the CPU
            # for as long as the copy runs (ex_reload_before: 54 ms of cudaMemcpyAsync per request, which the
            # windows alone left in the request: replayed saving 192.7 ms against 236.7 measured)
            ch.remove_cpu_rows["api_calls"] = np.concatenate([np.asarray(ch.remove_cpu_rows.get("api_calls", []),
                                                                         np.int64), _issuing_calls(trace, c.table,
                                                                                                   c.rows)])
            ch.remove_cpu_windows.append((np.asarray(c.tid, np.int64), np.asarray(c.start_ns, np.int64),
                                          np.asarray(c.end_ns, np.int64)))
        elif isinstance(c, C.FuseKernels):
            # one kernel per chain: the members share the fused time in proportion to their own; one launch
            rows, chain = np.asarray(c.rows, np.int64), np.asarray(c.chain, np.int64)
            k = trace.table("kernels")
            dur = (k["end_ns"][rows] - k["start_ns"][rows]).astype(np.float64)
            tot = np.bincount(chain, weights=dur, minlength=len(c.fused_ns))
            ch.gpu_scale.append(("kernels", rows, np.asarray(c.fused_ns, np.float64)[chain] / np.maximum(tot[chain], 1)))
            ch.remove_cpu_rows["api_calls"] = np.concatenate([np.asarray(ch.remove_cpu_rows.get("api_calls", []),
                                                                         np.int64), np.asarray(c.launch_rows, np.int64)])
            ch.remove_cpu_windows.append((np.asarray(c.tid, np.int64), np.asarray(c.start_ns, np.int64),
                                          np.asarray(c.end_ns, np.int64)))
            how.append(f"{len(c.fused_ns)} chains ({len(rows)} kernels) each fused into one kernel as long as its "
                       "longest member, launched once (the other launches and the CPU dispatch between them go)")
        elif isinstance(c, C.OwnStreams):
            ch.stream_per_thread = ch.stream_per_thread or len(c.tid) > 1
        else:
            raise TypeError(f"no replay rule for {type(c).__name__}")
    return ch, how


def _issuing_calls(trace, table: str, rows) -> np.ndarray:
    """The api_calls rows that launched these rows of a GPU table (by process and correlation id)."""
    calls = issuing_calls(trace, table, rows)
    return calls[calls >= 0]


@dataclass
class Extrapolated:
    """The whole run, as a windowed replay predicts it: the recorded values less the saving replayed in the window.
    mean_latency_ns and interval_ns are what analyze uses; latency_ns (per request of the whole run) and measured
    are what `whatif` prints per request: a request of the window less its own replayed saving, any other less the
    window's mean saving per request (their mean over the measured requests is mean_latency_ns, unclamped)."""
    mean_latency_ns: float
    interval_ns: float
    latency_ns: np.ndarray
    measured: np.ndarray
    replayed: np.ndarray          # per request: in the window (its own saving replayed), else extrapolated


# A window whose requests' recorded mean latency is off the run's by more than this share is not the steady state
# of the run (tests/data ex_contention_before: 7 requests contend for a lock at the start, 120-770 ms against 10 ms
# after; the window's 10 ms against the run's 48 ms): the report says its extrapolation is rough.
WINDOW_STEADY_SHARE = 0.2


def _throughput_interval(out, lead_in: int) -> float:
    """The window's request interval in steady state: the time its measured requests took to finish after the
    lead-in's had, per request (Outcome.interval_ns, the span over the count, adds one request's latency)."""
    m = out.measured
    if lead_in == 0 or len(m) == 0:
        return out.interval_ns
    return float(out.finish_ns[m].max() - out.finish_ns[:lead_in].max()) / len(m)


def _extrapolate(whole: Extrapolated, win: W.Window, base, out) -> Extrapolated:
    """The whole run after the fix: its recorded latency and interval, less the window's saving per request in
    latency and in steady-state interval."""
    d_lat = base.mean_latency_ns - out.mean_latency_ns
    d_iv = _throughput_interval(base, win.lead_in) - _throughput_interval(out, win.lead_in)
    # per request: the window's own savings where replayed, the window's mean saving elsewhere
    d = np.full(len(whole.latency_ns), d_lat)
    m = base.measured                                   # the window's measured requests, lead-in first
    d[m + (win.first - win.lead_in)] = base.latency_ns[m] - out.latency_ns[m]
    return Extrapolated(max(0.0, whole.mean_latency_ns - d_lat), max(0.0, whole.interval_ns - d_iv),
                        np.maximum(whole.latency_ns - d, 0.0), whole.measured, whole.replayed)


class Replayer:
    """The unchanged replay (the baseline every saving is measured from) and the graph, built once per analysis
    (and once per `whatif`: the same rule). A profile over MAX_REPLAY_EVENTS is replayed over a window of its
    requests (`window`; `base` is then the whole run's recording and each run()'s outcome extrapolated from the
    window); `how` says which requests were replayed."""

    def __init__(self, trace, reqs, window_events: int | None = None):
        self.trace, self.reqs = trace, reqs
        self.error: str | None = None
        self.base = None
        self.window: W.Window | None = None
        self.how: list[str] = []
        self.steady = True
        self.done: dict = {}              # id(finding) -> run()'s result for its fix (combined() reuses it)
        events = sum(len(self.trace.table(t)["start_ns"]) for t in ("api_calls", "kernels", "copies", "memsets"))
        if len(self.reqs.measured) == 0:
            self.error = "no measured requests"
            return
        if window_events is None and events > MAX_REPLAY_EVENTS:
            window_events = REPLAY_WINDOW_EVENTS
        try:
            if window_events is not None:
                self.window = W.cut(self.trace, self.reqs, *W.pick(self.reqs, events, window_events))
                w = self.window
                self.win_base = R.replay(w.trace, w.reqs)
                lat, iv = R.recorded(self.reqs)
                replayed = np.zeros(self.reqs.count, bool)
                replayed[w.first:w.last + 1] = True
                self.base = Extrapolated(float(lat[self.reqs.measured].mean()), iv, lat.astype(np.float64),
                                         self.reqs.measured, replayed)
                self.how = [f"replayed requests {w.first + 1}-{w.last + 1} of {w.total} ({w.last - w.first + 1} "
                            f"consecutive measured requests in the middle of the run, after {w.lead_in} replayed "
                            f"but not measured: the profile has {events:,} CUDA calls and GPU operations, more "
                            f"than the {MAX_REPLAY_EVENTS:,} replayed whole), their saving per request taken for "
                            "every request"]
                self.steady = abs(self.win_base.mean_latency_ns - self.base.mean_latency_ns) <= (
                    WINDOW_STEADY_SHARE * self.base.mean_latency_ns)
                if not self.steady:
                    self.how[0] += (f"; the window's requests took {self.win_base.mean_latency_ns / 1e6:.3g} ms on "
                                    f"average against the run's {self.base.mean_latency_ns / 1e6:.3g} ms: the run "
                                    "is not in a steady state, so this is a rough extrapolation")
            else:
                self.base = R.replay(self.trace, self.reqs)
        except (R.ReplayError, ValueError) as err:
            self.base = None
            self.error = f"the replay cannot follow this profile ({err})"

    def run(self, ch: R.Change):
        try:
            if self.window is None:
                return R.replay(self.trace, self.reqs, ch), None
            w = self.window
            out = R.replay(w.trace, w.reqs, W.change_in(ch, w))
        except (R.ReplayError, ValueError) as err:
            return None, f"the replay cannot follow this fix in this profile ({err})"
        return _extrapolate(self.base, w, self.win_base, out), None


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


# A fix in a latency-bound run that removes time between requests (the serving loop's own work after each request,
# which the next one waits for: a cache emptied, buffers freed) lowers the request interval, the program's time per
# request, more than the latency the ranges measure. When the interval drops by more than the latency, by more than
# this share of the interval, the saving counted is the interval's (ex_emptycache_before: torch.cuda.empty_cache()
# after each request, 0.62 ms of its 4.96 ms interval between the ranges, 12.5%; the rule was written for that pair,
# after its numbers were seen). A fix that makes requests wait longer (latency up) is left to IN_FLIGHT_MAX.
BETWEEN_SHARE = 0.05


def _between(base, out) -> bool:
    d_lat = base.mean_latency_ns - out.mean_latency_ns
    d_iv = base.interval_ns - out.interval_ns
    return d_lat >= 0 and base.interval_ns > 0 and d_iv - d_lat > BETWEEN_SHARE * base.interval_ns


def _basis_after(basis: str, base, out) -> str:
    """The basis after the fix: a latency-bound run whose fix makes requests queue, or removes time between them,
    is counted in the interval."""
    if basis == "latency" and ((_overlapped(out) and not _overlapped(base)) or _between(base, out)):
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


def _share_pct(saved: float, before: float) -> float:
    """A saving as a share of the metric before it, in percent (at most 100, 0.1 precision)."""
    return round(min(100.0, 100.0 * saved / before) if before > 0 else 0.0, 1)


def _alternatives(ctx, rp, f: Finding, w: dict, basis: str) -> str:
    """Replay the other forms of the finding's fix (a diagnosis's `alternatives`), in the same metric as the main
    prediction; kept in whatif["alternatives"] (form, change, latency, interval, saving, severity) and returned as
    words for the estimate."""
    alts = ctx.cache.get("alternatives", {}).get(id(f)) or []
    out_w, words = [], []
    for form, said, changes in alts:
        ch, _ = to_replay(ctx.trace, changes)
        if ch.is_empty():
            continue
        out, err = rp.run(ch)
        if out is None:
            continue
        a, saved, before = _whatif(ch.describe(), [], rp.base, out, basis)
        pct = _share_pct(saved, before)
        out_w.append({"form": form, "change": [said], "mean_latency_ms": a["mean_latency_ms"],
                      "interval_ms": a["interval_ms"], "saving_ms": a["saving_ms"], "saving_pct": pct,
                      "severity": severity_for(pct, HIGH_PCT, MEDIUM_PCT)})
        words.append(f"{said}: {saved / 1e6:.3g} ms")
    if out_w:
        w["alternatives"] = out_w
    return (" (another form of the fix, replayed the same way: " + "; ".join(words) + ")") if words else ""


def start(ctx):
    """Build the replayer (the graph and the unchanged replay) on a thread of its own while the diagnoses run, which
    leave a core idle while they wait for tables (launch_bound: ~40 ms of the diagnoses' ~170); predict() takes it
    from ctx.once. Returns the future, to wait for before the trace is closed (its result or error is predict's)."""
    return on_own_thread(lambda: ctx.once("replayer", lambda: Replayer(ctx.trace, ctx.requests)), "replay")


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
    rp = ctx.once("replayer", lambda: Replayer(ctx.trace, ctx.requests))
    if rp.base is None:
        notes.append(f"Savings are the diagnoses' own estimates, not replayed: {rp.error}.")
        for f in todo:
            f.estimate = f"{f.estimate} (not replayed: {rp.error})"
        return findings, notes
    if rp.window is not None:
        w = rp.window
        notes.append(f"Savings were replayed over requests {w.first + 1}-{w.last + 1} of {w.total} (the profile is "
                     f"too large to replay whole in the time of an analysis) and taken per request for the whole run"
                     + ("." if rp.steady else f"; those requests took {rp.win_base.mean_latency_ns / 1e6:.3g} ms on "
                        f"average against the run's {rp.base.mean_latency_ns / 1e6:.3g} ms, so the run is not in a "
                        "steady state and the extrapolation is rough."))
    basis = _basis(load)
    for f in todo:
        ch, how = to_replay(ctx.trace, store[id(f)])
        how = rp.how + how
        if ch.is_empty():
            continue
        out, err = rp.done[id(f)] = rp.run(ch)
        if out is None:
            f.estimate = f"{f.estimate} (the diagnosis's own estimate: {err})"
            continue
        b = _basis_after(basis, rp.base, out)
        if b != basis and not (_overlapped(out) and not _overlapped(rp.base)):
            how = how + [f"this fix removes time between requests, on the serving thread (replayed: the interval "
                         f"{rp.base.interval_ns / 1e6:.3g} -> {out.interval_ns / 1e6:.3g} ms, the latency "
                         f"{rp.base.mean_latency_ns / 1e6:.3g} -> {out.mean_latency_ns / 1e6:.3g} ms), so the "
                         "saving counted is in the interval"]
        elif b != basis:
            how = how + [f"after this fix requests queue (replayed: {out.mean_latency_ns / 1e6:.3g} ms latency, "
                         f"one every {out.interval_ns / 1e6:.3g} ms), so the saving counted is in the interval"]
        w, saved, before = _whatif(ch.describe(), how, rp.base, out, b)
        old = f.impact_ms
        f.whatif = w
        alt_words = _alternatives(ctx, rp, f, w, b)
        if f.category not in CALIBRATED or ctx.trace.source not in CALIBRATED_SOURCES:
            w["used"] = False
            what = "fix" if f.category not in CALIBRATED else f"fix in a {ctx.trace.source} profile"
            f.estimate = (f"{f.estimate} (replayed, not used: this {what}'s replay is not yet calibrated against "
                          f"real fixes; it predicts {saved / 1e6:.3g} ms)")
            continue
        w["used"] = True
        f.impact_basis = b
        f.impact_ms = round(saved / 1e6, 3)
        f.impact_pct = _share_pct(saved, before)
        f.severity = severity_for(f.impact_pct, HIGH_PCT, MEDIUM_PCT)
        metric = "request interval" if b == "interval" else "mean latency"
        f.estimate = (f"predicted by replaying the requests with the fix applied ({'; '.join(w['change'])}): "
                      f"{metric} {before / 1e6:.3g} -> {(before - saved) / 1e6:.3g} ms"
                      + (f" ({'; '.join(how)})" if how else "")
                      + alt_words
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
    rp = ctx.once("replayer", lambda: Replayer(ctx.trace, ctx.requests))
    if rp.base is None:
        return None
    ch, how = R.Change(), list(rp.how)
    for f in chosen:
        c, h = to_replay(ctx.trace, store[id(f)])
        ch, how = ch.combined(c), how + [x for x in h if x not in how]
    if ch.is_empty():
        return None
    # one finding: its own replay is this one (the same change)
    out, err = rp.done[id(chosen[0])] if len(chosen) == 1 and id(chosen[0]) in rp.done else rp.run(ch)
    if out is None:
        return {"findings": [f.category for f in chosen], "error": err}
    b = _basis_after(_basis(load), rp.base, out)
    w, saved, before = _whatif(ch.describe(), how, rp.base, out, b)
    w["findings"] = [f.category for f in chosen]
    # as for single findings: a prediction to rely on only where every fix in it is calibrated
    w["used"] = ctx.trace.source in CALIBRATED_SOURCES and all(f.category in CALIBRATED for f in chosen)
    w["saving_pct"] = round(min(100.0, 100.0 * saved / before) if before > 0 else 0.0, 1)
    return w
