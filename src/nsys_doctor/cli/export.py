"""Export the timeline around a typical and the worst request, with the findings marked, for other viewers.

`--perfetto FILE` writes Chrome trace event JSON: open it at https://ui.perfetto.dev (or chrome://tracing).
`--html FILE` writes the self-contained HTML report. PROFILE is a profile (as for `analyze`) or a report saved
with `analyze --format json`. An output is never written over an input or over a file that is not a previous output
of the same kind (exit 2). Exit codes: 0 written, 2 bad input."""
from __future__ import annotations


from ..errors import BadInput
from ..files import check_outputs, write


def add_arguments(p) -> None:
    from ..read import formats       # the readers say what they read (read.READERS)
    p.add_argument("profile", help=f"the profile ({formats()}, each plain, .xz or .gz) or a saved report .json")
    p.add_argument("--perfetto", metavar="FILE", help="write Chrome trace event JSON for ui.perfetto.dev to FILE")
    p.add_argument("--html", metavar="FILE", help="write the HTML report to FILE")
    p.add_argument("--range", dest="range_name", metavar="NAME",
                   help="the NVTX range that marks one request (default: chosen automatically)")
    p.add_argument("--skip", type=int, metavar="N", help="leave the first N requests out as warm-up (default: detected)")


def load(args):
    # a saved report or a profile (a Kineto .json trace is a profile): one place decides, shared with diff/check
    from ..files import load_report
    return load_report(args.profile, range_name=args.range_name, skip=args.skip)


def run(args) -> int:
    from ..render import html, perfetto
    if not args.perfetto and not args.html:
        raise BadInput(None, "nothing to export: give --perfetto FILE and/or --html FILE")
    if args.skip is not None and args.skip < 0:
        raise BadInput(None, "--skip must be 0 or more")
    inputs = [args.profile]
    check_outputs([(args.perfetto, "perfetto"), (args.html, "html")], inputs)
    report = load(args)
    if args.perfetto:
        write(args.perfetto, perfetto.render(report), "perfetto", inputs)
    if args.html:
        write(args.html, html.render(report), "html", inputs)
    return 0
