"""memory_transfer on real zoo profiles: memcpy_pageable's pageable copies dominate; healthy's pinned copy does not;
tests/data ex_readback's pageable read-back measured and replayed against SQL."""
import sqlite3

import numpy as np

from tests.conftest import zoo, zoo_report


def _finding(report, category):
    return next((f for f in report.findings if f.category == category), None)


def test_memcpy_pageable_copies_are_pageable_and_slow():
    # independent facts (SQL): every big copy is pageable (srcKind/dstKind 0), 256 MiB, and under 12 GB/s
    db = sqlite3.connect(zoo("memcpy_pageable"))
    n, mib, gbps = db.execute("SELECT count(*), max(bytes) / 1048576.0, max(bytes * 1.0 / (end - start)) "
                              "FROM CUPTI_ACTIVITY_KIND_MEMCPY WHERE bytes >= 1048576 AND "
                              "(srcKind = 0 OR dstKind = 0) AND copyKind IN (1, 2)").fetchone()
    assert n >= 40 and mib == 256 and gbps < 12
    f = _finding(zoo_report("memcpy_pageable"), "memory_transfer")
    assert f is not None and f.severity == "high"
    assert f.evidence.numbers["bytes_per_request_MiB"] == 512
    assert f.evidence.numbers["pageable_copy_ms_per_request"] > 200
    assert 0.5 * 273 < f.impact_ms < 273          # saves most, never more than, the ~273 ms of copies


def test_memcpy_pageable_ranks_transfers_first():
    top = max((f for f in zoo_report("memcpy_pageable").findings if f.severity != "low"),
              key=lambda f: f.impact_pct)
    assert top.category == "memory_transfer"


def test_healthy_pinned_async_copy_is_not_a_problem():
    f = _finding(zoo_report("healthy"), "memory_transfer")
    assert f is None or f.severity == "low"


# ---------------------------------------------------------------------------------------------- pageable read-back
# tests/data ex_readback_before (H200): each request's 75.5 MB result comes back by `probs.cpu()`, one pageable
# device->host copy whose cudaMemcpyAsync blocks the thread for the whole staged transfer and some more.
READBACK_SQL = """
SELECT r.start, r.end, c.start, c.end, c.bytes FROM CUPTI_ACTIVITY_KIND_MEMCPY c
JOIN CUPTI_ACTIVITY_KIND_RUNTIME r ON r.correlationId = c.correlationId AND r.globalTid / 16777216 % 16777216 =
     c.globalPid / 16777216 % 16777216
WHERE c.copyKind = 2 AND c.dstKind = 0 AND c.start >= ? AND c.end <= ? ORDER BY c.start"""


def _readback():
    from nsys_doctor.diagnose import Context
    from nsys_doctor.diagnose import memory_transfer as MT
    from nsys_doctor.model.requests import find_requests
    from nsys_doctor.read import open_trace
    from tests.conftest import DATA, expand
    path = expand(DATA / "ex_readback_before.sqlite.xz")
    trace = open_trace(path)
    ctx = Context(trace, find_requests(trace))
    rq = ctx.requests
    m = rq.measured
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = [db.execute(READBACK_SQL, (int(rq.table["start_ns"][i]), int(rq.table["end_ns"][i]))).fetchall()
            for i in m]
    db.close()
    return trace, ctx, MT.measure(ctx), rows


def test_readback_measures_the_staged_copy_as_sql_does():
    from nsys_doctor.diagnose import memory_transfer as MT
    trace, ctx, m, rows = _readback()
    assert all(len(r) == 1 for r in rows)                      # one pageable read-back per measured request
    (cs, ce, gs, ge, nbytes), = rows[0]
    assert nbytes == 4 * 16 * 768 * 768 * 2                    # the program's output, fp16
    n = MT.finding(ctx, m)[0].evidence.numbers
    copy_ms = sum(r[0][3] - r[0][2] for r in rows) / len(rows) / 1e6
    after_copy_ms = sum(r[0][1] - r[0][3] for r in rows) / len(rows) / 1e6
    assert abs(n["pageable_copy_ms_per_request"] - copy_ms) < 0.002
    # the call goes on ~1.3 ms after its copy ends: the CPU finishing the staged copy
    assert after_copy_ms > 1.0 and abs(n["staged_copy_cpu_after_copy_ms_per_request"] - after_copy_ms) < 0.002
    # no pinned device->host copy to measure the rate on: the reference is the documented link rate
    assert n["DtoH_reference_GBps"] == 55.0


def test_readback_fix_releases_the_staged_call_but_waits_for_the_bytes():
    """Replayed with the finding's change, each read-back call still waits for the compute before it (recorded: copy
    start - call start) and for its copy at the pinned rate (bytes / 55 GB/s), and nothing else: the staged transfer
    and the CPU's part of it are gone. The replayed saving equals that, per request, by SQL."""
    from nsys_doctor.analysis import predict as P
    from nsys_doctor.diagnose import memory_transfer as MT
    from nsys_doctor.model import replay as R
    trace, ctx, m, rows = _readback()
    ch, _ = P.to_replay(trace, MT.change(m))
    base, out = R.replay(trace, ctx.requests), R.replay(trace, ctx.requests, ch)
    g = R.graph_of(trace, ctx.requests)
    nodes, _ = R._gpu_nodes(g, "copies", np.flatnonzero(m.inreq))
    callers = g.g_launch[nodes]
    assert (out.c_end[callers] >= out.g_end[nodes]).all()                     # the read-back is waited for
    assert (out.g_end[nodes] - out.g_start[nodes] <= np.ceil(ctx.trace.table("copies")["bytes"][g.g_row[nodes]]
                                                               / 55.0)).all()
    expect = [(ce - cs) - (gs - cs) - nbytes / 55.0 for (cs, ce, gs, ge, nbytes), in rows]   # ns, per request
    saving = base.latency_ns[ctx.requests.measured] - out.latency_ns[ctx.requests.measured]
    assert np.allclose(saving, expect, rtol=0.002)      # the wake-up after the copy: ~10 us of ~45 ms
