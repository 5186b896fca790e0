"""TensorRT detection and per-layer GPU time on the real TensorRT profiles in shared/external, checked against
independent SQL: layer ranges of the TensorRT NVTX domain inside ExecutionContext::enqueue/execute ranges, joined with
the CUDA API calls made on the same thread inside them (time containment), then with the kernels they launched
(same process, same correlation id). The SQL shares no code with nsys_doctor."""
import io
import sqlite3

import pytest

from nsys_doctor.analysis import analyze
from nsys_doctor.model.requests import find_requests
from nsys_doctor.model.tensorrt import OUTSIDE, detect, layer_table
from nsys_doctor.read import open_trace
from nsys_doctor.render.terminal import render
from nsys_doctor.report import Report
from tests.conftest import external, zoo

TRT = ["realcugan-tensorrt__profile", "hambugy-trt-vit-orin__dense", "hambugy-trt-vit-orin__sparse",
       "memfusion-trt-resnet__report1", "memfusion-trt-resnet__report1__orig"]

# Temp tables (a read-only profile still has a writable temp schema) and an index keep the joins under a second.
SETUP = """
CREATE TEMP TABLE r AS SELECT n.start, n.end, n.globalTid AS tid, coalesce(n.text, s.value) AS name
  FROM NVTX_EVENTS n LEFT JOIN StringIds s ON s.id = n.textId
  WHERE n.eventType = 59
    AND n.domainId IN (SELECT domainId FROM NVTX_EVENTS WHERE eventType = 75 AND text = 'TensorRT');
CREATE TEMP TABLE enq AS SELECT * FROM r WHERE name LIKE 'ExecutionContext::%';
CREATE TEMP TABLE lay AS SELECT r.* FROM r JOIN enq e ON r.tid = e.tid AND r.start >= e.start AND r.end <= e.end
  WHERE r.name NOT LIKE 'ExecutionContext::%';
CREATE TEMP TABLE calls AS SELECT start, globalTid AS tid, correlationId AS corr, globalTid >> 24 AS proc
  FROM CUPTI_ACTIVITY_KIND_RUNTIME WHERE eventClass IN (0, 1);
CREATE INDEX temp.calls_at ON calls (tid, start);
"""
PER_LAYER = """SELECT lay.name, sum(k.end - k.start) FROM lay
  JOIN calls a ON a.tid = lay.tid AND a.start BETWEEN lay.start AND lay.end
  JOIN CUPTI_ACTIVITY_KIND_KERNEL k ON k.correlationId = a.corr AND k.globalPid >> 24 = a.proc
  GROUP BY lay.name ORDER BY 2 DESC"""
IN_ENQUEUE = """SELECT sum(k.end - k.start) FROM enq
  JOIN calls a ON a.tid = enq.tid AND a.start BETWEEN enq.start AND enq.end
  JOIN CUPTI_ACTIVITY_KIND_KERNEL k ON k.correlationId = a.corr AND k.globalPid >> 24 = a.proc"""
ENQUEUES = "SELECT count(*) FROM enq"


