"""Report -> Chrome trace event JSON (opens in ui.perfetto.dev and chrome://tracing): the timeline excerpts of
`Report.timeline`, one process per excerpt, one thread per lane, GPU metrics as counters and the findings'
instances as instant events and spans on a "findings" lane, with the finding in their args.

Times are microseconds since capture start (the trace event format's unit), from the profile's ns.
"""
from __future__ import annotations

import json

from ..report import Report
from .json_report import _clean

US = 1e3
FINDINGS_TID = 0          # lane 0 of each excerpt process holds the finding instances; lanes are tids 1..n


def trace_events(report: Report | dict) -> dict:
    d = report.to_dict() if isinstance(report, Report) else report
    tl = d.get("timeline") or {}
    findings = d.get("findings") or []
    ev: list[dict] = []
    for pid, ex in enumerate(tl.get("excerpts", []), start=1):
        ev.append(_meta("process_name", pid, None, name=f"{ex.get('title', ex.get('id'))}"))
        ev.append(_meta("process_sort_index", pid, None, sort_index=pid))
        ev.append(_meta("thread_name", pid, FINDINGS_TID, name="findings"))
        ev.append(_meta("thread_sort_index", pid, FINDINGS_TID, sort_index=0))
        for tid, lane in enumerate(ex.get("lanes", []), start=1):
            ev.append(_meta("thread_name", pid, tid, name=lane.get("name", f"lane {tid}")))
            ev.append(_meta("thread_sort_index", pid, tid, sort_index=tid))
        for start, end, name, lane, kind in ex.get("events", []):
            ev.append({"ph": "X", "name": name, "cat": kind, "pid": pid, "tid": int(lane) + 1,
                       "ts": start / US, "dur": max(end - start, 0) / US})
        if ex.get("request_start_ns") is not None:
            ev.append({"ph": "X", "name": f"request #{ex.get('request')}", "cat": "request", "pid": pid,
                       "tid": FINDINGS_TID, "ts": ex["request_start_ns"] / US,
                       "dur": (ex["request_end_ns"] - ex["request_start_ns"]) / US,
                       "args": {"request": ex.get("request")}})
        for m in ex.get("metrics", []):
            for t, v in m.get("points", []):
                ev.append({"ph": "C", "name": m["name"], "pid": pid, "ts": t / US, "args": {"value": v}})
        for mk in ex.get("markers", []):
            f = findings[mk["finding"]] if 0 <= mk["finding"] < len(findings) else {}
            args = {"finding": mk["finding"] + 1, "instance": mk["instance"] + 1, "category": mk.get("category"),
                    "what": mk.get("what"), "title": f.get("title"), "severity": f.get("severity"),
                    "impact_ms_per_request": f.get("impact_ms"), "fix": f.get("fix"), "request": mk.get("request")}
            label = f"F{mk['finding'] + 1}: {f.get('title', mk.get('category', 'finding'))}"
            ev.append({"ph": "i", "s": "p", "name": label, "cat": "finding", "pid": pid, "tid": FINDINGS_TID,
                       "ts": mk["start_ns"] / US, "args": args})
            ev.append({"ph": "X", "name": f"F{mk['finding'] + 1} #{mk['instance'] + 1}: {mk.get('what', '')}",
                       "cat": "finding", "pid": pid, "tid": FINDINGS_TID, "ts": mk["start_ns"] / US,
                       "dur": max(mk["end_ns"] - mk["start_ns"], 0) / US, "args": args})
    meta = {"tool": "nsys-doctor", "profile": (d.get("profile") or {}).get("path"), "verdict": d.get("verdict"),
            "findings": [{"index": i + 1, "title": f.get("title"), "category": f.get("category"),
                          "impact_ms_per_request": f.get("impact_ms"), "fix": f.get("fix")}
                         for i, f in enumerate(findings)]}
    return {"traceEvents": ev, "displayTimeUnit": "ms", "metadata": _clean(meta)}


def _meta(what: str, pid: int, tid: int | None, **args) -> dict:
    e = {"ph": "M", "name": what, "pid": pid, "args": args}
    if tid is not None:
        e["tid"] = tid
    return e


def render(report: Report | dict) -> str:
    return json.dumps(_clean(trace_events(report)), ensure_ascii=False, separators=(",", ":"))
