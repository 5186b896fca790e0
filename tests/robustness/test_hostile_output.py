"""What reaches a terminal, a CI log and the gate from a hostile profile, file name or saved report (issue 12).

The inputs are the demo export (tests/data/demo.sqlite.xz, a real H100 recording) with its NVTX range names,
kernel names, thread names and GPU name extended by PAYLOAD (escape sequences that retitle the terminal, plant a
hyperlink, clear the screen; a bidi override; a newline followed by a GitHub workflow command), copied under a file
name that holds the same, and the tool's own saved report of it, mutated. Each test fails on main before this
change: raw ESC bytes in the output, `::error` lines that GitHub runs, JUnit files no XML parser reads, tracebacks.
Every run checks that its inputs are byte-identical afterwards.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from nsys_doctor.report import CATEGORIES, SEVERITIES
from tests.conftest import DATA, expand

PAYLOAD = ("\x1b]0;PWNED\x07\x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\\x1b[2J\x1bP1$r\x1b\\\x9b31m"
           "\u202etxt\u2028\n::error title=INJECTED::pwned\r\n  ::warning::indented\x7f ##[error]anywhere in a line")
CLI = "import sys; from nsys_doctor.cli import main; sys.exit(main(sys.argv[1:]))"
# What no line of any output may hold: C0 controls but newline, DEL, C1 controls, bidi controls, line separators
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
OWN_ANNOTATION = re.compile(r"^::(error|notice) title=nsys-doctor [^:\n]*::")


def sha(p: pathlib.Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def run(*args, cwd=None, env=None, sub=False, timeout=120):
    """The CLI on `args`: in this process (cli.main, the same code path without an interpreter start each), or as a
    subprocess where what a user's terminal receives (bytes, exit code, no traceback) is the point."""
    if sub:
        res = subprocess.run([sys.executable, "-c", CLI, *map(str, args)], capture_output=True, cwd=cwd,
                             env={**os.environ, **(env or {})}, timeout=timeout)
        out, err = res.stdout.decode("utf-8"), res.stderr.decode("utf-8")
        assert "Traceback" not in err, err
        return subprocess.CompletedProcess(args, res.returncode, out, err)
    from nsys_doctor.cli import main
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in env or {}}
    here = os.getcwd()
    try:
        os.environ.update(env or {})
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([str(a) for a in args])
    finally:
        os.chdir(here)
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def assert_safe(text: str) -> None:
    bad = UNSAFE.search(text)
    assert bad is None, f"raw {bad.group()!r} in output: {text[max(0, bad.start() - 80):bad.end() + 80]!r}"


def assert_no_foreign_commands(text: str) -> None:
    """No line is a workflow command but the tool's own: `::cmd::` after leading spaces (the runner trims them), or
    the older `##[cmd]`, which the runner takes anywhere in a line."""
    for line in text.splitlines():
        if line.lstrip().startswith("::"):
            assert OWN_ANNOTATION.match(line), line
        assert "##[" not in line, line


