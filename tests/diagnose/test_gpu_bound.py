"""What a GPU-bound run is bound by, on the H200 fusion pair (tests/data): ex_fusion_before runs 13 unfused fp32
elementwise/reduction kernels per request (65-100 us each, far shorter than the 500 us metric period) at the DRAM
limit; torch.compile fused them into one Triton kernel (ex_fusion_after, 4.4x the throughput). Facts by SQL on the
export: the DRAM read+write samples whose timestamp falls inside a kernel of a name, averaged per name."""
import sqlite3

import numpy as np
import pytest

from tests.conftest import DATA, analysed, expand


def _db(name):
    return sqlite3.connect(expand(DATA / f"{name}.sqlite.xz"))


def _dram_at_kernels(db, like):
    """Mean DRAM read+write % of the samples taken while a kernel whose short name matches `like` ran (SQL only)."""
    ids = dict(db.execute("SELECT metricName, metricId FROM TARGET_INFO_GPU_METRICS"))
    rd, wr = ids["DRAM Read Bandwidth [Throughput %]"], ids["DRAM Write Bandwidth [Throughput %]"]
    return db.execute(
        "SELECT avg(r.value + w.value), count(*) FROM GPU_METRICS r JOIN GPU_METRICS w "
        "ON w.timestamp = r.timestamp AND w.metricId = ? AND w.typeId = r.typeId "
        "WHERE r.metricId = ? AND EXISTS (SELECT 1 FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s "
        "ON s.id = k.shortName WHERE s.value LIKE ? AND k.start <= r.timestamp AND k.end > r.timestamp)",
        (wr, rd, like)).fetchone()


def _finding(report, category):
    return next((f for f in report.findings if f.category == category), None)


