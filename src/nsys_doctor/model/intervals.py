"""Interval arithmetic on int64 ns arrays: union, coverage inside windows, per-group union. No Python loops."""
from __future__ import annotations

import numpy as np


def union(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge overlapping [start, end) intervals -> sorted, disjoint (starts, ends)."""
    if len(start) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(start) < 2 or bool((start[1:] >= start[:-1]).all()):   # already in order (tables usually are): no sort
        s, e = start, np.maximum.accumulate(end)
    else:
        order = np.argsort(start, kind="stable")
        s, e = start[order], end[order]
        np.maximum.accumulate(e, out=e)
    # a new block starts where an interval begins after everything before it ended
    new = np.empty(len(s), bool)
    new[0] = True
    np.greater(s[1:], e[:-1], out=new[1:])
    us = s[new]
    ue = np.empty(len(us), e.dtype)          # a block ends where the next begins, the last at the end
    ue[:-1] = e[:-1][new[1:]]
    ue[-1] = e[-1]
    return us, ue


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
    if keep.all():
        g, s, e = group, start, end
    else:
        g, s, e = group[keep], start[keep], end[keep]
    out = np.zeros(n_groups, np.int64)
    if len(g) == 0:
        return out
    if not _lex_sorted(g, s):        # GPU activity is in time order and requests follow each other: usually sorted
        order = np.lexsort((s, g))
        g, s, e = g[order], s[order], e[order]
    s = s.astype(np.int64, copy=False)
    e = e.astype(np.int64, copy=False)
    # running max of end, restarted at each group: shift groups far apart so they cannot touch. Done on the ranks
    # of the times (max commutes with a monotone map), so the shift cannot overflow int64 whatever the times are.
    lo, hi = min(int(s.min()), int(e.min())), max(int(s.max()), int(e.max()))
    span = hi - lo + 1
    if span * 2 * (int(g.max()) + 1) < 2 ** 62:      # real profiles: shift the times themselves (no sort)
        off = g.astype(np.int64)                     # a copy: scaled in place
        off *= 2 * span
        run = e - lo
        run += off
        np.maximum.accumulate(run, out=run)
        run -= off
        run += lo
        del off
    else:                                            # hostile times: shift their ranks, which cannot overflow
        times, rank = np.unique(np.r_[s, e], return_inverse=True)
        rank_e = rank.reshape(-1)[len(s):].astype(np.int64)
        off = g.astype(np.int64) * (len(times) + 1)
        run = times[np.maximum.accumulate(rank_e + off) - off]
    # each interval adds what sticks out beyond everything before it in its group
    heads = np.flatnonzero(g[1:] != g[:-1])
    heads += 1
    prev = np.empty(len(run), np.int64)
    prev[0] = np.iinfo(np.int64).min
    prev[1:] = run[:-1]
    prev[heads] = np.iinfo(np.int64).min
    np.maximum(s, prev, out=prev)
    run -= prev                                      # run is now what each interval adds (negative: nothing)
    np.maximum(run, 0, out=run)
    first = np.empty(len(heads) + 1, np.intp)
    first[0] = 0
    first[1:] = heads
    out[g[first]] = np.add.reduceat(run, first)
    return out


def _lex_sorted(g: np.ndarray, s: np.ndarray) -> bool:
    """Whether rows are in (g, s) order, as np.lexsort((s, g)) would put them (ties keep their order anyway)."""
    if len(g) < 2:
        return True
    if not bool((g[1:] >= g[:-1]).all()):
        return False
    if bool((s[1:] >= s[:-1]).all()):
        return True
    return bool(((g[1:] > g[:-1]) | (s[1:] >= s[:-1])).all())


def gaps(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Idle gaps between the blocks of a union (sorted)."""
    us, ue = union(start, end)
    return ue[:-1], us[1:]
