"""Build a large profile by replicating a real export's events with time shifts (launch_bound x 40 by default).

usage: python benchmarks/make_large.py SRC.sqlite[.xz] OUT.sqlite [--times 40]
Every CUDA, NVTX, OS runtime and scheduling table is copied TIMES times, each copy shifted past the previous one in
time and in correlation ids, so requests, launches and kernels keep their real shapes and their real projections.
"""
from __future__ import annotations

import argparse
import lzma
import pathlib
import shutil
import sqlite3
import sys
import time

TIME_COLS = {"start", "end", "timestamp"}
SHIFTED = ["CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "CUPTI_ACTIVITY_KIND_MEMCPY",
           "CUPTI_ACTIVITY_KIND_MEMSET", "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION", "CUPTI_ACTIVITY_KIND_GRAPH_TRACE",
           "NVTX_EVENTS", "OSRT_API", "SCHED_EVENTS"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--times", type=int, default=40)
    a = ap.parse_args(argv)
    out = pathlib.Path(a.out)
    t0 = time.perf_counter()
    if a.src.endswith(".xz"):
        with lzma.open(a.src) as f, open(out, "wb") as g:
            shutil.copyfileobj(f, g, 1 << 22)
    else:
        shutil.copyfile(a.src, out)
    db = sqlite3.connect(out)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    lo, hi = None, None
    for t in SHIFTED:
        if t in tables:
            cols = {r[1] for r in db.execute(f"PRAGMA table_info({t})")}
            if {"start", "end"} <= cols:
                a_, b_ = db.execute(f"SELECT min(start), max(coalesce(end, start)) FROM {t}").fetchone()
                if a_ is not None:
                    lo = a_ if lo is None else min(lo, a_)
                    hi = b_ if hi is None else max(hi, b_)
    span = (hi - lo) + 1_000_000
    corr = max((db.execute(f"SELECT max(correlationId) FROM {t}").fetchone()[0] or 0)
               for t in SHIFTED if t in tables and "correlationId" in
               {r[1] for r in db.execute(f"PRAGMA table_info({t})")}) + 1
    for t in SHIFTED:
        if t not in tables:
            continue
        cols = [r[1] for r in db.execute(f"PRAGMA table_info({t})")]
        # drop nsys's own index-like primary keys so copies do not collide
        cols = [c for c in cols if c != "id"]
        last = db.execute(f"SELECT max(rowid) FROM {t}").fetchone()[0] or 0
        for k in range(1, a.times):
            exprs = []
            for c in cols:
                if c in TIME_COLS:
                    exprs.append(f"{c} + {k * span}")
                elif c == "correlationId":
                    exprs.append(f"{c} + {k * corr}")
                else:
                    exprs.append(c)
            where = " AND eventType IN (59, 60)" if t == "NVTX_EVENTS" else ""
            db.execute(f"INSERT INTO {t} ({', '.join(cols)}) SELECT {', '.join(exprs)} FROM {t} "
                       f"WHERE rowid <= {last}{where}")  # copy the original rows only
        db.commit()
    counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in SHIFTED if t in tables}
    db.close()
    print(f"built {out} in {time.perf_counter() - t0:.0f} s: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
