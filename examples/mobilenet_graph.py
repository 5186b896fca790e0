"""Bottleneck: a small CNN served at batch 1 in eager mode: each request is ~150 tiny kernels, launched one by one.

    python3 examples/mobilenet_graph.py            # slow: eager PyTorch, one launch per op
    python3 examples/mobilenet_graph.py --fixed    # fast: the forward captured once in a CUDA graph, replayed

The model is a MobileNetV2-style network (stem, 17 inverted-residual blocks of 1x1 expand -> 3x3 depthwise ->
1x1 project, BatchNorm and ReLU6 after each conv, a pooled classifier) in fp16 over one 3 x 160 x 160 image per
request, the way an edge-style classifier is served online. Each request is one NVTX range named `request`.

WHAT IS WRONG (default variant)
    At batch 1 every convolution, BatchNorm and activation is a kernel of a few microseconds, while PyTorch's
    dispatcher plus cudaLaunchKernel costs the CPU longer than that per op. The GPU finishes each kernel before the
    next one is launched and idles in between: the request's latency is set by how fast one Python thread can
    launch, not by the GPU (in the profile: ~150 kernels per request of a few us each, the GPU idle most of the
    request, the request thread on the CPU all of it).

WHY THE FIX WORKS (--fixed)
    The forward is captured once into a CUDA graph on static input/output buffers (torch.cuda.graph) and each
    request copies its image into the static input and replays the graph: one cudaGraphLaunch instead of ~150
    launches and no Python dispatch between kernels, so the GPU runs the kernels back to back. The result is read
    as before (softmax, top-5, one copy to the host).

EXAMPLES_SMOKE=1 shrinks the sizes so the code can be checked on a CPU-only PyTorch; it measures nothing.
"""
import time

_T_START = time.perf_counter()

import argparse
import os

import torch
import torch.nn as nn

from serving import capture_graph, nvtx, serve_timed    # shared scaffolding (examples/serving.py)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.half if DEV == "cuda" else torch.float32     # fp16 on the GPU
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"
HW = 160 if not SMOKE else 32
# (expansion, output channels, repeats, stride) per stage, as in MobileNetV2
STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def conv_bn(cin, cout, k, stride, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, 1, 1)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, 1, act=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetish(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        blocks, cin = [conv_bn(3, 32, 3, 2)], 32
        for expand, cout, repeats, stride in STAGES:
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        blocks.append(conv_bn(cin, 1280, 1, 1))
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(1280, classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def make_server(model, fixed):
    """-> serve(image_on_host) -> (top-5 classes, probabilities) on the host."""
    if not fixed or DEV != "cuda":
        def serve(x_host):
            with nvtx("request"):
                logits = model(x_host.to(DEV, non_blocking=True).to(DTYPE))
                top = logits.float().softmax(-1).topk(5)
                return top.indices.cpu(), top.values.cpu()
        return serve
    static_in = torch.zeros(1, 3, HW, HW, device=DEV, dtype=DTYPE)
    graph, static_out = capture_graph(lambda: model(static_in))

    def serve(x_host):
        with nvtx("request"):
            static_in.copy_(x_host.to(DEV, non_blocking=True))     # fp32 -> fp16 into the graph's input
            graph.replay()
            top = static_out.float().softmax(-1).topk(5)
            return top.indices.cpu(), top.values.cpu()
    return serve


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (CUDA graph replay)")
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()

    if DEV == "cuda":
        torch.backends.cudnn.benchmark = True      # both variants: the fastest kernel per shape
    torch.manual_seed(0)
    model = MobileNetish().to(DEV).eval()
    model = model.to(DTYPE)
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(1, 3, HW, HW, generator=g) for _ in range(4)]
    if DEV == "cuda":
        inputs = [x.pin_memory() for x in inputs]
    with torch.inference_mode():
        serve = make_server(model, args.fixed)
        dt = serve_timed(lambda i: serve(inputs[i % 4]), args.warmup, args.requests)
    variant = "fixed" if args.fixed else "slow"
    print(f"mobilenet_graph [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)


if __name__ == "__main__":
    main()
