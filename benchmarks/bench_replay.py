"""Speed of the dependency graph and its replay (model/graph.py, model/replay.py). Prints seconds; asserts nothing.

usage: python benchmarks/bench_replay.py PROFILE [--repeat 3] [--window]
PROFILE: e.g. launch_bound x40 from benchmarks/make_large.py (4.9M kernels, 9.8M API calls). Each run is a fresh
process: open + requests (what analyze does anyway), then the graph build, an unchanged replay and a changed one
(kernels x0.5, syncs removed), and the peak RSS; wall and CPU seconds. The best of --repeat is kept per step.
--window: the graph of the window analyze replays on a profile over analysis/predict.py's MAX_REPLAY_EVENTS
(REPLAY_WINDOW_EVENTS of requests in the middle of the run, model/window.py), the cut included in `build`.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, os, resource, sys, time
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from nsys_doctor.read import open_trace
from nsys_doctor.model.requests import find_requests
from nsys_doctor.model import replay as R
from nsys_doctor.model.graph import build
T = time.perf_counter
C = time.process_time
t0, c0 = T(), C(); trace = open_trace(sys.argv[1]); reqs = find_requests(trace)
for name in ("kernels", "copies", "memsets", "graphs", "os_calls", "ranges", "syncs"):
    trace.table(name)
t1, c1 = T(), C()
if sys.argv[2] == "window":
    from nsys_doctor.analysis.predict import REPLAY_WINDOW_EVENTS
    from nsys_doctor.model import window as W
    events = sum(len(trace.table(t)["start_ns"]) for t in ("api_calls", "kernels", "copies", "memsets"))
    w = W.cut(trace, reqs, *W.pick(reqs, events, REPLAY_WINDOW_EVENTS))
    trace, reqs = w.trace, w.reqs
g = build(trace, reqs.table["tid"]); t2, c2 = T(), C()
base = R.replay(trace, reqs, graph=g); t3, c3 = T(), C()
R.replay(trace, reqs, R.Change(kernel_factor=[(".", 0.5)], remove_syncs=True), graph=g); t4 = T()
lat, iv = R.recorded(reqs)
print(json.dumps({"load_and_requests": t1 - t0, "build": t2 - t1, "replay": t3 - t2, "replay_changed": t4 - t3,
                  "cpu_load_and_requests": c1 - c0, "cpu_build": c2 - c1, "cpu_replay": c3 - c2,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "stats": g.stats,
                  "interval_error": abs(base.interval_ns - iv) / iv}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--window", action="store_true", help="the window analyze replays, not the whole profile")
    a = ap.parse_args(argv)
    runs = []
    for _ in range(a.repeat):
        out = subprocess.run([sys.executable, "-c", CHILD, a.profile, "window" if a.window else "whole"], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = {k: min(r[k] for r in runs) for k in ("load_and_requests", "build", "replay", "replay_changed", "cpu_load_and_requests",
                                          "cpu_build", "cpu_replay", "peak_mb")}
    print(json.dumps({"best_of": a.repeat, **best, "stats": runs[-1]["stats"],
                      "interval_error": runs[-1]["interval_error"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
