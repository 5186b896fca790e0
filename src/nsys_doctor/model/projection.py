"""Projection: which CUDA API call launched which GPU work, and which request each call belongs to.

A call and the GPU work it launched share a correlation id, unique within a process (ids repeat across processes:
nvfuser-accidental in shared/external), so both sides are keyed by (process, correlation id). The keys, the launch
mask and the union of all GPU activity are computed once per trace and cached read-only, because requests,
iterations and several diagnoses ask for them.
"""
from __future__ import annotations

import numpy as np

from .arrays import distinct_ids, is_sorted, lut_fits, sort_order, uniq
from .intervals import union
from .trace import Table, Trace, table_len

GPU_TABLES = ("kernels", "copies", "memsets", "graphs")
# correlation ids are spread wider than one per API call (launch_bound: 1.68M ids over 245k calls, 6.9 per call):
# a bool lookup table of 16 slots per call is still 16 bytes a call, less than sorting the keys
CORR_SLOTS_PER_ROW = 16


def launch_calls(trace: Trace) -> np.ndarray:
    """Boolean mask over api_calls: the call launched GPU work (its (process, correlation id) appears on the GPU).
    Computed once per trace: requests, iterations and several diagnoses ask for it."""
    cached = trace._cache.get("_launch_mask")
    if cached is not None:
        return cached
    api = trace.table("api_calls")
    keys = [gpu_corr_key(trace, t) for t in GPU_TABLES if trace.has(t)]
    if not keys or table_len(api) == 0:
        mask = np.zeros(table_len(api), bool)
    else:
        key = api_corr_key(trace)
        gpu = np.concatenate(keys) if len(keys) > 1 else keys[0]
        lo, hi = int(gpu.min()), int(gpu.max())
        if lut_fits(hi - lo, len(key), CORR_SLOTS_PER_ROW):
            # correlation ids of one process are small dense ints: a lookup table instead of a sort and a search
            lut = np.zeros(hi - lo + 1, bool)
            lut[gpu - lo] = True
            inside = (key >= lo) & (key <= hi)
            mask = np.zeros(len(key), bool)
            mask[inside] = lut[key[inside] - lo]
        else:
            gpu = uniq(gpu)
            pos = np.clip(np.searchsorted(gpu, key), 0, len(gpu) - 1)
            mask = gpu[pos] == key
    trace._cache["_launch_mask"] = mask
    return mask


def api_corr_key(trace: Trace) -> np.ndarray:
    """corr_key of (the calling thread's process, correlation id) over api_calls, computed once per trace.
    Read-only: shared by every caller."""
    return trace.once("_api_corr_key", lambda: _readonly(corr_key(trace, trace.ids.process_of(
        trace.table("api_calls")["tid"]), trace.table("api_calls")["correlation"])))


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def issuing_calls(trace: Trace, table: str, rows=None) -> np.ndarray:
    """Per row of a GPU table (every row, or those in `rows`): the api_calls row that launched it (same process and
    correlation id), -1 where none was traced, as int64 (a copy: the caller may change it). launching_calls' one
    search per trace and table, which this reads."""
    call = launching_calls(trace, table)
    return (call if rows is None else call[np.asarray(rows, np.int64)]).astype(np.int64)


def launching_calls(trace: Trace, table: str) -> np.ndarray:
    """Per row of a GPU table: the api_calls row that launched it (same process and correlation id; of several
    calls with one key, the first in time order), -1 where none was traced; int32 while the call rows fit (the
    array is held to the end: 20 MB for 4.9M kernels, not 39). Computed once per trace and table, read-only: the
    request projection, launch_overhead and every issuing_calls ask for the same search (launch_bound x40: 4.9M
    kernels searched among 9.8M calls, 0.1 s each time)."""
    return trace.once(("_launching_calls", table), lambda: _launching_calls(trace, table))


