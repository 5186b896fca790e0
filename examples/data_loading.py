"""Bottleneck: data loading starves the GPU. Each request's input is fetched and read before any GPU work starts.

    python3 examples/data_loading.py            # slow: fetch + file read + decode inside the request, GPU idle
    python3 examples/data_loading.py --fixed    # fast: a loader thread prepares the next request's input meanwhile

Each request's input is a 8 MB feature file on local disk (written at start-up; read back from the page cache) plus
a "remote" part fetched from a slow store, simulated by an 8 ms sleep (a network round trip to object storage or a
feature service). The model is a stack of 16 bf16 Linear layers of width 8192 over 2048 tokens (~7 ms of GPU).

WHAT IS WRONG (default variant)
    The request thread does everything in order: wait for the remote fetch, read the file, decode it (numpy), copy it
    to the GPU, run the model. While it waits and reads, the GPU has nothing to do; while the GPU computes, nobody
    loads the next input. In the profile: inside every `Inference` range a long `preprocess` phase with a
    `nanosleep` (the fetch) and `read` calls (the file) on the request thread and no GPU work under it, then the
    kernels of `infer`; the GPU is idle for most of each request.

WHY THE FIX WORKS (--fixed)
    A loader thread (a one-worker ThreadPoolExecutor, the same idea as DataLoader workers with prefetching) fetches,
    reads and decodes the input of request i+1 while request i runs on the GPU. The sleep and the reads release the
    GIL, so they overlap the GPU work; the request thread only waits for what is not ready yet. The time per request
    drops from load + compute to about max(load, compute). The loader is shut down (joined) before the program ends.
"""
import time

_T_START = time.perf_counter()

import argparse
import contextlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn as nn

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"   # tiny sizes, to check on a CPU that the code runs: no measurement
TOKENS, FEAT, WIDTH, DEPTH = (2048, 1024, 8192, 16) if not SMOKE else (64, 32, 64, 2)
FETCH_S = 0.008                                    # the simulated remote fetch
N_FILES = 4


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


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(FEAT, WIDTH)
        self.layers = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(DEPTH))
        self.head = nn.Linear(WIDTH, 16)

    def forward(self, x):
        x = self.embed(x)
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.head(x).float().mean(0)


def write_inputs(folder):
    """The request inputs as files on disk, float32 features (TOKENS x FEAT)."""
    rng = np.random.default_rng(0)
    paths = []
    for k in range(N_FILES):
        p = os.path.join(folder, f"features_{k}.bin")
        rng.standard_normal((TOKENS, FEAT), dtype=np.float32).tofile(p)
        paths.append(p)
    return paths


def load_input(path):
    """Fetch + read + decode one request's input; returns a pinned host tensor ready to upload."""
    time.sleep(FETCH_S)                                  # the remote part (object store / feature service)
    raw = np.fromfile(path, dtype=np.float32)            # the local file: read() calls
    x = raw.reshape(TOKENS, FEAT)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)    # decode / normalise
    t = torch.from_numpy(x.astype(np.float32))
    return t.pin_memory() if DEV == "cuda" else t


def run_model(model, x_host):
    with nvtx("infer"):
        x = x_host.to(DEV, non_blocking=True).to(torch.bfloat16)
        y = model(x)
    with nvtx("postprocess"):
        return y.cpu()                                   # the request's answer: one sync


def serve_slow(model, path):
    with nvtx("Inference"):
        with nvtx("preprocess"):
            x = load_input(path)                         # BAD: the GPU idles while this waits and reads
        return run_model(model, x)


class PrefetchServer:
    def __init__(self, model, paths):
        self.m, self.paths = model, paths
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loader")   # GOOD: loads ahead
        self.next = None

    def __call__(self, i):
        with nvtx("Inference"):
            with nvtx("preprocess"):
                fut = self.next if self.next is not None else self.pool.submit(load_input, self.paths[i % N_FILES])
                # GOOD: start loading request i+1 now, so it overlaps this request's GPU work
                self.next = self.pool.submit(load_input, self.paths[(i + 1) % N_FILES])
                x = fut.result()                         # usually ready, or nearly
            return run_model(self.m, x)

    def close(self):
        self.pool.shutdown(wait=True)                    # no thread left running at exit


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (prefetching loader thread)")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    torch.manual_seed(0)
    model = Model().to(DEV).to(torch.bfloat16).eval()
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        paths = write_inputs(folder)
        if args.fixed:
            server = PrefetchServer(model, paths)
            serve = server
        else:
            server = None
            serve = lambda i: serve_slow(model, paths[i % N_FILES])   # noqa: E731
        n = 0
        for _ in range(args.warmup):
            serve(n); n += 1
        sync()
        t0 = time.perf_counter()
        for _ in range(args.requests):
            serve(n); n += 1
        sync()
        dt = time.perf_counter() - t0
        if server is not None:
            server.close()
    variant = "fixed" if args.fixed else "slow"
    print(f"data_loading [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)


if __name__ == "__main__":
    main()
