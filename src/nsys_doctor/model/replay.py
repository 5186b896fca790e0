"""Replay the dependency graph (model/graph.py), unchanged or with a fix applied, and measure the requests again.

The replay is a discrete-event simulation done in time slabs: host waits are the only edges from the GPU back to
the CPU, so between two waits (in recorded order) every thread's timeline is a running sum of its calls and gaps, and
every stream's is the max-plus recurrence start[j] = max(launch[j] + delay, end[j-1] + gap), solved with one
np.maximum.accumulate over a long stretch, by a loop over Python ints over a short one (a polling loop releases a few
operations per wait). One Python step per host wait; which operations each step places, and every CPU node's offset
from the wait before it, are fixed before the loop by numpy passes.
Unchanged, it gives back the recorded times exactly (the delays were fitted so); changed, nodes move as far as the
next constraint allows.
"""
from __future__ import annotations

import re
from array import array
from dataclasses import dataclass, field

import numpy as np

from .activity import LOCK_CALLS
from .api_names import SYNC_CALLS
from .arrays import id_mask, median, uniq
from .graph import MIN_SAMPLES, NEVER, WAIT_CALL_FALLBACK_NS, WAKE_UP_FALLBACK_NS, Graph, build, name_ids
from .intervals import covered, union
from .projection import GPU_TABLES
from .requests import Requests
from .trace import Trace, table_len

KERNELS = GPU_TABLES.index("kernels")
COPIES = GPU_TABLES.index("copies")
HTOD, DTOH, PAGEABLE = 1, 2, 0     # ENUM_CUDA_MEMCPY_OPER host-to-device / device-to-host, ENUM_CUDA_MEM_KIND pageable
# Launch calls a CUDA graph replaces (base-name substrings).
LAUNCH_CALLS = ("LaunchKernel", "cuLaunch", "MemsetAsync", "MemcpyAsync")
# GPU gap between consecutive kernels of one graph replay: H100, tests/data ex_graph_after (graph of 321 kernels,
# 1.205 ms per replay) minus the same kernels' GPU time in ex_graph_before (1.146 ms), per kernel: 0.18 us.
GRAPH_NODE_GAP_NS = 200
# CPU cost of one cudaGraphLaunch when the profile has none: median in the zoo's launch_bound_graphed (H100): 148 us.
GRAPH_LAUNCH_FALLBACK_NS = 150_000
# CPU time between two launches that a graph replay skips (the framework's dispatch of one op): up to 75 us. The
# gaps between launches of the graphable examples are 12-15 us at the median and 38-42 us at p99 (tests/data
# ex_graph_before, ex_rowwise_before). The per-op bound other diagnoses use (cuda_sync's read dispatch, fusion,
# allocation gaps).
GRAPH_DISPATCH_MAX_NS = 75_000
# The longest CPU stretch between two of a request's launches that a whole-request CUDA graph skips; a longer one is
# other host work no capture holds (OS runtime calls never go: _os_time_in_gaps). 300 us: the framework code between
# layers is longer than one op's dispatch. Measured: transformer_sync's layer boundaries (the zoo's sync_heavy
# program: 143-340 us of TransformerEncoderLayer Python between layers, H200) went with its graph fix, which saved
# 93% of the request; predicted per slow block in the same process (tests/data ex_tgraph abtrace) / measured: 0.62
# with the 75 us bound, 0.74 at 150 us, 0.92 at 300 us (the same up to 1 ms). The 215 CPU samples inside
# dataload_starved's 75 us-1 ms gaps are all framework code (python3.12, libtorch, CUPTI, cuBLASLt, libcuda), no
# numpy or I/O. No pair in tests/data changes between 300 us and 1 ms; the bound stays finite for host work (numpy,
# tokenizers) between two launches.
GRAPH_CAPTURED_GAP_MAX_NS = 300_000
# A stream segment of at most this many operations is placed by a loop over Python ints, a longer one by numpy
# passes (the same integers either way). Best of 4 unchanged replays, CPU s, for 32 / 64 / 128 / 256 / 512: ex_polling
# x40 (benchmarks/bench_polling.py) 0.167 / 0.150 / 0.139 / 0.146 / 0.152, zoo sync_heavy 0.0081 / 0.0047 / 0.0045 /
# 0.0071 / 0.0093; all numpy (0): 0.47 and 0.018; all loop: ex_rowwise_before 0.018 against numpy's 0.003.
SCALAR_SEGMENT_MAX = 128


# what a copy moved to pinned memory on a side stream does to its thread (_prefetch), in the change's words
NOT_BLOCKING = "their calls only enqueue (a read-back is still waited for), overlapping compute"


class ReplayError(RuntimeError):
    """The graph has an order the replay cannot follow (e.g. a wait on work launched after it): a bug or a damaged
    trace, never silently replayed."""


# Every field of Change declares, in its metadata under ROWS, whether and how it names rows of the trace's tables
# (a Rows, or None for a field that names none): model/window.py's change_in translates each declared field to a
# window's rows from it, so a new field is windowed by its declaration alone (tests/model/test_window.py fails on a
# field without one).
ROWS = "rows"


@dataclass(frozen=True)
class Rows:
    """How a Change field names rows. kind "array": the field is an array of rows of `table` (or None);
    "by_table": a dict {table: rows}; "entries": a list of tuples, each holding its rows at index `at`, of `table`
    or of the table named at index `table_at`, and at the indices `per_row` values that are one per row (or one
    for all); an entry whose rows item is a pattern (a str or a compiled regex) names no rows."""
    kind: str
    table: str | None = None
    table_at: int | None = None
    at: int = 0
    per_row: tuple = ()


