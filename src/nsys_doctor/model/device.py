"""Documented constants of GPU models, looked up by the device name the profile records (trace.meta["gpus"]).

Used where a fix's effect cannot be measured in the profile that shows the problem (the fixed code path never ran):
the tensor-core speed-up of a CUDA-core FP32 GEMM, the pinned host link rate when every copy was pageable; and for
what GPU metrics do not say (a copy's rate against its DRAM or host link peak; the profile's own
TARGET_INFO_GPU.memoryBandwidth is used first where it is recorded). Each number names its source; an unknown GPU
gets None and the caller keeps its conservative default.
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
# The same links as PEAKS' host link column below, as a copy reaches them: PEAKS holds the theoretical peak per
# direction (Gen5 x16 64 GB/s: the ceiling a measured rate is compared with), this the rate a pinned copy achieves
# (55 of 64 on H100, 86%): the one a fix is replayed at. A GPU added to one table belongs in the other.
PINNED_LINK_GBPS = ((r"H100|H200|H800|GH200", 55.0), (r"A100|A800|L40|\bL4\b|\bA10\b", 25.0))

# name pattern -> (DRAM GB/s, host link GB/s per direction). Source: NVIDIA's product datasheets (H200: 4.8 TB/s,
# H100 SXM 3.35 / PCIe 2.0 TB/s, A100 80GB 2.04 / 40GB 1.56 TB/s, L40S 864, L4 300, A10 600, T4 320, V100 900,
# RTX 4090 1008, RTX 3090 936 GB/s) and the PCIe generation each uses (Gen5 x16 64, Gen4 x16 32, Gen3 x16 16 GB/s
# per direction, theoretical; the rate a pinned copy achieves on the same link is PINNED_LINK_GBPS above). First
# match wins: longer names first.
PEAKS = (
    (r"H200", 4800.0, 64.0), (r"H100.*PCIe", 2000.0, 64.0), (r"H100", 3350.0, 64.0), (r"GH200", 4000.0, 64.0),
    (r"A100.*80GB", 2039.0, 32.0), (r"A100", 1555.0, 32.0), (r"L40S", 864.0, 32.0), (r"L40", 864.0, 32.0),
    (r"\bL4\b", 300.0, 32.0), (r"A10\b", 600.0, 32.0), (r"T4\b", 320.0, 16.0), (r"V100", 900.0, 16.0),
    (r"RTX 4090", 1008.0, 32.0), (r"RTX 3090", 936.0, 32.0),
)


def _row(table, name):
    """The first row of a (pattern, values...) table whose pattern is found in the GPU name, else None."""
    return next((r for r in table if re.search(r[0], str(name or ""))), None)


def _lookup(table, names) -> float | None:
    for name in names or ():
        if row := _row(table, name):
            return float(row[1])
    return None


def gpu_names(trace) -> list[str]:
    return [g.get("name") for g in trace.meta.get("gpus", []) if isinstance(g, dict) and g.get("name")]


def tensor_core_speedup(trace) -> float | None:
    """BF16 tensor-core peak over FP32 CUDA-core peak of the profile's GPU, None when the model is not known."""
    return _lookup(TENSOR_CORE_SPEEDUP, gpu_names(trace))


def pinned_link_gbps(trace) -> float | None:
    """Pinned copy rate of the profile's GPU host link, None when the model is not known."""
    return _lookup(PINNED_LINK_GBPS, gpu_names(trace))


def peaks(gpu: dict) -> dict:
    """{'dram_GBps', 'link_GBps', 'source'} for a profile's GPU entry (name, memory_bandwidth_Bps); a value is None
    when neither the profile nor the table knows it; 'source' says where each came from."""
    row = _row(PEAKS, gpu.get("name"))
    dram, src = (row[1], "DRAM peak from the datasheet table") if row else (None, None)
    bw = gpu.get("memory_bandwidth_Bps")
    if bw:
        dram, src = float(bw) / 1e9, "DRAM peak from the profile (TARGET_INFO_GPU.memoryBandwidth)"
    if row:
        src = (src + "; " if src else "") + "host link from the datasheet table (PCIe generation, per direction)"
    return {"dram_GBps": dram, "link_GBps": row[2] if row else None, "source": src}
