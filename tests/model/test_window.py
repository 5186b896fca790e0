"""A window of consecutive requests cut out of a trace (model/window.py), on real exports: its tables hold exactly
the rows starting in its time span (checked against SQL on the export), its requests are the whole run's, its
unchanged replay gives back their recorded latencies, and a change's rows are translated to the window's."""
import sqlite3

import numpy as np
import pytest

from nsys_doctor.model import replay as R
from nsys_doctor.model import window as W
from nsys_doctor.model.requests import find_requests
from nsys_doctor.read import open_trace
from tests.conftest import DATA, expand

FIDELITY = 0.02                    # issue 16: 2% median absolute error per request (as tests/model/test_replay.py)


@pytest.fixture(scope="module")
def graph_before():
    path = DATA / "ex_graph_before.sqlite.xz"
    trace = open_trace(path)
    reqs = find_requests(trace)
    events = sum(len(trace.table(t)["start_ns"]) for t in ("api_calls", "kernels", "copies", "memsets"))
    return path, trace, reqs, W.cut(trace, reqs, *W.pick(reqs, events, events // 3))


def test_the_window_holds_the_rows_that_start_in_its_span(graph_before):
    path, trace, reqs, win = graph_before
    lo = int(reqs.table["start_ns"][win.first - win.lead_in])
    hi = int(np.maximum(reqs.table["end_ns"], reqs.table["gpu_end_ns"])[win.first - win.lead_in:win.last + 1].max())
    db = sqlite3.connect(expand(path))
    n_kernels = db.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE start BETWEEN ? AND ?",
                           (lo, hi)).fetchone()[0]
    n_api = db.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_RUNTIME WHERE start BETWEEN ? AND ?",
                       (lo, hi)).fetchone()[0]
    assert len(win.trace.table("kernels")["start_ns"]) == n_kernels > 0
    # the reader keeps runtime and driver calls (eventClass 0 and 1), the whole of CUPTI_ACTIVITY_KIND_RUNTIME here
    assert len(win.trace.table("api_calls")["start_ns"]) == n_api > 0
    # the middle third of the 60 measured requests, after a lead-in of 2
    assert win.lead_in == 2 and win.last - win.first + 1 == 20 and win.first == 3 + 20
    assert win.reqs.count == 22 and win.reqs.warmup == 2
    assert np.array_equal(win.reqs.table["start_ns"], reqs.table["start_ns"][win.first - 2:win.last + 1])


def test_the_window_replayed_unchanged_gives_back_its_requests(graph_before):
    _, _, _, win = graph_before
    out = R.replay(win.trace, win.reqs)
    lat, _ = R.recorded(win.reqs)
    m = win.reqs.measured
    err = np.abs(out.latency_ns[m] - lat[m]) / lat[m]
    assert float(np.median(err)) <= FIDELITY


def test_a_change_names_the_windows_rows(graph_before):
    _, trace, _, win = graph_before
    lo, hi = win.rows["kernels"]
    ch = R.Change(gpu_scale=[("kernels", np.array([0, lo, lo + 5, hi]), np.array([0.1, 0.2, 0.3, 0.4]))],
                  remove_wait_rows=np.arange(len(trace.table("api_calls")["start_ns"])))
    got = W.change_in(ch, win)
    t, rows, f = got.gpu_scale[0]
    assert t == "kernels" and rows.tolist() == [0, 5] and f.tolist() == [0.2, 0.3]   # row `hi` is past the window
    a0, a1 = win.rows["api_calls"]
    assert got.remove_wait_rows.tolist() == list(range(a1 - a0))
    # the same kernel, by the window's row and by the whole trace's
    assert win.trace.table("kernels")["start_ns"][5] == trace.table("kernels")["start_ns"][lo + 5]


