"""Fleet mode on a real Dask LocalCluster (2 worker processes) over real zoo profiles, a corrupt file and a file
that is no profile. Every expected number is computed here independently, from each file's own analyze() JSON."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from nsys_doctor.fleet import Failure, Fleet, Result, analyze_many, analyze_one, expand_paths
from tests.conftest import DATA, expand, zoo

pytest.importorskip("distributed")

# Five of the twelve, with distinct top findings and p50s far apart (profiles/README.md; p50 from analyze):
# fp32_gemm 82.0 ms (precision), membw_bound 67.9 (memory_bandwidth), launch_bound_graphed 61.7 (none high),
# dataload_starved 24.8 (gpu_underutilization), sync_heavy 8.65 (launch_overhead).
NAMES = ("sync_heavy", "fp32_gemm", "launch_bound_graphed", "membw_bound", "dataload_starved")
CLI = "import sys; from nsys_doctor.cli import main; sys.exit(main())"


def dist_profiles() -> list:
    """Multi-GPU recordings a teammate may add to tests/data/dist; included when present."""
    folder = DATA / "dist"
    if not folder.is_dir():
        return []
    return sorted(expand(p) for p in folder.iterdir() if p.name.endswith((".sqlite", ".sqlite.xz")))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("fleet")
    for src in [zoo(n) for n in NAMES] + dist_profiles():
        os.symlink(src, d / src.name)
    # a profile cut off after 100 kB (an interrupted copy): the SQLite header is there, the pages are not
    with open(zoo("healthy"), "rb") as f:
        (d / "corrupt.sqlite").write_bytes(f.read(100_000))
    (d / "notes.json").write_text("these are my notes, not a profile\n")
    (d / "README.txt").write_text("a folder's other files are not profiles and are passed over\n")
    return d


@pytest.fixture(scope="module")
def expected(folder):
    """Per profile, from its own analyze() JSON in this process: the measured requests' latencies and findings."""
    from nsys_doctor.analysis import analyze
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name in ("corrupt.sqlite", "notes.json", "README.txt"):
            continue
        d = json.loads(json.dumps(analyze(p, timeline=False).to_dict()))
        warm = np.asarray(d["per_request"]["warmup"], dtype=bool)
        out[str(p)] = {"latency": np.asarray(d["per_request"]["latency_ms"], dtype=np.float64)[~warm],
                       "categories": [f["category"] for f in d["findings"]]}
    return out


@pytest.fixture(scope="module")
def cluster():
    """A user's own Dask cluster (two worker processes), started once for the tests that name a scheduler."""
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def fleet(folder, cluster):
    # on the module's cluster (one Dask start less); analyze_many's own LocalCluster runs in the CLI tests
    calls = []
    f = analyze_many([folder], scheduler=cluster.scheduler_address,
                     progress=lambda done, total, o: calls.append((done, total, o.path)))
    return f, calls


def test_every_file_keeps_its_fate(fleet, folder, expected):
    f, calls = fleet
    assert f.workers == 2
    assert sorted(r.path for r in f.results) == sorted(expected)
    failed = {os.path.basename(x.path): x for x in f.failures}
    assert set(failed) == {"corrupt.sqlite"}          # an SQLite header and no pages: a damaged profile
    assert failed["corrupt.sqlite"].error == "BadInput" and "SQLite" in failed["corrupt.sqlite"].problem
    # a .json that is no trace is skipped by its content and said (issue 17), a README passed over
    assert f.skipped == [{"path": str(folder / "notes.json"), "why": f.skipped[0]["why"]}]
    assert "not a profile" in f.skipped[0]["why"]
    # progress: once per file, counting up to the total
    assert [c[0] for c in calls] == list(range(1, len(expected) + 2))
    assert {c[1] for c in calls} == {len(expected) + 1}
    assert sorted(c[2] for c in calls) == sorted(list(expected) + [str(folder / "corrupt.sqlite")])
    # two worker processes did the work, each reporting its own peak memory
    workers = f.to_dict()["workers"]
    assert len(workers) == 2 and all(w["peak_rss_mb"] > 50 for w in workers.values())


