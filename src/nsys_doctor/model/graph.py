"""The dependency graph of the measured window: what each CPU interval and each GPU operation waited for.

Nodes, as flat numpy arrays (no per-event objects: launch_bound x40 of benchmarks/make_large.py has 4.9M kernels):
- CPU: per thread that calls CUDA (or opens a request), its outermost intervals (CUDA API calls and OS runtime calls,
  nested ones folded into the call around them), in order; the CPU time between two intervals is the `gap`.
- GPU: every kernel, copy, memset and graph launch, per stream (device, process, stream) in FIFO order.
Edges, each with a delay fitted so that replaying the graph unchanged gives back the recording exactly:
- launch -> GPU operation by (process, correlation id) (model/projection.py's keys), delay = launch-to-start latency;
- stream FIFO: an operation starts after the one before it on its stream ends;
- cross-stream waits the profile records: cudaEventRecord (CUPTI_ACTIVITY_KIND_CUDA_EVENT) -> cudaStreamWaitEvent
  (its CUPTI synchronization record names the event): the first operation launched onto the waiting stream after
  the wait waits for the last one launched onto the recording stream before the record (kept as an edge also where
  it did not bind);
- other cross-stream and engine order, inferred from timing: an operation that started right when an operation of
  another stream of the same device ended, later than its launch and its stream allowed, waited for it (event waits
  not recorded, the legacy default stream's implicit ordering, a copy engine busy with another copy);
- host waits: a blocking call (synchronize, blocking or pageable copy, query, free) that ended within
  WAIT_TAIL_MAX_NS after a GPU operation ended while it ran waited for that operation. A polling loop (a run of
  cudaEventQuery/cudaStreamQuery, model/host_waits.py query_runs, sleeps between them allowed) is one node from its
  first query to its last, waiting for the operation that ended while it spun: it ends at the first query that saw
  that work done, so the polling delay is part of the wait; without the wait it costs one query.
An edge's delay is the recorded slack when that edge bound the start (the latest of the constraints), else the
nominal latency measured in this trace (`nominal_*`), so a change that frees a constraint lets the node move up to,
but not past, the next one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .activity import LOCK_CALLS
from .api_names import QUERY_CALLS, SYNC_CALLS, base_name, name_ids
from .arrays import dense_groups, id_mask, is_sorted, median, percentiles, uniq
from .host_waits import POLL_MIN_QUERIES_SEEN, query_runs
from .projection import GPU_TABLES, api_corr_key, corr_key, gpu_corr_key, launch_calls
from .trace import Trace, table_len

NEVER = -(1 << 62)            # "no constraint" in max-plus sums (int64 ns; far from overflow when a delay is added)

# A host call ending this long after the GPU operation it waited for ended still counts as waiting for it: the
# wake-up of a blocking sync measured 3-40 us in tests/data (ex_sync_before: median 9 us); 200 us leaves room for a
# descheduled thread without taking a call that ended for another reason.
WAIT_TAIL_MAX_NS = 200_000
# CUDA calls that can block until GPU work finishes (base-name substrings): explicit syncs, blocking and pageable
# copies and memsets, polling queries, and cudaFree (it synchronises the device).
BLOCKING_CALLS = ("Synchronize", "Memcpy", "Memset", "Query", "Free")
# CUDA calls kept as nodes although they neither launch nor block, because a change removes them (allocation)
KEPT_CALLS = ("Malloc", "Alloc", "Graph")
# A CUDA call of another name that lasted >= 100 us and >= 20x its name's median and ended just after a GPU operation
# ended was held by back-pressure (a launch into a full launch queue): healthy's launches wait 0.35-0.85 ms for a
# slot while its typical launch takes ~5 us; 100 us keeps out the 20-40 us launches of a busy CPU (launch_bound).
BACKPRESSURE_MIN_NS = 100_000
BACKPRESSURE_FACTOR = 20
TYPICAL_SAMPLE = 20_000
# An operation that began at most this long after another stream's operation ended, when its own launch and stream
# would have let it start earlier, is taken to have waited for it (event waits took 1-6 us on the H100 zoo profiles).
CROSS_STREAM_WINDOW_NS = 10_000
# Fallbacks when a trace has too few clean samples to measure a nominal latency (H100, tests/data ex_graph_before:
# 3-6 us launch-to-start on an idle stream, ~1 us between back-to-back kernels).
LAUNCH_LATENCY_FALLBACK_NS = 4_000
STREAM_GAP_FALLBACK_NS = 1_000
MIN_SAMPLES = 20              # fewer clean samples than this: use the fallback
# A synchronize call that finds the GPU done costs ~4 us (zoo sync_heavy: median 3.6 us for the quickest of a name).
WAIT_CALL_FALLBACK_NS = 4_000
# Wake-up of a sync after its work ends, when a trace has too few real waits to measure it (tests/data ex_sync_before:
# median 9 us)
WAKE_UP_FALLBACK_NS = 9_000
# trace._cache key of a window's quickest_calls lookup (model/window.py sets it)
QUICKEST_CALLS = "_quickest_calls"


@dataclass
class Graph:
    """Flat arrays; CPU nodes sorted by (chain, start), GPU operations by (stream chain, start)."""
    # CPU nodes
    c_chain: np.ndarray          # thread chain index
    c_start: np.ndarray
    c_end: np.ndarray
    c_kind: np.ndarray           # 0 CUDA API call, 1 OS runtime call
    c_row: np.ndarray            # row in api_calls / os_calls
    c_name: np.ndarray           # name_id
    c_gap: np.ndarray            # CPU time since the previous node of its thread ended (0 for a thread's first)
    c_wait_op: np.ndarray        # GPU operation this call waited for, -1 when it did not wait
    c_tail: np.ndarray           # call end - that operation's end (wake-up latency)
    c_dmin: np.ndarray           # a blocking call's duration had it not waited (the quickest of its name), else its own
    chain_lo: np.ndarray         # CPU nodes of chain c: [chain_lo[c], chain_lo[c+1])
    chain_tid: np.ndarray
    # GPU operations
    g_chain: np.ndarray          # stream chain index
    g_start: np.ndarray
    g_end: np.ndarray
    g_table: np.ndarray          # index into GPU_TABLES
    g_row: np.ndarray            # row in that table
    g_launch: np.ndarray         # CPU node whose call launched it, -1 when none recorded
    g_launch_off: np.ndarray     # launch call start - that node's start (a launch nested in an outer call)
    g_launch_row: np.ndarray     # row in api_calls of the launch call, -1 when none
    g_dl: np.ndarray             # delay launch call start -> operation start
    g_ds: np.ndarray             # delay previous operation on the stream ends -> start
    g_fixed: np.ndarray          # absolute earliest start for operations without a launch (NEVER when none)
    g_xop: np.ndarray            # operation of another stream it waited for, -1 when none
    g_dx: np.ndarray
    g_ready: np.ndarray          # recorded time by which its start is known (non-decreasing per stream)
    stream_lo: np.ndarray        # operations of stream chain s: [stream_lo[s], stream_lo[s+1])
    stream_key: np.ndarray       # (device, process, stream) of each stream chain, as rows
    nominal_launch_ns: int
    nominal_gap_ns: int
    span: tuple[int, int]        # time base used for chain keys
    stats: dict = field(default_factory=dict)

    @property
    def n_cpu(self) -> int:
        return len(self.c_start)

    @property
    def n_gpu(self) -> int:
        return len(self.g_start)

    def node_at(self, tid: np.ndarray, t: np.ndarray) -> np.ndarray:
        """For each (thread, time): the last CPU node of that thread starting at or before t, -1 when none (or the
        thread has no chain)."""
        ch = _chain_of(self.chain_tid, tid)
        key = _chain_time_key(ch, t, self.span)
        nkey = _chain_time_key(self.c_chain, self.c_start, self.span)
        pos = np.searchsorted(nkey, key, side="right") - 1
        ok = (ch >= 0) & (pos >= 0)
        ok &= self.c_chain[np.clip(pos, 0, None)] == ch
        return np.where(ok, pos, -1)


def _chain_of(chain_tid: np.ndarray, tid: np.ndarray) -> np.ndarray:
    """Chain index of each thread id, -1 when the thread has none (chain_tid is sorted)."""
    tid = np.asarray(tid, np.int64)
    if len(chain_tid) == 0:
        return np.full(len(tid), -1, np.int64)
    if len(chain_tid) == 1:                          # one thread (most inference processes): no search
        return np.where(tid == chain_tid[0], 0, -1)
    pos = np.clip(np.searchsorted(chain_tid, tid), 0, len(chain_tid) - 1)
    return np.where(chain_tid[pos] == tid, pos, -1)


def _chain_time_key(chain: np.ndarray, t: np.ndarray, span: tuple[int, int]) -> np.ndarray:
    """chain * width + (t - t0): one sortable int64 for (chain, time). build() checks it cannot overflow."""
    t0, width = span
    return np.asarray(chain, np.int64) * width + (np.asarray(t, np.int64) - t0)


def _order_by_chain(chain: np.ndarray, t: np.ndarray, tie: np.ndarray | None) -> np.ndarray | None:
    """The order by (chain, t, then -tie: an outer call before the calls nested in it at the same start), None when
    already in order. Rows come as a few runs in time order (one per table): a stable sort by time merges the runs
    (timsort), then a stable sort by chain; a lexsort of 11M CPU calls (launch_bound x40) costs 5 s."""
    n = len(t)
    if n == 0:
        return None
    o = None
    if not is_sorted(t):
        # the common shape: one long sorted run (the API calls) and a short one after it (lock waits): insert
        # the short run's rows at their places instead of sorting all
        cut = int(np.flatnonzero(t[1:] < t[:-1])[0]) + 1
        if is_sorted(t[cut:]):
            pos = np.searchsorted(t[:cut], t[cut:], side="right")
            o = np.insert(np.arange(cut), pos, np.arange(cut, n))
        else:
            o = np.argsort(t, kind="stable")
    ts = t if o is None else t[o]
    if tie is not None:
        same = np.flatnonzero(ts[1:] == ts[:-1])
        if len(same):                            # rows sharing a start: the longer first
            pos = uniq(np.concatenate([same, same + 1]))
            rows = pos if o is None else o[pos]
            sub = np.lexsort((-tie[rows], t[rows]))
            if o is None:
                o = np.arange(n)
            o[pos] = rows[sub]
    if int(chain.min()) != int(chain.max()):
        c = chain if o is None else chain[o]
        o2 = np.argsort(c, kind="stable")
        o = o2 if o is None else o[o2]
    return o


def _groups3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group index of each (a, b, c) row, groups in sorted order, and the distinct rows: np.unique(axis=0) costs 6 s
    on 4.9M kernels; a constant column (one device, one process) is skipped and the rest ranked by a sort each."""
    n = len(a)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, 3), np.int64)
    key = np.zeros(n, np.int64)
    for col in (a, b, c):
        if int(col.min()) == int(col.max()):
            continue
        u, inv = dense_groups(col)
        key = key * len(u) + inv.ravel()
    u, g = dense_groups(key) if int(key.max()) > 0 else (np.zeros(1, np.int64), key)
    g = g.ravel().astype(np.int64)
    first = np.zeros(len(u), np.int64)
    first[g[::-1]] = np.arange(n - 1, -1, -1)      # any row of each group
    return g, np.stack([a[first], b[first], c[first]], 1).astype(np.int64)


