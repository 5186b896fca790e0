"""The Python API as a notebook user calls it (`import nsys_doctor; nsys_doctor.analyze(path)`), on real exports.
Expected numbers come from SQL on the same file or from the command line's own output, not from the API."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

import nsys_doctor
from nsys_doctor.errors import BadInput, NsysDoctorError
from tests.conftest import EXTERNAL, zoo

pd = pytest.importorskip("pandas")
CLI = "import sys; from nsys_doctor.cli import main; sys.exit(main())"


@pytest.fixture(scope="module")
def sync_heavy():
    return zoo("sync_heavy")


@pytest.fixture(scope="module")
def report(sync_heavy):
    return nsys_doctor.analyze(sync_heavy)


def _sql(path, query):
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        return c.execute(query).fetchall()


def test_import_is_cheap_and_loads_nothing_else():
    # `import nsys_doctor` alone must not pull in numpy, the readers or the instrument module (nvtx)
    code = "import sys, nsys_doctor; print(sorted(m for m in sys.modules if m.startswith(('nsys_doctor', 'numpy', 'nvtx'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['nsys_doctor']"


def test_top_level_names_are_the_real_ones():
    from nsys_doctor import instrument
    assert nsys_doctor.request is instrument.request and nsys_doctor.phase is instrument.phase
    assert nsys_doctor.analyze.__doc__ and "range" in nsys_doctor.analyze.__doc__
    assert {"analyze", "request", "phase", "Report"} <= set(dir(nsys_doctor))
    with pytest.raises(AttributeError):
        nsys_doctor.no_such_thing


def test_requests_table_one_row_per_nvtx_range(report, sync_heavy):
    df = report.table("requests")
    rows = _sql(sync_heavy, "SELECT start, end FROM NVTX_EVENTS WHERE text = 'Inference' ORDER BY start")
    assert len(df) == len(rows) == 63
    assert df.index.name == "request" and list(df.index) == list(range(63))
    assert df["start_ns"].tolist() == [s for s, _ in rows]
    # cpu_ms is the range itself; latency runs to the end of the request's last GPU work, so it is never shorter
    assert df["cpu_ms"].tolist() == pytest.approx([(e - s) / 1e6 for s, e in rows], abs=1e-4)
    assert (df["latency_ms"] >= df["cpu_ms"] - 1e-4).all()
    assert df["warmup"].sum() == report.requests["warmup"] == 3 and df["warmup"].iloc[:3].all()
    for col in ("latency_ms", "cpu_ms", "compute_ms", "copy_ms", "idle_ms", "launches"):
        assert col in df.columns
    # the summary's p50 is the median of the measured rows
    assert df.loc[~df["warmup"], "latency_ms"].median() == pytest.approx(report.requests["latency_ms"]["p50"],
                                                                          abs=1e-3)


def test_kernels_and_findings_tables(report, sync_heavy):
    k = report.table("kernels")
    assert list(k.columns[:3]) == ["name", "count", "per_request"]
    names = {n for (n,) in _sql(sync_heavy, "SELECT DISTINCT s.value FROM CUPTI_ACTIVITY_KIND_KERNEL k "
                                            "JOIN StringIds s ON s.id IN (k.shortName, k.demangledName)")}
    assert set(k["name"]) <= names
    assert (k["total_ms"].diff().dropna() <= 0).all()         # heaviest first
    measured = report.requests["count"]
    assert (k["per_request"] - k["count"] / measured).abs().max() < 0.01
    f = report.table("findings")
    assert list(f.index) == list(range(1, len(report.findings) + 1))
    assert f["category"].tolist() == [x.category for x in report.findings]
    # the table in the report's order, with each finding's evidence numbers (sync_heavy's planted syncs rank below
    # its launch overhead: tests/diagnose/test_cuda_sync.py)
    assert f.loc[1, "category"] == report.findings[0].category and f.loc[1, "severity"] == report.findings[0].severity
    row = f.index[f["category"] == "cuda_sync"][0]
    sync = next(x for x in report.findings if x.category == "cuda_sync")
    assert f.loc[row, "evidence"]["syncs_per_request"] == sync.evidence.numbers["syncs_per_request"]
    with pytest.raises(ValueError, match="requests, kernels, findings"):
        report.table("kernel")


def test_repr_is_short(report):
    text = repr(report)
    assert len(text.splitlines()) <= 3 and len(text) < 600
    assert "60 requests" in text and report.findings[0].category in text
    assert all(len(repr(f)) < 400 for f in report.findings)


def test_repr_html_shows_verdict_findings_latency(report):
    page = report._repr_html_()
    from html import escape
    assert escape(report.verdict) in page
    assert f"{report.requests['latency_ms']['p50']:.2f}" in page and "p99" in page
    for f in report.findings:
        assert escape(f.title) in page


def test_repr_html_escapes_profile_strings(report):
    # synthetic edge case: the real report with a hostile range name and finding title spliced in
    evil = "<img src=x onerror=alert(1)>"
    hostile = nsys_doctor.Report(**{**report.__dict__, "requests": {**report.requests, "range": evil},
                                   "verdict": evil})
    page = hostile._repr_html_()
    assert evil not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_to_json_matches_the_command_line(report, sync_heavy, tmp_path):
    report.to_json(tmp_path / "api.json")
    subprocess.run([sys.executable, "-c", CLI, "analyze", str(sync_heavy), "--format", "json",
                    "-o", str(tmp_path / "cli.json")], check=True)
    api, cli = (json.loads((tmp_path / n).read_text()) for n in ("api.json", "cli.json"))
    assert api == cli
    again = nsys_doctor.load(tmp_path / "api.json")
    assert again.verdict == report.verdict and again.table("requests").equals(report.table("requests"))


def test_to_html(report, tmp_path):
    out = tmp_path / "r.html"
    report.to_html(out)
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and "cuda_sync" in text
    with pytest.raises(BadInput, match="cannot write"):
        report.to_html(tmp_path / "no such folder" / "r.html")


def test_skip(sync_heavy):
    r = nsys_doctor.analyze(sync_heavy, skip=5)
    assert r.table("requests")["warmup"].sum() == 5 and r.requests["count"] == 58
    with pytest.raises(BadInput, match="leaves no request to measure: the profile has 63 requests"):
        nsys_doctor.analyze(sync_heavy, skip=63)
    with pytest.raises(BadInput):
        nsys_doctor.analyze(sync_heavy, skip=-1)
    p = subprocess.run([sys.executable, "-c", CLI, "analyze", str(sync_heavy), "--skip", "100"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--skip 100 leaves no request" in p.stderr


def test_range_and_bad_input(sync_heavy, tmp_path):
    r = nsys_doctor.analyze(sync_heavy, range="Inference")
    assert r.requests["chosen_because"] == "chosen with --range"
    notes = tmp_path / "notes.txt"
    notes.write_text("not a profile\n")
    with pytest.raises(NsysDoctorError) as err:
        nsys_doctor.analyze(notes)
    assert err.value.path == str(notes)


def test_pandas_missing_says_how_to_get_it(report, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)      # what `import pandas` does when it is not installed
    with pytest.raises(ImportError, match=r"nsys-doctor\[pandas\]"):
        report.table("requests")
    assert report.verdict and repr(report)                # everything else works without it


def test_kineto_trace(tmp_path):
    # a PyTorch profiler trace goes through the same call
    path = EXTERNAL / "kineto"
    traces = sorted(path.rglob("*resnet50_num_workers_0*.json.gz")) if path.is_dir() else []
    if not traces:
        pytest.skip("no Kineto sample in ../shared/external")
    r = nsys_doctor.analyze(traces[0])
    df = r.table("requests")
    assert len(df) == r.requests["total"] and df["warmup"].sum() == r.requests["warmup"]
