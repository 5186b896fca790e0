"""What a fix does to the trace, declared as data: the vocabulary of a diagnosis's `change(measurement)`.

A diagnosis measures a bottleneck, words a finding, and states its fix as a list of these changes, each naming the
rows of the trace it touches (row indices into the table named, as the model holds it). Nothing here applies a
change: the replay of the requests (a dependency graph of the measured window, issue 16) reads them and predicts
the latency and request interval after the fix. Keep the vocabulary small: a new fix should be said in these words,
and a new kind is added here, once, with the replay's rule for it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RemoveHostWaits:
    """These host waits (api_calls rows: synchronize calls, blocking copies) no longer block the calling thread:
    the thread goes on as soon as the call itself would return without waiting for the GPU.
    `read_calls`: the api_calls rows of the host reads these waits end, which the fix drops with their waits: they
    take no time (the wait calls themselves, the small device-to-host copy call that fed a wait, an event record;
    the copies they launched and the CPU dispatch before them are stated as ScaleGpuWork and RemoveCpuTime)."""
    api_rows: np.ndarray
    read_calls: np.ndarray | None = None


@dataclass(frozen=True)
class ScaleGpuWork:
    """These GPU operations (rows of `table`: kernels, copies, ...) take `factor` x their measured duration
    (one factor, or one per row)."""
    table: str
    rows: np.ndarray
    factor: float | np.ndarray


@dataclass(frozen=True)
class ShortenGpuWork:
    """These GPU operations (rows of `table`) take `by_ns` less each (never below zero): a wait inside the
    operation, such as a collective waiting for the slowest rank, removed."""
    table: str
    rows: np.ndarray
    by_ns: np.ndarray


@dataclass(frozen=True)
class CopiesAtRate:
    """These copies (copies rows) move their bytes at `gbps` (one rate, or one per row) and, where `overlap` is
    set, run on a side stream, free to overlap the request's compute: from/to pinned buffers, their calls only
    enqueue (a staged pageable copy's CPU time goes), and a device-to-host copy is still waited for by its call."""
    rows: np.ndarray
    gbps: float | np.ndarray
    overlap: bool = True


@dataclass(frozen=True)
class GraphLaunches:
    """These kernel launch calls (api_calls rows) are replaced by one CUDA graph launch per request: each request's
    kernels run back to back on the GPU, paying one graph launch's measured cost instead of one launch per kernel."""
    api_rows: np.ndarray


@dataclass(frozen=True)
class RemoveCpuTime:
    """These CPU intervals of these threads (parallel arrays) are removed from the request's critical path: done
    by another worker ahead of time, prefetched, or not done at all."""
    tid: np.ndarray
    start_ns: np.ndarray
    end_ns: np.ndarray


@dataclass(frozen=True)
class MoveOutOfRequests:
    """These GPU operations (rows of `table`) and the CPU intervals that prepared them run before the requests
    (a model kept resident, loaded ahead): the requests no longer wait for them."""
    table: str
    rows: np.ndarray
    tid: np.ndarray
    start_ns: np.ndarray
    end_ns: np.ndarray


@dataclass(frozen=True)
class FuseKernels:
    """These kernels (kernels rows) are fused: each chain of them (`chain`: each row's chain id, consecutive kernels
    of one stream) becomes one kernel taking `fused_ns[chain]` of GPU time, launched once. The launch calls of all
    but each chain's first member (api_calls rows `launch_rows`) and the CPU dispatch before them (the intervals
    `tid`, `start_ns`, `end_ns`: the framework's per-op work between two launches) leave their thread."""
    rows: np.ndarray
    chain: np.ndarray
    fused_ns: np.ndarray
    launch_rows: np.ndarray
    tid: np.ndarray
    start_ns: np.ndarray
    end_ns: np.ndarray


@dataclass(frozen=True)
class OwnStreams:
    """The GPU work these threads launch onto a stream they share goes on a stream of each thread's own: one
    thread's work, and its waits, no longer queue behind another thread's (a CUDA stream per worker thread)."""
    tid: np.ndarray


Change = RemoveHostWaits | ScaleGpuWork | ShortenGpuWork | CopiesAtRate | GraphLaunches | RemoveCpuTime \
    | MoveOutOfRequests | FuseKernels | OwnStreams
# every kind a diagnosis may state; the replay handles each (a test checks every diagnosis's changes are among them)
CHANGE_KINDS = (RemoveHostWaits, ScaleGpuWork, ShortenGpuWork, CopiesAtRate, GraphLaunches, RemoveCpuTime,
                MoveOutOfRequests, FuseKernels, OwnStreams)
