"""Bottleneck: precision. Full-fp32 matrix multiplies run on CUDA cores and leave the tensor cores idle.

    python3 examples/mixed_precision.py            # slow: fp32 everywhere, TF32 off (PyTorch's matmul default)
    python3 examples/mixed_precision.py --fixed    # fast: bf16 autocast (+ TF32 for whatever stays fp32)
    python3 examples/mixed_precision.py --tf32     # in between: fp32 tensors, TF32 tensor-core maths

A text-embedding service: a BERT-base-sized encoder (12 layers, width 768, 12 heads, MLP 3072) over a batch of
128 sequences of 128 tokens per request, then mean pooling and a small classification head.

WHAT IS WRONG (default variant)
    The weights and activations are fp32 and TF32 is off (for matmuls that is PyTorch's default; cuDNN
    convolutions default to TF32 on, which this variant also turns off). cuBLAS must then compute exact fp32
    products, which only the CUDA cores can do: on an H100 that is ~60 TFLOP/s at best, against ~500+ for the
    tensor cores in TF32 and ~1000 in bf16/fp16. A GEMM-heavy model runs several times slower than it could.
    In the profile: the GPU is busy, and the top kernels are SGEMMs (names like 'sgemm', 'gemm ... f32' /
    'cutlass ... simt', not 'tf32', 'bf16', 'h16816', 'wgmma') that dominate every 'Inference' range.

WHY THE FIX WORKS (--fixed)
    torch.autocast(device_type="cuda", dtype=torch.bfloat16) runs matmuls, linear layers and attention in bf16
    (on the tensor cores, with half the memory traffic) while keeping numerically sensitive ops (softmax inside
    attention, LayerNorm reductions, losses) in fp32. The model's fp32 weights stay as they are. bf16 has fp32's
    exponent range, so unlike fp16 it needs no loss scaling and does not overflow; its 8-bit mantissa is ample
    for inference of most models (check your own accuracy metric). Enabling TF32 as well covers any matmul that
    autocast leaves in fp32. --tf32 alone is the smallest change (one line, fp32 tensors kept, ~10-bit mantissa
    inputs with fp32 accumulation) and already moves the GEMMs onto tensor cores.
"""
import time

_T_START = time.perf_counter()

import argparse
import contextlib

import torch
import torch.nn as nn

DEV = "cuda"
BATCH, SEQ, VOCAB, D, LAYERS, HEADS = 128, 128, 30522, 768, 12, 12


@contextlib.contextmanager
def nvtx(name):
    torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        torch.cuda.nvtx.range_pop()


def set_tf32(enabled):
    """Allow (or forbid) TF32 tensor-core maths for fp32 matmuls and convolutions."""
    mode = "tf32" if enabled else "ieee"
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):   # PyTorch >= 2.9 API
        torch.backends.cuda.matmul.fp32_precision = mode
        torch.backends.cudnn.conv.fp32_precision = mode
    else:                                                        # older PyTorch
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


class TextEncoder(nn.Module):
    def __init__(self, classes=16):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D)
        self.pos = nn.Parameter(torch.randn(1, SEQ, D) * 0.02)
        layer = nn.TransformerEncoderLayer(D, HEADS, 4 * D, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(D, classes)

    def embed(self, ids):
        return self.tok(ids) + self.pos

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="bf16 autocast + TF32")
    ap.add_argument("--tf32", action="store_true", help="only allow TF32 (fp32 tensors kept)")
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    set_tf32(args.fixed or args.tf32)            # the slow variant pins the strict-fp32 setting explicitly
    use_bf16 = args.fixed
    torch.manual_seed(0)
    model = TextEncoder().to(DEV).eval()         # fp32 weights in every variant
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, VOCAB, (BATCH, SEQ), generator=g).pin_memory() for _ in range(4)]

    def serve(i):
        with nvtx("Inference"):
            # autocast is a no-op when disabled, so both variants share this code path.
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
                with nvtx("preprocess"):
                    x = model.embed(batches[i % len(batches)].to(DEV, non_blocking=True))
                with nvtx("infer"):
                    logits = model(x)
                with nvtx("postprocess"):
                    return logits.float().softmax(-1).argmax(-1).cpu()

    with torch.inference_mode():
        for i in range(args.warmup):
            serve(i)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(args.requests):
            serve(i)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    variant = "fixed (bf16 autocast + tf32)" if args.fixed else ("tf32" if args.tf32 else "slow (strict fp32)")
    print(f"mixed_precision [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)


if __name__ == "__main__":
    main()
