"""Categories whose diagnosis could not run are recorded (profile.not_evaluated) and fail `check --fail-on`.

What each profile recorded is read independently with SQL (sqlite_master, TARGET_INFO_GPU_METRICS): the demo export
has no GPU metrics tables, healthy has DRAM read/write bandwidth metrics and OS runtime and scheduling tables, the
dlprof export has neither OSRT_API nor SCHED_EVENTS.
"""
from __future__ import annotations

import json
import sqlite3

import pytest

from nsys_doctor.report import CATEGORIES
from tests.cli.test_check import nsd
from tests.conftest import DATA, analysed, expand, external, zoo


def tables(path) -> set[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


@pytest.fixture(scope="module")
def demo():
    return expand(DATA / "demo.sqlite.xz")


def test_missing_gpu_metrics_recorded_and_gate_fails(demo, tmp_path):
    assert not {"GPU_METRICS", "TARGET_INFO_GPU_METRICS"} & tables(demo)
    skipped = analysed(demo).profile["not_evaluated"]
    assert list(skipped) == ["memory_bandwidth"]
    assert "--gpu-metrics-devices" in skipped["memory_bandwidth"]
    # whatever the severity asked for, a category that was not evaluated cannot hold
    for spec in ("memory_bandwidth", "memory_bandwidth:high"):
        r = nsd("check", demo, "--fail-on", spec, cwd=tmp_path)
        assert r.returncode == 1, r.stdout + r.stderr
        line = next(ln for ln in r.stdout.splitlines() if f"fail-on {spec}:" in ln)
        assert line.startswith("FAIL") and "not evaluated" in line and "GPU metrics" in line


def test_evaluated_categories_still_pass(tmp_path):
    p = zoo("healthy")
    with sqlite3.connect(f"file:{p}?mode=ro", uri=True) as db:
        dram = [r[0] for r in db.execute("SELECT DISTINCT metricName FROM TARGET_INFO_GPU_METRICS "
                                         "WHERE metricName LIKE 'DRAM % Bandwidth%'")]
    assert len(dram) == 2 and {"OSRT_API", "SCHED_EVENTS"} <= tables(p)
    assert analysed(p).profile["not_evaluated"] == {}
    # every category was evaluated, so rules on categories healthy has no finding of pass (its one finding,
    # memory_bandwidth's fusion of BatchNorm/ReLU chains, is medium: tests/diagnose/test_memory_bandwidth.py)
    r = nsd("check", p, "--fail-on", "thread_contention", "--fail-on", "precision:high", "--fail-on",
            "cuda_sync:medium", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_os_runtime_nor_scheduling_thread_contention_not_evaluated(tmp_path):
    p = external("dlprof-dummy-cnn__nsys_profile_w_relu")
    assert not {"OSRT_API", "SCHED_EVENTS"} & tables(p)
    skipped = analysed(p).profile["not_evaluated"]
    assert "thread_contention" in skipped and "osrt" in skipped["thread_contention"]
    # any:SEV still judges the findings, and names what it could not evaluate
    r = nsd("check", p, "--fail-on", "thread_contention:high", "--fail-on", "any:high", cwd=tmp_path)
    assert r.returncode == 1
    lines = {ln.split(":", 1)[0]: ln for ln in r.stdout.splitlines() if ln.startswith(("PASS", "FAIL"))}
    assert lines["FAIL fail-on thread_contention"].count("not evaluated") == 1
    high = [f for f in analysed(p).findings if f.severity == "high"]
    any_line = next(ln for ln in r.stdout.splitlines() if "fail-on any:high:" in ln)
    assert any_line.startswith("FAIL" if high else "PASS") and "not evaluated: " in any_line
    assert "thread_contention (" in any_line


def test_saved_report_round_trip_and_older_reports_fail_closed(demo, tmp_path):
    saved = tmp_path / "demo.json"
    assert nsd("analyze", demo, "--format", "json", "-o", saved, cwd=tmp_path).returncode == 0
    d = json.loads(saved.read_text())
    assert d["profile"]["not_evaluated"] == analysed(demo).profile["not_evaluated"]
    # a report saved before not_evaluated existed cannot say whether a category ran: a named category fails
    del d["profile"]["not_evaluated"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(d))
    r = nsd("check", old, "--fail-on", "cuda_sync:high", "--fail-on", "any:high", cwd=tmp_path)
    assert r.returncode == 1
    out = r.stdout.splitlines()
    assert any(ln.startswith("FAIL fail-on cuda_sync:high: cannot be evaluated") for ln in out), out
    assert any(ln.startswith("PASS fail-on any:high") for ln in out), out   # demo has no high finding


def test_any_fails_when_nothing_was_evaluated(demo, tmp_path):
    # synthetic edge case: every category marked not evaluated (what a run without measured requests records)
    d = analysed(demo).to_dict()
    d = json.loads(json.dumps(d))
    d["findings"] = []
    d["profile"]["not_evaluated"] = dict.fromkeys(CATEGORIES, "no measured requests")
    p = tmp_path / "none.json"
    p.write_text(json.dumps(d))
    r = nsd("check", p, "--fail-on", "any:low", cwd=tmp_path)
    assert r.returncode == 1 and "FAIL fail-on any:low: no category was evaluated" in r.stdout, r.stdout + r.stderr
