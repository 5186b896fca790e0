"""A Diff (the dict of `compare.compare`) -> terminal text. Paths, range, kernel names and finding titles come from
profiles: each goes through render.safe.escape (which also disarms `::error` and `##[` workflow commands wherever
wrapping puts them); lines are wrapped to the console's width (render.console: the terminal, COLUMNS, else 110)
with continuation lines indented under their text."""
from __future__ import annotations

import sys

from rich.table import Table

from .console import console, hang
from .safe import escape


WIDE_KERNELS = 100    # columns the kernel table needs for a 30-character name beside both launch counts


def _num(v, fmt="{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def _chg(v, fmt="{:+.3f}") -> str:
    return "" if v is None else fmt.format(v)


def _headline_reasons(con, diff: dict) -> None:
    """The statistics behind the headline (throughput when either run is throughput-bound, else latency), then
    the other metric and why it moved."""
    iv, lat = diff.get("interval") or {}, diff["latency"]
    if diff.get("load"):
        hang(con, "  ", f"[dim]before {escape(diff['load']['before'])}, after {escape(diff['load']['after'])}[/dim]")
    first = iv if diff.get("headline") == "throughput" else lat
    for r in first.get("reasons", []):
        hang(con, "  ", f"[dim]{escape(r)}[/dim]")
    if diff.get("latency_reason"):
        hang(con, "  ", escape(diff["latency_reason"]))
    elif diff.get("headline") == "throughput" and lat.get("reasons"):
        hang(con, "  [dim]latency:[/dim] ", f"[dim]{escape(lat['reasons'][0])}[/dim]")


def _interval_row(t, diff: dict) -> None:
    iv = diff.get("interval") or {}
    if iv.get("before_ms") is not None:
        lo, hi = iv["ci_ms"]
        t.add_row("interval (mean)", f"{iv['before_ms']:.3f}", f"{iv['after_ms']:.3f}", f"{iv['change_ms']:+.3f}",
                  f"[{lo:+.3f}, {hi:+.3f}]", f"{iv['change_pct']:+.1f}%")


def render(diff: dict, file=None, width: int | None = None) -> None:
    file = file or sys.stdout
    con = console(file, width)
    b, a, lat = diff["before"], diff["after"], diff["latency"]
    hang(con, "[bold]nsys-doctor diff[/bold]  ", f"{escape(b['path'])} -> {escape(a['path'])}")
    hang(con, "", f"[dim]requests: {b['requests']} before, {a['requests']} after (measured, warm-up excluded); "
                  f"range {escape(b['range'])} / {escape(a['range'])}[/dim]")
    style = {"faster": "bold green", "slower": "bold red"}.get(diff["verdict"], "bold")
    con.print(f"\n[{style}]{escape(diff['summary'][:1].upper() + diff['summary'][1:])}[/{style}]")
    _headline_reasons(con, diff)

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
    _interval_row(t, diff)
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
        # the numbers keep their width: under WIDE_KERNELS columns the launch counts (also in the table above) are
        # left out, and only a kernel name gives way (cut with an ellipsis)
        launches = con.width >= WIDE_KERNELS
        cols = ("kernel", "", "ms/req before", "after", "change") + (("launches before", "after") if launches else ())
        for col in cols:
            t.add_column(col, justify="left" if col in ("kernel", "") else "right", overflow="ellipsis",
                         max_width=48 if col == "kernel" else None, min_width=None if col == "kernel" else len(col),
                         no_wrap=col != "kernel")
        for tag, r in rows:
            pr, n = r["per_request_ms"], r["per_request"]
            t.add_row(escape(r["name"]), tag, f"{pr['before']:.3f}", f"{pr['after']:.3f}", f"{pr['change']:+.3f}",
                      *((f"{n['before']:g}", f"{n['after']:g}") if launches else ()))
        con.print(t)

    f = diff["findings"]
    con.print("\n[bold]Findings[/bold]")
    if not any(f.values()):
        con.print("  [dim]none in either report[/dim]")
    for key, label in (("resolved", "resolved"), ("new", "new"), ("still_present", "still present")):
        for r in f[key]:
            imp = r["impact_ms"]
            sev = r["severity"]["after"] or r["severity"]["before"]
            hang(con, f"  {label:13} ", f"{escape(r['category'])} ({escape(sev)}): {escape(r['title'])} "
                 f"[dim]impact {_num(imp['before'], '{:.2f}')} -> {_num(imp['after'], '{:.2f}')} ms[/dim]")
    for n in diff.get("notes", []):
        hang(con, "[yellow]note:[/yellow] ", escape(n))
