"""What a serving thread did in given time windows: hot functions from CPU samples, and a cause for every ns.

Shared by cpu_processing, thread_contention and gpu_underutilization. Two questions are answered here, both per (thread, window):
- which functions ran (CPU samples joined to their call chains; depth 0 is the leaf), with the first frame that lies
  in a user-level library or a python file, so a report can say "numpy FLOAT_clip" rather than "libc memcpy";
- what the thread was doing, split into causes: inside a CUDA API call (sync / copy / launch), blocked in an OS
  runtime call (lock, sleep, file or socket I/O, other), off the CPU while runnable (run-queue delay, inferred), or
  running its own code (the rest).
"""
from __future__ import annotations

import os

import numpy as np

from .arrays import lut_fits, median, uniq
from .intervals import covered, union
from .projection import assign_calls
from .trace import Trace, table_len

DEFAULT_SAMPLE_PERIOD_NS = 1_000_000   # nsys default CPU sampling rate is 1 kHz; measured per profile when possible
TOP_FUNCTIONS = 6

# OS runtime calls by what the thread waits for (names as nsys records them, without version suffixes)
LOCK_CALLS = ("pthread_mutex_lock", "pthread_mutex_timedlock", "pthread_rwlock_", "pthread_spin_lock", "futex",
              "sem_wait", "sem_timedwait", "sem_clockwait", "pthread_cond_wait", "pthread_cond_timedwait",
              "pthread_cond_clockwait", "pthread_barrier_wait", "pthread_join")
SLEEP_CALLS = ("nanosleep", "clock_nanosleep", "usleep", "sleep")
IO_CALLS = ("read", "pread", "readv", "preadv", "fread", "fgets", "getline", "recv", "recvfrom", "recvmsg", "open",
            "fopen", "openat", "write", "pwrite", "fwrite", "send", "sendto", "sendmsg", "poll", "ppoll", "select",
            "pselect", "epoll_wait", "epoll_pwait", "accept", "connect", "stat", "fstat", "lstat", "mmap", "munmap",
            "fsync", "fdatasync", "close", "fclose", "lseek", "getdents")
SYNC_API = ("Synchronize", "cudaStreamQuery", "cudaEventQuery", "cuStreamQuery", "cuEventQuery")
COPY_API = ("Memcpy", "memcpy", "Memset")

# priority: a ns inside a CUDA call is charged to the call, even when the driver blocks on a futex underneath it
CAUSES = ("sync", "copy", "launch", "lock", "sleep", "io", "other_os", "runqueue", "cpu")
SYSTEM_MODULES = ("libc.", "libc-", "ld-linux", "libpthread", "libm.", "libm-", "libstdc++", "libgcc", "python3",
                  "libpython", "libcuda", "libcudart", "libcupti", "libnvToolsExt", "libToolsInjection", "vmlinux", "[", "libdl", "librt")


def _base(name: str) -> str:
    name = name.split("_v", 1)[0] if "_v" in name and name.rsplit("_v", 1)[-1].isdigit() else name
    return name.lstrip("_").removesuffix("64")


def _os_class_of(n: str) -> int:
    n = _base(n)
    if n.startswith(LOCK_CALLS):
        return CAUSES.index("lock")
    if n in SLEEP_CALLS:
        return CAUSES.index("sleep")
    if n in IO_CALLS or n.removesuffix("_unlocked") in IO_CALLS:
        return CAUSES.index("io")
    return CAUSES.index("other_os")


def _api_class_of(n: str) -> int:
    return CAUSES.index("sync" if any(s in n for s in SYNC_API) else "copy" if any(s in n for s in COPY_API)
                        else "launch")


def _classify(trace: Trace, name_ids: np.ndarray, judge) -> np.ndarray:
    """judge(name) per distinct id, spread back to every row as int8 (an index into CAUSES). Small non-negative
    integer ids go through a lookup table (linear); others through a sort (np.unique with return_inverse is slow
    on millions of rows)."""
    ids = np.asarray(name_ids)
    if len(ids) == 0:
        return np.zeros(0, np.int8)
    if ids.dtype.kind in "iu":
        lo, hi = int(ids.min()), int(ids.max())
        if lo >= 0 and lut_fits(hi, len(ids)):
            present = np.zeros(hi + 1, bool)
            present[ids] = True
            u = np.flatnonzero(present)
            lut = np.zeros(hi + 1, np.int8)
            lut[u] = [judge(trace.name(x)) for x in u]
            return lut[ids]
        u = uniq(ids)
        cls = np.array([judge(trace.name(x)) for x in u], np.int8)
        return cls[np.searchsorted(u, ids)]
    u, inv = np.unique(ids, return_inverse=True)
    cls = np.array([judge(trace.name(x)) for x in u], np.int8)
    return cls[inv.ravel()]


