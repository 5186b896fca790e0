"""cuda_sync on the zoo profiles: facts counted independently with SQL on the export, then the finding."""
from __future__ import annotations

import sqlite3

import numpy as np

from nsys_doctor.model.replay import GRAPH_DISPATCH_MAX_NS
from tests.conftest import DATA, expand, zoo, zoo_report

WARMUP = 3   # the first three 'Inference' ranges are warm-up (profiles/README.md)


def _calls_in_requests(name: str, like: str) -> tuple[int, int]:
    """(calls whose name matches `like` inside the measured 'Inference' ranges on their thread, measured ranges)."""
    db = sqlite3.connect(f"file:{zoo(name)}?mode=ro", uri=True)
    try:
        ranges = db.execute("SELECT start, end, globalTid FROM NVTX_EVENTS WHERE text = 'Inference' "
                            "ORDER BY start").fetchall()[WARMUP:]
        n = 0
        for s, e, tid in ranges:
            n += db.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds i ON i.id = r.nameId "
                            "WHERE r.globalTid = ? AND r.start BETWEEN ? AND ? AND i.value LIKE ?",
                            (tid, s, e, like)).fetchone()[0]
        return n, len(ranges)
    finally:
        db.close()


def _finding(report, category="cuda_sync"):
    return next((f for f in report.findings if f.category == category), None)


def test_sync_heavy_syncs_find_the_gpu_done():
    # 12 transformer layers, torch.cuda.synchronize() after each (zoo.py): 720 device syncs in 60 measured requests.
    # The layers' kernels take 0.49 ms of a ~9 ms request (SQL below): the CPU bounds the request, every sync finds
    # the GPU (nearly) done and blocks ~12 us, and the GPU idle after it is the CPU launching the next layer, which
    # it does with or without the sync. Deleting the syncs saves their calls and the framework's code around them
    # (the CPU from the previous call to the sync, up to GRAPH_DISPATCH_MAX_NS), not the relaunch; replacing them
    # with CUDA events (the alternative form) saves the calls' time at most. Measured on the same program (H200,
    # examples/transformer_sync.py, tests/data ex_tsync / ex_tgraph): deleting the syncs saved 0.36-0.89 ms/request
    # of 4.0-7.0, a CUDA graph 3.5-7.4 ms (93%): launch_overhead, not cuda_sync, is the larger fix (labels.json names
    # cuda_sync primary for this profile; score.py counts it a miss).
    calls, n = _calls_in_requests("sync_heavy", "cudaDeviceSynchronize%")
    assert calls == 12 * n
    path = zoo("sync_heavy")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rng = db.execute("SELECT n.start, n.end FROM NVTX_EVENTS n LEFT JOIN StringIds s ON s.id = n.textId WHERE "
                         "coalesce(n.text, s.value) = 'Inference' ORDER BY n.start").fetchall()[3:]
        lo, hi = rng[0][0], rng[-1][1]
        (blocked,) = db.execute("SELECT sum(r.end - r.start) FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s "
                                "ON s.id = r.nameId WHERE s.value LIKE 'cudaDeviceSynchronize%' AND r.start BETWEEN "
                                "? AND ?", (lo, hi)).fetchone()
        # the CPU before each sync back to the previous CUDA call of its thread, capped as the fix's dispatch
        (before,) = db.execute(
            "WITH c AS (SELECT r.start, r.end, r.globalTid, s.value AS name, LAG(r.end) OVER (PARTITION BY r.globalTid "
            "ORDER BY r.start) AS prev_end FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s ON s.id = r.nameId) "
            "SELECT sum(min(start - prev_end, ?)) FROM c WHERE name LIKE 'cudaDeviceSynchronize%' AND start BETWEEN "
            "? AND ?", (GRAPH_DISPATCH_MAX_NS, lo, hi)).fetchone()
        (kernels,) = db.execute("SELECT sum(end - start) FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE start BETWEEN ? AND ?",
                                (lo, hi)).fetchone()
    finally:
        db.close()
    span_ms = (hi - lo) / 1e6
    assert kernels / 1e6 < 0.1 * span_ms                       # GPU busy under 10% of the measured span
    report = zoo_report("sync_heavy")
    top = next(f for f in report.findings if f.category == "cuda_sync")
    assert top.severity != "high" and top.whatif["used"]         # impact_ms is the replay's prediction
    per_req = len(rng)
    # at most the sync calls' own time plus the code before them, per request
    assert blocked / 1e6 / per_req < top.impact_ms <= (blocked + before) / 1e6 / per_req + 0.01
    events = next(a for a in top.whatif["alternatives"] if a["form"] == "events")
    assert 0 <= events["saving_ms"] <= blocked / 1e6 / per_req + 0.01    # CUDA events instead: the calls at most
    graph = next(f for f in report.findings if f.category == "launch_overhead")
    assert graph.impact_ms > 3 * top.impact_ms and report.findings[0] is graph
    num = top.evidence.numbers
    assert num["syncs_by_call_per_request"]["cudaDeviceSynchronize"] == calls / n
    assert num["syncs_per_request"] >= 13              # plus the .item() stream sync
    assert num["avoidable_syncs_per_request"] == 12    # the final wait for the result is needed
    # the GPU idles after each return (measured 2.4 ms in all), far longer than the waits (0.15 ms): the CPU launching
    assert num["gpu_idle_after_sync_ms_per_request"] > 5 * num["blocked_ms_per_request"]
    assert 0 <= top.impact_ms < num["mean_latency_ms"]
    assert top.evidence.worst and top.evidence.worst[0].name == "cudaDeviceSynchronize"


