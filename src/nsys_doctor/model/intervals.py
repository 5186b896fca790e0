"""Interval arithmetic on int64 ns arrays: union, coverage inside windows, per-group union. No Python loops."""
from __future__ import annotations

import numpy as np

from .arrays import is_lex_sorted, is_sorted


def union(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge overlapping [start, end) intervals -> sorted, disjoint (starts, ends)."""
    if len(start) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if is_sorted(start):            # already in order (tables usually are): no sort
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
    if not is_lex_sorted(g, s):      # GPU activity is in time order and requests follow each other: usually sorted
        order = np.lexsort((s, g))
        g, s, e = g[order], s[order], e[order]
    s = s.astype(np.int64, copy=False)
    run = group_running_max(g, e)
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


def group_running_max(group: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Running maximum of `v` (int64, a new array) restarted at each group, for rows sorted by group: one
    np.maximum.accumulate over values shifted so far apart per group that groups cannot reach each other. On the
    ranks of the values when the shift would overflow int64 (hostile times; max commutes with a monotone map)."""
    v = v.astype(np.int64, copy=False)
    if len(v) == 0:
        return np.zeros(0, np.int64)
    lo = int(v.min())
    span = int(v.max()) - lo + 1
    g0 = int(group.min())
    groups = int(group.max()) - g0 + 1
    if span * groups < 2 ** 62:                      # real profiles: shift the values themselves (no sort)
        off = group.astype(np.int64)                 # a copy: scaled in place
        if g0:
            off -= g0
        off *= span
        run = v - lo
        run += off
        np.maximum.accumulate(run, out=run)
        run -= off
        run += lo
        return run
    values, rank = np.unique(v, return_inverse=True)
    off = (group.astype(np.int64) - g0) * (len(values) + 1)
    return values[np.maximum.accumulate(rank.reshape(-1).astype(np.int64) + off) - off]


def subtract(a_s, a_e, b_s, b_e) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted sets A - B, as a disjoint sorted set."""
    if len(a_s) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(b_s) == 0:
        return a_s, a_e
    t = np.concatenate([a_s, a_e, b_s, b_e])
    da = np.concatenate([np.ones(len(a_s)), -np.ones(len(a_e)), np.zeros(len(b_s) * 2)]).astype(np.int64)
    db = np.concatenate([np.zeros(len(a_s) * 2), np.ones(len(b_s)), -np.ones(len(b_e))]).astype(np.int64)
    order = np.lexsort((da + db, t))       # ends before starts at the same time
    t, ca, cb = t[order], np.cumsum(da[order]), np.cumsum(db[order])
    want = (ca > 0) & (cb == 0)
    s, e = t[:-1][want[:-1]], t[1:][want[:-1]]
    ok = e > s
    return union(s[ok], e[ok]) if ok.any() else (np.zeros(0, np.int64), np.zeros(0, np.int64))


def free_within(busy_s: np.ndarray, busy_e: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """The times in [lo, hi) outside the disjoint sorted busy set, as a disjoint sorted set (the gaps between
    busy blocks, clipped; blocks of no length leave two gaps that touch: merged)."""
    if len(busy_s) == 0 or not (busy_e >= busy_s).all():
        return subtract(np.array([lo], np.int64), np.array([hi], np.int64), busy_s, busy_e)
    i, j = np.searchsorted(busy_e, lo, side="right"), np.searchsorted(busy_s, hi, side="left")
    gs = np.r_[lo, busy_e[i:j]]
    ge = np.r_[busy_s[i:j], hi]
    gs = np.maximum(gs, lo)
    ge = np.minimum(ge, hi)
    ok = ge > gs
    gs, ge = gs[ok], ge[ok]
    if len(gs) > 1:
        new = np.r_[True, gs[1:] != ge[:-1]]
        first = np.flatnonzero(new)
        gs, ge = gs[first], ge[np.r_[first[1:] - 1, len(new) - 1]]
    return gs.astype(np.int64), ge.astype(np.int64)


def points_inside(ts: np.ndarray, us: np.ndarray, ue: np.ndarray) -> np.ndarray:
    """Mask of the (sorted or not) times inside the disjoint sorted intervals (us, ue)."""
    if len(us) == 0:
        return np.zeros(len(ts), bool)
    i = np.searchsorted(us, ts, "right") - 1
    return (i >= 0) & (ts < ue[np.clip(i, 0, None)])
