"""The Python API: `analyze(path) -> Report` for notebooks and scripts (docs/python-api.md).

A top layer like cli/: it calls analysis/ for the numbers, render/ for HTML and JSON, and writes files through
files.py as the command line does. The Report it returns is `report.Report` (the JSON contract) plus tables
(pandas, optional), a short repr and a Jupyter view.
"""
from __future__ import annotations

import dataclasses
import os

from . import report as _report
from .errors import BadInput

TABLES = ("requests", "kernels", "findings")
PANDAS_MISSING = "Report.table() needs pandas: pip install 'nsys-doctor[pandas]' (or pip install pandas)"


class Report(_report.Report):
    """What `analyze` found: `verdict` (one sentence), `findings` (ranked, each with category, severity,
    impact_ms, impact_pct, estimate, evidence, fix, why), `requests` (the range chosen and why, counts, latency
    percentiles, breakdown), `per_request` (one value per request in each column), `profile`, `notes`.

    `table(name)` gives "requests", "kernels" or "findings" as a pandas DataFrame; `to_json(path)`,
    `to_html(path)` write what `analyze --format json -o` and `analyze --html` write."""

    def table(self, name: str):
        """A pandas DataFrame (pandas is the optional extra `nsys-doctor[pandas]`):

        - "requests": one row per request (index `request`, in start order) with `warmup` (True for warm-up
          requests, which statistics leave out) and every per-request column of the report: `start_ns`
          (profile clock), `latency_ms` (range start to the end of its last GPU work), `cpu_ms` (the range
          itself), `compute_ms`, `copy_ms`, `other_gpu_ms` (other work on the GPU meanwhile), `idle_ms`,
          `launches`, and service/queue times where the report has them.
        - "kernels": per kernel name, launches and GPU time inside the measured requests, heaviest first.
        - "findings": one row per finding, ranked (index `rank` from 1, as the text report numbers them), with its
          evidence numbers as a dict.
        """
        pd = _pandas()
        if name == "requests":
            pr = self.per_request or {}
            n = len(pr.get("latency_ms", []))
            cols = {k: v for k, v in pr.items() if isinstance(v, list) and len(v) == n}
            order = ["warmup"] + [k for k in cols if k != "warmup"] if "warmup" in cols else list(cols)
            df = pd.DataFrame({k: cols[k] for k in order}, index=pd.RangeIndex(n, name="request"))
            return df
        if name == "kernels":
            rows = self.requests.get("kernels") or []
            return pd.DataFrame(rows, columns=["name", "count", "per_request", "total_ms", "per_request_ms"]
                                if not rows else None)
        if name == "findings":
            rows = [{"category": f.category, "severity": f.severity, "impact_ms": f.impact_ms,
                     "impact_pct": f.impact_pct, "title": f.title, "estimate": f.estimate,
                     "evidence": dict(f.evidence.numbers), "fix": f.fix, "why": f.why} for f in self.findings]
            return pd.DataFrame(rows, columns=["category", "severity", "impact_ms", "impact_pct", "title",
                                               "estimate", "evidence", "fix", "why"],
                                index=pd.RangeIndex(1, len(rows) + 1, name="rank"))
        raise ValueError(f"no table {name!r}: the tables are {', '.join(TABLES)}")

    def _repr_html_(self) -> str:
        from .render import notebook
        return notebook.render(self)

    def _inputs(self) -> list[str]:
        return _inputs_of(self)

    def to_json(self, path) -> None:
        """Write the report as `analyze --format json -o PATH` does (docs/json-schema.md)."""
        from .files import output
        from .render import json_report
        with output(_target(path), "report", self._inputs()) as f:
            f.write(json_report.render(self) + "\n")

    def to_html(self, path) -> None:
        """Write the self-contained HTML report (with the timeline) as `analyze --html PATH` does."""
        from .files import output
        from .render import html
        with output(_target(path), "html", self._inputs()) as f:
            f.write(html.render(self))


def _inputs_of(report) -> list[str]:
    # the profile the report was made from: an output over it is refused, as on the command line
    path = (report.profile or {}).get("path")
    return [path] if isinstance(path, str) and path else []


def _target(path) -> str:
    if path is None or not os.fspath(path):
        raise BadInput(None, "give the file to write")    # files.output(None) would mean stdout
    return os.fspath(path)


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError(PANDAS_MISSING) from None
    return pandas


def _wrap(r: _report.Report) -> Report:
    return Report(**{f.name: getattr(r, f.name) for f in dataclasses.fields(r)})   # shares the data, no copy


def analyze(path, *, range: str | None = None, skip: int | None = None) -> Report:   # noqa: A002 - the CLI's name
    """Analyse one profile: find its requests, measure each one, name the bottleneck.

    path: an Nsight Systems SQLite export (plain, .xz, .gz), an .nsys-rep/.qdrep report (exported with nsys when
      one is found) or a PyTorch profiler (Kineto) JSON trace. Opened read-only; nothing is written beside it.
    range: the NVTX range that marks one request (as `analyze --range`); default: chosen automatically, and
      `report.requests["chosen_because"]` says why.
    skip: leave the first `skip` requests out as warm-up (as `analyze --skip`); default: detected, and
      `report.requests["warmup_reason"]` says why. It must leave at least one request.

    Returns a Report (`verdict`, `findings`, `requests`, `table(name)`, `to_json`, `to_html`). A file that is not
    a profile, or a profile without the data the analysis needs, raises `nsys_doctor.NsysDoctorError` (its
    subclasses BadInput, NoData, ToolMissing) naming the file and the problem.
    """
    if skip is not None and (not isinstance(skip, int) or isinstance(skip, bool) or skip < 0):
        raise BadInput(None, f"skip must be a whole number, 0 or more (got {skip!r})")
    if path is None or not os.fspath(path):
        raise BadInput(None, "give the profile to analyse")
    from .analysis import analyze as _analyze
    return _wrap(_analyze(os.fspath(path), range_name=range, skip=skip))


def load(path, *, range: str | None = None, skip: int | None = None) -> Report:   # noqa: A002
    """A report saved with `analyze --format json` (or `Report.to_json`), read back without the profile; a
    profile given here is analysed as `analyze` does."""
    from .files import load_report     # the same choice as diff/check/export: saved report or profile
    return _wrap(load_report(path, range_name=range, skip=skip))
