"""Tensor-parallel inference over NCCL on 2 GPUs, balanced or not.

    NCCL_NVLS_ENABLE=0 torchrun --nproc_per_node=2 examples/distributed/tp_inference.py               # balanced
    NCCL_NVLS_ENABLE=0 torchrun --nproc_per_node=2 examples/distributed/tp_inference.py --unbalanced  # one rank slow

Each request is a batch of tokens through a stack of Megatron-style MLP blocks: the first matrix is split by
columns, the second by rows, so each block ends with an all-reduce (torch.distributed, NCCL) that sums the ranks'
partial outputs. Every rank marks each request with an NVTX range `Inference`.

WHAT IS WRONG (--unbalanced)
    The feed-forward width is split 1:3 instead of 1:1 (as when a layer's shards are cut by hand or one GPU also
    serves another model): rank 1 does three times rank 0's matrix work per block. An all-reduce can finish only
    when every rank has contributed, so rank 0's NCCL kernel starts early and spins, waiting for rank 1, in every
    block. In the profile: rank 0's ncclDevKernel_AllReduce kernels are long and start well before rank 1's; both
    end together.

WHY THE FIX WORKS (default, balanced)
    Equal shards give every rank the same work, so all ranks reach each all-reduce together and the collective
    takes only its transfer time: the request's latency is the slowest rank's work, which balancing lowers.
"""
import time

_T_START = time.perf_counter()

import argparse
import os

import torch
import torch.distributed as dist

os.environ.setdefault("NCCL_NVLS_ENABLE", "0")   # no NVLink multicast on shared hosts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--unbalanced", action="store_true", help="split the feed-forward width 1:3 between the ranks")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=8192)
    ap.add_argument("--ffn", type=int, default=16384)
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()

    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    rank, world = dist.get_rank(), dist.get_world_size()
    share = [1] * world
    if args.unbalanced:
        share[-1] = 3                                  # the last rank gets three times the others' columns
    cols = args.ffn * share[rank] // sum(share)
    torch.manual_seed(rank)
    dt = torch.bfloat16
    w1 = [torch.randn(args.hidden, cols, device="cuda", dtype=dt) * 0.01 for _ in range(args.layers)]
    w2 = [torch.randn(cols, args.hidden, device="cuda", dtype=dt) * 0.01 for _ in range(args.layers)]
    x0 = torch.randn(args.tokens, args.hidden, device="cuda", dtype=dt)

    def request(i):
        torch.cuda.nvtx.range_push("Inference")
        x = x0 * (1.0 + 0.001 * i)
        for a, b in zip(w1, w2):
            h = torch.nn.functional.gelu(x @ a)        # column-parallel
            y = h @ b                                  # row-parallel: partial sums
            dist.all_reduce(y)                         # sum over ranks (waits for the slowest rank)
            x = x + y
        out = float(x[0, :8].float().sum())            # the result reaches the host: one sync per request
        torch.cuda.nvtx.range_pop()
        return out

    with torch.inference_mode():
        for i in range(args.warmup):
            request(i)
        torch.cuda.synchronize()
        dist.barrier()
        t0 = time.perf_counter()
        for i in range(args.requests):
            request(args.warmup + i)
        torch.cuda.synchronize()
        el = time.perf_counter() - t0
    variant = "unbalanced" if args.unbalanced else "balanced"
    print(f"tp_inference [{variant}] rank {rank}/{world} ffn cols {cols}: {args.requests} requests in {el:.3f}s "
          f"({el / args.requests * 1e3:.2f} ms/request); program wall time {time.perf_counter() - _T_START:.2f}s",
          flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
