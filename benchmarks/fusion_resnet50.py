"""The real fix behind memory_bandwidth's prediction on the zoo's `healthy` profile (ResNet-50 fp16, batch 256,
channels-last, eager): the same model eager and under torch.compile (TorchInductor fuses each BatchNorm with the ReLU
and residual add after it; no CUDA graphs), time per batch by the program's own clock. Needs a GPU, torch and
torchvision; prints the share of the time the fusion saved.

Measured on an H200 (torch 2.11, 2026-12-02): eager 15.13 ms/batch, compiled 9.19 ms/batch: 39% saved. Where it went
(torch.profiler, GPU time per batch): the convolutions/GEMMs 4.41 -> 4.39 ms (54 kernels, unchanged); BatchNorm 4.91
+ elementwise 4.47 + max-pool 0.83 ms (225 kernels) -> 3.97 ms in 50 fused Triton kernels: all of the saving is the
fusion of the chains memory_bandwidth finds. The replay of healthy (recorded on an H100) predicts 29%
(analysis/predict.py: each chain fused as long as its longest member, mostly the BatchNorm: the fused kernels here are
shorter still).

usage: python benchmarks/fusion_resnet50.py
"""
import os
import time

os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "8")

import torch  # noqa: E402
import torchvision  # noqa: E402


def bench(f, x, n=40) -> float:
    """ms per batch over n batches after 5 warm-up ones."""
    with torch.inference_mode():
        for _ in range(5):
            f(x)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(n):
            f(x)
        torch.cuda.synchronize()
        return (time.perf_counter() - t) / n * 1e3


def main() -> None:
    torch.backends.cudnn.benchmark = True
    m = torchvision.models.resnet50().cuda().half().eval().to(memory_format=torch.channels_last)
    x = torch.randn(256, 3, 224, 224, device="cuda").half().to(memory_format=torch.channels_last)
    eager = bench(m, x)
    print(f"eager {eager:.3f} ms/batch", flush=True)
    compiled = bench(torch.compile(m), x)          # compiles during the warm-up batches
    print(f"torch.compile {compiled:.3f} ms/batch: {100 * (eager - compiled) / eager:.0f}% saved", flush=True)


if __name__ == "__main__":
    main()
