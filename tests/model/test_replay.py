"""The dependency graph and its replay (model/graph.py, model/replay.py) on real exports.

Fidelity: replayed unchanged, every measured request's latency and the run's request interval come back (issue 16:
within 2%, median absolute error), and the interval agrees with the example programs' own clocks
(tests/data/README.md). Predictions: a fix applied to a `before` recording is compared with the `after` program's
own time per request. The last test uses a hand-made trace (an edge case no recording isolates; it says so).
"""
import os
import sqlite3

import numpy as np
import pytest

from nsys_doctor.diagnose.precision import CUDA_CORE
from nsys_doctor.model import replay as R
from nsys_doctor.model.graph import build
from nsys_doctor.read.ids import NSYS_IDS
from nsys_doctor.model.requests import find_requests
from nsys_doctor.model.trace import Trace, empty_table
from nsys_doctor.read import open_trace
from tests.conftest import DATA, EXTERNAL, PROFILES, expand

FIDELITY = 0.02                    # issue 16: 2% median absolute error per request, 2% on the interval

# the programs' own ms per request under the profiler (tests/data/README.md, "program output")
PROGRAM_MS = {"ex_sync_before": 6.72, "ex_sync_after": 6.45, "ex_graph_before": 8.10, "ex_graph_after": 1.61,
              "ex_pinned_before": 11.32, "ex_pinned_after": 1.33, "ex_gpupre_before": 114.63,
              "ex_gpupre_after": 1.52, "ex_mixed_before": 65.84, "ex_mixed_after": 13.98, "demo": 8.58,
              # third set (H200, capture range from the program's cudaProfilerStart to its cudaProfilerStop)
              "ex_exit_before": 10.23, "ex_exit_after": 7.34, "ex_sleep_before": 11.62, "ex_sleep_after": 8.97,
              "ex_lnfuse_before": 1.45, "ex_lnfuse_after": 0.54, "ex_readback_before": 51.13,
              "ex_readback_after": 3.32, "ex_convprec_before": 24.26, "ex_convprec_after": 7.56,
              "ex_sdreload_before": 100.53, "ex_sdreload_after": 2.87}

ZOO = ["healthy", "dataload_starved", "cpu_preproc", "cpu_postproc", "sync_heavy", "launch_bound",
       "launch_bound_graphed", "memcpy_pageable", "membw_bound", "fp32_gemm", "thread_contention", "no_nvtx"]
# external recordings checked in the normal suite: several streams, several threads, TensorRT, Kineto (all the
# analysable ones pass; NSYS_DOCTOR_REPLAY_ALL=1 runs every file in ../shared/external)
EXTERNAL_SMALL = ["nsys/realcugan-tensorrt__profile.sqlite.xz", "nsys/abacus-multidnn__report2.sqlite.xz",
                  "nsys/llama3-inference__real_inference_simulation.sqlite.xz",
                  "kineto/hta-kineto-traces__trace_diff__test__test.json.gz",
                  "kineto/tracemap-vllm-kineto__1_h100_1000isl_10osl_32con.pt.trace.json.gz"]

_LOADED: dict = {}


def load(path):
    path = str(path)
    if path not in _LOADED:
        trace = open_trace(expand(__import__("pathlib").Path(path)))
        _LOADED.clear()                 # one at a time: a session holding every trace would use GBs
        _LOADED[path] = (trace, find_requests(trace))
    return _LOADED[path]


def data(name):
    return DATA / f"{name}.sqlite.xz"


def zoo_path(name):
    p = PROFILES / f"{name}.sqlite.xz"
    if not p.exists():
        pytest.skip(f"{p} not found (../shared is missing)")
    return p


def fidelity(path):
    trace, reqs = load(path)
    out = R.replay(trace, reqs)
    lat, interval = R.recorded(reqs)
    m = reqs.measured
    err = np.abs(out.latency_ns[m] - lat[m]) / np.maximum(lat[m], 1)
    return float(np.median(err)), abs(out.interval_ns - interval) / interval, out


