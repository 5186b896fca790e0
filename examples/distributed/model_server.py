"""A server that loads model weights from disk while requests wait: a cold start and model swaps.

    python3 examples/distributed/model_server.py --write     # once: write 3 model files to /tmp (not profiled)
    python3 examples/distributed/model_server.py             # serve 43 requests, swapping models every 10

Three "models" (a stack of bf16 matrices, 384 MiB each) live as raw files in /tmp. The server loads the first one
before the first request (cold start), then serves requests; every 10 requests the traffic asks for another model,
and the request that needs it loads it: read the file (np.fromfile) and upload the weights to the GPU (.to('cuda')
from pageable memory). The files' pages are dropped from the page cache after writing and after each load
(posix_fadvise DONTNEED), so each load reads the disk as a real first load would.

WHAT IS WRONG
    The requests that arrive during a swap wait for a file read of hundreds of MB and a host-to-device upload
    before their own few milliseconds of GPU work: one request in ten is ~100x slower than the others.

THE FIX (not in this program)
    Keep every served model resident (GPU memory permitting), or load the next one in the background (a loader
    thread reading into pinned memory, uploading on a side stream) and switch when it is ready; do the cold start
    before the server takes traffic.
"""
import time

_T_START = time.perf_counter()

import argparse
import os

import numpy as np
import torch

DIR = "/tmp/nsys_doctor_models"
HIDDEN = 4096
LAYERS = 12                      # 12 x 4096 x 4096 bf16 = 384 MiB per model
MODELS = 3


def path(k):
    return os.path.join(DIR, f"model{k}.bin")


def drop_cache(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def write_models():
    os.makedirs(DIR, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(MODELS):
        w = (rng.standard_normal((LAYERS, HIDDEN, HIDDEN), dtype=np.float32) * 0.01).astype(np.float16)
        with open(path(k), "wb") as f:
            f.write(w.view(np.uint16).tobytes())
            f.flush()
            os.fsync(f.fileno())
        drop_cache(path(k))
    print(f"wrote {MODELS} models of {LAYERS * HIDDEN * HIDDEN * 2 / 2**20:.0f} MiB to {DIR}", flush=True)


def load(k):
    torch.cuda.nvtx.range_push(f"load_model{k}")
    raw = np.fromfile(path(k), dtype=np.float16)                          # file read
    w = torch.from_numpy(raw).to("cuda").view(LAYERS, HIDDEN, HIDDEN)    # pageable host-to-device upload
    w = w.to(torch.bfloat16)
    drop_cache(path(k))
    torch.cuda.nvtx.range_pop()
    return w


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="write the model files and exit")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--swap-every", type=int, default=10)
    args = ap.parse_args()
    if args.write:
        write_models()
        return
    torch.cuda.init()
    current, weights = 0, load(0)                                          # cold start, before any request
    x0 = torch.randn(512, HIDDEN, device="cuda", dtype=torch.bfloat16)
    lat = []
    with torch.inference_mode():
        for i in range(args.warmup + args.requests):
            want = (i // args.swap_every) % MODELS
            t = time.perf_counter()
            torch.cuda.nvtx.range_push("Inference")
            if want != current:                                            # model swap inside this request
                del weights
                current, weights = want, load(want)
            x = x0
            for layer in range(LAYERS):
                x = torch.relu(x @ weights[layer])
            out = float(x[0, :8].float().sum())
            torch.cuda.nvtx.range_pop()
            lat.append(time.perf_counter() - t)
    lat = np.array(lat[args.warmup:]) * 1e3
    print(f"model_server: {args.requests} requests, median {np.median(lat):.2f} ms, max {lat.max():.1f} ms, "
          f"mean {lat.mean():.2f} ms; program wall time {time.perf_counter() - _T_START:.2f}s", flush=True)


if __name__ == "__main__":
    main()
