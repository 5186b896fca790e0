"""`nsys-doctor profile` end to end with a real nsys on a CPU-only machine (scripts/install-nsys-debian.sh).

The profiled program is tests/cli/cpu_requests.py: 20 requests marked with nsys_doctor.instrument.request(), each
~5 ms of busy CPU work split into "preprocess" and "infer" phases, on the main thread. Without a GPU there is no
CUDA work, so the facts are checked on the exported SQLite with our own SQL, independent of the analysis.
Skipped only when no nsys can be found at all.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from importlib.metadata import version as package_version
from pathlib import Path

import pytest

from nsys_doctor.system import nsys as nsys_tool
from nsys_doctor.cli import main
from nsys_doctor.errors import BadInput

HERE = Path(__file__).parent
PROGRAM = HERE / "cpu_requests.py"
REQUESTS = 20
CLI = "import sys; from nsys_doctor.cli import main; sys.exit(main())"   # the CLI as a subprocess
CPU_TRACE = "--trace=nvtx,osrt"     # what a machine without a GPU can record
NSYS = nsys_tool.find_nsys()
NSYS_VERSION = nsys_tool.version_tuple(nsys_tool.nsys_version(NSYS)) if NSYS else ()
# nsys 2023.4 (Debian) records no ranges from nvtx >= 0.2.12 (seen: 0.2.12-0.2.17 none, 0.2.10/0.2.11 all);
# the install script puts nvtx 0.2.11 here for such setups.
NVTX_COMPAT = Path(os.environ.get("NSYS_DOCTOR_NVTX_COMPAT", "/opt/nsys-doctor/nvtx-compat"))

pytestmark = pytest.mark.skipif(
    NSYS is None, reason="no nsys on PATH, $NSYS or install folders (scripts/install-nsys-debian.sh installs one)")


def program_env() -> dict[str, str]:
    env = dict(os.environ)
    nvtx_version = tuple(int(n) for n in package_version("nvtx").split(".")[:3])
    if NSYS_VERSION and NSYS_VERSION < (2024,) and nvtx_version >= (0, 2, 12):
        if not (NVTX_COMPAT / "nvtx").is_dir():
            pytest.fail(f"nsys {NSYS_VERSION} records no ranges from nvtx {nvtx_version}: "
                        f"run scripts/install-nsys-debian.sh (installs nvtx 0.2.11 into {NVTX_COMPAT})")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NVTX_COMPAT), env.get("PYTHONPATH")]))
    return env


def profile(tmp_path: Path, *options: str, program: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", CLI, "profile", *options, "--",
           *(program or [sys.executable, str(PROGRAM), str(REQUESTS)])]
    return subprocess.run(cmd, cwd=tmp_path, env=program_env(), capture_output=True, text=True, timeout=300)


def ranges(db_path: Path) -> dict[str, tuple[int, int]]:
    """NVTX push/pop ranges by name: (count, distinct threads). eventType 59 = NvtxPushPopRange."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        rows = db.execute("""
            SELECT COALESCE(e.text, s.value) AS name, COUNT(*), COUNT(DISTINCT e.globalTid)
            FROM NVTX_EVENTS e LEFT JOIN StringIds s ON s.id = e.textId
            WHERE e.eventType = (SELECT id FROM ENUM_NSYS_EVENT_TYPE WHERE name = 'NvtxPushPopRange')
            GROUP BY name""").fetchall()
    return {name: (count, threads) for name, count, threads in rows}


def phases_inside_requests(db_path: Path) -> int:
    """Phase ranges lying within a request range on the same thread."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        return db.execute("""
            WITH r AS (SELECT e.start, e.end, e.globalTid, COALESCE(e.text, s.value) AS name
                       FROM NVTX_EVENTS e LEFT JOIN StringIds s ON s.id = e.textId WHERE e.eventType = 59)
            SELECT COUNT(*) FROM r AS p JOIN r AS q ON p.globalTid = q.globalTid
            WHERE q.name = 'Inference' AND p.name IN ('preprocess', 'infer')
              AND p.start >= q.start AND p.end <= q.end""").fetchone()[0]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One profile of cpu_requests.py with analysis (the slow part, ~5 s), shared by the tests below."""
    tmp = tmp_path_factory.mktemp("e2e")
    result = profile(tmp, CPU_TRACE, "-o", "run")
    return tmp, result


def test_requests_are_in_the_export(recorded):
    tmp, result = recorded
    assert (tmp / "run.nsys-rep").is_file() and (tmp / "run.sqlite").is_file(), result.stderr[-2000:]
    assert not list(tmp.glob("*.qdstrm")), "the .qdstrm leftover must be deleted"
    found = ranges(tmp / "run.sqlite")
    assert found.get("Inference") == (REQUESTS, 1)          # 20 requests, all on the main thread
    assert found.get("preprocess") == (REQUESTS, 1) and found.get("infer") == (REQUESTS, 1)
    assert phases_inside_requests(tmp / "run.sqlite") == 2 * REQUESTS
    assert f"cpu_requests: {REQUESTS} requests done" in result.stdout   # the program's own output passes through


def test_analysis_result_or_no_cuda_message(recorded):
    """With no GPU work the analysis either reports the requests or stops with one NoData line, exit 2."""
    _, result = recorded
    if result.returncode == 0:
        assert str(REQUESTS) in result.stdout
    else:
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 2, result.stderr[-2000:]
        assert last.startswith("nsys-doctor: ") and "cuda" in last.lower(), last
        assert "Traceback" not in result.stderr


def test_never_overwrites_without_force(recorded):
    tmp, _ = recorded
    before = (tmp / "run.sqlite").stat().st_mtime_ns
    result = profile(tmp, CPU_TRACE, "-o", "run", "--no-analyze")
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (tmp / "run.sqlite").stat().st_mtime_ns == before


def test_force_overwrites_and_program_exit_code_is_kept(tmp_path):
    (tmp_path / "fails.sqlite").write_text("old")
    result = profile(tmp_path, CPU_TRACE, "-o", "fails", "--force", "--no-analyze",
                     program=[sys.executable, "-c", "import sys; sys.exit(3)"])
    assert result.returncode == 3, result.stderr[-2000:]
    assert (tmp_path / "fails.sqlite").read_bytes()[:16] == b"SQLite format 3\x00"


def test_default_name_is_program_and_time(tmp_path):
    result = profile(tmp_path, CPU_TRACE, "--no-analyze", program=[sys.executable, str(PROGRAM), "2", "1"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert [p.name.split("-")[1] for p in tmp_path.glob("nsd-*.sqlite")] == ["cpu_requests"]


def test_missing_nsys_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setattr(nsys_tool, "INSTALL_GLOBS", ())
    monkeypatch.delenv("NSYS", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert nsys_tool.find_nsys() is None
    assert main(["profile", "--", "true"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nsys" in err and "install" in err


def test_export_failure_is_one_line(tmp_path):
    bad = tmp_path / "bad.nsys-rep"
    bad.write_bytes(b"not a report")
    with pytest.raises(BadInput) as err:
        nsys_tool.export_sqlite(NSYS, bad, tmp_path / "bad.sqlite")
    assert "\n" not in err.value.problem and not (tmp_path / "bad.sqlite").exists()
