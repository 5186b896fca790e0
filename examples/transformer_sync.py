"""The zoo's sync_heavy program (../shared/zoo/zoo.py), served with each of the two fixes its profile suggests.

    python3 examples/transformer_sync.py            # as the zoo runs it: a device sync after every layer
    python3 examples/transformer_sync.py --fixed    # the cuda_sync fix: the per-layer syncs removed
    python3 examples/transformer_sync.py --graph    # the launch_overhead fix: no per-layer syncs, and the request's
                                                    # 12 layers captured once in a CUDA graph and replayed

The model is 12 nn.TransformerEncoderLayer(512, 8 heads, 2048) in fp16, batch 8 x 128 tokens, in inference mode
(PyTorch's fused encoder fast path: ~9 kernels per layer, each a few microseconds on an H100). Each request is one
NVTX range named `Inference`, runs the 12 layers and reads one number back (`.item()`), as in the zoo.

WHAT IS WRONG (default variant)
    `torch.cuda.synchronize()` after every layer: the CPU waits until the GPU has finished the layer before it
    dispatches the next one, so CPU and GPU time add up instead of overlapping. How much that costs depends on
    which side is slower: here each layer's GPU work is short next to the Python that dispatches it (the fast
    path's argument checks and ~9 launches), so the CPU paces the request with or without the syncs.

WHY THE FIXES WORK
    --fixed: without the syncs the CPU queues the layers back to back; it saves each sync's wait (the GPU's tail of
        the layer and the call's round trip), not the CPU's own dispatch.
    --graph: the CUDA graph holds the kernels of all 12 layers (a graph cannot hold a sync, so the per-layer syncs
        go too); a request is one cudaGraphLaunch and no Python dispatch at all, so the GPU runs the kernels back to
        back and the request takes about its GPU time plus one launch and the final read.

--ab K: the three variants in ONE process, K rounds of one block each (--requests requests per block, the order
rotating), printing for each fix the ab.py line (each variant's median ms/request, the median of the rounds'
differences): separate processes on the H200 host ran the same code up to 2x apart in CPU speed
(tests/data/README.md "Repeated runs"), which one process shares between the variants. --ab K --ab-fix F: the
slow variant and fix F only, alternating through ab.ab_rounds, each block in an NVTX range "ab slow R" /
"ab fixed R" (for a profile of the whole run: benchmarks/ab_blocks.py).

EXAMPLES_SMOKE=1 shrinks the sizes so the code can be checked on a CPU-only PyTorch; it measures nothing.
"""
import time

_T_START = time.perf_counter()

import argparse
import os

import torch
import torch.nn as nn

from ab import ab_compare                 # the --ab rounds and lines (examples/ab.py)
from serving import CUDA, capture_graph, nvtx, serve_timed    # shared scaffolding (examples/serving.py)

DEV = "cuda" if CUDA else "cpu"
DTYPE = torch.half if CUDA else torch.float32
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"
D, HEADS, FF, LAYERS = (512, 8, 2048, 12) if not SMOKE else (64, 4, 128, 2)
BATCH, TOKENS = (8, 128) if not SMOKE else (2, 16)


def sync():
    if CUDA:
        torch.cuda.synchronize()


def make_server(layers, x0, variant):
    """-> serve() for the variant ('slow', 'fixed' or 'graph'): one request, its result read on the host."""
    if variant == "graph" and CUDA:
        def forward():
            x = x0
            for layer in layers:
                x = layer(x)
            return x.float().abs().mean()
        graph, static_out = capture_graph(forward)

        def serve():
            with nvtx("Inference"):
                graph.replay()
                if static_out.item() > 1e9:
                    print("?")
        return serve

    def serve():
        with nvtx("Inference"):
            x = x0
            for layer in layers:
                x = layer(x)
                if variant == "slow":
                    sync()                   # the zoo's torch.cuda.synchronize() after every layer
            if x.float().abs().mean().item() > 1e9:
                print("?")
    return serve


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="the per-layer syncs removed (the cuda_sync fix)")
    ap.add_argument("--graph", action="store_true", help="no per-layer syncs, the layers replayed as one CUDA graph")
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ab", type=int, default=0, metavar="K", help="all three variants in one process, K rounds")
    ap.add_argument("--ab-fix", choices=("fixed", "graph"), help="with --ab: the slow variant and this fix only")
    args = ap.parse_args()

    torch.manual_seed(0)
    layers = [nn.TransformerEncoderLayer(D, HEADS, FF, batch_first=True).to(DEV).to(DTYPE).eval()
              for _ in range(LAYERS)]
    x0 = torch.randn(BATCH, TOKENS, D, device=DEV).to(DTYPE)
    with torch.inference_mode():
        if args.ab:
            run_ab(layers, x0, args)
            return
        variant = "graph" if args.graph else "fixed" if args.fixed else "slow"
        serve = make_server(layers, x0, variant)
        dt = serve_timed(lambda i: serve(), args.warmup, args.requests)
    print(f"transformer_sync [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)


def run_ab(layers, x0, args):
    fixes = (args.ab_fix,) if args.ab_fix else ("fixed", "graph")
    serves = {v: make_server(layers, x0, v) for v in ("slow",) + fixes}
    if CUDA:
        torch.cuda.profiler.start()
    lines = ab_compare("transformer_sync", serves, args.ab, args.warmup, args.requests, fix=args.ab_fix, drain=sync,
                       mark=nvtx)
    if CUDA:
        torch.cuda.profiler.stop()
    for line in lines:
        print(line, flush=True)


if __name__ == "__main__":
    main()
