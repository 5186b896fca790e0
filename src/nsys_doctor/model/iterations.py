"""Requests without NVTX: infer the repeating unit of work from the synchronisation that ends each iteration.

An inference loop without annotations still has a rhythm on its launching thread: each iteration ends by waiting for
the GPU (a stream/device synchronize or a blocking copy back to the host, as `.cpu()` or `.item()` do). We take the
blocking call that repeats most regularly; iteration i runs from the end of iteration i-1's sync to the end of its
own (the loop's period: a data wait or a host-to-device input copy before the first launch belongs to the iteration).
The first iteration has no predecessor: it starts where the thread's previous wait ended, as many blocking calls back
as an iteration usually spans, or at its first launch when there is none. If nothing repeats, the whole GPU-active
window is one unit of work.
"""
from __future__ import annotations

import numpy as np

from .api_names import SYNC_CALLS, base_name
from .trace import Table, Trace, table_len
from .arrays import median

# waits that can end an iteration: explicit syncs and the blocking copies `.cpu()` / `.item()` make
BLOCKING_CALLS = SYNC_CALLS + ("cudaMemcpy_", "cudaMemcpy2D_", "cuMemcpyDtoH")
MIN_ITERATIONS = 5           # fewer repeats is no loop
MIN_LAUNCHES = 3             # an iteration launches a model (kernels and copies), more than a weight upload does
SEGMENT_TOLERANCE = 0.1      # iterations of a fixed model launch the same number of times, within 10%
MAX_PERIOD_CV = 1.0          # period spread (std/mean) above which the sync points are not a loop's rhythm


def no_cuda_message(trace: Trace) -> str:
    """Why there is nothing to analyse, in the user's terms, with nsys's own explanation when it left one."""
    ranges = table_len(trace.table("ranges"))
    api = table_len(trace.table("api_calls"))
    if api == 0:
        what = "no CUDA activity recorded (the profile was taken without --trace=cuda, or the program used no GPU)"
    else:
        what = f"no GPU work recorded ({api} CUDA API calls but no kernels or copies)"
    if ranges:
        what += f"; it holds {ranges} NVTX ranges, but nothing they could be measured against"
    said = [d for d in trace.meta.get("diagnostics", []) if "CUDA" in d or "root" in d or "Unable" in d]
    if said:
        what += f"; nsys noted: {' '.join(said[0].split())}"   # its messages span lines; ours is one
    return what


def infer_iterations(trace: Trace) -> tuple[Table, str, str]:
    from ..errors import NoData
    from .projection import launch_calls, sync_name_ids
    api = trace.table("api_calls")
    if table_len(api) == 0 or not launch_calls(trace).any():
        raise NoData(trace.path, no_cuda_message(trace))
    launch = launch_calls(trace)
    # the thread that launches most GPU work serves the requests
    tids, counts = np.unique(api["tid"][launch], return_counts=True)
    tid = tids[np.argmax(counts)]
    mine = api["tid"] == tid
    blocking = mine & np.isin(api["name_id"], sync_name_ids(trace, BLOCKING_CALLS))
    ends = np.sort(api["end_ns"][blocking])
    l_t = np.sort(api["start_ns"][mine & launch])
    best = None
    if len(ends) > MIN_ITERATIONS:
        # launches in each segment up to a blocking call (the first segment from the thread's first launch): an
        # iteration's segment launches the whole model, set-up segments (weight uploads, one copy per sync) and
        # mid-iteration waits launch few
        per = np.diff(np.r_[0, np.searchsorted(l_t, ends)])
        vals, freq = np.unique(per[per >= MIN_LAUNCHES], return_counts=True)
        if len(vals):
            ok = freq >= MIN_ITERATIONS
            if ok.any():
                mode = vals[ok][np.argmax(vals[ok] * (freq[ok] >= freq[ok].max() * 0.5))]
                heavy = np.flatnonzero(np.abs(per - mode) <= max(1, SEGMENT_TOLERANCE * mode))
                it_ends = ends[heavy]
                period = np.diff(it_ends)
                cv = float(period.std() / period.mean()) if len(period) and period.mean() > 0 else 9.0
                if len(it_ends) > MIN_ITERATIONS and cv <= MAX_PERIOD_CV:
                    nid = api["name_id"][blocking][np.argmin(np.abs(api["end_ns"][blocking] - it_ends[-1]))]
                    best = (nid, heavy, cv, int(mode))
    if best is None:
        first = api["start_ns"][launch].min()
        last = max(int(trace.table(t)["end_ns"].max()) for t in ("kernels", "copies", "memsets", "graphs")
                   if trace.has(t))
        inst = {"start_ns": np.array([first]), "end_ns": np.array([last]), "tid": np.array([tid]),
                "name": np.array(["whole GPU-active window"], object), "domain": np.array([""], object)}
        return inst, "(whole GPU-active window)", (f"{_no_ranges(trace)} and no repeating synchronisation: "
                                                   "the whole GPU-active window is analysed as one unit")
    nid, heavy, cv, mode = best
    it_ends = ends[heavy]
    starts = np.empty(len(heavy), np.int64)
    starts[1:] = it_ends[:-1]
    # the first: back as many blocking calls as an iteration usually spans, else from its first launch
    span = int(median(np.diff(heavy)))
    j = heavy[0] - span
    starts[0] = ends[j] if j >= 0 else l_t[0]
    inst = {"start_ns": starts, "end_ns": it_ends, "tid": np.full(len(starts), tid),
            "name": np.full(len(starts), "iteration", object), "domain": np.full(len(starts), "", object)}
    name = base_name(trace.name(nid))     # the spelling the findings use (no _v3020 suffix)
    return inst, f"(iterations ending in {name})", (
        f"inferred: {_no_ranges(trace)}; {len(starts)} iterations on {trace.thread_name(tid)}, each ending in "
        f"{name} after {mode} launches (period {median(np.diff(it_ends)) / 1e6:.1f} ms, spread {cv:.2f})")


def _no_ranges(trace: Trace) -> str:
    """Why NVTX did not give the requests: none recorded, or none that can be one (a user reading "no NVTX" of a
    profile with hundreds of ranges would think the trace lost them)."""
    ranges = trace.table("ranges")
    n = table_len(ranges)
    if n == 0:
        return "no NVTX ranges"
    from .ranges import top_names
    return (f"no eligible NVTX ranges ({n} range{'s' if n != 1 else ''}, none repeats with GPU work launched "
            f"inside it: {top_names(ranges, 4)})")
