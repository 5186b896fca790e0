"""Timeline excerpts for the HTML report and the Perfetto export: what happened around a typical request, the worst
one and the instances the findings cite, as plain data (Report.timeline), small enough to embed.

An excerpt is one window of the profile: lanes (CPU threads: NVTX ranges, CUDA API calls, OS runtime calls that
blocked >= OS_MIN_NS; GPU streams: kernels, copies, memsets, graphs), events `[start_ns, end_ns, name, lane, kind]`
(`lane` indexes the excerpt's `lanes`), a few GPU metric series (downsampled) and markers: finding instances with the
index of their finding. When a window holds more than MAX_EVENTS events, runs of short events close together on one
lane become one block named "N kernels" (kind unchanged, `n` counted in the excerpt's `merged`).
"""
from __future__ import annotations

import numpy as np

from ..model.arrays import is_sorted
from ..model.projection import GPU_TABLES
from ..model.queueing import queue_sentence
from ..model.requests import Requests
from ..model.trace import Trace, table_len
from ..report import Finding

MAX_EVENTS = 5000          # per request excerpt: ~100 B each in JSON, ~0.5 MB
MAX_EXCERPTS = 24          # typical + worst + small windows around finding instances that those do not show
INSTANCE_MAX_EVENTS = 1500 # per instance excerpt: 22 of them stay under ~3 MB
INSTANCE_PAD_NS = 1_000_000  # context around an instance: 1 ms, or the instance's length, or 5% of its request
OS_MIN_NS = 50_000         # OS runtime calls shorter than 50 us are not blocking worth showing (poll loops are ~us)
MARGIN = 0.05              # of the request's latency, shown before and after it for context
METRIC_POINTS = 400        # per series per excerpt: a 1000-px canvas needs no more
METRICS = ("SMs Active", "Tensor Active", "DRAM Read Bandwidth", "DRAM Write Bandwidth")   # substrings of names
KIND_WORD = {"kernel": "kernels", "memcpy": "copies", "memset": "memsets", "graph": "graphs", "cuda_api": "API calls",
             "osrt": "OS calls", "nvtx": "ranges"}