def _nominal(samples: np.ndarray, fallback: int, q: float) -> int:
    samples = samples[samples >= 0]
    if len(samples) < MIN_SAMPLES:
        return fallback
    return int(percentiles(samples, [q])[0])       # not np.percentile: it imports numpy.ma (13 ms)


def build(trace: Trace, threads: np.ndarray | None = None) -> Graph:
    """The graph of the whole trace. `threads`: thread ids to model besides those that call CUDA (request threads)."""
    api = trace.table("api_calls")
    osc = trace.table("os_calls")
    n_api = table_len(api)
    # --- GPU operations, per stream chain in FIFO (start) order
    parts = []
    for ti, t in enumerate(GPU_TABLES):
        g = trace.table(t)
        n = table_len(g)
        if n == 0:
            continue
        parts.append((ti, n, g, gpu_corr_key(trace, t)))
    cat = lambda f: (np.concatenate([f(p) for p in parts]) if parts else np.zeros(0, np.int64))  # noqa: E731
    gs = cat(lambda p: p[2]["start_ns"].astype(np.int64, copy=False))
    ge = cat(lambda p: p[2]["end_ns"].astype(np.int64, copy=False))
    ge = np.maximum(ge, gs)                                   # a damaged row with end < start: zero length
    gtab = cat(lambda p: np.full(p[1], p[0], np.int8))
    grow = cat(lambda p: np.arange(p[1], dtype=np.int64))
    gkey = cat(lambda p: p[3])
    gdev = cat(lambda p: p[2]["device"].astype(np.int64, copy=False))
    gpid = cat(lambda p: trace.ids.process_key(np.asarray(p[2]["pid"], np.int64)))
    gstr = cat(lambda p: p[2]["stream"].astype(np.int64, copy=False))

    # time base for (chain, time) keys
    times = [a for a in (gs, ge, api["start_ns"], api["end_ns"], osc["start_ns"], osc["end_ns"]) if len(a)]
    r = trace.table("ranges")
    if table_len(r):
        times += [r["start_ns"], r["end_ns"]]
    t0 = min(int(a.min()) for a in times) - 1 if times else 0
    t1 = max(int(a.max()) for a in times) + 1 if times else 1
    width = t1 - t0 + 1

    # stream chains: (device, process, stream)
    g_chain, ukeys = _groups3(gdev, gpid, gstr)
    n_streams = len(ukeys)
    if n_streams * width >= (1 << 62):
        raise ValueError("trace spans too long a time to key its streams")
    order = _order_by_chain(g_chain, gs, None)
    if order is not None:
        gs, ge, gtab, grow, gkey, gdev, g_chain = (a[order] for a in (gs, ge, gtab, grow, gkey, gdev, g_chain))
    stream_lo = np.searchsorted(g_chain, np.arange(n_streams + 1))

    # --- CPU chains: threads calling CUDA, and the requested ones
    tids = uniq(np.concatenate([api["tid"].astype(np.int64, copy=False),
                                np.asarray(threads if threads is not None else [], np.int64)]))
    n_chains = len(tids)
    if n_chains * width >= (1 << 62):
        raise ValueError("trace spans too long a time to key its threads")
    # OS runtime calls: only the lock family is kept as nodes (remove_lock_waits acts on them); the others are CPU
    # time between CUDA calls like any other (a phase's I/O goes with the phase's gaps)
    os_keep = np.zeros(0, np.int64)
    if table_len(osc):
        lock_ids = name_ids(trace, osc["name_id"], lambda n: n.lstrip("_").startswith(LOCK_CALLS))
        if len(lock_ids):
            os_keep = np.flatnonzero(np.isin(osc["name_id"], lock_ids) & (_chain_of(tids, osc["tid"]) >= 0))
    # API calls that can matter: those that launched GPU work, may block, a change removes, or took long; any
    # other call is CPU time between them from the start (half of launch_bound's calls are cuKernelGetName beside
    # each launch). A launch nested in a dropped call becomes a node of its own, which changes no time.
    name_of = api["name_id"].astype(np.int64, copy=False)
    special = name_ids(trace, name_of, lambda n: any(b in n for b in BLOCKING_CALLS + KEPT_CALLS))
    api_keep = launch_calls(trace) | id_mask(name_of, special)
    api_keep |= (api["end_ns"] - api["start_ns"]) >= BACKPRESSURE_MIN_NS
    ar = None if bool(api_keep.all()) else np.flatnonzero(api_keep)
    del api_keep
    sub = (lambda a: a) if ar is None else (lambda a: a[ar])  # noqa: E731
    n_ar = n_api if ar is None else len(ar)
    cs = np.concatenate([sub(api["start_ns"]).astype(np.int64, copy=False),
                         osc["start_ns"][os_keep].astype(np.int64)])
    ce = np.concatenate([sub(api["end_ns"]).astype(np.int64, copy=False), osc["end_ns"][os_keep].astype(np.int64)])
    np.maximum(ce, cs, out=ce)
    ckind = np.concatenate([np.zeros(n_ar, np.int8), np.ones(len(os_keep), np.int8)])
    crow = np.concatenate([np.arange(n_api, dtype=np.int64) if ar is None else ar, os_keep])
    cchain = _chain_of(tids, np.concatenate([sub(api["tid"]).astype(np.int64, copy=False),
                                             osc["tid"][os_keep].astype(np.int64)]))
    o = _order_by_chain(cchain, cs, ce)
    if o is not None:
        cs, ce, cchain, ckind, crow = cs[o], ce[o], cchain[o], ckind[o], crow[o]
    del o
    # a polling run (model/host_waits.py query_runs) is one host wait: its first query spans the run, the other
    # queries fold into it below like nested calls
    polls = _poll_runs(trace, api, name_of, special)
    if polls is not None:
        at, run = _poll_nodes(polls, n_api, crow, ckind)
        ce[at] = np.maximum(ce[at], polls[2][run])
    # outermost only: a call starting before an earlier call of its thread ended is folded into that call
    ekey = _chain_time_key(cchain, ce, (t0, width))
    run = np.maximum.accumulate(ekey) if len(ekey) else ekey
    del ekey
    nested = np.zeros(len(cs), bool)
    if len(cs) > 1:
        nested[1:] = _chain_time_key(cchain[1:], cs[1:], (t0, width)) < run[:-1]
    del run
    # the outer row holding each row (a launch nested in an outer call is placed by that call)
    holder = np.maximum.accumulate(np.where(nested, 0, np.arange(len(cs)))) if len(cs) else np.zeros(0, np.int64)

    # --- launch edges: GPU operation -> api row with the same (process, correlation id)
    g_launch_row = np.full(len(gs), -1, np.int64)
    if n_api and len(gs):
        akey = api_corr_key(trace)
        if is_sorted(akey):
            ak_sorted, ak_idx = akey, None
        else:
            ak_idx = np.argsort(akey, kind="stable")
            ak_sorted = akey[ak_idx]
        pos = np.clip(np.searchsorted(ak_sorted, gkey), 0, len(ak_sorted) - 1)
        hit = ak_sorted[pos] == gkey
        rows = pos if ak_idx is None else ak_idx[pos]
        g_launch_row = np.where(hit, rows, -1)
        del pos, hit, rows

    # nodes kept: outer calls that launch GPU work or may block (or be removed by a change), and lock waits; any
    # other call is CPU time between them (half of launch_bound's calls are cuKernelGetName beside each launch)
    api_sorted_pos = np.full(n_api, -1, np.int64)      # api row -> its position in the sorted rows (-1 dropped)
    is_api = ckind == 0
    api_sorted_pos[crow[is_api]] = np.flatnonzero(is_api)
    keep = ~nested & (ckind == 1)
    launched = g_launch_row[g_launch_row >= 0]
    keep[holder[api_sorted_pos[launched]]] = True
    api_outer = np.flatnonzero(~nested & is_api)
    rows_outer = crow[api_outer]
    sel = np.isin(name_of[rows_outer], special) | ((ce - cs)[api_outer] >= BACKPRESSURE_MIN_NS)
    keep[api_outer[sel]] = True
    del api_outer, rows_outer, sel, launched
    node_of_row = np.cumsum(keep) - 1                     # sorted row -> kept node index (valid where kept)
    api_node = np.full(n_api, -1, np.int64)
    present = np.flatnonzero(api_sorted_pos >= 0)
    h = holder[api_sorted_pos[present]]
    ok = keep[h]
    api_node[present[ok]] = node_of_row[h[ok]]
    del present
    del h, ok, holder, api_sorted_pos, node_of_row, is_api, nested
    kept = np.flatnonzero(keep)
    del keep
    if len(kept) < len(cs):
        cs, ce, cchain, ckind, crow = cs[kept], ce[kept], cchain[kept], ckind[kept], crow[kept]
    del kept
    cname = np.where(ckind == 0, name_of[np.where(ckind == 0, crow, 0)],
                     osc["name_id"][np.where(ckind == 1, crow, 0)].astype(np.int64) if len(os_keep) else -1)
    chain_lo = np.searchsorted(cchain, np.arange(n_chains + 1))
    gap = np.zeros(len(cs), np.int64)
    if len(cs) > 1:
        gap[1:] = cs[1:] - ce[:-1]
        gap[chain_lo[:-1][chain_lo[:-1] < len(cs)]] = 0
    has_l = g_launch_row >= 0
    L = np.where(has_l, api["start_ns"][np.clip(g_launch_row, 0, None)] if n_api else 0, 0).astype(np.int64)
    g_launch = np.where(has_l, api_node[np.clip(g_launch_row, 0, None)] if n_api else -1, -1)
    g_launch_off = np.where(has_l, L - cs[np.clip(g_launch, 0, None)] if len(cs) else 0, 0)

    # --- fit the delays
    first = np.zeros(len(gs), bool)
    first[stream_lo[:-1][stream_lo[:-1] < len(gs)]] = True
    prev_end = np.empty(len(gs), np.int64)
    if len(gs):
        prev_end[1:] = ge[:-1]
        prev_end[0] = NEVER
    prev_end[first] = NEVER
    slack_l = np.where(has_l, gs - L, NEVER)
    slack_s = np.where(first, NEVER, gs - prev_end)
    idle_stream = has_l & (first | (prev_end < L))
    nom_l = _nominal(slack_l[idle_stream], LAUNCH_LATENCY_FALLBACK_NS, 10)
    busy_stream = has_l & ~first & (slack_l > slack_s + 20_000)
    nom_s = _nominal(slack_s[busy_stream & (slack_s < 20_000)], STREAM_GAP_FALLBACK_NS, 50)

    big = 1 << 61
    ex_l = np.where(has_l, slack_l - nom_l, big)
    ex_s = np.where(first, big, slack_s - nom_s)
    # cross-stream: the latest end, on another stream of the same device, at or before the start
    g_xop = np.full(len(gs), -1, np.int64)
    ex_x = np.full(len(gs), big, np.int64)
    if n_streams > 1 and len(gs):
        by_end = np.lexsort((ge, gdev))
        ekey2 = _chain_time_key(gdev[by_end], ge[by_end], (t0, width))
        skey2 = _chain_time_key(gdev, gs, (t0, width))
        m = np.searchsorted(ekey2, skey2, side="right") - 1
        for back in (0, 1, 2):                   # the nearest end may be this stream's own previous operation
            mm = m - back
            ok = mm >= 0
            cand = by_end[np.clip(mm, 0, None)]
            ok &= (gdev[cand] == gdev) & (g_chain[cand] != g_chain)
            sl = gs - ge[cand]
            ok &= (sl >= 0) & (sl <= CROSS_STREAM_WINDOW_NS) & (g_xop < 0)
            g_xop[ok] = cand[ok]
            ex_x[ok] = sl[ok] - nom_s
    # cross-stream waits the profile records (cudaEventRecord -> cudaStreamWaitEvent, by CUPTI event id) take the
    # place of the timing guess on the operations they hold
    ev_op = _event_waits(trace, api, g_chain, ukeys, L, has_l, gs, ge, (t0, width)) if n_streams > 1 else None
    has_e = np.zeros(len(gs), bool)
    if ev_op is not None:
        has_e = ev_op >= 0
        g_xop[has_e] = ev_op[has_e]
        ex_x[has_e] = gs[has_e] - ge[ev_op[has_e]] - nom_s
    bind_x = (g_xop >= 0) & (ex_x < ex_l) & (ex_x < ex_s)
    bind_l = ~bind_x & has_l & (ex_l <= ex_s)
    bind_s = ~bind_x & ~bind_l & ~first
    g_dl = np.where(bind_l, slack_l, np.minimum(nom_l, slack_l))
    g_ds = np.where(bind_s, slack_s, np.minimum(nom_s, slack_s))
    g_ds[first] = 0
    # a recorded event wait stays an edge where it did not bind (at the nominal gap, never past the recorded start):
    # if a change delays the work it waits for, the waiting stream follows
    keep_x = bind_x | has_e
    g_xop[~keep_x] = -1
    g_dx = np.where(bind_x, gs - ge[np.clip(g_xop, 0, None)],
                    np.where(has_e, np.minimum(nom_s, gs - ge[np.clip(g_xop, 0, None)]), 0))
    # no launch recorded and not held by its stream or another: it started when it did, for reasons not traced
    g_fixed = np.where(~has_l & ~bind_s & ~bind_x, gs, NEVER)
    g_dl[~has_l] = 0

    # an operation's ready time: when the replay can place it (the later of its start and its launch call's start,
    # and of the operation it waited for), made non-decreasing along each stream for the replay's time slabs
    ready = np.maximum(gs, np.where(has_l, L, gs))
    xo = g_xop >= 0
    ready[xo] = np.maximum(ready[xo], np.maximum(gs[g_xop[xo]], ge[g_xop[xo]]))
    if len(gs):
        ready = np.maximum.accumulate(_chain_time_key(g_chain, ready, (t0, width))) - g_chain * width + t0

    # --- host waits: a blocking call that ended just after a GPU operation of its process ended while it ran
    n_cpu = len(cs)
    poll_prev = np.full(n_cpu, NEVER, np.int64)          # per polling-run node: its last-but-one query's start
    poll_at = poll_run = np.zeros(0, np.int64)
    if polls is not None:
        poll_at, poll_run = _poll_nodes(polls, n_api, crow, ckind)
        poll_prev[poll_at] = polls[3][poll_run]
    c_wait_op = np.full(n_cpu, -1, np.int64)
    c_tail = np.zeros(n_cpu, np.int64)
    c_dmin = ce - cs
    if n_cpu and len(gs):
        blocking_ids = _blocking_name_ids(trace, cname[ckind == 0])
        dur = ce - cs
        named = (ckind == 0) & np.isin(cname, blocking_ids)
        # back-pressure: any other CUDA call (a launch into a full queue) far longer than its name's typical cost
        long = (ckind == 0) & ~named & (dur >= BACKPRESSURE_MIN_NS)
        typical = np.zeros(0, np.int64)
        if long.any():
            li = np.flatnonzero(long)
            typical = _typical_by_name(cname, dur, ckind == 0, cname[li])
            long[li[dur[li] < BACKPRESSURE_FACTOR * typical]] = False
            typical = typical[dur[li] >= BACKPRESSURE_FACTOR * typical]
        cand = named | long
        ci = np.flatnonzero(cand)
        if len(ci):
            order_end = np.argsort(ge, kind="stable")
            ends = ge[order_end]
            j = np.searchsorted(ends, ce[ci], side="right") - 1
            ok = j >= 0
            op = order_end[np.clip(j, 0, None)]
            W = ge[op]
            # a call waited for work that ended at most WAIT_TAIL_MAX_NS before it returned; a polling run for work
            # that ended at most that long before its last-but-one query, which still saw it unfinished (completion
            # shows a few us after the GPU end: in ex_polling_before the last-but-one query of 144 of 505 runs began
            # 0.1-0.4 us after it); the time from that end to the run's return (the sleeps of a sleep-poll loop
            # too) is polling delay, part of the wait
            # (for a loop the work may even have ended just before its first query, which still saw it unfinished)
            is_poll = poll_prev[ci] != NEVER
            tail_ok = np.where(is_poll, W >= poll_prev[ci] - WAIT_TAIL_MAX_NS,
                               (ce[ci] - W <= WAIT_TAIL_MAX_NS) & (W >= cs[ci]))
            ok &= tail_ok & (ready[op] <= ce[ci])
            # it must not be launched by a later call of the same thread (it cannot wait for its own future)
            lnode = g_launch[op]
            ok &= (lnode < 0) | (lnode <= ci)
            # a blocking call that did not have to wait costs what the quickest call of its name cost in this trace
            allc = np.flatnonzero(named)
            # (a window of a larger trace, model/window.py, brings the whole trace's quickest calls: the quickest
            # is often outside a window of steady requests, e.g. a small copy at set-up)
            quickest = trace._cache.get(QUICKEST_CALLS) or _min_by_name(cname[allc], dur[allc])
            c_dmin[allc] = np.minimum(quickest(cname[allc]), dur[allc])
            c_dmin[long] = np.minimum(typical, dur[long])      # a launch that found room costs its typical time
            # a polling run that finds its work done costs one query (its last)
            if polls is not None:
                c_dmin[poll_at] = np.minimum(polls[4][poll_run], dur[poll_at])
            ci, op = ci[ok], op[ok]
            c_wait_op[ci] = op
            c_tail[ci] = ce[ci] - ge[op]
    # latent waits: an explicit synchronize that found its work done still waits for it if that work comes later
    # (after another wait is removed): its target is the last-ending operation launched before it, on its stream
    # (a stream sync, whose stream CUPTI's synchronization record names) or in its process (device, context, event)
    n_latent = 0
    if n_cpu and len(gs) and has_l.any():
        sync_ids = name_ids(trace, cname[ckind == 0], lambda n: n.startswith(SYNC_CALLS))
        lat = np.flatnonzero((ckind == 0) & np.isin(cname, sync_ids) & (c_wait_op < 0))
        if len(lat):
            real = c_wait_op >= 0
            tail_nom = int(median(c_tail[real])) if real.sum() >= MIN_SAMPLES else WAKE_UP_FALLBACK_NS
            stream_of = _sync_streams(trace, api_node, n_cpu, ukeys)          # -1: the whole process
            pid_node = trace.ids.process_key(trace.ids.process_of(tids[cchain[lat]]))
            qs = stream_of[lat]
            op = np.full(len(lat), -1, np.int64)
            # per process
            proc = np.asarray(ukeys[:, 1], np.int64)[g_chain]             # process of each operation
            op_dev = _last_before(proc, L, ge, has_l, pid_node, cs[lat], (t0, width))
            op[qs < 0] = op_dev[qs < 0]
            if (qs >= 0).any():
                op_s = _last_before(g_chain, L, ge, has_l, qs, cs[lat], (t0, width))
                op[qs >= 0] = op_s[qs >= 0]
            ok = op >= 0
            ok &= (ge[np.clip(op, 0, None)] <= ce[lat]) & (ready[np.clip(op, 0, None)] <= ce[lat])
            lat, op = lat[ok], op[ok]
            c_wait_op[lat] = op
            c_tail[lat] = np.minimum(tail_nom, ce[lat] - ge[op])
            c_dmin[lat] = ce[lat] - cs[lat]                             # it did not wait: its own time
            n_latent = len(lat)
    stats = {"streams": int(n_streams), "threads": int(n_chains), "cpu_nodes": int(n_cpu), "gpu_ops": int(len(gs)),
             "waits": int((c_wait_op >= 0).sum()) - n_latent, "latent_waits": n_latent, "cross_stream": int(bind_x.sum()),
             "event_waits": int(has_e.sum()),
             "launch_bound": int(bind_l.sum()), "stream_bound": int(bind_s.sum())}
    return Graph(c_chain=cchain, c_start=cs, c_end=ce, c_kind=ckind, c_row=crow, c_name=cname,
                 c_gap=gap, c_wait_op=c_wait_op, c_tail=c_tail, c_dmin=c_dmin, chain_lo=chain_lo, chain_tid=tids,
                 g_chain=g_chain, g_start=gs, g_end=ge, g_table=gtab, g_row=grow, g_launch=g_launch,
                 g_launch_off=g_launch_off, g_launch_row=g_launch_row, g_dl=g_dl, g_ds=g_ds, g_fixed=g_fixed,
                 g_xop=g_xop, g_dx=g_dx, g_ready=ready, stream_lo=stream_lo, stream_key=ukeys, nominal_launch_ns=nom_l,
                 nominal_gap_ns=nom_s, span=(t0, width), stats=stats)