def test_fusion_before_kernels_at_dram_limit_get_memory_bandwidth():
    db = _db("ex_fusion_before")
    dram, n = _dram_at_kernels(db, "%elementwise%")
    assert n >= 100 and dram >= 70            # independent: the samples landing on them read >= 70% of peak
    longest = db.execute("SELECT max(end - start) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0]
    assert longest < 500_000 // 2             # every kernel is shorter than half a 2 kHz sample period
    r = analysed(expand(DATA / "ex_fusion_before.sqlite.xz"))
    f = _finding(r, "memory_bandwidth")
    # most of the interval (a fusion opportunity is reported at most medium: memory_bandwidth.MAX_SEVERITY)
    assert f is not None and f.severity == "medium" and f.impact_pct >= 50
    assert "torch.compile" in f.fix
    judged = {k: v for k, v in f.evidence.numbers.items() if k.startswith("dram_rd_wr_pct[")}
    # the judged rate is the name's own (unmixed from the sample windows, memory_bandwidth.py), not the mean of the
    # samples landing on it: x the H200's 4.8 TB/s x its full-tensor launches' time (SQL, > 10 us) it gives the
    # bytes each launch moves, a read and a write of the 128 MiB tensor or two reads and a write (the program's
    # docstring: 2-3 x 128 MiB per op)
    t, cnt = db.execute("SELECT sum(k.end - k.start), count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s "
                        "ON s.id = k.shortName WHERE s.value = 'vectorized_elementwise_kernel' "
                        "AND k.end - k.start > 10000").fetchone()
    per_launch = judged["dram_rd_wr_pct[vectorized_elementwise_kernel]"] / 100 * 4.8e12 * t * 1e-9 / cnt
    assert 2 * 0.9 <= per_launch / 2**27 <= 3 * 1.1


def test_fusion_before_breakdown_names_memory_bound_kernels():
    r = analysed(expand(DATA / "ex_fusion_before.sqlite.xz"))
    g = r.requests["gpu_bound_by"]
    top = g["classes"][0]
    assert top["class"] == "memory_bound" and top["share_pct"] >= 95
    # 13 kernels per measured request (SQL in tests/data/README.md's facts): all of them memory-bound here
    assert abs(top["kernels_per_request"] - 13) < 0.5
    assert top["dram_pct"] >= 65 and top["samples"] >= 100
    assert g["best"]["category"] == "memory_bandwidth"
    assert "memory-bound kernels" in r.verdict and "DRAM peak" in r.verdict


def test_fusion_after_fused_kernel_not_flagged():
    dram, n = _dram_at_kernels(_db("ex_fusion_after"), "triton%")
    assert n >= 20 and dram < 30              # the fused kernel reads each byte once: far from the DRAM limit
    f = _finding(analysed(expand(DATA / "ex_fusion_after.sqlite.xz")), "memory_bandwidth")
    assert f is None or f.severity != "high"


def test_fp32_gemm_breakdown_cuda_core_matmul_far_from_dram():
    # fp32_gemm (H100): SGEMM on CUDA cores is nearly all its GPU time (SQL), compute-bound: DRAM low, issue high
    from tests.conftest import zoo, zoo_report
    db = sqlite3.connect(zoo("fp32_gemm"))
    tot, sg = db.execute("SELECT sum(k.end - k.start), sum(CASE WHEN s.value LIKE '%f32f32_f32f32%' THEN k.end - "
                         "k.start ELSE 0 END) FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s "
                         "ON s.id = k.shortName").fetchone()
    assert sg / tot > 0.9
    g = zoo_report("fp32_gemm").requests["gpu_bound_by"]
    top = g["classes"][0]
    assert top["class"] == "cuda_core_matmul" and top["share_pct"] >= 90
    assert top["dram_pct"] < 20 and top["sm_issue_pct"] > 60
    assert g["best"]["category"] == "precision"


def test_pageable_copies_class_rate_against_host_link():
    # memcpy_pageable: the copies' own bytes / time (SQL) against the H100's PCIe Gen5 x16 (64 GB/s per direction)
    from tests.conftest import zoo, zoo_report
    db = sqlite3.connect(zoo("memcpy_pageable"))
    b, t = db.execute("SELECT sum(bytes), sum(end - start) FROM CUPTI_ACTIVITY_KIND_MEMCPY "
                      "WHERE copyKind IN (1, 2)").fetchone()
    g = zoo_report("memcpy_pageable").requests["gpu_bound_by"]
    cp = next(c for c in g["classes"] if c["class"] == "copies")
    assert g["classes"][0]["class"] == "copies"
    assert abs(cp["host_link_pct"] - 100 * b / t / 64.0) < 2     # measured requests vs whole file: close


def test_device_peaks_from_profile_then_table():
    from nsys_doctor.model.device import peaks
    assert peaks({"name": "NVIDIA H200", "memory_bandwidth_Bps": 4814304000000})["dram_GBps"] == 4814.304
    assert peaks({"name": "NVIDIA L4"})["dram_GBps"] == 300.0          # datasheet (synthetic entry: no profile)
    assert peaks({"name": "NVIDIA A100-SXM4-80GB"})["link_GBps"] == 32.0
    assert peaks({"name": "Some GPU"})["dram_GBps"] is None


def test_overlapping_ranges_count_cpu_time_once():
    # ex_fusion_before's 16 requests in flight overlap on one thread (SQL: ranges that start before the previous
    # one ended); one thread cannot be on the CPU longer than the wall clock, so its CPU need per request is at
    # most the request interval (it was 5.2 ms against a 0.98 ms interval when each overlap counted again)
    db = _db("ex_fusion_before")
    overlapping = db.execute(
        "SELECT count(*) FROM (SELECT start, lag(end) OVER (ORDER BY start) AS prev_end FROM NVTX_EVENTS "
        "WHERE text = 'Inference') WHERE start < prev_end").fetchone()[0]
    assert overlapping > 300
    r = analysed(expand(DATA / "ex_fusion_before.sqlite.xz")).requests
    assert len(r["threads"]) == 1
    assert r["load_evidence"]["cpu_ms_per_request"] <= r["interval_ms"]


def _breakdown_and_finding(name, force_gpu_bound=False):
    """The GPU-bound breakdown and the memory_bandwidth finding of one analysis (ex_lnfuse_before is not GPU-bound:
    its 1.44 ms requests leave the GPU idle between them, so its breakdown is asked for directly)."""
    from nsys_doctor.analysis import analyze_trace, gpu_bound
    from nsys_doctor.diagnose import Context, diagnose_all
    from nsys_doctor.model.queueing import measure_queue
    from nsys_doctor.model.requests import find_requests
    from nsys_doctor.read import open_trace
    trace = open_trace(expand(DATA / f"{name}.sqlite.xz"))
    if not force_gpu_bound:
        r = analyze_trace(trace, timeline=False)
        return r.requests["gpu_bound_by"], _finding(r, "memory_bandwidth")
    req = find_requests(trace)
    measure_queue(trace, req)
    ctx = Context(trace, req)
    findings = diagnose_all(ctx)
    return gpu_bound.gpu_bound_by(ctx, {"bound_by": "gpu"}, findings), _finding_in(findings, "memory_bandwidth")


def _finding_in(findings, category):
    return next((f for f in findings if f.category == category), None)


@pytest.mark.parametrize("name, force", [("ex_fusion_before", False), ("ex_lnfuse_before", True)])
def test_the_breakdown_shows_each_kernel_at_the_dram_rate_memory_bandwidth_judged_it_by(name, force):
    """One kernel, one DRAM % in a report: the breakdown's class rate comes from the names' unmixed rates, which it
    lists with the value the memory_bandwidth finding's evidence gives them."""
    g, f = _breakdown_and_finding(name, force)
    assert f is not None and g is not None
    judged = {k[len("dram_rd_wr_pct["):-1]: v for k, v in f.evidence.numbers.items() if k.startswith("dram_rd_wr_pct[")}
    se = {k[len("dram_rate_se_pct["):-1]: v for k, v in f.evidence.numbers.items()
          if k.startswith("dram_rate_se_pct[")}
    assert judged and se                     # the finding's rates were unmixed (one device)
    shown = {x["kernel"][:60]: x for c in g["classes"] for x in c.get("kernels", [])}
    for kernel, pct in judged.items():
        assert shown[kernel]["dram_pct"] == pct and shown[kernel]["how"] == "unmixed"
        assert shown[kernel]["dram_se_pct"] == se[kernel]
    # each class's DRAM % is the time-weighted mean of its listed names' own rates where they hold most of its
    # time, and says so
    from nsys_doctor.analysis.gpu_bound import UNMIXED_CLASS_SHARE_PCT
    checked = 0
    for c in g["classes"]:
        if not c.get("kernels"):
            continue
        w = np.array([x["ms_per_request"] for x in c["kernels"]])
        rate = np.array([x["dram_pct"] for x in c["kernels"]])
        assert sum(w) <= c["ms_per_request"] + 0.002 * len(w)       # rounding of each name's time
        assert c["dram_unmixed_share_pct"] == pytest.approx(100 * sum(w) / c["ms_per_request"], abs=0.5)
        if c["dram_unmixed_share_pct"] < UNMIXED_CLASS_SHARE_PCT:
            assert c["dram_how"] in ("blended", None)
            continue
        assert c["dram_how"] == "unmixed"
        assert c["dram_pct"] == pytest.approx(float((w * rate).sum() / w.sum()), abs=0.1)
        checked += 1
    assert checked


def test_fusion_before_class_rate_is_not_the_blended_one():
    """ex_fusion_before (SQL): the samples landing on its kernels read below the rate of its main kernel, whose own
    rate the finding and the breakdown show (the 65-100 us kernels share each 500 us sample with their neighbours)."""
    db = _db("ex_fusion_before")
    blended, n = _dram_at_kernels(db, "%")
    g, f = _breakdown_and_finding("ex_fusion_before")
    top = g["classes"][0]
    main = max(top["kernels"], key=lambda x: x["ms_per_request"])
    assert main["kernel"] == "vectorized_elementwise_kernel"
    assert main["dram_pct"] == f.evidence.numbers["dram_rd_wr_pct[vectorized_elementwise_kernel]"] > blended + 5
