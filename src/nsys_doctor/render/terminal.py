"""Report -> terminal text: the verdict first, then the evidence. Everything from the profile is escaped."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..report import Report
from .safe import clean, escape

SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "dim"}


def render(report: Report, file=None, width: int | None = None, color: bool | None = None) -> None:
    file = file or sys.stdout
    if getattr(file, "errors", None) == "strict" and hasattr(file, "reconfigure"):
        file.reconfigure(errors="replace")   # an ascii/latin-1 terminal shows "?" for what it cannot show
    con = Console(file=file, width=width or (None if file.isatty() else 110), highlight=False,
                  force_terminal=color, no_color=color is False, soft_wrap=False)
    p, r = report.profile, report.requests
    con.print(Text("nsys-doctor", style="bold") + Text(f"  {clean(p.get('path'))}"))
    gpus = ", ".join(p.get("gpus") or []) or "GPU not recorded"
    held = ", ".join(f"{k} {v:,}" for k, v in (p.get("counts") or {}).items() if v and k not in ("threads", "processes"))
    con.print(f"[dim]{escape(str(p.get('format')))} {escape(str(p.get('nsys_version') or ''))} · {escape(gpus)}"
              f" · {escape(held)}[/dim]")
    missing = [f"{k}: {v}" for k, v in (p.get("absent") or {}).items()]
    if missing:
        con.print(f"[dim]missing: {escape('; '.join(missing))}[/dim]")
    if p.get("tensorrt"):
        signs = p["tensorrt"].get("signs", []) if isinstance(p["tensorrt"], dict) else ["TensorRT NVTX domain"]
        con.print(f"[dim]TensorRT engine detected ({escape('; '.join(signs[:4]))})[/dim]")
    con.print()
    con.print(Text("Verdict: ", style="bold") + Text(clean(report.verdict)))
    con.print()
    how = "inferred" if r.get("inferred") else "NVTX range"
    con.print(f"[bold]Requests[/bold]: {r.get('count')} measured of {r.get('total')} ({how} "
              f"[cyan]{escape(str(r.get('range')))}[/cyan]; {escape(str(r.get('chosen_because')))})")
    if r.get("warmup"):
        con.print(f"  warm-up left out: {r['warmup']} ({escape(str(r.get('warmup_reason')))})")
    lat, cpu = r.get("latency_ms", {}), r.get("cpu_ms", {})
    t = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
    for col in ("ms", "p50", "p90", "p99", "max", "mean"):
        t.add_column(col, justify="right")
    t.add_row("end-to-end latency", *(f"{lat.get(k, 0):.2f}" for k in ("p50", "p90", "p99", "max", "mean")))
    t.add_row("CPU time in range", *(f"{cpu.get(k, 0):.2f}" for k in ("p50", "p90", "p99", "max", "mean")))
    con.print(t)
    b, bp = r.get("breakdown_ms", {}), r.get("breakdown_pct", {})
    con.print(f"  GPU busy {r.get('gpu_busy_pct', 0):.1f}% of latency (own work {r.get('own_gpu_busy_pct', 0):.1f}%); "
              f"per request: {r.get('launches_per_request', 0):g} launches, {r.get('kernels_per_request', 0):g} "
              f"kernels, {r.get('copies_per_request', 0):g} copies")
    bar = "  ".join(f"{k.replace('_', ' ')} {b[k]:.2f} ms ({bp.get(k, 0):.0f}%)" for k in b)
    con.print(f"  breakdown: {bar}")
    _tensorrt_layers(con, r.get("tensorrt_layers") or [])
    con.print()
    if not report.findings:
        con.print("[bold]Findings[/bold]: none")
    for i, f in enumerate(report.findings, 1):
        style = SEVERITY_STYLE.get(f.severity, "")
        con.print(f"[{style}]{i}. [{f.severity.upper()}] {escape(f.title)}[/{style}]  "
                  f"[bold]~{f.impact_ms:.2f} ms/request ({f.impact_pct:.0f}%)[/bold]  [dim]{escape(f.category)}[/dim]")
        nums = ", ".join(f"{k}={_fmt(v)}" for k, v in f.evidence.numbers.items())
        if nums:
            con.print(f"   evidence: {escape(nums)}")
        for inst in f.evidence.worst[:3]:
            where = f" @ {inst.start_ns / 1e9:.6f}s" + (f" req {inst.request}" if inst.request is not None else "")
            extra = f" [{inst.thread}]" if inst.thread else ""
            code = f" at {inst.code}" if inst.code else ""
            con.print(f"   - {escape(inst.what)}{escape(where)}{escape(extra)}{escape(code)}")
        for c in f.evidence.code[:3]:
            con.print(f"   - hot: {escape(str(c.get('function')))} ({escape(str(c.get('module', '')))}) "
                      f"{c.get('share_pct', 0):.0f}%")
        for note in f.evidence.notes:
            con.print(f"   [dim]note: {escape(note)}[/dim]")
        con.print(f"   [green]fix[/green]: {escape(f.fix)}")
        con.print(f"   [dim]why: {escape(f.why)}[/dim]")
        con.print(f"   [dim]estimate: {escape(f.estimate)}[/dim]")
    for note in report.notes:
        con.print(f"[dim]note: {escape(note)}[/dim]")


def _tensorrt_layers(con: Console, layers: list[dict], top: int = 10) -> None:
    """The TensorRT layers that cost the most GPU time (kernels attributed by launch, not the CPU-side ranges)."""
    if not layers:
        return
    con.print()
    con.print("[bold]TensorRT layers[/bold] by GPU time (kernels launched inside each layer's NVTX range)")
    t = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
    for col in ("layer", "calls", "kernels", "ms/enqueue", "share", ""):
        t.add_column(col, justify="left" if col in ("layer", "") else "right", overflow="ellipsis", no_wrap=True,
                     max_width=50 if col == "layer" else None, min_width=None if col == "layer" else len(col) or 6)
    for row in layers[:top]:
        t.add_row(escape(str(row.get("name"))), f"{row.get('calls', 0):,}", f"{row.get('kernels', 0):,}",
                  f"{row.get('gpu_ms_per_enqueue', 0):.3f}", f"{row.get('share_pct', 0):.1f}%",
                  "[dim]Myelin[/dim]" if row.get("fused") else "")
    con.print(t)
    for row in layers[:top]:
        ops = row.get("ops") or []
        if ops:
            parts = ", ".join(f"{escape(o['name'][:40])} {o['share_of_layer_pct']:.0f}%" for o in ops[:4])
            con.print(f"  [dim]{escape(str(row['name'])[:50])}: {parts}[/dim]")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)
