"""precision on real zoo profiles: fp32_gemm's SGEMM runs on CUDA cores (FFMA, Tensor Active ~0); healthy's fp16
ResNet uses tensor-core kernels (xmma f16f16, nvjet hsh) and gets nothing."""
import sqlite3

from tests.conftest import zoo, zoo_report


def _finding(report, category):
    return next((f for f in report.findings if f.category == category), None)


def test_fp32_gemm_runs_ffma_kernels():
    db = sqlite3.connect(zoo("fp32_gemm"))
    n = db.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s ON s.id = k.shortName "
                   "WHERE s.value LIKE '%ffma%' AND s.value LIKE '%f32f32_f32f32%'").fetchone()[0]
    assert n >= 100
    f = _finding(zoo_report("fp32_gemm"), "precision")
    assert f is not None and f.severity == "high"
    assert f.evidence.numbers["cuda_core_gemm_share_of_gpu_pct"] >= 90
    assert f.evidence.numbers["tensor_active_pct_during"] < 5


def test_fp32_gemm_ranks_precision_first():
    top = max((f for f in zoo_report("fp32_gemm").findings if f.severity != "low"), key=lambda f: f.impact_pct)
    assert top.category == "precision"


def test_healthy_fp16_uses_tensor_cores():
    db = sqlite3.connect(zoo("healthy"))
    n = db.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s ON s.id = k.shortName "
                   "WHERE s.value LIKE '%f16f16%' OR s.value LIKE 'nvjet_sm90_hsh%'").fetchone()[0]
    assert n > 0
    assert _finding(zoo_report("healthy"), "precision") is None
