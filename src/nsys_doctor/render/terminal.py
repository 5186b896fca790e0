"""Report -> terminal text: the verdict first, then the evidence. Everything from the profile is escaped."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..report import Report
from .console import console, hang
from .safe import clean, escape

SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "dim"}


def render(report: Report, file=None, width: int | None = None, color: bool | None = None) -> None:
    file = file or sys.stdout
    if getattr(file, "errors", None) == "strict" and hasattr(file, "reconfigure"):
        file.reconfigure(errors="replace")   # an ascii/latin-1 terminal shows "?" for what it cannot show
    con = console(file, width, color)
    p, r = report.profile, report.requests
    con.print(Text("nsys-doctor", style="bold") + Text(f"  {clean(p.get('path'))}"))
    gpus = gpu_list(p.get("gpus") or []) or "GPU not recorded"
    held = ", ".join(f"{k} {v:,}" for k, v in (p.get("counts") or {}).items() if v and k not in ("threads", "processes"))
    hang(con, "", f"[dim]{escape(str(p.get('format')))} {escape(str(p.get('nsys_version') or ''))} · "
                  f"{escape(gpus)} · {escape(held)}[/dim]")
    missing = [f"{k}: {v}" for k, v in (p.get("absent") or {}).items()]
    if missing:
        hang(con, "[dim]missing: [/dim]", f"[dim]{escape('; '.join(missing))}[/dim]")
    if p.get("tensorrt"):
        signs = p["tensorrt"].get("signs", []) if isinstance(p["tensorrt"], dict) else ["TensorRT NVTX domain"]
        hang(con, "", f"[dim]TensorRT engine detected ({escape('; '.join(signs[:4]))})[/dim]")
    con.print()
    hang(con, "[bold]Verdict:[/bold] ", escape(report.verdict))
    con.print()
    how = "inferred" if r.get("inferred") else "NVTX range"
    hang(con, "[bold]Requests[/bold]: ", f"{r.get('count')} measured of {r.get('total')} ({how} "
         f"[cyan]{escape(str(r.get('range')))}[/cyan]; {escape(str(r.get('chosen_because')))})")
    if r.get("warmup"):
        hang(con, "  warm-up left out: ", f"{r['warmup']} ({escape(str(r.get('warmup_reason')))})")
    lat, cpu = r.get("latency_ms", {}), r.get("cpu_ms", {})
    t = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
    for col in ("ms", "p50", "p90", "p99", "max", "mean"):
        t.add_column(col, justify="right")
    t.add_row("end-to-end latency", *(f"{lat.get(k, 0):.2f}" for k in ("p50", "p90", "p99", "max", "mean")))
    t.add_row("CPU time in range", *(f"{cpu.get(k, 0):.2f}" for k in ("p50", "p90", "p99", "max", "mean")))
    _queue_rows(t, r)
    con.print(t)
    _load_line(con, r)
    b, bp = r.get("breakdown_ms", {}), r.get("breakdown_pct", {})
    # two different averages, said as such: the mean of each request's busy share, and the mean milliseconds
    # (shares of the mean latency), which differ when short and long requests are busy differently
    hang(con, "  ", f"GPU busy {r.get('gpu_busy_pct', 0):.1f}% of a request's latency on average (its own work "
         f"{r.get('own_gpu_busy_pct', 0):.1f}%); per request: launches {r.get('launches_per_request', 0):g}, "
         f"kernels {r.get('kernels_per_request', 0):g}, copies {r.get('copies_per_request', 0):g}")
    bar = ", ".join(f"{k.replace('_', ' ')} {b[k]:.2f} ms ({bp.get(k, 0):.0f}%)" for k in b)
    hang(con, "  ", f"mean request ({lat.get('mean', 0):.2f} ms): {bar}")
    _gpu_bound_line(con, r.get("gpu_bound_by"))
    _tensorrt_layers(con, r.get("tensorrt_layers") or [])
    con.print()
    if not report.findings:
        con.print("[bold]Findings[/bold]: none")
    for i, f in enumerate(report.findings, 1):
        style = SEVERITY_STYLE.get(f.severity, "")
        basis = " of interval" if f.impact_basis == "interval" else ""
        hang(con, f"[{style}]{i}. [/{style}]", f"[{style}]\\[{f.severity.upper()}] {escape(f.title)}[/{style}]  "
             f"[bold]~{f.impact_ms:.2f} ms/request ({f.impact_pct:.0f}%{basis})[/bold]  [dim]{escape(f.category)}[/dim]")
        nums = ", ".join(f"{k}={_fmt(v)}" for k, v in f.evidence.numbers.items())
        if nums:
            hang(con, "   evidence: ", escape(nums))
        for inst in f.evidence.worst[:3]:
            where = f" @ {inst.start_ns / 1e9:.6f}s" + (f" req {inst.request}" if inst.request is not None else "")
            extra = f" [{inst.thread}]" if inst.thread else ""
            code = f" at {inst.code}" if inst.code else ""
            hang(con, "   - ", f"{escape(inst.what)}{escape(where)}{escape(extra)}{escape(code)}")
        for c in f.evidence.code[:3]:
            hang(con, "   - ", f"hot: {escape(str(c.get('function')))} ({escape(str(c.get('module', '')))}) "
                 f"{c.get('share_pct', 0):.0f}%")
        for note in f.evidence.notes:
            hang(con, "   [dim]note: [/dim]", f"[dim]{escape(note)}[/dim]")
        hang(con, "   [green]fix[/green]: ", escape(f.fix))
        hang(con, "   [dim]why: [/dim]", f"[dim]{escape(f.why)}[/dim]")
        hang(con, "   [dim]estimate: [/dim]", f"[dim]{escape(f.estimate)}[/dim]")
    for note in report.notes:
        hang(con, "[dim]note: [/dim]", f"[dim]{escape(note)}[/dim]")


def _queue_rows(t: Table, r: dict) -> None:
    """Queueing and service time rows of the request table (model/queueing.py), when the report has them."""
    q, svc = r.get("queue_ms"), r.get("service_ms")
    if q and svc:
        t.add_row("queued behind others", *(f"{q.get(k, 0):.2f}" for k in ("p50", "p90", "p99", "max", "mean")))
        t.add_row("service (own work)", *(f"{svc.get(k, 0):.2f}" for k in ("p50", "p90", "p99", "max", "mean")))


def _load_line(con: Console, r: dict) -> None:
    """What bounds the run: latency- or throughput-bound, gpu / cpu / waiting, the request interval."""
    if not r.get("load"):
        return
    ev = r.get("load_evidence") or {}
    why = (f"queueing {ev.get('queue_pct_of_latency', 0):.0f}% of latency, GPU busy "
           f"{ev.get('gpu_busy_pct_of_span', 0):.0f}% of the run, request threads "
           f"{ev.get('request_threads_on_cpu_pct', 0):.0f}% on the CPU")
    hang(con, "  ", f"[bold]{escape(str(r['load']))}[/bold], bound by {escape(str(r.get('bound_by')))}: one "
         f"request every {r.get('interval_ms', 0):.3f} ms ({r.get('throughput_per_s', 0):g} requests/s) "
         f"[dim]({why})[/dim]")


CLASS_WORDS = {"tensor_core_matmul": "tensor-core matmul/conv", "cuda_core_matmul": "fp32 matmul on CUDA cores",
               "memory_bound": "memory-bound", "communication": "communication", "small": "small kernels",
               "other": "other", "copies": "copies/memsets"}


def _gpu_bound_line(con: Console, g: dict | None) -> None:
    """A GPU-bound run's GPU time by class, with each class's measured distance from its limit."""
    if not g or not g.get("classes"):
        return
    parts = []
    for c in g["classes"]:
        acts = [f"{label} {c[key]:.0f}%" for key, label in (("dram_pct", "DRAM"), ("host_link_pct", "link"),
                                                             ("sm_issue_pct", "issue"), ("tensor_active_pct",
                                                                                         "tensor"))
                if isinstance(c.get(key), (int, float))]
        if acts and c.get("dram_how") == "blended" and isinstance(c.get("dram_pct"), (int, float)):
            acts[0] += " blended"          # the samples' mean over the class, neighbours and idle included
        parts.append(f"{CLASS_WORDS.get(c.get('class'), str(c.get('class')))} {c.get('ms_per_request', 0):.2f} ms "
                     f"({c.get('share_pct', 0):.0f}%" + (f"; {', '.join(acts)}" if acts else "") + ")")
    hang(con, "  ", "GPU time by kind: " + escape("; ".join(parts)))


def _tensorrt_layers(con: Console, layers: list[dict], top: int = 10) -> None:
    """The TensorRT layers that cost the most GPU time (kernels attributed by launch, not the CPU-side ranges)."""
    if not layers:
        return
    con.print()
    con.print("[bold]TensorRT layers[/bold] by GPU time (kernels launched inside each layer's NVTX range)")
    narrow = con.width < 100
    t = Table(box=None, padding=(0, 1 if narrow else 2), show_header=True, header_style="bold")
    rows = [[escape(str(row.get("name"))), f"{row.get('calls', 0):,}", f"{row.get('kernels', 0):,}",
             f"{row.get('gpu_ms_per_enqueue', 0):.3f}", f"{row.get('share_pct', 0):.1f}%",
             "[dim]Myelin[/dim]" if row.get("fused") else ""] for row in layers[:top]]
    cols = ("layer", "calls", "kernels", "ms/enqueue", "share", "")
    widths = [max(len(col), *(len(Text.from_markup(r[i]).plain) for r in rows)) for i, col in enumerate(cols)]
    gap = 1 if narrow else 2
    # a long layer name is shortened with "…" to what the numbers leave of the width, never a number
    widths[0] = max(12, min(50, widths[0], con.width - sum(widths[1:]) - 2 * gap * (len(cols) - 1) - 2 * gap))
    for col, w in zip(cols, widths):
        t.add_column(col, justify="left" if col in ("layer", "") else "right", overflow="ellipsis", no_wrap=True,
                     min_width=w, max_width=w)
    for r in rows:
        t.add_row(*r)
    con.print(t)
    for row in layers[:top]:
        ops = row.get("ops") or []
        if ops:
            parts = ", ".join(f"{escape(o['name'][:40])} {o['share_of_layer_pct']:.0f}%" for o in ops[:4])
            hang(con, "  ", f"[dim]{escape(str(row['name'])[:50])}: {parts}[/dim]")


def gpu_list(names: list) -> str:
    """"8x NVIDIA H100 80GB HBM3" for an 8-GPU host, not the name eight times; first-seen order."""
    counts: dict[str, int] = {}
    for n in names:
        counts[str(n)] = counts.get(str(n), 0) + 1
    return ", ".join(f"{c}x {n}" if c > 1 else n for n, c in counts.items())


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)
