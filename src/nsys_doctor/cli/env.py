"""Show what this machine can profile with Nsight Systems, and what the analysis will get.

nsys and its version, GPUs and driver, perf_event_paranoid, and which trace features (CUDA, NVTX, OS runtime,
CPU sampling, context switches, GPU metrics) will work, and what each missing one costs the analysis.
Exit code 0 when nsys is found, 2 when it is not."""
from __future__ import annotations

import argparse
import json
import sys

from ..system.nsys import HOW_TO_GET_NSYS

MARKS = {True: "[green]yes[/]", False: "[red]no[/]", None: "[yellow]?[/]"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["terminal", "json"], default="terminal")


def run(args: argparse.Namespace) -> int:
    from ..system.envcheck import check_environment     # here, not at the top: every command's parser is built at start
    env = check_environment()
    if args.format == "json":
        json.dump(env.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0 if env.nsys else 2

    from rich.table import Table

    from ..render.console import console as _console
    from ..render.safe import escape

    console = _console(sys.stdout)
    nsys_line = f"{escape(env.nsys)} ({env.nsys_version or 'version unknown'})" if env.nsys else \
        f"[red]not found[/]: {escape(HOW_TO_GET_NSYS)}"
    gpus = ", ".join(env.gpus) if env.gpus else "none found (nvidia-smi)"
    console.print(f"nsys:   {nsys_line}")
    console.print(f"GPUs:   {escape(gpus)}" + (f"; driver {escape(env.driver)}" if env.driver else ""))
    console.print(f"perf_event_paranoid: {env.perf_event_paranoid}{' (running as root)' if env.root else ''}; "
                  f"nvtx package: {env.nvtx_package or 'not installed'}")
    table = Table(title="Trace features on this machine")
    for column in ("feature (nsys flag)", "works", "why", "if missing, the analysis"):
        table.add_column(column, overflow="fold")
    for f in env.features:
        table.add_row(f"{f.name}\n[dim]{f.flag}[/]", MARKS[f.works], escape(f.why),
                      "" if f.works else escape(f.missing_means))
    console.print(table)
    return 0 if env.nsys else 2
