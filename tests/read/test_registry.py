"""A new input format is one module in read/ plus its name in read.READERS (issue 13 item 5): open_trace, the
folder scan and the help text ask the readers. Folder mode picks files by content (issue 17)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types

import pytest

from nsys_doctor import read
from nsys_doctor.cli import build_parser
from nsys_doctor.fleet import expand_paths
from nsys_doctor.model.trace import Trace

from ..conftest import PROFILES, external

MAGIC = b"TOYPROF1"


@pytest.fixture
def toy(monkeypatch):
    """A throwaway reader (synthetic on purpose: no such format exists), registered as a new module would be."""
    mod = types.ModuleType("toy_reader")
    mod.SUFFIXES = (".toy",)
    mod.DESCRIPTION = "a toy profile"
    mod.accepts = lambda head, path: head.startswith(MAGIC)
    mod.calls = []

    def read_toy(path, display_path=None):
        mod.calls.append((path, display_path))
        return Trace(path=display_path or path, source="toy")
    mod.read = read_toy
    monkeypatch.setattr(read, "READERS", read.READERS + [mod])
    return mod


def test_a_new_reader_is_picked_up_everywhere(toy, tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    (d / "a.toy").write_bytes(MAGIC + b"\0" * 100)
    (d / "unnamed").write_bytes(MAGIC + b"\0" * 100)       # no suffix: found by content
    (d / "b.toy").write_bytes(b"something else")           # named like one, is not: skipped, said
    (d / "notes.txt").write_text("not a profile")          # named like nothing: passed over
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    trace = read.open_trace(d / "a.toy")
    assert trace.source == "toy" and toy.calls == [(str(d / "a.toy"), str(d / "a.toy"))]
    found, failures, skipped = expand_paths([d])
    assert found == [str(d / "a.toy"), str(d / "unnamed")] and failures == []
    assert [s["path"] for s in skipped] == [str(d / "b.toy")] and "a toy profile" in skipped[0]["why"]
    assert ".toy" in read.suffixes() and ".toy.gz" in read.suffixes()
    help_text = build_parser("analyze")._subparsers._group_actions[0].choices["analyze"].format_help()
    assert "a toy profile" in " ".join(help_text.split())
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_without_the_reader_the_format_is_refused(tmp_path):
    p = tmp_path / "a.toy"
    p.write_bytes(MAGIC + b"\0" * 100)
    with pytest.raises(read.BadInput) as err:
        read.open_trace(p)
    assert "not a profile" in err.value.problem


def test_every_reader_declares_the_interface():
    for mod in read.READERS:
        assert mod.SUFFIXES and all(s == s.lower() and s.startswith(".") for s in mod.SUFFIXES), mod
        assert callable(mod.accepts) and callable(mod.read) and mod.DESCRIPTION, mod


def test_readers_accept_real_files_by_content(tmp_path):
    """Each shared profile is accepted by the reader of its format whatever its name; labels.json by none."""
    sqlite_xz = PROFILES / "healthy.sqlite.xz"

    if not sqlite_xz.exists():
        pytest.skip("../shared is missing")
    renamed = tmp_path / "run-17"
    shutil.copyfile(sqlite_xz, renamed)
    assert read.identify(renamed)[0] is read.nsys_sqlite
    for trace in sorted((PROFILES.parent / "external" / "kineto").iterdir()):
        assert read.identify(trace)[0] is read.kineto_json, trace
    reader, why = read.identify(PROFILES / "labels.json")
    assert reader is None and "traceEvents" in why


def test_folder_with_labels_json_is_analysed(tmp_path):
    """`analyze FOLDER` with a labels.json beside the profiles: exit 0 (it was exit 2), labels.json said skipped."""
    pytest.importorskip("distributed")
    d = tmp_path / "runs"
    d.mkdir()
    small = external("dlprof-dummy-cnn__nsys_profile_w_relu")
    shutil.copyfile(small, d / "a.sqlite")
    shutil.copyfile(PROFILES / "labels.json", d / "labels.json")
    res = subprocess.run([sys.executable, "-c", "import sys; from nsys_doctor.cli import main; sys.exit(main())",
                          "analyze", str(d), "--format", "json", "--workers", "1"], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "NSYS_DOCTOR_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr[-2000:]
    fleet = json.loads(res.stdout)
    assert fleet["analysed"] == 1 and fleet["failed"] == 0
    assert [s["path"] for s in fleet["skipped"]] == [str(d / "labels.json")]
    assert sorted(os.listdir(d)) == ["a.sqlite", "labels.json"]


def test_unreadable_compressed_file_in_a_folder_fails_on_its_own(tmp_path):
    """A file named like a profile whose compressed content is damaged from its start: a failure naming it (the
    scan cannot tell what it is), the rest of the folder still analysed."""
    d = tmp_path / "runs"
    d.mkdir()
    (d / "broken.sqlite.xz").write_bytes(b"\xfd7zXZ\x00" + b"\x00garbage" * 50)
    shutil.copyfile(external("dlprof-dummy-cnn__nsys_profile_w_relu"), d / "a.sqlite")
    found, failures, skipped = expand_paths([d])
    assert found == [str(d / "a.sqlite")] and skipped == []
    assert [f.path for f in failures] == [str(d / "broken.sqlite.xz")] and "cannot be read" in failures[0].problem
