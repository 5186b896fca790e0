"""`.nsys-rep` input: a report recorded here by the real nsys (Debian's, on this CPU machine) is exported once into
the cache, reused while the report is unchanged, and the report and its folder are left as they were. Skipped only
when no nsys is found."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from nsys_doctor.system import nsys as nsys_tool
from nsys_doctor.errors import NoData
from nsys_doctor.read import open_trace

NSYS = nsys_tool.find_nsys()
pytestmark = pytest.mark.skipif(NSYS is None, reason="no nsys found (scripts/install-nsys-debian.sh installs one)")

PROGRAM = "import time\nfor _ in range(3):\n    time.sleep(0.01)\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("rep")
    (d / "prog.py").write_text(PROGRAM)
    subprocess.run([NSYS, "profile", "--trace=osrt", "--sample=none", "--cpuctxsw=none", "-o", str(d / "r"),
                    "-f", "true", sys.executable, str(d / "prog.py")], cwd=d, capture_output=True, timeout=300)
    rep = d / "r.nsys-rep"
    if not rep.exists():
        pytest.skip("this nsys could not record a report here")
    return rep


def sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_report_is_exported_once_into_the_cache_and_left_untouched(report, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("NSYS_DOCTOR_CACHE", str(cache))
    before = sha(report)
    beside = sorted(p.name for p in report.parent.iterdir())
    trace = open_trace(report)              # exports into the cache, nothing beside the report
    exported = [p for p in cache.iterdir() if p.suffix == ".sqlite"]
    assert len(exported) == 1 and trace.table("os_calls")["start_ns"].size > 0   # the program's sleeps
    trace.close()
    inode = exported[0].stat().st_ino
    open_trace(report).close()              # reused, not exported again (a new export is a new file)
    assert exported[0].stat().st_ino == inode
    assert sha(report) == before and sorted(p.name for p in report.parent.iterdir()) == beside


def test_report_without_cuda_says_so(report):
    from nsys_doctor.analysis import analyze
    with pytest.raises(NoData, match="no CUDA activity"):
        analyze(report)


@pytest.mark.parametrize("packer, suffix", [("xz", ".xz"), ("gzip", ".gz")])
def test_compressed_report_is_expanded_and_exported(report, tmp_path, monkeypatch, packer, suffix):
    # the reader's names decide (nsys_rep.accepts): a .nsys-rep.xz was refused as "not a profile (neither SQLite
    # nor JSON)" by a list of names of read/__init__'s own that knew only .nsys-rep.gz
    import shutil
    monkeypatch.setenv("NSYS_DOCTOR_CACHE", str(tmp_path / "cache"))
    packed = tmp_path / "r.nsys-rep"
    shutil.copyfile(report, packed)
    subprocess.run([packer, str(packed)], check=True)
    packed = packed.with_name("r.nsys-rep" + suffix)
    plain = open_trace(report)
    trace = open_trace(packed)
    assert trace.table("os_calls")["start_ns"].size == plain.table("os_calls")["start_ns"].size > 0
    trace.close()
    plain.close()
