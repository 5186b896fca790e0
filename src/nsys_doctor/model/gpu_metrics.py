"""GPU metric samples (nsys --gpu-metrics-devices): which metric is which, their values while given work ran, and
per kernel name from the samples that land on its instances.

Measured on ex_fusion_before / healthy (2 kHz): a sample at time t reads the period [t, t + period] (its correlation
with the kernels' coverage of that window is 0.999 / 0.988, against 0.94 / 0.73 for [t - period, t])."""
from __future__ import annotations

import numpy as np

from ..errors import room_to_map
from .intervals import covered, points_inside, union
from .trace import Trace

# The unmixing's least squares is nsys-doctor's one BLAS call. OpenBLAS maps a buffer for each thread on that thread's
# first call and ends the process (exit 1, no Python error) when it cannot: seen at `ulimit -v` 300 MB on zoo
# launch_bound, on a diagnosis thread (tests/robustness/test_hostile_readers.py). With less room than this left under
# the limit the fit is not tried (undetermined, as with too few samples: the per-name average stands); OpenBLAS's
# buffer is 32 MB plus its guard pages on x86-64 (its BUFFER_SIZE), with room to spare for the fit's own arrays.
BLAS_HEADROOM_BYTES = 128 << 20


def metric_ids(trace: Trace, prefix: str) -> list[int]:
    """Metric ids whose name starts with `prefix` (ids differ per GPU and nsys version; names do not)."""
    names = trace.meta.get("gpu_metric_names") or {}
    return [int(i) for i, n in names.items() if str(n).startswith(prefix)]


def metric_during(trace: Trace, prefix: str, start: np.ndarray, end: np.ndarray) -> float | None:
    """Mean of the first metric named `prefix...` over its samples taken while any of the intervals ran; None when
    not recorded or no sample falls inside."""
    ts, v = series(trace, prefix)
    if len(ts) == 0:
        return None
    inside = points_inside(ts, *union(start, end))
    return float(v[inside].mean()) if inside.any() else None


