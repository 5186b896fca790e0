"""The Report: what `analyze` found, as plain data. The JSON contract (docs/json-schema.md) is `Report.to_dict()`.

Renderers, `diff` and `check` work from a Report (or its saved JSON), never from the profile.
Schema changes: add fields freely; renaming or removing one bumps SCHEMA_VERSION's major number.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = "1.0"
SEVERITIES = ("high", "medium", "low")
# Every category a finding can have: the one list that `check --fail-on`, docs/json-schema.md and the tests read.
# Each diagnosis module declares the ones it emits (its CATEGORIES); a test checks that the two agree.
CATEGORIES = ("gpu_underutilization", "cuda_sync", "cpu_preprocessing", "cpu_postprocessing", "launch_overhead",
              "memory_transfer", "memory_bandwidth", "precision", "thread_contention", "communication",
              "model_loading", "memory_allocation")


@dataclass
class Instance:
    """One concrete occurrence behind a finding: where on the timeline to look."""
    what: str                       # e.g. "cudaDeviceSynchronize blocked 2.1 ms"
    start_ns: int                   # profile time, ns since capture start
    end_ns: int
    request: int | None = None      # index into the report's requests, None when outside requests
    thread: str | None = None       # thread name (tid)
    name: str | None = None         # kernel / API / function name
    code: str | None = None         # code location (from CPU samples or backtraces), when recorded
    value_ms: float | None = None   # the instance's own cost, for ranking


@dataclass
class Evidence:
    numbers: dict[str, Any] = field(default_factory=dict)   # measured facts, units in the key names
    worst: list[Instance] = field(default_factory=list)     # worst instances, worst first
    code: list[dict[str, Any]] = field(default_factory=list)  # hot functions: {"function", "module", "share_pct", ...}
    notes: list[str] = field(default_factory=list)          # caveats: missing data, how a number was inferred


@dataclass
class Finding:
    category: str          # gpu_underutilization | cuda_sync | cpu_preprocessing | ... (docs/json-schema.md)
    severity: str          # high | medium | low, from the measured impact
    title: str             # one line, in the user's words
    impact_ms: float       # per request: what the fix would save in the metric that bounds the run (estimate)
    impact_pct: float      # impact_ms as a share of that metric (impact_basis), in percent
    estimate: str          # how impact_ms was estimated
    evidence: Evidence
    fix: str
    why: str
    # "latency" (mean end-to-end latency per request: latency-bound runs) or "interval" (the request interval,
    # 1/throughput: throughput-bound runs, where requests queue); set after the diagnoses run (analysis/impact.py)
    impact_basis: str = "latency"
    # the replay's prediction (analysis/predict.py): the change in words, mean latency and request interval before
    # and after it, how it was made; None where the fix was not replayed (impact_ms is then the diagnosis's estimate)
    whatif: dict | None = None

    def __repr__(self) -> str:     # the generated one prints every instance of the evidence
        return (f"<Finding {self.category} {self.severity} ~{self.impact_ms:.2f} ms/request "
                f"({self.impact_pct:.0f}%): {self.title}>")


@dataclass
class Report:
    profile: dict[str, Any]                 # what the file holds: path, format, version, tables present/absent
    requests: dict[str, Any]                # range chosen and why, count, latency percentiles, breakdown
    findings: list[Finding] = field(default_factory=list)
    verdict: str = ""
    per_request: dict[str, list] = field(default_factory=dict)  # columns, one value per measured request
    notes: list[str] = field(default_factory=list)
    timeline: dict[str, Any] = field(default_factory=dict)     # excerpts of the timeline the findings cite (HTML)
    schema_version: str = SCHEMA_VERSION

    def __repr__(self) -> str:
        # a line or two: the generated repr prints the timeline too (370,000 characters on sync_heavy)
        r = self.requests or {}
        lat = (r.get("latency_ms") or {}).get("p50")
        p50 = f", p50 {lat:.2f} ms" if lat is not None else ""
        top = self.findings[0] if self.findings else None
        finds = f"{len(self.findings)} finding{'s' * (len(self.findings) != 1)}" + (
            f", top {top.category} ({top.severity}, ~{top.impact_ms:.2f} ms/request)" if top else "")
        name = (self.profile or {}).get("path") or "?"
        return (f"<{type(self).__name__} {name}: {r.get('count', 0)} requests of range {r.get('range')!r}{p50}; "
                f"{finds}>\nverdict: {self.verdict}")

    def to_dict(self) -> dict[str, Any]:
        # findings become plain dicts; the rest is already plain data and is shared, not deep-copied (the
        # timeline alone holds tens of thousands of events)
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["findings"] = [dataclasses.asdict(f) for f in self.findings]
        from . import __version__
        d["tool"] = {"name": "nsys-doctor", "version": __version__}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Report":
        findings = []
        for f in d.get("findings", []):
            ev = f.get("evidence") or {}
            evidence = Evidence(numbers=ev.get("numbers", {}), code=ev.get("code", []), notes=ev.get("notes", []),
                                worst=[Instance(**_known(Instance, i)) for i in ev.get("worst", [])])
            findings.append(Finding(**{**_known(Finding, f), "evidence": evidence}))
        return cls(profile=d.get("profile", {}), requests=d.get("requests", {}), findings=findings,
                   verdict=d.get("verdict", ""), per_request=d.get("per_request", {}), notes=d.get("notes", []),
                   timeline=d.get("timeline", {}),
                   schema_version=d.get("schema_version", SCHEMA_VERSION))


def _known(klass, d: dict) -> dict:
    names = {f.name for f in dataclasses.fields(klass)}
    return {k: v for k, v in d.items() if k in names}


def severity_for(impact_pct: float, high_pct: float, medium_pct: float) -> str:
    """Severity from the share of request latency a fix would save."""
    if impact_pct >= high_pct:
        return "high"
    return "medium" if impact_pct >= medium_pct else "low"