@dataclass
class Change:
    """A fix, stated as what it does to the graph (all optional; several may be combined).

    remove_wait_rows: api_calls rows of host waits to drop (the call then costs its nominal, non-waiting time).
    remove_syncs: drop every host wait inside a request but its last (synchronize calls, blocking copies such as
        .item(), polling): the last one fetches the result, which the host needs.
    kernel_factor: [(regex over kernel names (case-insensitive when a str), or an array of kernels rows, factor)]: those kernels' GPU time x factor.
    graph_launch_ns: per request, its run of launch calls becomes one graph launch costing this much CPU time (one
        per stretch between two host waits that stay: a graph cannot hold a wait); the CPU time between those
        launches goes too, up to GRAPH_CAPTURED_GAP_MAX_NS per gap and not OS runtime calls, and the kernels run back
        to back (GRAPH_NODE_GAP_NS apart).
    drop_phase: {NVTX range name: share of its CPU time removed (1.0 = all, 0.5 = half moved to other workers)}.
    pageable_rate: bytes/s for pageable copies (src or dst pageable), which also stop blocking the CPU and stop
        waiting for earlier work on their stream (pinned memory on a side stream, prefetched).
    remove_lock_waits: OS lock and condition waits (model/activity.py LOCK_CALLS) take no time.
    remove_cpu_rows: {"api_calls"|"os_calls": rows}: those calls take no time (e.g. allocation calls removed); a
        call that is not a node of its own (graph.py keeps launches, blocking and allocation calls, lock waits) is
        taken out of the CPU time before the next node of its thread; a call nested in another stays in it.
    gpu_scale: [(table, rows, factor)]: those GPU operations (rows of a GPU_TABLES table) take factor x their time
        (one factor, or one per row).
    gpu_shorten: [(table, rows, by_ns)]: those GPU operations take by_ns less each (never below zero).
    copy_rate: [(copies rows, bytes/s (one or per row), overlap)]: those copies move their bytes at that rate (never
        slower than recorded); with overlap, their call no longer blocks and input copies no longer wait for earlier
        work on their stream (pinned memory on a side stream, prefetched).
    remove_cpu_windows: [(tid, start_ns, end_ns)] (parallel arrays): the CPU time of those threads inside those
        windows is removed (the gaps between nodes, the OS runtime calls kept as nodes, and the CUDA calls wholly
        inside that launch no GPU work, with their waits); launch calls stay.
    stream_per_thread: each thread's GPU work on a stream shared with other threads goes on a stream of its own
        (in recorded order); a host wait that waited for another thread's work waits for its own thread's latest
        work on that stream instead. The GPU is not modelled as a shared engine here: work of several threads may
        overlap, right for small kernels (tests/data ex_contention), optimistic for kernels that fill the GPU.
    """
    remove_wait_rows: np.ndarray | None = field(default=None, metadata={ROWS: Rows("array", table="api_calls")})
    remove_syncs: bool = field(default=False, metadata={ROWS: None})
    kernel_factor: list = field(default_factory=list, metadata={ROWS: Rows("entries", table="kernels", at=0)})
    graph_launch_ns: int | None = field(default=None, metadata={ROWS: None})
    drop_phase: dict = field(default_factory=dict, metadata={ROWS: None})          # NVTX names, not rows
    pageable_rate: float | None = field(default=None, metadata={ROWS: None})
    remove_lock_waits: bool = field(default=False, metadata={ROWS: None})
    remove_cpu_rows: dict = field(default_factory=dict, metadata={ROWS: Rows("by_table")})
    gpu_scale: list = field(default_factory=list, metadata={ROWS: Rows("entries", table_at=0, at=1, per_row=(2,))})
    gpu_shorten: list = field(default_factory=list, metadata={ROWS: Rows("entries", table_at=0, at=1, per_row=(2,))})
    copy_rate: list = field(default_factory=list, metadata={ROWS: Rows("entries", table="copies", at=0,
                                                                       per_row=(1,))})
    # threads and times, the same in a window as in the whole trace
    remove_cpu_windows: list = field(default_factory=list, metadata={ROWS: None})
    stream_per_thread: bool = field(default=False, metadata={ROWS: None})

    def combined(self, other: "Change") -> "Change":
        """Both changes at once (the combined prediction of several findings' fixes)."""
        rows = [r for r in (self.remove_wait_rows, other.remove_wait_rows) if r is not None]
        cpu = {t: np.concatenate([np.asarray(d.get(t, []), np.int64) for d in (self.remove_cpu_rows,
                                                                                 other.remove_cpu_rows)])
               for t in set(self.remove_cpu_rows) | set(other.remove_cpu_rows)}
        graph = [x for x in (self.graph_launch_ns, other.graph_launch_ns) if x is not None]
        rate = [x for x in (self.pageable_rate, other.pageable_rate) if x]
        return Change(remove_wait_rows=np.concatenate(rows) if rows else None,
                      remove_syncs=self.remove_syncs or other.remove_syncs,
                      kernel_factor=list(self.kernel_factor) + list(other.kernel_factor),
                      graph_launch_ns=min(graph) if graph else None,
                      drop_phase={**self.drop_phase, **other.drop_phase},
                      pageable_rate=max(rate) if rate else None,
                      remove_lock_waits=self.remove_lock_waits or other.remove_lock_waits, remove_cpu_rows=cpu,
                      gpu_scale=list(self.gpu_scale) + list(other.gpu_scale),
                      gpu_shorten=list(self.gpu_shorten) + list(other.gpu_shorten),
                      copy_rate=list(self.copy_rate) + list(other.copy_rate),
                      remove_cpu_windows=list(self.remove_cpu_windows) + list(other.remove_cpu_windows),
                      stream_per_thread=self.stream_per_thread or other.stream_per_thread)

    def is_empty(self) -> bool:
        """Nothing to replay: every field unset or naming no rows."""
        return not (self.remove_wait_rows is not None and len(self.remove_wait_rows) or self.remove_syncs
                    or self.kernel_factor or self.graph_launch_ns is not None or self.drop_phase or self.pageable_rate
                    or self.remove_lock_waits or any(len(r) for r in self.remove_cpu_rows.values())
                    or any(len(x[1]) for x in self.gpu_scale) or any(len(x[1]) for x in self.gpu_shorten)
                    or any(len(x[0]) for x in self.copy_rate) or any(len(x[1]) for x in self.remove_cpu_windows)
                    or self.stream_per_thread)

    def describe(self) -> list[str]:
        out = []
        if self.remove_syncs:
            out.append("host waits inside requests removed, but each request's last")
        if self.remove_wait_rows is not None:
            out.append(f"the host waits of {len(self.remove_wait_rows)} CUDA calls removed")   # a loop: each query
        for pat, f in self.kernel_factor:
            what = (f"kernels matching {getattr(pat, 'pattern', pat)!r}" if isinstance(pat, (str, re.Pattern))
                    else f"{len(pat)} kernels")
            out.append(f"{what} take {f:g}x their GPU time")
        if self.graph_launch_ns is not None:
            out.append(f"each request's launches replayed as one CUDA graph ({self.graph_launch_ns / 1e3:.0f} us "
                       "CPU per launch)")
        for name, share in self.drop_phase.items():
            out.append(f"{share:.0%} of the CPU time of phase {name!r} removed")
        if self.pageable_rate:
            out.append(f"pageable copies at {self.pageable_rate / 1e9:.1f} GB/s, {NOT_BLOCKING}")
        if self.remove_lock_waits:
            out.append("lock waits removed")
        for t, rows in self.remove_cpu_rows.items():
            out.append(f"{len(rows)} {t} removed")
        for t, rows, f in self.gpu_scale:
            f = np.asarray(f, np.float64)
            out.append(f"{len(rows)} {t} take {float(f.mean()) if f.size else 1.0:.3g}x their GPU time"
                       + (" (mean)" if f.size > 1 else ""))
        for t, rows, by in self.gpu_shorten:
            out.append(f"{len(rows)} {t} shorter by {float(np.sum(by)) / 1e6:.3g} ms in all")
        for rows, rate, overlap in self.copy_rate:
            r = np.asarray(rate, np.float64)
            out.append(f"{len(rows)} copies at {float(r.min()) / 1e9:.1f}"
                       + (f"-{float(r.max()) / 1e9:.1f}" if r.size > 1 and r.max() > r.min() else "") + " GB/s"
                       + (f", {NOT_BLOCKING}" if overlap else ""))
        if self.stream_per_thread:
            out.append("each thread's GPU work on a stream of its own")
        for tid, start, end in self.remove_cpu_windows:
            out.append(f"CPU time in {len(start)} windows ({float(np.sum(np.asarray(end) - np.asarray(start))) / 1e6:.3g} "
                       "ms in all) removed")
        return out