def test_fleet_percentiles_are_exact_over_merged_samples(fleet, expected):
    d = fleet[0].to_dict()
    merged = np.concatenate([e["latency"] for e in expected.values()])
    assert d["latency_ms"]["count"] == len(merged)
    for q in (50, 90, 99):
        assert d["latency_ms"][f"p{q}"] == round(float(np.percentile(merged, q)), 4)   # to 0.1 us, as saved
    assert d["latency_ms"]["max"] == merged.max()
    # not an average of the reports' percentiles: with these five they differ by far
    assert d["latency_ms"]["p50"] != pytest.approx(np.mean([r["latency_ms"]["p50"] for r in d["reports"]]), rel=0.05)
    for r in d["reports"]:
        assert r["latency_ms"]["p99"] == round(float(np.percentile(expected[r["path"]]["latency"], 99)), 4)


def test_straggler_is_the_slowest_report_explained_by_its_top_finding(fleet, expected):
    d = fleet[0].to_dict()
    p50 = {p: float(np.percentile(e["latency"], 50)) for p, e in expected.items()}
    slowest = max(p50, key=p50.get)
    s = d["straggler"]
    assert s["path"] == slowest
    assert s["fleet_median_ms"] == pytest.approx(float(np.median(list(p50.values()))), abs=1e-4)
    assert s["excess_ms"] == pytest.approx(p50[slowest] - s["fleet_median_ms"], abs=1e-4)
    assert s["explanation"]["category"] == expected[slowest]["categories"][0]
    if not dist_profiles():
        assert os.path.basename(slowest) == "fp32_gemm.sqlite" and s["explanation"]["category"] == "precision"


def test_findings_counted_across_the_fleet(fleet, expected):
    d = fleet[0].to_dict()
    counts = {}
    for e in expected.values():
        for c in set(e["categories"]):
            counts[c] = counts.get(c, 0) + 1
    assert {c["category"]: c["reports"] for c in d["findings"]} == counts
    assert all(c["of"] == len(expected) for c in d["findings"])
    tops = {c["category"]: c["top_in"] for c in d["findings"]}
    for c in tops:
        assert tops[c] == sum(1 for e in expected.values() if e["categories"][:1] == [c])