def assert_one_error_line(res, code=2) -> str:
    assert res.returncode == code, (res.returncode, res.stdout[-500:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nsys-doctor: "), res.stderr
    assert_safe(res.stderr)
    return lines[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def hostile(folder) -> pathlib.Path:
    """The demo export with PAYLOAD in every NVTX range, kernel, thread and GPU name, under a hostile file name."""
    p = folder / "in" / "demo\x1b[2J\n::error title=F::name.sqlite"
    p.parent.mkdir()
    shutil.copyfile(expand(DATA / "demo.sqlite.xz"), p)
    db = sqlite3.connect(p)
    db.execute("UPDATE NVTX_EVENTS SET text = text || ? WHERE text IS NOT NULL", (PAYLOAD,))
    db.execute("UPDATE StringIds SET value = value || ? WHERE id IN (SELECT shortName FROM CUPTI_ACTIVITY_KIND_KERNEL"
               " UNION SELECT demangledName FROM CUPTI_ACTIVITY_KIND_KERNEL UNION SELECT nameId FROM ThreadNames)",
               (PAYLOAD,))
    db.execute("UPDATE TARGET_INFO_GPU SET name = name || ?", (PAYLOAD,))
    db.commit()
    db.close()
    for side in ("-wal", "-shm", "-journal"):
        pathlib.Path(str(p) + side).unlink(missing_ok=True)
    return p


@pytest.fixture(scope="module")
def saved(folder, hostile) -> pathlib.Path:
    """The tool's own JSON report of the hostile export (it keeps the names as they are: JSON escapes them)."""
    out = folder / "saved.json"
    res = run("analyze", hostile, "--format", "json", "-o", out)
    assert res.returncode == 0, res.stderr
    return out


def saved_variant(saved: pathlib.Path, tmp_path: pathlib.Path, change, name="report.json") -> pathlib.Path:
    data = json.loads(saved.read_text(encoding="utf-8"))
    change(data)
    p = tmp_path / name
    p.write_text(json.dumps(data), encoding="utf-8")      # json.dumps writes NaN for float("nan"), as a user's might
    return p


# ------------------------------------------------------------------------------------------ control characters
def test_names_reach_the_terminal_as_escapes(hostile, saved):
    before = sha(hostile)
    data = json.loads(saved.read_text(encoding="utf-8"))
    assert PAYLOAD in data["requests"]["range"]          # the mutation took: the range name carries the payload
    for res in (run("analyze", hostile, sub=True), run("diff", hostile, saved, sub=True)):
        assert res.returncode == 0, res.stderr
        assert_safe(res.stdout + res.stderr)
        assert_no_foreign_commands(res.stdout)
        assert "\\x1b]0;PWNED" in res.stdout and "\\u202e" in res.stdout      # shown, not acted on
    assert sha(hostile) == before


def test_wrapped_lines_are_not_workflow_commands(tmp_path):
    # a request range named with words that are each a workflow command: wherever the text report wraps the line
    # that names the range, the next line starts with one of them (on main: `::error::wrapped` lines)
    p = tmp_path / "wrapped.sqlite"
    shutil.copyfile(expand(DATA / "demo.sqlite.xz"), p)
    db = sqlite3.connect(p)
    db.execute("UPDATE NVTX_EVENTS SET text = ? WHERE text = 'Inference'", (" ".join(["::error::wrapped"] * 30),))
    db.commit()
    db.close()
    res = run("analyze", p)
    assert res.returncode == 0 and "error::wrapped" in res.stdout, res.stderr
    assert_no_foreign_commands(res.stdout)


def test_fleet_text_and_its_failure_lines(hostile, folder, tmp_path):
    pytest.importorskip("distributed")
    broken = tmp_path / "broken\x1b]0;X\x07\n::error::f.sqlite"
    broken.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    res = run("analyze", hostile, broken, "--workers", 1, sub=True, timeout=300)
    assert res.returncode == 2                           # one file failed
    assert_safe(res.stdout + res.stderr)
    assert_no_foreign_commands(res.stdout + res.stderr)
    assert len([ln for ln in res.stderr.splitlines() if ln.startswith("nsys-doctor: ")]) == 1


def test_file_name_with_newline_is_one_error_line(tmp_path):
    res = run("diff", tmp_path / "a\nb\x1b[2J.sqlite", tmp_path / "c.sqlite", sub=True)
    line = assert_one_error_line(res)
    assert "a\\nb\\x1b[2J.sqlite: no such file" in line


def test_notebook_view_shows_names_as_escapes(hostile):
    # Report._repr_html_ (render/notebook.py) escaped HTML only: the range name's ESC sequences and its U+202E
    # right-to-left override (which reorders what the reader sees) reached the notebook raw
    import nsys_doctor
    before = sha(hostile)
    page = nsys_doctor.analyze(hostile)._repr_html_()
    assert_safe(page)
    assert "\\x1b]0;PWNED" in page and "\\u202etxt" in page      # shown, as escapes
    assert sha(hostile) == before


# ------------------------------------------------------------------------------------------ CI output injection
def test_check_github_junit_and_step_summary(hostile, saved, tmp_path):
    def hostile_title(d):
        d["findings"][0]["title"] = ("<script>alert(1)</script> ![x](http://t.example/x.png) [link](http://evil.example)"
                                     " www.evil.example | cell ** # " + PAYLOAD)
    report = saved_variant(saved, tmp_path, hostile_title, "r\x1b]0;T\x07.json")
    inputs = {p: sha(p) for p in (report, hostile)}
    junit, summary = tmp_path / "results.xml", tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    res = run("check", report, "--fail-on", "any:low", "--max-p99-ms", 1, "--baseline", hostile, "--github",
              "--junit", junit, cwd=tmp_path, env={"GITHUB_STEP_SUMMARY": str(summary)}, sub=True)
    assert res.returncode == 1, res.stderr                 # p99 9.5 ms > 1 ms; findings present
    assert_safe(res.stdout + res.stderr)
    assert_no_foreign_commands(res.stdout)
    annotations = [ln for ln in res.stdout.splitlines() if ln.startswith("::")]
    assert len(annotations) == 3 and annotations[-1].startswith("::notice ")   # 2 rules fail (p99, fail-on) + notice
    assert {p: sha(p) for p in inputs} == inputs

    suite = ET.parse(junit).getroot()                      # well-formed XML 1.0
    failures = {c.get("name"): c.find("failure") for c in suite.iter("testcase") if c.find("failure") is not None}
    assert set(failures) == {"max-p99-ms", "fail-on any:low"}
    assert "\\x1b]0;PWNED" in failures["fail-on any:low"].get("message")

    text = summary.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n")               # appended, not overwritten
    from markdown_it import MarkdownIt                     # rich's own dependency: GitHub-style tables enabled
    html = MarkdownIt("commonmark").enable("table").render(text[len("earlier step\n"):])
    for tag in ("<script", "<img", "<a ", "<em", "<strong>alert", "<h1"):
        assert tag not in html, tag
    rows = html.count("<tr>")
    assert rows == 1 + 3 + 1 + 2, html                     # rules table: header + 3 rules; latency: header + 2
    assert "&lt;script&gt;" in html and "\\x1b]0;PWNED" in html


def test_check_lines_never_start_with_a_message(saved, tmp_path):
    # a title of words that are each a workflow command: wrapped at any width, every continuation line would be one
    def long_title(d):
        d["findings"][0]["title"] = " ".join(["::error::wrapped"] * 40)
    report = saved_variant(saved, tmp_path, long_title)
    res = run("check", report, "--fail-on", "any", "--github")
    assert res.returncode == 1
    assert_no_foreign_commands(res.stdout)


# ------------------------------------------------------------------------------------------ saved reports
def _nulls(x):
    if isinstance(x, dict):
        return {k: _nulls(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nulls(v) for v in x]
    return None


def _set(path: str, value):
    def change(d):
        *parents, last = path.split(".")
        for k in parents:
            d = d[int(k)] if isinstance(d, list) else d[k]
        if value is KeyError:
            del d[last]
        else:
            d[int(last) if isinstance(d, list) else last] = value
    return change


SAVED_DAMAGE = {
    "requests a list": (_set("requests", [1, 2]), "requests is a list, expected an object"),
    "finding not an object": (_set("findings", [3]), "findings[0] is a number, expected an object"),
    "severity critical": (_set("findings.0.severity", "critical"), "findings[0].severity is \"critical\""),
    "string for a number": (_set("requests.latency_ms.p99", "fast"), "requests.latency_ms.p99 is the string"),
    "impact a string": (_set("findings.0.impact_ms", "5"), "findings[0].impact_ms is the string \"5\""),
    "missing findings": (_set("findings", KeyError), "has no 'findings'"),
    "missing title": (_set("findings.0.title", KeyError), "findings[0] has no 'title'"),
    "nulls everywhere": (lambda d: d.update(_nulls(d)), "is null"),
    "latencies all NaN": (lambda d: d["per_request"].update(latency_ms=[float("nan")] * len(
        d["per_request"]["latency_ms"])), "per_request.latency_ms[0] is NaN"),
    "p99 infinite": (_set("requests.latency_ms.p99", float("inf")), "requests.latency_ms.p99 is infinite"),
    "column of strings": (lambda d: d["per_request"].update(latency_ms=["1"] * len(d["per_request"]["latency_ms"])),
                          "per_request.latency_ms[0] is a string"),
    "columns of two lengths": (lambda d: d["per_request"].update(cpu_ms=[1.0]), "per_request.cpu_ms has 1 values"),
    "newer schema": (_set("schema_version", "2.0"), "this nsys-doctor reads schema 1.x"),
    "timeline event": (lambda d: d["timeline"]["excerpts"][0]["events"].__setitem__(0, "x"),
                       "timeline.excerpts[0].events[0]"),
}


@pytest.mark.parametrize("damage", SAVED_DAMAGE)
def test_damaged_saved_report_is_one_line(damage, saved, tmp_path):
    change, says = SAVED_DAMAGE[damage]
    p = saved_variant(saved, tmp_path, change)
    before = sha(p)
    for args in (("diff", p, saved), ("check", p, "--fail-on", "any"), ("check", saved, "--baseline", p),
                 ("export", p, "--perfetto", tmp_path / "t.json")):
        line = assert_one_error_line(run(*args))
        assert f"{p}: not a valid saved report (" in line and says in line, line
    assert sha(p) == before
    assert not (tmp_path / "t.json").exists()


def test_saved_report_without_measured_requests_is_named_by_the_given_path(saved, tmp_path):
    def all_warmup(d):
        d["per_request"]["warmup"] = [True] * len(d["per_request"]["latency_ms"])
        d["profile"]["path"] = "/somewhere/else/original.sqlite"
    p = saved_variant(saved, tmp_path, all_warmup)
    line = assert_one_error_line(run("diff", saved, p))
    assert line.startswith(f"nsys-doctor: {p}: ") and "/somewhere/else" not in line


@pytest.mark.parametrize("profile", ["data/dist/model_server.sqlite.xz", "data/ex_graph_before.sqlite.xz",
                                     "kineto/hta-kineto-traces__critical_path__alexnet__benchmark_result_2869224_"
                                     "1695835535_trace.json.gz"])
def test_saved_reports_of_the_tool_validate(profile, tmp_path):
    # what analyze writes (TensorRT-free server with model loads, a launch-bound example, a Kineto trace) reads back
    from nsys_doctor.compare.saved import read_saved
    from tests.conftest import EXTERNAL
    src = DATA / profile[5:] if profile.startswith("data/") else EXTERNAL / profile
    if not src.exists():
        pytest.skip(f"{src} not found")
    out = tmp_path / "saved.json"
    assert run("analyze", src, "--format", "json", "-o", out).returncode == 0
    r = read_saved(out)
    assert r.requests["count"] == sum(not w for w in r.per_request["warmup"]) > 0


# ------------------------------------------------------------------------------------------ check configs
CONFIGS = {
    "not UTF-8": (b"[tool.nsys-doctor.check]\nmax_p99_ms = 5 # \xff\xfe\n", "not UTF-8 text"),
    "baseline a number": (b"[tool.nsys-doctor.check]\nbaseline = 7\n", "baseline must be a file name"),
    "nsys-doctor a number": (b"[tool]\nnsys-doctor = 5\n", "tool.nsys-doctor is an integer, expected a table"),
    "tool a string": (b'tool = "x"\n', "tool is a string, expected a table"),
    "check a list": (b"[tool.nsys-doctor]\ncheck = [1]\n", "tool.nsys-doctor.check is a list"),
    "fail_on with a number": (b'[tool.nsys-doctor.check]\nfail_on = ["any:high", 3]\n', "fail_on must be a list of"),
    "limit a word": (b'[tool.nsys-doctor.check]\nmax_p99_ms = "fast"\n', "max_p99_ms 'fast' is not a limit"),
    "limit NaN": (b"[tool.nsys-doctor.check]\nmax_p50_ms = nan\n", "max_p50_ms nan is not a limit"),
    "limit a boolean": (b"[tool.nsys-doctor.check]\nmin_gpu_busy_pct = true\n", "is not a limit"),
    "unknown category": (b'[tool.nsys-doctor.check]\nfail_on = "cuda-sync"\n', "unknown category 'cuda-sync'"),
    "regression a list": (b"[tool.nsys-doctor.check]\nbaseline = \"b.json\"\nmax_regression = [5]\n",
                          "is not a percentage"),
}


@pytest.mark.parametrize("config", CONFIGS)
def test_bad_config_is_bad_input(config, saved, tmp_path):
    body, says = CONFIGS[config]
    cfg = tmp_path / "pyproject.toml"
    cfg.write_bytes(body)
    line = assert_one_error_line(run("check", saved, "--config", cfg))
    assert line.startswith(f"nsys-doctor: {cfg}: ") and says in line, line
    assert cfg.read_bytes() == body


def test_bad_config_in_the_working_directory(saved, tmp_path):
    (tmp_path / "pyproject.toml").write_bytes(CONFIGS["limit a word"][0])
    line = assert_one_error_line(run("check", saved, cwd=tmp_path, sub=True))
    assert "pyproject.toml: max_p99_ms 'fast' is not a limit" in line


# ------------------------------------------------------------------------------------------ the gate fails closed
@pytest.mark.parametrize("spec", ["cuda-sync", "bogus", "any:", ":high"])
def test_unknown_fail_on_is_refused_with_the_valid_ones(spec, saved):
    line = assert_one_error_line(run("check", saved, "--fail-on", spec))
    listed = SEVERITIES if spec == "any:" else CATEGORIES
    assert all(name in line for name in listed), line


@pytest.mark.parametrize("arg", ["--max-regression=nan%", "--max-regression=inf", "--max-p99-ms=nan", "--max-p50-ms=inf", "--min-gpu-busy-pct=-1",
                                 "--min-gpu-busy-pct=101"])
def test_limits_that_cannot_be_evaluated_are_refused(arg, saved):
    line = assert_one_error_line(run("check", saved, "--baseline", saved, arg))
    assert arg.split("=")[0] in line, line


def test_nan_baseline_is_refused(saved, tmp_path):
    base = saved_variant(saved, tmp_path, lambda d: d["per_request"].update(
        latency_ms=[float("nan")] * len(d["per_request"]["latency_ms"])), "base.json")
    line = assert_one_error_line(run("check", saved, "--baseline", base, "--max-regression", "5%"))
    assert str(base) in line and "NaN" in line


def test_regression_that_cannot_be_evaluated_fails(saved, tmp_path):
    def three_measured(d):
        n = len(d["per_request"]["latency_ms"])
        d["per_request"]["warmup"] = [i < n - 3 for i in range(n)]
    base = saved_variant(saved, tmp_path, three_measured, "base.json")
    res = run("check", saved, "--baseline", base, "--max-regression", "20%")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAIL max-regression: cannot be evaluated" in res.stdout and "3 before" in res.stdout


def test_limit_under_the_noise_floor_says_the_effective_one(saved):
    from nsys_doctor.compare import MIN_CHANGE_PCT
    res = run("check", saved, "--baseline", saved, "--max-regression", "5%")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"effective limit {MIN_CHANGE_PCT:g}%" in res.stdout
    for command in ("check", "diff"):
        helped = subprocess.run([sys.executable, "-c", CLI, command, "--help"], capture_output=True, text=True,
                                env={**os.environ, "COLUMNS": "300"})
        assert f"{MIN_CHANGE_PCT:g}%" in " ".join(helped.stdout.split()) and "2%" not in helped.stdout


# ------------------------------------------------------------------------------------------ folders and pipes
@pytest.mark.parametrize("where", ["diff", "check", "baseline", "export", "config"])
@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_folders_and_fifos_are_refused_at_once(where, kind, saved, tmp_path):
    odd = tmp_path / "odd.json"
    if kind == "folder":
        odd.mkdir()
    else:
        os.mkfifo(odd)
    args = {"diff": ("diff", odd, saved), "check": ("check", odd, "--fail-on", "any"),
            "baseline": ("check", saved, "--baseline", odd), "export": ("export", odd, "--html", tmp_path / "x.html"),
            "config": ("check", saved, "--config", odd)}[where]
    line = assert_one_error_line(run(*args, sub=True, timeout=60))     # a FIFO read would block: timeout fails it
    assert line.startswith(f"nsys-doctor: {odd}: ")
    problem = line[len(f"nsys-doctor: {odd}: "):]
    assert problem.startswith("is a folder" if kind == "folder" else "not a regular file (a pipe"), problem


def test_scheduler_that_is_not_an_address(hostile, tmp_path):
    pytest.importorskip("distributed")
    line = assert_one_error_line(run("analyze", hostile, hostile.with_name("other.sqlite"), "--scheduler",
                                     "not a url", sub=True))
    assert "not a url: cannot start or reach the Dask cluster" in line
