"""feature_copies.py (tests/data ex_fcopies_*, H200, range 'rank'): 48 small pageable host-to-device copies per request,
each `torch.from_numpy(a).to("cuda")`, which PyTorch issues as cudaMemcpyAsync from pageable memory followed by a
cudaStreamSynchronize. Facts counted with SQL on the export, then the findings: memory_transfer claims the uploads'
calls and the syncs after them (host_waits kind COPY_WAIT), cuda_sync leaves those syncs out."""
from __future__ import annotations

import sqlite3

import pytest

from nsys_doctor.analysis import analyze

from ..conftest import DATA, expand

WARMUP = 3


def _per_request_facts(name: str):
    db = sqlite3.connect(f"file:{expand(DATA / f'{name}.sqlite.xz')}?mode=ro", uri=True)
    try:
        ranges = db.execute("SELECT e.start, e.end, e.globalTid FROM NVTX_EVENTS e LEFT JOIN StringIds t "
                            "ON e.textId = t.id WHERE coalesce(e.text, t.value) = 'rank' ORDER BY e.start"
                            ).fetchall()[WARMUP:]
        uploads = after = 0
        for s, e, tid in ranges:
            calls = db.execute("SELECT r.correlationId, i.value FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds i "
                               "ON i.id = r.nameId WHERE r.globalTid = ? AND r.start BETWEEN ? AND ? ORDER BY r.start",
                               (tid, s, e)).fetchall()
            pageable_up = {c for (c,) in db.execute(
                "SELECT correlationId FROM CUPTI_ACTIVITY_KIND_MEMCPY WHERE copyKind = 1 AND srcKind = 0 "
                "AND start BETWEEN ? AND ?", (s, e))}
            for (corr, name), (_, nxt) in zip(calls, calls[1:]):
                if corr in pageable_up:
                    uploads += 1
                    after += nxt.startswith("cudaStreamSynchronize")
        return len(ranges), uploads, after
    finally:
        db.close()


def test_small_pageable_uploads_and_their_syncs_are_memory_transfers():
    n, uploads, after = _per_request_facts("ex_fcopies_before")
    assert n == 40 and uploads == 48 * n and after == 48 * n     # every upload is followed by a sync
    rep = analyze(expand(DATA / "ex_fcopies_before.sqlite.xz"))
    top = rep.findings[0]
    assert top.category == "memory_transfer" and top.severity == "high"
    assert top.evidence.numbers["upload_syncs_per_request"] == pytest.approx(after / n, abs=0.01)
    sync = next((f for f in rep.findings if f.category == "cuda_sync"), None)
    assert sync is None or sync.evidence.numbers["syncs_per_request"] <= 2      # the request's own reads only
    # the program's own clock (pairs.json, two separate runs of each side): 3.77 and 3.81 ms/request before,
    # 1.80 and 2.00 after: the replayed interval drop within the calibration band of that saving
    w = top.whatif
    saving = (3.77 + 3.81) / 2 - (1.80 + 2.00) / 2
    assert 0.75 <= (w["interval_before_ms"] - w["interval_ms"]) / saving <= 1.33


def test_the_packed_pinned_copy_leaves_no_transfer_finding_worth_acting_on():
    rep = analyze(expand(DATA / "ex_fcopies_after.sqlite.xz"))
    f = next((f for f in rep.findings if f.category == "memory_transfer"), None)
    assert f is None or f.severity == "low"
