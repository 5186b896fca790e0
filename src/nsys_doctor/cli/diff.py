"""Compare two runs: did requests get faster or slower, how sure we are, and where the time went.

BEFORE and AFTER are profiles (.sqlite, .sqlite.xz, .nsys-rep, ...) or reports saved with
`nsys-doctor analyze --format json -o FILE`. Latency is compared as distributions of measured requests: percentile
changes with bootstrap confidence intervals and a Mann-Whitney rank test; a change is reported only when the p50
interval excludes 0, p < 0.01 and it exceeds 2%. Exit codes: 0 compared, 2 bad input."""
from __future__ import annotations

import json
import sys

from ._output import check_outputs, output


def add_arguments(p) -> None:
    p.add_argument("before", help="the baseline: a profile or a saved JSON report")
    p.add_argument("after", help="the new run: a profile or a saved JSON report")
    p.add_argument("--range", dest="range_name", metavar="NAME", help="the NVTX range that marks one request "
                   "(default: chosen automatically in each profile)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the diff to FILE instead of stdout "
                   "(never over an input, or over a file that is not a previous diff)")


def run(args) -> int:
    from ..compare import compare, load_report
    inputs = [args.before, args.after]
    check_outputs([(args.output, "diff")], inputs)
    diff = compare(load_report(args.before, args.range_name), load_report(args.after, args.range_name))
    with output(args.output, "diff", inputs) as out:
        if args.format == "json":
            out.write(json.dumps(diff, indent=1) + "\n")
        else:
            render_text(diff, out)
    return 0


def _num(v, fmt="{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def _chg(v, fmt="{:+.3f}") -> str:
    return "" if v is None else fmt.format(v)


def render_text(diff: dict, file=None, width: int | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    file = file or sys.stdout
    con = Console(file=file, width=width or (None if file.isatty() else 110), highlight=False, soft_wrap=False)
    b, a, lat = diff["before"], diff["after"], diff["latency"]
    con.print(f"[bold]nsys-doctor diff[/bold]  {escape(str(b['path']))} -> {escape(str(a['path']))}")
    con.print(f"[dim]requests: {b['requests']} before, {a['requests']} after (measured, warm-up excluded); "
              f"range {escape(str(b['range']))!s} / {escape(str(a['range']))}[/dim]")
    style = {"faster": "bold green", "slower": "bold red"}.get(diff["verdict"], "bold")
    con.print(f"\n[{style}]{escape(diff['summary'].capitalize())}[/{style}]")
    for r in lat.get("reasons", []):
        con.print(f"  [dim]{escape(r)}[/dim]")

    t = Table(title="Request latency (ms)", title_justify="left", show_edge=False)
    for col in ("", "before", "after", "change", "95% CI of change", "%"):
        t.add_column(col, justify="left" if not col else "right")
    for q, row in lat.get("percentiles", {}).items():
        lo, hi = row["ci_ms"]
        t.add_row(q, f"{row['before_ms']:.3f}", f"{row['after_ms']:.3f}", f"{row['change_ms']:+.3f}",
                  f"[{lo:+.3f}, {hi:+.3f}]", f"{row['change_pct']:+.1f}%")
    tp = diff.get("throughput_per_s", {})
    if tp.get("before") is not None:
        t.add_row("throughput /s", _num(tp["before"], "{:.1f}"), _num(tp["after"], "{:.1f}"),
                  _chg(tp["change"], "{:+.1f}"), "", "")
    con.print(t)

    t = Table(title="Where a request's time went (mean ms per request)", title_justify="left", show_edge=False)
    for col in ("", "before", "after", "change"):
        t.add_column(col, justify="left" if not col else "right")
    for part, row in diff["breakdown_ms"].items():
        t.add_row(part.replace("_", " "), _num(row["before"]), _num(row["after"]), _chg(row["change"]))
    for k, row in diff["counts"].items():
        t.add_row(k.replace("_", " "), _num(row["before"], "{:.1f}"), _num(row["after"], "{:.1f}"),
                  _chg(row["change"], "{:+.1f}"))
    con.print(t)

    k = diff["kernels"]
    rows = [("", r) for r in k["changed"][:10]] + [("new", r) for r in k["new"][:5]] + \
           [("gone", r) for r in k["vanished"][:5]]
    if rows:
        t = Table(title=f"Kernels ({k['matched']} matched by name, {k['new_count']} new, {k['vanished_count']} "
                        "vanished)", title_justify="left", show_edge=False)
        for col in ("kernel", "", "ms/request before", "after", "change", "launches/request before", "after"):
            t.add_column(col, justify="left" if col in ("kernel", "") else "right", overflow="ellipsis",
                         max_width=48 if col == "kernel" else None, no_wrap=True)
        for tag, r in rows:
            pr, n = r["per_request_ms"], r["per_request"]
            t.add_row(escape(r["name"]), tag, f"{pr['before']:.3f}", f"{pr['after']:.3f}", f"{pr['change']:+.3f}",
                      f"{n['before']:g}", f"{n['after']:g}")
        con.print(t)

    f = diff["findings"]
    con.print("\n[bold]Findings[/bold]")
    if not any(f.values()):
        con.print("  [dim]none in either report[/dim]")
    for key, label in (("resolved", "resolved"), ("new", "new"), ("still_present", "still present")):
        for r in f[key]:
            imp = r["impact_ms"]
            sev = r["severity"]["after"] or r["severity"]["before"]
            con.print(f"  {label:13} {escape(r['category'])} ({sev}): {escape(r['title'])} "
                      f"[dim]impact {_num(imp['before'], '{:.2f}')} -> {_num(imp['after'], '{:.2f}')} ms[/dim]")
    for n in diff.get("notes", []):
        con.print(f"[yellow]note:[/yellow] {escape(n)}")