def os_call_class(trace: Trace, name_ids: np.ndarray) -> np.ndarray:
    """Per OS runtime call: index into CAUSES (lock, sleep, io, other_os)."""
    return _classify(trace, name_ids, _os_class_of)


def api_call_class(trace: Trace, name_ids: np.ndarray) -> np.ndarray:
    return _classify(trace, name_ids, _api_class_of)


def table_class(ctx, table: str) -> np.ndarray:
    """os_call_class / api_call_class of a whole table (api_calls or os_calls), cached in ctx."""
    fn = api_call_class if table == "api_calls" else os_call_class
    return ctx.once(("call_class", table), lambda: fn(ctx.trace, ctx.trace.table(table)["name_id"]))


# ------------------------------------------------------------------------------------------ thread activity
# Bit c of a segment's state says cause c (index into CAUSES) is active; a segment goes to its lowest set bit, the
# cause first in priority order, or to "cpu" when no bit is set.
_NONE = len(CAUSES) - 1
# The sweep packs each event as (time << CAUSE_BITS | cause) in int64 and each segment's state as one uint8 bit per
# cause: a ninth cause besides "cpu" would silently alias another, so fail at import instead
CAUSE_BITS = 3
assert _NONE <= 1 << CAUSE_BITS and _NONE <= 8, "thread sweep packs at most 8 causes (besides cpu) in 3 bits"
_FIRST_BIT = np.array([(x & -x).bit_length() - 1 if x else _NONE for x in range(1 << _NONE)], np.int8)
_EMPTY = (np.zeros(0, np.int64), np.zeros(0, np.int64))


