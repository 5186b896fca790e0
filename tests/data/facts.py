"""Facts of an example export, by plain SQL (sqlite3 only, nothing of nsys_doctor): the columns of tests/data/README.md.

usage: python tests/data/facts.py FILE.sqlite[.xz] [--range Inference] [--warmup 3]

Inference = NVTX ranges whose text (or textId -> StringIds) is the range name; kernels = rows of
CUPTI_ACTIVITY_KIND_KERNEL; measured = all but the first --warmup ranges (by start); mean req. ms = their mean
duration; GPU busy = union of kernel and memcpy intervals inside the measured ranges / their total length (ranges
merged first where they overlap); per request: kernels starting inside measured ranges, sync calls
(cudaStreamSynchronize/cudaDeviceSynchronize/cudaEventSynchronize), allocation calls (cudaMalloc*/cudaFree*),
cudaEventQuery calls, and bytes read by OS read/pread calls, all inside measured ranges on any thread.
"""
import argparse
import lzma
import os
import shutil
import sqlite3
import sys
import tempfile


def union(iv):
    out = []
    for s, e in sorted(iv):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def covered(busy, wins):
    """Length of `busy` (disjoint, sorted) inside the disjoint sorted windows."""
    tot, j = 0, 0
    for s, e in wins:
        while j < len(busy) and busy[j][1] <= s:
            j += 1
        k = j
        while k < len(busy) and busy[k][0] < e:
            tot += max(0, min(e, busy[k][1]) - max(s, busy[k][0]))
            k += 1
    return tot


def count_inside(db, sql, wins):
    pts = sorted(r[0] for r in db.execute(sql))
    import bisect
    return sum(bisect.bisect_left(pts, e) - bisect.bisect_left(pts, s) for s, e in wins)


def facts(path, name="Inference", warmup=3):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    tabs = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    rows = db.execute("SELECT e.start, e.end FROM NVTX_EVENTS e LEFT JOIN StringIds s ON e.textId = s.id "
                      "WHERE coalesce(e.text, s.value) = ? AND e.end IS NOT NULL ORDER BY e.start", (name,)).fetchall()
    (kernels,), = db.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL")
    meas = rows[warmup:]
    n = len(meas)
    out = {"ranges": len(rows), "kernels": kernels, "measured": n}
    if not n:
        return out
    wins = union(meas)
    total = sum(e - s for s, e in wins)
    gpu = [tuple(r) for r in db.execute("SELECT start, end FROM CUPTI_ACTIVITY_KIND_KERNEL")]
    if "CUPTI_ACTIVITY_KIND_MEMCPY" in tabs:
        gpu += [tuple(r) for r in db.execute("SELECT start, end FROM CUPTI_ACTIVITY_KIND_MEMCPY")]
    out["mean_ms"] = round(sum(e - s for s, e in meas) / n / 1e6, 2)
    out["gpu_busy_pct"] = round(100 * covered(union(gpu), wins) / total)
    out["kernels_per_req"] = round(count_inside(db, "SELECT start FROM CUPTI_ACTIVITY_KIND_KERNEL", wins) / n, 1)
    rt = ("SELECT r.start FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s ON r.nameId = s.id WHERE ")
    out["syncs_per_req"] = round(count_inside(db, rt + "s.value LIKE 'cudaStreamSynchronize%' OR s.value LIKE "
                                 "'cudaDeviceSynchronize%' OR s.value LIKE 'cudaEventSynchronize%'", wins) / n, 1)
    out["allocs_per_req"] = round(count_inside(db, rt + "s.value LIKE 'cudaMalloc%' OR s.value LIKE 'cudaFree%'",
                                               wins) / n, 1)
    out["event_queries_per_req"] = round(count_inside(db, rt + "s.value LIKE 'cudaEventQuery%'", wins) / n, 1)
    if "OSRT_API" in tabs:
        out["read_calls_per_req"] = round(count_inside(
            db, "SELECT o.start FROM OSRT_API o JOIN StringIds s ON o.nameId = s.id WHERE s.value IN "
                "('read', 'pread', 'pread64', 'fread')", wins) / n, 1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--range", default="Inference")
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    path, tmp = a.file, None
    if path.endswith(".xz"):
        tmp = tempfile.NamedTemporaryFile(suffix=".sqlite", delete=False)
        with lzma.open(path) as fin:
            shutil.copyfileobj(fin, tmp, 1 << 22)
        tmp.close()
        path = tmp.name
    try:
        print(os.path.basename(a.file), facts(path, a.range, a.warmup))
    finally:
        if tmp:
            os.unlink(tmp.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