def test_a_window_on_a_table_out_of_time_order_takes_its_rows_by_index(graph_before):
    """Synthetic: the kernels table of ex_graph_before reversed (an export is in time order; a reader need not be)."""
    _, trace, reqs, _ = graph_before
    import dataclasses
    k = trace.table("kernels")
    rev = {c: v[::-1].copy() for c, v in k.items()}
    t2 = dataclasses.replace(trace, loaders={**trace.loaders, "kernels": lambda: rev}, _cache={}, _pending={},
                             _locks={})
    r2 = dataclasses.replace(reqs, gpu_request={**reqs.gpu_request, "kernels": reqs.gpu_request["kernels"][::-1]})
    a = W.cut(trace, reqs, 20, 22, 30)
    b = W.cut(t2, r2, 20, 22, 30)
    assert isinstance(b.rows["kernels"], np.ndarray)
    assert sorted(b.trace.table("kernels")["start_ns"].tolist()) == a.trace.table("kernels")["start_ns"].tolist()
    n = len(k["start_ns"])
    lo, _ = a.rows["kernels"]
    rows, keep = b.rows_in("kernels", np.array([n - 1 - lo]))   # the window's first kernel, reversed
    assert keep.tolist() == [True]
    assert b.trace.table("kernels")["start_ns"][rows[0]] == k["start_ns"][lo]


def _change_fields():
    import dataclasses
    return dataclasses.fields(R.Change)


def _documented():
    """Change's docstring, field by field: {name: its entry's text} (entries start at four spaces, 'name:')."""
    import re
    out, name = {}, None
    for line in R.Change.__doc__.splitlines():
        m = re.match(r"    (\w+): (.*)", line)
        if m and m.group(1) in {f.name for f in _change_fields()}:
            name = m.group(1)
            out[name] = m.group(2)
        elif name and line.startswith("        "):
            out[name] += " " + line.strip()
    return out


def test_every_change_field_says_whether_it_names_rows():
    """A new Change field must declare (metadata ROWS) whether it names rows, so that change_in translates it to a
    window's rows; one documented as naming rows (its docstring entry says 'rows') must declare how."""
    doc = _documented()
    for f in _change_fields():
        assert R.ROWS in f.metadata, f"Change.{f.name} does not declare ROWS"
        assert f.name in doc, f"Change.{f.name} is not in Change's docstring"
        names_rows = "rows" in f.name + " " + doc[f.name]
        assert (f.metadata[R.ROWS] is not None) == names_rows, f.name


def test_change_in_refuses_a_field_that_declares_nothing(graph_before, monkeypatch):
    """Synthetic: a Change class with one more field and no declaration."""
    import dataclasses
    _, _, _, win = graph_before
    Extra = dataclasses.make_dataclass("Extra", [("more_rows", list, dataclasses.field(default_factory=list))],
                                       bases=(R.Change,))
    with pytest.raises(TypeError, match="more_rows"):
        W.change_in(Extra(), win)


@pytest.mark.parametrize("name", [f.name for f in _change_fields() if f.metadata.get(R.ROWS) is not None])
def test_each_row_naming_field_is_translated_to_the_windows_rows(graph_before, name):
    """Each declared field, set alone to rows before, inside and after the window (and per-row values), comes back
    with the window's rows and values of the rows inside it; everything else in an entry unchanged."""
    _, trace, _, win = graph_before
    lay = next(f for f in _change_fields() if f.name == name).metadata[R.ROWS]
    table = lay.table or "kernels"
    lo, hi = win.rows[table]
    assert lo > 0
    rows, inside = np.array([lo - 1, lo, lo + 3, hi]), [lo, lo + 3]     # `hi` is past the window (a slice's end)
    values = np.array([1.0, 2.0, 3.0, 4.0])
    if lay.kind == "array":
        value, want = rows, lambda got: got.tolist() == [0, 3]
    elif lay.kind == "by_table":
        value, want = {table: rows}, lambda got: got[table].tolist() == [0, 3]
    else:
        other = object()
        width = max([lay.at, lay.table_at or 0, *lay.per_row]) + 1
        entry = [other] * width
        entry[lay.at] = rows
        if lay.table_at is not None:
            entry[lay.table_at] = table
        for j in lay.per_row:
            entry[j] = values

        def want(got):
            (e,) = got
            return (e[lay.at].tolist() == [0, 3] and all(e[j].tolist() == [2.0, 3.0] for j in lay.per_row)
                    and all(e[j] is entry[j] for j in range(width) if j != lay.at and j not in lay.per_row))
        value = [tuple(entry)]
    got = getattr(W.change_in(R.Change(**{name: value}), win), name)
    assert want(got), got
    # the rows kept are the same operations, by the window's numbering and by the whole trace's
    full, part = trace.table(table), win.trace.table(table)
    assert part["start_ns"][[0, 3]].tolist() == full["start_ns"][inside].tolist()
