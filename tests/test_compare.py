"""compare(): latency distributions, breakdown, kernels and findings of two real profiles.

Pairs: launch_bound vs launch_bound_graphed (zoo, same MLP eager vs CUDA graph), hambugy-trt-vit-orin dense vs
sparse (external TensorRT ViT), and a same-program control. Each Report is analysed once per session.
"""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from nsys_doctor.analysis import analyze
from nsys_doctor.compare import compare, mann_whitney
from nsys_doctor.compare.saved import read_saved
from nsys_doctor.report import Report
from tests.conftest import DATA, analysed, expand, external, zoo

_REPORTS: dict = {}


def report(kind: str, name: str) -> Report:
    if name not in _REPORTS:
        _REPORTS[name] = analyze(zoo(name) if kind == "zoo" else external(name))
    return _REPORTS[name]


def half(r: Report, parity: int) -> Report:
    """Every other measured request of one report (odd or even): a same-program control built from real data."""
    d = r.to_dict()
    pr = d["per_request"]
    keep = [i for i, w in enumerate(pr["warmup"]) if not w][parity::2]
    d["per_request"] = {k: [v[i] for i in keep] for k, v in pr.items()}
    return Report.from_dict(d)


def _sql_latencies_ms(path) -> np.ndarray:
    """Independent of nsys-doctor: per `Inference` range, range start to the later of the range end and the end of
    the GPU work of that request (the i-th CUDA graph of the run for launch_bound_graphed; 203 ranges, 203 graphs)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rng = np.array(db.execute(
        "SELECT e.start, e.end FROM NVTX_EVENTS e LEFT JOIN StringIds s ON e.textId = s.id "
        "WHERE coalesce(e.text, s.value) = 'Inference' ORDER BY e.start").fetchall(), dtype=np.int64)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    end = rng[:, 1]
    if "CUPTI_ACTIVITY_KIND_GRAPH_TRACE" in tables:
        g = np.array(db.execute("SELECT end FROM CUPTI_ACTIVITY_KIND_GRAPH_TRACE ORDER BY start").fetchall())[:, 0]
        assert len(g) == len(rng)
        end = np.maximum(end, g)
    db.close()
    return (end - rng[:, 0])[3:] / 1e6      # the first three ranges are warm-up (profiles/README.md)


def test_graphed_requests_queue_deeper_but_the_headline_is_their_far_higher_throughput():
    before, after = report("zoo", "launch_bound"), report("zoo", "launch_bound_graphed")
    d = compare(before, after)
    # The graphed loop enqueues a 0.78 ms graph per request and returns in ~0.3 ms, so requests queue behind
    # each other on the GPU: latency (range start to GPU end) grows although the GPU finishes 20x more per second.
    ind_b, ind_a = _sql_latencies_ms(zoo("launch_bound")), _sql_latencies_ms(zoo("launch_bound_graphed"))
    assert d["latency"]["percentiles"]["p50"]["before_ms"] == pytest.approx(np.percentile(ind_b, 50), rel=0.01)
    assert d["latency"]["percentiles"]["p50"]["after_ms"] == pytest.approx(np.percentile(ind_a, 50), rel=0.01)
    assert np.median(ind_a) > 3 * np.median(ind_b)           # measured: 61.7 vs 16.3 ms
    assert d["latency"]["verdict"] == "slower" and d["latency"]["n_before"] == d["latency"]["n_after"] == 200
    assert d["latency"]["mann_whitney"]["p"] < 1e-10
    lo, hi = d["latency"]["percentiles"]["p50"]["ci_ms"]
    assert 0 < lo < 45.4 < hi                                  # measured change +45.4 ms
    tp = d["throughput_per_s"]
    assert tp["after"] > 10 * tp["before"]                     # measured: 56 -> 1278 requests/s
    # the graphed run is throughput-bound: the verdict is about throughput, latency comes with its reason
    assert d["load"] == {"before": "latency-bound", "after": "throughput-bound"}
    assert d["headline"] == "throughput" and d["verdict"] == "faster"
    iv = d["interval"]
    # independent: the interval is the span of the measured requests over their number (SQL latencies + starts)
    assert iv["before_ms"] == pytest.approx(before.requests["interval_ms"], rel=0.01)
    assert iv["after_ms"] == pytest.approx(after.requests["interval_ms"], rel=0.01)
    assert iv["throughput_ratio"] == pytest.approx(22.7, abs=0.2)            # 17.75 -> 0.78 ms
    assert d["summary"].startswith("faster: 22.") and "the throughput" in d["summary"]
    assert iv["mann_whitney"]["p"] < 1e-10 and iv["ci_ms"][1] < 0
    assert d["latency_reason"].startswith("latency rose 279% from queueing")
    # where the time went: GPU idle between tiny launches became queueing behind earlier requests
    bd = d["breakdown_ms"]
    assert bd["gpu_idle"]["before"] > 15 and bd["gpu_idle"]["after"] < 1
    assert bd["other_gpu_work"]["after"] > 40
    assert d["counts"]["launches_per_request"]["before"] == 600 and d["counts"]["launches_per_request"]["after"] == 1
    k = d["kernels"]
    assert {r["name"] for r in k["vanished"]} == {"vectorized_elementwise_kernel", "kernel"}
    assert [r["name"] for r in k["new"]] == ["CUDA graph 1"] and k["matched"] == 0


def test_reversed_pair_is_slower_in_throughput_though_latency_falls():
    # eager again: each request waits for its own launches, so none queues (latency -73.6%), but the program
    # finishes 22.7x fewer requests per second: worse in the metric that bounds the graphed run
    d = compare(report("zoo", "launch_bound_graphed"), report("zoo", "launch_bound"))
    assert d["latency"]["verdict"] == "faster" and d["latency"]["change_pct"] == pytest.approx(-73.6, abs=0.5)
    assert d["verdict"] == "slower" and d["headline"] == "throughput"
    assert "because fewer requests queue" in d["latency_reason"]


def test_pinned_copies_pair_is_faster_in_latency_and_throughput():
    # tests/data: examples/pinned_copies.py pageable -> pinned; each request waits for its result in both runs
    # (latency-bound), so the headline is latency, with the throughput gain beside it
    before, after = (analyze(expand(DATA / f"ex_pinned_{v}.sqlite.xz")) for v in ("before", "after"))
    assert before.requests["load"] == after.requests["load"] == "latency-bound"
    d = compare(before, after)
    assert d["headline"] == "latency" and d["verdict"] == "faster"
    ratio = before.requests["interval_ms"] / after.requests["interval_ms"]      # measured: 11.32 / 1.33 ms
    assert d["interval"]["verdict"] == "faster" and d["interval"]["throughput_ratio"] == pytest.approx(ratio, rel=0.02)
    assert f"{d['interval']['throughput_ratio']:.3g}x the throughput" in d["summary"]


def test_sparse_trt_vit_is_faster_than_dense():
    d = compare(report("ext", "hambugy-trt-vit-orin__dense"), report("ext", "hambugy-trt-vit-orin__sparse"))
    # measured: p50 101.5 -> 85.2 ms (-16.1%), 20 requests each, throughput 43.7 -> 51.9 /s
    assert d["verdict"] == "faster"
    assert d["latency"]["change_pct"] == pytest.approx(-16.1, abs=0.5)
    assert d["latency"]["mann_whitney"]["p"] < 0.01
    assert d["throughput_per_s"]["after"] > d["throughput_per_s"]["before"]
    assert d["breakdown_ms"]["compute"]["change"] < -2            # own compute 22.5 -> 18.8 ms
    assert d["kernels"]["matched"] > 0


@pytest.mark.parametrize("name", ["healthy", "launch_bound", "launch_bound_graphed"])
def test_same_program_halves_show_no_change(name):
    # No second recording of the same program exists here yet (tests/data/ex_*_run2 were being recorded), so the
    # control is one run's measured requests split odd vs even: same program, same GPU, only noise differs.
    r = report("zoo", name)
    d = compare(half(r, 0), half(r, 1))
    assert d["verdict"] == "no significant change", d["latency"]["reasons"]


def test_same_program_runs_show_no_change():
    # tests/data: examples/sync_per_layer.py --fixed profiled three times back to back on one H100
    runs = [DATA / f"ex_sync_after{s}.sqlite.xz" for s in ("", "_run2", "_run3")]
    if not all(r.exists() for r in runs):
        pytest.skip("tests/data/ex_sync_after*.sqlite.xz recordings missing")
    reports = [analyze(expand(r)) for r in runs]
    for i in range(3):
        for j in range(i + 1, 3):
            d = compare(reports[i], reports[j])
            assert d["verdict"] == "no significant change", (runs[i].name, runs[j].name, d["latency"]["reasons"])
            # the request interval too: up to 5.3% apart, under the 8% floor
            assert d["interval"]["verdict"] == "no significant change", d["interval"]["reasons"]


def test_example_fix_is_faster_beyond_noise():
    # examples/cuda_graph_decode.py eager vs CUDA graph: 7.6 -> 1.4 ms p50 (README)
    before, after = (analyze(expand(DATA / f"ex_graph_{v}.sqlite.xz")) for v in ("before", "after"))
    d = compare(before, after)
    assert d["verdict"] == "faster" and d["latency"]["change_pct"] < -70


def test_identical_reports_and_saved_json_roundtrip(tmp_path):
    import json
    r = report("zoo", "launch_bound")
    p = tmp_path / "lb.json"
    p.write_text(json.dumps(r.to_dict()))
    d = compare(read_saved(p), r)
    assert d["verdict"] == "no significant change" and d["latency"]["percentiles"]["p50"]["change_ms"] == 0
    assert d["kernels"]["matched"] == 2 and not d["kernels"]["new"]


def test_mann_whitney_matches_known_values():
    # synthetic edge cases, stated as such: identical samples; full separation; ties
    same = mann_whitney(np.ones(10), np.ones(10))
    assert same["p"] == 1.0
    sep = mann_whitney(np.arange(10.0) + 100, np.arange(10.0))
    assert sep["u"] == 100 and sep["p_after_faster"] == 1.0 and sep["p"] < 0.001
    # scipy 1.x: mannwhitneyu([1,2,2,3,4], [2,3,3,5,6], method="asymptotic") -> U=6.0, p=0.198829 (ties, continuity)
    t = mann_whitney(np.array([1, 2, 2, 3, 4.0]), np.array([2, 3, 3, 5, 6.0]))
    assert t["u"] == 6.0 and t["p"] == pytest.approx(0.198829, abs=1e-5)


def test_kineto_dataloader_workers_pair():
    # PyTorch profiler traces of ResNet-50 with 0 and 4 data-loader workers (shared/external/kineto): the data
    # loading that 0 workers does on the step's own thread is gone with 4, and the GPU idles ~38 ms less per step;
    # with only 6 steps a side the rank test cannot reach p < 0.01, and the diff says so instead of guessing
    from tests.conftest import EXTERNAL
    k = EXTERNAL / "kineto"
    paths = [k / f"kineto-tbplugin-samples__resnet50_num_workers_{n}.worker0.pt.trace.json.gz" for n in (0, 4)]
    if not all(p.exists() for p in paths):
        pytest.skip("../shared/external/kineto is missing")
    d = compare(analysed(paths[0]), analysed(paths[1]))    # parsed once per session, as test_kineto's
    assert (d["latency"]["n_before"], d["latency"]["n_after"]) == (6, 6)
    assert d["verdict"] == "no significant change" and 0.01 <= d["latency"]["mann_whitney"]["p"] < 0.05
    assert d["breakdown_ms"]["gpu_idle"]["change"] < -30
    assert [f["category"] for f in d["findings"]["resolved"]] == ["cpu_preprocessing"]


def test_compare_does_not_analyse_profiles():
    # issue 13: the command line analyses and hands Reports to compare/; compare/ reads saved reports only
    import ast
    import pathlib

    import nsys_doctor.compare as pkg
    for path in pathlib.Path(pkg.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        bare = {n.removeprefix("nsys_doctor.").split(".")[0] for n in names}
        assert not bare & {"analysis", "diagnose", "model"}, (path, names)
