"""Performance gate for CI: rules over one Report (and optionally a baseline), each holding or failing.

Rules come from the command line or `[tool.nsys-doctor.check]` in pyproject.toml (same names, underscores).
A regression against a baseline is decided with `compare` (bootstrap CI, rank test, practical threshold), so
run-to-run noise does not fail a build. A rule that cannot be evaluated fails; a rule that cannot be evaluated
whatever the profile (a NaN limit, an unknown category) is refused before the profile is read. The outputs
(summary, JUnit XML, GitHub annotations and step summary) are in render/check_text.py.
"""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass

from ..errors import BadInput
from ..report import CATEGORIES, SEVERITIES, Report

RULE_KEYS = ("max_p99_ms", "max_p50_ms", "min_gpu_busy_pct", "fail_on", "baseline", "max_regression",
             "max_interval_ms", "min_throughput", "max_service_p99_ms")
LOAD_RULES = ("max_interval_ms", "min_throughput", "max_service_p99_ms")   # throughput and service time limits


@dataclass
class RuleResult:
    name: str        # e.g. "max-p99-ms"
    passed: bool
    message: str     # what was measured against what limit, in words


def load_config(path) -> dict:
    """Rules from `[tool.nsys-doctor.check]` of a pyproject.toml; a relative baseline is relative to that file.
    Anything that is not a rule of the right type is bad input naming the file (exit 2), not a failed rule."""
    from ..read import require_file
    require_file(path, "config")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise BadInput(path, f"cannot read the config ({err.strerror})")
    except tomllib.TOMLDecodeError as err:
        raise BadInput(path, f"not valid TOML ({err})")
    except UnicodeDecodeError as err:
        raise BadInput(path, f"not UTF-8 text ({err.reason} at byte {err.start}); TOML files are UTF-8")
    rules, where = data, []
    for key in ("tool", "nsys-doctor", "check"):
        rules = rules.get(key, {})
        where.append(key)
        if not isinstance(rules, dict):
            raise BadInput(path, f"{'.'.join(where)} is {_kind(rules)}, expected a table "
                                 "([tool.nsys-doctor.check] holds the rules)")
    unknown = sorted(set(rules) - set(RULE_KEYS))
    if unknown:
        raise BadInput(path, f"unknown keys in [tool.nsys-doctor.check]: {', '.join(unknown)} "
                             f"(known: {', '.join(RULE_KEYS)})")
    rules = dict(rules)
    if isinstance(rules.get("fail_on"), str):
        rules["fail_on"] = [rules["fail_on"]]
    check_rules(rules, path)
    if rules.get("baseline"):
        rules["baseline"] = os.path.join(os.path.dirname(os.path.abspath(path)), rules["baseline"])
    return rules


def _kind(x) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(x), type(x).__name__)


def check_rules(rules: dict, config=None) -> None:
    """Every rule's value is one that can be evaluated, else BadInput: from `config` (its keys named as in the
    file), or from the command line (config None: named as options). A limit that is NaN, infinite or negative
    could never fail, or never hold; it is refused rather than evaluated. Every key other than fail_on, baseline
    and max_regression is a numeric limit."""
    def name(key: str) -> str:
        return key if config else "--" + key.replace("_", "-")
    for key, value in rules.items():
        if value is None:
            continue
        if key == "fail_on":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise BadInput(config, f"{name(key)} must be a list of strings such as \"any:high\", not "
                                       f"{value!r}")
            for spec in value:
                parse_fail_on(spec, config)
        elif key == "baseline":
            if not isinstance(value, str) or not value:
                raise BadInput(config, f"{name(key)} must be a file name (a profile or saved report), not {value!r}")
        elif key == "max_regression":
            parse_percent(value, config, name(key))
        else:
            limit = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
            if limit is None or not math.isfinite(limit) or limit < 0:
                raise BadInput(config, f"{name(key)} {value!r} is not a limit: expected a finite number, 0 or more")
            if key.endswith("_pct") and limit > 100:
                raise BadInput(config, f"{name(key)} {value!r} is more than 100%: no run could meet it")