@dataclass
class Outcome:
    """Replayed times of every node, and per request (same order as Requests.table)."""
    c_start: np.ndarray
    c_end: np.ndarray
    g_start: np.ndarray
    g_end: np.ndarray
    latency_ns: np.ndarray       # per request
    start_ns: np.ndarray
    finish_ns: np.ndarray        # the later of the range end and its last GPU work end
    measured: np.ndarray         # indices of measured requests

    @property
    def interval_ns(self) -> float:
        """Mean request interval: span of the measured requests / their number (1/throughput)."""
        m = self.measured
        if len(m) == 0:
            return float("nan")
        return float(self.finish_ns[m].max() - self.start_ns[m].min()) / len(m)

    @property
    def mean_latency_ns(self) -> float:
        return float(self.latency_ns[self.measured].mean()) if len(self.measured) else float("nan")


# ---------------------------------------------------------------------------------------------- state
@dataclass
class _Params:
    """The mutable copy of a graph's weights that a change edits."""
    c_gap: np.ndarray
    c_dur: np.ndarray
    c_wait_op: np.ndarray
    g_dur: np.ndarray
    g_dl: np.ndarray
    g_ds: np.ndarray
    g_launch: np.ndarray
    g_launch_off: np.ndarray
    g_free: np.ndarray           # operations no longer behind the earlier work of their stream (prefetched copies)
    c_dmin: np.ndarray           # a wait's cost had it not waited (a change may lower it: a staged copy's call)
    c_tail: np.ndarray           # a wait's end after its operation's end (a change may add waits)


def _params(g: Graph) -> _Params:
    return _Params(c_gap=g.c_gap.copy(), c_dur=g.c_end - g.c_start, c_wait_op=g.c_wait_op.copy(),
                   g_dur=g.g_end - g.g_start, g_dl=g.g_dl.copy(), g_ds=g.g_ds.copy(), g_launch=g.g_launch.copy(),
                   g_launch_off=g.g_launch_off.copy(), g_free=np.zeros(g.n_gpu, bool), c_dmin=g.c_dmin.copy(),
                   c_tail=g.c_tail.copy())


def _ints(a: np.ndarray) -> array:
    """An int64 array as a Python array of int64 (8 bytes an entry, where a list of Python ints takes ~36): what the
    loop over Python ints reads and writes."""
    out = array("q")
    out.frombytes(np.ascontiguousarray(a, np.int64).tobytes())
    return out


def _cpu_segments(g: Graph, p: _Params, waits: np.ndarray):
    """A chain's nodes between two waits (a segment; a wait ends the one it is in) follow each other, so a node's
    start is its segment's anchor (where the wait before it returned, or its chain's start) plus a prefix sum:
    start[k] = corr[seg[k]] + off[k]. Returns seg and off per node, pc (per chain, gap + duration summed from its
    first node through this one: a wait's next segment is anchored at its return - pc[wait]) and corr, anch per
    segment (its anchor, and whether it is set: the chains' first segments)."""
    n_c = g.n_cpu
    n_chains = len(g.chain_lo) - 1
    inc = p.c_gap + p.c_dur
    is_w = np.zeros(n_c, bool)
    is_w[waits] = True
    seg = (np.cumsum(is_w) - is_w) + g.c_chain.astype(np.int64)      # waits before it, one more segment per chain
    pre = np.cumsum(inc)                               # int64 sums wrap modulo 2**64: the differences below are exact
    first = g.chain_lo[:-1][g.chain_lo[:-1] < n_c].astype(np.int64)
    base = np.zeros(n_chains, np.int64)
    base[g.c_chain[first]] = (pre - inc)[first]
    pc = pre - base[g.c_chain] if n_c else pre
    corr = np.zeros(len(waits) + n_chains, np.int64)
    anch = np.zeros(len(corr), bool)
    corr[seg[first]] = g.c_start[first] - p.c_gap[first]
    anch[seg[first]] = True
    return seg, pc - p.c_dur, pc, corr, anch


def _steps(g: Graph, p: _Params, order: np.ndarray):
    """Which operations each replay step places (step i: before the i-th wait of `order` returns, the last step at
    the end): those whose start the recording knew by that wait's recorded end (g_ready, non-decreasing per stream),
    fixed before the replay. Returns the ranges (step, stream, first, end) in step then stream order, and which
    steps have an operation waiting on another stream (placed one at a time, in recorded start order)."""
    T = np.r_[g.c_end[order].astype(np.int64), np.iinfo(np.int64).max]
    n_streams = len(g.stream_lo) - 1
    parts = []
    for st in range(n_streams):
        lo, hi = int(g.stream_lo[st]), int(g.stream_lo[st + 1])
        if hi <= lo:
            continue
        q = np.maximum.accumulate(np.searchsorted(g.g_ready[lo:hi], T, side="right") + lo)
        prev = np.r_[lo, q[:-1]]
        nz = np.flatnonzero(q > prev)
        parts.append((nz, np.full(len(nz), st, np.int64), prev[nz], q[nz]))
    r = [np.concatenate([x[i] for x in parts]).astype(np.int64) if parts else np.zeros(0, np.int64)
         for i in range(4)]
    o = np.lexsort((r[1], r[0]))
    step, stream, a, b = (x[o] for x in r)
    cross = np.zeros(len(T), bool)
    if n_streams > 1:
        csx = np.r_[0, np.cumsum(g.g_xop >= 0)]
        cross[step[csx[b] - csx[a] > 0]] = True
    return step, stream, a, b, cross


