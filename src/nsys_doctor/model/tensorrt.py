"""TensorRT engines: recognise them, and attribute the engine's GPU time to its layers.

TensorRT (with `ProfilingVerbosity.kDETAILED`, or by default since 8.x) pushes one NVTX range per layer, in the
`TensorRT` domain, nested inside an `ExecutionContext::enqueue` (or `::execute`) range. Those layer ranges time only
the CPU *enqueue* of the layer: its kernels run later on the GPU. The kernels are tied back to a layer through the
launch API call (cuLaunchKernel, ...) made on the same thread inside the layer range, by correlation id.
Myelin (TensorRT's graph compiler) fuses whole subgraphs into one `{ForeignNode[...]}` layer; when the profile also
has the `myelin-exec` NVTX domain, its per-op launch ranges split such a layer further (`ops`).
"""
from __future__ import annotations

import re

import numpy as np

from .projection import api_corr_key, gpu_corr_key
from .trace import Table, Trace, table_len, take
from .arrays import dense_groups, uniq

DOMAIN = "TensorRT"
MYELIN_DOMAIN = "myelin-exec"
ENQUEUE_NAMES = ("ExecutionContext::enqueue", "ExecutionContext::execute")  # also ...V2 / ...V3 variants
OUTSIDE = "(outside layer ranges)"
TOP_LAYERS = 30                # rows kept in the report (realcugan: the top 30 of 161 rows hold 69% of GPU time)
TOP_OPS = 8                    # myelin ops listed under a fused layer
FUSED_NOTE = ("fused Myelin region: TensorRT reports it as one layer, so per-op time is not visible inside "
              "unless the myelin-exec NVTX domain was recorded")

# Kernel name families: (label, pattern on the short or demangled name, strong). A strong family is TensorRT's own
# (or Myelin's); sm*_xmma_* alone is weak evidence: cuBLAS ships kernels named that way too.
KERNEL_FAMILIES = (
    ("trt_*", re.compile(r"^trt_"), True),                                # trt_turing_h1688cudnn_* (realcugan)
    ("*_trt (xmma_trt, cask_trt)", re.compile(r"_trt$|_trt_|\b(xmma|cask)_trt::"), True),  # ..._execute_kernel_trt
    ("__myl_* / myelin", re.compile(r"^__myl_|myelin", re.I), True),     # Myelin-generated kernels (hambugy)
    ("genericReformat", re.compile(r"genericReformat::"), True),          # TensorRT's layout/precision copies
    ("TensorRT internals (nvinfer1, cuPad, cuSliceLayer, generatedNativePointwise)",
     re.compile(r"nvinfer1::|\bcuPad::|\bcuSliceLayer::|\bcuInt8::|^generatedNativePointwise"), True),
    ("sm*_xmma_*", re.compile(r"^sm\d+_xmma_"), False),
)


def _is_enqueue(names: np.ndarray) -> np.ndarray:
    # judged once per distinct name: a fixed-width string copy of every range name costs memory in proportion to
    # the longest name times the number of ranges
    distinct = {n: str(n).startswith(ENQUEUE_NAMES) for n in set(names.tolist())}
    return np.fromiter((distinct[n] for n in names.tolist()), bool, count=len(names))


def _slot(r_tid: np.ndarray, r_start: np.ndarray, r_end: np.ndarray, p_tid: np.ndarray, p_t: np.ndarray) -> np.ndarray:
    """For each point (p_tid, p_t): index of the range on that thread holding it (start <= t <= end), or -1.
    Ranges must not overlap on a thread (true of TensorRT layer, enqueue and myelin-exec ranges in every profile)."""
    out = np.full(len(p_t), -1, np.int64)
    for th in uniq(r_tid):          # a loop over threads, not rows
        ri = np.flatnonzero(r_tid == th)
        ri = ri[np.argsort(r_start[ri], kind="stable")]
        pi = np.flatnonzero(p_tid == th)
        slot = np.searchsorted(r_start[ri], p_t[pi], side="right") - 1
        ok = (slot >= 0) & (p_t[pi] <= r_end[ri[slot.clip(0)]])
        out[pi[ok]] = ri[slot[ok]]
    return out


def _engine_ranges(trace: Trace) -> tuple[Table, Table]:
    """(enqueue ranges, layer ranges): TensorRT-domain push/pop ranges, layers being those inside an enqueue."""
    r = trace.table("ranges")
    if table_len(r) == 0:
        return take(r, np.zeros(0, np.int64)), take(r, np.zeros(0, np.int64))
    trt = (r["domain"].astype(str) == DOMAIN) & (r["push_pop"] == 1)
    enq_mask = trt & _is_enqueue(r["name"])
    enq = take(r, enq_mask)
    cand = take(r, trt & ~enq_mask)
    holder = _slot(enq["tid"], enq["start_ns"], enq["end_ns"], cand["tid"], cand["start_ns"])
    inside = holder >= 0
    if inside.any():
        inside &= cand["end_ns"] <= enq["end_ns"][holder.clip(0)]
    return enq, take(cand, inside)


