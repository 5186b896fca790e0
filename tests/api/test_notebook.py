"""examples/notebook.ipynb executed as Jupyter would (nbclient, a real ipykernel), then its outputs checked against
numbers computed here from the same profile: the notebook must keep working and keep saying true things."""
from __future__ import annotations

import json
import pathlib

import pytest

import nsys_doctor

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("pandas")

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / "examples" / "notebook.ipynb"


def _text(cell) -> str:
    """Everything a cell showed: stdout and the plain-text and HTML forms of its result."""
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            out.append(o["text"])
        for kind in ("text/plain", "text/html"):
            if kind in o.get("data", {}):
                out.append(o["data"][kind])
    return "\n".join(out)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    work = tmp_path_factory.mktemp("notebook")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    mp = pytest.MonkeyPatch()
    mp.setenv("NSYS_DOCTOR_CACHE", str(work / "cache"))     # the demo's .xz expands here, not in ~/.cache
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(work)}}).execute()
    finally:
        mp.undo()
    return nb, work


@pytest.fixture(scope="module")
def expected():
    from nsys_doctor.cli.demo import demo_path
    return nsys_doctor.analyze(demo_path())


def test_no_cell_failed_and_every_code_cell_showed_something(executed):
    nb, _ = executed
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not any(o.get("output_type") == "error" for o in cell.outputs), cell.source
            assert _text(cell), cell.source


def test_outputs_hold_the_measured_facts(executed, expected):
    nb, work = executed
    cells = [c for c in nb.cells if c.cell_type == "code"]
    first = _text(cells[0])
    # the Jupyter view: verdict, p50 and the top finding's category
    assert "Verdict" in first and f"{expected.requests['latency_ms']['p50']:.2f}" in first
    assert expected.findings[0].category in first
    assert expected.verdict in _text(cells[1])
    df = expected.table("requests")
    head = _text(cells[2])
    assert str(df["start_ns"].iloc[0]) in head                       # the first request's start, to the ns
    desc = _text(cells[3])
    steady = df[~df["warmup"]]
    assert f"{len(steady)}" in desc and f"{steady['latency_ms'].max():.4f}"[:6] in desc
    slowest = _text(cells[4])
    assert str(int(steady.nlargest(1, "latency_ms")["start_ns"].iloc[0])) in slowest
    assert expected.findings[0].category in _text(cells[5])
    assert expected.findings[0].fix.split(";")[0] in _text(cells[6])
    assert expected.table("kernels")["name"].iloc[0][:30] in _text(cells[7])
    assert _text(cells[8]).strip() == "True"
    saved = json.loads((work / "demo-report.json").read_text())
    assert saved["requests"]["latency_ms"] == expected.requests["latency_ms"]
    assert (work / "demo-report.html").read_text().startswith("<!DOCTYPE html>")
