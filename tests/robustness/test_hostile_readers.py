"""Hostile input to the readers (issue 12): every attempt ends in a report (exit 0) or one line and exit 2, never a
traceback or a crash, and the input is byte-identical afterwards.

Kineto cases change one field of one event of a real PyTorch profiler trace (HTA's alexnet sample, 1408 events) and
check what the reader measured against the JSON itself: the skipped event is missing from the counts and said in a
note, the rest is read.
"""
from __future__ import annotations

import gzip
import json
import os
import pathlib
import shutil
import sqlite3
import tempfile

import pytest

from tests.conftest import EXTERNAL
from tests.robustness.test_bad_input import check

ALEXNET = EXTERNAL / "kineto" / ("hta-kineto-traces__critical_path__alexnet__benchmark_result_2869224_1695835535_"
                                 "trace.json.gz")


@pytest.fixture(scope="module")
def alexnet() -> dict:
    if not ALEXNET.exists():
        pytest.skip(f"{ALEXNET} not found (../shared is missing)")
    with gzip.open(ALEXNET, "rt", encoding="utf-8") as f:
        return json.load(f)


def first(doc: dict, cat: str) -> dict:
    return next(e for e in doc["traceEvents"] if e.get("cat") == cat)


def count(doc: dict, cat: str) -> int:
    return sum(1 for e in doc["traceEvents"] if e.get("cat") == cat)


def write(tmp_path: pathlib.Path, doc: dict | str, name: str = "trace.json") -> pathlib.Path:
    d = tmp_path / "in"
    d.mkdir(exist_ok=True)
    p = d / name
    # ensure_ascii keeps a lone surrogate as the JSON escape "\ud800", as a profiler writing it would
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return p


def report(res) -> dict:
    return json.loads(res.stdout)


# ------------------------------------------------------------------------------------------------ Kineto JSON
@pytest.mark.parametrize("field,value", [
    ("args", "notadict"), ("args", [1, 2]), ("ts", float("inf")), ("ts", float("nan")), ("ts", "abc"),
    ("ts", [1]), ("ts", "1e999999"), ("ts", "1e300"), ("dur", float("-inf")), ("dur", "-" + "9" * 400),
    ("pid", [1]), ("tid", {"a": 1}), ("cat", ["kernel"]),
])
def test_kineto_event_with_a_wrong_field_is_skipped_with_a_note(tmp_path, alexnet, field, value):
    doc = json.loads(json.dumps(alexnet))
    first(doc, "kernel")[field] = value
    text = json.dumps(doc).replace('"1e999999"', "1e999999").replace('"1e300"', "1e300")    # as numbers
    res = check(write(tmp_path, text), "--format", "json", tmp_path=tmp_path, expect=(0,), sub=field == "args")
    got = report(res)
    assert got["profile"]["counts"]["kernels"] == count(alexnet, "kernel") - 1
    assert any("1 events skipped" in n and field in n for n in got["notes"]), got["notes"]


@pytest.mark.parametrize("where", ["kernel", "correlation", "header"])
def test_kineto_5000_digit_integer(tmp_path, alexnet, where):
    """Python refuses to parse integers of more than 4300 digits: one line, exit 2."""
    doc = json.loads(json.dumps(alexnet))
    text = {"kernel": lambda: (first(doc, "kernel").__setitem__("ts", "@"), json.dumps(doc))[1],
            "correlation": lambda: (first(doc, "kernel")["args"].__setitem__("correlation", "@"), json.dumps(doc))[1],
            "header": lambda: (doc.__setitem__("baseTimeNanoseconds", "@"), json.dumps(doc))[1]}[where]()
    res = check(write(tmp_path, text.replace('"@"', "9" * 5000)), tmp_path=tmp_path, expect=(2,),
                sub=where == "kernel")
    assert "number too long" in res.stderr


def test_kineto_int64_overflow_in_args_reads_as_absent(tmp_path, alexnet):
    doc = json.loads(json.dumps(alexnet))
    k = first(doc, "kernel")
    k["args"]["correlation"] = 2**70
    k["args"]["grid"] = [2**40, 2**40, 1]
    k["args"]["stream"] = 2**64
    res = check(write(tmp_path, doc), "--format", "json", tmp_path=tmp_path, expect=(0,), sub=False)
    assert report(res)["profile"]["counts"]["kernels"] == count(alexnet, "kernel")