@pytest.mark.parametrize("name", sorted(p.name[:-len(".sqlite.xz")] for p in DATA.glob("*.sqlite.xz")))
def test_unchanged_replay_reproduces_tests_data(name):
    lat_err, iv_err, out = fidelity(data(name))
    assert lat_err <= FIDELITY and iv_err <= FIDELITY
    if name in PROGRAM_MS:          # and the interval is the program's own time per request
        assert out.interval_ns / 1e6 == pytest.approx(PROGRAM_MS[name], rel=0.02)


@pytest.mark.parametrize("name", ZOO)
def test_unchanged_replay_reproduces_zoo(name):
    lat_err, iv_err, _ = fidelity(zoo_path(name))
    assert lat_err <= FIDELITY and iv_err <= FIDELITY


@pytest.mark.parametrize("rel", EXTERNAL_SMALL)
def test_unchanged_replay_reproduces_external(rel):
    p = EXTERNAL / rel
    if not p.exists():
        pytest.skip(f"{p} not found")
    lat_err, iv_err, _ = fidelity(p)
    assert lat_err <= FIDELITY and iv_err <= FIDELITY


@pytest.mark.skipif(not os.environ.get("NSYS_DOCTOR_REPLAY_ALL"), reason="set NSYS_DOCTOR_REPLAY_ALL=1")
def test_unchanged_replay_reproduces_every_external():
    from nsys_doctor.errors import NoData
    bad, checked = [], 0
    for p in sorted(EXTERNAL.glob("*/*")):
        if p.suffix not in (".xz", ".gz", ".json"):
            continue
        try:
            lat_err, iv_err, _ = fidelity(p)
        except NoData:              # not analysable (no CUDA activity, no GPU work): nothing to replay
            continue
        checked += 1
        if lat_err > FIDELITY or iv_err > FIDELITY:
            bad.append((p.name, lat_err, iv_err))
    assert checked >= 30 and not bad


def test_graph_edges_match_sql():
    """Independent check of the graph's host waits on ex_sync_before: each request's .item() guards (16) and result
    copies wait for their own one-byte DtoH copy, which SQL finds by correlation id."""
    path = expand(data("ex_sync_before"))
    trace, reqs = load(data("ex_sync_before"))
    g = R.graph_of(trace, reqs)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    (n_sync_copies,), = db.execute(
        "SELECT count(*) FROM CUPTI_ACTIVITY_KIND_MEMCPY m JOIN CUPTI_ACTIVITY_KIND_RUNTIME r "
        "ON r.correlationId = m.correlationId WHERE m.copyKind = 2 AND r.end >= m.end").fetchall()
    db.close()
    copies = g.g_table == R.COPIES
    waited = np.zeros(g.n_gpu, bool)
    waited[g.c_wait_op[g.c_wait_op >= 0]] = True
    # every DtoH copy its own call outlived is a wait target (syncs after it may wait for it too)
    assert int((waited & copies).sum()) >= n_sync_copies * 0.95
    assert g.stats["gpu_ops"] == sum(len(trace.table(t)["start_ns"]) for t in ("kernels", "copies", "memsets"))


# ---------------------------------------------------------------------------------------------- predictions
def _avoidable_pair(name):
    trace, reqs = load(data(f"{name}_before"))
    return trace, reqs, R.replay(trace, reqs)


# the fix of each example, as a change (documented rates, not read from the `after` recording): one graph launch per
# request at the cost cudaGraphLaunch measured in the zoo's launch_bound_graphed (148 us); the preprocess phase's CPU
# time gone; CUDA-core GEMMs at H100's documented BF16 dense / FP32 peak (989 / 67 TFLOPS); pageable copies at the
# pinned rate measured in the zoo's healthy profile on the same machine type (55 GB/s)
FIXES = {
    "ex_graph": R.Change(graph_launch_ns=150_000),
    "ex_gpupre": R.Change(drop_phase={"preprocess": 1.0}),
    "ex_mixed": R.Change(kernel_factor=[(CUDA_CORE, 67 / 989)]),
    "ex_pinned": R.Change(pageable_rate=55e9),
}


