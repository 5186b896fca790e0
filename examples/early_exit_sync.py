"""Bottleneck: a host read (`.item()`) after every layer of short GPU work: an early-exit check at batch 1.

    python3 examples/early_exit_sync.py            # slow: exit confidence read on the CPU after each of 24 layers
    python3 examples/early_exit_sync.py --fixed    # fast: confidences kept on the GPU, one read per request

The model is a 24-layer residual MLP (LayerNorm -> Linear 2048->8192 -> GELU -> Linear 8192->2048) in fp16, run on
ONE vector per request (batch 1, as in a decode step or a per-item classifier), with a small exit head (LayerNorm,
Linear 2048->16, softmax) after every layer. At batch 1 each layer is only ~25 us of GPU work, far less than Python
needs to launch its ~11 kernels.

WHAT IS WRONG (default variant)
    "Early exit": after each layer the code asks the exit head how confident it is, and stops if the confidence
    passes a threshold: `if conf.item() > THRESHOLD: break`. `.item()` copies one value to the host, so the CPU
    waits for the GPU to finish everything queued (a 4-byte device-to-host cudaMemcpyAsync and a
    cudaStreamSynchronize per layer), and then the GPU waits while Python launches the next layer. With work this
    short the two never overlap: the request costs launch time PLUS GPU time PLUS a sync round trip per layer.
    (The threshold is high, as in practice for a random model: no request exits early here, so both variants
    run all 24 layers and the same kernels, except that the fixed one stores each confidence with a one-element
    copy kernel where the slow one copies it to the host.) In the profile: 24 tiny DtoH copies and
    24 cudaStreamSynchronize calls inside every `Inference` range, and a GPU idle gap after each.

WHY THE FIX WORKS (--fixed)
    The exit confidences are written into a small tensor on the GPU, one slot per layer, and nothing reads them
    until the end of the request: the CPU queues all 24 layers back-to-back, GPU work overlaps the launches, and
    the request waits once, for the logits and the confidences together (one copy, one sync). Where exiting early
    really pays, check every K layers (one sync per K) or run the exit decision on the GPU
    (`torch.where`/`torch.cond`) instead of reading it layer by layer.

MEASURED (H200, under nsys, tests/data/ex_exit_*, pairs.json): 25 vs 1 syncs per request, GPU busy 11% vs 16%, and
    NO measurable saving: with both variants alternating in one process (--ab 5, three processes) the fix saved
    0.02, -1.03 and -0.07 ms/request. Both variants are launch-bound: each `.item()` finds the GPU done, so its wait
    costs only the sync call, and the fixed code's `confs[i] = conf` (a device-side copy per layer) costs what the
    read's copy did. The first recording's 10.23 vs 7.34 ms/request (-28%) was the host's CPU speed differing
    between the two processes (separate runs of the fixed program: 6.60 to 14.14 ms/request). The pattern is worth
    fixing where the GPU work between reads is long (sync_per_layer.py, layer_timing_sync.py --batch 96).

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
import torch.nn.functional as F

from ab import ab_line, ab_rounds    # --ab: both variants in one process (examples/ab.py)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"   # tiny sizes, to check on a CPU that the code runs: no measurement
D, HIDDEN, DEPTH, EXITS = (2048, 8192, 24, 16) if not SMOKE else (32, 64, 3, 4)
THRESHOLD = 0.99       # exit-head confidence that would end the request early (not reached by this model)


@contextlib.contextmanager
def nvtx(name):
    if DEV == "cuda":
        torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        if DEV == "cuda":
            torch.cuda.nvtx.range_pop()


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(D)
        self.fc1 = nn.Linear(D, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, D)
        self.exit_norm = nn.LayerNorm(D)       # the early-exit head: LayerNorm -> Linear -> softmax
        self.exit = nn.Linear(D, EXITS)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(Layer() for _ in range(DEPTH))
        self.head = nn.Linear(D, 1000)


def serve(model, x_host, fixed):
    with nvtx("Inference"):
        with nvtx("preprocess"):
            x = x_host.to(DEV, non_blocking=True).half().view(1, D)
        with nvtx("infer"):
            confs = torch.zeros(DEPTH, device=DEV, dtype=torch.float32)
            exited_at = DEPTH
            for i, layer in enumerate(model.layers):
                x = layer(x)
                conf = layer.exit(layer.exit_norm(x)).float().softmax(-1).amax()
                if fixed:
                    confs[i] = conf                      # GOOD: stays on the GPU, nothing waits
                elif conf.item() > THRESHOLD:            # BAD: a GPU->CPU copy and a full sync per layer
                    exited_at = i + 1
                    break
            logits = model.head(x).float()
        with nvtx("postprocess"):
            top = logits.softmax(-1).topk(5)
            if fixed:
                # ONE device->host copy of everything the caller needs (answer + every layer's confidence).
                packed = torch.cat([top.indices.float().view(-1), top.values.view(-1), confs]).cpu()
                over = (packed[10:] > THRESHOLD).nonzero()
                exited_at = int(over[0]) + 1 if len(over) else DEPTH
                return packed[:5].long(), exited_at
            return top.indices.cpu(), exited_at


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (one host read per request)")
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ab", type=int, default=0, metavar="K", help="both variants in one process, K rounds")
    args = ap.parse_args()

    torch.manual_seed(0)
    with torch.device(DEV):                 # 1.6 GB of weights: initialised on the GPU, not on one CPU core
        model = Model().half().eval()
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(D, generator=g) for _ in range(4)]
    if DEV == "cuda":
        inputs = [x.pin_memory() for x in inputs]
    layers = 0

    def block(fixed):
        nonlocal layers
        if DEV == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(args.requests):
            layers += serve(model, inputs[i % 4], fixed)[1]
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
        print(ab_line("early_exit_sync", args.ab, args.requests, ms), flush=True)
        return
    variant = "fixed" if args.fixed else "slow"
    print(f"early_exit_sync [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); {layers / args.requests:.0f} layers/request; "
          f"program wall time {time.perf_counter() - _T_START:.2f}s", flush=True)


if __name__ == "__main__":
    main()
