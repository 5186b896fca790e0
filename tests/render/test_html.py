"""The HTML report, driven in a real headless Chromium (tests/render/chromium.py, CDP over a pipe).

Profiles: sync_heavy (12 layers, a device sync after each: the diagnoses cite instances, so findings link to the
timeline) and healthy (GPU-bound, GPU metrics recorded). Set NSYS_DOCTOR_SCREENSHOTS=docs/img to (re)write the
screenshots report-overview.png and report-zoom.png.
"""
from __future__ import annotations

import copy
import json
import os
import pathlib
import subprocess
import sys

import pytest

from nsys_doctor.render import html
from nsys_doctor.report import Report
from tests.conftest import zoo, zoo_report
from tests.render.chromium import Browser, colour_stats, find_chromium

CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                    "(scripts/install-chromium.sh installs Debian's chromium)")
PAYLOADS = ["<script>window.__pwned=1;alert(1)</script>", "\"quotes'", "</script><script>window.__pwned=2</script>",
            "<img src=x onerror=\"window.__pwned=3\">", "a\u2028b\u2029c &amp; <!--"]


def test_embedded_json_has_no_markup_and_round_trips():
    text = html.embed_json({"s": PAYLOADS})
    assert not any(c in text for c in "<>&\u2028\u2029")
    assert json.loads(text) == {"s": PAYLOADS}


def test_page_is_self_contained():
    page = html.render(zoo_report("sync_heavy"))
    assert "http://" not in page.split('id="nsd-data"')[0] and "https://" not in page.split('id="nsd-data"')[0]
    assert page.count("<script") == 2 and "innerHTML" not in page   # the data block and our code


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/install-chromium.sh installs Debian's chromium)")
    with Browser(CHROMIUM) as b:
        yield b


def load(browser, tmp_path, report, name="report.html"):
    path = tmp_path / name
    path.write_text(html.render(report), encoding="utf-8")
    page = browser.open(path.as_uri())
    assert page.eval("window.nsd && window.nsd.ready") is True, page.errors
    return page


def rect(page, selector_js: str) -> dict:
    return json.loads(page.eval(f"JSON.stringify(({selector_js}).getBoundingClientRect())"))


def canvas_png(page) -> bytes:
    r = rect(page, "document.getElementById('timeline')")
    y = page.eval("window.scrollY")
    return page.screenshot({"x": r["x"], "y": r["y"] + y, "width": r["width"], "height": r["height"]})


@needs_chromium
def test_report_loads_and_timeline_draws(browser, tmp_path):
    page = load(browser, tmp_path, zoo_report("healthy"))
    assert page.errors == []
    assert page.eval("window.nsd.drawn") > 100          # thousands of kernels in a typical healthy request
    colours, inked = colour_stats(canvas_png(page))
    assert colours > 20 and inked > 0.2                 # lanes of kernels, API calls, metric curves
    assert page.eval("document.querySelectorAll('#hist rect').length") >= 5
    assert page.eval("document.querySelectorAll('#breakdown rect').length") >= 4 * 40   # 40 measured requests


@needs_chromium
def test_zoom_wheel_and_buttons_change_the_view(browser, tmp_path):
    page = load(browser, tmp_path, zoo_report("healthy"))
    v0 = page.eval("window.nsd.view")
    r = rect(page, "document.getElementById('timeline')")
    page.eval("document.getElementById('timeline').scrollIntoView()")
    r = rect(page, "document.getElementById('timeline')")
    x, y = r["x"] + r["width"] * 0.6, r["y"] + 40
    page.mouse("mouseWheel", x, y, deltaX=0, deltaY=-300)
    v1 = page.eval("window.nsd.view")
    assert v1[1] - v1[0] < v0[1] - v0[0]                # zoomed in around the cursor
    page.mouse("mousePressed", x, y, button="left", clickCount=1)   # drag pans, the span stays
    page.mouse("mouseMoved", x - 200, y, button="left")
    page.mouse("mouseReleased", x - 200, y, button="left", clickCount=1)
    v2 = page.eval("window.nsd.view")
    assert v2[0] > v1[0] and abs((v2[1] - v2[0]) - (v1[1] - v1[0])) < 1e-3 * (v1[1] - v1[0])
    b = rect(page, "document.getElementById('zoom-out')")
    for kind in ("mousePressed", "mouseReleased"):
        page.mouse(kind, b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, button="left", clickCount=1)
    v3 = page.eval("window.nsd.view")
    assert v3[1] - v3[0] > v2[1] - v2[0]
    assert page.errors == []


