"""CPU pre- and post-processing: the request thread computes on the CPU before its first GPU work (decode, resize,
normalise) or after its last GPU result (NMS, formatting), while the GPU has nothing of this request to do.

The window before the first launch and the window after the last GPU result are split by cause (model/activity.py):
time inside CUDA calls, blocked in OS calls (locks: thread_contention; sleep and file/socket reads: data loading,
gpu_underutilization) and off-CPU time are not CPU work. What remains is the thread running its own code, confirmed by
CPU samples where the profile has them, and only the part of it during which the GPU idled is a saving.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import activity as cs
from ..model.arrays import uniq
from ..model.changes import RemoveCpuTime
from ..model.projection import assign_calls, launch_calls
from ..report import Evidence
from .common import WORST, device_idle, instance, make_finding

MIN_SAVING_NS = 1_000_000     # under 1 ms per request the window is Python glue (healthy 0.04, sync_heavy 0.24 ms)
MIN_SAVING_PCT = 3.0          # of mean latency; below, not worth a line (memcpy_pageable post 1.8 ms = 0.7%)
MIN_SAMPLE_CONFIRM = 0.5      # samples must cover half of the remainder to trust it is CPU work, else scale down
                              # (cpu_preproc: 47 samples x 2 ms = 94 ms vs 89 ms remainder)
CATEGORIES = ("cpu_preprocessing", "cpu_postprocessing")
NEEDS = ("api_calls", "os_calls", "sched", "samples", "callchains", "ranges")
TOP_PHASES = 3                # nested NVTX ranges named in the evidence
WAIT_NOTE_MS = 0.1            # blocked time in the window (locks, sleep, I/O) worth a note pointing elsewhere

PHASES = {"cpu_preprocessing": ("before its first GPU launch", "pre-processing"),
          "cpu_postprocessing": ("after its last GPU result", "post-processing")}


def request_windows(ctx) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per request: (lo, hi) of the pre window (start -> first launch) and post window (GPU end -> range end)."""
    return ctx.once("cpu_windows", lambda: _request_windows(ctx))


def _request_windows(ctx) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    trace, req = ctx.trace, ctx.requests
    t, n = req.table, req.count
    api = trace.table("api_calls")
    first = np.full(n, np.iinfo(np.int64).max)
    launch = launch_calls(trace) & (req.api_request >= 0) if len(req.api_request) else np.zeros(0, bool)
    if launch.any():
        np.minimum.at(first, req.api_request[launch], api["start_ns"][launch])
    first = np.where(first == np.iinfo(np.int64).max, np.where(t["gpu_start_ns"] >= 0, t["gpu_start_ns"], t["end_ns"]),
                     first)
    first = np.clip(first, t["start_ns"], t["end_ns"])
    pre = (t["start_ns"], _before_gpu_stage(ctx, first))
    post_lo = np.where(t["gpu_end_ns"] >= 0, t["gpu_end_ns"], t["end_ns"])
    post = (np.clip(post_lo, t["start_ns"], t["end_ns"]), t["end_ns"])
    return {"cpu_preprocessing": pre, "cpu_postprocessing": post}


def _before_gpu_stage(ctx, first: np.ndarray) -> np.ndarray:
    """Per request: where its pre-processing ends. At its first launch, unless the user's NVTX ranges split the
    request into stages and the first launch lies in a later one (a range that starts after another nested range
    of the request has ended: "tokenize" then "model"): then at that stage's start. The stage's own CPU work before
    its first launch (building the input tensor from the ids) goes with it; moving the pre-processing to a worker
    leaves it on the request thread (ex_tokworkers_before: 'tokenize' 5.2 ms, then 1.0 ms in 'model' before its
    first launch; the fixed program's 'model' range still spends it)."""
    t, req = ctx.requests.table, ctx.requests
    r = ctx.trace.table("ranges")
    if len(r.get("start_ns", [])) == 0 or req.count == 0:
        return first
    own = assign_calls({"tid": t["tid"], "start_ns": t["start_ns"], "end_ns": t["end_ns"]}, r["tid"], r["start_ns"])
    k = np.clip(own, 0, None)
    nested = (own >= 0) & (r["end_ns"] <= t["end_ns"][k]) & (r["start_ns"] > t["start_ns"][k]) & \
        (r["name"] != req.range_name)
    if not nested.any():
        return first
    idx = np.flatnonzero(nested)
    k = own[idx]
    rs, re = r["start_ns"][idx], r["end_ns"][idx]
    # the innermost nested range holding the first launch (the latest start), and the earliest end of any
    holds = (rs <= first[k]) & (first[k] <= re)
    stage = np.full(req.count, np.iinfo(np.int64).min)
    np.maximum.at(stage, k[holds], rs[holds])
    earliest_end = np.full(req.count, np.iinfo(np.int64).max)
    np.minimum.at(earliest_end, k, re)
    split = (stage > np.iinfo(np.int64).min) & (earliest_end <= stage)
    return np.where(split, stage, first)