def _event_waits(trace: Trace, api, g_chain: np.ndarray, ukeys: np.ndarray, L: np.ndarray, has_l: np.ndarray,
                 gs: np.ndarray, ge: np.ndarray, span: tuple[int, int]) -> np.ndarray | None:
    """Per GPU operation: the operation of another stream it waited for through a recorded event, -1 when none
    (None when the profile records no event waits). A cudaStreamWaitEvent call (CUPTI synchronization record with
    an event id) holds the first operation launched onto its stream after it until the work the event marks is
    done: the last operation launched onto the recording stream before the latest cudaEventRecord of that event
    (CUPTI_ACTIVITY_KIND_CUDA_EVENT) preceding the wait."""
    sy, er = trace.table("syncs"), trace.table("event_records")
    if table_len(sy) == 0 or table_len(er) == 0 or "event" not in sy or len(gs) == 0:
        return None
    w = np.flatnonzero(sy["event"] >= 0)
    if len(w) == 0:
        return None
    akey = api_corr_key(trace)
    order = None if is_sorted(akey) else np.argsort(akey, kind="stable")
    ak = akey if order is None else akey[order]

    def call_row(pid, corr):
        k = corr_key(trace, np.asarray(pid, np.int64), corr)
        pos = np.clip(np.searchsorted(ak, k), 0, len(ak) - 1)
        hit = ak[pos] == k
        return np.where(hit, pos if order is None else order[pos], -1)

    wrow = call_row(sy["pid"][w], sy["correlation"][w])
    wait_ids = name_ids(trace, api["name_id"][wrow[wrow >= 0]], lambda n: "StreamWaitEvent" in n)
    ok = wrow >= 0
    ok[ok] = np.isin(api["name_id"][wrow[ok]], wait_ids)
    w, wrow = w[ok], wrow[ok]
    rrow = call_row(er["pid"], er["correlation"])
    r = np.flatnonzero(rrow >= 0)
    if len(w) == 0 or len(r) == 0:
        return None
    # stream chains by (process, stream id), as _sync_streams matches them
    ck = (ukeys[:, 1].astype(np.int64) << 32) | (ukeys[:, 2].astype(np.int64) & 0xFFFFFFFF)
    korder = np.argsort(ck, kind="stable")

    def chain_of(pid, stream):
        k = (trace.ids.process_key(np.asarray(pid, np.int64)) << 32) | (np.asarray(stream, np.int64) & 0xFFFFFFFF)
        p = np.clip(np.searchsorted(ck[korder], k), 0, len(ck) - 1)
        return np.where(ck[korder][p] == k, korder[p], -1)

    # the latest record of the same (process, event) before each wait call
    rk = (trace.ids.process_key(np.asarray(er["pid"][r], np.int64)) << 32) | (er["event"][r].astype(np.int64)
                                                                                & 0xFFFFFFFF)
    rt = api["start_ns"][rrow[r]].astype(np.int64)
    wk = (trace.ids.process_key(np.asarray(sy["pid"][w], np.int64)) << 32) | (sy["event"][w].astype(np.int64)
                                                                              & 0xFFFFFFFF)
    wt = api["start_ns"][wrow].astype(np.int64)
    # records and waits in (key, time) order: each wait's record is the last record before it with its key
    allk, allt = np.r_[rk, wk], np.r_[rt, wt]
    is_w = np.r_[np.zeros(len(rk), bool), np.ones(len(wk), bool)]
    o = np.lexsort((is_w, allt, allk))
    last = np.maximum.accumulate(np.where(is_w[o], -1, np.arange(len(o))))
    at = np.flatnonzero(is_w[o])                       # positions of the waits in that order
    p = last[at]
    good = (p >= 0) & (allk[o[np.clip(p, 0, None)]] == allk[o[at]])
    wi = o[at[good]] - len(rk)                         # wait index
    w, wt = w[wi], wt[wi]
    rec = r[o[p[good]]]
    rec_chain = chain_of(er["pid"][rec], er["stream"][rec])
    wait_chain = chain_of(sy["pid"][w], sy["stream"][w])
    good = (rec_chain >= 0) & (wait_chain >= 0) & (rec_chain != wait_chain)
    w, wt, rec, rec_chain, wait_chain = w[good], wt[good], rec[good], rec_chain[good], wait_chain[good]
    if len(w) == 0:
        return None
    marked = _last_before(g_chain, L, ge, has_l, rec_chain, api["start_ns"][rrow[rec]].astype(np.int64), span)
    held = _first_after(g_chain, L, has_l, wait_chain, wt, span)
    good = (marked >= 0) & (held >= 0)
    out = np.full(len(gs), -1, np.int64)
    marked, held = marked[good], held[good]
    good = ge[marked] <= gs[held]                 # a recorded wait the timing contradicts is left to the timing rule
    marked, held = marked[good], held[good]
    last = np.argsort(ge[marked], kind="stable")   # several waits before one launch: the work that ends last
    out[held[last]] = marked[last]
    return out


