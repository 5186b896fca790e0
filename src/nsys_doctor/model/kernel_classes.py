"""What kind of work a kernel is, from its name and launch size: the classes a GPU-bound run's time is broken into.
Names only (no words for users): `classify` returns one of CLASSES."""
from __future__ import annotations

import re

import numpy as np

CLASSES = ("tensor_core_matmul", "cuda_core_matmul", "memory_bound", "communication", "small", "other")

# CUDA-core fp32 GEMM/conv kernels of cuBLAS, cuDNN and CUTLASS (names seen in fp32_gemm / memcpy_pageable and the
# standard library names): sgemm, *_ffma_*, xmma f32f32_f32f32 without tf32, scudnn, gemmSN, simt
CUDA_CORE = re.compile(r"sgemm|_ffma|ffma_|f32f32_f32f32|scudnn|gemmsn|cutlass.*simt|implicit_convolve_sgemm")
# tensor-core paths: any of these in the name means the kernel already uses tensor cores (healthy: xmma f16f16,
# nvjet_sm90_hsh, hmma tensor1688; standard: h884/h1688/s1688 tf32, tensorop, wgmma, imma, bf16, i8)
TENSOR_CORE = re.compile(r"tf32|h884|h1688|s1688|s16816|h16816|i8816|hmma|imma|tensorop|wgmma|gmma|tensor\d|"
                         r"f16|bf16|e4m3|e5m2|nvjet|i8i8|int8|fp8")
# matrix multiplies and convolutions whatever their precision (cuBLAS, cuDNN, CUTLASS, nvjet, Triton mm templates)
MATMUL = re.compile(r"gemm|xmma|nvjet|cutlass|conv|fprop|dgrad|wgrad|matmul|_mm_|bmm|fmha|flash|attention|sdpa")
# kernels whose work is a pass over memory: elementwise, reductions, gathers/scatters, norms, softmax, copies and
# fills of PyTorch/ATen, cuDNN and Triton (pointwise / reduction); ex_fusion_before and membw_bound's kernels
MEMORY = re.compile(r"elementwise|pointwise|reduce|reduction|norm|softmax|gather|scatter|index|cat_|concat|"
                    r"transpose|permute|copy|fill|memset|pad|pool|upsample|embedding|triton_poi|triton_red|"
                    r"triton_per|unrolled|vectorized|batch_norm|layer_norm|rms")
COLLECTIVE = re.compile(r"nccl|allreduce|all_reduce|allgather|reducescatter|sendrecv|broadcast")
SMALL_BLOCKS_PER_SM = 1.0   # fewer thread blocks than SMs cannot fill the device (132 SMs on H100/H200)


def classify(name: str, grid: int, sm_count: int | None) -> str:
    """One of CLASSES for a kernel launch: its name first; a launch of fewer blocks than the GPU has SMs is `small`
    unless it is a collective (NCCL kernels run one block per channel by design)."""
    low = name.lower()
    if COLLECTIVE.search(low):
        return "communication"
    if sm_count and 0 < grid < SMALL_BLOCKS_PER_SM * sm_count:     # grid <= 0: not recorded (some Kineto traces)
        return "small"
    if MATMUL.search(low) or CUDA_CORE.search(low):
        if CUDA_CORE.search(low) and not TENSOR_CORE.search(low):
            return "cuda_core_matmul"
        return "tensor_core_matmul"
    if MEMORY.search(low):
        return "memory_bound"
    return "other"


def classify_rows(name_text, name_id: np.ndarray, grid: np.ndarray, sm_count: int | None) -> np.ndarray:
    """classify() per kernel row, as indices into CLASSES (each distinct name and size class classified once);
    name_text(id) -> the kernel's name."""
    small = ((grid > 0) & (grid < SMALL_BLOCKS_PER_SM * sm_count)) if sm_count else np.zeros(len(grid), bool)
    key = name_id.astype(np.int64) * 2 + small
    keys, inv = np.unique(key, return_inverse=True)
    cls = np.array([CLASSES.index(classify(name_text(int(x // 2)), 1 if x % 2 else 1 << 30, sm_count))
                    for x in keys], np.int64)
    return cls[inv] if len(keys) else np.zeros(0, np.int64)
