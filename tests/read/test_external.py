"""Every third-party export in ../shared/external/nsys (Nsight Systems 2022.1 to 2025.3, their authors' exports and
2025.3 re-exports) gives a diagnosis or one clear reason why there is none. The table is the contract: which range
is taken as a request and how many there are, or which problem is named. Request counts of NVTX ranges are checked
against our own SQL on the file; the reasons against what the file lacks (shared/external/README.md)."""
from __future__ import annotations

import sqlite3

import pytest

from nsys_doctor.analysis import analyze
from nsys_doctor.errors import NsysDoctorError
from tests.conftest import EXTERNAL, external

WHOLE = "(whole GPU-active window)"
NO_CUDA = "no CUDA activity recorded"
NO_GPU_WORK = "no GPU work recorded"
STEP8 = "step (layer_0_computation .. layer_7_computation)"

# file -> ("report", request range, requests) or ("error", what the one-line message must say)
OUTCOMES = {
    "abacus-multidnn__report1": ("report", WHOLE, 1),                 # two DNNs, no NVTX, nothing repeats
    "abacus-multidnn__report2": ("report", WHOLE, 1),
    "centerformer-inference__baseline_69f7eaf": ("error", NO_CUDA),    # NVTX only
    "centerformer-inference__baseline_69f7eaf__orig": ("error", NO_CUDA),
    "centerformer-inference__baseline_bb42268": ("error", NO_CUDA),
    "centerformer-inference__poolformer_69f7eaf": ("error", NO_CUDA),
    "centerformer-inference__poolformer_69f7eaf__orig": ("error", NO_CUDA),
    "centerformer-inference__poolformer_bb42268": ("error", NO_CUDA),
    "cuda-mlp-inference__nsys_report": ("report", WHOLE, 1),
    "darknet-yolo__report1": ("report", WHOLE, 1),
    "darknet-yolo__report2": ("error", NO_CUDA),                      # "CUDA trace requires root"
    "dlprof-dummy-cnn__nsys_profile_no_relu": ("report", WHOLE, 1),   # only per-op emit_nvtx/DLProf ranges
    "dlprof-dummy-cnn__nsys_profile_no_relu__orig": ("report", WHOLE, 1),
    "dlprof-dummy-cnn__nsys_profile_w_relu": ("report", WHOLE, 1),
    "dlprof-dummy-cnn__nsys_profile_w_relu__orig": ("report", WHOLE, 1),
    "dynamicvit-inference__nsys_profile": ("error", NO_CUDA),         # empty export
    "dynamicvit-inference__nsys_profile__orig": ("error", NO_CUDA),
    "h20-microbench__report2": ("error", NO_CUDA),                    # protected memory mode: no CUDA trace
    "hambugy-trt-vit-orin__dense": ("report", "ExecutionContext::enqueue", 20),
    "hambugy-trt-vit-orin__sparse": ("report", "ExecutionContext::enqueue", 20),
    "llama3-inference__basic_analysis": ("error", NO_CUDA),
    "llama3-inference__basic_analysis__orig": ("error", NO_CUDA),
    "llama3-inference__demo": ("report", "kv_h2d_transfer", 8),
    "llama3-inference__demo__orig": ("report", "kv_h2d_transfer", 8),
    "llama3-inference__profile": ("error", NO_GPU_WORK),              # 2 API calls, no kernels
    # eight sibling ranges layer_0_computation .. layer_7_computation, nothing around them: grouped into steps
    "llama3-inference__real_inference_simulation": ("report", STEP8, 64),
    "llama3-inference__real_inference_simulation__orig": ("report", STEP8, 64),
    "llm-community-comm__report1": ("report", WHOLE, 1),
    "memfusion-trt-resnet__report1": ("report", WHOLE, 1),            # one TensorRT execute: nothing repeats
    "memfusion-trt-resnet__report1__orig": ("report", WHOLE, 1),
    "nanotabpfn__report": ("error", NO_CUDA),
    "nvbitfi-darknet-yolov3__darknet1img": ("report", WHOLE, 1),
    "nvbitfi-darknet-yolov3__darknet1img__orig": ("report", WHOLE, 1),
    "nvbitfi-darknet-yolov3__darknet1img_tiny": ("report", WHOLE, 1),
    "nvbitfi-darknet-yolov3__darknet1img_tiny__orig": ("report", WHOLE, 1),
    "nvfuser-accidental__report1_64ee035_h200_test_matmul": ("report", WHOLE, 1),
    "nvfuser-accidental__report1_64ee035_h200_test_matmul__orig": ("report", WHOLE, 1),
    "nvfuser-accidental__report1_8fa9ec2_8xh100node_test_matmul": ("report", WHOLE, 1),
    "nvfuser-accidental__report1_ee4fcf3_h200_pytest_crossentropy": (
        "report", "FusionExecutorCache::runFusionWithInputs", 2),
    "nvfuser-accidental__report1_ee4fcf3_h200_pytest_crossentropy__orig": (
        "report", "FusionExecutorCache::runFusionWithInputs", 2),
    "pipit__perlmutter-cloverleaf-cuda": ("report", WHOLE, 1),
    "pipit__saxpy-mpi-cuda_nsys_perlmutter0": ("report", "saxpy", 5),
    "realcugan-tensorrt__profile": ("report", "ExecutionContext::enqueue", 137),
    "tomato-vit-inference__ToMato_sim0.001": ("error", NO_CUDA),
    "tomato-vit-inference__ToMato_sim0.01": ("error", NO_CUDA),
    "tomato-vit-inference__tome_prune_r14_base": ("error", NO_CUDA),
    "tomato-vit-inference__tome_r0_base": ("error", NO_CUDA),
    "uvmtorch-edgecase__report1": ("error", NO_GPU_WORK),
}