def series(trace: Trace, prefix: str, gpu: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(times, values) of the first metric named `prefix...` (on `gpu` when given), in time order; empty when not
    recorded."""
    ids = metric_ids(trace, prefix)
    if not ids or "gpu_metrics" in trace.absent:
        return np.zeros(0, np.int64), np.zeros(0)
    g = trace.table("gpu_metrics")
    sel = g["metric"] == ids[0]
    if gpu is not None:
        sel &= g["gpu"] == gpu
    ts, v = g["start_ns"][sel], g["value"][sel].astype(np.float64)
    o = np.argsort(ts, kind="stable")
    return ts[o], v[o]


def running_at(start: np.ndarray, end: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """For each sample time: the row of the interval (start, end) running at it (the latest started), or -1.
    Kernels of one device rarely overlap; where they do, the one started last is taken."""
    if len(start) == 0 or len(ts) == 0:
        return np.full(len(ts), -1, np.int64)
    o = np.argsort(start, kind="stable")
    j = np.searchsorted(start[o], ts, side="right") - 1
    row = o[np.maximum(j, 0)]
    return np.where((j >= 0) & (end[row] > ts), row, -1)


def per_name(sample_row: np.ndarray, values: np.ndarray, group: np.ndarray, n_groups: int) -> tuple[np.ndarray,
                                                                                                     np.ndarray]:
    """Samples attributed to the kernel running at their timestamp, aggregated per group (kernel name) across all
    its instances: (mean value per group (nan without samples), samples per group). `sample_row`: running_at's
    rows; `group`: each kernel row's group, or -1 for rows not judged. Most inference kernels are shorter than one
    sample period (2 kHz: 500 us), so no single instance has a sample of its own; across hundreds of instances the
    samples that land on a name measure it (each sample averages the period after its timestamp: the kernel at the
    timestamp and the ones that follow it)."""
    ok = sample_row >= 0
    grp = np.full(len(sample_row), -1, np.int64)
    grp[ok] = group[sample_row[ok]]
    ok = grp >= 0
    n = np.bincount(grp[ok], minlength=n_groups)
    s = np.bincount(grp[ok], weights=values[ok], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan), n


def unmixed_per_name(start: np.ndarray, end: np.ndarray, group: np.ndarray, n_groups: int, ts: np.ndarray,
                     values: np.ndarray, period: float) -> dict | None:
    """Each group's (kernel name's) own rate of a metric, unmixed from the samples' windows: a sample reads the mean
    over [t, t + period], so it is the sum over the groups of (the share of that window the group's kernels ran) x
    (the group's rate), plus the other kernels' share x their rate and the idle share x the idle rate. Solved by
    least squares over every sample whose window holds some kernel. Unlike per_name, the kernels that follow one in
    the window are not counted as its own: a request period locked to the sample period (ex_lnfuse_before: 1.44 ms
    requests, 3 samples each, always at the same phases) otherwise reads one name always together with the same
    neighbours and the idle gap. Returns {'rate', 'se' (standard error from the residual), 'windows' (sample
    periods of the group's own run time inside the samples used), 'rms' (residual), 'samples'} per group (arrays),
    or None when the fit is undetermined (fewer samples than columns)."""
    return unmixed_per_names(start, end, group, n_groups, [(ts, values)], period)[0]


def unmixed_per_names(start: np.ndarray, end: np.ndarray, group: np.ndarray, n_groups: int, series: list,
                      period: float) -> list:
    """unmixed_per_name of several metrics' samples (ts, values) over the same kernels, one result each: each
    group's union is built once, measured against every metric's windows and dropped (launch_bound x40, 4.9M
    kernels: 0.1-0.2 s less per metric than a union per metric, and no more unions held at once)."""
    windows = [(ts.astype(np.int64), (ts + period).astype(np.int64)) if len(ts) and period > 0 else None
               for ts, _ in series]
    cols: list[list] = [[] for _ in series]
    if any(w is not None for w in windows):
        for j in list(range(n_groups)) + [-1, None]:      # the names, the rest, then all kernels (busy)
            if j is None:
                u = union(start, end)
            else:
                sel = group == j if j >= 0 else group < 0
                u = union(start[sel], end[sel])
            for c, w in zip(cols, windows):
                if w is not None:
                    c.append(covered(*u, *w) / period)
            del u
    return [None if w is None else _unmix(c[:-1], c[-1], values, n_groups)
            for c, w, (_, values) in zip(cols, windows, series)]


def _unmix(cols: list, busy: np.ndarray, values: np.ndarray, n_groups: int) -> dict | None:
    """unmixed_per_name's least squares, from each group's share of each sample window and the busy share."""
    cols = cols + [np.clip(1.0 - busy, 0.0, 1.0)]
    a = np.array(cols).T
    use = busy > 0
    a, v = a[use], values[use].astype(np.float64)
    live = a.sum(axis=0) > 0                    # a column with no coverage stays out (rate undetermined: nan)
    if use.sum() <= live.sum():
        return None
    if room_to_map() < BLAS_HEADROOM_BYTES:
        return None
    x, *_ = np.linalg.lstsq(a[:, live], v, rcond=None)
    res = v - a[:, live] @ x
    s2 = float(res @ res) / (len(v) - live.sum())
    se = np.sqrt(np.maximum(np.diag(s2 * np.linalg.pinv(a[:, live].T @ a[:, live])), 0.0))
    rate, err = np.full(a.shape[1], np.nan), np.full(a.shape[1], np.inf)
    rate[live], err[live] = x, se
    return {"rate": rate[:n_groups], "se": err[:n_groups], "windows": a.sum(axis=0)[:n_groups],
            "rms": float(np.sqrt(res @ res / len(v))), "samples": int(use.sum())}
