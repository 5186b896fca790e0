"""Bottleneck: a host<->GPU synchronization after every layer.

    python3 examples/sync_per_layer.py            # slow: one .item() (a full sync) per layer
    python3 examples/sync_per_layer.py --fixed    # fast: one sync per request, at the very end

The model is a 16-block stack of residual MLP blocks (LayerNorm -> Linear -> GELU -> Linear) in fp16 that runs over
8192 token vectors per request. Each block is roughly 0.3-0.5 ms of GPU work, and takes Python about as long to
launch (8-10 kernels, more under a tracing profiler).

WHAT IS WRONG (default variant)
    After every block the code runs a "NaN guard":  `if not torch.isfinite(x).all().item(): raise ...`
    `.item()` copies one value from the GPU to the CPU, so the CPU must wait until *all* queued GPU work has
    finished (in the profile: a cudaMemcpyAsync device-to-host followed by cudaStreamSynchronize, 16 per request).
    While the CPU waits, it launches nothing; when it wakes up, the GPU sits idle until Python has launched the
    next block's kernels. The GPU timeline becomes "work, gap, work, gap, ...", and the request takes much longer
    than its kernels do. Other common sources of the same pattern: `print(t)`, `float(t)`, `t.tolist()`,
    `if t > 0:` on a GPU tensor, `torch.cuda.synchronize()` "for timing" inside the loop, `t.cpu()` of
    intermediate results.

WHY THE FIX WORKS (--fixed)
    The guard is kept, but evaluated on the GPU: each block ANDs its finite-check into a flag tensor that lives on
    the device, without reading it. The CPU therefore runs ahead, queueing all blocks back-to-back, and the GPU
    never waits for Python. The flag is copied to the host once, together with the request's result (the one
    synchronization a request really needs: the caller wants the answer).

MEASURED (H100, under nsys with CUDA tracing): 6.7 ms/request slow vs 6.4 ms fixed, 18 vs 1 syncs per request.
    The gain is modest here because each block keeps the GPU busy for ~0.35 ms, long next to the ~30 us that one
    sync round trip costs: the price of a sync is the GPU idling while the CPU wakes up and launches again, so it
    hurts most when the work between syncs is short or the CPU has host work to do between them. A profile still
    shows the pattern plainly: 16 device-to-host copies and cudaStreamSynchronize calls inside every request.
    On an H200 (--ab 5, both variants alternating in one process, three processes) the fix saved 1.25, 0.53 and
    0.92 ms/request.

--ab K: both variants in ONE process, K rounds of one block each (--requests requests per block, order
alternating), printing each variant's median ms/request and the median of the rounds' differences: separate
processes on the H200 host ran the same code up to 2x apart in CPU speed (tests/data/README.md "Repeated
runs"), which one process shares between both variants.
"""
import time

_T_START = time.perf_counter()

import argparse
import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from ab import ab_line, ab_rounds    # --ab: both variants in one process (examples/ab.py)

DEV = "cuda"


@contextlib.contextmanager
def nvtx(name):
    """An NVTX push/pop range, visible in Nsight Systems on the thread that runs it."""
    torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        torch.cuda.nvtx.range_pop()


class Block(nn.Module):
    def __init__(self, d=1024, hidden=4096):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class Model(nn.Module):
    def __init__(self, vocab=32000, d=1024, depth=16, classes=1000):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(depth))
        self.head = nn.Linear(d, classes)


def make_requests(n, tokens=8192, vocab=32000):
    """Token ids as they would arrive from a tokenizer, already in pinned host memory."""
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab, (tokens,), generator=g).pin_memory() for _ in range(n)]


def serve_slow(model, ids_host):
    with nvtx("Inference"):
        with nvtx("preprocess"):
            x = model.embed(ids_host.to(DEV, non_blocking=True))
        with nvtx("infer"):
            for blk in model.blocks:
                x = blk(x)
                # BAD: .item() waits for the GPU to finish everything queued so far, once per block.
                if not torch.isfinite(x).all().item():
                    raise FloatingPointError("non-finite activations")
            logits = model.head(x.mean(0))
        with nvtx("postprocess"):
            top = logits.float().softmax(-1).topk(5)
            return top.indices.cpu(), top.values.cpu()   # (two more syncs; small next to 16)


def serve_fixed(model, ids_host):
    with nvtx("Inference"):
        with nvtx("preprocess"):
            x = model.embed(ids_host.to(DEV, non_blocking=True))
        with nvtx("infer"):
            ok = torch.ones((), dtype=torch.bool, device=DEV)
            for blk in model.blocks:
                x = blk(x)
                # GOOD: the check stays on the GPU; nothing here waits for the GPU.
                ok &= torch.isfinite(x).all()
            logits = model.head(x.mean(0))
        with nvtx("postprocess"):
            top = logits.float().softmax(-1).topk(5)
            # ONE device->host copy of everything the caller needs = one synchronization per request.
            packed = torch.cat([top.indices.float(), top.values, ok.float().view(1)]).cpu()
            if packed[-1] == 0:
                raise FloatingPointError("non-finite activations")
            return packed[:5].long(), packed[5:10]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant")
    ap.add_argument("--requests", type=int, default=60, help="measured requests (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up requests (also marked 'Inference')")
    ap.add_argument("--ab", type=int, default=0, metavar="K", help="both variants in one process, K rounds")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = Model().to(DEV).half().eval()
    reqs = make_requests(8)

    def block(fixed):
        serve = serve_fixed if fixed else serve_slow
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(args.requests):
            serve(model, reqs[i % len(reqs)])
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    with torch.inference_mode():
        torch.cuda.profiler.start()          # nsys --capture-range=cudaProfilerApi records from here (warm-up on)
        for fixed in ((False, True) if args.ab else (args.fixed,)):
            for i in range(args.warmup):
                (serve_fixed if fixed else serve_slow)(model, reqs[i % len(reqs)])
        if args.ab:
            ms = ab_rounds(lambda fixed: block(fixed) / args.requests * 1e3, args.ab, mark=nvtx)
        else:
            dt = block(args.fixed)
        torch.cuda.profiler.stop()           # ... to here (without the capture option the whole process is recorded)
    if args.ab:
        print(ab_line("sync_per_layer", args.ab, args.requests, ms), flush=True)
        return
    variant = "fixed" if args.fixed else "slow"
    print(f"sync_per_layer [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)


if __name__ == "__main__":
    main()
