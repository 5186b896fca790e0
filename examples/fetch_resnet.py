"""The zoo's dataload_starved program (../shared/zoo/zoo.py), served as it is and with each of the two fixes its
profile suggests.

    python3 examples/fetch_resnet.py            # as the zoo runs it: fetch (an 8 ms sleep), read, decode, infer
    python3 examples/fetch_resnet.py --fixed    # the data-loading fix: a loader thread fetches, reads and decodes
                                                # the next request's input while this one runs
    python3 examples/fetch_resnet.py --graph    # the launch-overhead fix: the same loading, and the model captured
                                                # once in a CUDA graph on a static input, replayed per request

Each request (one NVTX range named `Inference`) waits 8 ms for a "remote fetch" (time.sleep), reads a 4.6 MB file
and decodes it with numpy (16 x 3 x 224 x 224 fp16), copies the batch to the GPU (a pageable copy), runs ResNet-50
in fp16 eagerly (~350 kernels of a few microseconds each at batch 16) and reads the 16 class ids back (`.cpu()`).
The ResNet-50 here is torchvision's architecture written out (bottleneck blocks 3-4-6-3), so the program needs only
PyTorch.

WHAT IS WRONG (default variant)
    Two things add up on one thread: the loading (sleep, read, decode), during which the GPU has nothing to do, and
    the eager forward, whose ~350 launches and Python dispatch take the CPU longer than the kernels take the GPU.

WHY THE FIXES WORK
    --fixed: the loading of request i+1 overlaps request i (the sleep and the read release the GIL); the request
        thread takes a ready batch, so a request costs about max(load, forward) instead of their sum.
    --graph: one cudaGraphLaunch replays the forward's kernels back to back, with no Python dispatch between them;
        the loading stays where it was.

--ab K: the three variants in ONE process, K rounds of one block each (the order rotating), printing for each fix
examples/ab.py's line: separate processes on the H200 host ran the same code up to 2x apart in CPU speed
(tests/data/README.md "Repeated runs"). --ab K --ab-fix F: the slow variant and fix F only, alternating through
ab.ab_rounds, each block in an NVTX range "ab slow R" / "ab fixed R" (for a profile of the whole run:
benchmarks/ab_blocks.py).

EXAMPLES_SMOKE=1 shrinks the sizes so the code can be checked on a CPU-only PyTorch; it measures nothing.
"""
import time

_T_START = time.perf_counter()

import argparse
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn as nn

from ab import ab_compare                  # the --ab rounds and lines (examples/ab.py)
from serving import CUDA, capture_graph, nvtx, serve_timed    # shared scaffolding (examples/serving.py)

DEV = "cuda" if CUDA else "cpu"
DTYPE = torch.half if CUDA else torch.float32
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"
BATCH, HW = (16, 224) if not SMOKE else (2, 32)
FETCH_S = 0.008 if not SMOKE else 0.0005


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.down = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + (x if self.down is None else self.down(x)))


def resnet50(classes=1000):
    layers, cin = [], 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
            cin = width * 4
    return nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                         nn.MaxPool2d(3, 2, 1), *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


def load(path):
    """The request's input: the remote fetch's latency, then the file read and decoded (as the zoo does)."""
    time.sleep(FETCH_S)
    with open(path, "rb") as f:
        f.read()
    return np.load(path)


def make_server(model, path, variant):
    """-> serve() for the variant ('slow', 'fixed' or 'graph'), and a close() for its loader thread."""
    if variant == "graph" and CUDA:
        static_in = torch.zeros(BATCH, 3, HW, HW, device=DEV, dtype=DTYPE)
        graph, static_out = capture_graph(lambda: model(static_in).argmax(1))

        def serve():
            with nvtx("Inference"):
                batch = load(path)
                static_in.copy_(torch.from_numpy(batch))     # the pageable copy, as the zoo's .to(DEV)
                graph.replay()
                return static_out.cpu()
        return serve, lambda: None

    if variant == "fixed":
        pool = ThreadPoolExecutor(1)
        nxt = [pool.submit(load, path)]

        def serve():
            with nvtx("Inference"):
                batch = nxt[0].result()
                nxt[0] = pool.submit(load, path)        # the next request's input, while this one runs
                x = torch.from_numpy(batch).to(DEV)
                return model(x).argmax(1).cpu()

        def close():
            nxt[0].result()
            pool.shutdown()
        return serve, close

    def serve():
        with nvtx("Inference"):
            x = torch.from_numpy(load(path)).to(DEV)
            return model(x).argmax(1).cpu()
    return serve, lambda: None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="a loader thread prefetches the next input")
    ap.add_argument("--graph", action="store_true", help="the model replayed as one CUDA graph")
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--ab", type=int, default=0, metavar="K", help="the variants in one process, K rounds")
    ap.add_argument("--ab-fix", choices=("fixed", "graph"), help="with --ab: the slow variant and this fix only")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = resnet50().to(DEV).to(DTYPE).eval()
    fd, path = tempfile.mkstemp(suffix=".npy")
    os.close(fd)
    np.save(path, np.random.default_rng(0).random((BATCH, 3, HW, HW)).astype(np.float16 if CUDA else np.float32))
    try:
        with torch.inference_mode():
            if args.ab:
                run_ab(model, path, args)
                return
            variant = "graph" if args.graph else "fixed" if args.fixed else "slow"
            serve, close = make_server(model, path, variant)
            try:
                dt = serve_timed(lambda i: serve(), args.warmup, args.requests)
            finally:
                close()
        print(f"fetch_resnet [{variant}]: {args.requests} requests in {dt:.3f}s "
              f"({dt / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
              flush=True)
    finally:
        os.unlink(path)


def run_ab(model, path, args):
    fixes = (args.ab_fix,) if args.ab_fix else ("fixed", "graph")
    servers = {v: make_server(model, path, v) for v in ("slow",) + fixes}
    if CUDA:
        torch.cuda.profiler.start()
    try:
        lines = ab_compare("fetch_resnet", {v: serve for v, (serve, _) in servers.items()}, args.ab, args.warmup,
                           args.requests, fix=args.ab_fix, mark=nvtx)
    finally:
        if CUDA:
            torch.cuda.profiler.stop()
        for _, close in servers.values():
            close()
    for line in lines:
        print(line, flush=True)


if __name__ == "__main__":
    main()
