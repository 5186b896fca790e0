"""The fixes of memory_allocation and model_loading as graph changes, on the H200 pairs of tests/data, against facts
read by SQL from the exports: ex_alloc_before's CPU time between two allocation calls; ex_reload_before's upload
calls leaving the request with the uploads. The predicted savings against the real fixes are tests/test_predict.py's."""
import sqlite3

import numpy as np
import pytest

from nsys_doctor.analysis import predict as P
from nsys_doctor.diagnose import Context, memory_allocation, model_loading
from nsys_doctor.model.requests import find_requests
from nsys_doctor.read import open_trace
from tests.conftest import DATA, expand


def _measured(name, module):
    trace = open_trace(expand(DATA / f"{name}.sqlite.xz"))
    ctx = Context(trace, find_requests(trace))
    return trace, ctx, module.measure(ctx)


def test_alloc_gaps_are_the_cpu_time_between_two_allocation_calls():
    trace, ctx, m = _measured("ex_alloc_before", memory_allocation)
    try:
        tid, s, e = m.gaps
        db = sqlite3.connect(expand(DATA / "ex_alloc_before.sqlite.xz"))
        # SQL: on the request thread, inside measured Inference ranges, consecutive runtime calls both cudaMalloc or
        # cudaFree, the gap between them up to 75 us
        rows = db.execute(
            "SELECT r.start, r.end, s.value LIKE 'cudaMalloc%' OR s.value LIKE 'cudaFree%' FROM "
            "CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s ON s.id = r.nameId WHERE r.globalTid = "
            "(SELECT globalTid FROM NVTX_EVENTS WHERE text = 'Inference' LIMIT 1) ORDER BY r.start").fetchall()
        ranges = db.execute("SELECT start, end FROM NVTX_EVENTS WHERE text = 'Inference' ORDER BY start").fetchall()
        ranges = ranges[ctx.requests.warmup:]
        st = np.array([r[0] for r in rows])
        en = np.array([r[1] for r in rows])
        al = np.array([bool(r[2]) for r in rows])
        total = 0
        for a, b in ranges:
            i = np.flatnonzero((st >= a) & (en <= b))
            g = st[i[1:]] - en[i[:-1]]
            both = al[i[1:]] & al[i[:-1]] & (g >= 0) & (g <= memory_allocation.ALLOC_GAP_MAX_NS)
            total += int(g[both].sum())
        assert int((e - s).sum()) == pytest.approx(total, rel=0.01)
        assert 2.0e6 < total / len(ranges) < 3.2e6          # ~2.6 ms per request
    finally:
        trace.close()


def test_moved_uploads_take_their_calls_with_them():
    trace, ctx, m = _measured("ex_reload_before", model_loading)
    try:
        (mv,) = model_loading.change(m)
        ch, _ = P.to_replay(trace, [mv])
        calls = ch.remove_cpu_rows["api_calls"]
        assert len(calls) == len(mv.rows)                      # one call per moved copy
        api = trace.table("api_calls")
        assert {trace.name(i).split("_v")[0] for i in np.unique(api["name_id"][calls])} == {"cudaMemcpyAsync"}
        # SQL: those calls take ~54 ms of each loading request (pageable uploads staged by the calling thread)
        db = sqlite3.connect(expand(DATA / "ex_reload_before.sqlite.xz"))
        ms = db.execute("SELECT sum(r.end - r.start) / 1e6 FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN "
                        "CUPTI_ACTIVITY_KIND_MEMCPY c ON c.correlationId = r.correlationId WHERE c.copyKind = 1"
                        ).fetchone()[0]
        per_req = float((api["end_ns"][calls] - api["start_ns"][calls]).sum()) / 1e6 / len(m.loading)
        assert 40 < per_req < 60 and per_req * len(m.loading) <= ms
    finally:
        trace.close()


def test_a_swap_leaves_from_its_first_file_read():
    # tests/data/dist/model_server: every 10th request swaps in a 384 MiB model (fread, then a pageable upload)
    src = DATA / "dist" / "model_server.sqlite.xz"
    if not src.exists():
        pytest.skip(f"{src} not found")
    trace = open_trace(expand(src))
    try:
        ctx = Context(trace, find_requests(trace))
        m = model_loading.measure(ctx)
        (mv,) = model_loading.change(m)
        db = sqlite3.connect(expand(src))
        # SQL: per Inference range holding a 384 MiB upload, its first fread's start and the upload's GPU end
        want = db.execute(
            "SELECT (SELECT min(o.start) FROM OSRT_API o JOIN StringIds s ON s.id = o.nameId WHERE s.value = 'fread' "
            "AND o.start >= e.start AND o.start < c.start), c.[end] FROM CUPTI_ACTIVITY_KIND_MEMCPY c JOIN NVTX_EVENTS e "
            "ON c.start >= e.start AND c.start < e.[end] LEFT JOIN StringIds t ON e.textId = t.id WHERE c.copyKind = 1 "
            "AND c.bytes = 402653184 AND coalesce(e.text, t.value) = 'Inference' ORDER BY c.start").fetchall()
        assert len(want) == 4 and all(a is not None for a, _ in want)
        got = sorted(zip(mv.start_ns.tolist(), mv.end_ns.tolist()))
        assert got == [tuple(w) for w in want]
    finally:
        trace.close()
