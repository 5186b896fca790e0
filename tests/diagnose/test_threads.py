"""Diagnoses run on several threads (diagnose_all): the findings are those of one thread, exactly, whatever order
the threads finish in."""
from __future__ import annotations

import dataclasses

import pytest

from nsys_doctor import diagnose
from nsys_doctor.analysis import analyze

from ..conftest import zoo


def findings(path, threads, monkeypatch):
    monkeypatch.setattr(diagnose, "DIAGNOSE_THREADS", threads)
    return [dataclasses.asdict(f) for f in analyze(path, timeline=False).findings]


@pytest.mark.parametrize("name", ["sync_heavy", "cpu_preproc", "thread_contention", "launch_bound", "dataload_starved"])
def test_threads_give_the_findings_of_one(name, monkeypatch):
    path = zoo(name)
    one = findings(path, 1, monkeypatch)
    assert one, "every one of these profiles has findings"
    for threads in (2, 4):
        assert findings(path, threads, monkeypatch) == one
