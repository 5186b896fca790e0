"""Bad input never crashes the CLI: exit 0 with a report, or exit 2 with one line naming the file; no traceback,
and the input is left exactly as it was (no -wal/-shm/-journal next to it).

Each case builds a damaged file in tmp_path (mostly a copy of a small real export, changed with sqlite3) and runs
`nsys-doctor analyze` on it. Every kind of damage runs at least once as a subprocess, so that what a user sees is
what is checked; the variations of a kind (more tables, more columns) call `cli.main` in-process, which is the same
code path without 0.5 s of interpreter start each, to keep the suite fast on 2 cores.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import lzma
import os
import pathlib
import random
import shutil
import sqlite3
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import external
from tests.robustness.mutations import loosen

SMALL = "dlprof-dummy-cnn__nsys_profile_w_relu"      # 650 KB, NVTX requests, kernels, copies, memsets, syncs
NO_NVTX = "cuda-mlp-inference__nsys_report"           # 430 KB, no NVTX: iterations are inferred
CLI = "import sys; from nsys_doctor.cli import main; sys.exit(main(sys.argv[1:]))"
SIDE_FILES = ("-wal", "-shm", "-journal")


def run_cli(path, *args, cache=None, timeout=120, env_extra=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if cache is not None:
        env["NSYS_DOCTOR_CACHE"] = str(cache)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", CLI, "analyze", str(path), *args], capture_output=True,
                          text=True, encoding="utf-8", errors="replace", timeout=timeout, env=env)


def run_inproc(path, *args, cache=None, env_extra=None) -> subprocess.CompletedProcess:
    """cli.main in this process; an exception other than NsysDoctorError escapes it and fails the test as it is."""
    from nsys_doctor.cli import main
    env = {"NSYS_DOCTOR_CACHE": str(cache)} if cache is not None else {}
    env.update(env_extra or {})
    saved = {k: os.environ.get(k) for k in env}
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["analyze", str(path), *args])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(["analyze", str(path)], rc, out.getvalue(), err.getvalue())


def sha(path: pathlib.Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def check(path: pathlib.Path, *args, tmp_path: pathlib.Path, expect=(0, 2), timeout=120, env_extra=None,
          sub=True):
    """Run the CLI on `path` (a subprocess, or in-process when not `sub`); assert the contract; return the result."""
    before = sha(path)
    siblings = set(os.listdir(path.parent)) if path.parent.is_dir() else set()
    if sub:
        res = run_cli(path, *args, cache=tmp_path / "cache", timeout=timeout, env_extra=env_extra)
    else:
        res = run_inproc(path, *args, cache=tmp_path / "cache", env_extra=env_extra)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode in expect, (res.returncode, res.stderr[-2000:])
    if res.returncode == 2:
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert lines[0].startswith("nsys-doctor: "), lines[0]
        assert str(path) in lines[0], lines[0]
    else:
        assert res.stdout.strip(), "exit 0 but no report"
    assert sha(path) == before, "the input file was changed"
    if path.parent.is_dir():
        new = set(os.listdir(path.parent)) - siblings
        assert not [n for n in new if n.endswith(SIDE_FILES)], new
        assert not new, f"files appeared next to the input: {new}"
    return res


@pytest.fixture(scope="module")
def small() -> pathlib.Path:
    return external(SMALL)


def copy_of(src: pathlib.Path, tmp_path: pathlib.Path, name: str = "profile.sqlite") -> pathlib.Path:
    dst = tmp_path / "in" / name
    dst.parent.mkdir(exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def mutate(path: pathlib.Path, *sql: str, loose: tuple[str, ...] = ()) -> pathlib.Path:
    db = sqlite3.connect(path)
    try:
        for t in loose:
            loosen(db, t)
        for stmt in sql:
            db.execute(stmt)
        db.commit()
    finally:
        db.close()
    for suffix in SIDE_FILES:                      # ours, from writing the copy: not what is under test
        pathlib.Path(str(path) + suffix).unlink(missing_ok=True)
    return path


def in_dir(tmp_path: pathlib.Path, name: str, data: bytes) -> pathlib.Path:
    d = tmp_path / "in"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_bytes(data)
    return p


# ------------------------------------------------------------------------------------------------ not a profile
def test_random_bytes(tmp_path):
    data = random.Random(6).randbytes(8192)
    res = check(in_dir(tmp_path, "random.sqlite", data), tmp_path=tmp_path, expect=(2,))
    assert "not a profile" in res.stderr


def test_empty_file(tmp_path):
    res = check(in_dir(tmp_path, "empty.sqlite", b""), tmp_path=tmp_path, expect=(2,))
    assert "empty" in res.stderr


def test_text_file(tmp_path):
    check(in_dir(tmp_path, "notes.txt", b"hello, this is not a profile\n" * 10), tmp_path=tmp_path, expect=(2,))


def test_zip(tmp_path, small):
    p = tmp_path / "in" / "profile.zip"
    p.parent.mkdir()
    with zipfile.ZipFile(p, "w") as z:
        z.write(small, "profile.sqlite")
    res = check(p, tmp_path=tmp_path, expect=(2,))
    assert "zip" in res.stderr


@pytest.mark.parametrize("text", [b"{}", b"[1, 2", b'{"traceEvents": 5}', b'{"traceEvents": [{"ph": "X"}]}'])
def test_json_that_is_not_a_trace(tmp_path, text):
    check(in_dir(tmp_path, "trace.json", text), tmp_path=tmp_path, expect=(2,), sub=text == b"{}")


def test_garbage_nsys_rep(tmp_path):
    """A .nsys-rep that is not one: nsys export fails or nsys is missing; either way one line, exit 2."""
    check(in_dir(tmp_path, "report.nsys-rep", b"\x00garbage" * 100), tmp_path=tmp_path, expect=(2,))


def test_directory(tmp_path):
    """A folder is fleet mode (docs/fleet.md): an empty one fails as a whole, naming it, without a traceback."""
    d = tmp_path / "a folder"
    d.mkdir()
    res = run_cli(d, cache=tmp_path / "cache")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert str(d) in res.stdout + res.stderr
    assert os.listdir(d) == []


def test_missing_path(tmp_path):
    check(tmp_path / "no-such-profile.sqlite", tmp_path=tmp_path, expect=(2,))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_does_not_hang(tmp_path):
    p = tmp_path / "in" / "pipe.sqlite"
    p.parent.mkdir()
    os.mkfifo(p)
    check(p, tmp_path=tmp_path, expect=(2,), timeout=30)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_unreadable_file(tmp_path, small):
    p = copy_of(small, tmp_path)
    p.chmod(0)
    try:
        res = run_cli(p, cache=tmp_path / "cache")
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert res.stderr.startswith(f"nsys-doctor: {p}"), res.stderr
    finally:
        p.chmod(0o644)


# ------------------------------------------------------------------------------------------------ damaged files
def test_truncated_export(tmp_path, small):
    data = small.read_bytes()
    check(in_dir(tmp_path, "half.sqlite", data[:len(data) // 2]), tmp_path=tmp_path, expect=(2,))


@pytest.mark.parametrize("where", [0.3, 0.5, 0.8])
def test_corrupt_middle_pages(tmp_path, small, where):
    data = bytearray(small.read_bytes())
    at = int(len(data) * where) // 4096 * 4096
    rnd = random.Random(int(where * 10))
    for i in range(at, at + 3 * 4096, 7):
        data[i] ^= rnd.randrange(1, 256)
    check(in_dir(tmp_path, "corrupt.sqlite", bytes(data)), tmp_path=tmp_path, sub=where == 0.5)


@pytest.mark.parametrize("fmt", ["xz", "gz"])
def test_truncated_compressed(tmp_path, small, fmt):
    packed = lzma.compress(small.read_bytes(), preset=0) if fmt == "xz" else gzip.compress(small.read_bytes(), 1)
    res = check(in_dir(tmp_path, f"profile.sqlite.{fmt}", packed[:len(packed) // 2]), tmp_path=tmp_path,
                expect=(2,))
    assert "truncated or corrupt" in res.stderr


@pytest.mark.parametrize("fmt", ["xz", "gz"])
def test_compressed_export_is_analysed(tmp_path, small, fmt):
    packed = lzma.compress(small.read_bytes(), preset=0) if fmt == "xz" else gzip.compress(small.read_bytes(), 1)
    check(in_dir(tmp_path, f"profile.sqlite.{fmt}", packed), tmp_path=tmp_path, expect=(0,), sub=False)


def test_sqlite_that_is_not_an_export(tmp_path):
    p = tmp_path / "in" / "mine.sqlite"
    p.parent.mkdir()
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE recipes (name TEXT, minutes INTEGER)")
    db.execute("INSERT INTO recipes VALUES ('soup', 30)")
    db.commit()
    db.close()
    res = check(p, tmp_path=tmp_path, expect=(2,))
    assert "not an Nsight Systems export" in res.stderr


def test_sqlite_without_tables(tmp_path):
    p = tmp_path / "in" / "blank.sqlite"
    p.parent.mkdir()
    db = sqlite3.connect(p)
    db.execute("PRAGMA user_version = 7")    # writes the header: a valid database with no tables
    db.commit()
    db.close()
    check(p, tmp_path=tmp_path, expect=(2,))


# ------------------------------------------------------------------------------------------------ schema changes
@pytest.mark.parametrize("table", ["CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "StringIds",
                                   "NVTX_EVENTS", "ThreadNames", "TARGET_INFO_GPU", "META_DATA_EXPORT",
                                   "ANALYSIS_DETAILS", "ENUM_NSYS_EVENT_TYPE"])
def test_dropped_table(tmp_path, small, table):
    check(mutate(copy_of(small, tmp_path), f'DROP TABLE "{table}"'), tmp_path=tmp_path,
          sub=table in ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "StringIds", "NVTX_EVENTS"))


def test_all_activity_tables_dropped(tmp_path, small):
    p = mutate(copy_of(small, tmp_path), *[f'DROP TABLE "{t}"' for t in (
        "CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "CUPTI_ACTIVITY_KIND_MEMCPY",
        "CUPTI_ACTIVITY_KIND_MEMSET", "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION", "NVTX_EVENTS")])
    check(p, tmp_path=tmp_path, expect=(2,))


@pytest.mark.parametrize("table,column", [
    ("CUPTI_ACTIVITY_KIND_KERNEL", "correlationId"), ("CUPTI_ACTIVITY_KIND_RUNTIME", "correlationId"),
    ("CUPTI_ACTIVITY_KIND_KERNEL", "start"), ("CUPTI_ACTIVITY_KIND_KERNEL", "end"),
    ("CUPTI_ACTIVITY_KIND_KERNEL", "shortName"), ("CUPTI_ACTIVITY_KIND_RUNTIME", "nameId"),
    ("CUPTI_ACTIVITY_KIND_RUNTIME", "globalTid"), ("NVTX_EVENTS", "text"), ("NVTX_EVENTS", "eventType"),
    ("StringIds", "value"), ("CUPTI_ACTIVITY_KIND_MEMCPY", "copyKind"), ("TARGET_INFO_GPU", "name"),
])
@pytest.mark.parametrize("how", ["rename", "drop"])
def test_renamed_or_missing_column(tmp_path, small, table, column, how):
    sql = (f'ALTER TABLE "{table}" RENAME COLUMN "{column}" TO "{column}_v2"' if how == "rename"
           else f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
    check(mutate(copy_of(small, tmp_path), sql), tmp_path=tmp_path,
          sub=(table, column, how) in (("CUPTI_ACTIVITY_KIND_KERNEL", "correlationId", "rename"),
                                       ("CUPTI_ACTIVITY_KIND_KERNEL", "start", "drop")))


def test_dropped_start_everywhere(tmp_path, small):
    tables = ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "NVTX_EVENTS",
              "CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_MEMSET", "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION")
    check(mutate(copy_of(small, tmp_path), *[f'ALTER TABLE "{t}" DROP COLUMN "start"' for t in tables]),
          tmp_path=tmp_path)


# ------------------------------------------------------------------------------------------------ bad values
@pytest.mark.parametrize("table,column", [
    ("CUPTI_ACTIVITY_KIND_KERNEL", "start"), ("CUPTI_ACTIVITY_KIND_KERNEL", "end"),
    ("CUPTI_ACTIVITY_KIND_KERNEL", "correlationId"), ("CUPTI_ACTIVITY_KIND_KERNEL", "shortName"),
    ("CUPTI_ACTIVITY_KIND_RUNTIME", "start"), ("CUPTI_ACTIVITY_KIND_RUNTIME", "end"),
    ("CUPTI_ACTIVITY_KIND_RUNTIME", "correlationId"), ("CUPTI_ACTIVITY_KIND_RUNTIME", "nameId"),
    ("NVTX_EVENTS", "start"), ("NVTX_EVENTS", "end"), ("NVTX_EVENTS", "text"), ("StringIds", "value"),
])
@pytest.mark.parametrize("share", ["all", "some"])
def test_nulls(tmp_path, small, table, column, share):
    where = "" if share == "all" else "WHERE rowid % 3 = 0"
    p = mutate(copy_of(small, tmp_path), f'UPDATE "{table}" SET "{column}" = NULL {where}', loose=(table,))
    check(p, tmp_path=tmp_path, sub=share == "all" and column in ("start", "correlationId", "nameId"))


@pytest.mark.parametrize("table", ["CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "NVTX_EVENTS",
                                   "CUPTI_ACTIVITY_KIND_MEMCPY"])
@pytest.mark.parametrize("duration", ["zero", "negative", "swapped"])
def test_bad_durations(tmp_path, small, table, duration):
    expr = {"zero": '"end" = "start"', "negative": '"end" = "start" - 1000',
            "swapped": '"start" = "end", "end" = "start"'}[duration]
    check(mutate(copy_of(small, tmp_path), f'UPDATE "{table}" SET {expr}'), tmp_path=tmp_path,
          sub=table == "CUPTI_ACTIVITY_KIND_KERNEL")


@pytest.mark.parametrize("value", ["9223372036854775807", "-9223372036854775808", "9e999", "-9e999", "1e300",
                                   "'12abc'", "X'00ff'"])
def test_absurd_times_and_ids(tmp_path, small, value):
    p = mutate(copy_of(small, tmp_path),
               f'UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET "end" = {value} WHERE rowid % 2 = 0',
               f'UPDATE CUPTI_ACTIVITY_KIND_RUNTIME SET nameId = {value} WHERE rowid % 5 = 0',
               f'UPDATE CUPTI_ACTIVITY_KIND_RUNTIME SET correlationId = {value} WHERE rowid % 7 = 0',
               f'UPDATE ANALYSIS_DETAILS SET stopTime = {value}',
               f'UPDATE TARGET_INFO_GPU SET name = {value}, memoryBandwidth = {value}')
    check(p, tmp_path=tmp_path, sub=value == "9e999")


def test_unbalanced_and_overlapping_nvtx(tmp_path, small):
    p = mutate(copy_of(small, tmp_path),
               'UPDATE NVTX_EVENTS SET "end" = NULL WHERE rowid % 4 = 0',            # pushed, never popped
               'UPDATE NVTX_EVENTS SET "end" = "end" + 50000000 WHERE rowid % 4 = 1',  # runs into the next ones
               'UPDATE NVTX_EVENTS SET "start" = "start" - 20000000 WHERE rowid % 4 = 2',
               'INSERT INTO NVTX_EVENTS SELECT * FROM NVTX_EVENTS WHERE rowid % 3 = 0',  # duplicates
               loose=("NVTX_EVENTS",))
    check(p, tmp_path=tmp_path)


def test_100k_distinct_range_names(tmp_path, small):
    p = copy_of(small, tmp_path)
    db = sqlite3.connect(p)
    tid, t0 = db.execute("SELECT globalTid, max(\"end\") FROM NVTX_EVENTS").fetchone()
    db.executemany('INSERT INTO NVTX_EVENTS (start, "end", eventType, text, globalTid) VALUES (?, ?, 59, ?, ?)',
                   ((t0 + 1000 * i, t0 + 1000 * i + 500, f"range {i}", tid) for i in range(100_000)))
    db.commit()
    db.close()
    check(p, tmp_path=tmp_path, timeout=60)


def test_markup_and_non_utf8_names_shown_literally(tmp_path, small):
    p = copy_of(small, tmp_path)
    db = sqlite3.connect(p)
    chosen = db.execute("SELECT text FROM NVTX_EVENTS GROUP BY text ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
    db.execute("UPDATE NVTX_EVENTS SET text = ? WHERE text = ?", ("[red]req[/red]<script>x</script>", chosen))
    db.execute("UPDATE StringIds SET value = CAST(X'6b65726e656cff5b626f6c645d' AS TEXT) "   # kernel\xff[bold]
               "WHERE id IN (SELECT shortName FROM CUPTI_ACTIVITY_KIND_KERNEL)")
    db.execute("UPDATE StringIds SET value = CAST(X'637564614c61756e63684b65726e656cfe' AS TEXT) "
               "WHERE id IN (SELECT nameId FROM CUPTI_ACTIVITY_KIND_RUNTIME)")
    db.commit()
    db.close()
    res = check(p, tmp_path=tmp_path, expect=(0,), env_extra={"PYTHONIOENCODING": "utf-8"})
    assert "[red]req[/red]<script>x</script>" in res.stdout
    res = check(p, "--format", "json", tmp_path=tmp_path, expect=(0,), sub=False)
    assert "[red]req[/red]<script>x</script>" in res.stdout


def test_non_ascii_names_on_an_ascii_terminal(tmp_path, small):
    p = mutate(copy_of(small, tmp_path),
               "UPDATE NVTX_EVENTS SET text = 'réq ☃' WHERE text = (SELECT text FROM NVTX_EVENTS GROUP BY text "
               "ORDER BY count(*) DESC LIMIT 1)")
    check(p, tmp_path=tmp_path, expect=(0,), env_extra={"PYTHONIOENCODING": "ascii"})


def test_range_naming_nothing(tmp_path, small):
    p = copy_of(small, tmp_path)
    res = check(p, "--range", "no such range [red]x", tmp_path=tmp_path, expect=(2,))
    assert "no NVTX range named" in res.stderr


def test_range_on_a_profile_without_nvtx(tmp_path):
    p = copy_of(external(NO_NVTX), tmp_path)
    check(p, "--range", "step", tmp_path=tmp_path, expect=(2,), sub=False)


def test_untouched_real_exports(tmp_path, small):
    """The plain export itself: analysed, read in place (no copy, no side files, unchanged)."""
    p = copy_of(small, tmp_path)
    check(p, tmp_path=tmp_path, expect=(0,))
    check(copy_of(external(NO_NVTX), tmp_path, "no_nvtx.sqlite"), tmp_path=tmp_path, expect=(0,), sub=False)
