"""GPU metric samples (nsys --gpu-metrics-devices): which metric is which, and their values while given work ran."""
from __future__ import annotations

import numpy as np

from .intervals import points_inside, union
from .trace import Trace


def metric_ids(trace: Trace, prefix: str) -> list[int]:
    """Metric ids whose name starts with `prefix` (ids differ per GPU and nsys version; names do not)."""
    names = trace.meta.get("gpu_metric_names") or {}
    return [int(i) for i, n in names.items() if str(n).startswith(prefix)]


def metric_during(trace: Trace, prefix: str, start: np.ndarray, end: np.ndarray) -> float | None:
    """Mean of the first metric named `prefix...` over its samples taken while any of the intervals ran; None when
    not recorded or no sample falls inside."""
    ids = metric_ids(trace, prefix)
    if not ids or "gpu_metrics" in trace.absent:
        return None
    g = trace.table("gpu_metrics")
    sel = g["metric"] == ids[0]
    if not sel.any():
        return None
    ts, v = g["start_ns"][sel], g["value"][sel].astype(np.float64)
    o = np.argsort(ts, kind="stable")
    us, ue = union(start, end)
    inside = points_inside(ts[o], us, ue)
    return float(v[o][inside].mean()) if inside.any() else None
