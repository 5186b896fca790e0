"""Diagnoses: one module per bottleneck, each following the contract in common.py (CATEGORIES, NEEDS, measure,
change, finding, diagnose).

A new diagnosis is one new module in this folder plus its import and its place in DIAGNOSES below (a misspelt name
fails at import). `diagnose_all` runs them all over one Context (the trace and its requests), keeps every finding,
and ranks by impact. They run on a few threads: numpy lets go of the GIL in their sweeps, so two diagnoses on two
cores take about the time of the longer one (launch_bound x40 of benchmarks/make_large.py: 2.65 s one after
another, 1.49 s on two threads). Intermediate results they share go through `ctx.once`, which computes each once
whichever thread asks first.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..model.requests import Requests
from ..model.trace import Trace, once
from ..report import Finding
from . import (communication, cpu_processing, cuda_sync, gpu_underutilization, launch_overhead, memory_allocation,
               memory_bandwidth, memory_transfer, model_loading, precision, thread_contention)

# The diagnoses, in order. Order matters only for LAST, which runs after the others and sees what they explained
# (ctx.cache["findings"]); the others start in this order on DIAGNOSE_THREADS threads and report in this order.
DIAGNOSES: list = [cuda_sync, memory_allocation, launch_overhead, cpu_processing, memory_transfer, memory_bandwidth, precision,
                   thread_contention, communication, model_loading, gpu_underutilization]
LAST = gpu_underutilization
# submitted to the pool first: the longest diagnoses, so that none is left running alone at the end (launch_bound x40:
# launch_overhead 0.57 s and memory_bandwidth 0.46 s CPU, the others under 0.25 s); findings still come in DIAGNOSES
# order, and what they share goes through ctx.once whichever computes it
START_FIRST: list = [launch_overhead, memory_bandwidth]
def cap_severity(findings: list) -> list:
    """A diagnosis may declare MAX_SEVERITY (with its reason beside it): the most its findings are reported at,
    whatever their predicted impact; the impact itself is shown unchanged, and the finding says it was capped."""
    caps = {c: m.MAX_SEVERITY for m in DIAGNOSES if hasattr(m, "MAX_SEVERITY") for c in m.CATEGORIES}
    order = {"high": 0, "medium": 1, "low": 2}
    for f in findings:
        cap = caps.get(f.category)
        if cap is not None and order[f.severity] < order[cap]:
            f.estimate = (f"{f.estimate} Reported as {cap}, not {f.severity}: the most this category is "
                          f"reported at ({f.category}.MAX_SEVERITY).").strip()
            f.severity = cap
    return findings


# one per core, at most 4: measured on 2 cores only; the Python-level part of each diagnosis (which holds the GIL)
# bounds what more threads could add
DIAGNOSE_THREADS = max(1, min(4, os.cpu_count() or 1))


@dataclass
class Context:
    trace: Trace
    requests: Requests
    cache: dict = field(default_factory=dict)   # shared intermediate results between diagnoses
    not_evaluated: dict = field(default_factory=dict)   # category -> why its diagnosis could not run (common.py)
    _locks: dict = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def once(self, key, compute):
        """cache[key], computed by the first diagnosis that asks; one asking meanwhile waits for that result."""
        return once(self.cache, self._locks, self._guard, key, compute)

    @property
    def measured(self) -> np.ndarray:
        return self.requests.measured

    @property
    def mean_latency_ns(self) -> float:
        lat = self.requests.table["latency_ns"][self.measured]
        return float(lat.mean()) if len(lat) else 0.0


def name(module) -> str:
    """A diagnosis module's short name (e.g. "cuda_sync")."""
    return module.__name__.rsplit(".", 1)[-1]


def needs() -> list[str]:
    """The tables the diagnoses declare (their NEEDS), each once, in DIAGNOSES order: what an analysis reads ahead."""
    out: list[str] = []
    for mod in DIAGNOSES:
        for table in mod.NEEDS:
            if table not in out:
                out.append(table)
    return out


def categories() -> list[str]:
    """Every category the diagnoses emit, in DIAGNOSES order."""
    return [c for mod in DIAGNOSES for c in mod.CATEGORIES]


def not_evaluated(ctx: Context) -> dict[str, str]:
    """category -> why it was not evaluated, in DIAGNOSES order (what the Report's profile.not_evaluated holds)."""
    return {c: ctx.not_evaluated[c] for c in categories() if c in ctx.not_evaluated}


def run_one(mod, ctx: Context) -> list[Finding]:
    """One diagnosis: measure, then finding; each finding's fix (`change(measurement)`, model/changes.py) is kept
    in ctx.cache["changes"][id(finding)] for the replay's prediction (analysis/predict.py). A diagnosis emitting
    several categories (cpu_processing: one finding and one change per stage) pairs them in order when the counts
    agree; otherwise every finding of the module gets all its changes. A module's optional `alternatives(m)`, other
    forms of the same fix ([(form, words, changes)]), are kept in ctx.cache["alternatives"][id(finding)]."""
    m = mod.measure(ctx)
    if m is None:
        return []
    found = mod.finding(ctx, m) or []
    changes = list(mod.change(m) or [])
    store = ctx.cache.setdefault("changes", {})
    paired = len(getattr(mod, "CATEGORIES", ())) > 1 and len(changes) == len(found) > 1
    for i, f in enumerate(found):
        store[id(f)] = [changes[i]] if paired else changes
    # other forms of the fix, predicted beside it (optional `alternatives(m)`: [(form, words, changes)])
    alts = list(getattr(mod, "alternatives", lambda m: [])(m) or [])
    if alts and not paired:
        other = ctx.cache.setdefault("alternatives", {})
        for f in found:
            other[id(f)] = alts
    return found


def diagnose_all(ctx: Context, threads: int | None = None) -> list[Finding]:
    findings: list[Finding] = []
    if len(ctx.measured) == 0:      # nothing to measure any problem against
        ctx.not_evaluated.update(dict.fromkeys(categories(), "no measured requests"))
    ctx.cache["findings"] = findings
    ctx.cache.setdefault("changes", {})
    first = [m for m in DIAGNOSES if m is not LAST]
    threads = DIAGNOSE_THREADS if threads is None else threads
    # LAST's work that needs no other finding (its optional `prepare(ctx)`, cached through ctx.once) runs on the
    # pool with the others, first, instead of alone after them (launch_bound x40: 0.5 s of a 2.2 s stage)
    prepare = getattr(LAST, "prepare", None) if LAST in DIAGNOSES else None
    if threads > 1 and len(first) > 1:
        with ThreadPoolExecutor(threads, thread_name_prefix="nsys-doctor-diagnose") as pool:
            ahead = pool.submit(prepare, ctx) if prepare is not None else None
            order = [m for m in START_FIRST if m in first] + [m for m in first if m not in START_FIRST]
            jobs = {id(m): pool.submit(run_one, m, ctx) for m in order}
            for m in first:              # in DIAGNOSES order; the first error is raised as it would be in a loop
                findings.extend(jobs[id(m)].result() or [])
            if ahead is not None:
                ahead.result()
    else:
        for m in first:
            findings.extend(run_one(m, ctx))
    if LAST in DIAGNOSES:
        findings.extend(run_one(LAST, ctx))
    findings.sort(key=lambda f: -f.impact_ms)
    return findings