def test_cli_folder_text_and_json(folder, expected, tmp_path):
    r = subprocess.run([sys.executable, "-c", CLI, "analyze", str(folder), "--workers", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr          # corrupt.sqlite failed; notes.json is only skipped
    assert f"{len(expected)} reports analysed, 1 failed, 1 skipped" in r.stdout
    failed_lines = [line for line in r.stdout.splitlines() if line.strip().startswith("FAILED")]
    assert len(failed_lines) == 1 and "corrupt.sqlite: " in failed_lines[0]
    assert any("notes.json: " in line for line in r.stdout.splitlines()[r.stdout.splitlines().index(
        next(x for x in r.stdout.splitlines() if x.startswith("Skipped"))):])
    assert "Slowest: " in r.stdout and "Findings across the fleet" in r.stdout

def test_cli_files_json_on_a_scheduler(expected, cluster, tmp_path):
    out = tmp_path / "fleet.json"
    two = sorted(expected)[:2]
    r = subprocess.run([sys.executable, "-c", CLI, "analyze", *two, "--scheduler", cluster.scheduler_address,
                        "--format", "json", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr          # every named profile analysed
    d = json.loads(out.read_text())
    assert d["analysed"] == 2 and d["failures"] == []


def test_cli_single_file_unchanged():
    r = subprocess.run([sys.executable, "-c", CLI, "analyze", str(zoo("sync_heavy")), "--format", "json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["findings"][0]["category"] == "launch_overhead"


HIDE_DASK = "import sys; sys.modules['distributed'] = None; sys.modules['dask'] = None; "   # as if not installed


def test_without_dask_a_local_process_pool_gives_the_same_fleet(folder, fleet, tmp_path):
    out = tmp_path / "fleet.json"
    r = subprocess.run([sys.executable, "-c", HIDE_DASK + CLI, "analyze", str(folder), "--workers", "2",
                        "--format", "json", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr          # the corrupt file and the notes fail, as on Dask
    d, dask = json.loads(out.read_text()), fleet[0].to_dict()
    assert d["engine"] == "processes" and dask["engine"] == "dask" and d["n_workers"] == 2
    assert len(d["workers"]) == 2               # two processes did the work
    for k in ("analysed", "failed", "latency_ms", "straggler", "findings"):
        assert d[k] == dask[k], k
    assert [f["path"] for f in d["failures"]] == [f["path"] for f in dask["failures"]]
    text = subprocess.run([sys.executable, "-c", HIDE_DASK + CLI, "analyze", str(folder), "--workers", "2"],
                          capture_output=True, text=True).stdout
    text = " ".join(text.split())               # wrapped to COLUMNS when set
    assert "2 worker processes, standard library" in text and "--scheduler spreads the files over a cluster" in text
    # --scheduler without Dask: one line, exit 2
    r = subprocess.run([sys.executable, "-c", HIDE_DASK + CLI, "analyze", str(folder), "--scheduler",
                        "tcp://127.0.0.1:1"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--scheduler needs Dask" in r.stderr
    r = subprocess.run([sys.executable, "-c", HIDE_DASK + CLI, "analyze", str(zoo("sync_heavy")), "--format", "json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_fleet_table_fits_80_columns_with_every_number_whole(fleet):
    import io
    from nsys_doctor.render import fleet_text
    d = fleet[0].to_dict()
    buf = io.StringIO()
    fleet_text.render(d, file=buf, width=80)
    lines = buf.getvalue().splitlines()
    assert max(len(x) for x in lines) <= 80 and "…" not in buf.getvalue()
    table = lines[next(i for i, x in enumerate(lines) if x.startswith("report")):]
    header = table[0].split()
    assert "rank" not in header                 # no report here has a rank in its name
    for r in d["reports"]:
        row = next(x for x in table if x.split()[0] == r["label"].removesuffix(".sqlite"))
        cells = row.split()
        lat = r["latency_ms"]
        assert cells[1:5] == [f"{lat['count']:,}", f"{lat['p50']:.2f}", f"{lat['p99']:.2f}", f"{lat['max']:.2f}"]
    # JSON numbers carry no float noise (82.23201999999999)
    text = json.dumps(d)
    import re
    assert not re.search(r"\d\.\d{6,}", text), "unrounded number"


def test_existing_scheduler(folder, cluster):
    f = analyze_many([folder / "sync_heavy.sqlite", str(folder / "*_bound*.sqlite")],
                     scheduler=cluster.scheduler_address)
    assert f.workers == 2 and f.failures == []
    assert sorted(os.path.basename(r.path) for r in f.results) == [
        "launch_bound_graphed.sqlite", "membw_bound.sqlite", "sync_heavy.sqlite"]
    # the user's workers are not ours: their allocator settings were left alone (cli/memory.py)
    from distributed import Client
    with Client(cluster.scheduler_address) as client:
        applied = client.run(lambda: __import__("nsys_doctor.cli.memory", fromlist=["_done"])._done)
    assert len(applied) == 2 and not any(applied.values())


def test_expand_paths(folder, tmp_path):
    (tmp_path / "saved.json").write_text('{\n  "profile": {"path": "x"}, "requests": {}}')
    shutil.copy(folder / "notes.json", tmp_path / "trace.json")
    paths, failures, skipped = expand_paths([folder, folder / "sync_heavy.sqlite", tmp_path / "*.json",
                                             tmp_path / "missing.sqlite", tmp_path / "nothing*.sqlite"])
    assert paths.count(str(folder / "sync_heavy.sqlite")) == 1          # named twice, analysed once
    assert str(folder / "README.txt") not in paths
    assert str(tmp_path / "trace.json") not in paths      # by content: notes, not a trace
    assert [(os.path.basename(x["path"]), "not a profile" in x["why"]) for x in skipped] == [
        ("notes.json", True), ("saved.json", True), ("trace.json", True)]
    assert "nsys-doctor report" in skipped[1]["why"]
    assert [(os.path.basename(x.path), x.problem) for x in failures] == [
        ("*.json", "none of the 2 files matching this pattern is a profile (each is listed as skipped)"),
        ("missing.sqlite", "no such file"), ("nothing*.sqlite", "no file matches this pattern")]


def test_a_bug_is_a_failure_with_its_type():
    # synthetic: no path at all makes pathlib raise TypeError inside the reader, which no user input can do
    out = analyze_one(None)
    assert isinstance(out, Failure) and out.bug and out.error == "TypeError" and "a bug" in out.problem


def _result(name: str, p50: float, n: int = 21, findings=()) -> Result:
    lat = list(np.linspace(p50 - 1, p50 + 1, n))
    return Result(path=f"/runs/{name}.sqlite", latency_ms=lat, requests={}, findings=list(findings), verdict="",
                  profile={}, seconds=0.1, cpu_seconds=0.1, worker="w:1", peak_rss_mb=100.0)


def test_outliers_by_mad():
    # synthetic p50s (an edge case, not a profile): five ranks at 10.0-10.4 ms and one at 14 ms
    ranks = [_result(f"rank{i}", 10.0 + 0.1 * i) for i in range(5)] + [_result("rank5", 14.0)]
    o = Fleet(ranks).to_dict()["outliers"]
    assert [x["label"] for x in o["reports"]] == ["rank5.sqlite"] and o["reports"][0]["direction"] == "slower"
    assert o["center_ms"] == pytest.approx(10.25) and o["mad_ms"] == pytest.approx(0.15)
    # identical ranks: the MAD is 0, the 1% floor keeps noise from being called an outlier
    same = [_result(f"rank{i}", 10.0) for i in range(4)] + [_result("rank4", 10.05)]
    assert Fleet(same).to_dict()["outliers"]["reports"] == []
    # ranks sort numerically, not as text
    assert [r["rank"] for r in Fleet([_result("rank10", 1), _result("rank2", 1)]).to_dict()["reports"]] == [2, 10]


def test_empty_fleet_renders():
    from nsys_doctor.render import fleet_text
    import io
    d = Fleet([], failures=[Failure("/x/[red]bad.sqlite", "no such file")]).to_dict()
    buf = io.StringIO()
    fleet_text.render(d, file=buf)
    assert d["straggler"] is None and "FAILED /x/[red]bad.sqlite: no such file" in buf.getvalue()


@pytest.mark.filterwarnings("ignore:Port .* is already in use")     # Dask's dashboard port, held by another run
def test_cli_scans_a_folder_once(tmp_path, monkeypatch):
    # the folder scan reads (and for .xz decompresses) the head of every file: the CLI scanned it once to check
    # its output against the inputs and analyze_many scanned it again
    import nsys_doctor.fleet as fleet
    from nsys_doctor.cli import main
    d = tmp_path / "in"
    d.mkdir()
    os.symlink(DATA / "demo.sqlite.xz", d / "demo.sqlite.xz")
    calls = []
    real = fleet.expand_paths
    monkeypatch.setattr(fleet, "expand_paths", lambda args: calls.append(args) or real(args))
    out = tmp_path / "fleet.json"
    assert main(["analyze", str(d), "--workers", "1", "--format", "json", "-o", str(out)]) == 0
    assert len(calls) == 1 and json.loads(out.read_text())["analysed"] == 1