@pytest.mark.parametrize("name", sorted(FIXES))
def test_fix_prediction_matches_the_fixed_program(name):
    trace, reqs, before = _avoidable_pair(name)
    after = R.replay(trace, reqs, FIXES[name])
    measured_saving = PROGRAM_MS[f"{name}_before"] - PROGRAM_MS[f"{name}_after"]
    predicted_saving = (before.interval_ns - after.interval_ns) / 1e6
    assert 0.75 <= predicted_saving / measured_saving <= 1.33


def test_sync_pair_predicts_a_small_saving():
    # tests/data/README: ex_sync's before/after differ by less than its noise pair's spread (~5%)
    trace, reqs, before = _avoidable_pair("ex_sync")
    after = R.replay(trace, reqs, R.Change(remove_syncs=True))
    saving = (before.interval_ns - after.interval_ns) / before.interval_ns
    assert 0 < saving < 0.15


@pytest.mark.parametrize("name", ["healthy", "thread_contention", "sync_heavy"])
def test_removing_work_never_delays_anything(name):
    """Max-plus replay is monotone: shorter kernels, fewer waits and no lock waits move no node, and no request's
    finish, later (its latency may still grow: a request that starts earlier can queue longer)."""
    trace, reqs = load(zoo_path(name))
    base = R.replay(trace, reqs)
    ch = R.Change(kernel_factor=[(".", 0.5)], remove_syncs=True, remove_lock_waits=True)
    out = R.replay(trace, reqs, ch)
    assert (out.g_end <= base.g_end).all() and (out.c_end <= base.c_end).all()
    assert (out.finish_ns <= base.finish_ns).all()


def test_faster_kernels_help_a_gpu_bound_run_only():
    # healthy: SQL puts 18.2 ms of kernels in each 20.1 ms request interval; launch_bound: 0.86 ms of kernels per
    # 17.7 ms (its CPU launches bound it). Half-time kernels save at most half the kernel time, and only where the GPU
    # bounds the run.
    def kernel_ms_per_request(name):
        path = expand(zoo_path(name))
        trace, reqs = load(zoo_path(name))
        first, last = (int(x) for x in (reqs.table["start_ns"][reqs.warmup], reqs.table["end_ns"][-1]))
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        (ns,), = db.execute(f"SELECT sum(k.end - k.start) FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN "
                            f"CUPTI_ACTIVITY_KIND_RUNTIME r ON r.correlationId = k.correlationId "
                            f"WHERE r.start BETWEEN {first} AND {last}").fetchall()
        db.close()
        return ns / 1e6 / len(reqs.measured)

    for name, bound in (("healthy", True), ("launch_bound", False)):
        k_ms = kernel_ms_per_request(name)
        trace, reqs = load(zoo_path(name))
        base = R.replay(trace, reqs).interval_ns / 1e6
        fast = R.replay(trace, reqs, R.Change(kernel_factor=[(".", 0.5)])).interval_ns / 1e6
        assert base - fast <= 0.5 * k_ms * 1.05
        if bound:
            assert k_ms > 0.85 * base and base - fast > 0.25 * k_ms
        else:
            assert k_ms < 0.1 * base and base - fast < 0.01 * base


def test_drop_phase_unknown_name_is_an_error():
    trace, reqs = load(data("ex_gpupre_before"))
    with pytest.raises(ValueError, match="no NVTX range named"):
        R.replay(trace, reqs, R.Change(drop_phase={"no such phase": 1.0}))