def sql_layers(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        db.executescript(SETUP)
        return (db.execute(PER_LAYER).fetchall(), db.execute(IN_ENQUEUE).fetchone()[0],
                db.execute(ENQUEUES).fetchone()[0])
    finally:
        db.close()


@pytest.fixture(scope="module")
def realcugan():
    path = external("realcugan-tensorrt__profile")
    trace = open_trace(path)
    yield path, trace, layer_table(trace, find_requests(trace))
    trace.close()


@pytest.mark.parametrize("name", TRT)
def test_tensorrt_profiles_are_detected_by_domain_enqueues_and_kernels(name):
    d = detect(open_trace(external(name)))
    assert d and d["detected"] and d["nvtx_domain"]
    assert d["enqueues"] >= 1 and d["layer_ranges"] >= 3
    assert d["tensorrt_kernel_pct"] > 50        # most kernels are TensorRT's own (trt_*, *_trt, __myl_*, ...)
    assert any("kernels" in s for s in d["signs"])


def test_nvtx_only_tensorrt_profile_is_detected_without_kernels():
    # centerformer poolformer: TensorRT NVTX (188 ExecutionContext::execute) but recorded without --trace=cuda
    d = detect(open_trace(external("centerformer-inference__poolformer_69f7eaf")))
    assert d["nvtx_domain"] and d["enqueues"] == 188 and d["kernel_families"] == {}


def test_pytorch_profile_is_not_tensorrt():
    assert detect(open_trace(zoo("healthy"))) is None      # zoo: PyTorch + cuBLAS, no TensorRT


def test_realcugan_top_layers_match_sql(realcugan):
    path, _, rows = realcugan
    expected, _, _ = sql_layers(path)
    layers = [r for r in rows if r["name"] != OUTSIDE]
    assert [r["name"] for r in layers[:5]] == [name for name, _ in expected[:5]]
    for row, (name, ns) in zip(layers[:5], expected[:5]):
        assert row["gpu_ms"] == pytest.approx(ns / 1e6, rel=0.01), name
    # every layer SQL attributes GPU time to is a row with the same time; the others (56 of 160 layer names:
    # shuffles, slices TensorRT folds away) are rows that launched no kernel
    by_name = {r["name"]: r["gpu_ms"] for r in layers if r["kernels"]}
    assert len(by_name) == len(expected) == 104 and len(layers) == 160
    assert all(by_name[name] == pytest.approx(ns / 1e6, rel=0.01) for name, ns in expected)


def test_realcugan_layers_plus_outside_equal_gpu_time_launched_inside_enqueues(realcugan):
    path, _, rows = realcugan
    _, in_enqueue_ns, enqueues = sql_layers(path)
    assert sum(r["gpu_ms"] for r in rows) == pytest.approx(in_enqueue_ns / 1e6, rel=1e-6)
    outside = [r for r in rows if r["name"] == OUTSIDE]
    assert len(outside) == 1 and 0 < outside[0]["share_pct"] < 1   # 32 kernels: the first enqueue of each thread
    assert sum(r["share_pct"] for r in rows) == pytest.approx(100, abs=0.1)
    top = rows[0]
    assert top["calls"] == enqueues == 137 and top["gpu_ms_per_enqueue"] == pytest.approx(top["gpu_ms"] / 137, rel=1e-3)
    assert top["gpu_ms_per_request"] == pytest.approx(top["gpu_ms_per_enqueue"], rel=1e-3)  # requests = enqueues


def test_foreign_node_is_fused_and_split_by_myelin_ranges(realcugan):
    _, _, rows = realcugan
    fused = [r for r in rows if r["fused"]]
    assert [r["name"] for r in fused] == ["{ForeignNode[ONNXTRT_ShapeShuffle_1268_output[Constant].../Transpose_10]}"]
    row = fused[0]
    assert row["kernels"] == 959 and row["ops"][0]["name"].startswith("__myl_")
    assert sum(o["gpu_ms"] for o in row["ops"]) == pytest.approx(row["gpu_ms"], rel=0.01)
    assert not any(r["fused"] for r in rows if r["name"].startswith("Reformatting CopyNode"))


def test_hambugy_vit_is_one_myelin_region():
    # ViT on Orin: one {ForeignNode[...]} holds all 24 transformer blocks; only the patch conv is a plain layer
    trace = open_trace(external("hambugy-trt-vit-orin__dense"))
    rows = layer_table(trace)
    assert rows[0]["fused"] and rows[0]["share_pct"] > 95 and rows[0]["gpu_ms_per_request"] is None
    assert "myelin-exec" in rows[0]["note"] and rows[0]["ops"][0]["name"] == "__myl_Fc"


def test_analyze_reports_and_renders_layers():
    report = analyze(external("realcugan-tensorrt__profile"))
    assert report.profile["tensorrt"]["enqueues"] == 137
    layers = report.requests["tensorrt_layers"]
    assert 10 <= len(layers) <= 30 and layers[0]["name"] == "/conv5/Conv + PWN(/LeakyRelu_13)"
    out = io.StringIO()
    render(Report.from_dict(report.to_dict()), file=out, width=120)
    assert "TensorRT layers" in out.getvalue() and "/conv5/Conv" in out.getvalue()


def test_layer_names_are_escaped_when_rendered():
    # synthetic: a layer name that is rich markup must print as text
    report = Report(profile={"tensorrt": {"signs": ["[red]x"]}}, requests={"tensorrt_layers": [
        {"name": "[bold]evil[/bold]", "calls": 1, "kernels": 1, "gpu_ms_per_enqueue": 1.0, "share_pct": 100.0,
         "fused": False}]})
    out = io.StringIO()
    render(report, file=out, width=120)
    assert "[bold]evil[/bold]" in out.getvalue() and "[red]x" in out.getvalue()


def test_pytorch_report_has_no_layer_table():
    report = analyze(zoo("healthy"))
    assert report.profile["tensorrt"] is False and "tensorrt_layers" not in report.requests