def _launching_calls(trace: Trace, table: str) -> np.ndarray:
    gk = gpu_corr_key(trace, table)
    key = api_corr_key(trace)
    dtype = np.int32 if len(key) < 2**31 else np.int64
    if len(key) == 0 or len(gk) == 0:
        call = np.full(len(gk), -1, dtype)
    else:
        order = sort_order(key)           # None: the calls' keys are in order already (the usual case)
        sk = key if order is None else key[order]
        pos = np.searchsorted(sk, gk)
        np.minimum(pos, len(sk) - 1, out=pos)
        hit = sk[pos] == gk
        call = (pos if order is None else order[pos]).astype(dtype)
        del pos
        call[~hit] = -1
    call.flags.writeable = False
    return call


def rows_for_calls(trace: Trace, table: str, api_rows: np.ndarray) -> np.ndarray:
    """The other way round: per api_calls row in `api_rows`, the row of `table` (a GPU table, or CUPTI's syncs or
    event_records) with the same process and correlation id (of several, the first), -1 where it has none."""
    api_rows = np.asarray(api_rows, np.int64)
    out = np.full(len(api_rows), -1, np.int64)
    if not trace.has(table) or table_len(trace.table(table)) == 0 or len(api_rows) == 0:
        return out
    gk = gpu_corr_key(trace, table)
    order = sort_order(gk)
    sk = gk if order is None else gk[order]
    want = api_corr_key(trace)[api_rows]
    pos = np.minimum(np.searchsorted(sk, want), len(sk) - 1)
    hit = sk[pos] == want
    out[hit] = (pos if order is None else order[pos])[hit]
    return out


def gpu_corr_key(trace: Trace, table: str) -> np.ndarray:
    """corr_key(pid, correlation) of a GPU activity table, computed once per trace. Read-only."""
    return trace.once(("_gpu_corr_key", table), lambda: _readonly(corr_key(trace, trace.table(table)["pid"],
                                                                           trace.table(table)["correlation"])))