def test_healthy_has_no_sync():
    # pinned async input and no per-request sync (zoo.py healthy): no synchronising call inside requests
    calls, _ = _calls_in_requests("healthy", "%Synchronize%")
    assert calls == 0
    assert _finding(zoo_report("healthy")) is None


def test_final_wait_only_is_not_flagged():
    # memcpy_pageable waits once, for its output copy at the end: needed, so at most a low finding
    f = _finding(zoo_report("memcpy_pageable"))
    assert f is None or f.severity == "low"


def test_a_value_read_goes_as_its_wait_only():
    # ex_exit_before (tests/data): `if conf.item() > THRESHOLD` after each of 24 layers: a 4-byte device-to-host
    # cudaMemcpyAsync then a cudaStreamSynchronize; the request's last read (logits, 40 bytes) is the one it needs.
    # SQL: the 4-byte copies inside the measured 'Inference' ranges are the reads; the fix keeps each value on the
    # GPU (a device op of the same launch cost takes the copy's place), so only their waits go: no copy, call or CPU
    # dispatch is removed with them. Measured in one process (pairs.json ab): the fix saved 0.02, -1.03, -0.07 ms.
    import numpy as np
    from nsys_doctor.analysis import predict as P
    from nsys_doctor.diagnose import Context
    from nsys_doctor.diagnose import cuda_sync as CS
    from nsys_doctor.model import replay as R
    from nsys_doctor.model.changes import RemoveCpuTime, RemoveHostWaits, ScaleGpuWork
    from nsys_doctor.model.requests import find_requests
    from nsys_doctor.read import open_trace
    from tests.conftest import DATA, expand
    path = expand(DATA / "ex_exit_before.sqlite.xz")
    trace = open_trace(path)
    rq = find_requests(trace)
    ctx = Context(trace, rq)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        want = set()
        for i in rq.measured:
            s, e = int(rq.table["start_ns"][i]), int(rq.table["end_ns"][i])
            want |= {c for (c,) in db.execute(
                "SELECT m.correlationId FROM CUPTI_ACTIVITY_KIND_MEMCPY m JOIN CUPTI_ACTIVITY_KIND_RUNTIME r "
                "ON r.correlationId = m.correlationId WHERE m.copyKind = 2 AND m.bytes = 4 AND r.start BETWEEN ? "
                "AND ?", (s, e))}
    finally:
        db.close()
    assert len(want) == 24 * len(rq.measured)
    m = CS.measure(ctx)
    changes = CS.change(m)
    assert [type(c) for c in changes] == [RemoveHostWaits]
    hw = changes[0]
    api = trace.table("api_calls")
    # the waits removed are the stream syncs right after the 4-byte copies' calls, one per read; the sync calls go
    # with their waits, the copy calls stay (each value stays on the GPU through an op of the same launch cost)
    syncs = [r for r in hw.api_rows if trace.name(int(api["name_id"][r])).startswith("cudaStreamSynchronize")]
    assert len(syncs) == len(want)
    assert sorted(int(r) for r in hw.read_calls) == sorted(int(r) for r in syncs)
    assert not {int(api["correlation"][r]) for r in hw.read_calls} & want
    # the run is CPU-bound: dropping the waits alone saves under 2% of the interval
    base = R.replay(trace, rq)
    whole, _ = P.to_replay(trace, changes)
    assert 0 <= base.interval_ns - R.replay(trace, rq, whole).interval_ns < 0.02 * base.interval_ns


