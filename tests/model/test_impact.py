"""analysis/impact.py: what a fix is worth in the request interval of a throughput-bound run.

The load numbers are healthy's, measured (tests/model/test_queueing.py checks them against SQL); the findings are
hypothetical (synthetic, stated as such): healthy has none, and the rule under test is which side bounds the run.
"""
from __future__ import annotations

import pytest

from nsys_doctor.analysis.impact import rebase
from nsys_doctor.report import Evidence, Finding
from tests.conftest import zoo_report


def _finding(category: str, impact_ms: float, numbers=None) -> Finding:
    return Finding(category=category, severity="high", title="t", impact_ms=impact_ms, impact_pct=50.0,
                   estimate="e", evidence=Evidence(numbers=numbers or {}), fix="f", why="w")


def _healthy_load() -> dict:
    r = zoo_report("healthy").requests
    ev = r["load_evidence"]
    iv = r["interval_ms"] * 1e6
    return {"load": r["load"], "bound_by": r["bound_by"], "interval_ns": iv,
            "gpu_need_ns": ev["gpu_ms_per_request"] * 1e6,
            "gpu_idle_per_request_ns": iv - ev["gpu_ms_per_request"] * 1e6,
            "cpu_need_ns": ev["cpu_ms_per_request"] * 1e6, "sync_wait_per_request_ns": 0.0}


def test_cpu_side_saving_in_a_gpu_bound_run_is_worth_only_the_gpu_idle_it_removes():
    load = _healthy_load()                  # GPU-bound: 19.6 ms of GPU work in a 20.1 ms interval
    f = _finding("cpu_preprocessing", 10.0)
    rebase([f], load)
    idle_ms = load["gpu_idle_per_request_ns"] / 1e6
    assert f.impact_basis == "interval" and f.impact_ms == pytest.approx(idle_ms, abs=1e-3)
    assert f.impact_pct == pytest.approx(100 * idle_ms / (load["interval_ns"] / 1e6), abs=0.1)
    assert f.severity == "low"              # 0.4 ms of 20 ms, however large the CPU saving


def test_gpu_side_saving_counts_as_gpu_time_until_the_cpu_bounds():
    load = _healthy_load()
    # precision scales GPU time saved by the queue depth to get latency (queue_factor): the interval gets the GPU time
    f = _finding("precision", 12.0, {"queue_factor": 4.0})
    g = _finding("memory_bandwidth", 40.0, {"queue_factor": 1.0})
    rebase([f, g], load)
    assert f.impact_ms == pytest.approx(3.0, abs=1e-3) and f.severity == "medium"   # 3 of 20.1 ms: 15%
    # 40 ms of GPU time cannot shorten the interval below what the CPU needs per request (10.7 ms)
    cap = (load["interval_ns"] - load["cpu_need_ns"]) / 1e6
    assert g.impact_ms == pytest.approx(cap, abs=1e-3) and g.severity == "high"


def test_latency_bound_runs_keep_the_latency_estimate():
    f = _finding("cpu_preprocessing", 10.0)
    rebase([f], {**_healthy_load(), "load": "latency-bound"})
    assert (f.impact_basis, f.impact_ms, f.impact_pct, f.severity) == ("latency", 10.0, 50.0, "high")
