"""Which requests count (warm-up by evidence of set-up), iterations without NVTX, and steps made of sibling ranges;
each checked against plain SQL on the real exports."""
import sqlite3

import numpy as np
import pytest

from nsys_doctor.model.requests import find_requests
from nsys_doctor.read import open_trace
from tests.conftest import DATA, expand, external, zoo


def sql(path, q):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(q).fetchall()
    finally:
        db.close()


def named_ranges(path, name):
    return sql(path, "SELECT e.start, e.end, e.globalTid FROM NVTX_EVENTS e LEFT JOIN StringIds s ON e.textId = s.id "
                     f"WHERE coalesce(e.text, s.value) = '{name}' AND e.end IS NOT NULL ORDER BY e.start")


def calls_inside(path, prefix, start, end, tid):
    (n,), = sql(path, f"SELECT count(*) FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s ON r.nameId = s.id "
                      f"WHERE s.value LIKE '{prefix}%' AND r.globalTid = {tid} AND r.start BETWEEN {start} AND {end}")
    return n


def test_thread_contention_slow_start_is_not_warmup():
    """profiles/README: the program warms up outside any range, so all 80 ranges are real requests; the slow first
    ones (threads queueing behind the lock) count. Their only set-up is 1-2 ms of per-thread cuBLAS loading."""
    path = zoo("thread_contention")
    rows = named_ranges(path, "Inference")
    req = find_requests(open_trace(path))
    assert req.warmup == 0 and len(req.measured) == len(rows) == 80
    lat = req.table["latency_ns"]
    assert lat[0] > 1.5 * np.median(lat)                      # slow indeed, and still measured


def test_model_server_first_request_is_setup_by_its_library_loads():
    path = expand(DATA / "dist" / "model_server.sqlite.xz")
    rows = named_ranges(path, "Inference")
    req = find_requests(open_trace(path))
    assert req.warmup == 1
    # the evidence, independently: library loads inside the first request on its thread, none in any later one
    loads = [calls_inside(path, "cuLibraryLoad", s, e, t) for s, e, t in rows]
    assert loads[0] > 0 and sum(loads[1:]) == 0
    assert "module loading" in req.warmup_reason


def test_no_nvtx_keeps_the_first_iteration():
    """zoo.py no_nvtx: 3 warm-up + 60 iterations, each one host-to-device copy of its 16x3x224x224 fp16 input."""
    path = zoo("no_nvtx")
    (n_inputs,), = sql(path, "SELECT count(*) FROM CUPTI_ACTIVITY_KIND_MEMCPY WHERE copyKind = 1 AND bytes = 4816896")
    req = find_requests(open_trace(path))
    assert req.inferred and req.count == n_inputs == 63
    # the first iteration encloses the launch of the first input copy (by correlation id)
    (first_copy_call,), = sql(path, "SELECT min(r.start) FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN "
                                    "CUPTI_ACTIVITY_KIND_MEMCPY m ON m.correlationId = r.correlationId "
                                    "WHERE m.copyKind = 1 AND m.bytes = 4816896")
    assert req.table["start_ns"][0] <= first_copy_call <= req.table["end_ns"][0]
    # the first iteration loads the model's kernels (cuDNN/cuBLAS modules): left out as set-up, the next ones count
    assert req.warmup == 1
    # the profile has NVTX ranges (cuBLAS's own), none eligible: the reason says so rather than "no NVTX ranges"
    (n_ranges,), = sql(path, "SELECT count(*) FROM NVTX_EVENTS WHERE eventType IN (59, 60)")
    assert n_ranges > 0 and "no eligible NVTX ranges" in req.reason


def test_sibling_layer_ranges_are_grouped_into_steps():
    """llama3-inference real_inference_simulation: ranges layer_0_computation .. layer_7_computation, siblings on one
    thread, 64 of each, nothing around them. A step runs from a layer_0 range's start to the next layer_7's end."""
    path = external("llama3-inference__real_inference_simulation")
    l0 = named_ranges(path, "layer_0_computation")
    l7 = named_ranges(path, "layer_7_computation")
    req = find_requests(open_trace(path))
    assert req.range_name.startswith("step") and not req.inferred
    assert req.count == len(l0) == len(l7) == 64
    assert list(req.table["start_ns"]) == [s for s, _, _ in l0]
    assert list(req.table["end_ns"]) == [e for _, e, _ in l7]
    # each step holds all eight layers: a slice (one layer) would be a small part of it
    step = np.median(req.table["end_ns"] - req.table["start_ns"])
    layer0 = np.median([e - s for s, e, _ in l0])
    assert step > 4 * layer0


