"""gpu_idle (gpu_underutilization) on real profiles: a request that sleeps and reads its input before the GPU work
(dataload_starved), nothing on a busy GPU (healthy), and CPU-bound idle left to the specific findings."""
from __future__ import annotations

import sqlite3

from tests.conftest import zoo, zoo_report

SLEEP = """
WITH r AS (SELECT start, end, globalTid FROM NVTX_EVENTS
           WHERE coalesce(text, (SELECT value FROM StringIds WHERE id = textId)) = 'Inference')
SELECT sum(o.end - o.start) * 1.0 / (SELECT count(*) FROM r) FROM OSRT_API o JOIN r
  ON o.globalTid = r.globalTid AND o.start BETWEEN r.start AND r.end
 WHERE o.nameId IN (SELECT id FROM StringIds WHERE value = 'clock_nanosleep')"""


def _finding(report, category):
    return next((f for f in report.findings if f.category == category), None)


def test_dataload_starved_names_sleep_and_reads():
    with sqlite3.connect(zoo("dataload_starved")) as db:
        sleep_ns = db.execute(SLEEP).fetchone()[0]
    assert sleep_ns > 7e6                           # zoo.py: 8 ms sleep per request
    rep = zoo_report("dataload_starved")
    # not necessarily the top finding: its eager ResNet-50 is launch-bound too, and the two fixes save about the same
    # (the same program on the H200, tests/data ex_fres / ex_fgraph: the prefetch 9.5-9.9 ms/request, a CUDA graph
    # 10.0-10.5, of 22-25); launch_overhead's replay ranks first here (labels.json names this one primary)
    top = _finding(rep, "gpu_underutilization")
    assert top is not None and top.severity == "high"
    calls = [c["call"] for c in top.evidence.numbers["blocking_calls"]]
    assert calls[0] == "clock_nanosleep" and ("read" in calls or "fread" in calls)
    assert 7 <= top.impact_ms <= top.evidence.numbers["gpu_idle_ms_per_request"]


def test_busy_gpu_and_cpu_bound_requests_get_no_idle_finding():
    assert _finding(zoo_report("healthy"), "gpu_underutilization") is None       # GPU ~98% busy
    lb = _finding(zoo_report("launch_bound"), "gpu_underutilization")             # idle is launch-bound CPU
    assert lb is None or lb.severity == "low"
    tc = _finding(zoo_report("thread_contention"), "gpu_underutilization")        # idle is lock waits
    assert tc is None or tc.severity != "high"
