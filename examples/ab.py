"""--ab for the cuda_sync examples: both variants of a program alternating in one process, so that the host's CPU
speed, which differs from one process to the next (tests/data/README.md "Repeated runs"), is the same for both.
Measurement scaffolding shared by the programs, not part of any example's lesson: ab_rounds (two variants), and
ab_compare (a slow variant against several fixes, or one) over timed_block."""
import contextlib
import time
from statistics import median


def ab_rounds(block, rounds, mark=None):
    """block(fixed) serves one block of requests and returns its ms/request; `rounds` rounds of one block of each
    variant (slow first in even rounds, fixed first in odd ones). Returns {False: slow blocks, True: fixed blocks}.
    mark(name): a context manager around each block (the program's NVTX range: "ab slow 2", "ab fixed 2"), so a
    profile of the whole run shows which requests belong to which block and variant."""
    ms = {False: [], True: []}
    mark = mark or (lambda name: contextlib.nullcontext())
    for r in range(rounds):
        for fixed in ((False, True) if r % 2 == 0 else (True, False)):
            with mark(f"ab {'fixed' if fixed else 'slow'} {r}"):
                ms[fixed].append(block(fixed))
    return ms


def ab_line(prog, rounds, requests, ms):
    """The line a program prints: each variant's median and blocks, and the median of the rounds' differences."""
    diff = [s - f for s, f in zip(ms[False], ms[True])]
    return (f"{prog} [ab]: {rounds} rounds of {requests} requests per variant in one process: slow "
            f"{median(ms[False]):.2f} ms/request (blocks {' '.join(f'{v:.2f}' for v in ms[False])}), fixed "
            f"{median(ms[True]):.2f} ms/request (blocks {' '.join(f'{v:.2f}' for v in ms[True])}); saving "
            f"{median(diff):.2f} ms/request (median of the rounds' differences)")


def timed_block(serve, warmup, requests, drain=lambda: None):
    """ms/request of `requests` calls of serve() after `warmup` untimed ones, drain() (the GPU's) before and after."""
    for _ in range(warmup):
        serve()
    drain()
    t0 = time.perf_counter()
    for _ in range(requests):
        serve()
    drain()
    return (time.perf_counter() - t0) / requests * 1e3


def ab_compare(prog, serves, rounds, warmup, requests, fix=None, drain=lambda: None, mark=None):
    """The slow variant against each fix in one process: serves = {"slow": serve, fix name: serve, ...}. With `fix`,
    slow and that fix only, through ab_rounds (NVTX block ranges "ab slow R" / "ab fixed R", which
    benchmarks/ab_blocks.py cuts by); else all variants, `rounds` rounds of one block each, the first variant
    rotating ("ab VARIANT R"). Returns the lines to print: ab_line per fix, then each variant's median."""
    mark = mark or (lambda name: contextlib.nullcontext())
    def block(v):
        return timed_block(serves[v], warmup, requests, drain)
    if fix:
        two = ab_rounds(lambda fixed: block(fix if fixed else "slow"), rounds, mark=mark)
        ms = {"slow": two[False], fix: two[True]}
    else:
        order = list(serves)
        ms = {v: [] for v in order}
        for r in range(rounds):
            for v in order[r % len(order):] + order[:r % len(order)]:
                with mark(f"ab {v} {r}"):
                    ms[v].append(block(v))
    lines = [ab_line(f"{prog} {f}", rounds, requests, {False: ms["slow"], True: ms[f]}) for f in ms if f != "slow"]
    return lines + [f"{prog} [ab]: median " + ", ".join(f"{v} {median(x):.2f}" for v, x in ms.items()) + " ms/request"]
