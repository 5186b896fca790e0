"""Bottleneck: a debug log line per layer that formats a GPU value, so every layer waits for the GPU.

    python3 examples/debug_logging.py            # slow: log.debug("... %.3f", x.norm()) after every layer
    python3 examples/debug_logging.py --fixed    # fast: the norms stay on the GPU, logged once per request

A ViT-Base-style image encoder (patch embedding, 12 transformer layers of width 768, 12 heads) in fp16 over a batch
of 32 images of 224 x 224 (197 tokens each) per request; the service's logger is at DEBUG level. Each request is one
NVTX range named `encode`.

WHAT IS WRONG (default variant)
    `log.debug("layer %d activation norm %.3f", i, x.norm())`: with DEBUG on, the message is formatted, and "%.3f" of
    a CUDA tensor calls float() on it: a device-to-host copy of one value and a synchronize, after every layer. The
    CPU stops queueing work until the GPU has finished the layer, then the GPU idles while Python launches the next
    layer (in the profile: a small device-to-host copy and a cudaStreamSynchronize per layer inside every `encode`
    range, and gaps on the GPU after each).

WHY THE FIX WORKS (--fixed)
    The norms are computed as before but kept on the GPU (a list of 0-d tensors), stacked and read once at the end of
    the request, when its result is read anyway: one wait per request instead of twelve, and the CPU queues the
    layers ahead of the GPU. (Or: leave DEBUG off in production; lazy logging does not help, the argument is the
    tensor and formatting it is the sync.)

EXAMPLES_SMOKE=1 shrinks the sizes so the code can be checked on a CPU-only PyTorch; it measures nothing.
"""
import time

_T_START = time.perf_counter()

import argparse
import logging
import os

import torch
import torch.nn as nn

from serving import nvtx, serve_timed    # shared scaffolding (examples/serving.py)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.half if DEV == "cuda" else torch.float32
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"
BATCH, HW, PATCH, D, HEADS, LAYERS = (32, 224, 16, 768, 12, 12) if not SMOKE else (1, 32, 16, 32, 4, 2)

log = logging.getLogger("encoder")


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, D, PATCH, PATCH)
        self.cls = nn.Parameter(torch.zeros(1, 1, D))
        self.pos = nn.Parameter(torch.zeros(1, (HW // PATCH) ** 2 + 1, D))
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(D, HEADS, 4 * D, dropout=0.0, batch_first=True,
                                                               norm_first=True) for _ in range(LAYERS))
        self.norm = nn.LayerNorm(D)

    def forward(self, img, fixed):
        x = self.patch(img).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos
        norms = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if fixed:
                norms.append(x.norm())                                       # stays on the GPU
            else:
                log.debug("layer %d activation norm %.3f", i, x.norm())     # BAD: float() of a GPU value
        return self.norm(x[:, 0]), norms


def serve(model, img_host, fixed):
    with nvtx("encode"):
        emb, norms = model(img_host.to(DEV, non_blocking=True).to(DTYPE), fixed)
        out = emb.float().cpu()
        if norms:
            log.debug("activation norms %s", torch.stack(norms).float().cpu().tolist())   # one read, at the end
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (norms read once per request)")
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    # DEBUG on, written to /dev/null: a handler that formats (a NullHandler never formats the message, so the first
    # recording of this program, 2026-12-02, planted no sync at all: tests/data/README.md "Blind pairs")
    logging.basicConfig(level=logging.DEBUG, handlers=[logging.StreamHandler(open(os.devnull, "w"))])
    torch.manual_seed(0)
    model = Encoder().to(DEV).eval().to(DTYPE)
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(BATCH, 3, HW, HW, generator=g) for _ in range(2)]
    if DEV == "cuda":
        inputs = [x.pin_memory() for x in inputs]
    with torch.inference_mode():
        dt = serve_timed(lambda i: serve(model, inputs[i % 2], args.fixed), args.warmup, args.requests)
    variant = "fixed" if args.fixed else "slow"
    print(f"debug_logging [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)


if __name__ == "__main__":
    main()
