"""Array helpers that numpy does slowly for our shapes.

`np.unique(x)` without return_* options takes a hash-based path in numpy 2.3+ that is ~15x slower than sorting on
millions of distinct int64 ids (2.3 s vs 0.14 s for 2.4M correlation keys, measured on launch_bound x10, made by
benchmarks/make_large.py).
"""
from __future__ import annotations

import math

import numpy as np

# A lookup table indexed by id replaces a sort when the ids span at most this many slots per row plus a fixed 1M
# (8 MB of int64 at most beyond the rows themselves): string ids and enums always do, hostile ids fall back to a sort
LUT_SLOTS_PER_ROW = 4
LUT_EXTRA_SLOTS = 1 << 20


def lut_fits(span: int, n: int, per_row: int = LUT_SLOTS_PER_ROW) -> bool:
    """Whether ids spanning `span` values (max - min) over `n` rows are indexed by a lookup table, not sorted
    (`per_row`: slots allowed per row, for ids known to be spread wider than string ids)."""
    return span <= per_row * n + LUT_EXTRA_SLOTS


def is_sorted(a: np.ndarray) -> bool:
    """Whether a 1-d array is in ascending order (ties allowed): tables usually are, so a sort can be skipped."""
    return len(a) < 2 or bool((a[1:] >= a[:-1]).all())


def is_lex_sorted(major: np.ndarray, minor: np.ndarray) -> bool:
    """Whether rows are in (major, minor) order, as np.lexsort((minor, major)) would put them (ties keep their
    order anyway)."""
    if len(major) < 2:
        return True
    if not is_sorted(major):
        return False
    if is_sorted(minor):
        return True
    return bool(((major[1:] > major[:-1]) | (minor[1:] >= minor[:-1])).all())


def sort_order(key: np.ndarray) -> np.ndarray | None:
    """np.argsort(key, kind="stable"), or None when the keys are already in order (the usual case: no sort, no
    reordering copies)."""
    if is_sorted(key):
        return None
    return np.argsort(key, kind="stable")


def lexsort2(minor: np.ndarray, major: np.ndarray) -> np.ndarray | None:
    """np.lexsort((minor, major)) for integer columns (None when already in that order), as one stable sort of a
    combined int64 key when it fits."""
    if is_lex_sorted(major, minor):
        return None
    mlo, mhi = int(minor.min()), int(minor.max())
    jlo, jhi = int(major.min()), int(major.max())
    span = mhi - mlo + 1
    if (jhi - jlo + 1) * span >= 2 ** 62:
        return np.lexsort((minor, major))
    key = (major.astype(np.int64) - jlo) * span + (minor.astype(np.int64) - mlo)
    return np.argsort(key, kind="stable")


def group_sums(group: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    """np.bincount(group, weights=v, minlength=n) for ascending group indices and integer values: exact int64
    sums per group from one cumulative sum (bincount casts the weights to float64 and sums them one by one, which
    is exact for integers as long as the sums stay below 2**53 ns, i.e. always)."""
    if len(group) == 0 or v.dtype.kind not in "iu" or int(group[-1]) >= n or int(group[0]) < 0:
        return np.bincount(group, weights=v, minlength=n)
    cs = np.empty(len(v) + 1, np.int64)
    cs[0] = 0
    np.cumsum(v, out=cs[1:])
    b = np.searchsorted(group, np.arange(n + 1), "left")
    return (cs[b[1:]] - cs[b[:-1]]).astype(np.float64)


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
    if not lut_fits(hi - lo, len(ids)):
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
    if lo < 0 or not lut_fits(hi, len(ids)):
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
    if lo < 0 or not lut_fits(hi, len(values)):
        return np.isin(values, ids)
    lut = np.zeros(hi + 1, bool)
    lut[ids[(ids >= 0) & (ids <= hi)]] = True
    return lut[values]
