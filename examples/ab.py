"""--ab for the cuda_sync examples: both variants of a program alternating in one process, so that the host's CPU
speed, which differs from one process to the next (tests/data/README.md "Repeated runs"), is the same for both.
Measurement scaffolding shared by the programs, not part of any example's lesson."""
import contextlib
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
