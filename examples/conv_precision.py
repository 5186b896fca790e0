"""Bottleneck: a convolutional network served in strict FP32 (TF32 off): cuDNN runs it on the CUDA cores.

    python3 examples/conv_precision.py            # slow: fp32 weights and activations, cudnn.allow_tf32 = False
    python3 examples/conv_precision.py --fixed    # fast: bf16 weights and activations + channels-last

The model is a ResNet-style network (stem, 4 stages of bottleneck blocks, 64..512 channels, 29 convolutions)
over a batch of 128 images of 224 x 224, one batch per request.

WHAT IS WRONG (default variant)
    The service sets `torch.backends.cudnn.allow_tf32 = False` "so GPU results match the CPU reference" and keeps
    the model in fp32. Every convolution is then an FP32 implicit GEMM on the CUDA cores (on an H100/H200 about
    67 TFLOP/s peak in the datasheet, against ~990 dense for bf16 on the tensor cores), and every activation is 4
    bytes wide. The request is GPU-bound on convolution kernels whose names say fp32 (`..._f32f32_f32f32_...`,
    `implicit_convolve_sgemm`, `fprop_..._f32`): the tensor cores do nothing.

WHY THE FIX WORKS (--fixed)
    The model is converted to bf16 once (`model.to(torch.bfloat16)`), so the convolutions and the head run in
    bf16 on the tensor cores and activations are half the bytes; channels-last (NHWC) memory lets cuDNN pick its
    tensor-core kernels without layout transposes. bf16 keeps fp32's exponent range, so no loss scaling or
    calibration is needed for inference. (`torch.autocast` does the same per op but casts the fp32 weights again
    in every forward: at batch 32 that doubled the kernels per request and made it launch-bound, slower than
    fp32, in a first recording; examples/mixed_precision.py shows autocast on an encoder.)
    Before serving, the program prints how far the bf16 logits are from the fp32 ones on 8 images.

MEASURED (H200, under nsys, tests/data/ex_convprec_*): 24.26 ms/request slow vs 7.56 fixed; slow: the fp32
    implicit-GEMM convolutions take 13.7 ms of each request.

EXAMPLES_SMOKE=1 shrinks the sizes so the code can be checked on a CPU-only PyTorch; it measures nothing.
"""
import time

_T_START = time.perf_counter()

import argparse
import contextlib
import os

import torch
import torch.nn as nn

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"   # tiny sizes, to check on a CPU that the code runs: no measurement
BATCH, HW, WIDTH = (128, 224, 64) if not SMOKE else (1, 32, 8)
BLOCKS = (2, 2, 2, 2)


@contextlib.contextmanager
def nvtx(name):
    if DEV == "cuda":
        torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        if DEV == "cuda":
            torch.cuda.nvtx.range_pop()


class Bottleneck(nn.Module):
    def __init__(self, cin, mid, cout, stride):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if cin == cout and stride == 1 else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


class ResNetish(nn.Module):
    def __init__(self):
        super().__init__()
        w = WIDTH
        self.stem = nn.Sequential(nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1))
        layers, cin = [], w
        for i, n in enumerate(BLOCKS):
            mid = w * 2 ** i
            for j in range(n):
                layers.append(Bottleneck(cin, mid, mid * 4, stride=2 if j == 0 and i > 0 else 1))
                cin = mid * 4
        self.stages = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 1000)

    def forward(self, x):
        return self.head(self.stages(self.stem(x)).mean((2, 3)))


def serve(model, x_host, fixed):
    with nvtx("Inference"):
        with nvtx("preprocess"):
            x = x_host.to(DEV, non_blocking=True)
            if fixed:   # GOOD: bf16, channels-last input for a bf16 channels-last model
                x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        with nvtx("infer"):
            logits = model(x)   # slow: strict fp32 on the CUDA cores; fixed: bf16 on the tensor cores
        with nvtx("postprocess"):
            top = logits.float().softmax(-1).topk(5)
            return top.indices.cpu(), logits.float()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (bf16 autocast, channels-last)")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    if DEV == "cuda":
        torch.backends.cudnn.allow_tf32 = False        # BAD: "match the CPU exactly" (kept in both: the fix is bf16)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True          # both variants: pick the fastest kernel per shape
    torch.manual_seed(0)
    model = ResNetish().to(DEV).eval()
    model32 = model
    if args.fixed:
        model = ResNetish().to(DEV).eval()
        model.load_state_dict(model32.state_dict())
        model = model.to(torch.bfloat16).to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(BATCH, 3, HW, HW, generator=g) for _ in range(2)]
    if DEV == "cuda":
        inputs = [x.pin_memory() for x in inputs]
    with torch.inference_mode():
        if args.fixed:   # how far bf16 is from fp32 on one batch (outside the requests)
            ref = model32(inputs[0][:8].to(DEV)).float()
            low = model(inputs[0][:8].to(DEV).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)).float()
            del model32
            rel = ((low - ref).norm() / ref.norm()).item()
            print(f"conv_precision: bf16 logits vs fp32, relative difference {rel:.4f}", flush=True)
        if DEV == "cuda":
            torch.cuda.profiler.start()      # nsys --capture-range=cudaProfilerApi records from here (warm-up on)
        for i in range(args.warmup):
            serve(model, inputs[i % 2], args.fixed)
        if DEV == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(args.requests):
            serve(model, inputs[i % 2], args.fixed)
        if DEV == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if DEV == "cuda":
            torch.cuda.profiler.stop()       # ... to here: the served requests, not start-up and exit
    variant = "fixed" if args.fixed else "slow"
    print(f"conv_precision [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)


if __name__ == "__main__":
    main()
