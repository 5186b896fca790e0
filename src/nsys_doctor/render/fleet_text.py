"""Fleet summary (the dict of `Fleet.to_dict()`) -> terminal text. Paths, titles and problems are escaped."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from .safe import escape

SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "dim"}


def _ms(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _finding(f: dict | None) -> str:
    if not f:
        return "no finding"
    style = SEVERITY_STYLE.get(f.get("severity"), "")
    return (f"[{style}]{escape(str(f.get('category')))} ({escape(str(f.get('severity')))})[/{style}] "
            f"{escape(str(f.get('title') or ''))} ~{f.get('impact_ms') or 0:.2f} ms/request "
            f"({f.get('impact_pct') or 0:.0f}%)")


def render(fleet: dict, file=None, width: int | None = None, color: bool | None = None) -> None:
    file = file or sys.stdout
    con = Console(file=file, width=width or (None if file.isatty() else 110), highlight=False,
                  force_terminal=color, no_color=color is False, soft_wrap=False)
    n, failed, skipped = fleet.get("analysed", 0), fleet.get("failed", 0), fleet.get("skipped_count", 0)
    how = f"{fleet['n_workers']} workers" if fleet.get("n_workers") else "Dask"
    if fleet.get("scheduler"):
        how += f" at {escape(str(fleet['scheduler']))}"
    con.print(f"[bold]nsys-doctor fleet[/bold]  {n} report{'s' * (n != 1)} analysed, {failed} failed"
              + (f", {skipped} skipped" if skipped else "") + f"  ({how}, {fleet.get('seconds', 0):.1f} s)")
    con.print()
    lat = fleet.get("latency_ms") or {}
    if lat.get("count"):
        con.print(f"[bold]Fleet latency[/bold]: exact percentiles of all {lat['count']:,} measured requests "
                  f"of {n} report{'s' * (n != 1)} (merged, not averaged)")
        t = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
        for col in ("ms", "p50", "p90", "p99", "max", "mean"):
            t.add_column(col, justify="right")
        t.add_row("end-to-end latency", *(_ms(lat.get(k)) for k in ("p50", "p90", "p99", "max", "mean")))
        con.print(t)
    s = fleet.get("straggler")
    if s:
        con.print(f"[bold]Slowest[/bold]: {escape(s['label'])} p50 {s['p50_ms']:.2f} ms, {s['excess_ms']:+.2f} ms "
                  f"({s['ratio']:.2f}x) against the fleet median {s['fleet_median_ms']:.2f} ms (median of the "
                  f"reports' p50)")
        if s.get("explanation"):
            con.print(f"  top finding: {_finding(s['explanation'])}; found in {s['explanation_in_reports']} of "
                      f"{s['of_reports']} reports")
        else:
            con.print("  no finding explains it")
    o = fleet.get("outliers") or {}
    if o.get("reports"):
        con.print(f"[bold]Outliers[/bold] (p50 more than {o['threshold_mads']:g} MADs from the median "
                  f"{_ms(o['center_ms'])} ms; 1 MAD = {_ms(o['spread_ms'])} ms):")
        for x in o["reports"]:
            con.print(f"  {escape(x['label'])}: p50 {x['p50_ms']:.2f} ms, {x['mads']:+.1f} MADs ({x['direction']}); "
                      f"{_finding(x.get('top_finding'))}", soft_wrap=True)
    elif s:
        con.print(f"Outliers: none (p50 within {o.get('threshold_mads', 0):g} MADs of the median"
                  + (f"; {o['note']})" if o.get("note") else ")"))
    con.print()
    if fleet.get("reports"):
        t = Table(box=None, padding=(0, 2), show_header=True, header_style="bold", title_justify="left")
        for col, just in (("report", "left"), ("rank", "right"), ("requests", "right"), ("p50", "right"),
                          ("p90", "right"), ("p99", "right"), ("max", "right"), ("top finding", "left")):
            t.add_column(col, justify=just, no_wrap=True, overflow="ellipsis")
        for r in fleet["reports"]:
            lat = r["latency_ms"]
            top = r["findings"][0] if r["findings"] else None
            t.add_row(escape(r["label"]), "" if r.get("rank") is None else str(r["rank"]),
                      str(lat.get("count", 0)), *(_ms(lat.get(k)) for k in ("p50", "p90", "p99", "max")),
                      f"{escape(top['category'])} ({escape(top['severity'])})" if top else "-")
        con.print(t)
        con.print()
    if fleet.get("findings"):
        con.print("[bold]Findings across the fleet[/bold]")
        for c in fleet["findings"]:
            sev = ", ".join(f"{k} {v}" for k, v in c["severity"].items() if v)
            con.print(f"  {c['reports']} of {c['of']} reports: {escape(c['category'])} ({sev}; top finding in "
                      f"{c['top_in']}), ~{c['mean_impact_ms']:.2f} ms/request on average, up to "
                      f"{c['max_impact_ms']:.2f}")
        con.print()
    if fleet.get("failures"):
        con.print(f"[bold red]Failed[/bold red] ({len(fleet['failures'])}):")
        for f in fleet["failures"]:
            con.print(f"  FAILED {escape(f['path'])}: {escape(' '.join(str(f['problem']).split()))}", soft_wrap=True)
    if fleet.get("skipped"):
        con.print(f"[dim]Skipped ({len(fleet['skipped'])}):[/dim]")
        for x in fleet["skipped"]:
            con.print(f"  [dim]{escape(x['path'])}: {escape(x['why'])}[/dim]", soft_wrap=True)