def window_causes(ctx, lo: np.ndarray, hi: np.ndarray, idle_only: bool) -> dict[str, np.ndarray]:
    """Per request (all of them): ns per cause inside its window, optionally only while the GPU idled."""
    t = ctx.requests.table
    n = ctx.requests.count
    out = {c: np.zeros(n, np.int64) for c in cs.CAUSES}
    if n == 0:
        return out
    within = device_idle(ctx, int(t["start_ns"].min()), int(max(t["end_ns"].max(), t["gpu_end_ns"].max()))) \
        if idle_only else None
    for tid in uniq(t["tid"]):
        m = np.flatnonzero(t["tid"] == tid)
        got = cs.causes_in_windows(ctx, int(tid), lo[m], hi[m], within)
        for c in cs.CAUSES:
            out[c][m] = got[c]
    return out


def nested_phases(ctx, lo: np.ndarray, hi: np.ndarray) -> list[dict]:
    """User NVTX ranges nested in the windows (e.g. "preprocess"), total ms per request, largest first."""
    r = ctx.trace.table("ranges")
    if len(r.get("start_ns", [])) == 0:
        return []
    t, m = ctx.requests.table, ctx.requests.measured
    win = assign_calls({"tid": t["tid"][m], "start_ns": lo[m], "end_ns": hi[m]}, r["tid"], r["start_ns"])
    ok = (win >= 0) & (r["end_ns"] <= hi[m][np.clip(win, 0, None)]) & (r["name"] != ctx.requests.range_name)
    if not ok.any():
        return []
    names, inv = np.unique(r["name"][ok].astype(str), return_inverse=True)
    tot = np.bincount(inv, weights=(r["end_ns"][ok] - r["start_ns"][ok]).astype(float))
    order = np.argsort(-tot)[:TOP_PHASES]
    return [{"range": str(names[k]), "ms_per_request": round(float(tot[k]) / len(m) / 1e6, 3)} for k in order]


@dataclass
class Phase:
    """One CPU stage (pre- or post-processing) of the measured requests, over its reporting threshold."""
    category: str
    rows: np.ndarray            # the measured requests (indices into the request table)
    tid: np.ndarray             # per request (all of them): its thread
    lo: np.ndarray              # per request (all of them): the window
    hi: np.ndarray
    full: dict                  # per cause (model.activity.CAUSES): ns per request inside the window
    idle: dict                  # the same, only while the GPU idled
    saving: float               # mean ns per measured request: on-CPU time while the GPU idled, x confirm
    confirm: float              # share of the on-CPU time confirmed by CPU samples (1.0: trusted)
    sample_cover: float | None  # CPU samples x period / on-CPU time (None: no samples recorded)
    funcs: list                 # hot functions in the window (model.activity.hot_functions)
    samples: int
    nvtx: list                  # user NVTX ranges nested in the window


@dataclass
class Measurement:
    period_ns: int              # CPU sample period
    phases: list                # Phase, in PHASES order


def _phase(ctx, cat: str, lo: np.ndarray, hi: np.ndarray, period: int) -> Phase | None:
    req, trace = ctx.requests, ctx.trace
    m = req.measured
    full = window_causes(ctx, lo, hi, idle_only=False)
    idle = window_causes(ctx, lo, hi, idle_only=True)
    cpu_ns = full["cpu"][m].astype(float)
    # confirm the remainder is CPU work with samples (it also holds untraced waits when osrt/sched are absent)
    confirm, cover = 1.0, None
    if trace.has("samples"):
        win = cs.samples_in_windows(trace, req.table["tid"][m], lo[m], hi[m])
        sampled = float((win >= 0).sum()) * period
        if cpu_ns.sum() > 0:
            confirm = min(1.0, sampled / cpu_ns.sum())
        cover = confirm
        if confirm >= MIN_SAMPLE_CONFIRM:
            confirm = 1.0
    saving = float(idle["cpu"][m].mean()) * confirm
    if saving < MIN_SAVING_NS or 100.0 * saving / ctx.mean_latency_ns < MIN_SAVING_PCT:
        return None
    funcs, nsamp = cs.hot_functions(trace, req.table["tid"][m], lo[m], hi[m])
    return Phase(category=cat, rows=m, tid=req.table["tid"], lo=lo, hi=hi, full=full, idle=idle, saving=saving,
                 confirm=confirm,
                 sample_cover=cover, funcs=funcs, samples=nsamp, nvtx=nested_phases(ctx, lo, hi))