def _run(g: Graph, p: _Params) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n_c, n_g = g.n_cpu, g.n_gpu
    gs2 = np.full(n_g, NEVER, np.int64)
    ge2 = np.full(n_g, NEVER, np.int64)
    waits = np.flatnonzero(p.c_wait_op >= 0)          # chain-sorted node indices
    n_w = len(waits)
    chain_lo = g.chain_lo.astype(np.int64)
    seg, off, pc, corr_a, anch_a = _cpu_segments(g, p, waits)
    n_seg = len(corr_a)
    corr_l, anch_l = corr_a.tolist(), anch_a.tolist()
    # an operation's launch time: its launch call's start (anchor + offset) plus its offset in the call (clipped
    # to the call's replayed length) plus the launch delay
    has_l = p.g_launch >= 0
    if n_c:
        kk = np.clip(p.g_launch, 0, n_c - 1)
        lseg = np.where(has_l, seg[kk], 0)
        loff = off[kk] + np.minimum(p.g_launch_off, np.maximum(p.c_dur[kk], 0)) + p.g_dl
    else:
        lseg, loff = np.zeros(n_g, np.int64), p.g_dl.copy()
    has_x = g.g_xop >= 0
    n_streams = len(g.stream_lo) - 1
    order = waits[np.argsort(g.c_end[waits], kind="stable")]
    r_step, r_s, r_a, r_b, cross = _steps(g, p, order)
    n_steps = len(cross)
    # ranges of ordinary steps, split where an operation no longer waits for the one before it (g_free)
    seg_a, seg_b, seg_step = r_a, r_b, r_step
    frees = np.flatnonzero(p.g_free)
    if len(frees):
        cut = [], [], []
        for a, b_, i in zip(r_a.tolist(), r_b.tolist(), r_step.tolist()):
            inner = [] if cross[i] else frees[np.searchsorted(frees, a, side="right"):
                                              np.searchsorted(frees, b_, side="left")].tolist()
            for x, y in zip([a] + inner, inner + [b_]):
                cut[0].append(x), cut[1].append(y), cut[2].append(i)
        seg_a, seg_b, seg_step = (np.asarray(x, np.int64) for x in cut)
    seg_s = g.g_chain[np.minimum(seg_a, max(n_g - 1, 0))].astype(np.int64) if len(seg_a) else np.zeros(0, np.int64)
    chained = (seg_a > g.stream_lo[seg_s]) & ~p.g_free[np.minimum(seg_a, max(n_g - 1, 0))] if len(seg_a) else (
        np.zeros(0, bool))
    step_lo = np.searchsorted(seg_step, np.arange(n_steps + 1)).tolist()
    range_lo = np.searchsorted(r_step, np.arange(n_steps + 1)).tolist()
    # the short segments of ordinary steps go through the loop over Python ints: their operations' fields gathered
    # once, in the order they are placed (`flat`), their starts and ends kept in lists and written back in one go
    small = ((seg_b - seg_a) <= SCALAR_SEGMENT_MAX) & ~cross[seg_step]
    n_each = np.where(small, seg_b - seg_a, 0)
    flat_lo = np.r_[0, np.cumsum(n_each)]
    flat = np.repeat(seg_a - flat_lo[:-1], n_each) + np.arange(int(flat_lo[-1]))
    fpos = np.full(n_g, -1, np.int64)
    fpos[flat] = np.arange(len(flat))
    NO_LAUNCH = n_seg                                  # a segment anchored at NEVER: an operation no call launched
    corr_l.append(NEVER)
    anch_l.append(True)
    f_ls = _ints(np.where(has_l[flat], lseg[flat], NO_LAUNCH))
    f_lo = _ints(np.where(has_l[flat], loff[flat], 0))
    f_fx, f_xo, f_dur, f_ds = _ints(g.g_fixed[flat]), _ints(g.g_xop[flat]), _ints(p.g_dur[flat]), _ints(p.g_ds[flat])
    f_start, f_end = _ints(np.full(len(flat), NEVER, np.int64)), _ints(np.full(len(flat), NEVER, np.int64))
    placed_upto, flushed = [0], [0]                    # f_end[:placed_upto] placed, f_end[:flushed] in ge2 too
    last_end = [NEVER] * n_streams                     # each stream's latest placed operation's end
    seg_al, seg_bl, chained_l, small_l = seg_a.tolist(), seg_b.tolist(), chained.tolist(), small.tolist()
    seg_sl, flat_lol = seg_s.tolist(), flat_lo.tolist()

    def flush():
        """ge2 of the operations the loop placed since the last flush (before numpy passes read ge2)."""
        f0, f1 = flushed[0], placed_upto[0]
        if f1 > f0:
            ge2[flat[f0:f1]] = np.frombuffer(f_end, np.int64)[f0:f1]
            flushed[0] = f1

    def end_of(j: int) -> int:
        f = fpos.item(j)
        return f_end[f] if f >= 0 else ge2.item(j)

    def place_small(m: int) -> bool:
        """place_segment's recurrence one operation at a time over Python ints (start = the latest of its launch,
        its fixed time, its cross-stream wait and the end of the one before it plus the stream gap): the same
        integers, without numpy's per-call cost on the few operations a host wait usually releases. False (nothing
        kept) where a constraint is not yet placed: the array path then raises its error."""
        f0, f1 = flat_lol[m], flat_lol[m + 1]
        s = seg_sl[m]
        chain = chained_l[m]
        prev = last_end[s]
        for f in range(f0, f1):
            ls = f_ls[f]
            if not anch_l[ls]:
                return False
            t = corr_l[ls] + f_lo[f]
            if f_fx[f] > t:
                t = f_fx[f]
            x = f_xo[f]
            if x >= 0:
                e = end_of(x)
                if e == NEVER:
                    return False
                e += g.g_dx.item(flat.item(f))
                if e > t:
                    t = e
            if chain and prev + f_ds[f] > t:
                t = prev + f_ds[f]
            chain = True
            prev = t + f_dur[f]
            f_start[f] = t
            f_end[f] = prev
        last_end[s] = prev
        placed_upto[0] = f1
        return True

    def place_segment(m: int):
        if small_l[m] and place_small(m):
            return
        flush()
        a0, q = seg_al[m], seg_bl[m]
        j = np.arange(a0, q)
        ok = has_l[j]
        ls = lseg[j]
        if ok.any() and not bool(anch_a[ls[ok]].all()):
            raise ReplayError("a GPU operation's launch call was not yet placed")
        a = np.maximum(np.where(ok, corr_a[ls] + loff[j], NEVER), g.g_fixed[j])
        xs = has_x[j]
        if xs.any():
            xo = g.g_xop[j[xs]]
            if bool((ge2[xo] == NEVER).any()):
                raise ReplayError("a cross-stream dependency was not yet placed")
            a[xs] = np.maximum(a[xs], ge2[xo] + g.g_dx[j[xs]])
        dur = p.g_dur[j]
        C = np.zeros(len(j), np.int64)
        if len(j) > 1:
            np.cumsum(dur[:-1] + p.g_ds[j[1:]], out=C[1:])
        v = a - C
        if chained_l[m]:
            v[0] = max(int(v[0]), last_end[seg_sl[m]] + int(p.g_ds[a0]))
        st = C + np.maximum.accumulate(v)
        gs2[a0:q] = st
        ge2[a0:q] = st + dur
        last_end[seg_sl[m]] = ge2.item(q - 1)

    def place_one(j: int):
        s = int(g.g_chain[j])
        t = NEVER
        if p.g_launch[j] >= 0:
            if not anch_l[lseg.item(j)]:
                raise ReplayError("a GPU operation's launch call was not yet placed")
            t = corr_l[lseg.item(j)] + loff.item(j)
        t = max(t, int(g.g_fixed[j]))
        x = int(g.g_xop[j])
        if x >= 0:
            if ge2[x] == NEVER:
                raise ReplayError("a cross-stream dependency was not yet placed")
            t = max(t, int(ge2[x]) + int(g.g_dx[j]))
        if j > g.stream_lo[s] and not p.g_free[j]:
            t = max(t, int(ge2[j - 1]) + int(p.g_ds[j]))
        gs2[j] = t
        ge2[j] = t + int(p.g_dur[j])
        last_end[s] = ge2.item(j)

    def advance(i: int):
        if not cross[i]:
            for m in range(step_lo[i], step_lo[i + 1]):
                place_segment(m)
            return
        # operations waiting on other streams in this slab: place the slab's operations in recorded start order
        flush()
        r0, r1 = range_lo[i], range_lo[i + 1]
        idx = np.concatenate([np.arange(x, y) for x, y in zip(r_a[r0:r1].tolist(), r_b[r0:r1].tolist())])
        idx = idx[np.lexsort((g.g_end[idx], g.g_start[idx]))]
        for j in idx.tolist():
            place_one(j)

    # per wait, in replay order: its operation, segment, offset in it, cost had it not waited, wake-up after its
    # operation, and whether its chain goes on after it (a segment of its own)
    w_op, w_seg, w_off = p.c_wait_op[order].tolist(), seg[order].tolist(), off[order].tolist()
    w_dmin, w_tail, w_pc = p.c_dmin[order].tolist(), p.c_tail[order].tolist(), pc[order].tolist()
    w_more = (order + 1 < chain_lo[1:][g.c_chain[order]]).tolist() if n_w else []
    w_end = []
    for i in range(n_w):
        advance(i)
        ge = end_of(w_op[i])
        if ge == NEVER:
            raise ReplayError("a host wait's GPU operation was not yet placed")
        sid = w_seg[i]
        cs_w = corr_l[sid] + w_off[i] if anch_l[sid] else NEVER
        # a wait ends when its GPU work does (plus the recorded wake-up), or after the call's own cost
        e = max(cs_w + w_dmin[i], ge + w_tail[i])
        w_end.append(e)
        if w_more[i]:                                  # the next segment of its chain starts where it returned
            corr_l[sid + 1] = e - w_pc[i]
            anch_l[sid + 1] = True
            corr_a[sid + 1] = corr_l[sid + 1]
            anch_a[sid + 1] = True
    advance(n_steps - 1)
    placed_upto[0] = len(flat)
    flush()
    gs2[flat] = np.frombuffer(f_start, np.int64)
    placed = anch_a[seg]
    cs2 = np.where(placed, corr_a[seg] + off, NEVER)
    ce2 = np.where(placed, cs2 + p.c_dur, NEVER)
    ce2[order] = w_end
    return cs2, ce2, gs2, ge2


