"""Per-kernel-name totals inside the measured requests, and synchronisations per request: what `diff` matches.

The Report keeps these in `requests["kernels"]` and `requests["syncs_per_request"]` so that two saved reports can
be compared kernel by kernel without their profiles.
"""
from __future__ import annotations

import numpy as np

from .model.requests import Requests, sync_name_ids
from .model.trace import Trace
from .model.arrays import uniq
from .model.intervals import union

MS = 1e6
KERNEL_NAMES_MAX = 200   # the heaviest names kept in the Report; LLM profiles carry thousands of names whose
                         # tail adds < 1% of GPU time and would bloat the saved JSON
# API calls that block the calling thread until GPU work finishes (runtime and driver spellings)
SYNC_CALLS = ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize", "cuCtxSynchronize",
              "cuStreamSynchronize", "cuEventSynchronize")


def dense_groups(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(ids, return_inverse=True) for non-negative integer ids of modest range (string ids, small enums):
    a bincount and a lookup table instead of a sort (np.unique's argsort costs ~0.3 s on 5M kernel rows)."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu" or ids.ndim != 1 or len(ids) == 0:
        return np.unique(ids, return_inverse=True)
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi > 4 * len(ids) + (1 << 20):
        return np.unique(ids, return_inverse=True)
    present = np.bincount(ids, minlength=hi + 1) > 0
    lut = np.cumsum(present) - 1
    return np.flatnonzero(present).astype(ids.dtype), lut[ids]


def distinct_ids(ids: np.ndarray) -> np.ndarray:
    """uniq(ids) (sorted distinct values) for non-negative integer ids of modest range, through a bincount."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu" or ids.ndim != 1 or len(ids) == 0:
        return uniq(ids)
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi > 4 * len(ids) + (1 << 20):
        return uniq(ids)
    return np.flatnonzero(np.bincount(ids, minlength=hi + 1)).astype(ids.dtype)


def id_mask(values: np.ndarray, ids) -> np.ndarray:
    """np.isin(values, ids) for non-negative integer ids of modest range, through a lookup table."""
    values = np.asarray(values)
    ids = np.asarray(ids, np.int64).ravel()
    if len(values) == 0 or len(ids) == 0:
        return np.zeros(len(values), bool)
    if values.dtype.kind not in "iu":
        return np.isin(values, ids)
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi > 4 * len(values) + (1 << 20):
        return np.isin(values, ids)
    lut = np.zeros(hi + 1, bool)
    lut[ids[(ids >= 0) & (ids <= hi)]] = True
    return lut[values]


def sorted_union(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """intervals.union, skipping its sort when the starts are already in order (nsys writes tables so)."""
    if len(start) < 2 or not bool((start[1:] >= start[:-1]).all()):
        return union(start, end)
    e = np.maximum.accumulate(end)
    new = np.empty(len(start), bool)
    new[0] = True
    new[1:] = start[1:] > e[:-1]
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, len(start) - 1]
    return start[first], e[last]


def _measured_mask(req: Requests, request_of: np.ndarray) -> np.ndarray:
    return request_of >= req.warmup      # requests are indexed in start order, warm-up first; -1 is outside


def kernel_summary(trace: Trace, req: Requests) -> list[dict]:
    """Per kernel name: launches, total GPU time inside measured requests, and both per measured request.
    Heaviest first, at most KERNEL_NAMES_MAX names."""
    n = len(req.measured)
    names: list[str] = []
    totals, counts = [], []
    for table, label in (("kernels", None), ("graphs", "CUDA graph {}")):
        # graphs traced as a whole (nsys --cuda-graph-trace=graph) have no kernel rows: one name per graph id
        g = trace.table(table)
        request_of = req.gpu_request.get(table, np.zeros(0, np.int64))
        if n == 0 or len(request_of) == 0:
            continue
        inside = _measured_mask(req, request_of)
        ids = (g["name_id"] if label is None else g["graph_id"])[inside]
        uniq, inv = dense_groups(ids)
        dur = (g["end_ns"][inside] - g["start_ns"][inside]).astype(np.float64)
        names += [trace.name(u) if label is None else label.format(int(u)) for u in uniq]
        totals.append(np.bincount(inv, weights=dur, minlength=len(uniq)))
        counts.append(np.bincount(inv, minlength=len(uniq)))
    if not names:
        return []
    total, count = np.concatenate(totals), np.concatenate(counts)
    order = np.argsort(-total, kind="stable")[:KERNEL_NAMES_MAX]
    return [{"name": names[i], "count": int(count[i]),
             "per_request": round(float(count[i]) / n, 2),
             "total_ms": round(float(total[i]) / MS, 4),
             "per_request_ms": round(float(total[i]) / MS / n, 4)} for i in order]


def syncs_per_request(trace: Trace, req: Requests) -> float:
    """Mean number of blocking synchronisation calls made inside a measured request."""
    api = trace.table("api_calls")
    n = len(req.measured)
    if n == 0 or len(req.api_request) == 0:
        return 0.0
    sync = id_mask(api["name_id"], sync_name_ids(trace, SYNC_CALLS)) & _measured_mask(req, req.api_request)
    return round(float(sync.sum()) / n, 2)
