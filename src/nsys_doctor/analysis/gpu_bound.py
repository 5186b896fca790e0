"""What a GPU-bound run's GPU time is spent on: kernel time per request by class (model/kernel_classes.py), each
class's DRAM / SM issue / tensor activity from the GPU metric samples landing on its kernels, and the best
opportunity (the top GPU-side finding). Only for runs the GPU bounds (requests.bound_by == "gpu", or the GPU busy
>= GPU_BOUND_PCT of request latency).

A class's DRAM rate is its kernels' own where memory_bandwidth measured them by name (diagnose/memory_bandwidth.py
name_rates: each name's rate unmixed from the sample windows, one device): the time-weighted mean of the rates of
its names precise enough to judge, which the class row lists (`kernels`), so a kernel shows one DRAM % in a report,
when they hold at least UNMIXED_CLASS_SHARE_PCT of the class's time. Otherwise (several devices, no precise name, or
too few of them) it is blended: the mean of the samples landing on the class's kernels,
which also counts the kernels that follow them and the idle time in each sample's period."""
from __future__ import annotations

import numpy as np

from ..model.gpu_metrics import per_name, running_at, series
from ..model.device import peaks
from ..model.kernel_classes import CLASSES, classify_rows
from ..model.requests import Requests
from ..model.trace import Trace
from ..diagnose import memory_bandwidth
from .impact import GPU_SIDE       # the categories whose fix removes GPU time

GPU_BOUND_PCT = 90.0        # GPU busy share of request latency that makes the GPU the bottleneck (the verdict's rule)
MIN_CLASS_SAMPLES = 20      # metric samples on a class's kernels before its activity is shown (memory_bandwidth's
                            # MIN_NAME_SAMPLES: one 2 kHz sample mixes in the kernels that follow)
METRICS = {"dram_pct": ("DRAM Read Bandwidth", "DRAM Write Bandwidth"), "sm_issue_pct": ("SM Issue",),
           "tensor_active_pct": ("Tensor Active",)}
MS = 1e6
DEVICE_TO_DEVICE = 8        # ENUM_CUDA_MEMCPY_OPER (model/columns.py)
HOST_COPIES = (1, 2)        # HtoD, DtoH
# A class's DRAM % is its precisely measured names' (time-weighted) when they hold at least this share of its time,
# else the blended one stays (its names still listed with their own rates): the names then stand for most of the
# class. Measured on ../shared and tests/data: 67-100% on every class with such names but ex_convprec_after's
# memory-bound one (12%: most of its time is in names whose unmixed rate is too imprecise to judge)
UNMIXED_CLASS_SHARE_PCT = 50.0


def gpu_bound_by(ctx, summary: dict, findings: list) -> dict | None:
    """The breakdown (JSON `requests.gpu_bound_by`), or None when the GPU does not bound the run."""
    trace, req = ctx.trace, ctx.requests
    if not (summary.get("bound_by") == "gpu" or summary.get("gpu_busy_pct", 0) >= GPU_BOUND_PCT):
        return None
    k = trace.table("kernels")
    kreq = req.gpu_request.get("kernels", np.zeros(0, np.int64))
    inreq = kreq >= req.warmup
    n = len(req.measured)
    if not inreq.any() or n == 0:
        return None
    sms = [g.get("sm_count") for g in trace.meta.get("gpus", []) if g.get("sm_count")]
    cls = classify_rows(trace.name, k["name_id"], k["grid"], int(min(sms)) if sms else None)
    dur = (k["end_ns"] - k["start_ns"]).astype(np.float64)
    per = np.bincount(cls[inreq], weights=dur[inreq], minlength=len(CLASSES)) / n
    count = np.bincount(cls[inreq], minlength=len(CLASSES)) / n
    total = float(per.sum())
    group = np.where(inreq, cls, -1)
    acts = {}
    for key, names in METRICS.items():
        vals = None
        for name in names:
            ts, v = series(trace, name)
            if len(ts) == 0:
                vals = None
                break
            mean, samples = per_name(running_at(k["start_ns"], k["end_ns"], ts), v, group, len(CLASSES))
            vals = mean if vals is None else vals + mean
        if vals is not None:
            acts[key] = (vals, samples)
    classes = []
    for i in np.argsort(-per):
        if per[i] <= 0:
            continue
        row = {"class": CLASSES[i], "ms_per_request": round(float(per[i]) / MS, 3),
               "share_pct": round(100 * float(per[i]) / total, 1), "kernels_per_request": round(float(count[i]), 1)}
        for key, (vals, samples) in acts.items():
            row[key] = round(float(vals[i]), 1) if samples[i] >= MIN_CLASS_SAMPLES else None
        row["samples"] = int(acts["dram_pct"][1][i]) if "dram_pct" in acts else 0
        row.update(dram_how="blended" if row.get("dram_pct") is not None else None, dram_unmixed_share_pct=None,
                   kernels=[])
        classes.append(row)
    if acts:
        _by_name(ctx, classes, cls, dur, n)
    cp = _copies(trace, req, n)
    if cp is not None:
        classes.append(cp)
        classes.sort(key=lambda c: -c["ms_per_request"])
        total += cp["ms_per_request"] * MS
        for c in classes:
            c["share_pct"] = round(100 * c["ms_per_request"] * MS / total, 1) if total > 0 else 0.0
    best = next((f for f in findings if f.category in GPU_SIDE and f.impact_ms > 0), None)
    return {"kernel_ms_per_request": round(float(per.sum()) / MS, 3), "gpu_ms_per_request": round(total / MS, 3),
            "metrics": bool(acts), "classes": classes,
            "best": None if best is None else {"category": best.category, "impact_ms": best.impact_ms,
                                               "impact_pct": best.impact_pct, "fix": best.fix}}


