"""Fleet mode against analysing the same profiles one after another in one process. Prints ratios; asserts nothing.

usage: python benchmarks/bench_fleet.py [--reports 32] [--work /tmp/nsd-bench-fleet]
A fleet of REPORTS copies (hard links, else copies) of launch_bound (200 requests, ~600 kernels each, 50 MB SQLite),
analysed 1. one after another in one fresh process (`analyze_one` in a loop: the baseline), 2. by `analyze_many` on a
LocalCluster of 1 worker process, 3. of 2 worker processes. Wall times include starting the cluster (what a user
waits for). Peak memory: ru_maxrss of each worker process (reported by the worker after each profile) and of the
baseline process. All three run in this one invocation, on this machine, in that order (the baseline warms the page
cache for all: every copy is the same inode when hard-linked).
"""
from __future__ import annotations

import argparse
import json
import lzma
import os
import pathlib
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = pathlib.Path(os.environ.get("NSYS_DOCTOR_SHARED", ROOT.parent / "shared"))

SEQUENTIAL = r"""
import json, resource, sys, time
from nsys_doctor.fleet import Failure, analyze_one
t, c = time.perf_counter(), time.process_time()
out = [analyze_one(p) for p in sys.argv[1:]]
print(json.dumps({"seconds": time.perf_counter() - t, "failed": sum(isinstance(o, Failure) for o in out),
                  "cpu_seconds": time.process_time() - c,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_fleet(work: pathlib.Path, n: int) -> list[str]:
    src = SHARED / "profiles" / "launch_bound.sqlite.xz"
    base = work / "launch_bound.sqlite"
    if not base.exists():
        work.mkdir(parents=True, exist_ok=True)
        with lzma.open(src) as fin, open(base.with_suffix(".part"), "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 22)
        os.replace(base.with_suffix(".part"), base)
    fleet = work / "fleet"
    shutil.rmtree(fleet, ignore_errors=True)
    fleet.mkdir()
    paths = []
    for i in range(n):
        dst = fleet / f"rank{i:02d}.sqlite"
        try:
            os.link(base, dst)
        except OSError:
            shutil.copy(base, dst)
        paths.append(str(dst))
    return paths


def run_fleet(folder: str, workers: int) -> dict:
    from nsys_doctor.fleet import analyze_many
    t = time.perf_counter()
    f = analyze_many([folder], workers=workers)
    dt = time.perf_counter() - t
    d = f.to_dict()
    return {"seconds": dt, "analysed": d["analysed"], "failed": d["failed"], "workers": d["workers"],
            "p50_ms": d["latency_ms"].get("p50"), "requests": d["latency_ms"].get("count"),
            "worker_seconds": sum(r.seconds for r in f.results),
            "worker_cpu_seconds": sum(r.cpu_seconds for r in f.results)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=32)
    ap.add_argument("--work", default="/tmp/nsd-bench-fleet")
    args = ap.parse_args()
    paths = make_fleet(pathlib.Path(args.work), args.reports)
    folder = os.path.dirname(paths[0])
    print(f"{args.reports} reports of launch_bound ({os.path.getsize(paths[0]) / 1e6:.0f} MB SQLite each), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work on the machine slows every run)")

    seq = json.loads(subprocess.run([sys.executable, "-c", SEQUENTIAL, *paths], capture_output=True, text=True,
                                    check=True).stdout.strip().splitlines()[-1])
    print(f"one process, one after another: {seq['seconds']:.1f} s ({seq['seconds'] / len(paths):.2f} s per report), "
          f"{seq['cpu_seconds'] / len(paths):.2f} s CPU per report, peak {seq['peak_rss_mb']:.0f} MB, "
          f"{seq['failed']} failed")
    runs = {}
    for w in (1, 2):
        r = run_fleet(folder, w)
        runs[w] = r
        peaks = [v["peak_rss_mb"] for v in r["workers"].values()]
        print(f"fleet, {w} worker{'s' * (w > 1)}: {r['seconds']:.1f} s wall ({r['worker_seconds']:.1f} s of analysis "
              f"in the workers, {r['worker_cpu_seconds'] / len(paths):.2f} s CPU per report), {r['analysed']} analysed, "
              f"{r['failed']} failed, {r['requests']} requests, "
              f"peak per worker {', '.join(f'{p:.0f}' for p in peaks)} MB "
              f"({', '.join(str(v['reports']) for v in r['workers'].values())} reports each)")
    print(f"load average now {os.getloadavg()[0]:.1f}; ratios (one run, this machine):")
    print(f"  sequential / fleet of 1 worker:   {seq['seconds'] / runs[1]['seconds']:.2f}x "
          "(>1 means the fleet of 1 is faster)")
    print(f"  sequential / fleet of 2 workers:  {seq['seconds'] / runs[2]['seconds']:.2f}x")
    print(f"  fleet of 1 / fleet of 2 workers:  {runs[1]['seconds'] / runs[2]['seconds']:.2f}x")
    for w in (1, 2):
        worst = max(v["peak_rss_mb"] for v in runs[w]["workers"].values())
        print(f"  peak per worker ({w}) / sequential process peak: {worst / seq['peak_rss_mb']:.2f}x")


if __name__ == "__main__":       # Dask starts its worker processes with spawn: the guard keeps them from rerunning it
    main()