def test_the_table_covers_every_file():
    files = {p.name[: -len(".sqlite.xz")] for p in (EXTERNAL / "nsys").glob("*.sqlite.xz")}
    if not files:
        pytest.skip("../shared/external is missing")
    assert files == set(OUTCOMES)


def nvtx_count(path, name: str) -> int:
    """Instances of an NVTX range by name, by our own SQL (push/pop and start/end: eventType 59, 60)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cols = {r[1] for r in db.execute("PRAGMA table_info(NVTX_EVENTS)")}
        text = "COALESCE(e.text, s.value)" if "textId" in cols else "e.text"
        join = "LEFT JOIN StringIds s ON s.id = e.textId" if "textId" in cols else ""
        return db.execute(f"SELECT count(*) FROM NVTX_EVENTS e {join} WHERE e.eventType IN (59, 60) "
                          f"AND e.end IS NOT NULL AND {text} = ?", (name,)).fetchone()[0]
    finally:
        db.close()


@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_external_profile(name):
    path = external(name)
    want = OUTCOMES[name]
    if want[0] == "error":
        with pytest.raises(NsysDoctorError) as err:
            analyze(path)
        assert want[1] in err.value.problem and "\n" not in err.value.problem
        return
    report = analyze(path)
    r = report.requests
    assert (r["range"], r["total"]) == want[1:]
    assert r["inferred"] == (want[1] == WHOLE)
    if want[1] != WHOLE:
        # a step of sibling ranges: as many steps as instances of its first range
        first = want[1][len("step ("):].split(" .. ")[0] if want[1].startswith("step (") else want[1]
        assert nvtx_count(path, first) == want[2]
    lat = r["latency_ms"]
    assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert all(f.severity in ("high", "medium", "low") and f.impact_ms >= 0 for f in report.findings)
    if name.startswith(("realcugan", "hambugy", "memfusion")):
        assert report.profile["tensorrt"], "TensorRT engines must be recognised"