def _kernel_launches(trace: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per kernel: (launching thread, launch CPU time, found) through (process, correlation id)."""
    k, api = trace.table("kernels"), trace.table("api_calls")
    n = table_len(k)
    if n == 0 or table_len(api) == 0:
        return np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, bool)
    key_api = api_corr_key(trace)
    order = np.argsort(key_api, kind="stable")
    sorted_keys = key_api[order]
    key = gpu_corr_key(trace, "kernels")
    pos = np.searchsorted(sorted_keys, key).clip(0, len(sorted_keys) - 1)
    found = sorted_keys[pos] == key
    row = order[pos]
    return api["tid"][row], api["start_ns"][row], found


def _families(trace: Trace) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """Kernel count per family found, and per kernel: strong TensorRT family?, Myelin kernel?"""
    k = trace.table("kernels")
    n = table_len(k)
    counts: dict[str, int] = {}
    strong = np.zeros(n, bool)
    myelin = np.zeros(n, bool)
    if n == 0:
        return counts, strong, myelin
    # patterns are matched once per distinct short and full name (tens to hundreds), then mapped back to kernels
    short_ids, short_inv = dense_groups(k["name_id"])
    full_ids, full_inv = dense_groups(k["full_name_id"])
    short_names = trace.names(short_ids)
    full_names = trace.names(full_ids)
    for label, pat, is_strong in KERNEL_FAMILIES:
        hit = np.array([bool(pat.search(a)) for a in short_names], bool)[short_inv]
        hit |= np.array([bool(pat.search(b)) for b in full_names], bool)[full_inv]
        if hit.any():
            counts[label] = int(hit.sum())
            strong |= hit & is_strong
            if label.startswith("__myl_"):
                myelin |= hit
    return counts, strong, myelin


def detect(trace: Trace) -> dict | None:
    """Whether the profile ran a TensorRT engine, and which signs say so; None when none does."""
    r = trace.table("ranges")
    has_domain = table_len(r) > 0 and bool((r["domain"].astype(str) == DOMAIN).any())
    enq, layers = _engine_ranges(trace)
    n_myelin = int((r["domain"].astype(str) == MYELIN_DOMAIN).sum()) if table_len(r) else 0
    families, strong, _ = _families(trace)
    signs = []
    if has_domain:
        signs.append(f"NVTX domain '{DOMAIN}'")
    if table_len(enq):
        signs.append(f"{table_len(enq)} ExecutionContext::enqueue/execute ranges")
    if table_len(layers):
        signs.append(f"{table_len(layers)} per-layer ranges inside them")
    if n_myelin:
        signs.append(f"{n_myelin} '{MYELIN_DOMAIN}' NVTX ranges")
    for label, _, is_strong in KERNEL_FAMILIES:
        if label in families:
            signs.append(f"{families[label]} {label} kernels" + ("" if is_strong else " (also cuBLAS: weak)"))
    if not (has_domain or strong.any()):
        return None
    n_k = table_len(trace.table("kernels"))
    return {"detected": True, "signs": signs, "nvtx_domain": has_domain, "enqueues": int(table_len(enq)),
            "enqueue_threads": int(len(uniq(enq["tid"]))), "layer_ranges": int(table_len(layers)),
            "layers": int(len(uniq(layers["name"].astype(str)))) if table_len(layers) else 0,
            "myelin_ranges": n_myelin, "kernel_families": families,
            "tensorrt_kernel_pct": round(100 * float(strong.mean()), 1) if n_k else 0.0}


def layer_table(trace: Trace, requests=None) -> list[dict]:
    """One row per TensorRT layer name (plus `OUTSIDE`), most GPU time first.

    calls: layer range instances; kernels: kernels launched inside them; gpu_ms: their summed GPU duration;
    gpu_ms_per_enqueue: gpu_ms over all enqueue ranges; gpu_ms_per_request: over the measured requests (warm-up
    left out), None without requests; share_pct: of the GPU time of every kernel launched inside an enqueue range;
    cpu_ms: time inside the layer ranges on the CPU (enqueueing, not running); fused: a Myelin region."""
    enq, layers = _engine_ranges(trace)
    n_enq = table_len(enq)
    if n_enq == 0:
        return []
    k = trace.table("kernels")
    dur = (k["end_ns"] - k["start_ns"]).astype(np.float64)
    l_tid, l_t, found = _kernel_launches(trace)
    in_enq = found & (_slot(enq["tid"], enq["start_ns"], enq["end_ns"], l_tid, l_t) >= 0)
    k_layer = np.where(found, _slot(layers["tid"], layers["start_ns"], layers["end_ns"], l_tid, l_t), -1)

    names, inv = np.unique(layers["name"].astype(str), return_inverse=True)
    n_names = len(names)
    group = np.where(k_layer >= 0, inv[k_layer.clip(0)] if len(inv) else -1, n_names)  # n_names = OUTSIDE row
    sel = in_enq                        # layers lie inside enqueues, so every kernel of a layer is in_enq
    g, d = group[sel], dur[sel]
    gpu = np.bincount(g, weights=d, minlength=n_names + 1)
    nk = np.bincount(g, minlength=n_names + 1)
    calls = np.bincount(inv, minlength=n_names + 1) if n_names else np.zeros(1, np.int64)
    cpu = np.bincount(inv, weights=(layers["end_ns"] - layers["start_ns"]).astype(np.float64),
                      minlength=n_names + 1) if n_names else np.zeros(1)
    # the outside row's "calls": the enqueues that launched kernels outside every layer range
    outside = sel & (group == n_names)
    if outside.any():
        e_slot = _slot(enq["tid"], enq["start_ns"], enq["end_ns"], l_tid[outside], l_t[outside])
        calls[n_names] = len(uniq(e_slot[e_slot >= 0]))
    per_req = None
    if requests is not None and requests.count:
        k_req = requests.gpu_request.get("kernels", np.full(table_len(k), -1))
        m = sel & (k_req >= requests.warmup)
        per_req = np.bincount(group[m], weights=dur[m], minlength=n_names + 1) / max(len(requests.measured), 1)
    _, _, myelin = _families(trace)
    has_myelin = np.bincount(g, weights=myelin[sel].astype(np.float64), minlength=n_names + 1) > 0
    ops = _myelin_ops(trace, group, sel, dur, l_tid, l_t, n_names)
    total = float(gpu.sum())

    rows = []
    for i in np.flatnonzero((calls > 0) | (nk > 0)):     # one row per layer name, not per kernel
        name = OUTSIDE if i == n_names else str(names[i])
        fused = i < n_names and (name.startswith("{ForeignNode[") or bool(has_myelin[i]))
        row = {"name": name, "calls": int(calls[i]), "kernels": int(nk[i]),
               "gpu_ms": _ms(gpu[i]), "gpu_ms_per_enqueue": _ms(gpu[i] / n_enq),
               "gpu_ms_per_request": None if per_req is None else _ms(per_req[i]),
               "share_pct": round(100 * float(gpu[i]) / total, 2) if total else 0.0,
               "cpu_ms": _ms(cpu[i]), "fused": bool(fused)}
        if fused:
            row["note"] = FUSED_NOTE
            if ops.get(i):
                row["ops"] = ops[i]
                row["note"] = "fused Myelin region; per-op time from the myelin-exec NVTX ranges in `ops`"
        rows.append(row)
    rows.sort(key=lambda r: (-r["gpu_ms"], -r["calls"], r["name"]))
    return rows


def _ms(ns) -> float:
    return round(float(ns) / 1e6, 4)


def _myelin_ops(trace: Trace, group, sel, dur, l_tid, l_t, n_names) -> dict[int, list[dict]]:
    """Per layer group: its kernels split by the myelin-exec push/pop range they were launched in, top TOP_OPS."""
    r = trace.table("ranges")
    if table_len(r) == 0:
        return {}
    my = take(r, (r["domain"].astype(str) == MYELIN_DOMAIN) & (r["push_pop"] == 1))
    if table_len(my) == 0:
        return {}
    op = _slot(my["tid"], my["start_ns"], my["end_ns"], l_tid, l_t)
    m = sel & (op >= 0) & (group < n_names)
    if not m.any():
        return {}
    op_names, op_inv = np.unique(my["name"].astype(str), return_inverse=True)
    pair = group[m] * len(op_names) + op_inv[op[m]]
    keys, pinv = np.unique(pair, return_inverse=True)
    gpu = np.bincount(pinv, weights=dur[m])
    nk = np.bincount(pinv)
    layer_gpu = np.bincount(group[m], weights=dur[m], minlength=n_names)
    out: dict[int, list[dict]] = {}
    for j in np.argsort(-gpu, kind="stable"):              # distinct (layer, op) pairs, not kernels
        li, oi = divmod(int(keys[j]), len(op_names))
        lst = out.setdefault(li, [])
        if len(lst) < TOP_OPS:
            lst.append({"name": str(op_names[oi]).strip(), "kernels": int(nk[j]), "gpu_ms": _ms(gpu[j]),
                        "share_of_layer_pct": round(100 * float(gpu[j] / layer_gpu[li]), 1) if layer_gpu[li] else 0.0})
    return out
