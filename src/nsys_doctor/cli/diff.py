"""Compare two runs: did requests get faster or slower, how sure we are, and where the time went.

BEFORE and AFTER are profiles (.sqlite, .sqlite.xz, .nsys-rep, ...) or reports saved with
`nsys-doctor analyze --format json -o FILE`. Latency is compared as distributions of measured requests: percentile
changes with bootstrap confidence intervals and a Mann-Whitney rank test; a change is reported only when the p50
interval excludes 0, p < 0.01 and it exceeds 8%. The request interval (1/throughput) is compared the same way, on
the gaps between request completions. When either run is throughput-bound (its requests queue on the GPU) the
verdict is about throughput, and latency is reported with the reason it moved. Exit codes: 0 compared, 2 bad input."""
from __future__ import annotations

import json

from ..files import check_outputs, output


def add_arguments(p) -> None:
    p.add_argument("before", help="the baseline: a profile or a saved JSON report")
    p.add_argument("after", help="the new run: a profile or a saved JSON report")
    p.add_argument("--range", dest="range_name", metavar="NAME", help="the NVTX range that marks one request "
                   "(default: chosen automatically in each profile)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the diff to FILE instead of stdout "
                   "(never over an input, or over a file that is not a previous diff)")


def run(args) -> int:
    from ..compare import compare
    from ..files import load_report
    inputs = [args.before, args.after]
    check_outputs([(args.output, "diff")], inputs)
    diff = compare(load_report(args.before, args.range_name), load_report(args.after, args.range_name))
    with output(args.output, "diff", inputs) as out:
        if args.format == "json":
            out.write(json.dumps(diff, indent=1) + "\n")
        else:
            from ..render import diff_text
            diff_text.render(diff, out)
    return 0
