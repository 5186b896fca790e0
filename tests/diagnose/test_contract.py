"""Every diagnosis follows one contract (diagnose/common.py): CATEGORIES, NEEDS, measure -> change / finding, and
imports nothing but model/, report and diagnose/common.py. Checked on the modules' source and on real profiles."""
from __future__ import annotations

import ast
import re
import dataclasses
import pathlib
import types

import numpy as np
import pytest

from nsys_doctor import diagnose, report
from nsys_doctor.analysis import analyze, read_ahead
from nsys_doctor.diagnose import common
from nsys_doctor.model.changes import (CHANGE_KINDS, CopiesAtRate, GraphLaunches, MoveOutOfRequests,
                                       RemoveCpuTime, RemoveHostWaits, ScaleGpuWork, ShortenGpuWork)
from nsys_doctor.model.requests import find_requests
from nsys_doctor.model.trace import table_len
from nsys_doctor.read import open_trace

from ..conftest import DATA, ROOT, expand, zoo

DIAGNOSE_DIR = ROOT / "src" / "nsys_doctor" / "diagnose"
HELPERS = {"__init__", "common"}
DIAGNOSIS_FILES = sorted(p.stem for p in DIAGNOSE_DIR.glob("*.py") if p.stem not in HELPERS)


def _imports(path: pathlib.Path) -> list[str]:
    """Absolute names of the nsys_doctor modules a file in diagnose/ imports (relative imports resolved)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:      # from . / .. inside nsys_doctor.diagnose
                parts = ["nsys_doctor", "diagnose"][:3 - node.level]
                base = ".".join(parts + ([node.module] if node.module else []))
            out += [base] if node.module else [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return [n for n in out if n.startswith("nsys_doctor")]


@pytest.mark.parametrize("name", DIAGNOSIS_FILES)
def test_a_diagnosis_imports_only_model_report_and_common(name):
    imported = _imports(DIAGNOSE_DIR / f"{name}.py")
    allowed = ("nsys_doctor.model", "nsys_doctor.report", "nsys_doctor.diagnose.common")
    bad = [n for n in imported if not n.startswith(allowed)]
    assert not bad, f"diagnose/{name}.py imports {bad}: share through model/ or diagnose/common.py instead"


def test_the_import_check_sees_a_diagnosis_importing_another(tmp_path):
    # the check itself can fail: a module that imports a sibling diagnosis (relative and absolute) is caught
    f = tmp_path / "x.py"
    f.write_text("from .cuda_sync import measure\nfrom . import precision, common\nfrom ..model import activity\n"
                 "import nsys_doctor.diagnose.communication\n")
    assert _imports(f) == ["nsys_doctor.diagnose.cuda_sync", "nsys_doctor.diagnose.precision",
                           "nsys_doctor.diagnose.common", "nsys_doctor.model", "nsys_doctor.diagnose.communication"]


def test_every_diagnosis_file_is_registered_and_follows_the_contract():
    assert [diagnose.name(m) for m in diagnose.DIAGNOSES] == [m.__name__.rsplit(".", 1)[-1]
                                                              for m in diagnose.DIAGNOSES]
    assert sorted(diagnose.name(m) for m in diagnose.DIAGNOSES) == DIAGNOSIS_FILES
    for m in diagnose.DIAGNOSES:
        for attr in ("CATEGORIES", "NEEDS", "measure", "change", "finding", "diagnose"):
            assert hasattr(m, attr), f"{m.__name__} has no {attr}"
        assert isinstance(m.CATEGORIES, tuple) and m.CATEGORIES
        assert dataclasses.is_dataclass(m.Measurement)


def test_the_categories_of_the_diagnoses_are_report_categories():
    emitted = [c for m in diagnose.DIAGNOSES for c in m.CATEGORIES]
    assert len(emitted) == len(set(emitted)), "two diagnoses claim one category"
    assert set(emitted) == set(report.CATEGORIES)


def test_json_schema_lists_exactly_the_categories():
    doc = (ROOT / "docs" / "json-schema.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| `findings[].category`"))
    listed = re.findall(r"`([a-z_]+)`", row.split("|")[3])
    assert sorted(listed) == sorted(report.CATEGORIES)


# One profile per category (labels.json's primary bottleneck, or a known finding of it in tests/data/dist)
PROFILES = ["no_nvtx", "cpu_preproc", "cpu_postproc", "fp32_gemm", "membw_bound", "thread_contention",
            "dist/model_server", "dist/tp_unbalanced_multi", "data/ex_alloc_before", "data/ex_polling_before",
            "data/ex_reload_before"]


def _path(name):
    if name.startswith("dist/"):
        src = DATA / "dist" / f"{name[5:]}.sqlite.xz"
        return expand(src)
    if name.startswith("data/"):
        return expand(DATA / f"{name[5:]}.sqlite.xz")
    return zoo(name)


def _check_change(trace, ch):
    """The rows a change names exist, and are what the change says they are (names and kinds from the trace)."""
    assert isinstance(ch, CHANGE_KINDS)
    if isinstance(ch, (RemoveHostWaits, GraphLaunches)):
        api = trace.table("api_calls")
        assert len(ch.api_rows) and ch.api_rows.max() < table_len(api)
        names = {trace.name(i) for i in np.unique(api["name_id"][ch.api_rows])}
        # host waits: syncs, blocking copies, frees that synchronise, completion queries of a polling loop
        word = ("Synchronize", "Memcpy", "Free", "Query") if isinstance(ch, RemoveHostWaits) else ("Launch",)
        assert all(any(w in n for w in word) for n in names), names
    elif isinstance(ch, (ScaleGpuWork, ShortenGpuWork, MoveOutOfRequests)):
        assert len(ch.rows) and ch.rows.max() < table_len(trace.table(ch.table))
        if isinstance(ch, ScaleGpuWork):
            assert np.all((np.asarray(ch.factor) > 0) & (np.asarray(ch.factor) < 1))
        if isinstance(ch, ShortenGpuWork):
            dur = trace.table(ch.table)["end_ns"][ch.rows] - trace.table(ch.table)["start_ns"][ch.rows]
            assert np.all((ch.by_ns >= 0) & (ch.by_ns <= dur))
    elif isinstance(ch, CopiesAtRate):
        c = trace.table("copies")
        labels = {trace.enum("CUDA_MEMCPY_OPER", int(k), "") for k in np.unique(c["kind"][ch.rows])}
        assert labels <= {"Host-to-Device", "Device-to-Host"}, labels
        assert np.all(np.asarray(ch.gbps) > 0)
    elif isinstance(ch, RemoveCpuTime):
        assert len(ch.tid) == len(ch.start_ns) == len(ch.end_ns) and np.all(ch.end_ns >= ch.start_ns)


def test_measure_change_and_finding_on_real_profiles():
    """Each profile's diagnoses, run through their contract one by one, give the findings of diagnose_all; every
    category is measured somewhere, each with a change that names real rows of the trace."""
    seen: set[str] = set()
    for name in PROFILES:
        trace = open_trace(_path(name))
        try:
            ctx = diagnose.Context(trace, find_requests(trace))
            ctx.cache["findings"] = []
            for mod in diagnose.DIAGNOSES:
                m = mod.measure(ctx)
                if m is None:
                    continue
                found = mod.finding(ctx, m)
                assert found and {f.category for f in found} <= set(mod.CATEGORIES)
                # no words in a measurement: its text fields, if any, are identifiers (pool ids), not sentences
                for f in dataclasses.fields(m):
                    v = getattr(m, f.name)
                    assert not isinstance(v, str) or v.isidentifier(), (mod.__name__, f.name, v)
                for ch in mod.change(m):
                    _check_change(trace, ch)
                # other forms of the fix (optional): named, worded, and in the same vocabulary
                for form, words, changes in getattr(mod, "alternatives", lambda m: [])(m):
                    assert form.isidentifier() and words and changes, (mod.__name__, form)
                    for ch in changes:
                        _check_change(trace, ch)
                seen |= {f.category for f in found if f.impact_ms > 0}
                ctx.cache["findings"].extend(found)
            threaded = [dataclasses.asdict(f) for f in diagnose.diagnose_all(diagnose.Context(trace, ctx.requests))]
            one_by_one = sorted(ctx.cache["findings"], key=lambda f: -f.impact_ms)
            assert threaded == [dataclasses.asdict(f) for f in one_by_one], name
        finally:
            trace.close()
    assert seen == set(report.CATEGORIES)


def test_a_new_diagnosis_is_one_module_and_one_registry_line(monkeypatch):
    """A throwaway diagnosis (a module object made here) registered with one line is run by analyze, its
    finding is in the report and its NEEDS are read ahead: no other edit."""
    mod = types.ModuleType("nsys_doctor.diagnose.throwaway")
    mod.CATEGORIES = ("throwaway",)
    mod.NEEDS = ("processes",)     # a table no other diagnosis reads ahead

    @dataclasses.dataclass
    class Measurement:
        requests: int

    def measure(ctx):
        return Measurement(requests=len(ctx.measured))

    def finding(ctx, m):
        return [common.make_finding(ctx, "throwaway", f"{m.requests} requests seen", 0.0, "a test",
                                    report.Evidence(numbers={"requests": m.requests}), "none", "a test")]

    mod.Measurement, mod.measure, mod.finding = Measurement, measure, finding
    mod.change = lambda m: []
    mod.diagnose = lambda ctx: finding(ctx, measure(ctx))
    monkeypatch.setattr(diagnose, "DIAGNOSES", [mod] + diagnose.DIAGNOSES)     # the one registry line
    assert "processes" in read_ahead()
    rep = analyze(zoo("launch_bound"), timeline=False)
    mine = [f for f in rep.findings if f.category == "throwaway"]
    assert len(mine) == 1 and mine[0].evidence.numbers["requests"] == rep.requests["count"]
    assert {f.category for f in rep.findings} == {"throwaway", "launch_overhead"}
