"""Bottleneck: `torch.cuda.empty_cache()` after every request, so every request allocates its memory again.

    python3 examples/empty_cache.py            # slow: the cache emptied after each request
    python3 examples/empty_cache.py --fixed    # fast: the caching allocator keeps its blocks (PyTorch's default)

The model is a U-Net-style image-to-image network (encoder of strided convs, decoder of upsampling convs with skip
connections) in fp16 over a batch of 8 images of 256 x 256 per request, whose activations take a few hundred MB.
Each request is one NVTX range named `predict`.

WHAT IS WRONG (default variant)
    The service calls `torch.cuda.empty_cache()` after each request "to keep memory low" (a common workaround for an
    out-of-memory error seen once). It hands every cached block back to the driver: cudaFree, which waits for the
    device to go idle. The next request finds the cache empty, so its first use of each activation size is a
    cudaMalloc of a new segment, a driver call of tens to hundreds of microseconds, inside the request, while the
    GPU waits for the kernels the CPU cannot launch yet. In the profile: cudaMalloc calls inside every `predict`
    range and cudaFree calls after it, and gaps on the GPU behind them.

WHY THE FIX WORKS (--fixed)
    Without empty_cache() the caching allocator keeps the freed blocks and hands them out again: after the warm-up
    requests a request makes no cudaMalloc or cudaFree at all, and the memory stays reserved for the next request,
    which needs the same amount. (To cap memory, set PYTORCH_CUDA_ALLOC_CONF, or free only after an out-of-memory.)

--ab K: both variants in ONE process, K rounds of one block each (--requests requests per block, order alternating,
each block after one untimed request of its variant, which fills or empties the cache as that variant leaves it),
printing each variant's median ms/request and the median of the rounds' differences (examples/ab.py says why).

EXAMPLES_SMOKE=1 shrinks the sizes so the code can be checked on a CPU-only PyTorch; it measures nothing.
"""
import time

_T_START = time.perf_counter()

import argparse
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from serving import nvtx    # shared scaffolding (examples/serving.py)
from ab import ab_line, ab_rounds    # --ab: both variants in one process (examples/ab.py)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.half if DEV == "cuda" else torch.float32     # fp16 on the GPU
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"
BATCH, HW, WIDTH = (8, 256, 32) if not SMOKE else (1, 32, 4)


def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8 if cout % 8 == 0 else 1, cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.SiLU())


class UNetish(nn.Module):
    def __init__(self, levels=4):
        super().__init__()
        widths = [WIDTH * 2 ** i for i in range(levels)]
        self.down = nn.ModuleList()
        cin = 3
        for w in widths:
            self.down.append(block(cin, w))
            cin = w
        self.mid = block(cin, cin * 2)
        self.up = nn.ModuleList()
        cin = cin * 2
        for w in reversed(widths):
            self.up.append(block(cin + w, w))
            cin = w
        self.out = nn.Conv2d(cin, 3, 1)

    def forward(self, x):
        skips = []
        for blk in self.down:
            x = blk(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self.mid(x)
        for blk in self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = blk(torch.cat([x, skips.pop()], 1))
        return self.out(x)


def serve(model, x_host, fixed):
    with nvtx("predict"):
        y = model(x_host.to(DEV, non_blocking=True).to(DTYPE))
        out = y.clamp(-1, 1).float().mean((2, 3)).cpu()      # a per-image summary goes back to the caller
    del y
    if not fixed and DEV == "cuda":
        torch.cuda.empty_cache()      # BAD: every cached block back to the driver (cudaFree) after each request
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (no empty_cache)")
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ab", type=int, default=0, metavar="K", help="both variants in one process, K rounds")
    args = ap.parse_args()

    if DEV == "cuda":
        torch.backends.cudnn.benchmark = True      # both variants: the fastest kernel per shape
    torch.manual_seed(0)
    model = UNetish().to(DEV).eval()
    model = model.to(DTYPE)
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(BATCH, 3, HW, HW, generator=g) for _ in range(2)]
    if DEV == "cuda":
        inputs = [x.pin_memory() for x in inputs]

    def block(fixed, untimed=0):
        for i in range(untimed):
            serve(model, inputs[i % 2], fixed)
        if DEV == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(args.requests):
            serve(model, inputs[i % 2], fixed)
        if DEV == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    with torch.inference_mode():
        if DEV == "cuda":
            torch.cuda.profiler.start()      # nsys --capture-range=cudaProfilerApi records from here (warm-up on)
        for fixed in ((False, True) if args.ab else (args.fixed,)):
            for i in range(args.warmup):
                serve(model, inputs[i % 2], fixed)
        if args.ab:
            ms = ab_rounds(lambda fixed: block(fixed, untimed=1) / args.requests * 1e3, args.ab, mark=nvtx)
        else:
            dt = block(args.fixed)
        if DEV == "cuda":
            torch.cuda.profiler.stop()       # ... to here: the served requests, not start-up and exit
    if args.ab:
        print(ab_line("empty_cache", args.ab, args.requests, ms), flush=True)
        return
    reserved = torch.cuda.memory_reserved() / 2 ** 20 if DEV == "cuda" else 0.0
    variant = "fixed" if args.fixed else "slow"
    print(f"empty_cache [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); reserved at the end {reserved:.0f} MiB; "
          f"program wall time {time.perf_counter() - _T_START:.2f}s", flush=True)


if __name__ == "__main__":
    main()
