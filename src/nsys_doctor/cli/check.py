"""Gate a build on a profile: latency limits, GPU use, findings, and regression against a baseline.

PROFILE is a profile or a report saved with `nsys-doctor analyze --format json`. Rules come from the options below
or from `[tool.nsys-doctor.check]` in pyproject.toml (same names with underscores, e.g. max_p99_ms = 20,
fail_on = ["any:high"], baseline = "baseline.json", max_regression = "5%"); options override the file.
A regression counts only when it is statistically clear (same test as `diff`) and larger than --max-regression.
Exit codes: 0 every rule holds, 1 a rule fails, 2 bad input."""
from __future__ import annotations

import os
import sys

from ..errors import BadInput
from ._output import check_outputs, write


def add_arguments(p) -> None:
    p.add_argument("profile", help="the profile or saved JSON report to check")
    p.add_argument("--range", dest="range_name", metavar="NAME", help="the NVTX range that marks one request")
    p.add_argument("--max-p99-ms", type=float, metavar="X", help="fail when p99 request latency exceeds X ms")
    p.add_argument("--max-p50-ms", type=float, metavar="X", help="fail when p50 request latency exceeds X ms")
    p.add_argument("--min-gpu-busy-pct", type=float, metavar="X",
                   help="fail when the GPU is busy less than X%% of request latency")
    p.add_argument("--fail-on", action="append", metavar="CATEGORY[:SEVERITY]",
                   help="fail on a finding of CATEGORY ('any' for all) of SEVERITY or worse (default low); "
                        "repeatable, e.g. --fail-on any:high --fail-on cuda_sync")
    p.add_argument("--baseline", metavar="FILE", help="a baseline profile or saved JSON report")
    p.add_argument("--max-regression", metavar="PCT", help="fail when p50 latency is significantly slower than "
                   "the baseline by more than PCT (e.g. 5%%); with --baseline alone, any significant slow-down fails")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML, one testcase per rule (never over an "
                   "input, or over a file that is not a previous JUnit XML of nsys-doctor)")
    p.add_argument("--github", action="store_true", help="print GitHub Actions annotations (::error ...)")
    p.add_argument("--config", metavar="FILE", help="read rules from [tool.nsys-doctor.check] of this "
                   "pyproject.toml (default: ./pyproject.toml when it has that table)")


def rules_from(args) -> dict:
    from ..compare.gate import load_config
    rules: dict = {}
    if args.config:
        rules = load_config(args.config)
    elif os.path.exists("pyproject.toml"):
        rules = load_config("pyproject.toml")
    for key in ("max_p99_ms", "max_p50_ms", "min_gpu_busy_pct", "baseline", "max_regression"):
        if getattr(args, key) is not None:
            rules[key] = getattr(args, key)
    if args.fail_on:
        rules["fail_on"] = args.fail_on
    return rules


def run(args) -> int:
    from ..compare import load_report
    from ..compare.gate import evaluate, github_annotations, junit_xml, parse_fail_on, parse_percent
    rules = rules_from(args)
    if not any(rules.get(k) is not None for k in ("max_p99_ms", "max_p50_ms", "min_gpu_busy_pct", "fail_on",
                                                  "baseline")):
        raise BadInput(args.config, "no rules to check: give --max-p99-ms, --max-p50-ms, --min-gpu-busy-pct, "
                                    "--fail-on or --baseline, or [tool.nsys-doctor.check] in pyproject.toml")
    for spec in rules.get("fail_on") or []:      # bad rules are bad input, found before the profile is read
        parse_fail_on(spec)
    if rules.get("max_regression") is not None:
        parse_percent(rules["max_regression"])
        if not rules.get("baseline"):
            raise BadInput(None, "--max-regression needs --baseline FILE (a profile or saved JSON report)")
    inputs = [args.profile, rules.get("baseline"), args.config or ("pyproject.toml" if os.path.exists(
        "pyproject.toml") else None)]
    check_outputs([(args.junit, "junit")], inputs)
    report = load_report(args.profile, args.range_name)
    baseline = load_report(rules["baseline"], args.range_name) if rules.get("baseline") else None
    results = evaluate(report, rules, baseline)
    if args.junit:
        write(args.junit, junit_xml(results) + "\n", "junit", inputs)
    show(results, args.profile)
    if args.github:
        for line in github_annotations(results):
            print(line)
    return 0 if all(r.passed for r in results) else 1


def show(results, profile: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    con = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 110, highlight=False)
    failed = sum(not r.passed for r in results)
    for r in results:
        mark = "[green]PASS[/green]" if r.passed else "[bold red]FAIL[/bold red]"
        con.print(f"{mark} {escape(r.name)}: {escape(r.message)}")
    verdict = "[green]all rules hold[/green]" if not failed else f"[bold red]{failed} of {len(results)} " \
                                                                 "rules fail[/bold red]"
    con.print(f"nsys-doctor check {escape(profile)}: {verdict}")
