"""A window of consecutive requests cut out of a trace, for replaying a profile too large to replay whole.

The window is a Trace of its own whose tables hold only the rows that start inside the window's time span, and a
Requests of its own holding only the window's requests (a few lead-in requests first, counted as warm-up so that the
state the window starts in, e.g. a queue of earlier work, is replayed too but not measured). The graph of the window
is built and replayed like any trace's (model/graph.py, model/replay.py): unchanged it gives back the window's
recording exactly. A change, whose rows name rows of the whole trace, is translated to the window's rows by
`change_in` (rows outside the window are dropped), field by field as each field of model.replay.Change declares.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .arrays import is_sorted
from .graph import QUICKEST_CALLS, quickest_calls
from .projection import GPU_TABLES
from .replay import ROWS, Rows
from .requests import Requests
from .trace import Trace, table_len, take

# The tables the graph and the replay read rows of (model/graph.py, model/replay.py); any other table is the
# whole trace's.
WINDOWED = ("api_calls", "os_calls", "syncs", "ranges") + GPU_TABLES
# Requests replayed before the window's first measured one and not measured: a tenth of the window (at least 2),
# enough for a backlog of queued GPU work to build up again under the change (zoo launch_bound_graphed queues ~2.5
# requests deep when the CPU outruns the GPU).
LEAD_IN_SHARE = 0.1
LEAD_IN_MIN = 2


@dataclass
class Window:
    trace: Trace                 # the window's tables
    reqs: Requests               # the window's requests; reqs.warmup = the lead-in
    first: int                   # index (in the whole run's requests) of the first measured request of the window
    last: int                    # ... and of the last one (inclusive)
    lead_in: int                 # requests replayed before `first`, not measured
    total: int                   # requests in the whole run
    rows: dict                   # table -> (lo, hi) slice of the whole table, or a sorted index array

    def rows_in(self, table: str, rows) -> tuple[np.ndarray, np.ndarray]:
        """The window's row numbers of these rows of a whole-trace table, and which of the given rows are in it."""
        rows = np.asarray(rows, np.int64)
        sel = self.rows.get(table)
        if sel is None:
            return rows, np.ones(len(rows), bool)
        if isinstance(sel, tuple):
            keep = (rows >= sel[0]) & (rows < sel[1])
            return rows[keep] - sel[0], keep
        pos = np.clip(np.searchsorted(sel, rows), 0, max(len(sel) - 1, 0))
        keep = (sel[pos] == rows) if len(sel) else np.zeros(len(rows), bool)
        return pos[keep], keep


def pick(reqs: Requests, events: int, budget: int) -> tuple[int, int, int]:
    """(lead-in start, first, last+1) request indices of a window of about `budget` events (CUDA calls and GPU
    operations, `events` in the whole trace, spread evenly over the requests) in the middle of the measured
    requests: the steady state, away from the warm-up and the run's end."""
    m = reqs.measured
    per = events / max(reqs.count, 1)
    k = int(min(len(m), max(1, budget // max(per, 1.0))))
    a = int(m[0]) + (len(m) - k) // 2
    lead = max(LEAD_IN_MIN, int(k * LEAD_IN_SHARE))
    return max(0, a - lead), a, a + k


def cut(trace: Trace, reqs: Requests, a0: int, a: int, b: int) -> Window:
    """The window of requests a0..b-1 (a0..a-1 replayed as lead-in): every windowed table's rows starting between
    request a0's start and the end of the last request's work (its range or its GPU work, whichever ends later)."""
    rt = reqs.table
    lo = int(rt["start_ns"][a0])
    hi = int(np.maximum(rt["end_ns"][a0:b], rt["gpu_end_ns"][a0:b]).max())
    rows: dict = {}
    # every other table is the whole trace's, as loaded there (never read again)
    loaders = {name: (lambda name=name: trace.table(name)) for name in trace.loaders}
    for name in WINDOWED:
        if name not in trace.loaders:
            continue
        full = trace.table(name)
        if table_len(full) == 0 or "start_ns" not in full:
            continue
        s = full["start_ns"]
        if is_sorted(s):                           # the usual case: a slice, no copy
            sel = (int(np.searchsorted(s, lo, side="left")), int(np.searchsorted(s, hi, side="right")))
            index = slice(*sel)
        else:
            sel = np.flatnonzero((s >= lo) & (s <= hi))
            index = sel
        rows[name] = sel
        part = take(full, index)
        loaders[name] = (lambda part=part: part)
    sub = Trace(path=trace.path, source=trace.source, meta=trace.meta, loaders=loaders, absent=trace.absent,
                strings=trace.strings, ids=trace.ids, enums=trace.enums)
    # the quickest call of each blocking name, a statistic of the whole trace (model/graph.py says why)
    sub._cache[QUICKEST_CALLS] = quickest_calls(trace)
    win = Window(trace=sub, reqs=reqs, first=a, last=b - 1, lead_in=a - a0, total=reqs.count, rows=rows)
    # the window's requests, and the projection of the window's rows onto them
    def renumber(r):
        r = np.asarray(r, np.int64)
        return np.where((r >= a0) & (r < b), r - a0, -1)

    def rows_of(name, col):
        sel = rows.get(name)
        if sel is None:
            return col[:0] if table_len(trace.table(name)) == 0 else col
        return col[slice(*sel)] if isinstance(sel, tuple) else col[sel]
    gpu = {t: renumber(rows_of(t, v)) for t, v in reqs.gpu_request.items()}
    api = renumber(rows_of("api_calls", reqs.api_request)) if len(reqs.api_request) else reqs.api_request
    win.reqs = dataclasses.replace(reqs, table={k: v[a0:b] for k, v in rt.items()}, warmup=a - a0,
                                   candidates=[], api_request=api, gpu_request=gpu)
    return win


def change_in(ch, win: Window):
    """A model.replay.Change whose rows name whole-trace rows, with the window's rows instead (rows outside the
    window dropped, with their per-row values). Which fields name rows, and how, each field of Change declares
    (model/replay.py ROWS); a field without a declaration is an error here, not a change applied to the wrong rows."""
    rep = {}
    for f in dataclasses.fields(ch):
        if ROWS not in f.metadata:
            raise TypeError(f"Change.{f.name} does not declare whether it names rows (model/replay.py ROWS)")
        layout = f.metadata[ROWS]
        if layout is not None:
            rep[f.name] = _rows_in(getattr(ch, f.name), layout, win)
    return dataclasses.replace(ch, **rep)


def _per_row(values, keep):
    v = np.asarray(values)
    return v[keep] if v.ndim and len(v) == len(keep) else values


def _rows_in(value, layout: Rows, win: Window):
    """One field's value with the window's rows (replay.Rows says where its rows are)."""
    if layout.kind == "array":
        return None if value is None else win.rows_in(layout.table, value)[0]
    if layout.kind == "by_table":
        return {t: win.rows_in(t, r)[0] for t, r in value.items()}
    if layout.kind != "entries":
        raise TypeError(f"no window rule for a Rows of kind {layout.kind!r}")
    out = []
    for entry in value:
        rows = entry[layout.at]
        if isinstance(rows, str) or hasattr(rows, "pattern"):     # a name pattern: no rows
            out.append(entry)
            continue
        table = layout.table if layout.table_at is None else entry[layout.table_at]
        new, keep = win.rows_in(table, rows)
        e = list(entry)
        e[layout.at] = new
        for j in layout.per_row:
            e[j] = _per_row(entry[j], keep)
        out.append(tuple(e))
    return out
