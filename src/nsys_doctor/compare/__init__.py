"""Compare two Reports: did requests get faster or slower, how sure are we, and where did the time go.

`compare(before, after) -> dict` (a Diff, plain data like the Report). Latency is compared as two distributions of
measured (not warm-up) requests: the change of each percentile with a bootstrap confidence interval, and a
Mann-Whitney rank test. A change counts only when all three agree (CI, test, practical size); `check` uses the same
decision, so run-to-run noise does not fail a build.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import NoData
from ..report import SEVERITIES, Report

PERCENTILES = (50, 90, 99)
RESAMPLES = 2000            # bootstrap resamples: the 2.5% / 97.5% quantiles of 2000 move by < 0.05 ms on the zoo
SEED = 20240607             # fixed: the same two reports always give the same intervals (and the same CI verdict)
CONFIDENCE = 0.95           # two-sided bootstrap interval
ALPHA = 0.01                # rank-test level; strict because a CI job compares many builds (few false alarms)
MIN_CHANGE_PCT = 8.0        # one program profiled three times on one H100 (tests/data/ex_sync_after, _run2, _run3):
                            # p50 6.45 / 6.12 / 6.09 ms, up to 5.6% apart, each "significant" by CI and rank test
                            # because requests within a run agree; the spread is between runs (clocks, placement)
MIN_REQUESTS = 5            # below this per side neither the bootstrap nor the normal approximation means much
CHUNK_CELLS = 4_000_000     # resampled values held at once (32 MB of float64), so long runs stay in memory
TOP_KERNELS = 40            # kernels listed in the Diff, largest per-request change first
PARTS = {"compute": "compute_ms", "copies": "copy_ms", "other_gpu_work": "other_gpu_ms", "gpu_idle": "idle_ms",
         "cpu": "cpu_ms", "queue": "queue_ms", "service": "service_ms"}
COUNTS = ("launches_per_request", "kernels_per_request", "copies_per_request", "syncs_per_request")


def measured(report: Report, column: str = "latency_ms") -> np.ndarray:
    pr = report.per_request or {}
    values = np.asarray(pr.get(column, []), dtype=np.float64)
    warm = np.asarray(pr.get("warmup", [False] * len(values)), dtype=bool)
    return values[~warm] if len(warm) == len(values) else values


def bootstrap_percentile_change(a: np.ndarray, b: np.ndarray, qs=PERCENTILES, resamples: int = RESAMPLES,
                                seed: int = SEED) -> dict[int, tuple[float, float]]:
    """Confidence interval of percentile(b) - percentile(a), resampling each side with replacement."""
    rng = np.random.default_rng(seed)
    diffs = np.empty((resamples, len(qs)))
    step = max(1, CHUNK_CELLS // max(len(a), len(b)))
    for lo in range(0, resamples, step):
        k = min(step, resamples - lo)
        ra = a[rng.integers(0, len(a), (k, len(a)))]
        rb = b[rng.integers(0, len(b), (k, len(b)))]
        diffs[lo:lo + k] = (np.percentile(rb, qs, axis=1) - np.percentile(ra, qs, axis=1)).T
    tail = 100 * (1 - CONFIDENCE) / 2
    lo_hi = np.percentile(diffs, [tail, 100 - tail], axis=0)
    return {q: (float(lo_hi[0, i]), float(lo_hi[1, i])) for i, q in enumerate(qs)}


def mann_whitney(a: np.ndarray, b: np.ndarray) -> dict:
    """Two-sided Mann-Whitney U test, normal approximation with tie and continuity correction.
    `p_after_faster`: probability that a random request of b is faster than one of a (ties count half)."""
    n1, n2 = len(a), len(b)
    both = np.concatenate([a, b])
    uniq, inv, counts = np.unique(both, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1                 # average rank of each tie group
    ranks = (first_rank + (counts - 1) / 2.0)[inv]
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)            # pairs where a > b
    n = n1 + n2
    mu = n1 * n2 / 2
    tie = float((counts.astype(np.float64) ** 3 - counts).sum()) / (n * (n - 1)) if n > 1 else 0.0
    sigma = math.sqrt(max(n1 * n2 / 12 * ((n + 1) - tie), 0.0))
    if sigma == 0:
        z, p = 0.0, 1.0
    else:
        z = (u1 - mu - math.copysign(0.5, u1 - mu)) / sigma if u1 != mu else 0.0
        p = math.erfc(abs(z) / math.sqrt(2))
    return {"u": u1, "z": round(z, 3), "p": p, "p_after_faster": round(u1 / (n1 * n2), 4) if n1 * n2 else 0.5}


def latency_change(a: np.ndarray, b: np.ndarray, min_change_pct: float = MIN_CHANGE_PCT) -> dict:
    """Percentile changes with CIs, rank test, and the verdict: faster / slower / no significant change."""
    out: dict = {"n_before": int(len(a)), "n_after": int(len(b)), "percentiles": {}}
    if len(a) < MIN_REQUESTS or len(b) < MIN_REQUESTS:
        out.update(verdict="no significant change", change_pct=0.0,
                   reasons=[f"too few measured requests to tell ({len(a)} before, {len(b)} after; "
                            f"at least {MIN_REQUESTS} each are needed)"])
        return out
    ci = bootstrap_percentile_change(a, b)
    for q in PERCENTILES:
        pa, pb = float(np.percentile(a, q)), float(np.percentile(b, q))
        out["percentiles"][f"p{q}"] = {
            "before_ms": round(pa, 4), "after_ms": round(pb, 4), "change_ms": round(pb - pa, 4),
            "change_pct": round(100 * (pb - pa) / pa, 2) if pa else 0.0,
            "ci_ms": [round(ci[q][0], 4), round(ci[q][1], 4)]}
    test = mann_whitney(a, b)
    out["mann_whitney"] = test
    p50 = out["percentiles"]["p50"]
    lo, hi = p50["ci_ms"]
    ci_excludes_zero = lo > 0 or hi < 0
    big_enough = abs(p50["change_pct"]) > min_change_pct
    significant = test["p"] < ALPHA
    out["change_pct"] = p50["change_pct"]
    reasons = [f"p50 {p50['before_ms']:.3f} -> {p50['after_ms']:.3f} ms ({p50['change_pct']:+.1f}%), "
               f"{CONFIDENCE:.0%} CI of the change [{lo:+.3f}, {hi:+.3f}] ms "
               f"({'excludes' if ci_excludes_zero else 'includes'} 0)",
               f"Mann-Whitney p = {test['p']:.2g} ({'<' if significant else '>='} {ALPHA})",
               f"|change| {abs(p50['change_pct']):.1f}% {'>' if big_enough else '<='} {min_change_pct:g}% threshold"]
    if ci_excludes_zero and significant and big_enough:
        out["verdict"] = "faster" if p50["change_ms"] < 0 else "slower"
    else:
        out["verdict"] = "no significant change"
        if ci_excludes_zero and significant:
            reasons.append(f"a {abs(p50['change_pct']):.1f}% shift is within the spread of identical programs "
                           f"profiled twice; profile both again (or several times) to confirm it")
    out["reasons"] = reasons
    return out


def _throughput(report: Report) -> float | None:
    """Measured requests per second over their span (first start to last end), or None without timestamps."""
    pr = report.per_request or {}
    start = np.asarray(pr.get("start_ns", []), dtype=np.float64)
    lat = np.asarray(pr.get("latency_ms", []), dtype=np.float64)
    warm = np.asarray(pr.get("warmup", [False] * len(start)), dtype=bool)
    if len(start) != len(lat) or len(warm) != len(start) or (~warm).sum() < 2:
        return None
    s, e = start[~warm], start[~warm] + lat[~warm] * 1e6
    span = e.max() - s.min()
    return round(float((~warm).sum()) / (span / 1e9), 2) if span > 0 else None


def _side(before, after) -> dict:
    b = None if before is None else round(float(before), 4)
    a = None if after is None else round(float(after), 4)
    change = round(a - b, 4) if a is not None and b is not None else None
    return {"before": b, "after": a, "change": change}


def compare_kernels(before: list[dict], after: list[dict], top: int = TOP_KERNELS) -> dict:
    bk, ak = {k["name"]: k for k in before}, {k["name"]: k for k in after}
    rows = []
    for name in set(bk) | set(ak):
        b, a = bk.get(name), ak.get(name)
        status = "new" if b is None else "vanished" if a is None else "both"
        get = lambda k, key: k.get(key, 0.0) if k else 0.0  # noqa: E731
        rows.append({"name": name, "status": status,
                     "per_request_ms": _side(get(b, "per_request_ms"), get(a, "per_request_ms")),
                     "total_ms": _side(get(b, "total_ms"), get(a, "total_ms")),
                     "per_request": _side(get(b, "per_request"), get(a, "per_request"))})
    rows.sort(key=lambda r: (-abs(r["per_request_ms"]["change"]), r["name"]))
    return {"changed": [r for r in rows if r["status"] == "both"][:top],
            "new": [r for r in rows if r["status"] == "new"][:top],
            "vanished": [r for r in rows if r["status"] == "vanished"][:top],
            "matched": sum(r["status"] == "both" for r in rows),
            "new_count": sum(r["status"] == "new" for r in rows),
            "vanished_count": sum(r["status"] == "vanished" for r in rows)}


def compare_findings(before: Report, after: Report) -> dict:
    def by_cat(r: Report) -> dict:
        out: dict = {}
        for f in r.findings:
            if f.category not in out or f.impact_ms > out[f.category].impact_ms:
                out[f.category] = f
        return out
    b, a = by_cat(before), by_cat(after)
    row = lambda cat, fb, fa: {  # noqa: E731
        "category": cat, "title": (fa or fb).title,
        "severity": {"before": fb.severity if fb else None, "after": fa.severity if fa else None},
        "impact_ms": _side(fb.impact_ms if fb else None, fa.impact_ms if fa else None)}
    rank = lambda rows: sorted(rows, key=lambda r: SEVERITIES.index(  # noqa: E731
        r["severity"]["after"] or r["severity"]["before"]))
    return {"resolved": rank([row(c, b[c], None) for c in b if c not in a]),
            "new": rank([row(c, None, a[c]) for c in a if c not in b]),
            "still_present": rank([row(c, b[c], a[c]) for c in b if c in a])}


def compare(before: Report, after: Report, min_change_pct: float = MIN_CHANGE_PCT) -> dict:
    """The Diff of two reports: latency verdict with its statistics, breakdown, kernels, counts, findings."""
    lat_b, lat_a = measured(before), measured(after)
    if len(lat_b) == 0 or len(lat_a) == 0:
        which = before if len(lat_b) == 0 else after
        raise NoData(which.profile.get("path"), "the report has no measured requests (per_request latency) "
                                                 "to compare; was it saved by nsys-doctor analyze --format json?")
    for r, lat in ((before, lat_b), (after, lat_a)):
        if not np.isfinite(lat).all():      # NaN compares as neither faster nor slower: never "no change"
            raise NoData(r.profile.get("path"), "the report's request latencies are not all finite numbers; "
                                               "they cannot be compared")
    lat = latency_change(lat_b, lat_a, min_change_pct)
    notes = []
    rb, ra = before.requests or {}, after.requests or {}
    if rb.get("range") != ra.get("range"):
        notes.append(f"the requests are different NVTX ranges: {rb.get('range')!r} before, {ra.get('range')!r} after")
    breakdown = {}
    for part, col in PARTS.items():
        vb, va = measured(before, col), measured(after, col)
        breakdown[part] = _side(vb.mean() if len(vb) else None, va.mean() if len(va) else None)
    breakdown["latency_mean"] = _side(lat_b.mean(), lat_a.mean())
    counts = {k: _side(rb.get(k), ra.get(k)) for k in COUNTS}
    counts["gpu_busy_pct"] = _side(rb.get("gpu_busy_pct"), ra.get("gpu_busy_pct"))
    if "kernels" not in rb or "kernels" not in ra:
        notes.append("a report has no per-kernel totals (saved by an older nsys-doctor): kernels not compared")
    kernels = compare_kernels(rb.get("kernels") or [], ra.get("kernels") or [])
    tb, ta = _throughput(before), _throughput(after)
    verdict = lat["verdict"]
    head = headline(before, after, lat, min_change_pct)
    if head is not None:
        notes.extend(head.pop("notes"))
    elif tb and ta and verdict != "no significant change" and (ta > tb) == (verdict == "slower"):
        notes.append(f"throughput moved the other way: {tb:g} -> {ta:g} requests/s over the measured span. "
                     "Latency counts time a request waits for the GPU behind earlier ones (other_gpu_work "
                     f"{breakdown['other_gpu_work']['before']} -> {breakdown['other_gpu_work']['after']} ms): "
                     "requests queue on the GPU, so judge this change by throughput as well as latency")
    pct = abs(lat["change_pct"])
    summary = {"faster": f"faster: median request latency {pct:.1f}% lower",
               "slower": f"slower: median request latency {pct:.1f}% higher"}.get(verdict, "no significant change")
    change_pct, extra = lat["change_pct"], {"headline": "latency"}
    if head is not None:
        verdict, summary, change_pct = head["verdict"], head["summary"], head["change_pct"]
        extra = {k: head[k] for k in ("headline", "interval", "load", "latency_reason")}
    return {"before": {"path": before.profile.get("path"), "range": rb.get("range"), "requests": len(lat_b)},
            "after": {"path": after.profile.get("path"), "range": ra.get("range"), "requests": len(lat_a)},
            "verdict": verdict, "summary": summary, "change_pct": change_pct, **extra, "latency": lat,
            "throughput_per_s": _side(tb, ta), "breakdown_ms": breakdown, "counts": counts, "kernels": kernels,
            "findings": compare_findings(before, after), "notes": notes,
            "thresholds": {"alpha": ALPHA, "min_change_pct": min_change_pct, "confidence": CONFIDENCE,
                           "resamples": RESAMPLES, "seed": SEED}}


# ------------------------------------------------------------------------------------- throughput vs latency
def _completions_ms(report: Report) -> np.ndarray | None:
    """Gaps between consecutive completions (range start + latency, sorted) of the measured requests: samples of the
    request interval (their mean is the span / count within one request), or None without timestamps."""
    pr = report.per_request or {}
    start = np.asarray(pr.get("start_ns", []), dtype=np.float64)
    lat = np.asarray(pr.get("latency_ms", []), dtype=np.float64)
    warm = np.asarray(pr.get("warmup", [False] * len(start)), dtype=bool)
    if len(start) != len(lat) or len(warm) != len(start):
        return None
    end = np.sort(start[~warm] + lat[~warm] * 1e6)
    return np.diff(end) / 1e6


def interval_change(a: np.ndarray, b: np.ndarray, min_change_pct: float = MIN_CHANGE_PCT,
                    intervals: tuple[float | None, float | None] = (None, None)) -> dict:
    """The request interval compared like latency: the change with a bootstrap CI of the mean gap between
    completions, a Mann-Whitney test on the gaps, and the same practical floor. `intervals`: the reports' own
    interval_ms (span / count), shown as the interval when given; else the mean gaps. verdict: faster (shorter
    interval, more throughput) / slower / no significant change."""
    out: dict = {"n_before": int(len(a)), "n_after": int(len(b))}
    if len(a) < MIN_REQUESTS or len(b) < MIN_REQUESTS:
        out.update(verdict="no significant change", change_pct=0.0,
                   reasons=[f"too few measured requests to compare their interval ({len(a) + 1} before, "
                            f"{len(b) + 1} after; at least {MIN_REQUESTS + 1} each are needed)"])
        return out
    ma, mb = (float(x) if x else float(g.mean()) for x, g in zip(intervals, (a, b)))
    rng = np.random.default_rng(SEED)
    diffs = np.empty(RESAMPLES)
    step = max(1, CHUNK_CELLS // max(len(a), len(b)))
    for lo in range(0, RESAMPLES, step):
        k = min(step, RESAMPLES - lo)
        diffs[lo:lo + k] = (b[rng.integers(0, len(b), (k, len(b)))].mean(axis=1)
                            - a[rng.integers(0, len(a), (k, len(a)))].mean(axis=1))
    tail = 100 * (1 - CONFIDENCE) / 2
    lo, hi = (float(x) for x in np.percentile(diffs, [tail, 100 - tail]))
    test = mann_whitney(a, b)
    pct = round(100 * (mb - ma) / ma, 2) if ma else 0.0
    ci_excludes_zero, significant, big_enough = lo > 0 or hi < 0, test["p"] < ALPHA, abs(pct) > min_change_pct
    out.update(before_ms=round(ma, 4), after_ms=round(mb, 4), change_ms=round(mb - ma, 4), change_pct=pct,
               ci_ms=[round(lo, 4), round(hi, 4)], mann_whitney=test,
               throughput_ratio=round(ma / mb, 3) if mb > 0 else None)
    out["reasons"] = [
        f"request interval {ma:.3f} -> {mb:.3f} ms ({pct:+.1f}%), {CONFIDENCE:.0%} CI of the change (mean gap "
        f"between completions) [{lo:+.3f}, {hi:+.3f}] ms ({'excludes' if ci_excludes_zero else 'includes'} 0)",
        f"Mann-Whitney p = {test['p']:.2g} ({'<' if significant else '>='} {ALPHA})",
        f"|change| {abs(pct):.1f}% {'>' if big_enough else '<='} {min_change_pct:g}% threshold"]
    out["verdict"] = ("faster" if mb < ma else "slower") if ci_excludes_zero and significant and big_enough \
        else "no significant change"
    return out


def _load_of(report: Report) -> str | None:
    return (report.requests or {}).get("load")


def _p50(report: Report, column: str) -> float | None:
    v = measured(report, column)
    return float(np.percentile(v, 50)) if len(v) else None


def headline(before: Report, after: Report, lat: dict, min_change_pct: float = MIN_CHANGE_PCT) -> dict | None:
    """The verdict in the metric that bounds the runs: throughput (the request interval) when either run is
    throughput-bound (its requests queue), else latency with the throughput change beside it. Latency that moved
    the other way is explained by queueing. None for reports saved before queueing was measured."""
    lb, la = _load_of(before), _load_of(after)
    ga, gb = _completions_ms(after), _completions_ms(before)
    if lb is None or la is None or ga is None or gb is None:
        return None
    iv = interval_change(gb, ga, min_change_pct, ((before.requests or {}).get("interval_ms"),
                                                  (after.requests or {}).get("interval_ms")))
    ratio = iv.get("throughput_ratio")
    by_throughput = "throughput-bound" in (lb, la)
    out = {"interval": iv, "load": {"before": lb, "after": la}, "notes": [], "latency_reason": None,
           "headline": "throughput" if by_throughput else "latency"}
    qb, qa, sb, sa = (_p50(r, c) for r, c in ((before, "queue_ms"), (after, "queue_ms"),
                                               (before, "service_ms"), (after, "service_ms")))
    rb, ra = before.requests or {}, after.requests or {}
    if not by_throughput:
        out.update(verdict=lat["verdict"], change_pct=lat["change_pct"])
        pct = abs(lat["change_pct"])
        tail = f" ({ratio:.3g}x the throughput)" if ratio and iv["verdict"] != "no significant change" else ""
        out["summary"] = {"faster": f"faster: median request latency {pct:.1f}% lower{tail}",
                          "slower": f"slower: median request latency {pct:.1f}% higher{tail}"}.get(
                              lat["verdict"], "no significant change")
        if {lat["verdict"], iv["verdict"]} == {"faster", "slower"}:     # e.g. more request threads sharing a lock
            out["notes"].append(f"throughput moved the other way: {ratio:.3g}x ({iv['reasons'][0]}); neither run "
                                "queues on the GPU, so requests overlap on the CPU side (several request threads): "
                                "judge this change by throughput as well as latency")
        return out
    out.update(verdict=iv["verdict"], change_pct=iv["change_pct"])
    what = "GPU service time" if rb.get("bound_by") == ra.get("bound_by") == "gpu" else "time"
    per = f"{what} per request {iv['before_ms']:.3g} -> {iv['after_ms']:.3g} ms" if "before_ms" in iv else ""
    if iv["verdict"] == "faster":
        out["summary"] = f"faster: {ratio:.3g}x the throughput; {per}"
    elif iv["verdict"] == "slower":
        out["summary"] = f"slower: {ratio:.3g}x the throughput; {per}"
    else:
        out["summary"] = "no significant change in throughput" + (f"; {per}" if per else "")
    # latency, with the reason it moved
    lv = lat.get("verdict")
    if lv in ("faster", "slower") and qb is not None and qa is not None and sb is not None and sa is not None:
        dl = lat["percentiles"]["p50"]["change_ms"]
        dq = qa - qb
        pct = abs(lat["change_pct"])
        nums = f"queued p50 {qb:.3g} -> {qa:.3g} ms, service p50 {sb:.3g} -> {sa:.3g} ms"
        if lv == "slower" and dq >= dl / 2:
            reason = (f"latency rose {pct:.0f}% from queueing ({nums}): the CPU now submits requests faster than "
                      "the GPU finishes them; under a fixed arrival rate it would fall")
        elif lv == "faster" and -dq >= -dl / 2:
            reason = (f"latency fell {pct:.0f}% because fewer requests queue ({nums}), not because each is served "
                      "faster")
        else:
            reason = f"latency {'rose' if lv == 'slower' else 'fell'} {pct:.0f}% ({nums})"
        out["latency_reason"] = reason
    elif lv in ("faster", "slower"):
        out["latency_reason"] = f"median latency {lv} by {abs(lat['change_pct']):.0f}%"
    return out