def measure(ctx) -> Measurement | None:
    if len(ctx.requests.measured) == 0 or ctx.mean_latency_ns <= 0:
        return None
    period = cs.sample_period_ns(ctx.trace)
    phases = [p for cat, (lo, hi) in request_windows(ctx).items()
              if (p := _phase(ctx, cat, lo, hi, period)) is not None]
    return Measurement(period_ns=period, phases=phases) if phases else None


def change(m: Measurement) -> list:
    """Each stage leaves the request's critical path (a worker prepares it ahead): its windows' CPU time removed."""
    return [RemoveCpuTime(tid=p.tid[p.rows], start_ns=p.lo[p.rows], end_ns=p.hi[p.rows]) for p in m.phases]


def _notes(trace, p: Phase, ms) -> list[str]:
    notes = []
    if p.sample_cover is not None and p.sample_cover < MIN_SAMPLE_CONFIRM:
        notes.append(f"CPU samples cover only {p.sample_cover:.0%} of this time: part of it is waiting that the "
                     "OS runtime trace did not record")
    elif p.sample_cover is None:
        notes.append("no CPU samples (record with --sample=process-tree): CPU time is the window minus traced "
                     "waits, not confirmed")
    if not trace.has("os_calls"):
        notes.append("no OS runtime trace (--trace=osrt): blocking reads, sleeps and lock waits cannot be "
                     "told apart from CPU work")
    waits = ms("lock") + ms("sleep") + ms("io")
    if waits > WAIT_NOTE_MS:
        notes.append(f"{waits:.1f} ms of the window is blocked (locks, sleep, I/O), not counted here: see "
                     "thread_contention / gpu_underutilization")
    return notes


def _finding(ctx, p: Phase, period: int):
    req, trace = ctx.requests, ctx.trace
    m = req.measured
    where, word = PHASES[p.category]
    lo, hi, full, idle, saving, funcs, phases = p.lo, p.hi, p.full, p.idle, p.saving, p.funcs, p.nvtx
    ms = lambda c: round(float(full[c][m].mean()) / 1e6, 3)  # noqa: E731
    numbers = {"window_ms_per_request": round(float((hi - lo)[m].mean()) / 1e6, 3),
               "cpu_ms_per_request": round(float(full["cpu"][m].astype(float).mean()) * p.confirm / 1e6, 3),
               "cpu_while_gpu_idle_ms_per_request": round(saving / 1e6, 3),
               "lock_wait_ms_per_request": ms("lock"), "sleep_ms_per_request": ms("sleep"),
               "io_ms_per_request": ms("io"), "cuda_api_ms_per_request": round(ms("sync") + ms("copy")
                                                                             + ms("launch"), 3),
               "off_cpu_runnable_ms_per_request": ms("runqueue"), "cpu_samples": p.samples,
               "sample_period_ms": round(period / 1e6, 3)}
    if phases:
        numbers["nvtx_phases"] = phases
    worst = []
    for r in m[np.argsort(-idle["cpu"][m])[:WORST]]:
        f, _ = cs.hot_functions(trace, req.table["tid"][r:r + 1], lo[r:r + 1], hi[r:r + 1], top=1)
        worst.append(instance(ctx, int(r), lo[r], hi[r], f"{word} on the CPU {idle['cpu'][r] / 1e6:.1f} ms "
                              f"while the GPU idled", int(req.table["tid"][r]),
                              name=phases[0]["range"] if phases else None, code=cs.code_line(f)))
    hot = f" (hottest: {funcs[0]['function']} in {funcs[0]['module']})" if funcs else ""
    named = f" in NVTX range {phases[0]['range']!r}" if phases else ""
    title = f"CPU {word}{named} keeps the GPU idle {saving / 1e6:.1f} ms per request {where}{hot}"
    return make_finding(
        ctx, p.category, title, saving,
        "on-CPU time of the request thread in the window (window minus CUDA calls, OS-runtime waits and off-CPU "
        "time, checked against CPU samples) that overlaps GPU idle time; overlapping it with the GPU work of "
        "another request or moving it to the GPU removes it from the critical path",
        Evidence(numbers=numbers, worst=worst, code=funcs, notes=_notes(trace, p, ms)),
        fix=(f"Move the {word} off the request's critical path: run it in a worker pool / data-loader process "
             "that prepares the next request while the GPU runs this one, or do it on the GPU (torch / DALI / "
             "cv-cuda kernels, vectorised numpy instead of Python loops)."),
        why=(f"The serving thread spends {numbers['cpu_ms_per_request']:.1f} ms per request running its own code "
             f"{where}, and the GPU has nothing of this request to run meanwhile, so each request pays the CPU "
             "time and the GPU time one after the other."))


def finding(ctx, m: Measurement) -> list:
    return [_finding(ctx, p, m.period_ns) for p in m.phases]


def diagnose(ctx) -> list:
    m = measure(ctx)
    return [] if m is None else finding(ctx, m)
