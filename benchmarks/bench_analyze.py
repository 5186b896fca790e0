"""Speed of `analyze` against baselines measured in the same run. Prints ratios; asserts nothing.

usage: python benchmarks/bench_analyze.py [--times 40] [--work /tmp/nsd-bench]
1. A large profile: launch_bound x TIMES (benchmarks/make_large.py; about 5M kernels and 10M API calls at 40).
   `analyze` on it, against a raw SQLite scan of exactly the columns analyze read (each of its queries wrapped in
   SELECT count(*), max(col)... so SQLite reads every value, on one thread), and its peak memory. analyze reads
   large tables in slices on several threads and runs diagnoses on several: its CPU time is printed too.
2. launch_bound.sqlite: the whole `nsys-doctor analyze` command (JSON and text output) against `nsys analyze`
   (Debian's nsight-systems, when installed) on the same file; one warm-up run each, then the best of --repeat.
Each measurement runs in a fresh process (peak RSS is per process); the best of --repeat runs is kept. The machine's
other work moves every number: compare ratios from one run.
`nsys analyze` needs the Python modules of its rules reachable (scripts/install-nsys-debian.sh links them).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sqlite3
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = pathlib.Path(os.environ.get("NSYS_DOCTOR_SHARED", ROOT.parent / "shared"))

CHILD = r"""
import json, os, resource, sys, time
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")     # as the command line does (cli/__init__.py says why)
from nsys_doctor.read import open_trace
from nsys_doctor.analysis import analyze_trace
from nsys_doctor.cli.memory import keep_freed_memory
keep_freed_memory()   # as the command line does
t = time.perf_counter()
trace = open_trace(sys.argv[1])
report = analyze_trace(trace)
dt = time.perf_counter() - t
cpu = sum(os.times()[:2])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": dt, "cpu_seconds": cpu, "peak_mb": peak,
                  "queries": trace.meta.get("_queries", []), "requests": report.requests["total"],
                  "kernels": report.profile["counts"]["kernels"], "api_calls": report.profile["counts"]["api_calls"]}))
"""


def run_analyze(path: pathlib.Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def raw_scan(path: pathlib.Path, queries: list[str]) -> float:
    """SQLite reads the same columns and aggregates them in C: the floor for any reader of this file."""
    db = sqlite3.connect(pathlib.Path(path).resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
    t = time.perf_counter()
    for q in queries:
        n = len(db.execute(f"SELECT * FROM ({q}) LIMIT 0").description)
        names = ", ".join(f"c{i}" for i in range(n))
        # max() reads every value of every column, text included, in C
        aggs = ", ".join(f"max(c{i})" for i in range(n))
        db.execute(f"WITH q({names}) AS ({q}) SELECT count(*), {aggs} FROM q").fetchall()
    dt = time.perf_counter() - t
    db.close()
    return dt


def large(src: pathlib.Path, big: pathlib.Path, times: int) -> pathlib.Path:
    """big: src's requests repeated `times` times (make_large.py), made once and reused."""
    if not big.exists():
        subprocess.run([sys.executable, str(HERE / "make_large.py"), str(src), str(big), "--times", str(times)],
                       check=True)
    return big


def against_scan(big: pathlib.Path, repeat: int, target: str = "") -> None:
    """analyze on big (best of `repeat` fresh processes) against the raw scan of the columns it read: printed."""
    runs = [run_analyze(big) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["seconds"])
    scan = min(raw_scan(big, best["queries"]) for _ in range(repeat))
    print(f"   {best['kernels']:,} kernels, {best['api_calls']:,} API calls, {best['requests']:,} requests")
    print(f"   analyze            {best['seconds']:7.2f} s   peak {max(r['peak_mb'] for r in runs):,.0f} MB   "
          f"(CPU {best['cpu_seconds']:.2f} s on {os.cpu_count()} cores, imports included)")
    print(f"   raw SQLite scan    {scan:7.2f} s   ({len(best['queries'])} queries, same columns, one thread)")
    print(f"   ratio analyze/scan {best['seconds'] / scan:7.2f}x{target}")
    print(f"   CPU time / scan    {best['cpu_seconds'] / scan:7.2f}x   (analyze reads large tables on several threads)")


def find_nsys() -> str | None:
    try:
        from nsys_doctor.system.nsys import find_nsys as f
        return f()
    except Exception:
        return shutil.which("nsys")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--times", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", default="/tmp/nsd-bench")
    a = ap.parse_args(argv)
    work = pathlib.Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    src = SHARED / "profiles" / "launch_bound.sqlite.xz"
    small = work / "launch_bound.sqlite"
    if not small.exists():
        import lzma
        with lzma.open(src) as f, open(small, "wb") as g:
            shutil.copyfileobj(f, g, 1 << 22)
    big = large(small, work / f"launch_bound_x{a.times}.sqlite", a.times)
    print(f"1. large profile: {big.name}")
    against_scan(big, a.repeat, "   (target <= 2x; peak target < 3000 MB)")

    print(f"2. {small.name} (whole commands, wall clock, interpreter start included; best of {a.repeat} after one "
          "warm-up run each, with compiled bytecode as an installed package has)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    console = shutil.which("nsys-doctor", path=os.path.dirname(sys.executable)) or "nsys-doctor"

    def best_of(cmd, check=True, **kw) -> float:
        subprocess.run(cmd, capture_output=True, env=env, **kw)      # warm-up: page cache, .pyc files
        times = []
        for _ in range(a.repeat):
            t = time.perf_counter()
            subprocess.run(cmd, check=check, capture_output=True, env=env, **kw)
            times.append(time.perf_counter() - t)
        return min(times)
    mine = best_of([console, "analyze", str(small), "--format", "json", "-o", os.devnull])
    mine_text = best_of([console, "analyze", str(small)])
    print(f"   nsys-doctor analyze --format json   {mine:7.2f} s")
    print(f"   nsys-doctor analyze (text)          {mine_text:7.2f} s")
    nsys = find_nsys()
    if not nsys:
        print("   nsys analyze        not found (install Debian's nsight-systems: scripts/install-nsys-debian.sh)")
        return 0
    theirs = best_of([nsys, "analyze", "--force-export=false", str(small)], check=False, cwd=work)
    print(f"   nsys analyze                        {theirs:7.2f} s   ({nsys})")
    print(f"   ratio nsys/ours, json               {theirs / mine:7.2f}x   (target >= 5x)")
    print(f"   ratio nsys/ours, text               {theirs / mine_text:7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