def _by_name(ctx, classes: list, cls: np.ndarray, dur: np.ndarray, n: int) -> None:
    """Each class's names whose DRAM rate memory_bandwidth measured precisely (its `judged`), with the rate it judged
    them by; where those rates were unmixed, the class's DRAM % becomes their time-weighted mean. A name counts in
    the class holding most of its time (its rate is the mean over all its launches: a name's few launches with
    fewer blocks than SMs, in `small`, are not measured apart)."""
    nr = memory_bandwidth.name_rates(ctx)
    if isinstance(nr, str):
        return
    unmixed = nr.unmixed is not None
    measured: dict = {}                     # class -> [(time of the name in it, its rate)]
    by_class = {r["class"]: r for r in classes}
    for jj, j in enumerate(nr.order):
        rows = nr.name_rows[jj]
        if not nr.judged[jj] or not len(rows):
            continue
        t = np.bincount(cls[rows], weights=dur[rows], minlength=len(CLASSES))
        c = CLASSES[int(np.argmax(t))]
        if c not in by_class:
            continue
        rate = float(nr.dram_pct[jj])
        by_class[c]["kernels"].append({
            "kernel": ctx.trace.name(nr.ids[j]), "ms_per_request": round(float(t.max()) / n / MS, 3),
            "dram_pct": round(rate, 1), "how": "unmixed" if unmixed else "blended",
            "dram_se_pct": round(float(nr.unmixed["se"][jj]), 1) if unmixed else None})
        measured.setdefault(c, []).append((float(t.max()), rate))
    if not unmixed:
        return
    for c, tr in measured.items():
        row = by_class[c]
        t = np.array([x[0] for x in tr])
        rate = np.array([x[1] for x in tr])
        t_all = row["ms_per_request"] * MS * n
        share = min(100.0, 100 * float(t.sum()) / t_all) if t_all > 0 else 0.0
        row["dram_unmixed_share_pct"] = round(share, 1)
        if share >= UNMIXED_CLASS_SHARE_PCT:
            row["dram_pct"] = round(float((t * rate).sum() / t.sum()), 1)
            row["dram_how"] = "unmixed"


def _copies(trace: Trace, req: Requests, n: int) -> dict | None:
    """Copies and memsets inside measured requests as one class: time per request, and the copies' rate against
    the device's peaks (model/device.py): device-to-device copies read and write DRAM (2 x bytes), host copies
    cross the host link."""
    ms, cnt, dd_b, dd_t, h_b, h_t = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for table in ("copies", "memsets"):
        rows = req.gpu_request.get(table)
        if rows is None or not len(rows):
            continue
        t = trace.table(table)
        sel = rows >= req.warmup
        dur = (t["end_ns"][sel] - t["start_ns"][sel]).astype(np.float64)
        ms += float(dur.sum())
        cnt += float(sel.sum())
        if table == "copies" and "kind" in t:
            b, kind = t["bytes"][sel].astype(np.float64), t["kind"][sel]
            dd = kind == DEVICE_TO_DEVICE
            hd = np.isin(kind, HOST_COPIES)
            dd_b, dd_t = 2 * float(b[dd].sum()), float(dur[dd].sum())
            h_b, h_t = float(b[hd].sum()), float(dur[hd].sum())
    if ms <= 0:
        return None
    row = {"class": "copies", "ms_per_request": round(ms / n / MS, 3), "share_pct": 0.0,
           "kernels_per_request": round(cnt / n, 1), "samples": 0}
    gpus = trace.meta.get("gpus") or []
    pk = peaks(gpus[0]) if gpus else {"dram_GBps": None, "link_GBps": None, "source": None}
    if dd_t > 0 and pk["dram_GBps"]:
        row["dram_pct"] = round(100 * dd_b / dd_t / (pk["dram_GBps"]), 1)    # bytes/ns = GB/s
        row["dram_how"] = "copy bytes"          # 2 x bytes / time of device-to-device copies, not samples
    if h_t > 0 and pk["link_GBps"]:
        row["host_link_pct"] = round(100 * h_b / h_t / pk["link_GBps"], 1)
    if pk["source"]:
        row["peak_source"] = pk["source"]
    return row


def sentence(g: dict) -> str:
    """'71% of its time is in memory-bound kernels at 92% of DRAM peak (read+write)': the class with the most GPU
    time and how far it is from its limit."""
    top = g["classes"][0]
    words = {"tensor_core_matmul": "tensor-core matrix kernels (GEMM/convolution)",
             "cuda_core_matmul": "fp32 matrix kernels on CUDA cores", "memory_bound": "memory-bound kernels",
             "communication": "communication (NCCL)", "copies": "copies and memsets", "small": "small kernels (fewer blocks than SMs)",
             "other": "other kernels"}
    s = f"{top['share_pct']:.0f}% of its time is in {words[top['class']]}"
    if top.get("dram_pct") is not None:
        s += f" at {top['dram_pct']:.0f}% of DRAM peak (read+write"
        share = top.get("dram_unmixed_share_pct")
        if top.get("dram_how") == "unmixed":
            s += (", the kernels' own rates" if share is None or share >= 99.5 else
                  f", the own rates of the kernels holding {share:.0f}% of that time")
        elif top.get("dram_how") == "blended":
            s += ", the mean of the samples landing on them"
        s += ")"
    if top.get("host_link_pct") is not None:
        s += f", host copies at {top['host_link_pct']:.0f}% of the link's peak"
    if top.get("tensor_active_pct") is not None and top["class"].endswith("matmul"):
        s += f", tensor pipes {top['tensor_active_pct']:.0f}% active"
    return s