@pytest.mark.parametrize("name", ["healthy", "sync_heavy"])
def test_phases_under_a_request_range_are_not_steps(name):
    """Inference ranges with nested preprocess/infer/postprocess: the parent is the request, no grouping."""
    req = find_requests(open_trace(zoo(name)))
    assert req.range_name == "Inference"


def test_driver_initialisation_inside_the_first_range_is_setup():
    """llama3-inference demo: the first kv_h2d_transfer range spends ~96 ms before its first traced CUDA call, with
    the thread's CPU samples in the CUDA driver (lazy context creation): set-up, left out. Checked in SQL: no runtime
    call in the range's first 90 ms, and most of its samples have libcuda on the stack."""
    path = external("llama3-inference__demo")
    rows = named_ranges(path, "kv_h2d_transfer")
    s, e, tid = rows[0]
    (first_call,), = sql(path, f"SELECT min(start) FROM CUPTI_ACTIVITY_KIND_RUNTIME WHERE globalTid = {tid} "
                               f"AND start >= {s}")
    assert first_call - s > 90e6
    (n, drv), = sql(path, f"""SELECT count(*), sum(EXISTS (SELECT 1 FROM SAMPLING_CALLCHAINS c JOIN StringIds m
                              ON m.id = c.module WHERE c.id = x.id AND m.value LIKE '%libcuda.so%'))
                              FROM COMPOSITE_EVENTS x WHERE x.globalTid = {tid} AND x.start BETWEEN {s} AND {first_call}""")
    assert n > 50 and drv > n / 2
    req = find_requests(open_trace(path))
    assert req.range_name == "kv_h2d_transfer" and req.warmup == 1
    assert "driver" in req.warmup_reason


def test_warmup_on_the_main_thread_before_worker_threads():
    """examples/thread_contention.py: 3 warm-up requests on the main thread, torch.cuda.synchronize(), then 80
    requests on 8 worker threads. The drain is on another thread than the requests after it, and still a barrier."""
    path = expand(DATA / "ex_contention_before.sqlite.xz")
    rows = named_ranges(path, "Inference")
    main_tid = rows[0][2]
    assert {t for _, _, t in rows[:3]} == {main_tid} and main_tid not in {t for _, _, t in rows[3:]}
    (drains,), = sql(path, f"SELECT count(*) FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s ON r.nameId = s.id "
                           f"WHERE s.value LIKE 'cudaDeviceSynchronize%' AND r.start > {rows[2][1]} "
                           f"AND r.start < {min(s for s, _, _ in rows[3:])}")
    assert drains >= 1
    req = find_requests(open_trace(path))
    assert req.warmup == 3 and len(req.measured) == 80


def test_compilation_in_the_first_request_is_setup():
    """examples/elementwise_fusion.py --fixed: torch.compile runs in the first warm-up request (no drain after the
    warm-up: the server waits on events). The request thread spawns and waits for compiler processes there only."""
    path = expand(DATA / "ex_fusion_after.sqlite.xz")
    rows = named_ranges(path, "Inference")
    waits = [sql(path, f"SELECT count(*) FROM OSRT_API o JOIN StringIds s ON o.nameId = s.id WHERE s.value IN "
                       f"('waitpid', 'posix_spawn') AND o.globalTid = {t} AND o.start BETWEEN {a} AND {b}")[0][0]
             for a, b, t in rows[:10]]
    assert waits[0] > 0 and sum(waits[1:]) == 0
    req = find_requests(open_trace(path))
    assert req.warmup == 1 and "compilation" in req.warmup_reason


def test_llm_layer_ranges_are_grouped_into_steps():
    """examples/llm_layer_ranges.py: 15 requests x 25 forward passes, each pass the siblings embed, layer.0 ..
    layer.7, lm_head, sample, and no range around them: one step per pass, from embed's start to sample's end."""
    path = expand(DATA / "ex_llm_layers.sqlite.xz")
    embed, sample = named_ranges(path, "embed"), named_ranges(path, "sample")
    assert len(embed) == len(sample) == 15 * 25
    req = find_requests(open_trace(path))
    assert req.range_name == "step (embed .. sample)"
    assert list(req.table["start_ns"]) == [s for s, _, _ in embed]
    assert list(req.table["end_ns"]) == [e for _, e, _ in sample]