@needs_chromium
def test_finding_instance_link_zooms_to_it(browser, tmp_path):
    report = zoo_report("sync_heavy")
    cited = [(fi, ii) for fi, f in enumerate(report.findings) for ii, _ in enumerate(f.evidence.worst)]
    assert cited, "sync_heavy's findings cite instances"
    page = load(browser, tmp_path, report)
    for fi, ii in cited[:3]:
        inst = report.findings[fi].evidence.worst[ii]
        page.eval(f"document.getElementById('inst-{fi}-{ii}').scrollIntoView({{block: 'center'}})")
        a = rect(page, f"document.getElementById('inst-{fi}-{ii}')")
        for kind in ("mousePressed", "mouseReleased"):
            page.mouse(kind, a["x"] + 5, a["y"] + a["height"] / 2, button="left", clickCount=1)
        lo, hi = page.eval("window.nsd.view")
        assert lo <= inst.start_ns and inst.end_ns <= hi
        assert hi - lo <= 3 * max(inst.end_ns - inst.start_ns, 2000) + 1   # zoomed to it, not the whole excerpt
        assert page.eval("window.nsd.selected") == [fi, ii]
    assert page.errors == []
    shots = os.environ.get("NSYS_DOCTOR_SCREENSHOTS")
    if shots:
        save_screenshots(browser, tmp_path, report, pathlib.Path(shots))


def save_screenshots(browser, tmp_path, report, folder: pathlib.Path):
    folder.mkdir(parents=True, exist_ok=True)
    page = load(browser, tmp_path, report, "shots.html")
    (folder / "report-overview.png").write_bytes(page.screenshot())
    markers = report.timeline["markers"]
    pick = next((m for m in markers if "worst" in m.get("excerpts", [])), markers[0])
    page.eval(f"window.nsd.showInstance({pick['finding']}, {pick['instance']})")
    page.eval("window.nsd.zoom(0.5)")                   # some context around the instance
    page.eval("document.getElementById('timeline-section').scrollIntoView()")
    r = rect(page, "document.getElementById('timeline-section')")
    y = page.eval("window.scrollY")
    (folder / "report-zoom.png").write_bytes(page.screenshot({"x": 0, "y": r["y"] + y, "width": 1400,
                                                              "height": min(r["height"], 900)}))


def hostile(report: Report) -> Report:
    """A real report (healthy) with every profile string replaced by payloads: names, titles, paths, notes."""
    d = copy.deepcopy(report.to_dict())
    p = iter(PAYLOADS * 100000)
    d["profile"]["path"] = PAYLOADS[0]
    d["profile"]["gpus"] = [PAYLOADS[2]]
    d["requests"]["range"] = PAYLOADS[3]
    d["verdict"] = PAYLOADS[2]
    d["notes"] = list(PAYLOADS)
    for ex in d["timeline"]["excerpts"]:
        ex["title"] = next(p)
        for lane in ex["lanes"]:
            lane["name"] = next(p)
        for e in ex["events"]:
            e[2] = next(p)
        for m in ex["metrics"]:
            m["name"] = next(p)
    for mk in d["timeline"]["markers"]:
        mk["what"] = next(p)
    d["findings"] = d["findings"] or []
    d["findings"].append({"category": PAYLOADS[1], "severity": PAYLOADS[0], "title": PAYLOADS[2], "impact_ms": 1.0,
                          "impact_pct": 1.0, "estimate": PAYLOADS[3], "fix": PAYLOADS[0], "why": PAYLOADS[2],
                          "evidence": {"numbers": {PAYLOADS[2]: PAYLOADS[0]}, "notes": [PAYLOADS[3]],
                                       "code": [{"function": PAYLOADS[2], "module": PAYLOADS[0]}],
                                       "worst": [{"what": PAYLOADS[2], "start_ns": 0, "end_ns": 1,
                                                  "thread": PAYLOADS[0], "code": PAYLOADS[3]}]}})
    for f in d["findings"]:
        f["title"] = PAYLOADS[2]
        for inst in f["evidence"]["worst"]:
            inst["what"] = next(p)
    return Report.from_dict(d)


@needs_chromium
def test_profile_strings_stay_text(browser, tmp_path):
    report = hostile(zoo_report("healthy"))
    page = load(browser, tmp_path, report)
    page.eval("window.nsd.zoom(50)")                    # draw the renamed events with their labels
    r = rect(page, "document.getElementById('timeline')")
    page.mouse("mouseMoved", r["x"] + r["width"] / 2, r["y"] + 40)   # a tooltip with a payload
    for fi, f in enumerate(report.findings):
        for ii, _ in enumerate(f.evidence.worst):
            page.eval(f"document.getElementById('inst-{fi}-{ii}').click()")
    assert page.eval("window.__pwned === undefined")
    assert page.dialogs() == []
    assert page.eval("document.querySelectorAll('script').length") == 2
    assert page.eval("document.querySelectorAll('img').length") == 0
    text = page.eval("document.body.innerText")
    assert PAYLOADS[2] in text and PAYLOADS[0] in text  # shown, as text
    assert page.errors == []


@needs_chromium
def test_empty_report_renders(browser, tmp_path):
    page = load(browser, tmp_path, Report(profile={}, requests={}))
    assert page.errors == []
    assert page.eval("window.nsd.view") is None
    assert "No findings." in page.eval("document.body.innerText")