# ---------------------------------------------------------------------------------------------- changes
def _apply(g: Graph, trace: Trace, reqs: Requests | None, ch: Change) -> _Params:
    p = _params(g)
    api_nodes = g.c_kind == 0

    def name_mask(mask: np.ndarray, pred) -> np.ndarray:
        return mask & id_mask(g.c_name, name_ids(trace, g.c_name[mask], pred))

    def drop_wait(nodes: np.ndarray):
        nodes = nodes[p.c_wait_op[nodes] >= 0]
        p.c_wait_op[nodes] = -1
        p.c_dur[nodes] = g.c_dmin[nodes]

    if ch.remove_syncs:
        if reqs is None:
            raise ValueError("remove_syncs needs the requests")
        sync_named = name_mask(api_nodes, lambda n: n.startswith(SYNC_CALLS))
        nodes = _avoidable_waits(g, reqs, p, sync_named)
        drop_wait(nodes)
        gone = nodes[sync_named[nodes]]            # a synchronize call removed from the program costs nothing
        p.c_wait_op[gone] = -1
        p.c_dur[gone] = 0
    if ch.remove_wait_rows is not None:
        rows = np.asarray(ch.remove_wait_rows, np.int64)
        drop_wait(np.flatnonzero(api_nodes & np.isin(g.c_row, rows)))
    for t, rows in ch.remove_cpu_rows.items():
        if t not in ("api_calls", "os_calls"):
            raise ValueError(f"remove_cpu_rows: {t!r} is not api_calls or os_calls")
        rows = np.asarray(rows, np.int64)
        kind = 0 if t == "api_calls" else 1
        sel = (g.c_kind == kind) & np.isin(g.c_row, rows)
        p.c_wait_op[sel] = -1
        p.c_dur[sel] = 0
        # a call that is not a node of its own is CPU time before the next node of its thread: take it from there
        tab = trace.table(t)
        # np.setdiff1d's np.unique takes numpy's slow hash path (model/arrays.py): a membership mask, then uniq
        rest = uniq(rows[~id_mask(rows, g.c_row[g.c_kind == kind])])
        if len(rest):
            k = g.node_at(tab["tid"][rest], tab["start_ns"][rest])
            nxt = k + 1
            ok = (k >= 0) & (nxt < g.n_cpu)
            ok &= g.c_chain[np.clip(nxt, 0, g.n_cpu - 1)] == g.c_chain[np.clip(k, 0, None)]
            ok &= tab["start_ns"][rest] >= g.c_end[np.clip(k, 0, None)]       # not nested inside node k
            dur = (tab["end_ns"][rest] - tab["start_ns"][rest]).astype(np.int64)
            np.subtract.at(p.c_gap, nxt[ok], dur[ok])
            np.maximum(p.c_gap, 0, out=p.c_gap)
    if ch.remove_lock_waits:
        # model/activity.py's lock family (CPython's threading.Lock waits in sem_wait/sem_clockwait)
        sel = name_mask(g.c_kind == 1, lambda n: n.lstrip("_").startswith(LOCK_CALLS))
        p.c_dur[sel] = 0
    for pat, factor in ch.kernel_factor:
        k = g.g_table == KERNELS
        if isinstance(pat, (str, re.Pattern)):
            kt = trace.table("kernels")
            rx = re.compile(pat, re.I) if isinstance(pat, str) else pat
            ids = uniq(kt["name_id"])
            good = np.array([i for i in ids if rx.search(trace.name(i))], np.int64)
            hit = np.isin(kt["name_id"], good)
            sel = k & hit[np.clip(g.g_row, 0, len(hit) - 1)] if len(hit) else k & False
        else:
            sel = k & np.isin(g.g_row, np.asarray(pat, np.int64))
        p.g_dur[sel] = np.rint(p.g_dur[sel] * float(factor)).astype(np.int64)
    if ch.pageable_rate:
        cp = trace.table("copies")
        if table_len(cp):
            pageable = (cp["src_kind"] == PAGEABLE) | (cp["dst_kind"] == PAGEABLE)
            sel = (g.g_table == COPIES) & pageable[np.clip(g.g_row, 0, len(pageable) - 1)]
            nbytes = cp["bytes"][g.g_row[sel]].astype(np.float64)
            p.g_dur[sel] = np.rint(nbytes / float(ch.pageable_rate) * 1e9).astype(np.int64)
            _prefetch(g, p, cp, np.flatnonzero(sel))
    for t, rows, factor in ch.gpu_scale:
        nodes, keep = _gpu_nodes(g, t, rows)
        f = np.broadcast_to(np.asarray(factor, np.float64), (len(keep),))[keep]
        p.g_dur[nodes] = np.rint(p.g_dur[nodes] * f).astype(np.int64)
    for t, rows, by in ch.gpu_shorten:
        nodes, keep = _gpu_nodes(g, t, rows)
        b = np.broadcast_to(np.asarray(by, np.int64), (len(keep),))[keep]
        p.g_dur[nodes] = np.maximum(p.g_dur[nodes] - b, 0)
    for rows, rate, overlap in ch.copy_rate:
        nodes, keep = _gpu_nodes(g, "copies", rows)
        cp = trace.table("copies")
        r = np.broadcast_to(np.asarray(rate, np.float64), (len(keep),))[keep]
        nbytes = cp["bytes"][g.g_row[nodes]].astype(np.float64)
        want = np.rint(nbytes / np.maximum(r, 1.0) * 1e9).astype(np.int64)
        p.g_dur[nodes] = np.minimum(p.g_dur[nodes], want)
        if overlap:
            _prefetch(g, p, cp, nodes)
    for tid, start, end in ch.remove_cpu_windows:
        _cut_windows(g, p, np.asarray(tid, np.int64), np.asarray(start, np.int64), np.asarray(end, np.int64), 1.0,
                     cuda_calls=True)
    if ch.drop_phase:
        _drop_phase(g, trace, p, ch.drop_phase)
    if ch.graph_launch_ns is not None:
        if reqs is None:
            raise ValueError("graph_launch_ns needs the requests")
        _graph(g, trace, reqs, p, int(ch.graph_launch_ns), name_mask)
    return p


