"""Does a fix that keeps the GPU busier slow its clock? Per before/after pair in tests/data/pairs.json (and any further
exports given with --extra), over the measured requests' window (first measured request's start to the last one's
end, nsys-doctor's own request finder):
  duty      share of the window the GPU ran kernels, copies or memsets (their union)
  gpc       mean GPC clock (MHz) of the GPU_METRICS samples in the window (metric 'GPC Clock Frequency')
  gpc_busy  mean GPC clock of the samples whose 'GR Active' is at least BUSY_SAMPLE_PCT
  kernel ms kernel time per measured request, before and after
  same      the same kernels after/before: per kernel name (demangled) in both windows, mean after / mean before,
            averaged weighted by the name's total time in `before`
Numbers by SQL on the exports; for the study in docs/clock.md. Not a test, not timed.

usage: python benchmarks/clock_duty.py [--pairs tests/data/pairs.json] [--extra BEFORE AFTER ...] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sqlite3
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from nsys_doctor.model.intervals import covered, union  # noqa: E402
from nsys_doctor.model.requests import find_requests   # noqa: E402
from nsys_doctor.read import open_trace, sniff          # noqa: E402

BUSY_SAMPLE_PCT = 50     # a GPU_METRICS sample counts as 'busy' when GR Active (the share of its period the graphics
                         # engine had work) is at least half


def plain(path: pathlib.Path, tmp: pathlib.Path | None = None) -> pathlib.Path:
    """The plain SQLite file of an export (sqlite3 reads plain files only): an .xz's copy expanded once into
    nsys-doctor's own cache (read.sniff), shared with the analyses. `tmp` is not used any more."""
    return sniff(pathlib.Path(path))[1]


def window(path: pathlib.Path) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(start, end) of the measured requests, and each measured request's start and end (ns)."""
    trace = open_trace(path)
    try:
        reqs = find_requests(trace)
        m = reqs.measured
        s, e = reqs.table["start_ns"][m], np.maximum(reqs.table["end_ns"][m], reqs.table["gpu_end_ns"][m])
        return int(s.min()), int(e.max()), s, e
    finally:
        trace.close()