def test_analyze_html_option_writes_the_report(tmp_path):
    out = tmp_path / "r.html"
    cli = pathlib.Path(sys.executable).parent / "nsys-doctor"   # the installed console script
    run = subprocess.run([str(cli), "analyze", str(zoo("sync_heavy")), "--html", str(out)], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    assert "nsys-doctor" in run.stdout                  # the normal output still goes to stdout
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and 'id="nsd-data"' in page
    assert len(page) < 2_000_000


@needs_chromium
def test_summary_shows_load_interval_queue_and_service(browser, tmp_path):
    # healthy is throughput-bound (tests/model/test_queueing.py checks the numbers against SQL)
    report = zoo_report("healthy")
    page = load(browser, tmp_path, report)
    rows = json.loads(page.eval("JSON.stringify([...document.querySelectorAll('#summary tr')].map(r => "
                                "[...r.cells].map(c => c.textContent)))"))
    got = dict((k, v) for k, v in rows)
    r = report.requests
    assert got["Load"].startswith("throughput-bound, bound by gpu")
    assert got["Request interval"] == f"{r['interval_ms']} ms ({r['throughput_per_s']} requests/s)"
    assert got["Queued p50 / p90 / p99 / max"].startswith(f"{r['queue_ms']['p50']} / ")
    assert got["Service p50 / p90 / p99 / max"].startswith(f"{r['service_ms']['p50']} / ")
    assert page.errors == []


def _boxes(page, selector: str) -> list[dict]:
    return json.loads(page.eval(f"JSON.stringify(Array.from(document.querySelectorAll('{selector}')).map(e => "
                                "{const b = e.getBBox(); return {x: b.x, y: b.y, w: b.width, h: b.height, "
                                "text: e.textContent}}))"))


def _overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


@needs_chromium
@pytest.mark.parametrize("name", ["healthy", "sync_heavy"])
def test_histogram_labels_cover_no_bar_and_no_other_label(browser, tmp_path, name):
    # healthy: p50 82.15 and p99 82.24 ms, one pixel apart, over the tallest bar (the case that overlapped)
    report = zoo_report(name)
    page = load(browser, tmp_path, report)
    texts = _boxes(page, "#hist text")
    lat = report.requests["latency_ms"]
    p50 = next(t for t in texts if t["text"] == f"p50 {lat['p50']:.2f} ms")
    p99 = next(t for t in texts if t["text"] == f"p99 {lat['p99']:.2f} ms")
    assert not _overlap(p50, p99)
    for bar in _boxes(page, "#hist rect"):
        assert not _overlap(p50, bar) and not _overlap(p99, bar)
    # the y axis is a count and says so; the x axis is a time and says so
    bins = [int(t["text"]) for t in texts if t["text"].isdigit()]
    assert max(bins) == max(page.eval("Array.from(document.querySelectorAll('#hist rect title')).map("
                                      "t => parseInt(t.textContent))"))
    assert "requests" in [t["text"] for t in texts]
    ticks = [t["text"] for t in texts if t["text"].endswith(" ms") and not t["text"].startswith("p")]
    assert len(ticks) == 3 and ticks[0] == f"{min(report.per_request['latency_ms'][report.requests['warmup']:]):.1f} ms"


@needs_chromium
def test_gpu_metric_lane_hover_shows_the_sample_value(browser, tmp_path):
    report = zoo_report("healthy")          # GPU metrics recorded
    ex = report.timeline["excerpts"][0]
    assert ex["metrics"], "healthy has GPU metric samples in its first excerpt"
    page = load(browser, tmp_path, report)
    page.eval("document.getElementById('timeline').scrollIntoView()")
    r = rect(page, "document.getElementById('timeline')")
    n_lanes = len(ex["lanes"])
    y = r["y"] + 22 + n_lanes * 18 + 38 / 2              # AXIS + lanes * LANE + half a METRIC lane (report.js)
    page.mouse("mouseMoved", r["x"] + r["width"] * 0.5, y)
    tip = page.eval("document.getElementById('tip').hidden ? '' : document.getElementById('tip').textContent")
    m = ex["metrics"][0]
    assert tip.startswith(m["name"] + ": ")
    shown = tip.split(": ", 1)[1].split("\n")[0].rstrip("%")
    values = {round(v, 2) for _, v in m["points"]}
    # one of the lane's samples, as report.js formats it (2 decimals below 10, 1 below 100)
    assert any(abs(float(shown) - v) <= (0.005 if v < 10 else 0.05 if v < 100 else 0.5) + 1e-9 for v in values), shown


@needs_chromium
def test_notes_heading_only_over_notes(browser, tmp_path):
    report = zoo_report("sync_heavy")
    page = load(browser, tmp_path, report)
    n = len(report.notes) + len(report.profile.get("absent") or {})
    assert page.eval("document.querySelectorAll('#notes li').length") == n
    assert page.eval("document.getElementById('notes-section').hidden") == (n == 0)
    empty = Report(**{**report.__dict__, "notes": [], "profile": {**report.profile, "absent": {}}})
    page = load(browser, tmp_path, empty, "empty.html")
    assert page.eval("document.getElementById('notes-section').hidden") is True
    assert page.eval("document.getElementById('notes-section').offsetHeight") == 0