def _prefetch(g: Graph, p: _Params, cp, nodes) -> None:
    """These copy nodes move from/to pinned buffers on a side stream: input copies no longer wait for earlier work
    on their stream (prefetched); result copies still follow the work that produced them. The copy call no longer
    blocks the thread: a call that staged a pageable copy (the DMA through the driver's bounce buffer, the CPU's
    own copy into or out of it, page faults of fresh host memory) now only enqueues, at what a launch call costs in
    this profile. A read-back (device to host) that its call waited through is still waited for by it, returning
    when the copy ends (the host asked for those bytes): the fix's one event wait before the result is read."""
    p.g_free[nodes] = cp["kind"][g.g_row[nodes]] == HTOD
    launched = p.g_launch[nodes] >= 0
    nodes = nodes[launched]
    callers = p.g_launch[nodes]
    if len(callers) == 0:
        return
    rows = g.g_row[nodes]
    staged = (cp["src_kind"][rows] == PAGEABLE) | (cp["dst_kind"][rows] == PAGEABLE)
    # a read-back its call waited through in the recording (a call that returned before its copy ended is waited
    # for by a later sync, if at all)
    back = (cp["kind"][rows] == DTOH) & (g.g_end[nodes] <= g.c_end[callers]) & (g.g_ready[nodes] <= g.c_end[callers])
    cost = np.where(staged, np.minimum(g.c_dmin[callers], _enqueue_ns(g, cp)), g.c_dmin[callers])
    # a staged copy's recorded tail is the CPU finishing the last chunk: a pinned read-back wakes up like a sync
    tail = np.where(staged | (g.c_wait_op[callers] != nodes), _wake_up_ns(g, cp), g.c_tail[callers])
    # the wait stays unless this change removed it already (a sync found avoidable: cuda_sync's fix combined)
    removed = (g.c_wait_op[callers] >= 0) & (p.c_wait_op[callers] < 0)
    back &= ~removed
    p.c_wait_op[callers] = np.where(back, nodes, -1)
    p.c_dmin[callers] = cost
    p.c_tail[callers] = np.where(back, tail, p.c_tail[callers])
    p.c_dur[callers] = cost


def _staged_callers(g: Graph, cp) -> np.ndarray:
    """Per CPU node: it launched a pageable (staged) copy."""
    out = np.zeros(g.n_cpu, bool)
    sel = np.flatnonzero((g.g_table == COPIES) & (g.g_launch >= 0))
    if len(sel):
        rows = g.g_row[sel]
        pag = (cp["src_kind"][rows] == PAGEABLE) | (cp["dst_kind"][rows] == PAGEABLE)
        out[g.g_launch[sel][pag]] = True
    return out


def _enqueue_ns(g: Graph, cp) -> int:
    """CPU cost of a call that only enqueues GPU work: the median of this profile's launch calls (those that launched
    an operation, waited for none and staged no copy), else the cost of a call that did not wait
    (WAIT_CALL_FALLBACK_NS)."""
    launchers = np.zeros(g.n_cpu, bool)
    launchers[g.g_launch[g.g_launch >= 0]] = True
    launchers &= (g.c_wait_op < 0) & ~_staged_callers(g, cp)
    dur = (g.c_end - g.c_start)[launchers]
    return int(median(dur)) if len(dur) >= MIN_SAMPLES else WAIT_CALL_FALLBACK_NS


def _wake_up_ns(g: Graph, cp) -> int:
    """A host wait's end after its GPU work ends: the median of this profile's waits but staged copies (whose tail is
    CPU copying), else WAKE_UP_FALLBACK_NS."""
    real = (g.c_wait_op >= 0) & ~_staged_callers(g, cp)
    return int(median(g.c_tail[real])) if real.sum() >= MIN_SAMPLES else WAKE_UP_FALLBACK_NS


def _avoidable_waits(g: Graph, reqs: Requests, p: _Params, sync_named: np.ndarray) -> np.ndarray:
    """Wait nodes and synchronize calls inside a request (on its thread, between its start and end), but the last
    wait of each request."""
    rt = reqs.table
    k0 = g.node_at(rt["tid"], rt["start_ns"])
    k1 = g.node_at(rt["tid"], rt["end_ns"])
    is_wait = p.c_wait_op >= 0
    waits = np.flatnonzero(is_wait | sync_named)
    out = []
    for r in range(reqs.count):
        a, b = int(k0[r]) + 1, int(k1[r])
        if b < 0:
            continue
        lo, hi = np.searchsorted(waits, a), np.searchsorted(waits, b, side="right")
        mine = waits[lo:hi]
        mine = mine[g.c_start[mine] >= rt["start_ns"][r]]
        real = np.flatnonzero(is_wait[mine])
        if len(real):
            mine = np.delete(mine, real[-1])
        out.append(mine)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _gpu_nodes(g: Graph, table: str, rows) -> tuple[np.ndarray, np.ndarray]:
    """Graph operation indices of these rows of a GPU table, and which of the given rows have one."""
    if table not in GPU_TABLES:
        raise ValueError(f"{table!r} is not a GPU table ({', '.join(GPU_TABLES)})")
    rows = np.asarray(rows, np.int64)
    sel = np.flatnonzero(g.g_table == GPU_TABLES.index(table))
    if len(sel) == 0 or len(rows) == 0:
        return np.zeros(0, np.int64), np.zeros(len(rows), bool)
    inv = np.full(int(max(g.g_row[sel].max(), rows.max())) + 1, -1, np.int64)
    inv[g.g_row[sel]] = sel
    node = inv[np.clip(rows, 0, None)]
    keep = (rows >= 0) & (node >= 0)
    return node[keep], keep


