"""Bottleneck: a transformer encoder served in strict FP32 (TF32 off): its matmuls run on the CUDA cores.

    python3 examples/encoder_fp32.py            # slow: fp32 weights and activations, TF32 off
    python3 examples/encoder_fp32.py --fixed    # fast: the model converted to bf16 once

The model is a 6-layer BERT-large-width encoder (nn.TransformerEncoder: d_model 1024, 16 heads, feed-forward 4096,
pre-norm) over a batch of 16 sequences of 256 tokens per request, then mean pooling and a classifier; each request
is one NVTX range named `forward`.

WHAT IS WRONG (default variant)
    `torch.backends.cuda.matmul.allow_tf32 = False` and fp32 weights ("the reference model is fp32, so the service
    is too"): every projection and feed-forward matmul is an FP32 SGEMM on the CUDA cores, a fraction of what the
    tensor cores do in bf16, and attention runs in fp32 as well. The request is GPU-bound on kernels whose names
    say fp32 (`sgemm`, `..._f32...`).

WHY THE FIX WORKS (--fixed)
    `model.to(torch.bfloat16)` once: the matmuls run in bf16 on the tensor cores, attention picks its bf16 kernels,
    and every activation is half the bytes. bf16 keeps fp32's exponent range, so inference needs no loss scaling.
    Before serving, the program prints how far the bf16 logits are from the fp32 ones.

EXAMPLES_SMOKE=1 shrinks the sizes so the code can be checked on a CPU-only PyTorch; it measures nothing.
"""
import time

_T_START = time.perf_counter()

import argparse
import os

import torch
import torch.nn as nn

from serving import nvtx, serve_timed    # shared scaffolding (examples/serving.py)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"
BATCH, SEQ, D, HEADS, FF, LAYERS = (16, 256, 1024, 16, 4096, 6) if not SMOKE else (2, 8, 32, 4, 64, 2)


class Classifier(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        layer = nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(D, classes)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


def serve(model, x_host, dtype):
    with nvtx("forward"):
        x = x_host.to(DEV, non_blocking=True).to(dtype)
        return model(x).float().softmax(-1).cpu()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (bf16 weights)")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    if DEV == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False     # BAD: "match the fp32 reference" (the fix is bf16)
        torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = Classifier().to(DEV).eval()
    dtype = torch.float32
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(BATCH, SEQ, D, generator=g) for _ in range(2)]
    if DEV == "cuda":
        inputs = [x.pin_memory() for x in inputs]
    with torch.inference_mode():
        if args.fixed:   # how far bf16 is from fp32 on one batch (outside the requests)
            ref = model(inputs[0][:2].to(DEV)).float()
            model = model.to(torch.bfloat16)
            dtype = torch.bfloat16
            low = model(inputs[0][:2].to(DEV).to(dtype)).float()
            rel = ((low - ref).norm() / ref.norm()).item()
            print(f"encoder_fp32: bf16 logits vs fp32, relative difference {rel:.4f}", flush=True)
        dt = serve_timed(lambda i: serve(model, inputs[i % 2], dtype), args.warmup, args.requests)
    variant = "fixed" if args.fixed else "slow"
    print(f"encoder_fp32 [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)


if __name__ == "__main__":
    main()
