"""Bottleneck: a TorchScript model loaded from disk onto the GPU inside every request.

    python3 examples/jit_reload.py            # slow: torch.jit.load(path, map_location="cuda") per request
    python3 examples/jit_reload.py --fixed    # fast: loaded once at start-up, the same module reused

A scripted 6-block MLP (2048 -> 4096 -> 2048, fp16, ~100 MB of weights) saved with torch.jit.save at start-up, then
served over batches of 256 rows. Each request is one NVTX range named `score`, with `load` and `run` inside it.

WHAT IS WRONG (default variant)
    The handler calls `torch.jit.load(MODEL_PATH, map_location="cuda")` for every request ("so a new model file is
    picked up at once"): the archive is read from disk (the page cache, after the first time), deserialised on the
    CPU and every weight uploaded to the GPU again, before a few milliseconds of actual inference (in the profile:
    file reads and ~100 MB of host-to-device copies inside every `score` range, most of the request).

WHY THE FIX WORKS (--fixed)
    The module is loaded once, at start-up, and stays resident on the GPU; a request only runs it. (To pick up new
    versions, reload in the background when the file changes and swap the reference.)

EXAMPLES_SMOKE=1 shrinks the sizes so the code can be checked on a CPU-only PyTorch; it measures nothing.
"""
import time

_T_START = time.perf_counter()

import argparse
import os
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

from serving import nvtx, serve_timed    # shared scaffolding (examples/serving.py)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.half if DEV == "cuda" else torch.float32
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"
ROWS, D, DEPTH = (256, 2048, 6) if not SMOKE else (2, 16, 1)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(D, 2 * D)
        self.fc2 = nn.Linear(2 * D, D)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(x)))


class Scorer(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(*[Block() for _ in range(DEPTH)])
        self.out = nn.Linear(D, 1)

    def forward(self, x):
        return self.out(self.blocks(x)).squeeze(-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (loaded once)")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    torch.manual_seed(0)
    work = tempfile.mkdtemp(prefix="jit_reload-")
    path = os.path.join(work, "scorer.pt")
    torch.jit.save(torch.jit.script(Scorer().to(DTYPE).eval()), path)     # the deployed artefact
    resident = torch.jit.load(path, map_location=DEV) if args.fixed else None
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(ROWS, D, generator=g) for _ in range(2)]
    if DEV == "cuda":
        inputs = [x.pin_memory() for x in inputs]

    def serve(x_host):
        with nvtx("score"):
            with nvtx("load"):
                model = resident if args.fixed else torch.jit.load(path, map_location=DEV)   # BAD when per request
            with nvtx("run"):
                return model(x_host.to(DEV, non_blocking=True).to(DTYPE)).float().topk(min(8, ROWS)).indices.cpu()

    with torch.inference_mode():
        dt = serve_timed(lambda i: serve(inputs[i % 2]), args.warmup, args.requests)
    os.remove(path)
    os.rmdir(work)
    variant = "fixed" if args.fixed else "slow"
    print(f"jit_reload [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)


if __name__ == "__main__":
    main()
