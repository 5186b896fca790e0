"""Analyse the demo profile shipped with nsys-doctor (no GPU or nsys needed).

The demo is a real Nsight Systems export of examples/sync_per_layer.py recorded on an H100: a transformer-style
model whose request checks for NaNs with `.item()` after every block, so the host waits on the GPU 18 times per
request. Takes the same output options as `analyze`."""
from __future__ import annotations

import argparse

from . import analyze


def demo_path() -> str:
    from importlib import resources     # 10 ms of import: only for this command
    return str(resources.files("nsys_doctor") / "demo" / "demo.sqlite.xz")


def add_arguments(p) -> None:
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report to FILE")


def run(args) -> int:
    full = argparse.Namespace(profile=demo_path(), range_name=None, skip=None, format=args.format,
                              output=args.output, html=args.html)
    return analyze.run(full)
