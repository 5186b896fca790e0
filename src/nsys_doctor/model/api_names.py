"""CUDA API names as nsys records them, and the families the model and the diagnoses ask about.

nsys appends the API version (`cudaLaunchKernel_v7000`) and the per-thread default-stream mark (`_ptsz`, `_ptds`)
to runtime names; driver names mostly come bare (`cuLaunchKernel`). Compare base names, written once here.
"""
from __future__ import annotations

import re

# Explicit host waits for GPU work (runtime and driver spellings): prefixes of base names.
SYNC_CALLS = ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize", "cudaThreadSynchronize",
              "cuCtxSynchronize", "cuStreamSynchronize", "cuEventSynchronize")

# Device and pinned-host memory allocation and release (runtime, driver, stream-ordered and virtual memory management
# forms): prefixes of base names. What a caching allocator or a memory pool keeps out of the request path.
ALLOC_CALLS = ("cudaMalloc", "cudaFree", "cudaHostAlloc", "cudaHostRegister", "cudaHostUnregister",
               "cuMemAlloc", "cuMemFree", "cuMemHostAlloc", "cuMemHostRegister", "cuMemHostUnregister",
               "cuMemCreate", "cuMemRelease", "cuMemMap", "cuMemUnmap", "cuMemSetAccess", "cuMemAddressReserve",
               "cuMemAddressFree")
# Frees that wait for the device (CUDA runtime docs: cudaFree and cudaFreeHost synchronise implicitly; the driver's
# cuMemFree likewise): exact base names, so the stream-ordered ...Async forms are not among them.
FREE_WAIT_CALLS = ("cudaFree", "cudaFreeHost", "cudaFreeArray", "cudaFreeMipmappedArray", "cuMemFree",
                   "cuMemFreeHost")
# Non-blocking completion checks: a loop of them (torch.cuda.Event.query() spun until True) is a host wait.
QUERY_CALLS = ("cudaEventQuery", "cudaStreamQuery", "cuEventQuery", "cuStreamQuery")

_SUFFIX = re.compile(r"(_v\d+)?(_ptsz|_ptds)?(_v\d+)?$")


def base_name(name: str) -> str:
    """`cudaMemcpyAsync_ptsz_v7000` -> `cudaMemcpyAsync`."""
    return _SUFFIX.sub("", name)
