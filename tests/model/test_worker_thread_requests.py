"""Requests whose GPU work another thread of the process launches (a handler thread passes the request to a GPU
worker). Built from the real sync_heavy export by moving its NVTX ranges to another thread of the same process: the
GPU work, its timing and the launching thread are untouched, only the range's thread changes (a mutation of a real
export, said so: no such recording exists in ../shared)."""
from __future__ import annotations

import shutil
import sqlite3

import numpy as np

from nsys_doctor.model.requests import find_requests
from nsys_doctor.read import open_trace
from tests.conftest import zoo


def test_ranges_on_a_handler_thread_still_own_their_gpu_work(tmp_path):
    src = zoo("sync_heavy")
    original = find_requests(open_trace(src))
    moved = tmp_path / "handler_thread.sqlite"
    shutil.copyfile(src, moved)
    db = sqlite3.connect(moved)
    (tid,) = db.execute("SELECT globalTid FROM NVTX_EVENTS WHERE text = 'Inference' LIMIT 1").fetchone()
    # another thread of the same process that launches no GPU work
    (other,) = db.execute(f"""SELECT globalTid FROM ThreadNames WHERE globalTid != {tid}
        AND globalTid >> 24 = {tid} >> 24
        AND globalTid NOT IN (SELECT DISTINCT globalTid FROM CUPTI_ACTIVITY_KIND_RUNTIME) LIMIT 1""").fetchone()
    db.execute(f"UPDATE NVTX_EVENTS SET globalTid = {other} WHERE globalTid = {tid}")
    db.commit()
    db.close()

    req = find_requests(open_trace(moved))
    assert req.range_name == "Inference" and "other threads" in req.reason
    assert req.count == original.count
    assert np.all(req.table["tid"] == other)
    m = original.measured
    # the same launches and the same GPU work belong to each request, so the same latencies
    assert np.array_equal(req.table["launches"][m], original.table["launches"][m])
    assert np.allclose(req.table["latency_ns"][m], original.table["latency_ns"][m], rtol=0.01)
