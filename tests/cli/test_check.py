"""`nsys-doctor check` end to end: exit codes 0/1/2, JUnit XML (parsed), GitHub annotations, pyproject rules.

Numbers from the zoo: launch_bound p50 16.3 ms, p99 58.0 ms, GPU busy 5.1%; launch_bound_graphed p50 61.7 ms
(requests queue on the GPU; see tests/test_compare.py).
"""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import zoo

CLI = "import sys; from nsys_doctor.cli import main; sys.exit(main())"


def nsd(*args, cwd=None, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    p = tmp_path_factory.mktemp("check") / "baseline.json"
    r = nsd("analyze", zoo("launch_bound"), "--format", "json", "-o", p)
    assert r.returncode == 0, r.stderr
    return p


def test_all_rules_hold_exit_0(baseline, tmp_path):
    junit = tmp_path / "results.xml"
    r = nsd("check", baseline, "--max-p50-ms", 20, "--max-p99-ms", 100, "--baseline", baseline,
            "--max-regression", "5%", "--junit", junit, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "3" and suite.get("failures") == "0"
    assert [c.get("name") for c in suite.iter("testcase")] == ["max-p50-ms", "max-p99-ms", "max-regression"]
    assert suite.find("testcase/failure") is None


def test_regression_and_limits_fail_exit_1(baseline, tmp_path):
    junit = tmp_path / "results.xml"
    r = nsd("check", zoo("launch_bound_graphed"), "--max-p50-ms", 20, "--min-gpu-busy-pct", 50,
            "--baseline", baseline, "--max-regression", "5%", "--junit", junit, "--github", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    suite = ET.parse(junit).getroot()
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failed = {k: c.find("failure") for k, c in cases.items() if c.find("failure") is not None}
    # graphed: GPU busy 99.5%, so that one holds; latency p50 61.7 ms fails; and it is no regression, because the
    # graphed run is throughput-bound and finishes 22.7x more requests per second than the baseline
    assert set(failed) == {"max-p50-ms"}
    assert "faster: 22." in cases["max-regression"].find("system-out").text
    errors = [ln for ln in r.stdout.splitlines() if ln.startswith("::error ")]
    assert len(errors) == 1 and all("title=nsys-doctor " in ln and "::" in ln[8:] for ln in errors)


def test_throughput_regression_fails(tmp_path):
    graphed = tmp_path / "graphed.json"
    assert nsd("analyze", zoo("launch_bound_graphed"), "--format", "json", "-o", graphed).returncode == 0
    r = nsd("check", zoo("launch_bound"), "--baseline", graphed, "--max-regression", "5%", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL max-regression: slower: 0.044x the throughput" in r.stdout


def test_throughput_and_service_limits(tmp_path):
    # healthy (zoo): interval 20.07 ms (49.8 requests/s), p99 service 21.6 ms while p99 latency is 82.2 ms
    junit = tmp_path / "r.xml"
    r = nsd("check", zoo("healthy"), "--max-interval-ms", 25, "--min-throughput", 60, "--max-service-p99-ms", 30,
            "--max-p99-ms", 50, "--junit", junit, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    cases = {c.get("name"): c.find("failure") is None for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases == {"max-p99-ms": False, "max-interval-ms": True, "min-throughput": False,
                     "max-service-p99-ms": True}
    (tmp_path / "pyproject.toml").write_text("[tool.nsys-doctor.check]\nmin_throughput = 45\n"
                                             "max_service_p99_ms = 25\n", encoding="utf-8")
    r = nsd("check", zoo("healthy"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS min-throughput" in r.stdout and "PASS max-service-p99-ms" in r.stdout


def test_a_rule_without_its_number_fails(tmp_path):
    # a report saved before queueing was measured (fields removed from a real one): the rule cannot be evaluated,
    # so it fails rather than passes
    import json
    saved = tmp_path / "old.json"
    assert nsd("analyze", zoo("healthy"), "--format", "json", "-o", saved).returncode == 0
    d = json.loads(saved.read_text())
    for k in ("interval_ms", "throughput_per_s", "service_ms", "queue_ms", "load", "bound_by"):
        d["requests"].pop(k)
    saved.write_text(json.dumps(d))
    r = nsd("check", saved, "--max-interval-ms", 1000, "--min-throughput", 1, "--max-service-p99-ms", 1000,
            cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.count("FAIL ") == 3 and "no request interval" in r.stdout


def test_noise_does_not_fail(baseline, tmp_path):
    # the same run against itself: a 0% limit still holds because the change is not significant
    r = nsd("check", zoo("launch_bound"), "--baseline", baseline, "--max-regression", "0%", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_rules_from_pyproject(baseline, tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.nsys-doctor.check]\nmax_p99_ms = 10\nfail_on = ["cuda_sync:high"]\n'
        f'baseline = "{baseline.name}"\n', encoding="utf-8")
    (tmp_path / baseline.name).write_bytes(baseline.read_bytes())
    junit = tmp_path / "r.xml"
    r = nsd("check", zoo("launch_bound"), "--junit", junit, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr                  # p99 58 ms > 10 ms
    names = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase")]
    assert names == ["max-p99-ms", "fail-on cuda_sync:high", "max-regression"]
    r = nsd("check", zoo("launch_bound"), "--config", tmp_path / "pyproject.toml", "--max-p99-ms", 100)
    assert r.returncode == 0, r.stdout + r.stderr  # the option overrides the file; no syncs in launch_bound


@pytest.mark.parametrize("args", [
    [],                                                  # no rules
    ["--fail-on", "any:bogus"],                          # unknown severity
    ["--max-regression", "5%"],                          # no baseline
    ["--max-p99-ms", "5", "--baseline", "/nonexistent/baseline.json"],
])
def test_bad_input_exit_2(args, tmp_path):
    r = nsd("check", zoo("launch_bound"), *args, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("nsys-doctor: ") and r.stderr.count("\n") == 1


def test_not_a_profile_exit_2(tmp_path):
    bad = tmp_path / "x.sqlite"
    bad.write_text("hello")
    r = nsd("check", bad, "--max-p99-ms", 5, cwd=tmp_path)
    assert r.returncode == 2


def test_github_step_summary_carries_the_measured_numbers(baseline, tmp_path):
    # the latency table of the summary is the report's own percentiles (launch_bound p50 16.3 ms: see the top)
    import json
    summary = tmp_path / "summary.md"
    r = nsd("check", baseline, "--max-p99-ms", 100, "--fail-on", "any:high", "--github", cwd=tmp_path,
            env_extra={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.returncode == 1, r.stdout + r.stderr          # launch_overhead high
    lat = json.loads(baseline.read_text())["requests"]["latency_ms"]
    rows = [ln for ln in summary.read_text().splitlines() if ln.startswith("| ")]
    assert rows[0] == "| rule | result | measured |"
    assert [ln.split(" | ")[:2] for ln in rows[1:3]] == [["| max\\-p99\\-ms", "pass"],
                                                          ["| fail\\-on any\\:high", "**FAIL**"]]
    latency_row = rows[-1].strip("| ").split(" | ")
    assert [float(x) for x in latency_row[1:]] == [round(lat[k], 3) for k in ("p50", "p90", "p99", "max", "mean")]


def test_no_step_summary_without_github(baseline, tmp_path):
    summary = tmp_path / "summary.md"
    r = nsd("check", baseline, "--max-p99-ms", 100, cwd=tmp_path, env_extra={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.returncode == 0 and not summary.exists()


@pytest.mark.parametrize("where", ["the baseline", "a folder", "a link to nothing"])
def test_step_summary_never_appended_to_an_input_a_folder_or_through_a_dangling_link(baseline, tmp_path, where):
    # $GITHUB_STEP_SUMMARY is the runner's file, appended to; named wrongly, it once got Markdown appended to the
    # user's saved baseline report (an input) or to whatever file a dangling link pointed at
    import hashlib
    before = hashlib.sha256(baseline.read_bytes()).hexdigest()
    target = {"the baseline": baseline, "a folder": tmp_path, "a link to nothing": tmp_path / "link.md"}[where]
    if where == "a link to nothing":
        target.symlink_to(tmp_path / "elsewhere" / "summary.md")
    r = nsd("check", baseline, "--max-p99-ms", 100, "--github", cwd=tmp_path,
            env_extra={"GITHUB_STEP_SUMMARY": str(target)})
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("nsys-doctor: ") and r.stderr.count("\n") == 1 and "step summary" in r.stderr
    assert hashlib.sha256(baseline.read_bytes()).hexdigest() == before
    assert r.stdout == ""                                   # refused before any result was printed