# ---------------------------------------------------------------------------------------------- hand-made edge case
def _tiny_trace():
    """Synthetic (no recording isolates it): kernel A on stream 1 (10 us -> 1000 us); kernel B on stream 2, launched
    at 20 us, starts 2 us after A ends (an event wait); a device sync from 30 us ends 7 us after B."""
    tid = (1 << 24) | 5
    names = {1: "cudaLaunchKernel_v7000", 2: "cudaDeviceSynchronize_v3020", 3: "A", 4: "B"}
    us = 1000
    api = {"start_ns": np.array([0, 20, 30]) * us, "end_ns": np.array([5, 25, 1010]) * us,
           "tid": np.full(3, tid), "correlation": np.array([1, 2, 3]), "name_id": np.array([1, 1, 2]),
           "driver": np.zeros(3, bool), "callchain": np.full(3, -1)}
    k = {"start_ns": np.array([10, 1002]) * us, "end_ns": np.array([1000, 1003]) * us, "device": np.zeros(2),
         "stream": np.array([1, 2]), "correlation": np.array([1, 2]), "pid": np.full(2, 1 << 24),
         "name_id": np.array([3, 4]), "full_name_id": np.array([3, 4]), "grid": np.ones(2), "block": np.ones(2),
         "registers": np.ones(2), "graph_node": np.zeros(2)}
    k = {c: np.asarray(v, np.int64) for c, v in k.items()}
    api = {c: np.asarray(v) for c, v in api.items()}
    loaders = {"api_calls": lambda: api, "kernels": lambda: k}
    for t in ("copies", "memsets", "graphs", "os_calls", "ranges", "syncs"):
        loaders[t] = (lambda t=t: empty_table(t))
    return Trace(path="tiny", source="synthetic", loaders=loaders, strings=lambda i: names[i], ids=NSYS_IDS)


def test_cross_stream_wait_and_host_wait_follow_the_work():
    trace = _tiny_trace()
    g = build(trace)
    assert g.stats["cross_stream"] == 1 and g.stats["waits"] == 1
    p = R._params(g)
    cs, ce, gs, ge = R._run(g, p)
    assert (gs == g.g_start).all() and (ce == g.c_end).all()        # unchanged: the recording
    p = R._apply(g, trace, None, R.Change(kernel_factor=[("^A$", 0.5)]))
    cs, ce, gs, ge = R._run(g, p)
    b = int(np.flatnonzero(g.g_start == 1_002_000)[0])
    # A now ends at 505 us: B follows it 2 us later, the sync 7 us after B ends
    assert gs[b] == 507_000 and ce[-1] == 508_000 + 7_000


def test_removing_cpu_calls_saves_their_time_in_a_cpu_bound_run():
    # launch_bound is bound by its CPU (launches): taking out every cuKernelGetName call (not a node of its own: its
    # time sits in the gap before the next launch) saves what those calls took per measured request
    path = expand(zoo_path("launch_bound"))
    trace, reqs = load(zoo_path("launch_bound"))
    api = trace.table("api_calls")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    ids = [i for (i,) in db.execute("SELECT id FROM StringIds WHERE value = 'cuKernelGetName'")]
    db.close()
    rows = np.flatnonzero(np.isin(api["name_id"], ids))
    first = reqs.table["start_ns"][reqs.warmup]
    per_req = (api["end_ns"] - api["start_ns"])[rows][api["start_ns"][rows] >= first].sum() / len(reqs.measured)
    base = R.replay(trace, reqs)
    out = R.replay(trace, reqs, R.Change(remove_cpu_rows={"api_calls": rows}))
    assert base.interval_ns - out.interval_ns == pytest.approx(per_req, rel=0.05)


def test_combined_changes_save_at_least_each_alone():
    trace, reqs = load(data("ex_mixed_before"))
    base = R.replay(trace, reqs).interval_ns
    a = R.Change(kernel_factor=[(CUDA_CORE, 67 / 989)])
    b = R.Change(remove_syncs=True)
    both = R.replay(trace, reqs, a.combined(b)).interval_ns
    assert both <= min(R.replay(trace, reqs, a).interval_ns, R.replay(trace, reqs, b).interval_ns) < base
