"""CUDA API names as nsys records them, and the families the model and the diagnoses ask about.

nsys appends the API version (`cudaLaunchKernel_v7000`) and the per-thread default-stream mark (`_ptsz`, `_ptds`)
to runtime names; driver names mostly come bare (`cuLaunchKernel`). Compare base names, written once here.
"""
from __future__ import annotations

import re

import numpy as np

from .arrays import uniq

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
# Waits on one event (an event recorded to be waited on): the event-synchronize members of SYNC_CALLS.
EVENT_SYNC_CALLS = ("cudaEventSynchronize", "cuEventSynchronize")
# Non-blocking completion checks: a loop of them (torch.cuda.Event.query() spun until True) is a host wait.
QUERY_CALLS = ("cudaEventQuery", "cudaStreamQuery", "cuEventQuery", "cuStreamQuery")
EVENT_RECORD_CALLS = ("cudaEventRecord", "cuEventRecord")   # base names by prefix (cudaEventRecordWithFlags too)
# A CUDA graph replayed with one call (launch_overhead counts them; the replay takes their median as a graph's cost).
GRAPH_LAUNCH_CALLS = ("cudaGraphLaunch", "cuGraphLaunch")

_SUFFIX = re.compile(r"(_v\d+)?(_ptsz|_ptds)?(_v\d+)?$")


def base_name(name: str) -> str:
    """`cudaMemcpyAsync_ptsz_v7000` -> `cudaMemcpyAsync`."""
    return _SUFFIX.sub("", name)


def name_ids(trace, ids: np.ndarray, pred) -> np.ndarray:
    """The distinct string ids among `ids` whose CUDA API base name satisfies `pred` (each name judged once)."""
    ids = uniq(ids[ids >= 0]) if len(ids) else np.zeros(0, np.int64)
    return np.array([i for i in ids if pred(base_name(trace.name(i)))], np.int64)
