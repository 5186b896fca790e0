"""Bottleneck: each request first waits for its input from a remote service, with the GPU idle meanwhile.

    python3 examples/socket_fetch.py            # slow: fetch (a TCP round trip), then infer, one after the other
    python3 examples/socket_fetch.py --fixed    # fast: the next request's fetch runs on a thread while the GPU
                                                #       works on this one

A local TCP "feature store" (a thread of this program, standing in for a remote cache or database) answers each
request's query after ~4 ms (its lookup) with 256 KB of features (64 items); the request then runs a 24-block
residual MLP in fp16 over 32 augmented views of them (a few ms of GPU work). Each request is one NVTX range named `handle`.

WHAT IS WRONG (default variant)
    The serving thread sends the query and blocks in recv() until the answer arrives: the GPU has nothing to do for
    the whole round trip, then the CPU waits for the GPU. Fetch and inference add up (in the profile: each `handle`
    range starts with the thread blocked in recv/poll socket calls and the GPU idle).

WHY THE FIX WORKS (--fixed)
    A single prefetch thread fetches request i+1 while request i runs on the GPU (a bounded queue of one), so the
    round trip overlaps the GPU work instead of preceding it: the serving thread takes ready inputs.

EXAMPLES_SMOKE=1 shrinks the sizes so the code can be checked on a CPU-only PyTorch; it measures nothing.
"""
import time

_T_START = time.perf_counter()

import argparse
import os
import queue
import socket
import struct
import threading

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from serving import nvtx    # shared scaffolding (examples/serving.py)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.half if DEV == "cuda" else torch.float32
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"
ROWS, D, DEPTH, VIEWS = (64, 1024, 24, 32) if not SMOKE else (2, 16, 1, 2)
LOOKUP_S = 0.004            # the store's lookup time per query


def _recv_exact(conn, n):
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = conn.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("feature store closed the connection")
        got += k
    return buf


def feature_store(server: socket.socket):
    """Answer each 4-byte key with ROWS x D float32 features after LOOKUP_S (one client, until it disconnects)."""
    conn, _ = server.accept()
    rng = np.random.default_rng(0)
    table = [rng.standard_normal((ROWS, D), dtype=np.float32).tobytes() for _ in range(8)]
    with conn:
        while True:
            try:
                key = struct.unpack("!I", _recv_exact(conn, 4))[0]
            except ConnectionError:
                return
            time.sleep(LOOKUP_S)
            conn.sendall(table[key % 8])


def fetch(conn, key):
    conn.sendall(struct.pack("!I", key))
    return np.frombuffer(_recv_exact(conn, ROWS * D * 4), np.float32).reshape(ROWS, D)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(D)
        self.fc1 = nn.Linear(D, 4 * D)
        self.fc2 = nn.Linear(4 * D, D)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


def infer(model, feats):
    x = torch.from_numpy(feats).to(DEV).to(DTYPE)
    x = x.repeat(VIEWS, 1) * torch.linspace(0.5, 1.5, VIEWS * ROWS, device=DEV, dtype=DTYPE)[:, None]
    return model(x).float().view(VIEWS, ROWS, D).mean((0, 2)).cpu()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (prefetch thread)")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=feature_store, args=(server,), daemon=True).start()
    conn = socket.create_connection(server.getsockname())
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    torch.manual_seed(0)
    model = nn.Sequential(*[Block() for _ in range(DEPTH)]).to(DEV).eval().to(DTYPE)
    total = args.warmup + args.requests
    ready: queue.Queue = queue.Queue(maxsize=1)

    def prefetch():
        for i in range(total):
            ready.put(fetch(conn, i))

    with torch.inference_mode():
        if DEV == "cuda":
            torch.cuda.profiler.start()      # nsys --capture-range=cudaProfilerApi records from here (warm-up on)
        if args.fixed:
            threading.Thread(target=prefetch, daemon=True).start()
        t0 = None
        for i in range(total):
            if i == args.warmup:
                if DEV == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            with nvtx("handle"):
                feats = ready.get() if args.fixed else fetch(conn, i)
                infer(model, feats)
        if DEV == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if DEV == "cuda":
            torch.cuda.profiler.stop()       # ... to here: the served requests, not start-up and exit
    conn.close()
    variant = "fixed" if args.fixed else "slow"
    print(f"socket_fetch [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)


if __name__ == "__main__":
    main()
