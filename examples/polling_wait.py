"""Bottleneck: polling host waits. After each layer the CPU spins on `torch.cuda.Event.query()` until the GPU is done.

    python3 examples/polling_wait.py            # slow: record an event after every block, busy-wait on .query()
    python3 examples/polling_wait.py --fixed    # fast: no per-block wait, one synchronization per request

The model is a 16-block stack of residual MLP blocks (LayerNorm -> Linear 1024->4096 -> GELU -> Linear) in fp16 over
4096 tokens; each block is ~0.2 ms of GPU work, about twice as long as Python needs to launch it.

WHAT IS WRONG (default variant)
    The code wants to "yield while the GPU works" or to check progress without blocking, so after each block it records
    a CUDA event and loops `while not ev.query(): pass`. A loop of cudaEventQuery calls is a host wait exactly like
    cudaStreamSynchronize: the CPU does nothing useful until the GPU has finished everything queued, then launches
    the next block while the GPU sits idle. It is worse for the machine (a core at 100% spinning) and harder to see:
    there is no synchronize call in the profile, only thousands of short `cudaEventQuery` calls in a row, one run of
    them after each block, with a gap on the GPU after each run.

WHY THE FIX WORKS (--fixed)
    Nothing in the request needs the intermediate results on the CPU, so nothing waits for them: the CPU queues all
    blocks back-to-back and the GPU runs them without gaps. The request waits once, at the end, for the result it
    returns. (Where code must wait for an intermediate event, wait on the GPU with `stream.wait_event`, or block once
    with `event.synchronize()` instead of spinning.)

MEASURED (H200, under nsys, tests/data/ex_polling_*): 4.45 ms/request slow vs 2.89 fixed in the pair's two runs;
    with both variants alternating in one process (--ab 5, three processes) the fix saved 1.23, 1.26 and 1.33.

--ab K: both variants in ONE process, K rounds of one block each (--requests requests per block, order
alternating), printing each variant's median ms/request and the median of the rounds' differences: separate
processes on the H200 host ran the same code up to 2x apart in CPU speed (tests/data/README.md "Repeated
runs"), which one process shares between both variants.
"""
import time

_T_START = time.perf_counter()

import argparse
import contextlib
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from ab import ab_line, ab_rounds    # --ab: both variants in one process (examples/ab.py)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"   # tiny sizes, to check on a CPU that the code runs: no measurement
TOKENS, D, DEPTH = (4096, 1024, 16) if not SMOKE else (16, 32, 2)


@contextlib.contextmanager
def nvtx(name):
    if DEV == "cuda":
        torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        if DEV == "cuda":
            torch.cuda.nvtx.range_pop()


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(D)
        self.fc1 = nn.Linear(D, 4 * D)
        self.fc2 = nn.Linear(4 * D, D)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(DEPTH))
        self.head = nn.Linear(D, 1000)


def wait_polling():
    """BAD: a busy-wait on the GPU; on the CPU the same as a synchronize, with a core spinning."""
    if DEV != "cuda":
        return 0
    ev = torch.cuda.Event()
    ev.record()
    polls = 0
    while not ev.query():
        polls += 1
    return polls


def serve(model, x_host, fixed):
    polls = 0
    with nvtx("Inference"):
        with nvtx("preprocess"):
            x = x_host.to(DEV, non_blocking=True).half()
        with nvtx("infer"):
            for blk in model.blocks:
                x = blk(x)
                if not fixed:
                    polls += wait_polling()
            logits = model.head(x.mean(0))
        with nvtx("postprocess"):
            top = logits.float().softmax(-1).topk(5)
            return top.indices.cpu(), polls              # GOOD (both variants): the one wait a request needs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (no per-block polling)")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ab", type=int, default=0, metavar="K", help="both variants in one process, K rounds")
    ap.add_argument("--tokens", type=int, default=TOKENS,
                    help="tokens per request (4096: each block ~0.2 ms of GPU work, longer than its launch; at 1024 "
                         "most blocks are done before the first check)")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = Model().to(DEV).half().eval()
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(args.tokens, D, generator=g) for _ in range(4)]
    if DEV == "cuda":
        inputs = [x.pin_memory() for x in inputs]
    polls = 0

    def block(fixed):
        nonlocal polls
        if DEV == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(args.requests):
            polls += serve(model, inputs[i % 4], fixed)[1]
        if DEV == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    with torch.inference_mode():
        for fixed in ((False, True) if args.ab else (args.fixed,)):
            for i in range(args.warmup):
                serve(model, inputs[i % 4], fixed)
        if args.ab:
            ms = ab_rounds(lambda fixed: block(fixed) / args.requests * 1e3, args.ab, mark=nvtx)
        else:
            dt = block(args.fixed)
    if args.ab:
        print(ab_line("polling_wait", args.ab, args.requests, ms), flush=True)
        return
    variant = "fixed" if args.fixed else "slow"
    print(f"polling_wait [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); {polls / args.requests:.0f} event queries/request; "
          f"program wall time {time.perf_counter() - _T_START:.2f}s", flush=True)


if __name__ == "__main__":
    main()
