"""Report -> a short HTML fragment for Jupyter (`Report._repr_html_`): verdict, latency summary, findings.

Every string from the profile (paths, range names, titles, evidence) goes through render.safe.clean (control
characters, escape sequences and bidi overrides shown as escapes) and html.escape; numbers are formatted here. The full page with the timeline is render/html.py (`Report.to_html`).
"""
from __future__ import annotations

from html import escape

from ..report import Report
from .safe import clean

COLUMNS = ("p50", "p90", "p99", "max", "mean")
SEVERITY_COLOR = {"high": "#c0392b", "medium": "#b7791f", "low": "#777"}


def _e(x) -> str:
    return escape(clean(x), quote=True)


def _row(label: str, stats: dict) -> str:
    cells = "".join(f"<td style='text-align:right'>{stats[k]:.2f}</td>" if isinstance(stats.get(k), (int, float))
                    else "<td></td>" for k in COLUMNS)
    return f"<tr><th style='text-align:left'>{_e(label)}</th>{cells}</tr>"


def render(report: Report) -> str:
    p, r = report.profile or {}, report.requests or {}
    out = [f"<div class='nsys-doctor'><p><b>nsys-doctor</b> <code>{_e(p.get('path'))}</code></p>",
           f"<p><b>Verdict:</b> {_e(report.verdict)}</p>"]
    how = "inferred" if r.get("inferred") else "NVTX range"
    out.append(f"<p><b>Requests:</b> {_e(r.get('count'))} measured of {_e(r.get('total'))} ({how} "
               f"<code>{_e(r.get('range'))}</code>; {_e(r.get('chosen_because'))})"
               + (f"; warm-up left out: {_e(r['warmup'])} ({_e(r.get('warmup_reason'))})" if r.get("warmup") else "")
               + "</p>")
    head = "".join(f"<th style='text-align:right'>{k}</th>" for k in COLUMNS)
    out.append(f"<table><thead><tr><th style='text-align:left'>ms</th>{head}</tr></thead><tbody>"
               f"{_row('end-to-end latency', r.get('latency_ms') or {})}"
               f"{_row('CPU time in range', r.get('cpu_ms') or {})}</tbody></table>")
    if not report.findings:
        out.append("<p><b>Findings:</b> none</p>")
    else:
        rows = []
        for i, f in enumerate(report.findings, 1):
            color = SEVERITY_COLOR.get(f.severity, "inherit")
            rows.append(f"<tr><td>{i}</td><td style='color:{color};font-weight:bold'>{_e(f.severity)}</td>"
                        f"<td><code>{_e(f.category)}</code></td><td style='text-align:left'>{_e(f.title)}</td>"
                        f"<td style='text-align:right'>{f.impact_ms:.2f}</td>"
                        f"<td style='text-align:right'>{f.impact_pct:.0f}%</td>"
                        f"<td style='text-align:left'>{_e(f.fix)}</td></tr>")
        out.append("<table><thead><tr><th>#</th><th>severity</th><th>category</th><th>finding</th>"
                   "<th>ms/request</th><th>share</th><th>fix</th></tr></thead><tbody>" + "".join(rows)
                   + "</tbody></table>")
    out.append("<p style='color:#777'>report.table('requests' | 'kernels' | 'findings') for the numbers; "
               "report.to_html(path) for the timeline.</p></div>")
    return "".join(out)