def _first_after(group: np.ndarray, L: np.ndarray, has_l: np.ndarray, q_group: np.ndarray, q_t: np.ndarray,
                 span: tuple[int, int]) -> np.ndarray:
    """For each query (group, time): the operation of that group launched first after the time, -1 when none."""
    idx = np.flatnonzero(has_l)
    if len(idx) == 0:
        return np.full(len(q_t), -1, np.int64)
    g = np.asarray(group, np.int64)[idx]
    o = _order_by_chain(g, L[idx], None)
    if o is not None:
        idx, g = idx[o], g[o]
    k = _chain_time_key(g, L[idx], span)
    pos = np.searchsorted(k, _chain_time_key(np.asarray(q_group, np.int64), q_t, span), side="right")
    pp = np.clip(pos, 0, len(idx) - 1)
    ok = (pos < len(idx)) & (g[pp] == q_group)
    return np.where(ok, idx[pp], -1)


def _poll_runs(trace: Trace, api, name_of: np.ndarray, special: np.ndarray):
    """The polling runs of the whole trace (host_waits.query_runs over every CUDA call of the threads that query):
    (first query row, sorted; the run's first start; its last end; the last-but-one query's start; the last query's
    duration), None when there is none."""
    # the query names among the blocking ones already found (no second pass over every call's name)
    qids = np.array([i for i in special.tolist() if base_name(trace.name(i)) in QUERY_CALLS], np.int64)
    if len(qids) == 0:
        return None
    is_q = id_mask(name_of, qids)
    if int(is_q.sum()) < POLL_MIN_QUERIES_SEEN:
        return None
    tids = uniq(api["tid"][is_q].astype(np.int64))
    rows = np.flatnonzero(np.isin(api["tid"], tids)) if len(tids) < len(uniq(api["tid"])) else np.arange(len(is_q))
    first, last, prev_start, _, _ = query_runs(trace, api, rows, is_q[rows])
    if len(first) == 0:
        return None
    o = np.argsort(first, kind="stable")
    first, last, prev_start = first[o], last[o], prev_start[o]
    return (first, api["start_ns"][first].astype(np.int64), api["end_ns"][last].astype(np.int64),
            prev_start.astype(np.int64), (api["end_ns"][last] - api["start_ns"][last]).astype(np.int64))