def metric(db: sqlite3.Connection, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """(times, values) of the first metric whose name starts with `prefix`; empty when not recorded."""
    try:
        row = db.execute("SELECT metricId FROM TARGET_INFO_GPU_METRICS WHERE metricName LIKE ? ORDER BY metricId "
                         "LIMIT 1", (prefix + "%",)).fetchone()
    except sqlite3.OperationalError:
        return np.zeros(0, np.int64), np.zeros(0)
    if row is None:
        return np.zeros(0, np.int64), np.zeros(0)
    a = np.array(db.execute("SELECT timestamp, value FROM GPU_METRICS WHERE metricId = ? ORDER BY timestamp",
                            (row[0],)).fetchall(), dtype=np.float64).reshape(-1, 2)
    return a[:, 0].astype(np.int64), a[:, 1]


def gpu_work(db: sqlite3.Connection) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Kernels (start, end, name index, names) and the union of all GPU work (kernels, copies, memsets)."""
    k = db.execute("SELECT k.start, k.end, s.value FROM CUPTI_ACTIVITY_KIND_KERNEL k "
                   "JOIN StringIds s ON s.id = k.demangledName").fetchall()
    names = sorted({r[2] for r in k})
    idx = {n: i for i, n in enumerate(names)}
    ks = np.array([r[0] for r in k], np.int64)
    ke = np.array([r[1] for r in k], np.int64)
    kn = np.array([idx[r[2]] for r in k], np.int64)
    return ks, ke, kn, names


def busy_intervals(db: sqlite3.Connection) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    for t in ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_MEMSET"):
        try:
            parts += db.execute(f"SELECT start, end FROM {t}").fetchall()
        except sqlite3.OperationalError:
            pass
    a = np.array(parts, np.int64).reshape(-1, 2)
    return union(a[:, 0], a[:, 1])


def clipped(us, ue, lo, hi) -> int:
    """ns of the disjoint intervals (us, ue) inside [lo, hi)."""
    return int(covered(us, ue, np.array([lo], np.int64), np.array([hi], np.int64))[0])


def profile(path: pathlib.Path, tmp: pathlib.Path) -> dict:
    lo, hi, rs, re_ = window(path)
    db = sqlite3.connect(f"file:{plain(path, tmp)}?mode=ro", uri=True)
    try:
        us, ue = busy_intervals(db)
        ts, gpc = metric(db, "GPC Clock Frequency")
        _, gr = metric(db, "GR Active")
        ks, ke, kn, names = gpu_work(db)
    finally:
        db.close()
    inside = (ts >= lo) & (ts < hi)
    busy = inside & (gr >= BUSY_SAMPLE_PCT) if len(gr) == len(ts) else inside & False
    kin = (ks >= lo) & (ke <= hi)
    per_req = [(clipped(us, ue, s, e) / max(e - s, 1),
                float(gpc[(ts >= s) & (ts < e)].mean() / 1e6) if ((ts >= s) & (ts < e)).any() else None)
               for s, e in zip(rs, re_)]
    return {"file": path.name, "window_ms": (hi - lo) / 1e6, "duty": clipped(us, ue, lo, hi) / (hi - lo),
            "gpc_mhz": float(gpc[inside].mean() / 1e6) if inside.any() else None,
            "gpc_busy_mhz": float(gpc[busy].mean() / 1e6) if busy.any() else None,
            "samples": int(inside.sum()),
            "kernels": {names[i]: (ke[kin & (kn == i)] - ks[kin & (kn == i)]).tolist() for i in np.unique(kn[kin])},
            "per_request": per_req}


def kernel_ratio(before: dict, after: dict) -> tuple[float | None, int]:
    """Mean over kernel names in both of mean(after) / mean(before), weighted by the name's time in `before`."""
    r, w = [], []
    for n, d in before["kernels"].items():
        a = after["kernels"].get(n)
        if a and d and np.mean(d) > 0:
            r.append(np.mean(a) / np.mean(d))
            w.append(float(np.sum(d)))
    if not r:
        return None, 0
    return float(np.average(r, weights=w)), len(r)


def kernel_ms(p: dict) -> float:
    """All kernels' time per measured request (ms)."""
    return sum(sum(d) for d in p["kernels"].values()) / max(len(p["per_request"]), 1) / 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default=str(ROOT / "tests" / "data" / "pairs.json"))
    ap.add_argument("--extra", nargs=2, action="append", default=[], metavar=("BEFORE", "AFTER"))
    ap.add_argument("--only", nargs="*", help="pair names to do (default all)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    spec = json.loads(pathlib.Path(args.pairs).read_text())
    data = pathlib.Path(args.pairs).parent
    jobs = [(p["name"], p.get("device", ""), data / p["before"]["file"], data / p["after"]["file"])
            for p in spec["pairs"] if not args.only or p["name"] in args.only]
    jobs += [(pathlib.Path(b).stem + " / " + pathlib.Path(a).stem, "", pathlib.Path(b), pathlib.Path(a))
             for b, a in args.extra]
    rows = []
    print("| pair | device | duty before | duty after | GPC MHz before | after | busy-sample GPC before | after | "
          "kernel ms/request before | after | same kernels after/before (names) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = pathlib.Path(tmpd)
        for name, dev, fb, fa in jobs:
            b, a = profile(fb, tmp), profile(fa, tmp)
            kr, nk = kernel_ratio(b, a)
            row = {"pair": name, "device": dev, "before": {k: v for k, v in b.items() if k != "kernels"},
                   "after": {k: v for k, v in a.items() if k != "kernels"}, "kernel_ratio": kr, "names": nk,
                   "kernel_ms": [kernel_ms(b), kernel_ms(a)]}
            rows.append(row)
            f = lambda v, s=".0f": "n/a" if v is None else format(v, s)   # noqa: E731
            print(f"| {name} | {dev.replace('NVIDIA ', '')} | {b['duty']:.2f} | {a['duty']:.2f} | {f(b['gpc_mhz'])} | "
                  f"{f(a['gpc_mhz'])} | {f(b['gpc_busy_mhz'])} | {f(a['gpc_busy_mhz'])} | {kernel_ms(b):.3f} | "
                  f"{kernel_ms(a):.3f} | {f(kr, '.3f')} ({nk}) |",
                  flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
