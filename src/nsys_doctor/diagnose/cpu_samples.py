"""What a serving thread did in given time windows: hot functions from CPU samples, and a cause for every ns.

Shared by cpu_work, thread_contention and gpu_idle. Two questions are answered here, both per (thread, window):
- which functions ran (CPU samples joined to their call chains; depth 0 is the leaf), with the first frame that lies
  in a user-level library or a python file, so a report can say "numpy FLOAT_clip" rather than "libc memcpy";
- what the thread was doing, split into causes: inside a CUDA API call (sync / copy / launch), blocked in an OS
  runtime call (lock, sleep, file or socket I/O, other), off the CPU while runnable (run-queue delay, inferred), or
  running its own code (the rest).
"""
from __future__ import annotations

import os

import numpy as np

from ..model.intervals import covered, union
from ..model.requests import _assign_calls
from ..model.trace import Trace, table_len

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


def os_call_class(trace: Trace, name_ids: np.ndarray) -> np.ndarray:
    """Per OS runtime call: index into CAUSES (lock, sleep, io, other_os)."""
    uniq, inv = np.unique(name_ids, return_inverse=True)
    cls = np.empty(len(uniq), np.int64)
    for k, nid in enumerate(uniq):
        n = _base(trace.name(nid))
        if n.startswith(LOCK_CALLS):
            cls[k] = CAUSES.index("lock")
        elif n in SLEEP_CALLS:
            cls[k] = CAUSES.index("sleep")
        elif n in IO_CALLS or n.removesuffix("_unlocked") in IO_CALLS:
            cls[k] = CAUSES.index("io")
        else:
            cls[k] = CAUSES.index("other_os")
    return cls[inv] if len(name_ids) else np.zeros(0, np.int64)


def api_call_class(trace: Trace, name_ids: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(name_ids, return_inverse=True)
    cls = np.empty(len(uniq), np.int64)
    for k, nid in enumerate(uniq):
        n = trace.name(nid)
        cls[k] = CAUSES.index("sync" if any(s in n for s in SYNC_API) else
                              "copy" if any(s in n for s in COPY_API) else "launch")
    return cls[inv] if len(name_ids) else np.zeros(0, np.int64)


# ------------------------------------------------------------------------------------------ interval sets
def _sweep(a_s, a_e, b_s, b_e, keep_b: bool):
    """Disjoint sorted sets A, B -> A & B (keep_b) or A - B."""
    if len(a_s) == 0 or (keep_b and len(b_s) == 0):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(b_s) == 0:
        return a_s, a_e
    t = np.concatenate([a_s, a_e, b_s, b_e])
    da = np.concatenate([np.ones(len(a_s)), -np.ones(len(a_e)), np.zeros(len(b_s) * 2)]).astype(np.int64)
    db = np.concatenate([np.zeros(len(a_s) * 2), np.ones(len(b_s)), -np.ones(len(b_e))]).astype(np.int64)
    order = np.lexsort((da + db, t))       # ends before starts at the same time
    t, ca, cb = t[order], np.cumsum(da[order]), np.cumsum(db[order])
    want = (ca > 0) & ((cb > 0) if keep_b else (cb == 0))
    s, e = t[:-1][want[:-1]], t[1:][want[:-1]]
    ok = e > s
    return union(s[ok], e[ok]) if ok.any() else (np.zeros(0, np.int64), np.zeros(0, np.int64))


def intersect(a_s, a_e, b_s, b_e):
    return _sweep(a_s, a_e, b_s, b_e, True)


def subtract(a_s, a_e, b_s, b_e):
    return _sweep(a_s, a_e, b_s, b_e, False)


# ------------------------------------------------------------------------------------------ thread activity
def thread_activity(ctx, tid: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Disjoint interval sets per cause for one thread, whole profile (cached). "cpu" is left implicit: the rest."""
    key = ("thread_activity", int(tid))
    if key in ctx.cache:
        return ctx.cache[key]
    trace = ctx.trace
    parts: dict[str, list] = {c: [] for c in CAUSES}
    api = trace.table("api_calls")
    m = api["tid"] == tid
    if m.any():
        cls = api_call_class(trace, api["name_id"][m])
        for c in ("sync", "copy", "launch"):
            k = cls == CAUSES.index(c)
            parts[c].append((api["start_ns"][m][k], api["end_ns"][m][k]))
    osc = trace.table("os_calls")
    m = osc["tid"] == tid
    if m.any():
        cls = os_call_class(trace, osc["name_id"][m])
        for c in ("lock", "sleep", "io", "other_os"):
            k = cls == CAUSES.index(c)
            parts[c].append((osc["start_ns"][m][k], osc["end_ns"][m][k]))
    off = off_cpu(trace, tid)
    parts["runqueue"].append(off)       # off-CPU; what no call explains is left after the subtraction below
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    taken = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    for c in CAUSES[:-1]:
        if not parts[c]:
            out[c] = (np.zeros(0, np.int64), np.zeros(0, np.int64))
            continue
        s = np.concatenate([p[0] for p in parts[c]]).astype(np.int64)
        e = np.concatenate([p[1] for p in parts[c]]).astype(np.int64)
        us, ue = union(s, e)
        out[c] = subtract(us, ue, *taken)
        taken = union(np.r_[taken[0], out[c][0]], np.r_[taken[1], out[c][1]])
    out["_taken"] = taken
    ctx.cache[key] = out
    return out


def off_cpu(trace: Trace, tid: int) -> tuple[np.ndarray, np.ndarray]:
    """Intervals the thread was switched out (sched-out to the next sched-in), from the context-switch trace."""
    sc = trace.table("sched")
    m = sc["tid"] == tid
    if not m.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    t, inn = sc["start_ns"][m], sc["sched_in"][m]
    order = np.argsort(t, kind="stable")
    t, inn = t[order], inn[order]
    out_i = np.flatnonzero((inn[:-1] == 0) & (inn[1:] == 1))
    return t[out_i].astype(np.int64), t[out_i + 1].astype(np.int64)


def causes_in_windows(ctx, tid: int, lo: np.ndarray, hi: np.ndarray, within=None) -> dict[str, np.ndarray]:
    """Per window [lo, hi) on thread `tid`: ns spent in each cause. `within` (disjoint sorted set) restricts the
    count to those times (e.g. only when the GPU was idle)."""
    act = thread_activity(ctx, tid)
    out = {}
    total = np.maximum(hi - lo, 0)
    if within is not None:
        total = covered(within[0], within[1], lo, hi)
    used = np.zeros(len(lo), np.int64)
    for c in CAUSES[:-1]:
        s, e = act[c]
        if within is not None:
            s, e = intersect(s, e, within[0], within[1])
        out[c] = covered(s, e, lo, hi)
        used += out[c]
    out["cpu"] = np.maximum(total - used, 0)
    return out


# ------------------------------------------------------------------------------------------ CPU samples
def sample_period_ns(trace: Trace) -> int:
    s = trace.table("samples")
    if table_len(s) < 10:
        return DEFAULT_SAMPLE_PERIOD_NS
    tids, counts = np.unique(s["tid"], return_counts=True)
    t = np.sort(s["start_ns"][s["tid"] == tids[np.argmax(counts)]])
    d = np.diff(t)
    d = d[d > 0]
    return int(np.median(d)) if len(d) else DEFAULT_SAMPLE_PERIOD_NS


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
    return _assign_calls({"tid": np.asarray(tid), "start_ns": np.asarray(lo), "end_ns": np.asarray(hi)},
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
    rel = np.isin(cc["id"], np.unique(ids))
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
    umods = np.unique(c_mod)
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