def test_kineto_lone_surrogates_leave_the_reader_as_utf8(tmp_path, alexnet):
    """A lone "\\ud800" is valid JSON but no UTF-8: in range, kernel, thread and GPU names and the header it used to
    kill the JSON output (UnicodeEncodeError); every string comes out with U+FFFD in its place."""
    doc = json.loads(json.dumps(alexnet))
    for e in doc["traceEvents"]:
        if e.get("cat") == "user_annotation":
            e["name"] = "step \ud800"
        elif e.get("cat") == "kernel":
            e["name"] = "kernel \udfff" + e["name"]
        elif e.get("ph") == "M":
            e.setdefault("args", {})["name"] = "thread \ud800"
    for d in doc.get("deviceProperties", []):
        d["name"] = "GPU \ud800"
    doc["distributedInfo"] = {"\udc00": ["\ud800", 1]}
    doc["traceName"] = "\ud800"
    p = write(tmp_path, doc)
    assert "\\ud800" in p.read_text(encoding="utf-8")          # the escape is in the file
    res = check(p, "--format", "json", tmp_path=tmp_path, expect=(0,))
    got = report(res)
    assert got["requests"]["range"] == "step \ufffd"
    assert any(g == "GPU \ufffd" for g in got["profile"]["gpus"])
    res.stdout.encode("utf-8")                                  # would raise on a surrogate
    assert "\ud800" not in res.stdout and "\udfff" not in res.stdout
    check(p, tmp_path=tmp_path, expect=(0,), sub=False, env_extra={"PYTHONIOENCODING": "utf-8"})  # text output


def test_kineto_metadata_of_wrong_types(tmp_path, alexnet):
    doc = json.loads(json.dumps(alexnet))
    doc["traceEvents"][:0] = [{"ph": "M", "name": "thread_name", "pid": 1, "tid": 1, "args": "x"},
                              {"ph": "M", "name": "process_name", "pid": [1], "args": {"name": "p"}},
                              {"ph": "X", "cat": "Trace", "name": "w", "ts": "zz", "dur": 5}]
    doc["deviceProperties"] = [{"name": 5, "id": [0]}, "not a dict"]
    check(write(tmp_path, doc), tmp_path=tmp_path, expect=(0,), sub=False)


# ------------------------------------------------------------------------------------------------ low memory
def _limited(megabytes: int):
    def apply():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (megabytes << 20, megabytes << 20))
    return apply


@pytest.mark.parametrize("megabytes", [60, 80, 100, 150, 170, 185, 200, 215, 250, 300])
def test_low_memory_ends_in_a_report_or_one_line(tmp_path, megabytes):
    """Under `ulimit -v` the run gave MemoryError tracebacks (100-250 MB) and crashed in the SQLite driver on a reader
    thread (SIGSEGV at 150-190 MB on launch_bound); below 100 MB a C extension failed to load (ImportError) or
    OpenBLAS ended the process (exit 1): now exit 0, or exit 2 with "not enough memory"."""
    import subprocess
    import sys
    from tests.conftest import zoo
    from tests.robustness.test_bad_input import CLI, sha
    path = zoo("launch_bound")            # 245k API calls: read in rowid slices on the reader threads
    before = sha(path)
    res = subprocess.run([sys.executable, "-c", CLI, "analyze", str(path), "--format", "json"], capture_output=True,
                         text=True, timeout=300, preexec_fn=_limited(megabytes),
                         env={**__import__("os").environ, "NSYS_DOCTOR_CACHE": str(tmp_path / "cache")})
    assert res.returncode in (0, 2), (res.returncode, res.stderr[-3000:])      # a signal is negative
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    if res.returncode == 2:
        assert res.stderr.count("\n") == 1, res.stderr
        assert res.stderr.startswith(f"nsys-doctor: {path}: not enough memory to analyse it (needs about "), res.stderr
    else:
        assert json.loads(res.stdout)["requests"]["count"] > 0
    assert sha(path) == before


# ------------------------------------------------------------------------------------------------ SQLite exports
from tests.conftest import external  # noqa: E402
from tests.robustness.test_bad_input import SMALL, copy_of, mutate, run_inproc, sha  # noqa: E402


@pytest.fixture(scope="module")
def small() -> pathlib.Path:
    return external(SMALL)


