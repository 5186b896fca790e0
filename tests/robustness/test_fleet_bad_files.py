"""A folder of profiles with bad entries beside good ones, analysed on the local process pool (no Dask): every bad
entry is named (failed or skipped), the good ones are analysed, nothing is changed. Before, a FIFO or a dangling
symbolic link named like a profile was passed over without a word (the scan kept regular files only)."""
from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from nsys_doctor.fleet import analyze_many
from tests.conftest import DATA


def digest(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_bad_entries_named_good_ones_analysed(tmp_path):
    good = tmp_path / "good.sqlite.xz"
    shutil.copy(DATA / "ex_sync_before.sqlite.xz", good)
    corrupt = tmp_path / "corrupt.sqlite.xz"
    corrupt.write_bytes(good.read_bytes()[:5000])            # an interrupted copy
    os.mkfifo(tmp_path / "pipe.sqlite")
    (tmp_path / "gone.sqlite").symlink_to(tmp_path / "deleted.sqlite")
    (tmp_path / "loop1.sqlite").symlink_to(tmp_path / "loop2.sqlite")
    (tmp_path / "loop2.sqlite").symlink_to(tmp_path / "loop1.sqlite")
    (tmp_path / "empty.sqlite").write_bytes(b"")
    before = {p.name: digest(p) for p in (good, corrupt)}

    fleet = analyze_many([tmp_path], workers=2, use_dask=False)
    assert [os.path.basename(r.path) for r in fleet.results] == ["good.sqlite.xz"]
    assert len(fleet.results[0].latency_ms) == 60            # tests/data/pairs.json: 60 measured requests
    assert [os.path.basename(f.path) for f in fleet.failures] == ["corrupt.sqlite.xz"]
    skipped = {os.path.basename(s["path"]): s["why"] for s in fleet.skipped}
    assert set(skipped) == {"pipe.sqlite", "gone.sqlite", "loop1.sqlite", "loop2.sqlite", "empty.sqlite"}
    assert "not a regular file" in skipped["pipe.sqlite"] and "symbolic link" in skipped["gone.sqlite"]
    assert {p.name: digest(p) for p in (good, corrupt)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["good.sqlite.xz", "corrupt.sqlite.xz", "pipe.sqlite", "gone.sqlite", "loop1.sqlite", "loop2.sqlite",
         "empty.sqlite"])                                    # nothing left beside the inputs
