"""Per-kernel-name totals inside the measured requests, and synchronisations per request: what `diff` matches.

The Report keeps these in `requests["kernels"]` and `requests["syncs_per_request"]` so that two saved reports can
be compared kernel by kernel without their profiles.
"""
from __future__ import annotations

import numpy as np

from ..model.api_names import SYNC_CALLS
from ..model.projection import sync_name_ids
from ..model.requests import Requests
from ..model.trace import Trace
from ..model.arrays import dense_groups, id_mask

MS = 1e6
KERNEL_NAMES_MAX = 200   # the heaviest names kept in the Report; LLM profiles carry thousands of names whose
                         # tail adds < 1% of GPU time and would bloat the saved JSON


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
