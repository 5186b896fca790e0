"""Bottleneck: the memory-bound element-wise work around a gated MLP's matmuls, each op a separate pass over DRAM.

    python3 examples/gated_mlp_fusion.py            # slow: eager PyTorch, RMSNorm and SiLU-gate as separate ops
    python3 examples/gated_mlp_fusion.py --fixed    # fast: torch.compile fuses them (the matmuls stay cuBLAS)

An LLM-style feed-forward stack (4 blocks of RMSNorm -> gate/up projection 2048 -> 2 x 5632 -> SiLU(gate) * up ->
down projection -> residual) in bf16 over 16384 tokens per request (a prefill batch). Each request is one NVTX range
named `prefill`.

WHAT IS WRONG (default variant)
    RMSNorm written as `x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps) * w` and the gate as
    `F.silu(h[..., :H]) * h[..., H:]` are each several element-wise kernels, and every one reads and writes a whole
    activation tensor (64-370 MB) from DRAM: the GPU is busy, but much of that time is spent in kernels running at
    the DRAM's bandwidth limit that do almost no arithmetic (in the profile: `vectorized_elementwise_kernel`,
    `reduce_kernel` and friends between the GEMMs, at high DRAM throughput in the GPU metrics).

WHY THE FIX WORKS (--fixed)
    torch.compile (TorchInductor) fuses each chain of element-wise ops and the reduction into one generated kernel
    that reads its inputs once and writes its output once; the matmuls are left to cuBLAS. Same arithmetic, a
    fraction of the DRAM traffic.

EXAMPLES_SMOKE=1 shrinks the sizes so the code can be checked on a CPU-only PyTorch; it measures nothing.
"""
import time

_T_START = time.perf_counter()

import argparse
import os

os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")   # compile in-process: no worker processes at exit

import torch
import torch.nn as nn
import torch.nn.functional as F

from serving import nvtx, serve_timed    # shared scaffolding (examples/serving.py)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.bfloat16 if DEV == "cuda" else torch.float32
SMOKE = os.environ.get("EXAMPLES_SMOKE") == "1"
TOKENS, D, H, DEPTH = (16384, 2048, 5632, 4) if not SMOKE else (8, 16, 24, 1)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(D))
        self.gate_up = nn.Linear(D, 2 * H, bias=False)
        self.down = nn.Linear(H, D, bias=False)

    def forward(self, x):
        n = x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype) * self.w    # RMSNorm
        h = self.gate_up(n)
        return x + self.down(F.silu(h[..., :H]) * h[..., H:])


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(DEPTH))

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixed", action="store_true", help="run the fixed variant (torch.compile)")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    torch.manual_seed(0)
    model = Stack().to(DEV).eval().to(DTYPE)
    fn = torch.compile(model) if args.fixed else model           # GOOD (fixed): fused element-wise chains
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(TOKENS, D, generator=g) for _ in range(2)]
    if DEV == "cuda":
        inputs = [x.pin_memory() for x in inputs]

    def serve(x_host):
        with nvtx("prefill"):
            y = fn(x_host.to(DEV, non_blocking=True).to(DTYPE))
            return y[-1].float().cpu()        # the last token's state goes back

    with torch.inference_mode():
        for i in range(args.warmup):                              # first one compiles, in the fixed variant
            serve(inputs[i % 2])
        if DEV == "cuda":
            torch.cuda.synchronize()
        # the capture range from here (compiled), with two more warm-up requests inside it
        dt = serve_timed(lambda i: serve(inputs[i % 2]), 2, args.requests)
    variant = "fixed" if args.fixed else "slow"
    print(f"gated_mlp_fusion [{variant}]: {args.requests} requests in {dt:.3f}s "
          f"({dt / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)


if __name__ == "__main__":
    main()
