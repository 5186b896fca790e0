"""Detection on the two third-set pairs that had no finding of the fixed category (tests/data/README, H200):
ex_lnfuse_before (an unfused bf16 epilogue, a request period locked to the 2 kHz metric period) and
ex_sdreload_before (a state dict torch.load-ed and copied tensor by tensor in every request). Facts by SQL on the
exports and the programs' own sizes (examples/fused_layernorm.py, examples/state_dict_reload.py); the predicted
savings against the real fixes are tests/test_predict.py's."""
import sqlite3

import numpy as np
import pytest

from nsys_doctor.diagnose import Context, memory_bandwidth, model_loading
from nsys_doctor.model import gpu_metrics as G
from nsys_doctor.model.requests import find_requests
from nsys_doctor.read import open_trace
from tests.conftest import DATA, expand

H200_DRAM_BPS = 4.8e12          # datasheet (model/device.py PEAKS)
TENSOR_BYTES = 8192 * 4096 * 2  # one bf16 activation of examples/fused_layernorm.py: 64 MiB


def _measured(name, module):
    trace = open_trace(expand(DATA / f"{name}.sqlite.xz"))
    ctx = Context(trace, find_requests(trace))
    return trace, ctx, module.measure(ctx)


def _ranges(db, warmup):
    rows = db.execute("SELECT start, end FROM NVTX_EVENTS WHERE text = 'Inference' ORDER BY start").fetchall()
    return rows[warmup:]


def test_unmixed_rate_recovers_known_rates_from_overlapping_windows():
    # synthetic edge case (said so): two kernel names alternating, 30 us and 70 us, at 90% and 20% of peak, idle
    # 0%, sampled every 500 us with each sample the mean over the next 500 us, request period locked to 3 samples
    starts, ends, group = [], [], []
    t = 0
    for _ in range(300):
        for g, d in ((0, 30_000), (1, 70_000), (0, 30_000)):
            starts.append(t), ends.append(t + d), group.append(g)
            t += d
        t += 20_000                                              # idle gap
    s, e, grp = np.array(starts), np.array(ends), np.array(group)
    ts = np.arange(0, t - 500_000, 500_000)
    rate = np.array([90.0, 20.0])
    share = np.array([G.covered(*G.union(s[grp == j], e[grp == j]), ts, ts + 500_000) / 5e5 for j in (0, 1)])
    v = rate @ share
    u = G.unmixed_per_name(s, e, grp, 2, ts, v, 500_000.0)
    assert u["rate"] == pytest.approx(rate, abs=1e-6)
    # the per-name mean of the samples that land on each name blends the neighbours in: neither rate
    mean, _ = G.per_name(G.running_at(s, e, ts), v, grp, 2)
    assert abs(mean[0] - 90) > 10


def test_lnfuse_elementwise_rate_matches_the_bytes_the_program_moves():
    trace, ctx, m = _measured("ex_lnfuse_before", memory_bandwidth)
    try:
        assert m is not None and m.unmixed is not None
        (row,) = [r for r in m.flagged if r["kernel"] == "vectorized_elementwise_kernel"]
        db = sqlite3.connect(expand(DATA / "ex_lnfuse_before.sqlite.xz"))
        ranges = _ranges(db, ctx.requests.warmup)
        # SQL: the name's GPU time and its full-tensor launches (> 10 us; the 0-1 us ones are scalar ops) per request
        k = np.array(db.execute(
            "SELECT k.start, k.end FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s ON s.id = k.shortName "
            "WHERE s.value = 'vectorized_elementwise_kernel'").fetchall())
        inside = np.zeros(len(k), bool)
        for a, b in ranges:
            inside |= (k[:, 0] >= a) & (k[:, 1] <= b)
        dur = (k[inside, 1] - k[inside, 0]).astype(float)
        big = dur > 10_000
        # the unmixed rate x peak x the big launches' time = bytes per launch: each reads one or two 64 MiB
        # tensors and writes one (128-192 MiB); the old per-name sample mean would give less than one read + write
        per_launch = row["dram_pct"] / 100 * H200_DRAM_BPS * dur[big].sum() * 1e-9 / big.sum()
        assert 2 * TENSOR_BYTES * 0.9 <= per_launch <= 3 * TENSOR_BYTES * 1.1
        old = float(G.per_name(*_old_inputs(trace, m))[0][0])
        assert old * 1e-2 * H200_DRAM_BPS * dur[big].sum() * 1e-9 / big.sum() < 2 * TENSOR_BYTES
        assert row["dram_se"] <= memory_bandwidth.MAX_RATE_SE_PCT
        # the one chain per request holds every kernel but the GEMM (SQL: 22 kernels per request, 1 nvjet GEMM)
        n_other = db.execute(
            "SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s ON s.id = k.shortName WHERE "
            "s.value NOT LIKE 'nvjet%' AND " + " OR ".join(
                f"(k.start >= {a} AND k.end <= {b})" for a, b in ranges).join("()")).fetchone()[0]
        c = m.chains
        assert len(c["fused_ns"]) == len(ranges) and len(c["rows"]) == n_other == 21 * len(ranges)
    finally:
        trace.close()


