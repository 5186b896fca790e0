"""Bottleneck: model loading inside every request. The handler reads the weights from disk and uploads them each time.

    python3 examples/model_reload.py            # slow: torch.load of a 270 MB checkpoint + .to('cuda') per request
    python3 examples/model_reload.py --fixed    # fast: the model is loaded once and stays resident on the GPU

The model is an 8-layer MLP of width 2048 (plus a 16384 x 2048 embedding-like input projection), fp32 weights:
about 270 MB on disk. A request is a batch of 512 inputs (well under a millisecond of GPU work).

WHAT IS WRONG (default variant)
    The request handler builds the model from its checkpoint each time ("stateless" handler, a per-request model
    factory, a cache that never hits): `torch.load` reads 270 MB from the file (page cache here; a disk or network
    file system would be slower still), the module is assembled, and `.to('cuda')` uploads every tensor from
    pageable host memory. That costs ~100 ms per request for well under 1 ms of inference. In the profile: inside
    every `Inference` range, a `load_model` phase with file `read` calls of ~270 MB in total, followed by host-to-
    device copies of ~270 MB (pageable), and only then the few kernels of `infer`.

WHY THE FIX WORKS (--fixed)
    The weights do not change between requests: load them once at start-up, keep the model resident on the GPU,
    and let requests only run it. (If models must be swapped, cache them by name, keep the hot ones on the GPU, and
    load in the background, not in the request.)
"""
import time

_T_START = time.perf_counter()

import argparse
import contextlib
import os
import tempfile

import torch
import torch.nn as nn

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"   # tiny sizes, to check on a CPU that the code runs: no measurement
VOCAB, WIDTH, DEPTH, BATCH = (16384, 2048, 8, 512) if not SMOKE else (64, 32, 2, 4)


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
        self.proj = nn.Linear(VOCAB, WIDTH)
        self.layers = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(DEPTH))
        self.head = nn.Linear(WIDTH, 10)

    def forward(self, x):
        x = self.proj(x)
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.head(x)


def load_model(path):
    """Build the model from its checkpoint: read the file, assemble the module, upload it to the GPU."""
    state = torch.load(path, map_location="cpu")            # reads the whole file
    with torch.device("meta"):
        model = Model()                                     # no random init: the weights come from the file
    model.load_state_dict(state, assign=True)
    return model.to(DEV).eval()                             # pageable host -> device copies of every tensor


def infer(model, x_host):
    with nvtx("infer"):
        x = x_host.to(DEV, non_blocking=True)
        y = model(x)
    with nvtx("postprocess"):
        return y.argmax(-1).cpu()


def serve_slow(path, x_host):
    with nvtx("Inference"):
        with nvtx("load_model"):
            model = load_model(path)                        # BAD: the same weights again, from disk, every request
        return infer(model, x_host)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (model loaded once, resident)")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(BATCH, VOCAB, generator=g) for _ in range(2)]
    if DEV == "cuda":
        inputs = [x.pin_memory() for x in inputs]
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        path = os.path.join(folder, "model.pt")
        torch.save(Model().state_dict(), path)              # the checkpoint a training job left behind
        if args.fixed:
            resident = load_model(path)                     # GOOD: once, at start-up

            def serve(x_host):
                with nvtx("Inference"):
                    return infer(resident, x_host)
        else:
            def serve(x_host):
                return serve_slow(path, x_host)
        for i in range(args.warmup):
            serve(inputs[i % 2])
        if DEV == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(args.requests):
            serve(inputs[i % 2])
        if DEV == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        size_mb = os.path.getsize(path) / 1e6
    variant = "fixed" if args.fixed else "slow"
    print(f"model_reload [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); checkpoint {size_mb:.0f} MB; "
          f"program wall time {time.perf_counter() - _T_START:.2f}s", flush=True)


if __name__ == "__main__":
    main()