def _drop_phase(g: Graph, trace: Trace, p: _Params, phases: dict):
    r = trace.table("ranges")
    for name, share in phases.items():
        sel = r["name"] == name
        if not sel.any():
            raise ValueError(f"no NVTX range named {name!r}")
        _cut_windows(g, p, r["tid"][sel], r["start_ns"][sel], r["end_ns"][sel], float(share))


def _cut_windows(g: Graph, p: _Params, tid: np.ndarray, start: np.ndarray, end: np.ndarray, share: float,
                 cuda_calls: bool = False):
    """Remove `share` of the CPU time inside these windows of these threads: the gaps between nodes and the OS
    runtime calls kept as nodes (file reads and sleeps go with the windows); with `cuda_calls`, also the CUDA calls
    wholly inside that launch no GPU work (their waits too when all of it goes). Launch calls stay."""
    from .graph import _chain_of, _chain_time_key
    if len(start) == 0 or g.n_cpu == 0:
        return
    ch = _chain_of(g.chain_tid, tid)
    ok = ch >= 0
    if not ok.any():
        return
    us, ue = union(_chain_time_key(ch[ok], start[ok], g.span), _chain_time_key(ch[ok], end[ok], g.span))
    # gaps: [end of previous node, start of this node] on the same chain
    lo = np.empty(g.n_cpu, np.int64)
    lo[1:] = g.c_end[:-1]
    lo[0] = g.c_start[0]
    first = g.chain_lo[:-1][g.chain_lo[:-1] < g.n_cpu]
    lo[first] = g.c_start[first]
    kl = _chain_time_key(g.c_chain, lo, g.span)
    kh = _chain_time_key(g.c_chain, g.c_start, g.span)
    cut = covered(us, ue, kl, np.maximum(kh, kl))
    p.c_gap = np.maximum(p.c_gap - np.rint(cut * share).astype(np.int64), 0)
    osn = g.c_kind == 1
    inside = covered(us, ue, _chain_time_key(g.c_chain, g.c_start, g.span),
                     _chain_time_key(g.c_chain, g.c_end, g.span))
    p.c_dur[osn] = np.maximum(p.c_dur[osn] - np.rint(inside[osn] * share).astype(np.int64), 0)
    if cuda_calls:
        # CUDA calls wholly inside that launch nothing (allocation, frees, syncs) go with the windows; launches stay
        launches = np.zeros(g.n_cpu, bool)
        launches[g.g_launch[g.g_launch >= 0]] = True
        whole = (g.c_kind == 0) & ~launches & (inside >= (g.c_end - g.c_start)) & (g.c_end > g.c_start)
        if share >= 1.0:
            p.c_wait_op[whole] = -1
        p.c_dur[whole] = np.maximum(p.c_dur[whole] - np.rint(inside[whole] * share).astype(np.int64), 0)


def _os_time_in_gaps(g: Graph, trace: Trace) -> np.ndarray:
    """Per CPU node: the OS runtime call time (not kept as nodes: sleeps, reads, ...) inside the gap before it."""
    from .graph import _chain_of, _chain_time_key
    out = np.zeros(g.n_cpu, np.int64)
    osc = trace.table("os_calls")
    if table_len(osc) == 0 or g.n_cpu == 0:
        return out
    ch = _chain_of(g.chain_tid, osc["tid"])
    ok = ch >= 0
    if not ok.any():
        return out
    us, ue = union(_chain_time_key(ch[ok], osc["start_ns"][ok], g.span),
                   _chain_time_key(ch[ok], osc["end_ns"][ok], g.span))
    lo = np.empty(g.n_cpu, np.int64)
    lo[1:] = g.c_end[:-1]
    lo[0] = g.c_start[0]
    first = g.chain_lo[:-1][g.chain_lo[:-1] < g.n_cpu]
    lo[first] = g.c_start[first]
    kl = _chain_time_key(g.c_chain, lo, g.span)
    kh = _chain_time_key(g.c_chain, g.c_start, g.span)
    return covered(us, ue, kl, np.maximum(kh, kl))


def _graph(g: Graph, trace: Trace, reqs: Requests, p: _Params, cost: int, name_mask):
    launch = name_mask(g.c_kind == 0, lambda n: any(s in n for s in LAUNCH_CALLS)) & (p.c_wait_op < 0)
    rt = reqs.table
    k0 = g.node_at(rt["tid"], rt["start_ns"])
    k1 = g.node_at(rt["tid"], rt["end_ns"])
    idx = np.flatnonzero(launch)
    os_gap = _os_time_in_gaps(g, trace)
    for r in range(reqs.count):
        a, b = int(k0[r]), int(k1[r])
        if a < 0 or b < 0:
            continue
        mine = idx[np.searchsorted(idx, a):np.searchsorted(idx, b, side="right")]     # idx is sorted
        mine = mine[g.c_start[mine] >= rt["start_ns"][r]]
        if len(mine) < 2:
            continue
        f, l = int(mine[0]), int(mine[-1])
        run = np.arange(f, l + 1)
        keep = p.c_wait_op[run] >= 0               # waits inside the run stay (a graph cannot hold a sync)
        z = run[~keep]
        p.c_dur[z] = 0
        # the CPU time between launches is the framework's dispatch, which a graph replay skips, up to
        # GRAPH_DISPATCH_MAX_NS; OS runtime calls (sleeps, reads) and longer own work stay: no graph captures them
        gap = p.c_gap[f + 1:l + 1]
        rest = np.maximum(gap - os_gap[f + 1:l + 1], 0)
        stays = np.minimum(os_gap[f + 1:l + 1], gap) + np.where(rest > GRAPH_CAPTURED_GAP_MAX_NS, rest, 0)
        p.c_gap[f + 1:l + 1] = np.where(keep[1:] | keep[:-1], gap, stays)
        # a graph cannot hold a host wait: the launches between two waits are one graph each, one launch cost each
        seg = ~keep & np.r_[True, keep[:-1]]
        p.c_dur[run[seg]] = cost
    # operations launched by a zeroed launch call run back to back, as a graph's nodes do
    ops = np.flatnonzero(np.isin(p.g_launch, idx) & (p.c_dur[np.clip(p.g_launch, 0, None)] == 0))
    p.g_dl[ops] = np.minimum(p.g_dl[ops], g.nominal_launch_ns)
    p.g_ds[ops] = np.minimum(p.g_ds[ops], GRAPH_NODE_GAP_NS)
    p.g_launch_off[ops] = 0


