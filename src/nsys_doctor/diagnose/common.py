"""Shared by the diagnoses: severity from impact, building findings, placing CPU events inside requests."""
from __future__ import annotations

import numpy as np

from ..model.projection import assign_calls
from ..report import Evidence, Finding, Instance, severity_for

# Severity from the share of mean request latency that fixing the problem would save. One scale for all diagnoses,
# so rankings compare like with like. 25%: a fix that big is worth doing first; 8%: worth knowing, under the
# request-to-request spread (p90/p50 of 1.05-1.3 in the zoo profiles) it would be hard to even measure.
HIGH_PCT = 25.0
MEDIUM_PCT = 8.0
WORST = 5          # worst instances kept as evidence


def make_finding(ctx, category: str, title: str, impact_ns: float, estimate: str, evidence: Evidence,
                 fix: str, why: str) -> Finding:
    mean = ctx.mean_latency_ns
    impact_ms = max(0.0, float(impact_ns) / 1e6)
    pct = 100.0 * float(impact_ns) / mean if mean > 0 else 0.0
    pct = max(0.0, min(pct, 100.0))
    return Finding(category=category, severity=severity_for(pct, HIGH_PCT, MEDIUM_PCT), title=title,
                   impact_ms=round(impact_ms, 3), impact_pct=round(pct, 1), estimate=estimate, evidence=evidence,
                   fix=fix, why=why)


def events_in_requests(ctx, tid: np.ndarray, start_ns: np.ndarray) -> np.ndarray:
    """For CPU events (thread, time): the request open on that thread at that time, or -1."""
    return assign_calls(ctx.requests.table, tid, start_ns)


def measured_mask(ctx, request_index: np.ndarray) -> np.ndarray:
    """True where the request index belongs to a measured (non warm-up) request."""
    return request_index >= ctx.requests.warmup


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