@pytest.mark.parametrize("table,column", [
    ("CUPTI_ACTIVITY_KIND_KERNEL", "end"), ("CUPTI_ACTIVITY_KIND_KERNEL", "start"),
    ("CUPTI_ACTIVITY_KIND_KERNEL", "correlationId"), ("CUPTI_ACTIVITY_KIND_MEMCPY", "end"),
    ("CUPTI_ACTIVITY_KIND_MEMCPY", "correlationId"), ("CUPTI_ACTIVITY_KIND_RUNTIME", "correlationId"),
    ("CUPTI_ACTIVITY_KIND_RUNTIME", "end"), ("CUPTI_ACTIVITY_KIND_RUNTIME", "globalTid"),
    ("NVTX_EVENTS", "start"), ("NVTX_EVENTS", "end"),
])
def test_missing_required_column_is_refused(tmp_path, small, table, column):
    """Today a kernel table without `end` is analysed with -1 in its place: exit 0 and another headline."""
    p = mutate(copy_of(small, tmp_path), f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
    res = check(p, tmp_path=tmp_path, expect=(2,), sub=column == "end" and "KERNEL" in table)
    assert f"table {table} has no {column} column" in res.stderr


def test_missing_optional_column_is_listed(tmp_path, small):
    p = mutate(copy_of(small, tmp_path), 'ALTER TABLE CUPTI_ACTIVITY_KIND_KERNEL DROP COLUMN "registersPerThread"',
               'ALTER TABLE NVTX_EVENTS DROP COLUMN "domainId"')
    got = json.loads(check(p, "--format", "json", tmp_path=tmp_path, expect=(0,), sub=False).stdout)
    assert "registersPerThread" in got["profile"]["absent"]["kernels.registersPerThread"]
    assert "domainId" in got["profile"]["absent"]["ranges.domainId"]
    assert any("CUPTI_ACTIVITY_KIND_KERNEL.registersPerThread" in n and "NVTX_EVENTS.domainId" in n
               for n in got["notes"]), got["notes"]
    whole = json.loads(check(copy_of(small, tmp_path, "whole.sqlite"), "--format", "json", tmp_path=tmp_path,
                             expect=(0,), sub=False).stdout)
    assert not [k for k in whole["profile"]["absent"] if "." in k] and not whole["notes"]


def test_secondary_table_without_a_needed_column_is_left_out(tmp_path):
    """OS runtime calls without nameId cannot be named: that table is absent (and said), the rest is analysed."""
    p = mutate(copy_of(external("cuda-mlp-inference__nsys_report"), tmp_path), 'ALTER TABLE OSRT_API DROP COLUMN "nameId"')
    got = json.loads(check(p, "--format", "json", tmp_path=tmp_path, expect=(0,), sub=False).stdout)
    assert "OSRT_API has no nameId" in got["profile"]["absent"]["os_calls"]


def _wal_pair(src: pathlib.Path, tmp_path: pathlib.Path) -> tuple[pathlib.Path, int, int]:
    """A copy of a real export in WAL mode whose last commit (half the kernels deleted) is only in its -wal file:
    the files are copied while the writer still holds the database open, before any checkpoint."""
    work = tmp_path / "writer"
    work.mkdir()
    db_path = work / "p.sqlite"
    shutil.copyfile(src, db_path)
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    db.execute("PRAGMA wal_autocheckpoint=0")
    before = db.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0]
    db.execute("DELETE FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE rowid % 2 = 0")
    db.commit()
    after = db.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0]
    out = tmp_path / "in"
    out.mkdir()
    shutil.copyfile(db_path, out / "p.sqlite")
    shutil.copyfile(str(db_path) + "-wal", out / "p.sqlite-wal")
    db.close()
    return out / "p.sqlite", before, after


def test_wal_commits_are_read(tmp_path, small):
    p, before, after = _wal_pair(small, tmp_path)
    ro = sqlite3.connect(f"file:{p}?mode=ro&immutable=1", uri=True)      # the main file alone: the old rows
    assert ro.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0] == before != after
    ro.close()
    wal_sha = sha(pathlib.Path(str(p) + "-wal"))
    private = tmp_path / "tmp"
    private.mkdir()
    res = check(p, "--format", "json", tmp_path=tmp_path, expect=(0,), env_extra={"TMPDIR": str(private)})
    got = json.loads(res.stdout)
    assert got["profile"]["counts"]["kernels"] == after
    assert os.listdir(private) == []            # the private copy is gone
    assert any("-wal" in n for n in got["notes"]), got["notes"]
    assert sha(pathlib.Path(str(p) + "-wal")) == wal_sha
    assert sorted(os.listdir(p.parent)) == ["p.sqlite", "p.sqlite-wal"]


def test_wal_that_cannot_be_copied_is_said_to_be_ignored(tmp_path, small, monkeypatch):
    p, before, after = _wal_pair(small, tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no such folder"))
    res = run_inproc(p, "--format", "json", cache=tmp_path / "cache")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["profile"]["counts"]["kernels"] == before
    assert any("-wal" in n and "ignored" in n for n in got["notes"]), got["notes"]
