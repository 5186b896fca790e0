"""Bottleneck: launch overhead from a Python loop over rows. Each item of a batch gets its own handful of tiny kernels.

    python3 examples/rowwise_loop.py            # slow: for each of 64 items, normalise, score, softmax, top-k
    python3 examples/rowwise_loop.py --fixed    # fast: the same maths for the whole batch at once

A retrieval/re-ranking step: each request carries 64 query embeddings (dim 256); each is L2-normalised, scored
against 4096 item embeddings, turned into probabilities with a temperature, and its top 10 items are kept.

WHAT IS WRONG (default variant)
    The code was written for one query and then wrapped in `for q in queries:`. Every step on one 256-value row is
    a separate kernel of a few microseconds (norm, divide, matrix-vector product, scale, softmax, top-k, two stacks
    at the end), so a request launches ~400 kernels that each do almost nothing; the CPU's Python and launch time
    per kernel is longer than the kernel, so the GPU idles between them. In the profile: hundreds of very short
    kernels per `Inference` range, the GPU mostly idle, the CPU thread busy in `cudaLaunchKernel`.

WHY THE FIX WORKS (--fixed)
    The same operations on the (64, 256) batch are one kernel each: one normalisation, one matrix product
    (64 x 256 by 256 x 4096), one softmax, one top-k. ~10 launches instead of ~400, each with enough work to
    fill the GPU. (When the loop cannot be vectorised, capture it in a CUDA graph: see cuda_graph_decode.py.)
"""
import time

_T_START = time.perf_counter()

import argparse
import contextlib
import os

import torch
import torch.nn.functional as F

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"   # tiny sizes, to check on a CPU that the code runs: no measurement
QUERIES, DIM, ITEMS, TOPK, TEMP = (64, 256, 4096, 10, 0.05) if not SMOKE else (4, 16, 64, 3, 0.05)


@contextlib.contextmanager
def nvtx(name):
    if DEV == "cuda":
        torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        if DEV == "cuda":
            torch.cuda.nvtx.range_pop()


def rank_rowwise(queries, items):
    """BAD: one query at a time: ~6 tiny kernels per row."""
    idx, prob = [], []
    for q in queries:
        q = q / q.norm()
        s = items @ q / TEMP
        p = s.softmax(0)
        top = p.topk(TOPK)
        idx.append(top.indices)
        prob.append(top.values)
    return torch.stack(idx), torch.stack(prob)


def rank_batched(queries, items):
    """GOOD: the same maths for all queries at once."""
    q = F.normalize(queries, dim=1)
    p = (q @ items.T / TEMP).softmax(1)
    top = p.topk(TOPK, dim=1)
    return top.indices, top.values


def serve(items, q_host, fixed):
    with nvtx("Inference"):
        with nvtx("preprocess"):
            q = q_host.to(DEV, non_blocking=True)
        with nvtx("infer"):
            idx, prob = (rank_batched if fixed else rank_rowwise)(q, items)
        with nvtx("postprocess"):
            return torch.cat([idx.float(), prob], 1).cpu()      # one copy back: one sync


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (batched ops)")
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    torch.manual_seed(0)
    items = F.normalize(torch.randn(ITEMS, DIM, device=DEV), dim=1)
    g = torch.Generator().manual_seed(0)
    queries = [torch.randn(QUERIES, DIM, generator=g) for _ in range(4)]
    if DEV == "cuda":
        queries = [q.pin_memory() for q in queries]
    with torch.inference_mode():
        for i in range(args.warmup):
            serve(items, queries[i % 4], args.fixed)
        if DEV == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(args.requests):
            serve(items, queries[i % 4], args.fixed)
        if DEV == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    variant = "fixed" if args.fixed else "slow"
    print(f"rowwise_loop [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)


if __name__ == "__main__":
    main()
