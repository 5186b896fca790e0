"""thread_contention on real profiles: 4 request threads serialised on one Python lock (thread_contention), absent
where one thread serves requests (healthy, cpu_preproc)."""
from __future__ import annotations

import sqlite3

from tests.conftest import zoo, zoo_report

RANGES = """SELECT start, end, globalTid FROM NVTX_EVENTS
            WHERE coalesce(text, (SELECT value FROM StringIds WHERE id = textId)) = 'Inference'"""
SEM_WAIT = f"""
WITH r AS ({RANGES})
SELECT sum(o.end - o.start) * 1.0 / (SELECT count(*) FROM r) FROM OSRT_API o JOIN r
  ON o.globalTid = r.globalTid AND o.start BETWEEN r.start AND r.end
 WHERE o.nameId IN (SELECT id FROM StringIds WHERE value = 'sem_wait')"""


def _finding(report, category):
    return next((f for f in report.findings if f.category == category), None)


def test_contention_found_with_lock_waits():
    with sqlite3.connect(zoo("thread_contention")) as db:
        threads = db.execute(f"SELECT count(DISTINCT globalTid) FROM ({RANGES})").fetchone()[0]
        sem_ns = db.execute(SEM_WAIT).fetchone()[0]
    assert threads == 4 and sem_ns > 20e6          # CPython threading.Lock waits in sem_wait
    rep = zoo_report("thread_contention")
    top = rep.findings[0]
    assert top.category == "thread_contention" and top.severity == "high"
    n = top.evidence.numbers
    assert n["request_threads"] == 4
    assert n["lock_wait_ms_per_request"] > 20
    assert n["lock_calls"][0]["call"].startswith("sem_wait")
    assert n["lock_handoffs_between_request_threads"] > 10


def test_no_contention_with_one_request_thread():
    for name in ("healthy", "cpu_preproc"):
        assert _finding(zoo_report(name), "thread_contention") is None
