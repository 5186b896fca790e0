"""Bottleneck: memory allocation in the request path. Every tensor of every request is a cudaMalloc and a cudaFree.

    python3 examples/alloc_per_request.py            # slow: PyTorch's caching allocator switched off
    python3 examples/alloc_per_request.py --fixed    # fast: the caching allocator on (PyTorch's default)

The model is a 24-block MLP (LayerNorm -> Linear 1024->4096 -> GELU -> Linear -> residual) in fp16 over 1024 tokens:
about ten tensors are created and dropped per block, so a few hundred per request.

WHAT IS WRONG (default variant)
    `PYTORCH_NO_CUDA_MEMORY_CACHING=1` (set by this program before it imports torch, as a debugging setting that
    was left on, or as an allocator-less C++ runtime, CuPy without a memory pool, a TensorRT context that allocates
    per enqueue) makes every tensor allocation a `cudaMalloc` and every release a `cudaFree`. cudaMalloc is a driver
    call of tens of microseconds; cudaFree waits until the device is idle before it returns, so it acts as a
    synchronization: the CPU stops queueing work, the GPU drains and then waits for the next launches. In the
    profile: hundreds of cudaMalloc/cudaFree calls inside every `Inference` range, a large share of the request's
    time in them, and gaps on the GPU behind each cudaFree.

WHY THE FIX WORKS (--fixed)
    PyTorch's caching allocator keeps freed blocks and hands them out again: after the warm-up requests have taken
    what they need from the driver, a request makes no cudaMalloc or cudaFree at all, the CPU queues the kernels
    ahead of the GPU and the GPU runs them back to back. (For your own code: a memory pool, or preallocated buffers
    reused across requests.)
"""
import os
import sys
import time

_T_START = time.perf_counter()

FIXED = "--fixed" in sys.argv
if not FIXED:
    # BAD: must be set before torch is imported; every allocation now goes to cudaMalloc/cudaFree
    os.environ["PYTORCH_NO_CUDA_MEMORY_CACHING"] = "1"

import argparse
import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"   # tiny sizes, to check on a CPU that the code runs: no measurement
TOKENS, D, DEPTH = (1024, 1024, 24) if not SMOKE else (16, 32, 2)


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
        self.head = nn.Linear(D, 10)

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return self.head(x.mean(0)).float()


def serve(model, x_host):
    with nvtx("Inference"):
        with nvtx("preprocess"):
            x = x_host.to(DEV, non_blocking=True).half()
            x = (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-5)
        with nvtx("infer"):
            y = model(x)
        with nvtx("postprocess"):
            return y.softmax(-1).cpu()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (caching allocator on)")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    torch.manual_seed(0)
    model = Model().to(DEV).half().eval()
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(TOKENS, D, generator=g) for _ in range(4)]
    if DEV == "cuda":
        inputs = [x.pin_memory() for x in inputs]
    with torch.inference_mode():
        for i in range(args.warmup):
            serve(model, inputs[i % 4])
        if DEV == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(args.requests):
            serve(model, inputs[i % 4])
        if DEV == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    cached = os.environ.get("PYTORCH_NO_CUDA_MEMORY_CACHING") != "1"
    variant = "fixed" if args.fixed else "slow"
    print(f"alloc_per_request [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); caching allocator {'on' if cached else 'off'}; "
          f"program wall time {time.perf_counter() - _T_START:.2f}s", flush=True)


if __name__ == "__main__":
    main()
