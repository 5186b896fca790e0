"""Analyse the demo profile shipped with nsys-doctor (no GPU or nsys needed).

The demo is a real Nsight Systems export of examples/pageable_readback.py recorded on an H200 (tests/data
ex_readback_before): each request copies its 75 MB of results back into pageable host memory, at 1.6 GB/s. Its
predicted saving was checked against the real fix (pinned buffers, `--fixed`: benchmarks/calibrate.py, 45.5 ms
predicted against 47.8 measured). Takes the same output options as `analyze`."""
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
