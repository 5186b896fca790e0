"""Documented constants of GPU models, looked up by the device name the profile records (trace.meta["gpus"]).

Used where a fix's effect cannot be measured in the profile that shows the problem (the fixed code path never ran):
the tensor-core speed-up of a CUDA-core FP32 GEMM, the pinned host link rate when every copy was pageable. Each
number names its source; an unknown GPU gets None and the caller keeps its conservative default.
"""
from __future__ import annotations

import re

# Dense BF16 tensor-core peak / FP32 CUDA-core peak, TFLOP/s, from NVIDIA's data sheets (SXM parts where several):
# H100/H200 989 / 67, A100 312 / 19.5, L40S 362 / 91.6, L4 121 / 30.3, A10 125 / 31.2, V100 (FP16) 125 / 15.7,
# T4 (FP16) 65 / 8.1. tests/data ex_mixed (H100, strict FP32 -> bf16 autocast + TF32) measured a 4.7x shorter run
# with 51.9 of 65.8 ms saved; replaying its CUDA-core GEMMs at 67/989 of their time predicts 1.0x of that saving.
TENSOR_CORE_SPEEDUP = ((r"H100|H200|H800|GH200", 989 / 67), (r"A100|A800", 312 / 19.5), (r"L40", 362 / 91.6),
                       (r"\bL4\b", 121 / 30.3), (r"\bA10\b", 125 / 31.2), (r"V100", 125 / 15.7),
                       (r"\bT4\b", 65 / 8.1))
# Pinned host<->device copy rate of the GPU's host link, GB/s: PCIe Gen5 x16 (H100, H200): 55 GB/s, the best pinned
# rate in the zoo's healthy profile (H100, 256 MiB copies); PCIe Gen4 x16 (A100, L40S, L4, A10): ~25 GB/s
# (half of Gen5, as diagnose/memory_transfer.py's notes say); Grace Hopper's NVLink-C2C is faster still, 55 is a floor.
PINNED_LINK_GBPS = ((r"H100|H200|H800|GH200", 55.0), (r"A100|A800|L40|\bL4\b|\bA10\b", 25.0))


def _lookup(table, names) -> float | None:
    for name in names or ():
        for pat, v in table:
            if re.search(pat, str(name or "")):
                return float(v)
    return None


def gpu_names(trace) -> list[str]:
    return [g.get("name") for g in trace.meta.get("gpus", []) if isinstance(g, dict) and g.get("name")]


def tensor_core_speedup(trace) -> float | None:
    """BF16 tensor-core peak over FP32 CUDA-core peak of the profile's GPU, None when the model is not known."""
    return _lookup(TENSOR_CORE_SPEEDUP, gpu_names(trace))


def pinned_link_gbps(trace) -> float | None:
    """Pinned copy rate of the profile's GPU host link, None when the model is not known."""
    return _lookup(PINNED_LINK_GBPS, gpu_names(trace))
