"""memory_transfer on real zoo profiles: memcpy_pageable's pageable copies dominate; healthy's pinned copy does not."""
import sqlite3

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