def gpu_busy_union(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """union() of every GPU activity (all tables, all devices) as int64, computed once per trace (analyze starts it
    on a thread of its own as soon as the GPU tables are read). Read-only."""
    return trace.once("_gpu_busy_union", lambda: _gpu_busy_union(trace))


def _gpu_busy_union(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    # each table on its own first (each is in time order: no sort), then the union of those few blocks; the same
    # set as one union of everything, when no interval ends before it starts
    cols = [(trace.table(t)["start_ns"].astype(np.int64, copy=False),
             trace.table(t)["end_ns"].astype(np.int64, copy=False)) for t in GPU_TABLES]
    cols = [c for c in cols if len(c[0])]
    if len(cols) > 1 and not all(bool((e >= s).all()) for s, e in cols):
        parts = [(np.concatenate([c[0] for c in cols]), np.concatenate([c[1] for c in cols]))]
        parts = [union(*parts[0])]
    else:
        parts = [union(s, e) for s, e in cols]
    if not parts:
        out = union(np.zeros(0, np.int64), np.zeros(0, np.int64))
    elif len(parts) == 1:
        out = parts[0]
    else:
        out = union(np.concatenate([p[0] for p in parts]).astype(np.int64, copy=False),
                    np.concatenate([p[1] for p in parts]).astype(np.int64, copy=False))
    for a in out:
        a.flags.writeable = False
    return out


def device_busy_unions(trace: Trace, devices: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Busy union of all GPU work per device in `devices` (the whole GPU's union when there is one device)."""
    devs = [int(d) for d in uniq(devices)]
    cols = [trace.table(t) for t in GPU_TABLES if table_len(trace.table(t))]
    # one device in the whole trace (min == max per table, no concatenation of millions of rows): the cached union
    if not cols or (len(devs) == 1 and all(int(c["device"].min()) == int(c["device"].max()) == devs[0]
                                           for c in cols)):
        u = gpu_busy_union(trace)
        return {d: u for d in devs}
    all_dev = np.concatenate([c["device"] for c in cols])
    s = np.concatenate([c["start_ns"].astype(np.int64, copy=False) for c in cols])
    e = np.concatenate([c["end_ns"].astype(np.int64, copy=False) for c in cols])
    return {d: union(s[all_dev == d], e[all_dev == d]) for d in devs}


def pid_of(trace: Trace, tid: np.ndarray) -> np.ndarray:
    """The processes of these threads (the `pid` values of the reader's numbering)."""
    return trace.ids.process_of(tid)


def corr_key(trace: Trace, pid: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """(process, correlation id) as one int64: the reader's 31-bit process key above the 32-bit correlation id.
    Built in place on the key's array."""
    key = trace.ids.process_key(pid)
    key <<= 32
    key |= corr.astype(np.int64, copy=False) & 0xFFFFFFFF
    return key


def assign_calls(inst: Table, tid: np.ndarray, t: np.ndarray) -> np.ndarray:
    """For each call (tid, t): index of the request open on that thread at t, or -1."""
    out = np.full(len(t), -1, np.int64)
    t_sorted = None
    for th in uniq(inst["tid"]):
        ri = np.flatnonzero(inst["tid"] == th)
        rs, re = inst["start_ns"][ri], inst["end_ns"][ri]
        order = np.argsort(rs)
        ri, rs, re = ri[order], rs[order], re[order]
        mine = tid == th
        if len(mine) and mine[0] and mine.all():      # one thread makes all the calls: no gathers
            if t_sorted is None:
                t_sorted = is_sorted(t)
            if t_sorted:
                out = _assign_sorted(ri, rs, re, t)
                continue
            ci = slice(None)
        else:
            ci = np.flatnonzero(mine)
        tc = t[ci]
        slot = np.searchsorted(rs, tc, side="right") - 1
        ok = (slot >= 0) & (tc <= re[np.clip(slot, 0, None)])
        if isinstance(ci, slice):
            out[ok] = ri[slot[ok]]
        else:
            out[ci[ok]] = ri[slot[ok]]
    return out


def _assign_sorted(ri: np.ndarray, rs: np.ndarray, re: np.ndarray, t: np.ndarray) -> np.ndarray:
    """assign_calls for one thread whose call times t are sorted: each request's calls are one run of rows, so the
    labels are runs of values (np.repeat) instead of a search per call. Same result: the call at t belongs to the
    last request starting at or before t (slot), if t <= its end."""
    n = len(t)
    a = np.searchsorted(t, rs, side="left")            # first call at or after each start
    nxt = np.empty(len(a), np.int64)
    nxt[:-1] = a[1:]
    nxt[-1] = n                                        # calls of slot k: [a[k], a[k+1])
    b = np.minimum(np.maximum(np.searchsorted(t, re, side="right"), a), nxt)   # ... with t <= re[k]
    vals = np.empty(2 * len(a) + 1, np.int64)
    lens = np.empty(2 * len(a) + 1, np.int64)
    vals[0], lens[0] = -1, a[0]                        # before the first request
    vals[1::2], lens[1::2] = ri, b - a
    vals[2::2], lens[2::2] = -1, nxt - b
    return np.repeat(vals, lens)


def sync_name_ids(trace: Trace, prefixes: tuple[str, ...]) -> np.ndarray:
    """String ids of the API calls whose names start with one of `prefixes`."""
    ids = trace._cache.get("_api_name_ids")
    if ids is None:
        names = trace.table("api_calls")["name_id"]
        # distinct_ids falls back to a sort for damaged ids (up to 2**63-1), where a bincount would not fit
        ids = distinct_ids(names[names >= 0]) if len(names) else np.zeros(0, np.int64)
        trace._cache["_api_name_ids"] = ids
    return np.array([i for i in ids if trace.name(i).startswith(prefixes)], np.int64)
