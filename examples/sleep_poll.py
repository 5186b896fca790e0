"""Bottleneck: a sleep-poll host wait after every stage: `while not done.query(): time.sleep(0.0005)`.

    python3 examples/sleep_poll.py            # slow: after each of 6 stages, poll an event, sleeping 0.5 ms a try
    python3 examples/sleep_poll.py --fixed    # fast: no per-stage wait, one event.synchronize() per request

The model is a small convolutional network in fp16, channels-last: a stem and 6 stages of three 3x3 convolutions
(256 channels, 56 x 56, batch 64) with BatchNorm (eval) and ReLU; each stage is about a millisecond of GPU work.

WHAT IS WRONG (default variant)
    Serving code that wants to "yield the CPU while the GPU works" (or report progress per stage) records a CUDA
    event after each stage and sleeps between checks of it: `while not done.query(): time.sleep(0.0005)`. That is
    a host wait like cudaStreamSynchronize, with two extra costs: the CPU launches
    nothing while it waits, so the GPU idles after each stage until Python has launched the next one; and the wait
    ends only at the first check after the GPU has finished, up to a whole sleep (0.5 ms plus the OS's timer slack)
    late. In the profile there is no synchronize call at all: a few `cudaEventQuery` calls after each stage,
    separated by `nanosleep` calls (OS runtime trace), and a GPU gap after each run. (The same loop on
    `torch.cuda.current_stream().query()` does the same harm, but Nsight Systems 2025.3 recorded no
    cudaStreamQuery calls at all in a first recording of it: only the sleeps and the gaps were left to see.)

WHY THE FIX WORKS (--fixed)
    Nothing in the request needs the stages' results on the CPU, so nothing waits for them: the CPU queues all
    stages back-to-back and the GPU runs them without gaps. The request records one CUDA event after its last
    kernel and blocks once on `event.synchronize()` (no polling: the driver wakes the thread when the GPU
    reaches the event) before it reads the result. Where code must wait for an intermediate result on another
    stream, `stream.wait_event(ev)` orders it on the GPU without any host wait.

MEASURED (H200, under nsys, tests/data/ex_sleep_*): 11.62 ms/request slow vs 8.97 fixed (-23%); slow: ~8 sleeps
    and ~14 cudaEventQuery calls per request, GPU busy 69% (92% fixed). In one process (--ab 5, three processes)
    the fix saved 2.94, 1.58 and 1.82 ms/request: how late the sleeps end varies from process to process.

--ab K: both variants in ONE process, K rounds of one block each (--requests requests per block, order
alternating), printing each variant's median ms/request and the median of the rounds' differences: separate
processes on the H200 host ran the same code up to 2x apart in CPU speed (tests/data/README.md "Repeated
runs"), which one process shares between both variants.

EXAMPLES_SMOKE=1 shrinks the sizes so the code can be checked on a CPU-only PyTorch; it measures nothing.
"""
import time

_T_START = time.perf_counter()

import argparse
import contextlib
import os

import torch
import torch.nn as nn

from ab import ab_line, ab_rounds    # --ab: both variants in one process (examples/ab.py)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"   # tiny sizes, to check on a CPU that the code runs: no measurement
BATCH, C, HW, STAGES = (64, 256, 56, 6) if not SMOKE else (1, 8, 8, 2)
POLL_SLEEP_S = 0.0005     # the sleep between two checks of the stream, as such serving loops use


@contextlib.contextmanager
def nvtx(name):
    if DEV == "cuda":
        torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        if DEV == "cuda":
            torch.cuda.nvtx.range_pop()


def stage():
    layers = []
    for _ in range(3):
        layers += [nn.Conv2d(C, C, 3, padding=1, bias=False), nn.BatchNorm2d(C), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C), nn.ReLU(inplace=True))
        self.stages = nn.ModuleList(stage() for _ in range(STAGES))
        self.head = nn.Linear(C, 1000)


def wait_sleep_polling():
    """BAD: poll an event, sleeping between checks: a host wait that also ends late."""
    if DEV != "cuda":
        return 0
    polls = 0
    done = torch.cuda.Event()
    done.record()
    while not done.query():
        time.sleep(POLL_SLEEP_S)
        polls += 1
    return polls


def serve(model, x_host, fixed):
    polls = 0
    with nvtx("Inference"):
        with nvtx("preprocess"):
            x = x_host.to(DEV, non_blocking=True).half().contiguous(memory_format=torch.channels_last)
        with nvtx("infer"):
            x = model.stem(x)
            for st in model.stages:
                x = st(x)
                if not fixed:
                    polls += wait_sleep_polling()
            logits = model.head(x.mean((2, 3)))
        with nvtx("postprocess"):
            top = logits.float().softmax(-1).topk(5)
            if fixed and DEV == "cuda":
                # GOOD: the answer copied asynchronously (into pinned memory), then ONE blocking wait on an event:
                # no polling, the driver wakes the thread when the GPU gets there.
                idx = top.indices.to("cpu", non_blocking=True)
                done = torch.cuda.Event(blocking=True)
                done.record()
                done.synchronize()
                return idx, polls
            return top.indices.cpu(), polls


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (no per-stage polling)")
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ab", type=int, default=0, metavar="K", help="both variants in one process, K rounds")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = Net().to(DEV).half().eval().to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(BATCH, 3, HW, HW, generator=g) for _ in range(4)]
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
        if DEV == "cuda":
            torch.cuda.profiler.start()      # nsys --capture-range=cudaProfilerApi records from here (warm-up on)
        for fixed in ((False, True) if args.ab else (args.fixed,)):
            for i in range(args.warmup):
                serve(model, inputs[i % 4], fixed)
        if args.ab:
            ms = ab_rounds(lambda fixed: block(fixed) / args.requests * 1e3, args.ab, mark=nvtx)
        else:
            dt = block(args.fixed)
        if DEV == "cuda":
            torch.cuda.profiler.stop()       # ... to here: the served requests, not start-up and exit
    if args.ab:
        print(ab_line("sleep_poll", args.ab, args.requests, ms), flush=True)
        return
    variant = "fixed" if args.fixed else "slow"
    print(f"sleep_poll [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); {polls / args.requests:.1f} sleeps/request; "
          f"program wall time {time.perf_counter() - _T_START:.2f}s", flush=True)


if __name__ == "__main__":
    main()
