"""Property tests: damage a real export in random ways; `analyze` either returns a sane Report or raises
NsysDoctorError, never anything else.

A sane Report: every number finite; latencies, impacts and breakdowns non-negative; percentiles ordered
(min <= p50 <= p90 <= p99 <= max); impact_pct within [0, 100]; and it renders (terminal text and JSON).
The examples are derandomized so CI sees the same ones each run; to search wider locally:
    NSYS_DOCTOR_PROPERTY_SEARCH=1 NSYS_DOCTOR_PROPERTY_EXAMPLES=500 pytest tests/robustness/test_properties.py
"""
from __future__ import annotations

import io
import json
import math
import os
import pathlib
import random
import shutil
import sqlite3
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsys_doctor.analysis import analyze
from nsys_doctor.errors import NsysDoctorError
from nsys_doctor.render import json_report, terminal
from tests.conftest import external
from tests.robustness import mutations

MAX_EXAMPLES = int(os.environ.get("NSYS_DOCTOR_PROPERTY_EXAMPLES", "40"))
PROFILES = ("dlprof-dummy-cnn__nsys_profile_w_relu", "cuda-mlp-inference__nsys_report")
SEARCH = bool(os.environ.get("NSYS_DOCTOR_PROPERTY_SEARCH"))    # 1: fresh random examples each run
SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=not SEARCH, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# the tables the reader reads, and for each the columns worth damaging (others are picked too, now and then)
COLUMNS = {
    "CUPTI_ACTIVITY_KIND_KERNEL": ("start", "end", "correlationId", "globalPid", "shortName", "demangledName",
                                   "deviceId", "streamId", "gridX", "registersPerThread"),
    "CUPTI_ACTIVITY_KIND_MEMCPY": ("start", "end", "correlationId", "bytes", "copyKind", "srcKind", "dstKind"),
    "CUPTI_ACTIVITY_KIND_MEMSET": ("start", "end", "correlationId", "bytes"),
    "CUPTI_ACTIVITY_KIND_RUNTIME": ("start", "end", "correlationId", "nameId", "globalTid", "eventClass"),
    "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION": ("start", "end", "correlationId", "syncType", "streamId"),
    "NVTX_EVENTS": ("start", "end", "text", "textId", "globalTid", "eventType", "domainId"),
    "StringIds": ("id", "value"),
    "ThreadNames": ("globalTid", "nameId"),
    "OSRT_API": ("start", "end", "nameId", "globalTid", "callchainId"),
    "OSRT_CALLCHAINS": ("id", "symbol", "module", "stackDepth"),
    "TARGET_INFO_GPU": ("name", "memoryBandwidth", "smCount", "id"),
    "ANALYSIS_DETAILS": ("startTime", "stopTime"),
    "META_DATA_EXPORT": ("name", "value"),
    "ENUM_CUDA_MEMCPY_OPER": ("id", "label"),
}

mutation = st.tuples(
    st.sampled_from(sorted(COLUMNS)),
    st.integers(0, 99),                                    # column: one of the listed, or any (>= 90)
    st.sampled_from(mutations.KINDS),
    st.sampled_from((0.0, 0.1, 0.5, 1.0)),                 # share of rows: one, some, half, all
    st.integers(0, 2**16),                                 # seed for the values
)


@pytest.fixture(scope="module")
def sources() -> dict[str, pathlib.Path]:
    return {name: external(name) for name in PROFILES}


def damaged_copy(src: pathlib.Path, muts, folder: str) -> tuple[pathlib.Path, list[str]]:
    dst = pathlib.Path(folder) / "profile.sqlite"
    shutil.copyfile(src, dst)
    db = sqlite3.connect(dst)
    done = []
    try:
        have = mutations.tables_of(db)
        for table, col_pick, kind, share, seed in muts:
            cols = have.get(table, [])
            listed = [c for c in COLUMNS[table] if c in cols]
            column = (listed[col_pick % len(listed)] if listed and col_pick < 90
                      else cols[col_pick % len(cols)] if cols else None)
            done.append(mutations.apply(db, kind, table, column, share, random.Random(seed)))
            have = mutations.tables_of(db)
        db.commit()
    finally:
        db.close()
    for suffix in ("-wal", "-shm", "-journal"):
        pathlib.Path(str(dst) + suffix).unlink(missing_ok=True)
    return dst, done


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_stats(stats: dict, what: str) -> None:
    if not stats:
        return
    for k, v in stats.items():
        assert finite(v) and v >= 0, f"{what}.{k} = {v}"
    assert stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"], (what, stats)


def check_report(report) -> None:
    r = report.requests
    check_stats(r["latency_ms"], "latency_ms")
    check_stats(r["cpu_ms"], "cpu_ms")
    for k in ("gpu_busy_pct", "own_gpu_busy_pct", "launches_per_request", "kernels_per_request",
              "copies_per_request"):
        assert finite(r[k]) and r[k] >= 0, (k, r[k])
    for k, v in r["breakdown_ms"].items():
        assert finite(v) and v >= 0, ("breakdown_ms", k, v)
    for col in ("latency_ms", "cpu_ms", "compute_ms", "copy_ms", "other_gpu_ms", "idle_ms"):
        for v in report.per_request.get(col, []):
            assert finite(v) and v >= 0, (col, v)
    for f in report.findings:
        assert finite(f.impact_ms) and f.impact_ms >= 0, (f.category, f.impact_ms)
        assert finite(f.impact_pct) and 0 <= f.impact_pct <= 100, (f.category, f.impact_pct)
    terminal.render(report, file=io.StringIO())
    json.loads(json_report.render(report))


@SETTINGS
@given(profile=st.sampled_from(PROFILES), muts=st.lists(mutation, min_size=1, max_size=3))
def test_damaged_export_gives_report_or_nsys_doctor_error(sources, profile, muts):
    with tempfile.TemporaryDirectory(prefix="nsd-prop-") as folder:
        path, done = damaged_copy(sources[profile], muts, folder)
        before = path.read_bytes()
        try:
            report = analyze(path)
        except NsysDoctorError as err:
            assert err.path and str(path) in str(err.path), err
            return
        finally:
            assert path.read_bytes() == before, "the input was changed"
            assert sorted(os.listdir(folder)) == ["profile.sqlite"], os.listdir(folder)
        check_report(report)


@SETTINGS
@given(profile=st.sampled_from(PROFILES), data=st.data())
def test_value_damage_to_times(sources, profile, data):
    """Focused: start/end of the tables requests are measured from, damaged in every way at once."""
    tables = ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "NVTX_EVENTS",
              "CUPTI_ACTIVITY_KIND_MEMCPY")
    muts = data.draw(st.lists(st.tuples(st.sampled_from(tables), st.integers(0, 1),
                                        st.sampled_from(mutations.VALUE_KINDS + mutations.ROW_KINDS),
                                        st.sampled_from((0.0, 0.1, 0.5)), st.integers(0, 2**16)),
                              min_size=1, max_size=4))
    with tempfile.TemporaryDirectory(prefix="nsd-prop-") as folder:
        path, done = damaged_copy(sources[profile], muts, folder)
        try:
            report = analyze(path)
        except NsysDoctorError:
            return
        check_report(report)