def _poll_nodes(polls, n_api: int, crow: np.ndarray, ckind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions among the CPU rows (crow/ckind) of the polling runs' first queries, and each one's run index."""
    mark = np.zeros(n_api, bool)
    mark[polls[0]] = True
    at = np.flatnonzero((ckind == 0) & mark[np.where(ckind == 0, crow, 0)])
    return at, np.searchsorted(polls[0], crow[at])


def _sync_streams(trace: Trace, api_node: np.ndarray, n_cpu: int, ukeys: np.ndarray) -> np.ndarray:
    """Per CPU node: the stream chain a stream synchronize waited on (CUPTI's synchronization record, type 3), -1
    for any other node. Streams are matched on (process, stream id); ukeys: (device, process, stream) per chain."""
    out = np.full(n_cpu, -1, np.int64)
    sy = trace.table("syncs")
    if table_len(sy) == 0 or not len(api_node) or not len(ukeys):
        return out
    ck = (ukeys[:, 1].astype(np.int64) << 32) | (ukeys[:, 2].astype(np.int64) & 0xFFFFFFFF)
    korder = np.argsort(ck, kind="stable")
    keys, chains = ck[korder], korder.astype(np.int64)
    akey = api_corr_key(trace)
    skey = corr_key(trace, np.asarray(sy["pid"], np.int64), sy["correlation"])
    stream3 = sy["sync_type"] == 3
    order = None if is_sorted(akey) else np.argsort(akey, kind="stable")   # in time order, ids rise: no sort
    ak = akey if order is None else akey[order]
    pos = np.clip(np.searchsorted(ak, skey), 0, len(akey) - 1)
    hit = (ak[pos] == skey) & stream3
    rows = pos[hit] if order is None else order[pos[hit]]
    node = api_node[rows]
    sk = ((trace.ids.process_key(np.asarray(sy["pid"], np.int64)[hit]) << 32)
          | (sy["stream"][hit].astype(np.int64) & 0xFFFFFFFF))
    p = np.clip(np.searchsorted(keys, sk), 0, max(len(keys) - 1, 0))
    good = (node >= 0) & (len(keys) > 0)
    good &= keys[p] == sk if len(keys) else good
    out[node[good]] = chains[p[good]]
    return out


def _last_before(group: np.ndarray, L: np.ndarray, ge: np.ndarray, has_l: np.ndarray, q_group: np.ndarray,
                 q_t: np.ndarray, span: tuple[int, int]) -> np.ndarray:
    """For each query (group, time): the operation of that group, launched before the time, that ends last; -1
    when none. One sort of the launched operations by (group, launch time) and a running arg-max of their ends."""
    idx = np.flatnonzero(has_l)
    if len(idx) == 0:
        return np.full(len(q_t), -1, np.int64)
    g = np.asarray(group, np.int64)[idx]
    if int(g.min()) < 0:
        raise ValueError("negative group")
    o = _order_by_chain(g, L[idx], None)
    if o is not None:
        idx, g = idx[o], g[o]
    k = _chain_time_key(g, L[idx], span)
    end = _chain_time_key(g, ge[idx], span)          # running max resets per group (the group dominates the key)
    pm = np.maximum.accumulate(end)
    arg = np.maximum.accumulate(np.where(end == pm, np.arange(len(idx)), 0))
    qk = _chain_time_key(np.asarray(q_group, np.int64), q_t, span)
    pos = np.searchsorted(k, qk, side="left") - 1
    ok = pos >= 0
    pp = np.clip(pos, 0, None)
    ok &= g[pp] == q_group
    best = arg[pp]
    ok &= g[np.clip(best, 0, None)] == q_group
    return np.where(ok, idx[best], -1)


def _blocking_name_ids(trace: Trace, ids: np.ndarray) -> np.ndarray:
    return name_ids(trace, ids, lambda n: any(b in n for b in BLOCKING_CALLS))


def _typical_by_name(names: np.ndarray, dur: np.ndarray, pool: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Median duration of the calls named like each of q, from at most TYPICAL_SAMPLE calls per name (every k-th:
    a sort of 10M launch durations would cost seconds on launch_bound x40)."""
    out = np.empty(len(q), np.int64)
    for nid in uniq(q):
        rows = np.flatnonzero(pool & (names == nid))
        step = max(1, len(rows) // TYPICAL_SAMPLE)
        out[q == nid] = int(median(dur[rows[::step]]))
    return out


def quickest_calls(trace: Trace):
    """A lookup name_id -> the shortest duration among the trace's blocking CUDA calls of that name (nested calls
    included), with _min_by_name's fallback for names with few calls: what build() uses for a window of this trace.
    One pass over api_calls (bincount and a lookup table of name ids, no sort: launch_bound x40 has 9.8M calls)."""
    api = trace.table("api_calls")
    names = api["name_id"].astype(np.int64, copy=False)
    if len(names) == 0 or int(names.min()) < 0:
        sel = np.flatnonzero(np.isin(names, _blocking_name_ids(trace, names)))
    else:
        present = np.flatnonzero(np.bincount(names))
        lut = np.zeros(int(names.max()) + 1, bool)
        lut[_blocking_name_ids(trace, present)] = True
        sel = np.flatnonzero(lut[names])
    if len(sel) == 0:
        return lambda q: np.full(len(q), WAIT_CALL_FALLBACK_NS, np.int64)
    return _min_by_name(names[sel], (api["end_ns"][sel] - api["start_ns"][sel]).astype(np.int64))


def _min_by_name(names: np.ndarray, dur: np.ndarray):
    """A lookup name_id -> the shortest duration among calls of that name."""
    u, inv = np.unique(names, return_inverse=True)
    best = np.full(len(u), np.iinfo(np.int64).max, np.int64)
    np.minimum.at(best, inv.ravel(), dur)
    few = np.bincount(inv.ravel(), minlength=len(u)) < MIN_SAMPLES
    best[few] = np.minimum(best[few], WAIT_CALL_FALLBACK_NS)   # too few calls to have seen one that did not wait

    def get(q):
        return best[np.clip(np.searchsorted(u, q), 0, len(u) - 1)]
    return get
