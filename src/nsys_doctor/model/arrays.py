"""Array helpers that numpy does slowly for our shapes.

`np.unique(x)` without return_* options takes a hash-based path in numpy 2.3+ that is ~15x slower than sorting on
millions of distinct int64 ids (2.3 s vs 0.14 s for 2.4M correlation keys, measured on launch_bound x10).
"""
from __future__ import annotations

import math

import numpy as np

from .intervals import union


def uniq(a) -> np.ndarray:
    """Sorted distinct values of a 1-d array (np.unique's result, through a plain sort)."""
    a = np.asarray(a)
    if a.dtype.kind not in "iufb" or a.ndim != 1:
        return np.unique(a)
    if len(a) == 0:
        return a.copy()
    s = np.sort(a, kind="stable")
    keep = np.empty(len(s), bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def median(a, overwrite: bool = False) -> float:
    """float(np.median(a)) of a 1-d numeric array (NaN when empty or when it holds a NaN), by one partition.
    np.median's NaN check imports numpy.ma: 10 ms of a 0.4 s command. `overwrite`: partition `a` in place."""
    a = np.asarray(a)
    n = len(a)
    if n == 0 or (a.dtype.kind == "f" and bool(np.isnan(a).any())):
        return float("nan")
    lo_k, hi_k = (n - 1) // 2, n // 2
    if not overwrite:
        a = a.copy()
    a.partition([lo_k, hi_k] if lo_k != hi_k else hi_k)
    return float(a[hi_k]) if lo_k == hi_k else (float(a[lo_k]) + float(a[hi_k])) / 2


def percentiles(a, qs) -> list[float]:
    """[float(np.percentile(a, q)) for q in qs] for a non-empty 1-d array without NaN: numpy's default (linear)
    method with its very float operations, from one sort. np.percentile imports numpy.ma (10 ms of a 0.4 s command)."""
    s = np.sort(np.asarray(a, np.float64))
    n = len(s)
    out = []
    for q in qs:
        vi = (n - 1) * (q / 100)
        if vi >= n - 1:
            out.append(float(s[-1]))
            continue
        lo = max(int(math.floor(vi)), 0)
        t = vi - math.floor(vi)
        x, y = float(s[lo]), float(s[lo + 1])
        d = y - x
        out.append(y - d * (1 - t) if t >= 0.5 else x + d * t)
    return out


def dense_groups(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(ids, return_inverse=True) for non-negative integer ids of modest range (string ids, small enums):
    a bincount and a lookup table instead of a sort (np.unique's argsort costs ~0.3 s on 5M kernel rows)."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu" or ids.ndim != 1 or len(ids) == 0:
        return np.unique(ids, return_inverse=True)
    lo, hi = int(ids.min()), int(ids.max())
    if hi - lo > 4 * len(ids) + (1 << 20):
        return np.unique(ids, return_inverse=True)
    off = ids - lo if lo else ids        # -1 (a missing column's default) and other small negatives
    present = np.bincount(off, minlength=hi - lo + 1) > 0
    lut = np.cumsum(present) - 1
    return (np.flatnonzero(present) + lo).astype(ids.dtype), lut[off]


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
