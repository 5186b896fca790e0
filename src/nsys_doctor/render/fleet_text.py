"""Fleet summary (the dict of `Fleet.to_dict()`) -> terminal text. Paths, titles and problems are escaped."""
from __future__ import annotations

import sys

from rich.table import Table

from .console import console, hang
from .safe import escape

SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "dim"}
WIDE = 100     # below this many columns the report table leaves out p90 and rank and uses 1-space gaps
SHARED_SUFFIXES = (".sqlite.xz", ".sqlite.gz", ".sqlite", ".nsys-rep", ".qdrep", ".json.gz", ".json")


def _ms(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _finding(f: dict | None) -> str:
    if not f:
        return "no finding"
    style = SEVERITY_STYLE.get(f.get("severity"), "")
    return (f"[{style}]{escape(str(f.get('category')))} ({escape(str(f.get('severity')))})[/{style}] "
            f"{escape(str(f.get('title') or ''))} ~{f.get('impact_ms') or 0:.2f} ms/request "
            f"({f.get('impact_pct') or 0:.0f}%)")


def _how(fleet: dict) -> str:
    """Where the work ran: "2 worker processes", "Dask at tcp://...", "1 local process (no Dask)"."""
    k = fleet.get("n_workers")
    procs = f"{k} {'worker process' if k == 1 else 'worker processes'}" if k else ""
    if fleet.get("scheduler"):
        return f"Dask at {escape(str(fleet['scheduler']))}" + (f", {procs}" if procs else "")
    if fleet.get("engine") == "processes":
        return f"{procs or 'local processes'}, standard library"
    return f"Dask, {procs}" if procs else "Dask"


def _report_table(reports: list[dict], width: int) -> Table:
    """One row per report. Numbers are never cut: they do not wrap and their columns are as wide as their widest
    value; below WIDE columns p90 and the rank column (the rank is in the file name) are left out, a suffix every
    name shares (".sqlite") is said once in the header, and the name and the top finding fold if still too long.
    A rank column only when some report has a rank."""
    narrow = width < WIDE
    stats = ("p50", "p99", "max") if narrow else ("p50", "p90", "p99", "max")
    labels = [r["label"] for r in reports]
    suffix = next((x for x in SHARED_SUFFIXES if all(lb.endswith(x) and len(lb) > len(x) for lb in labels)), "")
    rows = []
    for r, label in zip(reports, labels):
        lat = r["latency_ms"]
        top = r["findings"][0] if r["findings"] else None
        rows.append({"report": escape(label[:len(label) - len(suffix)] if narrow and suffix else label),
                     "rank": "" if r.get("rank") is None else str(r["rank"]),
                     "requests": f"{lat.get('count', 0):,}", **{k: _ms(lat.get(k)) for k in stats},
                     "top finding": f"{escape(top['category'])} {escape(top['severity'])}" if top else "-"})
    cols = ["report"] + (["rank"] if not narrow and any(x["rank"] for x in rows) else []) + ["requests", *stats,
                                                                                           "top finding"]
    t = Table(box=None, padding=(0, 1 if narrow else 2), show_header=True, header_style="bold", pad_edge=False)
    for c in cols:
        if c in ("report", "top finding"):
            head = f"report ({suffix})" if c == "report" and narrow and suffix else c
            t.add_column(head, justify="left", overflow="fold")
        else:
            w = max(len(c), *(len(x[c]) for x in rows))
            t.add_column(c, justify="right", no_wrap=True, min_width=w, max_width=w)
    for x in rows:
        t.add_row(*(x[c] for c in cols))
    return t


def render(fleet: dict, file=None, width: int | None = None, color: bool | None = None) -> None:
    file = file or sys.stdout
    con = console(file, width, color)
    n, failed, skipped = fleet.get("analysed", 0), fleet.get("failed", 0), fleet.get("skipped_count", 0)
    hang(con, "[bold]nsys-doctor fleet[/bold]  ", f"{n} report{'s' * (n != 1)} analysed, {failed} failed"
         + (f", {skipped} skipped" if skipped else "") + f"  ({_how(fleet)}, {fleet.get('seconds', 0):.1f} s)")
    if fleet.get("engine") == "processes":
        hang(con, "  ", "[dim]Dask is not installed: analysed on this machine's processes. With Dask "
             "(pip install 'nsys-doctor\\[fleet]'), --scheduler spreads the files over a cluster.[/dim]")
    con.print()
    lat = fleet.get("latency_ms") or {}
    if lat.get("count"):
        hang(con, "[bold]Fleet latency[/bold]: ", f"exact percentiles of all {lat['count']:,} measured requests "
             f"of {n} report{'s' * (n != 1)} (merged, not averaged)")
        t = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
        for col in ("ms", "p50", "p90", "p99", "max", "mean"):
            t.add_column(col, justify="right")
        t.add_row("end-to-end latency", *(_ms(lat.get(k)) for k in ("p50", "p90", "p99", "max", "mean")))
        con.print(t)
    s = fleet.get("straggler")
    if s:
        hang(con, "[bold]Slowest[/bold]: ", f"{escape(s['label'])} p50 {s['p50_ms']:.2f} ms, "
             f"{s['excess_ms']:+.2f} ms ({s['ratio']:.2f}x) against the fleet median {s['fleet_median_ms']:.2f} ms "
             f"(median of the reports' p50)")
        if s.get("explanation"):
            hang(con, "  top finding: ", f"{_finding(s['explanation'])}; found in {s['explanation_in_reports']} "
                 f"of {s['of_reports']} reports")
        else:
            con.print("  no finding explains it")
    o = fleet.get("outliers") or {}
    if o.get("reports"):
        hang(con, "[bold]Outliers[/bold] ", f"(p50 more than {o['threshold_mads']:g} MADs from the median "
             f"{_ms(o['center_ms'])} ms; 1 MAD = {_ms(o['spread_ms'])} ms):")
        for x in o["reports"]:
            hang(con, "  ", f"{escape(x['label'])}: p50 {x['p50_ms']:.2f} ms, {x['mads']:+.1f} MADs "
                 f"({x['direction']}); {_finding(x.get('top_finding'))}")
    elif s:
        hang(con, "Outliers: ", f"none (p50 within {o.get('threshold_mads', 0):g} MADs of the median"
             + (f"; {escape(o['note'])})" if o.get("note") else ")"))
    con.print()
    if fleet.get("reports"):
        con.print(_report_table(fleet["reports"], con.width))
        con.print()
    if fleet.get("findings"):
        con.print("[bold]Findings across the fleet[/bold]")
        for c in fleet["findings"]:
            sev = ", ".join(f"{k} {v}" for k, v in c["severity"].items() if v)
            hang(con, "  ", f"{c['reports']} of {c['of']} reports: {escape(c['category'])} ({sev}; top finding "
                 f"in {c['top_in']}), ~{c['mean_impact_ms']:.2f} ms/request on average, up to "
                 f"{c['max_impact_ms']:.2f}")
        con.print()
    if fleet.get("failures"):
        con.print(f"[bold red]Failed[/bold red] ({len(fleet['failures'])}):")
        for f in fleet["failures"]:
            hang(con, "  FAILED ", f"{escape(f['path'])}: {escape(' '.join(str(f['problem']).split()))}")
    if fleet.get("skipped"):
        con.print(f"[dim]Skipped ({len(fleet['skipped'])}):[/dim]")
        for x in fleet["skipped"]:
            hang(con, "  ", f"[dim]{escape(x['path'])}: {escape(x['why'])}[/dim]")
