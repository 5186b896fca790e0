""".nsys-rep / .qdrep reports -> `nsys export --type sqlite` once -> the SQLite reader.

The export is written next to the report (`NAME.sqlite`, as nsys itself would) when that folder is writable, else
into the cache folder; it is reused while it is newer than the report. The report itself is never modified.
"""
from __future__ import annotations

import hashlib
import os
import pathlib

from ..errors import ToolMissing
from . import cache_dir, nsys_sqlite


SUFFIXES = (".nsys-rep", ".qdrep")
DESCRIPTION = "an .nsys-rep/.qdrep report"


def accepts(head: bytes, path) -> bool:
    """By name: the report format is nsys's own (nsys export reads it); a .gz/.xz of one is expanded first."""
    name = os.fspath(path).lower()
    for packed in (".gz", ".xz"):
        name = name.removesuffix(packed)
    return name.endswith(SUFFIXES)


def export_path(report: pathlib.Path) -> pathlib.Path:
    beside = report.with_suffix(".sqlite")
    if os.access(report.parent, os.W_OK) and (not beside.exists() or os.access(beside, os.W_OK)):
        return beside
    key = hashlib.sha256(str(report.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / f"{report.stem}-{key}.sqlite"


def read(path: str, display_path: str | None = None):
    report = pathlib.Path(display_path or path)
    src = pathlib.Path(path)
    out = export_path(report)
    if not (out.exists() and out.stat().st_mtime >= src.stat().st_mtime and out.stat().st_size > 0):
        # here, not at import: read.READERS imports every reader on every run, and few runs export a report
        from ..system.nsys import HOW_TO_GET_NSYS, export_sqlite, find_nsys
        nsys = find_nsys()
        if not nsys:
            raise ToolMissing(report, f"a {report.suffix} report must be exported to SQLite first and no nsys was "
                                      f"found; {HOW_TO_GET_NSYS} (or run `nsys export --type sqlite` where it is)")
        tmp = out.with_name(out.stem + f".part{os.getpid()}.sqlite")
        try:
            export_sqlite(nsys, src, tmp)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return nsys_sqlite.read(str(out), display_path=str(report))
