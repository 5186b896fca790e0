"""Bottleneck: per-layer timing with `torch.cuda.synchronize()`: a blocking device-wide sync after every layer.

    python3 examples/layer_timing_sync.py            # slow: time.perf_counter() around each layer, synchronize after it
    python3 examples/layer_timing_sync.py --fixed    # fast: CUDA events around each layer, read once per request

The model is a 12-layer Transformer encoder (torch.nn.TransformerEncoderLayer, d_model 768, 12 heads, FFN 3072,
fp16) over a batch of 16 sequences of 256 tokens per request (--batch), and the server keeps per-layer latency
statistics. At batch 16 the layers' kernels are shorter than their launches (launch-bound); at --batch 96 the GPU
bounds the run between the syncs.

WHAT IS WRONG (default variant)
    To time each layer on the CPU clock, the code calls `torch.cuda.synchronize()` after it: the thread blocks until
    the whole device is idle (a cudaDeviceSynchronize per layer, no data read at all). While it waits it launches
    nothing, and when it wakes up the GPU sits idle until Python has launched the next layer's first kernels: each
    layer's CPU launch time and GPU time add up instead of overlapping. In the profile: 12 cudaDeviceSynchronize
    calls inside every `Inference` range and a GPU gap after each.

WHY THE FIX WORKS (--fixed)
    The same per-layer times are measured on the GPU's own clock: a `torch.cuda.Event(enable_timing=True)` is
    recorded between layers (cudaEventRecord queues a timestamp, it does not wait), and the times are read with
    `elapsed_time` once, after the request's one synchronization for its result. The CPU queues all 12 layers
    back-to-back and the GPU runs them without gaps; the statistics are the same (GPU time per layer, which is what
    the CPU-clock version meant to measure).

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
SEQ, D, HEADS, FFN, DEPTH = (256, 768, 12, 3072, 12) if not SMOKE else (8, 32, 2, 64, 2)


@contextlib.contextmanager
def nvtx(name):
    if DEV == "cuda":
        torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        if DEV == "cuda":
            torch.cuda.nvtx.range_pop()


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def serve(layers, head, x_host, fixed, stats):
    with nvtx("Inference"):
        with nvtx("preprocess"):
            x = x_host.to(DEV, non_blocking=True).half()
        with nvtx("infer"):
            if fixed and DEV == "cuda":
                # GOOD: timestamps queued on the GPU between layers; nothing here waits.
                marks = [torch.cuda.Event(enable_timing=True) for _ in range(len(layers) + 1)]
                marks[0].record()
                for i, layer in enumerate(layers):
                    x = layer(x)
                    marks[i + 1].record()
            else:
                for i, layer in enumerate(layers):
                    t = time.perf_counter()
                    x = layer(x)
                    sync()                        # BAD: waits until the whole device is idle, once per layer
                    stats[i] += time.perf_counter() - t
            logits = head(x[:, 0]).float()
        with nvtx("postprocess"):
            top = logits.softmax(-1).topk(5)
            idx = top.indices.cpu()               # the one wait a request needs (both variants)
            if fixed and DEV == "cuda":
                for i in range(len(layers)):      # the events are done: reading them waits for nothing
                    stats[i] += marks[i].elapsed_time(marks[i + 1]) / 1e3
            return idx


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (CUDA events, no per-layer sync)")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ab", type=int, default=0, metavar="K", help="both variants in one process, K rounds")
    ap.add_argument("--batch", type=int, default=16 if not SMOKE else 2,
                    help="sequences per request (16: launch-bound, 96: GPU-bound between the syncs)")
    args = ap.parse_args()

    torch.manual_seed(0)
    with torch.device(DEV):
        layers = nn.ModuleList(nn.TransformerEncoderLayer(D, HEADS, FFN, batch_first=True) for _ in range(DEPTH))
        head = nn.Linear(D, 1000)
    layers, head = layers.half().eval(), head.half().eval()
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(args.batch, SEQ, D, generator=g) for _ in range(4)]
    if DEV == "cuda":
        inputs = [x.pin_memory() for x in inputs]
    stats = [0.0] * DEPTH

    def block(fixed):
        sync()
        t0 = time.perf_counter()
        for i in range(args.requests):
            serve(layers, head, inputs[i % 4], fixed, stats)
        sync()
        return time.perf_counter() - t0

    with torch.inference_mode():
        if DEV == "cuda":
            torch.cuda.profiler.start()      # nsys --capture-range=cudaProfilerApi records from here (warm-up on)
        for fixed in ((False, True) if args.ab else (args.fixed,)):
            for i in range(args.warmup):
                serve(layers, head, inputs[i % 4], fixed, stats)
        if args.ab:
            ms = ab_rounds(lambda fixed: block(fixed) / args.requests * 1e3, args.ab, mark=nvtx)
        else:
            dt = block(args.fixed)
        if DEV == "cuda":
            torch.cuda.profiler.stop()       # ... to here: the served requests, not start-up and exit
    if args.ab:
        print(ab_line("layer_timing_sync", args.ab, args.requests, ms), flush=True)
        return
    variant = "fixed" if args.fixed else "slow"
    n = args.requests + args.warmup
    print(f"layer_timing_sync [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); layer 0 {stats[0] / n * 1e3:.3f} ms/request on average; "
          f"program wall time {time.perf_counter() - _T_START:.2f}s", flush=True)


if __name__ == "__main__":
    main()
