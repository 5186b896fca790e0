"""DRAM bandwidth: the request's longest kernels already move bytes near the GPU memory's peak rate, so they only get
faster by moving fewer bytes (fusing elementwise chains, 16-bit activations), not by more parallelism."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model.arrays import dense_groups, median, uniq
from ..model.changes import FuseKernels, ScaleGpuWork
from ..model.gpu_metrics import metric_ids, per_name, running_at, unmixed_per_names
from ..model.kernel_classes import MATMUL, classify
from ..model.projection import issuing_calls
from ..model.replay import GRAPH_DISPATCH_MAX_NS
from ..report import Evidence
from .common import WORST, host_waits, instance, latency_saving, make_finding
from .common import no_data, not_evaluated

DRAM_BOUND_PCT = 65.0       # read+write % of peak while the kernel ran; membw_bound's kernels 73-89, compute kernels
                            # <= 40 (fp32_gemm 6, healthy's convs 60 but blended, see MIN_NAME_SAMPLES)
SM_ISSUE_MAX_PCT = 60.0     # issue slots busier than this: compute-heavy too, fewer bytes won't halve its time
# ... unless the kernel is element-wise or reduction work by name (model/kernel_classes.py "memory_bound") below
# DRAM_BOUND_PCT: then its issue slots go to index arithmetic over non-contiguous or broadcast operands (PyTorch's
# generic `elementwise_kernel`), not to the math. It is a chain core too ("index"-bound): fused with its neighbours,
# the intermediates stay on chip and the indices are walked once (ex_gmlp_before: the strided SiLU-gate and RMSNorm
# ops, 2.67 ms per request at 38% DRAM and 73% issue; torch.compile saved 2.85-3.05 ms. Written after that blind pair
# got no finding at all.) Alone (in no chain) it keeps its time.
                            # (fp32_gemm SGEMM 85; membw_bound's kernels 17-52)
MIN_NAME_SAMPLES = 20       # samples landing on a kernel name's instances before it is judged: a sample reads the
                            # period after it (500 us at 2 kHz), so one blends the kernels that follow; 20 average that
                            # out (ex_fusion_before's 65 us elementwise kernels: 37-567 samples per name, 70-79%;
                            # membw_bound's 22-128, healthy's top names 31-490)
# With every kernel on one device, a name's rate is unmixed from the samples' windows instead (model/gpu_metrics.py
# unmixed_per_name: each window split among the names that ran in it), and judged when the estimate is precise:
MAX_RATE_SE_PCT = 5.0       # standard error of the unmixed rate, percentage points: ex_lnfuse_before's three main
                            # names 1.3-2.0 (26 sample windows each), healthy's judged names 0.5-3.9; a name seen in
                            # 2.5 windows (ex_lnfuse's reduce_kernel) 18
MIN_NAME_WINDOWS = 5.0      # and the name ran for at least this many sample periods inside the samples used (below,
                            # a handful of samples decide and the standard error itself is unreliable)
TOP_KERNELS = 12            # kernel names judged, by time inside measured requests
BYTES_CUT_FP32 = 0.5        # fp32/fp64 data in bf16/fp16 halves the bytes, so a bandwidth-bound kernel's time:
                            # the fix for a DRAM-bound kernel with no DRAM-bound neighbour to fuse with
# A chain (consecutive DRAM-bound kernels of one stream in one request) fused into one kernel reads the chain's inputs
# and writes its outputs once, launched once. Its GPU time is modelled as the chain's longest member: the fused kernel
# moves at least the bytes of the member that touches the most external data, and does all members' arithmetic.
# Checked on ex_fusion (H200, 13-kernel fp32 chain, torch.compile): longest member 99.8 us, the fused Triton kernel
# in ex_fusion_after 112.4 us (0.89); the chain's bytes at its achieved rate (the 128 MB input read once at the
# 3.8 TB/s the members reached) would be 34 us (0.30). The CPU dispatch between two of its launches goes with the
# launches, up to this long (the framework's per-op work, as a graph replay skips it: model/replay.py); a longer gap
# is other CPU work that stays.
FUSED_DISPATCH_MAX_NS = GRAPH_DISPATCH_MAX_NS
# Reported at most medium: kernels at their DRAM roofline are the GPU doing its work at the hardware's limit, not
# time wasted waiting (idle, syncs, launches); the saving needs a code transformation (a compiler's fusion, a fused
# kernel, 16-bit data) and is the fused-chain model's prediction, not waste measured in the run. Measured on zoo
# `healthy` (ResNet-50 fp16, GPU-bound): the model predicts 33% and torch.compile saved 39% on the H200
# (benchmarks/fusion_resnet50.py), a real opportunity in a run with nothing wrong, so it is shown, as medium.
MAX_SEVERITY = "medium"
MIN_SHARE_PCT = 1.0         # below 1% of latency: not worth a line
METRICS_FLAG = "--gpu-metrics-devices=all"

CATEGORIES = ("memory_bandwidth",)
NEEDS = ("kernels", "gpu_metrics")
HALF_WORDS = ("Half", "BFloat16", "__half", "bfloat16", "__nv_bfloat16", "half_t", "bf16", "f16")


@dataclass
class Measurement:
    metrics: bool                   # False: the profile has no DRAM throughput samples (nothing else measured)
    impact_ns: float = 0.0          # mean latency saving over measured requests
    factor: float = 1.0             # mean queueing factor (latency_saving)
    period_ns: float = 0.0          # metric sample period
    saved: np.ndarray = field(default_factory=lambda: np.zeros(0))   # per request: GPU ns saved
    own_ns: float = 0.0             # mean own GPU busy time per measured request
    # the kernel names at the DRAM limit, most time first: name, ms_per_request, dram_pct, sm_issue_pct, samples,
    # median_us, half (16-bit data), rows (kernel rows inside measured requests)
    flagged: list = field(default_factory=list)
    chains: dict = field(default_factory=dict)      # _chains(): the fusable chains and their launches
    lone_fp32: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # flagged rows in no chain, 32-bit
    unmixed: dict | None = None     # unmixed_per_name's fit when the rates were unmixed (one device), else None


def _series(g, ids, gpu):
    """(times, values) of the first metric id on this GPU, in time order."""
    sel = np.isin(g["metric"], ids) & (g["gpu"] == gpu)
    ts, v = g["start_ns"][sel], g["value"][sel].astype(np.float64)
    o = np.argsort(ts, kind="stable")
    return ts[o], v[o]


def _top_kernel_rows(ctx, k, dur, inreq):
    """The TOP_KERNELS kernel names by time inside measured requests: (name ids, total ns per name, the names'
    order, and per judged name its rows, ascending)."""
    rows = np.flatnonzero(inreq)
    ids, inv = dense_groups(k["name_id"][rows])
    tot = np.bincount(inv, weights=dur[rows])
    order = np.argsort(-tot)[:TOP_KERNELS]
    # rows of each judged name, ascending (what `inreq & (name_id == id)` selects), from one sort of the ranks
    rank = np.full(len(ids), len(order), np.int64)
    rank[order] = np.arange(len(order))
    rr = rank[inv]
    sel = rr < len(order)
    rows_t, rr = rows[sel], rr[sel]
    by = np.argsort(rr.astype(np.int16), kind="stable")   # radix sort on 16-bit keys
    bounds = np.searchsorted(rr[by], np.arange(len(order) + 1))
    return ids, tot, order, [rows_t[by[bounds[jj]:bounds[jj + 1]]] for jj in range(len(order))]


@dataclass
class NameRates:
    """The TOP_KERNELS kernel names inside measured requests (most time first) and each one's DRAM read+write rate
    (% of peak) on the busiest GPU: unmixed from the sample windows (one device), else the mean of the samples
    landing on its instances (blended); SM issue the same way. What the memory_bandwidth finding judges and the
    GPU-bound breakdown (analysis/gpu_bound.py) shows, computed once per analysis (name_rates)."""
    period_ns: float
    ids: np.ndarray                 # name ids, as dense_groups gave them
    tot: np.ndarray                 # ns inside measured requests per name id
    order: np.ndarray               # the judged names: indices into ids, most time first
    name_rows: list                 # per judged name: its kernel rows inside measured requests, ascending
    dram_pct: np.ndarray            # per judged name
    samples: np.ndarray             # samples landing on its instances
    issue_pct: np.ndarray
    unmixed: dict | None            # unmixed_per_name's fit when the rates were unmixed, else None
    judged: np.ndarray              # per judged name: its rate is precise enough to judge (and to show)


def name_rates(ctx) -> NameRates | str:
    """Each top kernel name's DRAM rate (NameRates), or why it cannot be measured (no metrics, too few samples);
    once per analysis (ctx.once)."""
    return ctx.once("memory_bandwidth.name_rates", lambda: _name_rates(ctx))


def _name_rates(ctx) -> NameRates | str:
    trace, rq = ctx.trace, ctx.requests
    k = trace.table("kernels")
    kreq = rq.gpu_request.get("kernels", np.zeros(0, np.int64))
    inreq = kreq >= rq.warmup
    rd, wr = metric_ids(trace, "DRAM Read Bandwidth"), metric_ids(trace, "DRAM Write Bandwidth")
    if not rd or not wr or "gpu_metrics" in trace.absent:
        return (no_data(trace, "gpu_metrics", "GPU metrics") if "gpu_metrics" in trace.absent else
                "no DRAM read and write bandwidth among the GPU metrics recorded")
    g = trace.table("gpu_metrics")
    if len(g["start_ns"]) == 0:
        return no_data(trace, "gpu_metrics", "GPU metrics samples")
    gpu = _busiest_gpu(g, trace)
    ts_rd, v_rd = _series(g, rd[:1], gpu)
    ts_wr, v_wr = _series(g, wr[:1], gpu)
    if len(ts_rd) < 2 or len(ts_rd) != len(ts_wr):
        return "too few DRAM bandwidth samples (fewer than 2, or reads and writes unpaired)"
    period = float(median(np.diff(ts_rd)))
    dram = v_rd + v_wr
    issue = _series(g, metric_ids(trace, "SM Issue")[:1], gpu)

    dur = (k["end_ns"] - k["start_ns"]).astype(np.float64)
    ids, tot, order, name_rows = _top_kernel_rows(ctx, k, dur, inreq)
    group = np.full(len(dur), -1, np.int64)
    for jj, mk in enumerate(name_rows):
        group[mk] = jj
    # samples attributed to the kernel running at their timestamp, aggregated per judged name (model/gpu_metrics.py).
    # The metrics' GPU id (typeId) does not name a CUDA device, so all kernels are candidates, as before
    at = running_at(k["start_ns"], k["end_ns"], ts_rd)
    dram_n, samples = per_name(at, dram, group, len(order))
    if len(issue[0]):
        issue_n = per_name(running_at(k["start_ns"], k["end_ns"], issue[0]), issue[1], group, len(order))[0]
    else:
        issue_n = np.full(len(order), np.nan)
    # one device: each name's own rate unmixed from the windows (the samples' GPU and the kernels' then agree)
    unmixed = None
    if len(uniq(k["device"])) == 1:        # both metrics at once: each name's union of kernels built once
        fits = unmixed_per_names(k["start_ns"], k["end_ns"], group, len(order),
                                 [(ts_rd, dram)] + ([issue] if len(issue[0]) else []), period)
        unmixed = fits[0]
    if unmixed is not None:
        dram_n = unmixed["rate"]
        if len(issue[0]):
            iu = fits[1]
            issue_n = iu["rate"] if iu is not None else issue_n
        # judged (and shown by name) where the estimate is precise
        judged = (unmixed["se"] <= MAX_RATE_SE_PCT) & (unmixed["windows"] >= MIN_NAME_WINDOWS)
    else:
        judged = samples >= MIN_NAME_SAMPLES
    return NameRates(period, ids, tot, order, name_rows, dram_n, samples, issue_n, unmixed, judged)


def measure(ctx) -> Measurement | None:
    trace, rq = ctx.trace, ctx.requests
    k = trace.table("kernels")
    kreq = rq.gpu_request.get("kernels", np.zeros(0, np.int64))
    inreq = kreq >= rq.warmup
    if not inreq.any() or ctx.mean_latency_ns <= 0:
        return None
    nr = name_rates(ctx)
    if isinstance(nr, str):
        return _unmeasured(ctx, nr)
    period, ids, tot, order, name_rows = nr.period_ns, nr.ids, nr.tot, nr.order, nr.name_rows
    dram_n, samples, issue_n, unmixed = nr.dram_pct, nr.samples, nr.issue_pct, nr.unmixed
    dur = (k["end_ns"] - k["start_ns"]).astype(np.float64)
    n_meas = len(ctx.measured)
    saved = np.zeros(rq.count)
    flagged = []
    for jj, (j, mk) in enumerate(zip(order, name_rows)):
        row = {"kernel": trace.name(ids[j]), "ms_per_request": float(tot[j]) / 1e6 / n_meas,
               "dram_pct": float(dram_n[jj]), "samples": int(samples[jj]),
               "median_us": float(median(dur[mk])) / 1e3, "rows": mk, "sm_issue_pct": float(issue_n[jj])}
        if unmixed is not None:
            row.update(dram_se=float(unmixed["se"][jj]), windows=float(unmixed["windows"][jj]))
        judged = nr.judged[jj]
        # matrix kernels (GEMM/conv) are judged by precision: fewer bytes moved by fusion is not their fix
        dram_bound = (row["dram_pct"] >= DRAM_BOUND_PCT and not MATMUL.search(row["kernel"].lower())
                      and not row["sm_issue_pct"] > SM_ISSUE_MAX_PCT)
        index_bound = (not dram_bound and row["sm_issue_pct"] > SM_ISSUE_MAX_PCT
                       and row["dram_pct"] < DRAM_BOUND_PCT and classify(row["kernel"], 0, None) == "memory_bound")
        if judged and (dram_bound or index_bound):
            full = trace.name(k["full_name_id"][mk[0]])
            row["half"] = any(w in full for w in HALF_WORDS)
            row["bound"] = "dram" if dram_bound else "index"
            flagged.append(row)
    if not flagged:
        return None
    # a chain may also take the request's other memory-class kernels (elementwise, reductions, norms: model/
    # kernel_classes.py) between and around the DRAM-bound ones: fused, their intermediates stay on chip too, whatever
    # rate each reached on its own (ex_lnfuse_before: the 84 us broadcast `elementwise_kernel`s at 32% of peak are
    # in the one Triton kernel of its fix); each chain holds at least one DRAM-bound kernel
    core = np.sort(np.concatenate([r["rows"] for r in flagged]))
    chains = _chains(ctx, np.union1d(core, _memory_class_rows(trace, k, inreq)), kreq, core=core)
    # fused: each chain saves all but its longest member; a lone 32-bit kernel saves half its bytes in 16-bit
    ch_rows = chains["rows"]
    np.add.at(saved, kreq[ch_rows], dur[ch_rows])
    np.subtract.at(saved, kreq[chains["first"]], chains["fused_ns"])
    in_chain = np.zeros(len(dur), bool)
    in_chain[ch_rows] = True
    # (an index-bound kernel alone keeps its time: fewer bytes do not make its index arithmetic faster)
    lone = [r["rows"][~in_chain[r["rows"]]] for r in flagged if not r["half"] and r["bound"] == "dram"]
    lone_fp32 = np.sort(np.concatenate(lone)) if lone else np.zeros(0, np.int64)
    np.add.at(saved, kreq[lone_fp32], dur[lone_fp32] * BYTES_CUT_FP32)
    impact, factor = latency_saving(ctx, saved)
    if 100.0 * impact / ctx.mean_latency_ns < MIN_SHARE_PCT:
        return None
    return Measurement(metrics=True, impact_ns=impact, factor=factor, period_ns=period, saved=saved,
                       own_ns=float(rq.table["busy_ns"][ctx.measured].mean()), flagged=flagged, chains=chains,
                       lone_fp32=lone_fp32, unmixed=unmixed)


def _memory_class_rows(trace, k, inreq) -> np.ndarray:
    """Kernel rows inside measured requests whose name is memory-class work (kernel_classes.classify by name)."""
    rows = np.flatnonzero(inreq)
    ids, inv = dense_groups(k["name_id"][rows])
    mem = np.array([classify(trace.name(int(i)), 0, None) == "memory_bound" for i in ids], bool)
    return rows[mem[inv]] if len(ids) else np.zeros(0, np.int64)


def _chains(ctx, flagged: np.ndarray, kreq: np.ndarray, core: np.ndarray | None = None) -> dict:
    """The fusable chains among the flagged kernel rows (sorted): runs of at least two of them that follow each other
    on one stream of one process in one request, no other kernel nor copy of that stream between.
    Returns rows (chain members, by chain and start), chain (each member's chain id), first (each chain's first
    row), fused_ns (per chain: its longest member), launch_rows (api_calls rows launching the members but each
    chain's first), and the dispatch windows before those launches (tid, start_ns, end_ns; parallel arrays)."""
    trace, rq = ctx.trace, ctx.requests
    k = trace.table("kernels")
    empty = np.zeros(0, np.int64)
    out = dict(rows=empty, chain=empty, first=empty, fused_ns=empty, launch_rows=empty, tid=empty, start_ns=empty,
               end_ns=empty)
    if len(flagged) < 2:
        return out
    # the kernels and copies of the requests on the flagged kernels' streams, in stream order: (table, row). A copy
    # between two kernels breaks a chain; a memset does not (a reduction's output zeroed before it: membw_bound's
    # 4-byte memset between its softmax and its sum, which a fused kernel writes instead)
    streams = uniq(k["stream"][flagged])
    parts = []
    for ti, t in enumerate(("kernels", "copies")):
        g = trace.table(t)
        proj = rq.gpu_request.get(t)
        if proj is None or len(proj) != len(g["start_ns"]) or len(proj) == 0:
            continue
        r = np.flatnonzero((proj >= 0) & np.isin(g["stream"], streams))
        parts.append((np.full(len(r), ti, np.int64), r, g["pid"][r], g["device"][r], g["stream"][r],
                      g["start_ns"][r]))
    tab, row, pid, dev, stream, start = (np.concatenate(c) for c in zip(*parts))
    o = np.lexsort((start, stream, dev, pid))
    tab, row, pid, dev, stream = tab[o], row[o], pid[o], dev[o], stream[o]
    is_flag = np.zeros(len(k["start_ns"]), bool)
    is_flag[flagged] = True
    fl = (tab == 0) & is_flag[np.where(tab == 0, row, 0)]
    # a member follows the previous operation of its stream when both are flagged kernels of the same request
    same = (pid[1:] == pid[:-1]) & (dev[1:] == dev[:-1]) & (stream[1:] == stream[:-1])
    link = same & fl[1:] & fl[:-1] & (kreq[np.where(fl[1:], row[1:], 0)] == kreq[np.where(fl[:-1], row[:-1], 0)])
    starts = np.flatnonzero(np.r_[False, link] == False)          # noqa: E712 (an op that does not extend a chain)
    length = np.diff(np.r_[starts, len(row)])
    ok = (length >= 2) & fl[starts]
    if core is not None and ok.any():               # a chain needs a DRAM-bound member, not only memory-class ones
        is_core = np.zeros(len(k["start_ns"]), bool)
        is_core[core] = True
        hit = (tab == 0) & is_core[np.where(tab == 0, row, 0)]
        ok &= np.add.reduceat(hit.astype(np.int64), starts) > 0
    if not ok.any():
        return out
    cs, cl = starts[ok], length[ok]
    chain = np.repeat(np.arange(len(cs)), cl)
    pos = np.concatenate([np.arange(s, s + n) for s, n in zip(cs.tolist(), cl.tolist())])
    rows = row[pos]
    dur = (k["end_ns"][rows] - k["start_ns"][rows]).astype(np.int64)
    fused = np.zeros(len(cs), np.int64)
    np.maximum.at(fused, chain, dur)
    first = row[cs]
    # the launch calls of the members after each chain's first, and the CPU time since the previous member's launch
    later = np.r_[False, chain[1:] == chain[:-1]]
    api = trace.table("api_calls")
    call = issuing_calls(trace, "kernels", rows)
    # a member launched by the same call as the chain's first (kernels of one CUDA graph launch) has no launch of
    # its own to remove
    own = later & (call >= 0) & (call != call[np.searchsorted(chain, chain)])
    prev = np.r_[-1, call[:-1]]
    both = own & (prev >= 0) & (prev != call)
    both[both] &= api["tid"][call[both]] == api["tid"][prev[both]]
    lo = np.where(both, api["end_ns"][np.maximum(prev, 0)], 0)
    hi = np.where(both, api["start_ns"][np.maximum(call, 0)], 0)
    win = both & (hi >= lo) & (hi - lo <= FUSED_DISPATCH_MAX_NS)
    # a host wait between two launches stays: its window does not go (the fused kernel cannot hold a wait)
    tid = api["tid"][np.maximum(call, 0)]
    hw = host_waits(ctx)
    wt = api["tid"][hw["row"]]
    for t0 in uniq(wt).tolist():
        ws = np.sort(hw["start_ns"][wt == t0])
        on = win & (tid == t0)
        on[on] = np.searchsorted(ws, lo[on]) < np.searchsorted(ws, hi[on])     # a wait starts in [lo, hi)
        win &= ~on
    return dict(rows=rows, chain=chain, first=first, fused_ns=fused, launch_rows=uniq(call[own]),
                tid=tid[win], start_ns=lo[win], end_ns=hi[win])


def _unmeasured(ctx, reason: str) -> Measurement:
    """Not evaluated (recorded for the Report and the gate); the finding then says how to record the metrics."""
    not_evaluated(ctx, CATEGORIES, reason)
    return Measurement(metrics=False)


def change(m: Measurement) -> list:
    """The DRAM-bound kernels move fewer bytes: each chain fused into one kernel (its longest member's time, one
    launch); a lone 32-bit kernel in 16-bit (half its time)."""
    out = []
    c = m.chains
    if len(c.get("rows", ())):
        out.append(FuseKernels(rows=c["rows"], chain=c["chain"], fused_ns=c["fused_ns"], launch_rows=c["launch_rows"],
                               tid=c["tid"], start_ns=c["start_ns"], end_ns=c["end_ns"]))
    if len(m.lone_fp32):
        out.append(ScaleGpuWork("kernels", m.lone_fp32, 1.0 - BYTES_CUT_FP32))
    return out


def finding(ctx, m: Measurement) -> list:
    if not m.metrics:
        return [_no_metrics(ctx)]
    trace, rq = ctx.trace, ctx.requests
    k = trace.table("kernels")
    kreq = rq.gpu_request.get("kernels", np.zeros(0, np.int64))
    dur = (k["end_ns"] - k["start_ns"]).astype(np.float64)
    flagged, factor, period, impact = m.flagged, m.factor, m.period_ns, m.impact_ns
    own_ms = m.own_ns / 1e6
    bound_ms = float(sum(r["ms_per_request"] for r in flagged))
    numbers = {"bandwidth_bound_kernel_ms_per_request": round(bound_ms, 3),
               "own_gpu_ms_per_request": round(own_ms, 3),
               "bandwidth_bound_share_of_gpu_pct": round(100 * bound_ms / own_ms, 1) if own_ms else 0.0,
               "gpu_saving_ms_per_request": round(float(m.saved[ctx.measured].mean()) / 1e6, 3),
               "queue_factor": round(factor, 2), "metric_sample_period_us": round(period / 1e3, 1)}
    c, n_meas = m.chains, max(len(ctx.measured), 1)
    if len(c["rows"]):
        numbers.update(fusable_chains_per_request=round(len(c["fused_ns"]) / n_meas, 2),
                       kernels_in_chains_per_request=round(len(c["rows"]) / n_meas, 2),
                       fused_chain_ms_per_request=round(float(c["fused_ns"].sum()) / 1e6 / n_meas, 3))
    if len(m.lone_fp32):
        numbers["lone_32bit_kernels_per_request"] = round(len(m.lone_fp32) / n_meas, 2)
    for r in flagged[:4]:
        numbers[f"dram_rd_wr_pct[{r['kernel'][:60]}]"] = round(r["dram_pct"], 1)
    worst = []
    for r in flagged[:WORST]:
        i = r["rows"]
        i = i[np.argmax(dur[i])]
        worst.append(instance(ctx, int(kreq[i]), int(k["start_ns"][i]), int(k["end_ns"][i]),
                              f"{r['ms_per_request']:.2f} ms/request at {r['dram_pct']:.0f}% of DRAM peak (read+write), "
                              f"SM issue {r['sm_issue_pct']:.0f}%, {'16-bit' if r['half'] else '32-bit'} data",
                              tid=int(rq.table["tid"][kreq[i]]), name=r["kernel"]))
    fp32 = any(not r["half"] for r in flagged)
    if m.unmixed is not None:
        u = m.unmixed
        notes = [f"metrics: DRAM read+write throughput samples (every {period / 1e3:.0f} us); a sample is the mean "
                 f"over the period after it, so each kernel name's own rate was unmixed from {u['samples']} samples "
                 f"by least squares (each window split by the time each name, the other kernels and idle took in "
                 f"it; residual {u['rms']:.1f} points rms); a name is judged when its rate's standard error is <= "
                 f"{MAX_RATE_SE_PCT:g} points and it ran >= {MIN_NAME_WINDOWS:g} sample periods"]
        for r in flagged[:4]:
            numbers[f"dram_rate_se_pct[{r['kernel'][:60]}]"] = round(r["dram_se"], 1)
    else:
        notes = [f"metrics: DRAM read+write throughput samples (every {period / 1e3:.0f} us), each attributed to the "
                 f"kernel running at its timestamp and averaged per kernel name over all its instances; a name is "
                 f"judged from {MIN_NAME_SAMPLES} samples on (a sample reads the period after it, so it mixes in the "
                 f"kernels that follow; kernels on several devices: not unmixed)"]
    n_index = sum(r["bound"] == "index" for r in flagged)
    n_dram = len(flagged) - n_index
    if n_index:
        title = ((f"{n_dram} kernel(s) at the DRAM bandwidth limit and " if n_dram else "")
                 + f"{n_index} memory-class kernel(s) bound by index arithmetic, in fusable chains: {bound_ms:.1f} ms "
                 f"of {own_ms:.1f} ms GPU per request")
        notes.append("index-bound: element-wise, reduction or pooling kernels by name whose SM issue slots are over "
                     f"{SM_ISSUE_MAX_PCT:g}% busy at under {DRAM_BOUND_PCT:g}% of DRAM peak (non-contiguous or "
                     "broadcast operands); they count only inside a fusable chain")
    else:
        title = (f"{len(flagged)} kernel(s) run at the DRAM bandwidth limit: {bound_ms:.1f} ms of {own_ms:.1f} ms GPU "
                 "per request")
    return [make_finding(
        ctx, "memory_bandwidth", title, impact,
        f"GPU time of the kernels at >= {DRAM_BOUND_PCT:g}% DRAM peak that fusion or 16-bit data removes: each "
        "chain of them (consecutive on one stream) fused into one kernel as long as its longest member, a lone "
        f"32-bit one at {1 - BYTES_CUT_FP32:g}x in bf16/fp16 = {numbers['gpu_saving_ms_per_request']} ms "
        f"GPU per request; x{factor:.1f} because requests queue on a saturated GPU behind the same work",
        Evidence(numbers=numbers, worst=worst, notes=notes),
        ("Move fewer bytes: " + ("run activations in bf16/fp16 (torch.autocast, model.half(), TensorRT fp16) to "
                                 "halve them; " if fp32 else "") +
         "fuse elementwise/normalisation chains into one kernel (torch.compile, TensorRT, fused LayerNorm/GELU/"
         "softmax kernels) so intermediates stay in registers instead of round-tripping through DRAM."),
        " ".join(w for w in (DRAM_WHY if n_dram else "", INDEX_WHY if n_index else "") if w))]


DRAM_WHY = ("These kernels already stream data at close to the GPU memory's peak rate while the SMs mostly wait on "
            "loads; their time is bytes / bandwidth, so more threads or a faster GPU core will not help, fewer bytes "
            "will.")
INDEX_WHY = ("The index-bound ones spend their issue slots computing addresses of strided or broadcast operands for "
             "trivial arithmetic; a fused kernel reads each input once, contiguous where it can, and writes no "
             "intermediates.")


def diagnose(ctx) -> list:
    m = measure(ctx)
    return [] if m is None else finding(ctx, m)


def _busiest_gpu(g, trace) -> int:
    gpus = uniq(g["gpu"])
    if len(gpus) == 1:
        return int(gpus[0])
    sm = np.isin(g["metric"], metric_ids(trace, "SMs Active"))
    means = [float(g["value"][sm & (g["gpu"] == x)].mean()) if (sm & (g["gpu"] == x)).any() else 0.0 for x in gpus]
    return int(gpus[int(np.argmax(means))])


def _no_metrics(ctx):
    return make_finding(
        ctx, "memory_bandwidth", "DRAM bandwidth not checked: the profile has no GPU metrics", 0.0,
        "not estimated: no GPU metrics samples", Evidence(notes=[
            f"record with `nsys profile {METRICS_FLAG}` to see whether kernels are limited by GPU memory bandwidth"]),
        f"Profile again with `{METRICS_FLAG}`.",
        "Without DRAM throughput samples a memory-bound kernel cannot be told from a compute-bound one.")
