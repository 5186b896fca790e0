"""CUDA API names as nsys records them, and the families the model and the diagnoses ask about.

nsys appends the API version (`cudaLaunchKernel_v7000`) and the per-thread default-stream mark (`_ptsz`, `_ptds`)
to runtime names; driver names mostly come bare (`cuLaunchKernel`). Compare base names, written once here.
"""
from __future__ import annotations

import re

# Explicit host waits for GPU work (runtime and driver spellings): prefixes of base names.
SYNC_CALLS = ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize", "cudaThreadSynchronize",
              "cuCtxSynchronize", "cuStreamSynchronize", "cuEventSynchronize")

_SUFFIX = re.compile(r"(_v\d+)?(_ptsz|_ptds)?(_v\d+)?$")


def base_name(name: str) -> str:
    """`cudaMemcpyAsync_ptsz_v7000` -> `cudaMemcpyAsync`."""
    return _SUFFIX.sub("", name)
