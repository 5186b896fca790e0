"""Performance gate for CI: rules over one Report (and optionally a baseline), each holding or failing.

Rules come from the command line or `[tool.nsys-doctor.check]` in pyproject.toml (same names, underscores).
A regression against a baseline is decided with `compare` (bootstrap CI, rank test, practical threshold), so
run-to-run noise does not fail a build. Outputs: a summary, JUnit XML, GitHub Actions annotations.
"""
from __future__ import annotations

import os
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from ..errors import BadInput
from ..report import SEVERITIES, Report

RULE_KEYS = ("max_p99_ms", "max_p50_ms", "min_gpu_busy_pct", "fail_on", "baseline", "max_regression",
             "max_interval_ms", "min_throughput", "max_service_p99_ms")
LOAD_RULES = ("max_interval_ms", "min_throughput", "max_service_p99_ms")   # throughput and service time limits


@dataclass
class RuleResult:
    name: str        # e.g. "max-p99-ms"
    passed: bool
    message: str     # what was measured against what limit, in words


def load_config(path) -> dict:
    """Rules from `[tool.nsys-doctor.check]` of a pyproject.toml; a relative baseline is relative to that file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise BadInput(path, f"cannot read the config ({err.strerror})")
    except tomllib.TOMLDecodeError as err:
        raise BadInput(path, f"not valid TOML ({err})")
    rules = data.get("tool", {}).get("nsys-doctor", {}).get("check", {})
    unknown = sorted(set(rules) - set(RULE_KEYS))
    if unknown:
        raise BadInput(path, f"unknown keys in [tool.nsys-doctor.check]: {', '.join(unknown)} "
                             f"(known: {', '.join(RULE_KEYS)})")
    rules = dict(rules)
    if isinstance(rules.get("fail_on"), str):
        rules["fail_on"] = [rules["fail_on"]]
    if rules.get("baseline"):
        rules["baseline"] = os.path.join(os.path.dirname(os.path.abspath(path)), rules["baseline"])
    return rules


def parse_percent(value, where=None) -> float:
    """'5%', '5' or 5 -> 5.0 (percent)."""
    try:
        v = float(str(value).strip().rstrip("%"))
    except ValueError:
        raise BadInput(where, f"--max-regression {value!r} is not a percentage (e.g. 5%)")
    if v < 0:
        raise BadInput(where, f"--max-regression {value!r} must be 0% or more")
    return v


def parse_fail_on(spec: str) -> tuple[str, str]:
    """'cuda_sync' -> ('cuda_sync', 'low'); 'any:high' -> ('any', 'high'). The severity is the least that fails."""
    cat, _, sev = spec.partition(":")
    sev = sev or "low"
    if not cat or sev not in SEVERITIES:
        raise BadInput(None, f"--fail-on {spec!r}: expected CATEGORY[:SEVERITY] with SEVERITY one of "
                             f"{', '.join(SEVERITIES)} (CATEGORY may be 'any')")
    return cat, sev


def evaluate(report: Report, rules: dict, baseline: Report | None = None) -> list[RuleResult]:
    """Every rule given, in a fixed order, held or failed."""
    out: list[RuleResult] = []
    lat = (report.requests or {}).get("latency_ms", {})
    for q in ("p50", "p99"):
        limit = rules.get(f"max_{q}_ms")
        if limit is None:
            continue
        v = lat.get(q)
        if v is None:
            out.append(RuleResult(f"max-{q}-ms", False, f"no {q} latency in the report (no measured requests)"))
            continue
        ok = v <= float(limit)
        out.append(RuleResult(f"max-{q}-ms", ok, f"{q} request latency {v:.3f} ms {'<=' if ok else '>'} "
                                                   f"limit {float(limit):g} ms"))
    out.extend(load_rules(report, rules))
    if rules.get("min_gpu_busy_pct") is not None:
        limit = float(rules["min_gpu_busy_pct"])
        v = float((report.requests or {}).get("gpu_busy_pct", 0.0))
        ok = v >= limit
        out.append(RuleResult("min-gpu-busy-pct", ok, f"GPU busy {v:.1f}% of request latency "
                                                       f"{'>=' if ok else '<'} minimum {limit:g}%"))
    for spec in rules.get("fail_on") or []:
        cat, sev = parse_fail_on(spec)
        worst = SEVERITIES.index(sev)
        hits = [f for f in report.findings if (cat == "any" or f.category == cat)
                and SEVERITIES.index(f.severity) <= worst]
        msg = "; ".join(f"{f.category} ({f.severity}, {f.impact_ms:.2f} ms/request): {f.title}" for f in hits)
        what = "finding" if cat == "any" else f"{cat} finding"
        out.append(RuleResult(f"fail-on {spec}", not hits, msg or f"no {what} of severity {sev} or worse"))
    if rules.get("max_regression") is not None:
        if baseline is None:
            raise BadInput(None, "--max-regression needs --baseline FILE (a profile or saved JSON report)")
        out.append(regression_rule(baseline, report, parse_percent(rules["max_regression"])))
    elif baseline is not None:
        out.append(regression_rule(baseline, report, 0.0))
    return out


def load_rules(report: Report, rules: dict) -> list[RuleResult]:
    """--max-interval-ms, --min-throughput, --max-service-p99-ms: each fails when the report does not have the number
    (a report saved before queueing was measured), never passes unevaluated."""
    r = report.requests or {}
    out = []
    checks = (("max_interval_ms", "max-interval-ms", r.get("interval_ms"), "request interval (1/throughput)", "ms",
               True),
              ("min_throughput", "min-throughput", r.get("throughput_per_s"), "throughput", "requests/s", False),
              ("max_service_p99_ms", "max-service-p99-ms", (r.get("service_ms") or {}).get("p99"),
               "p99 service time (latency without queueing)", "ms", True))
    for key, name, value, what, unit, is_max in checks:
        if rules.get(key) is None:
            continue
        try:
            limit = float(rules[key])
        except (TypeError, ValueError):
            raise BadInput(None, f"{name} {rules[key]!r} is not a number")
        if value is None:
            out.append(RuleResult(name, False, f"no {what} in the report (saved by an older nsys-doctor, or no "
                                               "measured requests): re-run analyze on the profile"))
            continue
        ok = value <= limit if is_max else value >= limit
        sign = ("<=" if ok else ">") if is_max else (">=" if ok else "<")
        out.append(RuleResult(name, ok, f"{what} {value:.3f} {unit} {sign} {'limit' if is_max else 'minimum'} "
                                        f"{limit:g} {unit}"))
    return out


def regression_rule(baseline: Report, report: Report, max_regression_pct: float) -> RuleResult:
    """Fails only when `compare` calls the change 'slower' (CI, rank test and its 2% floor) by more than the limit."""
    from ..compare import compare
    diff = compare(baseline, report)
    lat = diff["latency"]
    # the metric that bounds the runs: the request interval when either is throughput-bound, else latency
    head = diff.get("interval") if diff.get("headline") == "throughput" else lat
    pct = diff.get("change_pct", lat.get("change_pct", 0.0))
    failed = diff["verdict"] == "slower" and pct > max_regression_pct
    detail = "; ".join((head or lat).get("reasons", []))
    return RuleResult("max-regression", not failed,
                      f"{diff['summary']} vs baseline (allowed {max_regression_pct:g}% slower): {detail}")


def junit_xml(results: list[RuleResult], name: str = "nsys-doctor check") -> str:
    suite = ET.Element("testsuite", name=name, tests=str(len(results)),
                       failures=str(sum(not r.passed for r in results)), errors="0")
    for r in results:
        case = ET.SubElement(suite, "testcase", classname="nsys-doctor", name=r.name)
        if r.passed:
            ET.SubElement(case, "system-out").text = r.message
        else:
            ET.SubElement(case, "failure", message=r.message, type="performance").text = r.message
    return ET.tostring(ET.ElementTree(suite).getroot(), encoding="unicode", xml_declaration=True)


def _gh_escape(s: str, prop: bool = False) -> str:
    s = s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return s.replace(":", "%3A").replace(",", "%2C") if prop else s


def github_annotations(results: list[RuleResult], file: str | None = None) -> list[str]:
    """GitHub Actions workflow commands, one `::error` per failed rule (and `::notice` for the summary)."""
    where = f"file={_gh_escape(file, True)}," if file else ""
    lines = [f"::error {where}title={_gh_escape('nsys-doctor ' + r.name, True)}::{_gh_escape(r.message)}"
             for r in results if not r.passed]
    held = sum(r.passed for r in results)
    lines.append(f"::notice title=nsys-doctor check::{held} of {len(results)} rules hold")
    return lines
