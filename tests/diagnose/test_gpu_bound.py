"""What a GPU-bound run is bound by, on the H200 fusion pair (tests/data): ex_fusion_before runs 13 unfused fp32
elementwise/reduction kernels per request (65-100 us each, far shorter than the 500 us metric period) at the DRAM
limit; torch.compile fused them into one Triton kernel (ex_fusion_after, 4.4x the throughput). Facts by SQL on the
export: the DRAM read+write samples whose timestamp falls inside a kernel of a name, averaged per name."""
import sqlite3

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
