"""Speed of `analyze` on a polling-heavy profile, against a baseline measured in the same run. Prints ratios; asserts
nothing.

usage: python benchmarks/bench_polling.py [--times 40] [--repeat 3] [--work /tmp/nsd-bench]
tests/data/ex_polling_before x TIMES (benchmarks/make_large.py; about 0.94M API calls, 0.37M of them
cudaEventQuery/cudaStreamQuery in polling loops, and 29k host waits at 40): `analyze` on it, against a raw SQLite
scan of exactly the columns analyze read (bench_analyze.py's raw_scan: each query wrapped in SELECT count(*),
max(col)... on one thread), with its CPU time and peak memory. Where launch_bound x40 (bench_analyze.py) is a few
large stream segments per host wait, this one is a host wait every few GPU operations: the replay's one step per
wait (model/replay.py), the polling loops (model/host_waits.py query_runs) and the host reads before the waits
(host_waits.read_calls) are what it times. Each analyze runs in a fresh process; the best of --repeat runs is kept.
The machine's other work moves every number: compare ratios from one run.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_analyze import against_scan, large  # noqa: E402  (the same child process and the same baseline)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--times", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", default="/tmp/nsd-bench")
    a = ap.parse_args(argv)
    work = pathlib.Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    src = ROOT / "tests" / "data" / "ex_polling_before.sqlite.xz"
    big = large(src, work / f"ex_polling_before_x{a.times}.sqlite", a.times)
    print(f"polling-heavy profile: {big.name}")
    against_scan(big, a.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