def test_a_removed_polling_read_takes_its_event_record_with_it():
    # ex_polling_before (tests/data): `ev.record(); while not ev.query(): pass` after each block; each avoidable loop
    # is fed by one cudaEventRecord on its thread, the latest before the loop's first query (SQL, by the wait's
    # correlation id); the fix drops the record with the loop, every query of it included.
    import numpy as np
    from nsys_doctor.diagnose import Context
    from nsys_doctor.diagnose import cuda_sync as CS
    from nsys_doctor.model import replay as R
    from nsys_doctor.model.changes import RemoveCpuTime, RemoveHostWaits
    from nsys_doctor.model.requests import find_requests
    from nsys_doctor.read import open_trace
    from tests.conftest import DATA, expand
    path = expand(DATA / "ex_polling_before.sqlite.xz")
    trace = open_trace(path)
    m = CS.measure(Context(trace, find_requests(trace)))
    changes = CS.change(m)
    hw = next(c for c in changes if isinstance(c, RemoveHostWaits))
    api = trace.table("api_calls")
    rows = m.waits["row"][m.avoid]
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        want = set()
        for corr, start in zip(api["correlation"][rows], m.waits["start_ns"][m.avoid]):
            (tid,) = db.execute("SELECT globalTid FROM CUPTI_ACTIVITY_KIND_RUNTIME WHERE correlationId = ?",
                                (int(corr),)).fetchone()
            (c,) = db.execute("SELECT r.correlationId FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds i ON "
                              "i.id = r.nameId WHERE r.globalTid = ? AND r.start < ? AND i.value LIKE "
                              "'cudaEventRecord%' ORDER BY r.start DESC LIMIT 1", (tid, int(start))).fetchone()
            want.add(c)
    finally:
        db.close()
    assert len(want) == len(rows) > 0
    records = {int(api["correlation"][r]) for r in hw.read_calls
               if trace.name(int(api["name_id"][r])).startswith("cudaEventRecord")}
    # and the records of the same code's checks that found the GPU done (completion_checks, tested below)
    checks = CS.completion_checks(trace, find_requests(trace), m.waits)
    assert want <= records and len(records) == len(want) + len(checks)
    loops = m.waits["poll_rows"][np.isin(m.waits["poll_wait"], rows)]
    assert np.isin(loops, hw.read_calls).all()
    cpu = next(c for c in changes if isinstance(c, RemoveCpuTime))
    assert ((cpu.end_ns - cpu.start_ns) <= R.GRAPH_DISPATCH_MAX_NS).all()


