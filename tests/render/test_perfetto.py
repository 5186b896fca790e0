"""Perfetto / Chrome trace event export of the timeline excerpts, from a real report (sync_heavy: findings cite
host syncs and launch gaps) and an empty one; the CLI `export` as a subprocess."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from nsys_doctor.render import perfetto
from nsys_doctor.report import Report
from tests.conftest import zoo, zoo_report


def events(report) -> list[dict]:
    d = json.loads(perfetto.render(report))
    assert isinstance(d["traceEvents"], list)
    return d["traceEvents"]


def test_complete_events_have_lanes_and_times():
    report = zoo_report("sync_heavy")
    ev = events(report)
    x = [e for e in ev if e["ph"] == "X"]
    assert len(x) > 500                      # ~111 kernels and their launches per request, several excerpts
    for e in x:
        assert {"name", "ts", "dur", "pid", "tid"} <= e.keys() and e["dur"] >= 0
    kinds = {e.get("cat") for e in x}
    assert {"kernel", "cuda_api", "nvtx"} <= kinds
    named = {(e["pid"], e["tid"]) for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {(e["pid"], e["tid"]) for e in x} <= named   # every lane is named
    procs = [e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "process_name"]
    assert procs[0].startswith("Typical request") and procs[1].startswith("Worst request")
    # times are microseconds of the profile's clock: each event of the typical excerpt overlaps its window
    ex = report.timeline["excerpts"][0]
    for e in x:
        if e["pid"] == 1 and e["cat"] != "request":
            assert e["ts"] * 1e3 <= ex["end_ns"] + 1 and (e["ts"] + e["dur"]) * 1e3 >= ex["start_ns"] - 1

def test_findings_become_annotations():
    report = zoo_report("sync_heavy")
    ev = events(report)
    inst = [e for e in ev if e["ph"] == "i"]
    cited = sum(len(m.get("excerpts", [])) for m in report.timeline["markers"])
    assert len(inst) == cited > 0
    for e in inst:
        f = report.findings[e["args"]["finding"] - 1]
        assert e["args"]["title"] == f.title and e["args"]["fix"] == f.fix and e["name"].startswith("F")
    assert json.loads(perfetto.render(report))["metadata"]["findings"][0]["title"] == report.findings[0].title


def test_gpu_metrics_become_counters():
    ev = events(zoo_report("healthy"))   # recorded with --gpu-metrics-devices
    counters = {e["name"] for e in ev if e["ph"] == "C"}
    assert any("SMs Active" in n for n in counters)


def test_empty_report():
    assert events(Report(profile={}, requests={})) == []


def test_cli_export(tmp_path):
    cli = pathlib.Path(sys.executable).parent / "nsys-doctor"
    out, page = tmp_path / "trace.json", tmp_path / "r.html"
    run = subprocess.run([str(cli), "export", str(zoo("sync_heavy")), "--perfetto", str(out), "--range", "Inference",
                          "--html", str(page)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(out.read_text())["traceEvents"] and page.read_text().startswith("<!DOCTYPE html>")
    run = subprocess.run([str(cli), "export", str(zoo("sync_heavy"))], capture_output=True, text=True)
    assert run.returncode == 2 and "--perfetto" in run.stderr
    run = subprocess.run([str(cli), "export", str(zoo("sync_heavy")), "--perfetto", str(out), "--range", "nope"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "nope" in run.stderr
