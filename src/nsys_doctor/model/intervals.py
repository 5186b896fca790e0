"""Interval arithmetic on int64 ns arrays: union, coverage inside windows, per-group union. No Python loops."""
from __future__ import annotations

import numpy as np


def union(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge overlapping [start, end) intervals -> sorted, disjoint (starts, ends)."""
    if len(start) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(start, kind="stable")
    s, e = start[order], np.maximum.accumulate(end[order])
    # a new block starts where an interval begins after everything before it ended
    new = np.empty(len(s), bool)
    new[0] = True
    new[1:] = s[1:] > e[:-1]
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, len(s) - 1]
    return s[first], e[last]


def covered(u_start: np.ndarray, u_end: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Time inside each window [lo, hi) covered by the disjoint sorted intervals (u_start, u_end)."""
    lo = np.asarray(lo, np.int64)
    hi = np.asarray(hi, np.int64)
    if len(u_start) == 0:
        return np.zeros(len(lo), np.int64)
    cum = np.r_[0, np.cumsum(u_end - u_start)]

    def upto(t):  # covered time in (-inf, t)
        i = np.searchsorted(u_start, t, side="right")       # intervals starting before t
        j = np.clip(i - 1, 0, None)
        partial = np.where(i > 0, np.clip(t - u_start[j], 0, u_end[j] - u_start[j]), 0)
        return cum[np.clip(i - 1, 0, None)] * (i > 0) + partial

    return np.maximum(upto(hi) - upto(lo), 0)


def group_union_length(group: np.ndarray, start: np.ndarray, end: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group (0..n_groups-1; negative groups ignored): total length of the union of its intervals."""
    keep = group >= 0
    g, s, e = group[keep], start[keep], end[keep]
    out = np.zeros(n_groups, np.int64)
    if len(g) == 0:
        return out
    order = np.lexsort((s, g))
    g, s, e = g[order], s[order], e[order]
    # running max of end, restarted at each group: shift groups far apart so they cannot touch. Done on the ranks
    # of the times (max commutes with a monotone map), so the shift cannot overflow int64 whatever the times are.
    lo, hi = min(int(s.min()), int(e.min())), max(int(s.max()), int(e.max()))
    span = hi - lo + 1
    if span * 2 * (int(g.max()) + 1) < 2 ** 62:      # real profiles: shift the times themselves (no sort)
        off = g.astype(np.int64) * (2 * span)
        run = np.maximum.accumulate((e - lo) + off) - off + lo
    else:                                            # hostile times: shift their ranks, which cannot overflow
        times, rank = np.unique(np.r_[s, e], return_inverse=True)
        rank_e = rank.reshape(-1)[len(s):].astype(np.int64)
        off = g.astype(np.int64) * (len(times) + 1)
        run = times[np.maximum.accumulate(rank_e + off) - off]
    prev = np.r_[np.iinfo(np.int64).min, run[:-1]]
    first = np.r_[True, g[1:] != g[:-1]]
    prev = np.where(first, np.iinfo(np.int64).min, prev)
    # each interval adds what sticks out beyond everything before it in its group
    add = np.clip(run - np.maximum(s, prev), 0, None)
    np.add.at(out, g, add)
    return out


def gaps(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Idle gaps between the blocks of a union (sorted)."""
    us, ue = union(start, end)
    return ue[:-1], us[1:]