def _single_queries(path, rq) -> set:
    """SQL: correlation ids of the cudaEventQuery calls inside measured requests that are no part of a run of queries
    (neither the call before nor the call after it on its thread is a query), each with its latest event record."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = {}
        for i in rq.measured:
            s, e = int(rq.table["start_ns"][i]), int(rq.table["end_ns"][i])
            calls = db.execute("SELECT r.correlationId, i.value FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds i "
                               "ON i.id = r.nameId WHERE r.start BETWEEN ? AND ? AND r.globalTid = (SELECT "
                               "globalTid FROM NVTX_EVENTS WHERE start = ? AND text = 'Inference') ORDER BY r.start",
                               (s, e, s)).fetchall()
            q = [n.startswith("cudaEventQuery") for _, n in calls]
            rec = None
            for k, (c, n) in enumerate(calls):
                if n.startswith("cudaEventRecord"):
                    rec = c
                if q[k] and not (k and q[k - 1]) and not (k + 1 < len(q) and q[k + 1]):
                    out[c] = rec
        return out
    finally:
        db.close()


def test_the_polling_codes_checks_that_found_the_gpu_done_go_with_it():
    # ex_polling_before (tests/data): `ev.record(); while not ev.query(): pass` after each of 16 blocks. Where the
    # GPU had finished the block before the first query, the loop is that one query: no wait (host_waits counts no
    # loop), but the same code, which the fix removes with its record. SQL: such single queries inside the measured
    # requests, each after an event record; completion_checks finds exactly them, and the change drops each one with
    # its record. Measured in one process (benchmarks/ab_blocks.py on record_examples.sh abtrace, two processes, 8
    # rounds): the fix saved 1.16 ms/request; the replay predicted 0.74 without these checks and 0.95 with them.
    from nsys_doctor.diagnose import Context
    from nsys_doctor.diagnose import cuda_sync as CS
    from nsys_doctor.model.changes import RemoveHostWaits
    from nsys_doctor.model.requests import find_requests
    from nsys_doctor.read import open_trace
    from tests.conftest import DATA, expand
    path = expand(DATA / "ex_polling_before.sqlite.xz")
    trace = open_trace(path)
    rq = find_requests(trace)
    m = CS.measure(Context(trace, rq))
    checks = CS.completion_checks(trace, rq, m.waits)
    api = trace.table("api_calls")
    want = _single_queries(path, rq)
    assert len(want) >= len(rq.measured)            # about 4 of the 16 per request in this run
    assert {int(c) for c in api["correlation"][checks]} == set(want)
    assert None not in want.values()                 # each one after an event record
    hw = next(c for c in CS.change(m) if isinstance(c, RemoveHostWaits))
    gone = {int(c) for c in api["correlation"][hw.read_calls]}
    assert set(want) <= gone and set(want.values()) <= gone


def test_completion_checks_without_a_polling_loop_stay():
    # ex_fusion_before (tests/data): completion checks on work already done (SQL: 756 cudaEventQuery calls, most of
    # them two in a row, none a spin) and no polling loop: nothing waits, and no fix of cuda_sync touches them
    from nsys_doctor.diagnose import Context
    from nsys_doctor.diagnose import cuda_sync as CS
    from nsys_doctor.model.host_waits import POLL
    from nsys_doctor.model.requests import find_requests
    from nsys_doctor.read import open_trace
    from tests.conftest import DATA, expand
    path = expand(DATA / "ex_fusion_before.sqlite.xz")
    trace = open_trace(path)
    rq = find_requests(trace)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (n,) = db.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds i ON i.id = r.nameId "
                          "WHERE i.value LIKE 'cudaEventQuery%'").fetchone()
    finally:
        db.close()
    assert n >= len(rq.measured)
    m = CS.measure(Context(trace, rq))
    if m is not None:
        assert not (m.waits["kind"] == POLL).any()
        assert len(CS.completion_checks(trace, rq, m.waits)) == 0


def test_polling_code_that_never_waits_is_found_by_its_checks(tmp_path):
    # ex_pollsmall_abt_r2 (tests/data, pairs.json one_process): polling_wait.py --tokens 1024, whose blocks finish on
    # the GPU before the CPU gets to check them, so `while not ev.query()` is one query every time: no host wait at
    # all. SQL on one slow block (cut out by benchmarks/ab_blocks.py): its single queries, each right after an event
    # record; the cuda_sync finding counts exactly those, and the fix removed 0.79 ms/request in that round (the
    # program's own clocks: pairs.json program_blocks_ms)
    import sys
    from nsys_doctor.diagnose import Context
    from nsys_doctor.diagnose import cuda_sync as CS
    from nsys_doctor.model.requests import find_requests
    from nsys_doctor.read import open_trace
    from tests.conftest import DATA, ROOT
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ab_blocks
    plain = ab_blocks.plain(DATA / "ex_pollsmall_abt_r2.sqlite.xz")
    db = sqlite3.connect(f"file:{plain}?mode=ro", uri=True)
    block = next(b for b in ab_blocks.blocks(db) if b["variant"] == "slow" and b["round"] == 1)
    db.close()
    cut = tmp_path / "slow1.sqlite"
    ab_blocks.cut(plain, cut, block["start"], block["end"])
    trace = open_trace(cut)
    rq = find_requests(trace)
    m = CS.measure(Context(trace, rq))
    assert m is not None and len(m.waits["row"][m.avoid]) == 0      # nothing waited
    want = _single_queries(cut, rq)
    assert len(want) >= 10 * len(rq.measured) and None not in want.values()
    api = trace.table("api_calls")
    assert {int(c) for c in api["correlation"][m.checks]} == set(want)
    (f,) = CS.finding(Context(trace, rq), m)
    assert f.evidence.numbers["completion_checks_per_request"] == round(len(want) / len(rq.measured), 2)


def _sync_measured(name):
    from nsys_doctor.diagnose import Context, cuda_sync
    from nsys_doctor.model.requests import find_requests
    from nsys_doctor.read import open_trace
    trace = open_trace(expand(DATA / f"{name}.sqlite.xz"))
    ctx = Context(trace, find_requests(trace))
    return trace, cuda_sync.measure(ctx)


def _prev_call_is_dtoh_copy(name):
    """SQL: per cudaDeviceSynchronize/cudaStreamSynchronize inside a measured range, whether its thread's previous
    runtime call launched a device-to-host copy (a value read: `.item()`)."""
    db = sqlite3.connect(expand(DATA / f"{name}.sqlite.xz"))
    try:
        return db.execute(
            "WITH c AS (SELECT r.correlationId, r.start, s.value AS name, LAG(r.correlationId) OVER (PARTITION BY "
            "r.globalTid ORDER BY r.start) AS prev FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s ON s.id = "
            "r.nameId) SELECT c.start, EXISTS (SELECT 1 FROM CUPTI_ACTIVITY_KIND_MEMCPY m WHERE m.correlationId = "
            "c.prev AND m.copyKind = 2) FROM c WHERE c.name LIKE 'cudaDeviceSynchronize%' OR c.name LIKE "
            "'cudaStreamSynchronize%'").fetchall()
    finally:
        db.close()


def test_bare_syncs_are_syncs_without_a_read_before_them():
    # transformer_sync.py: torch.cuda.synchronize() after each of 12 layers (bare); sync_per_layer.py: `.item()` per
    # block (a device-to-host copy, then the stream sync: a value read). Only bare syncs go with the code before them.
    from nsys_doctor.model.host_waits import SYNC, bare_syncs
    for name, want_bare in (("ex_tsync_before", True), ("ex_sync2_before", False)):
        trace, m = _sync_measured(name)
        try:
            sql = dict(_prev_call_is_dtoh_copy(name))
            sel = m.avoid & (m.waits["kind"] == SYNC)
            assert sel.sum() >= 12 * 50
            bare = bare_syncs(trace, m.waits)[sel]
            read = np.array([sql[int(s)] for s in m.waits["start_ns"][sel]], bool)
            assert (bare == ~read).all()
            assert bare.all() if want_bare else not bare.any()
            # the events form (bare syncs replaced by CUDA event records) exists only where bare syncs do
            assert (m.reads_events is not None) == want_bare
        finally:
            trace.close()
