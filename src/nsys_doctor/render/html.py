"""Report -> one self-contained HTML file: verdict, findings with evidence, latency histogram, per-request breakdown
and a zoomable timeline of the excerpts in `Report.timeline` (canvas; wheel/drag/buttons; findings link to their
instances). No network, no libraries. Everything from the profile is data: it is embedded as JSON in a
`<script type="application/json">` with <, >, & and U+2028/2029 escaped, and reaches the page only through
`textContent`, SVG text nodes and canvas `fillText`, never as markup.
"""
from __future__ import annotations

import functools
import json
from importlib import resources

from ..report import Report
from .json_report import _clean

ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def embed_json(data) -> str:
    """JSON text that is safe inside a <script> element, whatever its strings hold."""
    text = json.dumps(_clean(data), ensure_ascii=False, separators=(",", ":"))
    for raw, esc in ESCAPES.items():
        text = text.replace(raw, esc)
    return text


def _template(name: str) -> str:
    return (resources.files(__package__) / "templates" / name).read_text(encoding="utf-8")


@functools.cache
def page_template() -> str:
    """The page with its CSS and JavaScript in place (render/templates/, shipped as package data)."""
    return (_template("report.html").replace("/*CSS*/", _template("report.css"))
            .replace("/*JS*/", _template("report.js")))


def render(report: Report | dict) -> str:
    d = report.to_dict() if isinstance(report, Report) else report
    return page_template().replace("/*DATA*/", embed_json(d))   # last: the data may contain the placeholders
