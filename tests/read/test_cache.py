"""Compressed inputs are expanded into a cache that never fills the disk and keeps only the recently used."""
from __future__ import annotations

import collections
import os
import shutil

import pytest

import nsys_doctor.read.cache as read_cache
from nsys_doctor.errors import BadInput
from nsys_doctor.read import open_trace

from ..conftest import DATA, PROFILES


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("NSYS_DOCTOR_CACHE", str(folder))
    return folder


def expanded(folder):
    return sorted(p for p in folder.iterdir() if p.suffix in (".unxz", ".ungz"))


def test_expansion_stops_before_the_disk_is_full(cache, monkeypatch):
    """The disk reports 1 GiB free: expanding would leave less than MIN_FREE_BYTES, so it stops, says where and what
    to do, and leaves no partial file."""
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(100 << 30, 99 << 30, 1 << 30))
    src = DATA / "demo.sqlite.xz" if (DATA / "demo.sqlite.xz").exists() else PROFILES / "healthy.sqlite.xz"
    with pytest.raises(BadInput) as err:
        open_trace(src)
    assert "GiB free" in err.value.problem and str(cache) in err.value.problem
    assert list(cache.iterdir()) == []


def test_least_recently_used_copies_are_evicted(cache, monkeypatch):
    srcs = [PROFILES / f"{n}.sqlite.xz" for n in ("fp32_gemm", "membw_bound", "memcpy_pageable")]
    if not all(s.exists() for s in srcs):
        pytest.skip("../shared/profiles is missing")
    sizes = []
    for src in srcs:                       # the expanded size of each, then an empty cache again
        before = set(expanded(cache)) if cache.exists() else set()
        open_trace(src).close()
        sizes.append((set(expanded(cache)) - before).pop().stat().st_size)
    shutil.rmtree(cache)
    # room for the first and the third (with their records): when the third comes, the second (least recently
    # used) goes
    monkeypatch.setattr(read_cache, "CACHE_MAX_BYTES", sizes[0] + sizes[2] + 4096)
    open_trace(srcs[0]).close()
    first = expanded(cache)[0]
    open_trace(srcs[1]).close()
    second = [p for p in expanded(cache) if p != first][0]
    os.utime(first, (1, 1))
    os.utime(second, (2, 2))
    open_trace(srcs[0]).close()            # used again: now the most recent
    open_trace(srcs[2]).close()
    left = expanded(cache)
    assert first in left and second not in left and len(left) == 2
