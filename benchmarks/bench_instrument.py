"""Cost of marking a request: `with request(): with phase("infer"):` around a trivial body, against the bare body.

Run without a profiler (the normal production case):  python benchmarks/bench_instrument.py [N]
Under nsys (to see the recording cost):               nsys profile --trace=nvtx python benchmarks/bench_instrument.py
Prints ns per request for both loops and their ratio, from one run (best of REPEATS, to drop scheduler noise).
"""
from __future__ import annotations

import sys
import time

from nsys_doctor.instrument import INFER, phase, request

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
REPEATS = 5


def body(i: int) -> int:
    return i + 1            # stands in for the request's work; kept trivial so only the ranges are measured


def bare(n: int) -> int:
    total = 0
    for i in range(n):
        total += body(i)
    return total


def marked(n: int) -> int:
    total = 0
    for i in range(n):
        with request():
            with phase(INFER):
                total += body(i)
    return total


def best_ns_per_iter(loop, n: int) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        loop(n)
        best = min(best, (time.perf_counter_ns() - start) / n)
    return best


if __name__ == "__main__":
    assert bare(1000) == marked(1000)       # the ranges do not change results
    bare_ns, marked_ns = best_ns_per_iter(bare, N), best_ns_per_iter(marked, N)
    print(f"bare loop:               {bare_ns:8.1f} ns/request")
    print(f"request()+phase() loop:  {marked_ns:8.1f} ns/request")
    print(f"added by the two ranges: {marked_ns - bare_ns:8.1f} ns/request; ratio {marked_ns / bare_ns:.1f}x")