# ---------------------------------------------------------------------------------------------- requests
def _map_times(g: Graph, cs2, ce2, tid: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A recorded time on a thread, moved with the node it falls in or follows (inside a call: the same offset from
    its start, clipped to its new length; in a gap: the same offset from the previous end, clipped to the next start)."""
    k = g.node_at(tid, t)
    out = t.astype(np.int64).copy()
    ok = k >= 0
    kk = k[ok]
    tt = t[ok].astype(np.int64)
    inside = tt <= g.c_end[kk]
    moved = np.where(inside, cs2[kk] + np.minimum(tt - g.c_start[kk], ce2[kk] - cs2[kk]),
                     ce2[kk] + (tt - g.c_end[kk]))
    nxt = np.minimum(kk + 1, g.n_cpu - 1)
    same = (kk + 1 < g.n_cpu) & (g.c_chain[nxt] == g.c_chain[kk]) & ~inside
    moved = np.where(same, np.minimum(moved, cs2[nxt]), moved)
    out[ok] = moved
    return out


def _outcome(g: Graph, reqs: Requests, cs2, ce2, gs2, ge2) -> Outcome:
    rt = reqs.table
    n = reqs.count
    start = _map_times(g, cs2, ce2, rt["tid"], rt["start_ns"])
    end = _map_times(g, cs2, ce2, rt["tid"], rt["end_ns"])
    gend = np.full(n, NEVER, np.int64)
    for ti, t in enumerate(GPU_TABLES):
        rq = reqs.gpu_request.get(t)
        if rq is None or len(rq) == 0:
            continue
        sel = g.g_table == ti
        r = rq[g.g_row[sel]]
        m = r >= 0
        np.maximum.at(gend, r[m], ge2[sel][m])
    finish = np.maximum(end, gend)
    return Outcome(c_start=cs2, c_end=ce2, g_start=gs2, g_end=ge2, latency_ns=finish - start, start_ns=start,
                   finish_ns=finish, measured=reqs.measured)


def replay(trace: Trace, reqs: Requests, change: Change | None = None, graph: Graph | None = None) -> Outcome:
    """Replay the trace's graph (built once per trace and cached) with `change` applied (None: unchanged)."""
    g = graph if graph is not None else graph_of(trace, reqs)
    if change is not None and change.stream_per_thread:
        g = _per_thread_streams(g)
    p = _apply(g, trace, reqs, change) if change is not None else _params(g)
    return _outcome(g, reqs, *_run(g, p))


def _per_thread_streams(g: Graph) -> Graph:
    """The graph with every stream split by the thread that launched its operations (operations without a launch
    keep a group of their own): FIFO order and stream gaps only between one thread's operations."""
    import dataclasses
    n = g.n_gpu
    if n == 0:
        return g
    lc = np.where(g.g_launch >= 0, g.c_chain[np.clip(g.g_launch, 0, None)], -1).astype(np.int64)
    key = g.g_chain.astype(np.int64) * (len(g.chain_tid) + 1) + (lc + 1)
    uk, new_chain = np.unique(key, return_inverse=True)
    new_chain = new_chain.ravel().astype(np.int64)
    if len(uk) == len(g.stream_lo) - 1:
        return g                                      # no stream is shared by threads
    o = np.lexsort((g.g_start, new_chain))
    inv = np.empty(n, np.int64)
    inv[o] = np.arange(n)
    nc = new_chain[o]
    stream_lo = np.searchsorted(nc, np.arange(len(uk) + 1))
    # the predecessor of each operation on its new stream, in old indices (-1: first)
    first = np.zeros(n, bool)
    first[stream_lo[:-1][stream_lo[:-1] < n]] = True
    pred_new = np.where(first, -1, o[np.clip(np.arange(n) - 1, 0, None)])
    old_pred = o - 1                                   # its predecessor on the old stream (same chain if >= lo)
    same_old = (old_pred >= 0) & (g.g_chain[np.clip(old_pred, 0, None)] == g.g_chain[o])
    kept = same_old & (pred_new == old_pred)
    g_ds = g.g_ds[o].copy()
    moved = ~kept & ~first
    g_ds[moved] = np.minimum(g_ds[moved], g.nominal_gap_ns)
    g_ds[first] = 0
    g_fixed = g.g_fixed[o].copy()
    nolaunch = g.g_launch[o] < 0
    g_fixed[nolaunch & ~kept & (g_fixed == NEVER) & (g.g_xop[o] < 0)] = g.g_start[o][nolaunch & ~kept
                                                                                       & (g_fixed == NEVER)
                                                                                       & (g.g_xop[o] < 0)]
    g_xop = np.where(g.g_xop[o] >= 0, inv[np.clip(g.g_xop[o], 0, None)], -1)
    # host waits on another thread's operation: on this thread's latest operation of that stream launched before
    # the wait (if any), else none
    c_wait_op = g.c_wait_op.copy()
    w = np.flatnonzero(c_wait_op >= 0)
    if len(w):
        op = c_wait_op[w]
        other = lc[op] != g.c_chain[w]
        if other.any():
            ww, oo = w[other], op[other]
            tgt = np.full(len(ww), -1, np.int64)
            # candidate: same old stream, launched by the waiting chain, launch node before the wait node
            for i, (node, opi) in enumerate(zip(ww.tolist(), oo.tolist())):
                s = int(g.g_chain[opi])
                lo, hi = int(g.stream_lo[s]), int(g.stream_lo[s + 1])
                cand = np.flatnonzero((lc[lo:hi] == g.c_chain[node]) & (g.g_launch[lo:hi] <= node)
                                      & (g.g_launch[lo:hi] >= 0)) + lo
                if len(cand):
                    tgt[i] = cand[np.argmax(g.g_end[cand])]
            c_wait_op[ww] = tgt
        c_wait_op = np.where(c_wait_op >= 0, inv[np.clip(c_wait_op, 0, None)], -1)
    return dataclasses.replace(
        g, g_chain=nc, g_start=g.g_start[o], g_end=g.g_end[o], g_table=g.g_table[o], g_row=g.g_row[o],
        g_launch=g.g_launch[o], g_launch_off=g.g_launch_off[o], g_launch_row=g.g_launch_row[o], g_dl=g.g_dl[o],
        g_ds=g_ds, g_fixed=g_fixed, g_xop=g_xop, g_dx=g.g_dx[o], g_ready=g.g_ready[o], stream_lo=stream_lo,
        stream_key=g.stream_key[g.g_chain[o][stream_lo[:-1][stream_lo[:-1] < n]]], c_wait_op=c_wait_op)


def graph_of(trace: Trace, reqs: Requests) -> Graph:
    g = trace._cache.get("_replay_graph")
    if g is None:
        g = build(trace, threads=reqs.table["tid"])
        trace._cache["_replay_graph"] = g
    return g


def recorded(reqs: Requests) -> tuple[np.ndarray, float]:
    """Per-request latency and the mean request interval as recorded (the same definitions as Outcome)."""
    rt = reqs.table
    m = reqs.measured
    finish = rt["start_ns"] + rt["latency_ns"]
    iv = float(finish[m].max() - rt["start_ns"][m].min()) / len(m) if len(m) else float("nan")
    return rt["latency_ns"], iv