def parse_percent(value, where=None, name: str = "--max-regression") -> float:
    """'5%', '5' or 5 -> 5.0 (percent); NaN, infinity and negative values are refused (they cannot be compared)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadInput(where, f"{name} {value!r} is not a percentage (e.g. 5%)")
    try:
        v = float(str(value).strip().removesuffix("%"))
    except ValueError:
        raise BadInput(where, f"{name} {value!r} is not a percentage (e.g. 5%)")
    if not math.isfinite(v) or v < 0:
        raise BadInput(where, f"{name} {value!r} must be a finite percentage, 0% or more")
    return v


def parse_fail_on(spec: str, where=None) -> tuple[str, str]:
    """'cuda_sync' -> ('cuda_sync', 'low'); 'any:high' -> ('any', 'high'). The severity is the least that fails.
    An unknown category is refused: a typo ("cuda-sync") would otherwise make the rule hold forever."""
    cat, colon, sev = spec.partition(":")
    sev = sev if colon else "low"       # "any:" (say, `any:$SEVERITY` with the variable unset) is not "any:low"
    if cat != "any" and cat not in CATEGORIES:
        raise BadInput(where, f"--fail-on {spec!r}: unknown category {cat!r}; expected 'any' or one of "
                              f"{', '.join(CATEGORIES)}")
    if sev not in SEVERITIES:
        raise BadInput(where, f"--fail-on {spec!r}: unknown severity {sev!r}; expected one of {', '.join(SEVERITIES)}"
                              " (the least severe that fails)")
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
        v = (report.requests or {}).get("gpu_busy_pct")
        if v is None:
            out.append(RuleResult("min-gpu-busy-pct", False, "cannot be evaluated: the report has no GPU busy share"))
        else:
            ok = float(v) >= limit
            out.append(RuleResult("min-gpu-busy-pct", ok, f"GPU busy {float(v):.1f}% of request latency "
                                                           f"{'>=' if ok else '<'} minimum {limit:g}%"))
    for spec in rules.get("fail_on") or []:
        out.append(fail_on_rule(report, spec))
    if rules.get("max_regression") is not None:
        if baseline is None:
            raise BadInput(None, "--max-regression needs --baseline FILE (a profile or saved JSON report)")
        out.append(regression_rule(baseline, report, parse_percent(rules["max_regression"])))
    elif baseline is not None:
        out.append(regression_rule(baseline, report, 0.0))
    return out


def fail_on_rule(report: Report, spec: str) -> RuleResult:
    """--fail-on CATEGORY[:SEV] fails on a finding of that category and severity or worse, and when the category was
    not evaluated (the profile lacks its data: profile.not_evaluated says why), or the report does not say (saved
    before that was recorded). `any:SEV` fails on any such finding, and when no category was evaluated; the
    categories it could not evaluate are named in its message (name one to require it)."""
    cat, sev = parse_fail_on(spec)
    worst = SEVERITIES.index(sev)
    name = f"fail-on {spec}"
    skipped = (report.profile or {}).get("not_evaluated")
    if not isinstance(skipped, dict):
        if cat != "any":
            return RuleResult(name, False, f"cannot be evaluated: the report does not say whether {cat} was "
                                           "evaluated (saved by an older nsys-doctor): re-run analyze on the profile")
        skipped = {}
    if cat in skipped:
        return RuleResult(name, False, f"{cat} was not evaluated: {skipped[cat]}")
    if cat == "any" and set(CATEGORIES) <= set(skipped):
        return RuleResult(name, False, "no category was evaluated: " + "; ".join(sorted(set(skipped.values()))))
    hits = [f for f in report.findings if (cat == "any" or f.category == cat)
            and SEVERITIES.index(f.severity) <= worst]
    msg = "; ".join(f"{f.category} ({f.severity}, {f.impact_ms:.2f} ms/request): {f.title}" for f in hits)
    what = "finding" if cat == "any" else f"{cat} finding"
    msg = msg or f"no {what} of severity {sev} or worse"
    if cat == "any" and skipped:
        msg += "; not evaluated: " + "; ".join(f"{c} ({why})" for c, why in skipped.items())
    return RuleResult(name, not hits, msg)


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
    """Fails when `compare` calls the change 'slower' by more than the limit, and when it cannot tell (too few
    requests). `compare` calls nothing under MIN_CHANGE_PCT slower (run-to-run noise), so a tighter limit acts as
    MIN_CHANGE_PCT: the message says so."""
    from . import MIN_CHANGE_PCT, compare
    diff = compare(baseline, report)
    lat = diff["latency"]
    # the metric that bounds the runs: the request interval when either is throughput-bound, else latency
    head = diff.get("interval") if diff.get("headline") == "throughput" else lat
    detail = "; ".join((head or lat).get("reasons", []))
    if not lat.get("percentiles"):
        return RuleResult("max-regression", False, f"cannot be evaluated against the baseline: {detail}")
    pct = diff.get("change_pct", lat.get("change_pct", 0.0))
    failed = diff["verdict"] == "slower" and pct > max_regression_pct
    allowed = f"allowed {max_regression_pct:g}% slower"
    if max_regression_pct < MIN_CHANGE_PCT:
        allowed += (f"; effective limit {MIN_CHANGE_PCT:g}%: a smaller change is within the spread of one program "
                    "profiled again, so it is never called slower")
    return RuleResult("max-regression", not failed, f"{diff['summary']} vs baseline ({allowed}): {detail}")