def _cause_sets(ctx, tid: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
    """Per cause but "cpu": the union of the thread's intervals of that cause (disjoint, sorted); and whether all
    intervals were well-formed (end >= start)."""
    trace = ctx.trace
    parts: list[list] = [[] for _ in CAUSES[:-1]]
    for table, causes in (("api_calls", ("sync", "copy", "launch")), ("os_calls", ("lock", "sleep", "io", "other_os"))):
        tab = trace.table(table)
        if table_len(tab) == 0:
            continue
        m = tab["tid"] == tid
        if not m.any():
            continue
        cls, s, e = table_class(ctx, table), tab["start_ns"], tab["end_ns"]
        if not m.all():
            cls, s, e = cls[m], s[m], e[m]
        for c in causes:
            k = cls == CAUSES.index(c)
            if k.any():
                parts[CAUSES.index(c)].append((s[k], e[k]))
    parts[CAUSES.index("runqueue")].append(off_cpu(trace, tid))
    out, well_formed = [], True
    for p in parts:
        if not p:
            out.append(_EMPTY)
            continue
        s = (np.concatenate([x[0] for x in p]) if len(p) > 1 else p[0][0]).astype(np.int64, copy=False)
        e = (np.concatenate([x[1] for x in p]) if len(p) > 1 else p[0][1]).astype(np.int64, copy=False)
        if len(s) == 0:
            out.append(_EMPTY)
            continue
        ok = bool((e >= s).all())
        well_formed &= ok
        # intervals.union, skipped when the intervals already are sorted and apart (calls of one thread usually are)
        out.append((s, e) if ok and (s[1:] > e[:-1]).all() else union(s, e))
    return out, well_formed


def thread_segments(ctx, tid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The thread's time, whole profile, cut into disjoint sorted segments (start, end, cause index), each charged
    to the first cause in CAUSES active there; time in no segment is "cpu". One labelled sweep (cached)."""
    return ctx.once(("thread_segments", int(tid)), lambda: _thread_segments(ctx, tid))


def _thread_segments(ctx, tid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sets, well_formed = _cause_sets(ctx, tid)
    n = sum(len(s) for s, _ in sets)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8)
    if well_formed:
        # each cause's intervals are disjoint: every start and end toggles its cause's bit. One sort of
        # (time << 3 | cause): the order of events at equal times does not matter, since only the state after the
        # last of them lasts (a sort in place instead of an argsort and gathers: 0.3 s less on 10M API calls)
        key = np.empty(2 * n, np.int64)
        i = 0
        for c, (s, e) in enumerate(sets):
            key[i:i + 2 * len(s):2], key[i + 1:i + 2 * len(s):2] = s, e
            key[i:i + 2 * len(s)] <<= CAUSE_BITS
            key[i:i + 2 * len(s)] |= c
            i += 2 * len(s)
        # the cause sets are copies (10M API calls: 180 MB): freed before the sort, not held through it
        del sets, s, e
        key.sort(kind="stable")     # timsort: merges the sorted runs (one per cause) in near-linear time
        # each event's cause bit, straight into one byte per event (no int64 temporary: 0.1 s less on 10M calls)
        code = np.bitwise_and(key, (1 << CAUSE_BITS) - 1, out=np.empty(len(key), np.uint8), casting="unsafe")
        np.left_shift(1, code, out=code)
        key >>= CAUSE_BITS
        t = key
        state = np.bitwise_xor.accumulate(code)
        del code
    else:                                                    # ill-formed intervals (end < start): count them
        t = np.empty(2 * n, np.int64)
        i = 0
        for s, e in sets:
            t[i:i + 2 * len(s):2], t[i + 1:i + 2 * len(s):2] = s, e     # one sorted run per cause
            i += 2 * len(s)
        order = np.argsort(t, kind="stable")
        t = t[order]
        where = np.empty(len(order), np.int64)               # sorted position of each event
        where[order] = np.arange(len(order))
        state = np.zeros(len(t), np.uint8)
        first = 0
        for c, (s, e) in enumerate(sets):
            d = np.zeros(len(t), np.int64)
            d[where[first:first + 2 * len(s):2]] = 1
            d[where[first + 1:first + 2 * len(s):2]] = -1
            state |= (np.cumsum(d) > 0).astype(np.uint8) << c
            first += 2 * len(s)
    lab = _FIRST_BIT[state]
    del state
    # segment [t[k], t[k+1]) has the state after event k; at equal times only the last event's state lasts
    keep = np.flatnonzero((t[1:] > t[:-1]) & (lab[:-1] != _NONE))
    return t[keep], t[1:][keep], lab[keep]      # t[1:][keep]: no keep + 1 temporary (90 MB on 10M API calls)


def _by_cause(s, e, lab) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Segments grouped per cause (each group stays in time order)."""
    order = np.argsort(lab, kind="stable")      # small ints: radix sort
    bounds = np.r_[0, np.cumsum(np.bincount(lab, minlength=_NONE))]
    s, e = s[order], e[order]
    return {c: (s[bounds[k]:bounds[k + 1]], e[bounds[k]:bounds[k + 1]]) for k, c in enumerate(CAUSES[:-1])}


def thread_activity(ctx, tid: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Disjoint interval sets per cause for one thread, whole profile (cached). "cpu" is left implicit: the rest."""
    return ctx.once(("thread_activity", int(tid)), lambda: _by_cause(*thread_segments(ctx, tid)))


def off_cpu(trace: Trace, tid: int) -> tuple[np.ndarray, np.ndarray]:
    """Intervals the thread was switched out (sched-out to the next sched-in), from the context-switch trace."""
    sc = trace.table("sched")
    if table_len(sc) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    m = sc["tid"] == tid
    if not m.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    t, inn = sc["start_ns"][m], sc["sched_in"][m]
    order = np.argsort(t, kind="stable")
    t, inn = t[order], inn[order]
    out_i = np.flatnonzero((inn[:-1] == 0) & (inn[1:] == 1))
    return t[out_i].astype(np.int64), t[out_i + 1].astype(np.int64)


def _pieces(a_s, a_e, b_s, b_e, a_lab=None):
    """A & B for disjoint sorted sets of positive-length intervals (neighbours may touch): the pieces (start, end)
    in time order, with the label of A (a_lab) or the index into A of each. Linear in the output, no sort."""
    j0 = np.searchsorted(a_e, b_s, side="right")      # first A ending after b starts
    j1 = np.searchsorted(a_s, b_e, side="left")       # first A starting at or after b ends
    cnt = np.maximum(j1 - j0, 0)
    tot = int(cnt.sum())
    if tot == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64 if a_lab is None else a_lab.dtype)
    # B's bounds by np.repeat (a sequential copy) rather than a gather; clipped in place
    ia = np.arange(tot, dtype=np.int64)
    ia += np.repeat(j0 - (np.cumsum(cnt) - cnt), cnt)
    ps = np.repeat(b_s, cnt)
    np.maximum(ps, a_s[ia], out=ps)
    pe = np.repeat(b_e, cnt)
    np.minimum(pe, a_e[ia], out=pe)
    return ps, pe, ia if a_lab is None else a_lab[ia]


def causes_in_windows(ctx, tid: int, lo: np.ndarray, hi: np.ndarray, within=None) -> dict[str, np.ndarray]:
    """Per window [lo, hi) on thread `tid`: ns spent in each cause. `within` (disjoint sorted set) restricts the
    count to those times (e.g. only when the GPU was idle)."""
    lo = np.asarray(lo, np.int64)
    hi = np.asarray(hi, np.int64)
    total = np.maximum(hi - lo, 0)
    if within is not None:
        total = covered(within[0], within[1], lo, hi)
    out = {c: np.zeros(len(lo), np.int64) for c in CAUSES[:-1]}
    s, e, lab = thread_segments(ctx, tid)
    ok = hi > lo
    if len(s) and ok.any():
        # only what lies inside the windows (and inside `within`) matters
        b_s, b_e = union(lo[ok], hi[ok])
        # windows that hold most of the thread's segments: no need to cut the segments to them
        most = 2 * int(np.maximum(np.searchsorted(s, b_e) - np.searchsorted(e, b_s, side="right"), 0).sum()) > len(s)
        if within is not None:
            w_s, w_e = np.asarray(within[0], np.int64), np.asarray(within[1], np.int64)
            pos = w_e > w_s
            if not pos.all():
                w_s, w_e = w_s[pos], w_e[pos]
            if not most:
                w_s, w_e, _ = _pieces(w_s, w_e, b_s, b_e)
            sets = _by_cause(*_pieces(s, e, w_s, w_e, lab))
        elif most:
            sets = thread_activity(ctx, tid)
        else:
            sets = _by_cause(*_pieces(s, e, b_s, b_e, lab))
        for c in CAUSES[:-1]:
            if len(sets[c][0]):
                out[c] = covered(sets[c][0], sets[c][1], lo, hi)
    used = np.zeros(len(lo), np.int64)
    for c in CAUSES[:-1]:
        used += out[c]
    out["cpu"] = np.maximum(total - used, 0)
    return out


def request_causes(ctx, tid: int) -> dict[str, np.ndarray]:
    """causes_in_windows over the CPU-side ranges of every request of thread `tid` (in request order, warm-up
    included), computed once per thread: thread_contention and the run's load (model/queueing.py) both ask."""
    def compute():
        t = ctx.requests.table
        rows = np.flatnonzero(t["tid"] == tid)
        return causes_in_windows(ctx, int(tid), t["start_ns"][rows], t["end_ns"][rows])
    return ctx.once(("request_causes", int(tid)), compute)


# ------------------------------------------------------------------------------------------ CPU samples
def sample_period_ns(trace: Trace) -> int:
    s = trace.table("samples")
    if table_len(s) < 10:
        return DEFAULT_SAMPLE_PERIOD_NS
    tids, counts = np.unique(s["tid"], return_counts=True)
    t = np.sort(s["start_ns"][s["tid"] == tids[np.argmax(counts)]])
    d = np.diff(t)
    d = d[d > 0]
    return int(median(d)) if len(d) else DEFAULT_SAMPLE_PERIOD_NS


def _short(module: str) -> str:
    b = os.path.basename(module) or module
    if "site-packages/" in module:
        pkg = module.split("site-packages/", 1)[1].split("/", 1)[0]
        return f"{pkg}/{b}" if pkg not in b else b
    return b


def samples_in_windows(trace: Trace, tid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per CPU sample: the index of the window (tid, [lo, hi]) holding it, or -1. Windows of a thread are disjoint."""
    s = trace.table("samples")
    if table_len(s) == 0 or len(lo) == 0:
        return np.full(table_len(s), -1, np.int64)
    return assign_calls({"tid": np.asarray(tid), "start_ns": np.asarray(lo), "end_ns": np.asarray(hi)},
                         s["tid"], s["start_ns"])


def hot_functions(trace: Trace, tid: np.ndarray, lo: np.ndarray, hi: np.ndarray, top: int = TOP_FUNCTIONS,
                  chains: str = "callchains") -> tuple[list[dict], int]:
    """Top leaf functions of the CPU samples inside the windows: [{function, module, samples, share_pct, caller}],
    and the number of samples. `caller` is the nearest frame in a user-level library or python file (not libc,
    the interpreter or the CUDA driver), when the chain has one."""
    s = trace.table("samples")
    if table_len(s) == 0:
        return [], 0
    win = samples_in_windows(trace, tid, lo, hi)
    ids = s["callchain"][win >= 0]
    if len(ids) == 0:
        return [], 0
    cc = trace.table(chains)
    if table_len(cc) == 0:
        return [], int(len(ids))
    rel = np.isin(cc["id"], uniq(ids))
    c_id, c_depth, c_sym, c_mod = cc["id"][rel], cc["depth"][rel], cc["symbol_id"][rel], cc["module_id"][rel]
    # leaf frame per chain
    leaf = c_depth == 0
    lid, lsym, lmod = c_id[leaf], c_sym[leaf], c_mod[leaf]
    o = np.argsort(lid)
    lid, lsym, lmod = lid[o], lsym[o], lmod[o]
    pos = np.clip(np.searchsorted(lid, ids), 0, max(len(lid) - 1, 0))
    hit = (len(lid) > 0) & (lid[pos] == ids) if len(lid) else np.zeros(len(ids), bool)
    sym = np.where(hit, lsym[pos] if len(lid) else -1, -1)
    mod = np.where(hit, lmod[pos] if len(lid) else -1, -1)
    # nearest user-level frame per chain: modules judged once each
    umods = uniq(c_mod)
    user_mod = np.array([not os.path.basename(trace.name(m)).startswith(SYSTEM_MODULES)
                         and not trace.name(m).startswith("<") for m in umods], bool)
    is_user = user_mod[np.searchsorted(umods, c_mod)] if len(c_mod) else np.zeros(0, bool)
    uo = np.lexsort((c_depth[is_user], c_id[is_user]))
    u_id, u_sym = c_id[is_user][uo], c_sym[is_user][uo]
    first = np.r_[True, u_id[1:] != u_id[:-1]] if len(u_id) else np.zeros(0, bool)
    u_id, u_sym, u_mod = u_id[first], u_sym[first], c_mod[is_user][uo][first]
    p2 = np.clip(np.searchsorted(u_id, ids), 0, max(len(u_id) - 1, 0))
    hit2 = (u_id[p2] == ids) if len(u_id) else np.zeros(len(ids), bool)
    caller = np.where(hit2, u_sym[p2] if len(u_id) else -1, -1)
    caller_mod = np.where(hit2, u_mod[p2] if len(u_id) else -1, -1)

    pair = np.stack([sym, mod])
    keys, inv, counts = np.unique(pair, axis=1, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    order = np.argsort(-counts)[:top]
    out = []
    n = len(ids)
    for k in order:
        f = {"function": trace.name(keys[0, k]) if keys[0, k] >= 0 else "<unresolved>",
             "module": _short(trace.name(keys[1, k])) if keys[1, k] >= 0 else "",
             "samples": int(counts[k]), "share_pct": round(float(100.0 * counts[k] / n), 1)}
        cm = caller[inv == k]
        cm_mod = caller_mod[inv == k]
        if (cm >= 0).any():
            v, c = np.unique(np.stack([cm[cm >= 0], cm_mod[cm >= 0]]), axis=1, return_counts=True)
            j = int(np.argmax(c))
            if v[0, j] != keys[0, k]:
                f["caller"] = f"{trace.name(v[0, j])} ({_short(trace.name(v[1, j]))})"
        out.append(f)
    return out, int(n)


def code_line(funcs: list[dict]) -> str | None:
    """One line naming the hottest function, for Instance.code."""
    if not funcs:
        return None
    f = funcs[0]
    return f"{f['function']} in {f['module']} ({f['share_pct']}% of samples)"
