"""memory_bandwidth's fix as a graph change, on the H200 fusion pair of tests/data, against facts read by SQL from the
export: ex_fusion_before's 13 kernels per request (one `submit` range launches them) fused into one kernel as long as
the longest of them, launched once. The predicted saving against the real fix is tests/test_predict.py's."""
import sqlite3

import numpy as np
import pytest

from nsys_doctor.analysis import predict as P
from nsys_doctor.diagnose import Context, memory_bandwidth
from nsys_doctor.model.changes import FuseKernels
from nsys_doctor.model.requests import find_requests
from nsys_doctor.read import open_trace
from tests.conftest import DATA, expand


def _measured(name, module):
    trace = open_trace(expand(DATA / f"{name}.sqlite.xz"))
    ctx = Context(trace, find_requests(trace))
    return trace, ctx, module.measure(ctx)


@pytest.fixture(scope="module")
def fusion():
    trace, ctx, m = _measured("ex_fusion_before", memory_bandwidth)
    yield trace, ctx, m
    trace.close()


def _submits(db):
    """Per `submit` range (one request's launches, no overlap): kernels launched in it, their longest duration."""
    return db.execute(
        "SELECT count(*), max(k.end - k.start) FROM NVTX_EVENTS n JOIN CUPTI_ACTIVITY_KIND_RUNTIME r "
        "ON r.globalTid = n.globalTid AND r.start >= n.start AND r.end <= n.end "
        "JOIN CUPTI_ACTIVITY_KIND_KERNEL k ON k.correlationId = r.correlationId "
        "WHERE n.text = 'submit' GROUP BY n.start ORDER BY n.start").fetchall()


def test_fusion_chain_is_each_requests_13_kernels_at_its_longest(fusion):
    trace, ctx, m = fusion
    db = sqlite3.connect(expand(DATA / "ex_fusion_before.sqlite.xz"))
    subs = _submits(db)
    assert {n for n, _ in subs} == {13}
    (fk,) = [c for c in memory_bandwidth.change(m) if isinstance(c, FuseKernels)]
    n_chains = len(fk.fused_ns)
    assert n_chains == len(ctx.measured)                      # one chain per measured request
    assert (np.bincount(fk.chain) == 13).all()
    # each chain's fused time is the longest of its request's kernels (SQL), request by request (the measured
    # requests are the last ones)
    longest = np.array([mx for _, mx in subs[-n_chains:]])
    assert np.array_equal(np.sort(fk.fused_ns), np.sort(longest))
    # launched once: the 12 other launches go, each with the CPU time since the launch before it (<= 75 us)
    assert len(fk.launch_rows) == 12 * n_chains
    api = trace.table("api_calls")
    assert {trace.name(i).split("_v")[0] for i in np.unique(api["name_id"][fk.launch_rows])} == {"cudaLaunchKernel"}
    gaps = fk.end_ns - fk.start_ns
    assert len(gaps) == 12 * n_chains and gaps.max() <= memory_bandwidth.FUSED_DISPATCH_MAX_NS


def test_fusion_replay_keeps_one_launch_per_request(fusion):
    trace, ctx, m = fusion
    ch, how = P.to_replay(trace, memory_bandwidth.change(m))
    assert len(ch.remove_cpu_rows["api_calls"]) == 12 * len(ctx.measured)
    # the members share the fused time: per chain their scaled durations sum to its longest member
    (t, rows, f), = ch.gpu_scale
    k = trace.table("kernels")
    d = (k["end_ns"][rows] - k["start_ns"][rows]) * f
    fk = memory_bandwidth.change(m)[0]
    assert np.allclose(np.bincount(fk.chain, weights=d), fk.fused_ns, rtol=1e-9)
    assert "fused into one kernel" in how[0]
