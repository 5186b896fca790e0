""".nsys-rep / .qdrep reports -> `nsys export --type sqlite` once -> the SQLite reader.

The export goes into the cache folder (read/cache.py), keyed by the report's identity (device, inode, size, mtime,
a hash of its head and tail), and is reused while that report is unchanged. With `export_beside` (analyze
--export-beside) it is written next to the report as NAME.sqlite, as nsys itself would, but never over a file that
is there: an existing NAME.sqlite newer than the report is read as its export, anything else is refused. The report
itself is never modified.
"""
from __future__ import annotations

import os
import pathlib
import re
import stat

from ..errors import BadInput, ToolMissing
from . import cache, nsys_sqlite
from .nsys_sqlite import SQLITE_MAGIC

SUFFIXES = (".nsys-rep", ".qdrep")
DESCRIPTION = "an .nsys-rep/.qdrep report"


def accepts(head: bytes, path) -> bool:
    """By name: the report format is nsys's own (nsys export reads it); a .gz/.xz of one is expanded first."""
    name = os.fspath(path).lower()
    for packed in (".gz", ".xz"):
        name = name.removesuffix(packed)
    return name.endswith(SUFFIXES)


def _nsys(report: pathlib.Path) -> str:
    # here, not at import: read.READERS imports every reader on every run, and few runs export a report
    from ..system.nsys import HOW_TO_GET_NSYS, find_nsys
    nsys = find_nsys()
    if not nsys:
        raise ToolMissing(report, f"a {report.suffix} report must be exported to SQLite first and no nsys was "
                                  f"found; {HOW_TO_GET_NSYS} (or run `nsys export --type sqlite` where it is)")
    return nsys


def _beside(report: pathlib.Path, src: pathlib.Path) -> pathlib.Path:
    out = report.with_suffix(".sqlite")
    try:
        st = os.stat(out)
    except FileNotFoundError:
        if os.path.lexists(out):
            raise BadInput(out, "is a dangling symlink; refusing to export over it")
        from ..system.nsys import export_sqlite
        export_sqlite(_nsys(report), src, out, overwrite=False)
        return out
    except OSError as err:
        raise BadInput(out, f"cannot be used for the export ({err.strerror})")
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(out, "exists and is not a file; refusing to export over it (leave out --export-beside to "
                            "export into the cache)")
    with open(out, "rb") as f:
        ours = f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    if ours and st.st_mtime >= os.stat(src).st_mtime:
        return out      # the report's export (made by nsys-doctor or by nsys): read, never rewritten
    raise BadInput(out, "exists and is not an export newer than the report; refusing to overwrite it (remove it, "
                        "or leave out --export-beside to export into the cache)")


def export_path(report: pathlib.Path, src: pathlib.Path | None = None) -> pathlib.Path:
    """Where the cache keeps the export of this report (NAME-KEY.sqlite)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", report.stem)[:64] or "report"
    return cache.cache_dir() / f"{stem}-{cache.identity(src or report)}.sqlite"


def read(path: str, display_path: str | None = None, export_beside: bool = False):
    report = pathlib.Path(display_path or path)
    src = pathlib.Path(path)
    if export_beside:
        out = _beside(report, src)
    else:
        out = export_path(report, src)
        if not cache.lookup(out):
            nsys = _nsys(report)
            from ..system.nsys import export_sqlite
            cache.tidy(out.parent)
            fd, part = cache.new_part(out)
            os.close(fd)
            try:
                export_sqlite(nsys, src, part)
                cache.commit(part, out)
            finally:
                part.unlink(missing_ok=True)
            cache.tidy(out.parent, keep=out)
    return nsys_sqlite.read(str(out), display_path=str(report))
