"""Bottleneck: thread contention. Eight request threads serialise on one lock held around the whole request.

    python3 examples/thread_contention.py            # slow: a global "model lock" around preprocessing + inference
    python3 examples/thread_contention.py --fixed    # fast: no lock; each thread has its own CUDA stream

A server with 8 worker threads; each serves 10 requests (80 in all). A request is a CPU feature step in numpy
(sorting and ranking 200k values: ~10 ms, with the GIL released) and a small GPU model (under 1 ms), then the result.

WHAT IS WRONG (default variant)
    The handler takes one global `threading.Lock` for the whole request, "because the model is shared". The lock
    also covers the CPU step, which needs no lock at all, so at any time one thread works and seven wait: the CPU
    step of one request cannot overlap the GPU work of another, and on a 16-core machine 15 cores idle. In the
    profile: 8 threads with overlapping `Inference` ranges, most of each range spent blocked in `sem_wait` /
    `futex` (the lock), the waits alternating between threads, the GPU idle while the lock holder runs its numpy
    step.

WHY THE FIX WORKS (--fixed)
    Inference with a model that is not being modified is safe to run from several threads; the lock goes. Each
    thread issues its GPU work on its own CUDA stream (so one thread's sync waits only for its own kernels), and the
    CPU steps run in parallel on different cores, overlapping the GPU work of the other threads. The threads are
    joined before the program ends.
"""
import time

_T_START = time.perf_counter()

import argparse
import contextlib
import os
import threading

import numpy as np
import torch
import torch.nn as nn

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"   # tiny sizes, to check on a CPU that the code runs: no measurement
THREADS = 8
VALUES, TOKENS, WIDTH, DEPTH = (200_000, 1024, 2048, 8) if not SMOKE else (1000, 16, 32, 2)

MODEL_LOCK = threading.Lock()


@contextlib.contextmanager
def nvtx(name):
    if DEV == "cuda":
        torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        if DEV == "cuda":
            torch.cuda.nvtx.range_pop()


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(DEPTH))

    def forward(self, x):
        for layer in self.layers:
            x = torch.relu(layer(x))
        return x.float().mean()


def features(raw):
    """CPU step: rank features of the raw values (numpy's sort releases the GIL)."""
    order = np.argsort(raw)
    ranks = np.empty_like(order)
    ranks[order] = np.arange(len(raw))
    q = ranks[:WIDTH].astype(np.float32) / len(raw)
    return np.broadcast_to(q, (TOKENS, WIDTH)).copy()


def handle(model, raw, lock):
    with nvtx("Inference"):                                 # the request has arrived: its time starts now
        with lock:
            with nvtx("preprocess"):
                x = torch.from_numpy(features(raw))
            with nvtx("infer"):
                x = x.to(DEV, non_blocking=True).half()
                y = model(x)
            with nvtx("postprocess"):
                return float(y)                             # sync: this thread's answer


def worker_slow(model, inputs, k, n):
    for i in range(n):
        # BAD: the whole request, CPU step included, under one global lock
        handle(model, inputs[(k + i) % len(inputs)], MODEL_LOCK)


def worker_fixed(model, inputs, k, n):
    stream = torch.cuda.Stream() if DEV == "cuda" else None
    ctx = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
    with ctx:                                               # GOOD: no lock; this thread's own stream
        for i in range(n):
            handle(model, inputs[(k + i) % len(inputs)], contextlib.nullcontext())


def run_threads(target, model, inputs, per_thread):
    def body(k):
        with torch.inference_mode():
            target(model, inputs, k, per_thread)
    threads = [threading.Thread(target=body, args=(k,), name=f"request-{k}") for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()                                            # no thread left running at exit


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (no lock, a stream per thread)")
    ap.add_argument("--requests", type=int, default=80, help="measured requests in all (split over 8 threads)")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up requests, on the main thread")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = Model().to(DEV).half().eval()
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(VALUES).astype(np.float32) for _ in range(8)]
    with torch.inference_mode():
        for i in range(args.warmup):
            handle(model, inputs[i], contextlib.nullcontext())
    if DEV == "cuda":
        torch.cuda.synchronize()
    per_thread = max(1, args.requests // THREADS)
    t0 = time.perf_counter()
    run_threads(worker_fixed if args.fixed else worker_slow, model, inputs, per_thread)
    if DEV == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    n = per_thread * THREADS
    variant = "fixed" if args.fixed else "slow"
    print(f"thread_contention [{variant}]: {n} requests in {dt:.3f}s ({dt / n * 1e3:.2f} ms/request, "
          f"{n / dt:.0f} requests/s, {THREADS} threads); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)


if __name__ == "__main__":
    main()
