"""Analyse an Nsight Systems profile: find the requests, measure them, name the bottleneck.

PROFILE is a file in one of the formats listed under PROFILE below, recognised by its content (an .nsys-rep/.qdrep
report is exported with nsys when one is found). Exit codes: 0 analysed, 2 bad input (one line on stderr says what
is wrong).

Several profiles, a folder or a glob: fleet mode (docs/fleet.md). Files are picked by content (a .json only if it
is a PyTorch profiler trace); a file named like a profile that is none is listed as skipped and does not fail the
run. Each one is analysed in parallel on local worker
processes (on Dask when it is installed; --scheduler: a Dask cluster), then one summary: exact fleet-wide percentiles, the
slowest report and why, outliers, findings across the fleet, and every failure on its own line (exit 2 when any
report failed)."""
from __future__ import annotations

import os
import sys

from ..errors import BadInput
from ..files import check_outputs, output


def add_arguments(p) -> None:
    from ..read import formats       # the readers say what they read (read.READERS)
    p.add_argument("profile", nargs="+", metavar="PROFILE", help=f"the profile: {formats()}, each plain, .xz or "
                   ".gz; several, a folder or a glob: fleet mode")
    p.add_argument("--range", dest="range_name", metavar="NAME",
                   help="the NVTX range that marks one request (default: chosen automatically, and said why)")
    p.add_argument("--skip", type=int, metavar="N", help="leave the first N requests out as warm-up "
                   "(default: detected); refused when it would leave none")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout "
                   "(never over an input, or over a file that is not a previous report)")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report (with a timeline) to FILE")
    p.add_argument("--export-beside", action="store_true", help="an .nsys-rep is exported to NAME.sqlite next to it "
                   "(never over an existing file) instead of into the cache folder")
    p.add_argument("--scheduler", metavar="ADDRESS", help="fleet mode: a running Dask scheduler (tcp://host:8786; "
                   "needs the fleet extra); default: local worker processes")
    p.add_argument("--workers", type=int, metavar="N", help="fleet mode: local worker processes (default: CPU count)")


def run(args) -> int:
    from ..analysis import analyze
    if args.skip is not None and args.skip < 0:
        raise BadInput(None, "--skip must be 0 or more")
    paths = [args.profile] if isinstance(args.profile, (str, os.PathLike)) else list(args.profile)
    from ..fleet import is_collection
    if len(paths) > 1 or is_collection(paths[0]):
        return run_fleet(args, paths)
    inputs = paths[:1]
    html_file = getattr(args, "html", None)
    check_outputs([(args.output, "report"), (html_file, "html")], inputs)
    report = analyze(paths[0], range_name=args.range_name, skip=args.skip,
                     export_beside=getattr(args, "export_beside", False))
    if html_file:
        from ..render import html
        from ..files import write
        write(html_file, html.render(report), "html", inputs)
    with output(args.output, "report", inputs) as out:
        if args.format == "json":
            from ..render import json_report
            out.write(json_report.render(report) + "\n")
        else:
            from ..render import terminal       # rich: 35 ms of import that JSON output does without
            terminal.render(report, file=out)
    return 0


def run_fleet(args, paths) -> int:
    """Fleet mode: a progress bar on stderr while the workers run, then the summary; exit 2 when any failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..fleet import analyze_many, expand_paths
    from ..render import fleet_text, json_report
    from ..render.console import console
    from ..render.safe import escape
    from . import error_line
    if args.html:
        raise BadInput(args.html, "--html takes one profile; in fleet mode use --format json -o FILE")
    if getattr(args, "export_beside", False):
        raise BadInput(None, "--export-beside takes one profile; fleet mode exports .nsys-rep reports into the cache")
    expanded = expand_paths(paths)
    inputs = expanded[0]                    # the files that will be read
    check_outputs([(args.output, "fleet")], inputs)
    err = console(sys.stderr)
    bar = Progress(TextColumn("analysing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.description}"), console=err, transient=True, disable=not err.is_terminal)
    with bar:
        task = bar.add_task("", total=None)

        def progress(done, total, outcome):
            failed = "failed " if hasattr(outcome, "problem") else ""
            bar.update(task, completed=done, total=total, description=failed + escape(os.path.basename(outcome.path)))
        fleet = analyze_many(paths, scheduler=args.scheduler, workers=args.workers, progress=progress,
                             range_name=args.range_name, skip=args.skip, expanded=expanded).to_dict()
    with output(args.output, "fleet", inputs) as out:
        if args.format == "json":
            out.write(json_report.render(fleet) + "\n")
        else:
            fleet_text.render(fleet, file=out)
    # every failed report also gets the one-line error on stderr that a single bad file would get
    for f in fleet["failures"]:
        print(error_line(f.get("path"), f.get("problem")), file=sys.stderr)
    return 2 if fleet["failures"] else 0
