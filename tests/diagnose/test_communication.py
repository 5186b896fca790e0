"""communication on real 2-GPU recordings (tests/data/dist, README there): tensor-parallel inference over NCCL,
balanced (equal shards) and unbalanced (feed-forward width split 1:3), each as one report per rank and as one
report of both ranks. Facts are checked with independent SQL on the exports."""
import functools
import sqlite3

import numpy as np
import pytest

from tests.conftest import DATA, expand

DIST = DATA / "dist"
NCCL_SQL = ("SELECT k.globalPid >> 24, k.deviceId, count(*), sum(k.[end] - k.start) FROM CUPTI_ACTIVITY_KIND_KERNEL k "
            "JOIN StringIds s ON k.shortName = s.id WHERE s.value LIKE 'nccl%' GROUP BY 1, 2 ORDER BY 2")


def _path(name):
    src = DIST / f"{name}.sqlite.xz"
    if not src.exists():
        pytest.skip(f"{src} not found")
    return expand(src)


@functools.lru_cache(maxsize=None)
def _report(name):
    from nsys_doctor.analysis import analyze
    return analyze(_path(name))


def _finding(name, category="communication"):
    return next((f for f in _report(name).findings if f.category == category), None)


def _nccl(name):
    return sqlite3.connect(_path(name)).execute(NCCL_SQL).fetchall()


def test_multi_reports_hold_both_ranks_with_one_allreduce_per_block():
    # SQL: two processes, one GPU each, 173 NCCL kernels each (43 requests x 4 blocks + 1 barrier)
    for name in ("tp_balanced_multi", "tp_unbalanced_multi"):
        rows = _nccl(name)
        assert [(r[1], r[2]) for r in rows] == [(0, 173), (1, 173)] and rows[0][0] != rows[1][0]
    t = _report("tp_unbalanced_multi").requests          # 43 requests per rank, 3 warm-up each
    assert t["total"] == 86 and t["warmup"] == 6 and t["count"] == 80


def test_requests_stay_in_their_process_and_gpu():
    from nsys_doctor.model.requests import find_requests
    from nsys_doctor.read import open_trace
    rq = find_requests(open_trace(_path("tp_unbalanced_multi")))
    pid, dev = rq.table["tid"] >> 24, rq.table["device"]
    # each process's 43 requests ran on its own GPU only, each with its own 4 all-reduces + 19 other kernels
    pairs, counts = np.unique(np.stack([pid, dev]), axis=1, return_counts=True)
    assert sorted(pairs[1].tolist()) == [0, 1] and len(set(pairs[0].tolist())) == 2 and counts.tolist() == [43, 43]
    assert (rq.table["kernels"] == 23).all()


def test_unbalanced_multi_names_the_waiting_rank():
    rows = _nccl("tp_unbalanced_multi")                  # SQL: rank 0's all-reduces take 5x rank 1's time
    assert rows[0][3] > 4 * rows[1][3]
    f = _finding("tp_unbalanced_multi")
    assert f is not None and f.severity == "high" and "wait for each other" in f.title
    assert _report("tp_unbalanced_multi").findings[0].category == "communication"
    n = f.evidence.numbers
    assert n["collectives_per_request"] == 4 and n["ranks_in_report"] == 2
    by = n["wait_ms_per_request_by_rank"]
    gpu0 = next(v for k, v in by.items() if k.endswith("GPU 0"))
    gpu1 = next(v for k, v in by.items() if k.endswith("GPU 1"))
    assert gpu0 > 2.0 and gpu1 < 0.1                    # rank 0 (1/4 of the work) waits; rank 1 never does
    # the matched collectives end together (same instance on both ranks), and start apart by the wait
    assert n["end_spread_ms_median"] < 0.1 < n["start_spread_ms_median"]
    # waiting is what balancing saves: SQL difference of the two ranks' all-reduce time, per request of a rank
    diff_ms = (rows[0][3] - rows[1][3]) / 1e6 / 43
    assert 0.6 * diff_ms < gpu0 < 1.4 * diff_ms


def test_unbalanced_fast_rank_alone_shows_exposed_collectives():
    f = _finding("tp_unbalanced_rank0")
    # one rank alone cannot tell waiting from transfer: ranked first, but only medium (what overlap would hide)
    assert f is not None and f.severity in ("high", "medium") and _report("tp_unbalanced_rank0").findings[0] is f
    assert f.evidence.numbers["ranks_in_report"] == 1 and any("one rank" in s for s in f.evidence.notes)
    (_, _, cnt, ns), = _nccl("tp_unbalanced_rank0")
    assert cnt == 173 and f.evidence.numbers["collective_ms_per_request"] == pytest.approx(ns / 1e6 / 43, rel=0.1)


@pytest.mark.parametrize("name", ["tp_balanced_multi", "tp_balanced_rank0", "tp_balanced_rank1",
                                  "tp_unbalanced_rank1"])
def test_balanced_and_slow_rank_have_nothing_high(name):
    assert not [f for f in _report(name).findings if f.severity == "high"]
    f = _finding(name)
    assert f is not None and f.severity in ("medium", "low") and "wait for each other" not in f.title
    assert f.evidence.numbers["collectives_per_request"] == 4


def test_no_collectives_no_finding():
    assert _finding("model_server") is None
