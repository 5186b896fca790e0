"""Analyse an Nsight Systems profile: find the requests, measure them, name the bottleneck.

PROFILE is an `nsys export --type sqlite` file (plain, .xz or .gz), or an .nsys-rep/.qdrep report (exported with
nsys when one is found). Exit codes: 0 analysed, 2 bad input (one line on stderr says what is wrong)."""
from __future__ import annotations

import sys

from ..errors import BadInput


def add_arguments(p) -> None:
    p.add_argument("profile", help="the profile (.sqlite, .sqlite.xz/.gz, .nsys-rep, .qdrep)")
    p.add_argument("--range", dest="range_name", metavar="NAME",
                   help="the NVTX range that marks one request (default: chosen automatically, and said why)")
    p.add_argument("--skip", type=int, metavar="N", help="leave the first N requests out as warm-up "
                   "(default: detected)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report (with a timeline) to FILE")


def run(args) -> int:
    from ..analysis import analyze
    from ..render import json_report, terminal
    if args.skip is not None and args.skip < 0:
        raise BadInput(None, "--skip must be 0 or more")
    report = analyze(args.profile, range_name=args.range_name, skip=args.skip)
    if args.html:
        from ..render import html
        try:
            with open(args.html, "w", encoding="utf-8") as f:
                f.write(html.render(report))
        except OSError as err:
            raise BadInput(args.html, f"cannot write the HTML report ({err.strerror})")
    out = sys.stdout
    if args.output:
        try:
            out = open(args.output, "w", encoding="utf-8")
        except OSError as err:
            raise BadInput(args.output, f"cannot write the report ({err.strerror})")
    try:
        if args.format == "json":
            out.write(json_report.render(report) + "\n")
        else:
            terminal.render(report, file=out)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0
