"""model_loading on a real H100 recording (tests/data/dist/model_server, README there): a cold start before the first
request, then a 384 MiB model swap (fread + pageable upload) inside every 10th request. Facts by independent SQL."""
import functools
import sqlite3

import pytest

from tests.conftest import DATA, expand, zoo_report


def _path(name):
    src = DATA / "dist" / f"{name}.sqlite.xz"
    if not src.exists():
        pytest.skip(f"{src} not found")
    return expand(src)


@functools.lru_cache(maxsize=None)
def _report(name):
    from nsys_doctor.analysis import analyze
    return analyze(_path(name))


def test_model_server_swaps_are_the_primary_finding():
    db = sqlite3.connect(_path("model_server"))
    # SQL: 5 uploads of 384 MiB (cold start + 4 swaps); the swaps start inside Inference ranges
    ups = db.execute("SELECT start FROM CUPTI_ACTIVITY_KIND_MEMCPY WHERE copyKind = 1 AND bytes = 402653184 "
                     "ORDER BY start").fetchall()
    assert len(ups) == 5
    inf = db.execute("SELECT e.start, e.[end] FROM NVTX_EVENTS e LEFT JOIN StringIds s ON e.textId = s.id "
                     "WHERE coalesce(e.text, s.value) = 'Inference' ORDER BY e.start").fetchall()
    assert len(inf) == 43 and ups[0][0] < inf[0][0]
    assert sum(any(s <= u < e for s, e in inf) for (u,) in ups) == 4
    fread_ms = db.execute("SELECT sum(o.[end] - o.start) / 1e6 FROM OSRT_API o JOIN StringIds s ON o.nameId = s.id "
                          "WHERE s.value = 'fread'").fetchone()[0]
    f = _report("model_server").findings[0]
    assert f.category == "model_loading" and f.severity == "high"
    n = f.evidence.numbers
    assert n["loading_requests"] == 4 and n["loads_inside_requests"] == 4 and n["cold_start_uploads"] == 1
    assert n["upload_mib_per_load"] == 384
    assert n["file_read_ms_per_load"] > 50 and 4 * n["file_read_ms_per_load"] < fread_ms   # the 5th is the cold one
    # impact: 4 requests of ~270 ms against ~0.8 ms typical, spread over 42 measured requests
    assert 20 < f.impact_ms < 30


def test_zoo_set_up_is_not_model_loading():
    for name in ("healthy", "memcpy_pageable", "dataload_starved"):
        assert not [f for f in zoo_report(name).findings if f.category == "model_loading"]
