"""Peak numbers of a GPU from its name, for what GPU metrics do not say (a copy's rate against its link or DRAM).
The profile's own TARGET_INFO_GPU.memoryBandwidth is used first where it is recorded."""
from __future__ import annotations

import re

# name pattern -> (DRAM GB/s, host link GB/s per direction). Source: NVIDIA's product datasheets (H200: 4.8 TB/s,
# H100 SXM 3.35 / PCIe 2.0 TB/s, A100 80GB 2.04 / 40GB 1.56 TB/s, L40S 864, L4 300, A10 600, T4 320, V100 900,
# RTX 4090 1008, RTX 3090 936 GB/s) and the PCIe generation each uses (Gen5 x16 64, Gen4 x16 32, Gen3 x16 16 GB/s
# per direction, theoretical). First match wins: longer names first.
PEAKS = (
    (r"H200", 4800.0, 64.0), (r"H100.*PCIe", 2000.0, 64.0), (r"H100", 3350.0, 64.0), (r"GH200", 4000.0, 64.0),
    (r"A100.*80GB", 2039.0, 32.0), (r"A100", 1555.0, 32.0), (r"L40S", 864.0, 32.0), (r"L40", 864.0, 32.0),
    (r"\bL4\b", 300.0, 32.0), (r"A10\b", 600.0, 32.0), (r"T4\b", 320.0, 16.0), (r"V100", 900.0, 16.0),
    (r"RTX 4090", 1008.0, 32.0), (r"RTX 3090", 936.0, 32.0),
)


def peaks(gpu: dict) -> dict:
    """{'dram_GBps', 'link_GBps', 'source'} for a profile's GPU entry (name, memory_bandwidth_Bps); a value is None
    when neither the profile nor the table knows it; 'source' says where each came from."""
    name = str(gpu.get("name") or "")
    row = next((r for r in PEAKS if re.search(r[0], name)), None)
    dram, src = (row[1], "DRAM peak from the datasheet table") if row else (None, None)
    bw = gpu.get("memory_bandwidth_Bps")
    if bw:
        dram, src = float(bw) / 1e9, "DRAM peak from the profile (TARGET_INFO_GPU.memoryBandwidth)"
    if row:
        src = (src + "; " if src else "") + "host link from the datasheet table (PCIe generation, per direction)"
    return {"dram_GBps": dram, "link_GBps": row[2] if row else None, "source": src}