def _old_inputs(trace, m):
    """per_name's inputs for the flagged vectorized kernel's rows alone (group 0), from the DRAM samples."""
    k = trace.table("kernels")
    g = trace.table("gpu_metrics")
    rd = G.metric_ids(trace, "DRAM Read Bandwidth")[0]
    wr = G.metric_ids(trace, "DRAM Write Bandwidth")[0]
    sr, sw = g["metric"] == rd, g["metric"] == wr
    o1, o2 = np.argsort(g["start_ns"][sr]), np.argsort(g["start_ns"][sw])
    ts = g["start_ns"][sr][o1]
    v = g["value"][sr][o1].astype(float) + g["value"][sw][o2].astype(float)
    (row,) = [r for r in m.flagged if r["kernel"] == "vectorized_elementwise_kernel"]
    group = np.full(len(k["start_ns"]), -1, np.int64)
    group[row["rows"]] = 0
    return G.running_at(k["start_ns"], k["end_ns"], ts), v, group, 1


def test_sdreload_state_dict_uploads_make_a_load_per_request():
    trace, ctx, m = _measured("ex_sdreload_before", model_loading)
    try:
        assert m is not None and not m.cold_only and m.file_backed
        db = sqlite3.connect(expand(DATA / "ex_sdreload_before.sqlite.xz"))
        ranges = _ranges(db, ctx.requests.warmup)
        assert len(m.loading) == len(ranges) == 12
        # SQL: host-to-device copies (copyKind 1) launched inside each measured range, by their runtime call
        ups, nbytes, reads = [], [], []
        for a, b in ranges:
            n, by = db.execute(
                "SELECT count(*), sum(m.bytes) FROM CUPTI_ACTIVITY_KIND_MEMCPY m JOIN CUPTI_ACTIVITY_KIND_RUNTIME r "
                "ON r.correlationId = m.correlationId WHERE m.copyKind = 1 AND r.start >= ? AND r.end <= ?",
                (a, b)).fetchone()
            ups.append(n), nbytes.append(by)
            reads.append(db.execute(
                "SELECT count(*) FROM OSRT_API o JOIN StringIds s ON s.id = o.nameId WHERE s.value = 'read' AND "
                "o.start >= ? AND o.end <= ?", (a, b)).fetchone()[0])
        assert len(m.window_rows) == sum(ups) and m.window_bytes == sum(nbytes)
        assert min(ups) >= model_loading.STATE_DICT_MIN_TENSORS and max(ups) < 100
        assert m.reads == sum(reads) > 100 * len(ranges)
        (f,) = model_loading.finding(ctx, m)
        assert f.evidence.numbers["uploads_per_load"] == pytest.approx(sum(ups) / len(ranges), abs=0.05)
        # the change moves each request's whole load: from its first read to its last upload, inside the
        # 'load_weights' phase and most of it (SQL)
        (mv,) = model_loading.change(m)
        ph = np.array(db.execute("SELECT start, end FROM NVTX_EVENTS WHERE text = 'load_weights' ORDER BY start")
                      .fetchall())[ctx.requests.warmup:]
        win = mv.end_ns - mv.start_ns
        assert np.all(mv.start_ns >= ph[:, 0]) and np.all(mv.end_ns <= ph[:, 1] + 1_000_000)
        assert np.all(win >= 0.9 * (ph[:, 1] - ph[:, 0]))
    finally:
        trace.close()


def test_zoo_requests_inputs_are_not_state_dicts():
    # the per-request input copies of the zoo: never STATE_DICT_MIN_TENSORS uploads adding up to LOAD_MIN_BYTES
    from tests.conftest import zoo
    for name in ("memcpy_pageable", "cpu_preproc", "dataload_starved", "healthy"):
        trace = open_trace(zoo(name))
        try:
            ctx = Context(trace, find_requests(trace))
            m = model_loading.measure(ctx)
            assert m is None or m.cold_only, name
        finally:
            trace.close()
