"""Gate a build on a profile: latency, throughput, GPU use, findings, and regression against a baseline.

PROFILE is a profile or a report saved with `nsys-doctor analyze --format json`. Rules come from the options below
or from `[tool.nsys-doctor.check]` in pyproject.toml (same names with underscores, e.g. max_p99_ms = 20,
fail_on = ["any:high"], baseline = "baseline.json", max_regression = "5%"); options override the file.
max_interval_ms, min_throughput and max_service_p99_ms work the same; a rule the report has no number for fails.
A regression counts only when it is statistically clear (same test as `diff`) and larger than --max-regression; it
is judged in throughput when either run is throughput-bound (its requests queue on the GPU), else in latency.
Exit codes: 0 every rule holds, 1 a rule fails, 2 bad input."""
from __future__ import annotations

import os

from ..errors import BadInput
from ..files import append, check_outputs, write


def add_arguments(p) -> None:
    from ..compare import MIN_CHANGE_PCT
    from ..report import CATEGORIES, SEVERITIES
    p.add_argument("profile", help="the profile or saved JSON report to check")
    p.add_argument("--range", dest="range_name", metavar="NAME", help="the NVTX range that marks one request")
    p.add_argument("--max-p99-ms", type=float, metavar="X", help="fail when p99 request latency exceeds X ms")
    p.add_argument("--max-p50-ms", type=float, metavar="X", help="fail when p50 request latency exceeds X ms")
    p.add_argument("--max-interval-ms", type=float, metavar="X", help="fail when the request interval (span of the "
                   "measured requests / their number, 1/throughput) exceeds X ms")
    p.add_argument("--min-throughput", type=float, metavar="X", help="fail when fewer than X requests per second "
                   "complete")
    p.add_argument("--max-service-p99-ms", type=float, metavar="X", help="fail when p99 service time (latency "
                   "without the time queued behind earlier requests) exceeds X ms")
    p.add_argument("--min-gpu-busy-pct", type=float, metavar="X",
                   help="fail when the GPU is busy less than X%% of request latency")
    p.add_argument("--fail-on", action="append", metavar="CATEGORY[:SEVERITY]",
                   help="fail on a finding of CATEGORY ('any' for all) of SEVERITY or worse (default low), and "
                        "when CATEGORY was not evaluated (the profile lacks its data, e.g. GPU metrics); 'any' "
                        "names what was not evaluated and fails only if nothing was; "
                        "repeatable, e.g. --fail-on any:high --fail-on cuda_sync. Categories: "
                        f"{', '.join(CATEGORIES)}; severities: {', '.join(SEVERITIES)}")
    p.add_argument("--baseline", metavar="FILE", help="a baseline profile or saved JSON report")
    p.add_argument("--max-regression", metavar="PCT", help="fail when p50 latency is significantly slower than "
                   "the baseline by more than PCT (e.g. 5%%); with --baseline alone, any significant slow-down fails. "
                   f"A change of {MIN_CHANGE_PCT:g}%% or less is never significant (run-to-run noise), so a smaller "
                   f"PCT acts as {MIN_CHANGE_PCT:g}%%")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML, one testcase per rule (never over an "
                   "input, or over a file that is not a previous JUnit XML of nsys-doctor)")
    p.add_argument("--github", action="store_true", help="print GitHub Actions annotations (::error ...) and, when "
                   "$GITHUB_STEP_SUMMARY is set, append a Markdown summary (verdict, rules, latency) to it")
    p.add_argument("--config", metavar="FILE", help="read rules from [tool.nsys-doctor.check] of this "
                   "pyproject.toml (default: ./pyproject.toml when it has that table)")


def rules_from(args) -> dict:
    from ..compare.gate import load_config
    rules: dict = {}
    if args.config:
        rules = load_config(args.config)
    elif os.path.exists("pyproject.toml"):
        rules = load_config("pyproject.toml")
    for key in ("max_p99_ms", "max_p50_ms", "min_gpu_busy_pct", "baseline", "max_regression", "max_interval_ms",
                "min_throughput", "max_service_p99_ms"):
        if getattr(args, key) is not None:
            rules[key] = getattr(args, key)
    if args.fail_on:
        rules["fail_on"] = args.fail_on
    return rules


def run(args) -> int:
    from ..compare.gate import check_rules, evaluate
    from ..render import check_text
    from ..files import load_report
    rules = rules_from(args)
    if not any(rules.get(k) is not None for k in ("max_p99_ms", "max_p50_ms", "min_gpu_busy_pct", "fail_on",
                                                  "baseline", "max_interval_ms", "min_throughput",
                                                  "max_service_p99_ms")):
        raise BadInput(args.config, "no rules to check: give --max-p99-ms, --max-p50-ms, --max-interval-ms, "
                                    "--min-throughput, --max-service-p99-ms, --min-gpu-busy-pct, --fail-on or "
                                    "--baseline, or [tool.nsys-doctor.check] in pyproject.toml")
    check_rules(rules)      # bad rules are bad input, found before the profile is read
    if rules.get("max_regression") is not None and not rules.get("baseline"):
        raise BadInput(None, "--max-regression needs --baseline FILE (a profile or saved JSON report)")
    inputs = [args.profile, rules.get("baseline"), args.config or ("pyproject.toml" if os.path.exists(
        "pyproject.toml") else None)]
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY") if args.github else None
    check_outputs([(args.junit, "junit"), (summary_file, "step_summary")], inputs)
    report = load_report(args.profile, args.range_name)
    baseline = load_report(rules["baseline"], args.range_name) if rules.get("baseline") else None
    results = evaluate(report, rules, baseline)
    if args.junit:
        write(args.junit, check_text.junit_xml(results) + "\n", "junit", inputs)
    if summary_file:
        latency = [(args.profile, (report.requests or {}).get("latency_ms") or {})]
        if baseline is not None:
            latency.append((f"baseline {rules['baseline']}", (baseline.requests or {}).get("latency_ms") or {}))
        append(summary_file, check_text.step_summary(results, args.profile, latency, report.verdict),
               "step_summary", inputs)
    check_text.render(results, args.profile)
    if args.github:
        for line in check_text.github_annotations(results):
            print(line)
    return 0 if all(r.passed for r in results) else 1
