"""Shared by the diagnoses: the contract every diagnosis module follows, severity from impact, building findings,
placing CPU events inside requests, and the intermediate results several diagnoses use (each computed once per
analysis through ctx.once).

The contract of a diagnosis module (diagnose/__init__.py runs them; tests/diagnose/test_contract.py checks it):
- `CATEGORIES`: the finding categories it can emit (their union over DIAGNOSES is report.CATEGORIES);
- `NEEDS`: the tables it reads (read ahead by the analysis);
- `measure(ctx) -> Measurement | None`: a dataclass of numbers, arrays and row indices, no words; None when the
  diagnosis does not apply (what it measured is under its reporting threshold), or `not_evaluated(...)` (also None)
  when the profile lacks the data it reads, so that the Report says so and `check --fail-on` cannot pass on it;
- `change(measurement) -> list[Change]`: what its fix does to the trace, in model/changes.py's vocabulary;
- optional `alternatives(measurement) -> list[(form, words, list[Change])]`: other forms of the same fix, replayed
  beside it and reported in the finding's `whatif.alternatives` (cuda_sync: bare syncs replaced by CUDA events);
- `finding(ctx, measurement) -> list[Finding]`: the wording (title, evidence, fix, why);
- `diagnose(ctx) -> list[Finding]`: measure, then finding (none when measure gives None): what callers use;
- optional, LAST only: `prepare(ctx)`, the part of measure that needs no other finding (cached through ctx.once),
  which diagnose_all runs on the pool beside the others.
"""
from __future__ import annotations

import numpy as np

from ..model.host_waits import host_waits as _host_waits
from ..model.intervals import free_within
from ..model.projection import assign_calls, gpu_busy_union
from ..report import Evidence, Finding, Instance, severity_for

# Severity from the share of mean request latency that fixing the problem would save. One scale for all diagnoses,
# so rankings compare like with like. 25%: a fix that big is worth doing first; 8%: worth knowing, under the
# request-to-request spread (p90/p50 of 1.05-1.3 in the zoo profiles) it would be hard to even measure.
HIGH_PCT = 25.0
MEDIUM_PCT = 8.0
WORST = 5          # worst instances kept as evidence
MAX_IDLE_SHARE = 0.1   # a request window with < 10% GPU idle is GPU-bound: its latency is the queue of GPU work
                       # (membw_bound and fp32_gemm: < 1% idle, every starved zoo profile > 80%)


def make_finding(ctx, category: str, title: str, impact_ns: float, estimate: str, evidence: Evidence,
                 fix: str, why: str) -> Finding:
    mean = ctx.mean_latency_ns
    impact_ms = max(0.0, float(impact_ns) / 1e6)
    pct = 100.0 * float(impact_ns) / mean if mean > 0 else 0.0
    pct = max(0.0, min(pct, 100.0))
    return Finding(category=category, severity=severity_for(pct, HIGH_PCT, MEDIUM_PCT), title=title,
                   impact_ms=round(impact_ms, 3), impact_pct=round(pct, 1), estimate=estimate, evidence=evidence,
                   fix=fix, why=why)


def not_evaluated(ctx, categories, reason: str) -> None:
    """measure's answer when the profile lacks what it reads: None, like "nothing found", with `reason` recorded
    for each of `categories` (Report.profile["not_evaluated"]; `check --fail-on CATEGORY` fails on it)."""
    for cat in categories:
        ctx.not_evaluated.setdefault(cat, reason)
    return None


def no_data(trace, table: str, what: str) -> str:
    """The reason a table is missing, in words: "no GPU metrics: not recorded (nsys profile ...)"."""
    return f"no {what}: {trace.absent.get(table, 'none in the profile')}"


def events_in_requests(ctx, tid: np.ndarray, start_ns: np.ndarray) -> np.ndarray:
    """For CPU events (thread, time): the request open on that thread at that time, or -1."""
    return assign_calls(ctx.requests.table, tid, start_ns)


def instance(ctx, request: int, start_ns: int, end_ns: int, what: str, tid: int | None = None,
             name: str | None = None, code: str | None = None) -> Instance:
    return Instance(what=what, start_ns=int(start_ns), end_ns=int(end_ns), request=int(request),
                    thread=ctx.trace.thread_name(tid) if tid is not None else None, name=name, code=code,
                    value_ms=round((int(end_ns) - int(start_ns)) / 1e6, 3))


def per_request_mean(values: np.ndarray, request: np.ndarray, ctx) -> float:
    """Sum of `values` per measured request, averaged over measured requests (requests with none count as 0)."""
    n = ctx.requests.count
    m = (request >= ctx.requests.warmup) & (request >= 0)
    tot = np.bincount(request[m], weights=values[m], minlength=n)[ctx.requests.warmup:]
    return float(tot.mean()) if len(tot) else 0.0


def host_waits(ctx) -> dict:
    """model.host_waits for this analysis, computed once whichever diagnosis asks first."""
    return ctx.once("sync_calls", lambda: _host_waits(ctx.trace, ctx.requests))


def device_idle(ctx, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Times in [lo, hi) when no GPU ran anything (all devices together), as a disjoint sorted set (cached)."""
    return ctx.once(("device_idle", lo, hi), lambda: free_within(*gpu_busy_union(ctx.trace), lo, hi))


def latency_saving(ctx, saved_gpu_ns: np.ndarray) -> tuple[float, float]:
    """Per measured request: GPU time saved -> latency saved. Where the GPU never idles during the request, requests
    queue behind earlier ones doing the same work, so latency shrinks by the same share as the GPU work:
    saved x device_busy / own_busy. Elsewhere latency shrinks by the GPU time saved. Returns (mean ns, mean factor)."""
    t, m = ctx.requests.table, ctx.measured
    if len(m) == 0:
        return 0.0, 1.0
    own = np.maximum(t["busy_ns"][m], 1).astype(np.float64)
    lat = np.maximum(t["latency_ns"][m], 1).astype(np.float64)
    saturated = t["idle_ns"][m] / lat < MAX_IDLE_SHARE
    factor = np.where(saturated, np.clip(t["device_busy_ns"][m] / own, 1.0, lat / own), 1.0)
    saved = np.minimum(saved_gpu_ns[m] * factor, lat)
    return float(saved.mean()), float(factor.mean())