def build_timeline(trace: Trace, requests: Requests, findings: list[Finding]) -> dict:
    t = requests.table
    lat = t["latency_ns"]
    m = requests.measured
    if len(m) == 0:
        return {}
    order = m[np.argsort(lat[m], kind="stable")]
    typical, worst = int(order[(len(order) - 1) // 2]), int(order[-1])
    wanted = [("typical", typical, f"Typical request #{typical} (median latency {lat[typical] / 1e6:.2f} ms)")]
    if worst != typical:
        wanted.append(("worst", worst, f"Worst request #{worst} ({lat[worst] / 1e6:.2f} ms)"))
    if "queue_ns" in t:     # say when a request's latency is mostly waiting behind earlier ones (model/queueing.py)
        wanted = [(kid, r, title + (f": {q}" if (q := queue_sentence(t, r)) else "")) for kid, r, title in wanted]
    windows = [(kid, title, *_request_window(t, r), r, MAX_EVENTS) for kid, r, title in wanted]

    markers = []
    for fi, f in enumerate(findings):
        for ii, inst in enumerate(f.evidence.worst):
            markers.append({"finding": fi, "instance": ii, "start_ns": int(inst.start_ns), "end_ns": int(inst.end_ns),
                            "request": inst.request, "what": inst.what, "category": f.category})
    for mk in markers:   # an instance no excerpt shows yet gets a small one of its own, while there is room
        if len(windows) >= MAX_EXCERPTS:
            break
        if any(lo <= mk["start_ns"] and mk["end_ns"] <= hi for _, _, lo, hi, _, _ in windows):
            continue
        r = mk["request"] if mk["request"] is not None and 0 <= mk["request"] < requests.count else None
        dur = mk["end_ns"] - mk["start_ns"]
        pad = max(dur, INSTANCE_PAD_NS, int(lat[r] * MARGIN) if r is not None else 0)
        title = f"Finding {mk['finding'] + 1}, instance {mk['instance'] + 1}" + (f" (request #{r})" if r is not None
                                                                                 else "")
        windows.append((f"f{mk['finding']}i{mk['instance']}", title, mk["start_ns"] - pad, mk["end_ns"] + pad, r,
                        INSTANCE_MAX_EVENTS))

    excerpts = []
    spans: dict = {}
    for kid, title, lo, hi, r, cap in windows:
        ex = _excerpt(trace, lo, hi, cap, spans)
        ex.update(id=kid, title=title, request=r)
        if r is not None:
            ex.update(request_start_ns=int(t["start_ns"][r]), request_end_ns=int(t["start_ns"][r] + lat[r]))
        ex["markers"] = [mk for mk in markers if mk["end_ns"] >= lo and mk["start_ns"] <= hi]
        for mk in ex["markers"]:
            mk.setdefault("excerpts", []).append(kid)
        excerpts.append(ex)
    return {"event_fields": ["start_ns", "end_ns", "name", "lane", "kind"], "excerpts": excerpts,
            "markers": markers, "os_min_ns": OS_MIN_NS, "max_events": MAX_EVENTS}


def _request_window(t, r: int) -> tuple[int, int]:
    s, e = int(t["start_ns"][r]), int(t["start_ns"][r] + t["latency_ns"][r])
    pad = int((e - s) * MARGIN)
    return s - pad, e + pad


def _in(tab, lo: int, hi: int) -> np.ndarray:
    return (tab["end_ns"] >= lo) & (tab["start_ns"] <= hi)


def _rows_in(tab, lo: int, hi: int, key: str, spans: dict) -> np.ndarray:
    """Ascending indices of the rows where _in(tab, lo, hi). Tables whose starts are sorted (nsys writes them so) are
    searched: no row starting before lo - (longest duration) can reach lo, so only a slice is scanned."""
    s = tab["start_ns"]
    if key not in spans:
        srt = is_sorted(s)
        spans[key] = (srt, max(int((tab["end_ns"] - s).max()), 0) if srt and len(s) else 0)
    srt, longest = spans[key]
    if not srt:
        return np.flatnonzero(_in(tab, lo, hi))
    a = int(np.searchsorted(s, lo - longest, "left"))
    b = int(np.searchsorted(s, hi, "right"))
    return a + np.flatnonzero(tab["end_ns"][a:b] >= lo)


def _lane_index(a: np.ndarray, b: np.ndarray, make) -> np.ndarray:
    """Per row keyed by (a, b): make(a, b) called once per distinct pair (it returns a lane index)."""
    if len(a) == 0:
        return np.zeros(0, np.int64)
    ua, ia = np.unique(a, return_inverse=True)
    ub, ib = np.unique(b, return_inverse=True)
    nb = len(ub)
    uc, ic = np.unique(ia.reshape(-1).astype(np.int64) * nb + ib.reshape(-1), return_inverse=True)
    per = np.array([make(ua[c // nb], ub[c % nb]) for c in uc.tolist()], np.int64)
    return per[ic.reshape(-1)]


def _excerpt(trace: Trace, lo: int, hi: int, cap: int, spans: dict | None = None) -> dict:
    spans = {} if spans is None else spans
    lanes: list[dict] = []
    lane_of: dict[tuple, int] = {}
    parts = []   # (start, end, names, lane index array, kind)

    def lane(key: tuple, name: str, group: str, sort: tuple) -> int:
        if key not in lane_of:
            lane_of[key] = len(lanes)
            lanes.append({"name": name, "group": group, "_sort": sort})
        return lane_of[key]

    def add(tab, idx, names, lanes_idx, kind):
        if len(idx):
            parts.append((tab["start_ns"][idx], tab["end_ns"][idx], names, lanes_idx, kind))

    tnames: dict[int, str] = {}

    def thread(tid) -> str:
        if tid not in tnames:
            tnames[tid] = trace.thread_name(tid)
        return tnames[tid]

    # CPU: NVTX ranges (one lane per nesting depth), CUDA API, long OS runtime calls, per thread
    rg = trace.table("ranges")
    if table_len(rg):
        idx = _rows_in(rg, lo, hi, "ranges", spans)
        depth = _depth(rg["tid"][idx], rg["start_ns"][idx], rg["end_ns"][idx])
        li = _lane_index(rg["tid"][idx], depth, lambda tid, d: lane(
            ("nvtx", int(tid), int(d)), f"{thread(int(tid))} · NVTX" + (f" {d}" if d else ""), "cpu",
            (int(tid), 0, int(d))))
        add(rg, idx, [str(x) for x in rg["name"][idx]], li, "nvtx")
    api = trace.table("api_calls")
    if table_len(api):
        idx = _rows_in(api, lo, hi, "api_calls", spans)
        li = _lane_index(api["tid"][idx], api["driver"][idx], lambda tid, d: lane(
            ("api", int(tid), int(d)), f"{thread(int(tid))} · CUDA " + ("driver" if d else "API"), "cpu",
            (int(tid), 1, int(d))))
        add(api, idx, _names(trace, api["name_id"][idx]), li, "cuda_api")
    os_ = trace.table("os_calls")
    if table_len(os_):
        idx = _rows_in(os_, lo, hi, "os_calls", spans)
        idx = idx[os_["end_ns"][idx] - os_["start_ns"][idx] >= OS_MIN_NS]
        li = _lane_index(os_["tid"][idx], np.zeros(len(idx), np.int64), lambda tid, _: lane(
            ("os", int(tid)), f"{thread(int(tid))} · OS runtime", "cpu", (int(tid), 2, 0)))
        add(os_, idx, _names(trace, os_["name_id"][idx]), li, "osrt")

    # GPU: one lane per (device, stream)
    for name in GPU_TABLES:
        g = trace.table(name)
        if table_len(g) == 0:
            continue
        idx = _rows_in(g, lo, hi, name, spans)
        if len(idx) == 0:
            continue
        li = _lane_index(g["device"][idx], g["stream"][idx], lambda d, s: lane(
            ("gpu", int(d), int(s)), f"GPU {d} · stream {s}", "gpu", (-1, int(d), int(s))))
        if name == "kernels":
            names, kind = _names(trace, g["name_id"][idx]), "kernel"
        elif name == "copies":
            words = {1: "HtoD", 2: "DtoH", 8: "DtoD", 10: "PtoP"}
            names = [f"Memcpy {words.get(int(k), trace.enum('CUDA_MEMCPY_OPER', k))} {_bytes(b)}"
                     for k, b in zip(g["kind"][idx], g["bytes"][idx])]
            kind = "memcpy"
        elif name == "memsets":
            names, kind = [f"Memset {_bytes(b)}" for b in g["bytes"][idx]], "memset"
        else:
            names, kind = [f"CUDA graph {int(x)}" for x in g["graph_id"][idx]], "graph"
        add(g, idx, names, li, kind)

    # lanes in a stable order: CPU threads by tid (NVTX, API, OS), then GPU streams
    perm = sorted(range(len(lanes)), key=lambda i: (lanes[i]["group"] != "cpu", lanes[i]["_sort"]))
    new_index = np.empty(len(lanes), np.int64)
    new_index[perm] = np.arange(len(lanes))
    lanes = [{k: v for k, v in lanes[i].items() if k != "_sort"} for i in perm]
    events, merged = _events(parts, new_index, lo, hi, cap)
    return {"start_ns": int(lo), "end_ns": int(hi), "lanes": lanes, "events": events, "merged": merged,
            "metrics": _metrics(trace, lo, hi)}


def _depth(tid: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Nesting depth of each range among the given ones on the same thread (few ranges per window)."""
    if len(s) == 0:
        return np.zeros(0, np.int64)
    if len(s) > 3000:
        return np.zeros(len(s), np.int64)
    enc = (tid[None, :] == tid[:, None]) & (s[None, :] <= s[:, None]) & (e[None, :] >= e[:, None])
    same = (s[None, :] == s[:, None]) & (e[None, :] == e[:, None])
    earlier = np.arange(len(s))[None, :] < np.arange(len(s))[:, None]
    return (enc & (~same | earlier)).sum(axis=1).astype(np.int64)


def _names(trace: Trace, ids: np.ndarray) -> list[str]:
    uniq, inv = np.unique(ids, return_inverse=True)
    text = trace.names(uniq)
    return [text[i] for i in inv]


def _bytes(b) -> str:
    b = float(b)
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return ""


def _events(parts, new_index: np.ndarray, lo: int, hi: int, cap: int) -> tuple[list, int]:
    if not parts:
        return [], 0
    s = np.concatenate([p[0] for p in parts]).astype(np.int64)
    e = np.concatenate([p[1] for p in parts]).astype(np.int64)
    names = np.array([n for p in parts for n in p[2]], dtype=object)
    ln = new_index[np.concatenate([p[3] for p in parts])]
    kinds = np.concatenate([np.full(len(p[0]), p[4], dtype=object) for p in parts])
    order = np.lexsort((s, ln))
    s, e, names, ln, kinds = s[order], e[order], names[order], ln[order], kinds[order]
    count = np.ones(len(s), np.int64)
    width = max((hi - lo) // cap, 1)
    while len(s) > cap:
        s, e, names, ln, kinds, count = _merge(s, e, names, ln, kinds, count, width)
        width *= 2
    events = [[int(a), int(b), str(n), int(li), str(k)] for a, b, n, li, k in zip(s, e, names, ln, kinds)]
    return events, int((count > 1).sum())


def _merge(s, e, names, ln, kinds, count, width: int):
    """Merge runs of events shorter than `width` that follow each other within `width` on one lane."""
    short = (e - s) < width
    join = np.zeros(len(s), bool)   # event i joins the group of event i-1
    join[1:] = short[1:] & short[:-1] & (ln[1:] == ln[:-1]) & (s[1:] - e[:-1] < width)
    group = np.cumsum(~join) - 1
    n = group[-1] + 1 if len(group) else 0
    gs = np.full(n, np.iinfo(np.int64).max)
    ge = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(gs, group, s)
    np.maximum.at(ge, group, e)
    gc = np.bincount(group, weights=count, minlength=n).astype(np.int64)
    first = np.flatnonzero(~join)
    gk = kinds[first]
    same_kind = np.ones(n, bool)
    diff = np.flatnonzero(kinds[1:] != kinds[:-1]) + 1
    same_kind[group[diff[join[diff]]]] = False
    gk = np.where(same_kind, gk, "mixed")
    gn = names[first].copy()
    multi = gc > 1
    gn[multi] = [f"{c} {KIND_WORD.get(k, 'events')}" for c, k in zip(gc[multi], gk[multi])]
    return gs, ge, gn, ln[first], gk, gc


def _metrics(trace: Trace, lo: int, hi: int) -> list[dict]:
    gm = trace.table("gpu_metrics")
    names = trace.meta.get("gpu_metric_names") or {}
    if table_len(gm) == 0 or not names:
        return []
    a, b = np.searchsorted(gm["start_ns"], [lo, hi])
    if b <= a:
        return []
    ts, mid, val, gpu = gm["start_ns"][a:b], gm["metric"][a:b], gm["value"][a:b], gm["gpu"][a:b]
    gpus, counts = np.unique(gpu, return_counts=True)
    one = gpus[np.argmax(counts)]   # the GPU sampled most in the window (one GPU per request in practice)
    out = []
    for want in METRICS:
        ids = [i for i, n in names.items() if want in n]
        if not ids:
            continue
        sel = (mid == ids[0]) & (gpu == one) & np.isfinite(val)
        if not sel.any():
            continue
        t, v = ts[sel], val[sel]
        bucket = ((t - lo) * METRIC_POINTS // max(hi - lo, 1)).clip(0, METRIC_POINTS - 1)
        n = np.bincount(bucket, minlength=METRIC_POINTS)
        tot = np.bincount(bucket, weights=v, minlength=METRIC_POINTS)
        tt = np.bincount(bucket, weights=(t - lo).astype(float), minlength=METRIC_POINTS)
        k = n > 0
        pts = [[int(lo + x), round(float(y), 2)] for x, y in zip(tt[k] / n[k], tot[k] / n[k])]
        name = names[ids[0]]
        out.append({"name": name, "unit": "%" if "%" in name else "", "gpu": int(one), "points": pts})
    return out
