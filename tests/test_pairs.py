"""tests/data/pairs.json (read by benchmarks/calibrate.py) against the exports it names, checked with plain SQL."""
from __future__ import annotations

import json
import sqlite3

import pytest

from nsys_doctor.report import CATEGORIES

from .conftest import DATA, expand

PAIRS = json.loads((DATA / "pairs.json").read_text())["pairs"]
PLANNED: set[str] = set()   # categories a pair may name before their diagnosis exists (none now)
SIDES = [(p["name"], side) for p in PAIRS for side in ("before", "after")]


def _side(name, side):
    return next(p for p in PAIRS if p["name"] == name)[side]


def test_every_pair_names_a_category_and_its_two_files():
    for p in PAIRS:
        assert p["category"] in CATEGORIES or p["category"] in PLANNED, p["name"]
        for side in ("before", "after"):
            assert (DATA / p[side]["file"]).exists(), p[side]["file"]
            s = p[side]
            # the printed ms/request is the printed seconds over the printed request count, up to the rounding of
            # both (seconds to 1 ms, ms/request to 0.01 ms)
            tol = 0.5 / s["requests"] + 0.005
            assert abs(s["seconds"] / s["requests"] * 1e3 - s["ms_per_request"]) <= tol, s["file"]


@pytest.mark.parametrize("name,side", SIDES)
def test_program_clock_agrees_with_the_trace(name, side):
    """The program's own ms/request (its clock, around its measured requests) against the span of the measured
    'Inference' ranges (the pair's 'range') in the export over their count: the two clocks must agree within 5% (the program's clock
    also covers its final synchronize, the Python between requests and, in thread_contention, starting and joining
    its 8 threads: 3.7% of the fixed run's 149 ms)."""
    s = _side(name, side)
    rng = next(p for p in PAIRS if p["name"] == name).get("range", "Inference")
    db = sqlite3.connect(f"file:{expand(DATA / s['file'])}?mode=ro", uri=True)
    rows = db.execute("SELECT e.start, e.end FROM NVTX_EVENTS e LEFT JOIN StringIds t ON e.textId = t.id "
                      "WHERE coalesce(e.text, t.value) = ? AND e.end IS NOT NULL ORDER BY e.start", (rng,)).fetchall()
    assert len(rows) == s["warmup"] + s["requests"]
    measured = rows[s["warmup"]:]
    span_ms = (max(e for _, e in measured) - measured[0][0]) / 1e6
    assert span_ms / s["requests"] == pytest.approx(s["ms_per_request"], rel=0.05)
