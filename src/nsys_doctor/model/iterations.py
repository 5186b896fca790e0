"""Requests without NVTX: infer the repeating unit of work from the synchronisation that ends each iteration.

An inference loop without annotations still has a rhythm on its launching thread: each iteration ends by waiting for
the GPU (a stream/device synchronize or a blocking copy back to the host, as `.cpu()` or `.item()` do). We take the
blocking call that repeats most regularly; iteration i runs from the end of sync i-1 to the end of sync i.
If nothing repeats, the whole GPU-active window is one unit of work.
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
    best = None
    if len(ends) > MIN_ITERATIONS:
        # launches between consecutive blocking calls: an iteration's segment launches the whole model, set-up
        # segments (weight uploads, one copy per sync) and mid-iteration waits launch few
        l_t = np.sort(api["start_ns"][mine & launch])
        per = np.diff(np.searchsorted(l_t, ends))
        vals, freq = np.unique(per[per >= MIN_LAUNCHES], return_counts=True)
        if len(vals):
            ok = freq >= MIN_ITERATIONS
            if ok.any():
                mode = vals[ok][np.argmax(vals[ok] * (freq[ok] >= freq[ok].max() * 0.5))]
                heavy = np.abs(per - mode) <= max(1, SEGMENT_TOLERANCE * mode)
                it_ends = ends[1:][heavy]
                period = np.diff(it_ends)
                cv = float(period.std() / period.mean()) if len(period) and period.mean() > 0 else 9.0
                if len(it_ends) > MIN_ITERATIONS and cv <= MAX_PERIOD_CV:
                    nid = api["name_id"][blocking][np.argmin(np.abs(api["end_ns"][blocking] - it_ends[-1]))]
                    best = (nid, it_ends, cv, int(mode))
    if best is None:
        first = api["start_ns"][launch].min()
        last = max(int(trace.table(t)["end_ns"].max()) for t in ("kernels", "copies", "memsets", "graphs")
                   if trace.has(t))
        inst = {"start_ns": np.array([first]), "end_ns": np.array([last]), "tid": np.array([tid]),
                "name": np.array(["whole GPU-active window"], object), "domain": np.array([""], object)}
        return inst, "(whole GPU-active window)", ("no NVTX ranges and no repeating synchronisation: "
                                                   "the whole GPU-active window is analysed as one unit")
    nid, ends, cv, mode = best
    # the first iteration starts at the first launch before the first sync
    starts = ends[:-1]
    inst = {"start_ns": starts, "end_ns": ends[1:], "tid": np.full(len(starts), tid),
            "name": np.full(len(starts), "iteration", object), "domain": np.full(len(starts), "", object)}
    name = base_name(trace.name(nid))     # the spelling the findings use (no _v3020 suffix)
    return inst, f"(iterations ending in {name})", (
        f"inferred: no NVTX request ranges; {len(starts)} iterations on {trace.thread_name(tid)}, each ending in "
        f"{name} after {mode} launches (period {median(np.diff(ends)) / 1e6:.1f} ms, spread {cv:.2f})")
