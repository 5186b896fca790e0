"""Fixtures: the real profiles in ../shared, decompressed once per session into a cache folder."""
from __future__ import annotations

import lzma
import os
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("NSYS_DOCTOR_SHARED", ROOT.parent / "shared"))
PROFILES = SHARED / "profiles"
EXTERNAL = SHARED / "external"
DATA = ROOT / "tests" / "data"
CACHE = pathlib.Path(os.environ.get("NSYS_DOCTOR_TEST_CACHE", "/tmp/nsys-doctor-test-cache"))


def expand(src: pathlib.Path) -> pathlib.Path:
    """Decompress an .xz export once (shared by all tests of all runs); plain files are used as they are."""
    if src.suffix != ".xz":
        return src
    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / src.name[:-3]
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        tmp = out.with_suffix(out.suffix + f".part{os.getpid()}")
        with lzma.open(src) as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 22)
        os.replace(tmp, out)
    return out


def zoo(name: str) -> pathlib.Path:
    src = PROFILES / f"{name}.sqlite.xz"
    if not src.exists():
        pytest.skip(f"{src} not found (../shared is missing)")
    return expand(src)


def external(name: str) -> pathlib.Path:
    src = EXTERNAL / "nsys" / f"{name}.sqlite.xz"
    if not src.exists():
        pytest.skip(f"{src} not found (../shared is missing)")
    return expand(src)


_REPORTS: dict = {}


def zoo_report(name: str):
    """analyze() of a zoo profile, computed once per test session."""
    from nsys_doctor.analysis import analyze
    if name not in _REPORTS:
        _REPORTS[name] = analyze(zoo(name))
    return _REPORTS[name]


_TRACES: dict = {}
_ANALYSES: dict = {}


def opened(path):
    """open_trace(path), read once per test session and never closed: a Kineto trace takes seconds to parse, and
    several test files read the same ones. Callers must not change its tables."""
    from nsys_doctor.read import open_trace
    key = str(path)
    if key not in _TRACES:
        _TRACES[key] = open_trace(path)
    return _TRACES[key]


def analysed(path):
    """analyze(path) from the session's opened(path): one parse for every test that reads or analyses the file."""
    from nsys_doctor.analysis import analyze_trace
    key = str(path)
    if key not in _ANALYSES:
        _ANALYSES[key] = analyze_trace(opened(path))
    return _ANALYSES[key]
