"""`nsys-doctor whatif` end to end on the examples' recordings (tests/data/README.md has the programs' own timings)."""
from __future__ import annotations

import hashlib
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import DATA

CLI = "import sys; from nsys_doctor.cli import main; sys.exit(main())"


def nsd(*args):
    return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], capture_output=True, text=True)


def test_graph_prediction_json_matches_the_fixed_program():
    path = DATA / "ex_graph_before.sqlite.xz"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    r = nsd("whatif", path, "--graph", "--format", "json", "--per-request")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    # before: the program printed 8.10 ms/request; after --fixed: 1.61 ms/request
    assert res["before"]["interval_ms"] == pytest.approx(8.10, rel=0.02)
    assert 0.75 <= (8.10 - res["after"]["interval_ms"]) / (8.10 - 1.61) <= 1.33
    assert res["requests"] == 60 and len(res["per_request"]) == 60
    assert res["assumptions"] and res["change"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest        # the input is never changed


def test_pinned_prediction_matches_the_fixed_program():
    # before: 11.32 ms/request by the program's own clock; after --fixed (pinned buffers): 1.33 (tests/data/pairs.json).
    # --pinned takes the rate the memory_transfer finding replays (diagnose/memory_transfer.pinned_gbps: this H100's
    # documented 55 GB/s link); whatif's own rule, the best pinned copy in the profile else 12 GB/s, predicted 0.38x
    pair = next(p for p in json.loads((DATA / "pairs.json").read_text())["pairs"] if p["name"] == "ex_pinned")
    before_ms, after_ms = pair["before"]["ms_per_request"], pair["after"]["ms_per_request"]
    r = nsd("whatif", DATA / pair["before"]["file"], "--pinned", "--format", "json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["before"]["interval_ms"] == pytest.approx(before_ms, rel=0.02)
    assert 0.75 <= (before_ms - res["after"]["interval_ms"]) / (before_ms - after_ms) <= 1.33


def test_remove_syncs_predicts_what_the_cuda_sync_finding_does():
    # ex_polling_before: its polling loops go with their event records (the cuda_sync finding's fix), so whatif
    # --remove-syncs and analyze's finding predict the same interval; the fix measured in one process saved
    # 1.23-1.33 ms/request (pairs.json ab), where removing the loops' waits alone predicts 0.38
    pair = next(p for p in json.loads((DATA / "pairs.json").read_text())["pairs"] if p["name"] == "ex_polling")
    r = nsd("whatif", DATA / pair["before"]["file"], "--remove-syncs", "--format", "json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    a = nsd("analyze", DATA / pair["before"]["file"], "--format", "json")
    f = next(x for x in json.loads(a.stdout)["findings"] if x["category"] == "cuda_sync")
    assert res["after"]["interval_ms"] == pytest.approx(f["whatif"]["interval_ms"], abs=0.002)
    saving = res["before"]["interval_ms"] - res["after"]["interval_ms"]
    assert 0.5 <= saving / (sum(pair["ab"]["saving_ms"]) / 3) <= 2.0       # issue 16: within 2x of the real fix


def test_text_output_names_before_and_after():
    r = nsd("whatif", DATA / "ex_gpupre_before.sqlite.xz", "--drop-phase", "preprocess")
    assert r.returncode == 0, r.stderr
    assert "interval (ms)" in r.stdout and "throughput (req/s)" in r.stdout
    line = next(x for x in r.stdout.splitlines() if x.strip().startswith("interval"))
    before, after = (float(v) for v in line.split()[2:4])
    assert before == pytest.approx(114.63, rel=0.02) and after < 5       # the program's own 114.63 -> 1.52 ms


@pytest.mark.parametrize("args, says", [
    ((), "no change given"),
    (("--faster-kernels", "gemm"), "PATTERN=FACTOR"),
    (("--faster-kernels", "gemm=-1"), "PATTERN=FACTOR"),
    (("--drop-phase", "no such phase"), "no NVTX range named"),
    (("--pinned", "0"), "GBPS"),
    # non-finite or overflowing values: tracebacks (--graph nan/inf/1e30), or accepted with a meaningless result
    # (--pinned nan, --faster-kernels .=1e308 predicted a lower latency for kernels 1e308x slower)
    (("--graph", "nan"), "--graph US"),
    (("--graph", "inf"), "--graph US"),
    (("--graph", "1e30"), "--graph US"),
    (("--graph", "-1"), "--graph US"),          # -1 once meant "the measured cost"
    (("--pinned", "nan"), "GBPS"),
    (("--pinned", "inf"), "GBPS"),
    (("--pinned", "-1"), "GBPS"),
    (("--faster-kernels", "gemm=inf"), "PATTERN=FACTOR"),
    (("--faster-kernels", ".=1e308"), "PATTERN=FACTOR"),
    (("--faster-kernels", ".=nan"), "PATTERN=FACTOR"),
    (("--faster-kernels", "(unclosed=0.5"), "PATTERN=FACTOR"),
])
def test_bad_options_exit_2_with_one_line(args, says):
    r = nsd("whatif", DATA / "ex_sync_before.sqlite.xz", *args)
    assert r.returncode == 2 and says in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_not_a_profile_exits_2(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    r = nsd("whatif", p, "--remove-syncs")
    assert r.returncode == 2 and str(p) in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_profile_strings_are_not_sent_to_the_terminal_raw():
    from nsys_doctor.cli.whatif import _printable
    assert "\x1b" not in _printable("Inference\x1b[2J\x07") and len(_printable("x" * 500)) <= 80


def _whatif_in_process(path, *args, out):
    """whatif run in this process (so that a test can lower predict's size limit), its JSON result."""
    from nsys_doctor.cli import main
    assert main(["whatif", str(path), *map(str, args), "--format", "json", "-o", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("args", [("--graph",), ("--remove-syncs",)])
def test_a_window_forced_on_a_small_profile_predicts_what_the_whole_replay_does(tmp_path, monkeypatch, args):
    """whatif uses analyze's rule: above predict.MAX_REPLAY_EVENTS a window of the requests is replayed. Forced on
    ex_graph_before (66k events, replayed whole), its prediction is within the tolerance analyze's windowed
    predictions are held to (tests/test_predict.py), and the per-request numbers average to the overall ones."""
    from nsys_doctor.analysis import predict as P
    from tests.test_predict import WINDOW_ABS_SHARE, WINDOW_TOLERANCE
    path = DATA / "ex_graph_before.sqlite.xz"
    whole = _whatif_in_process(path, *args, "--per-request", out=tmp_path / "whole.json")
    assert whole["replayed"] is None and all(r["replayed"] for r in whole["per_request"])
    monkeypatch.setattr(P, "MAX_REPLAY_EVENTS", 1000)
    monkeypatch.setattr(P, "REPLAY_WINDOW_EVENTS", 20_000)
    win = _whatif_in_process(path, *args, "--per-request", out=tmp_path / "win.json")
    # ~1.05k events a request: 18 of the 60 measured requests, numbered from 1 (as in tests/test_predict.py)
    assert win["replayed"] == {"first": 25, "last": 42, "of": 63, "steady": True}
    assert "replayed requests 25-42 of 63" in win["method"]
    assert sum(r["replayed"] for r in win["per_request"]) == 18 and len(win["per_request"]) == 60
    # before: the whole run's recording either way (the unchanged whole replay gives it back exactly)
    assert win["before"] == whole["before"]
    for metric in (("latency_ms", "mean"), ("interval_ms",)):
        def get(res, side):
            v = res[side]
            for k in metric:
                v = v[k]
            return v
        before = get(whole, "before")
        s_whole, s_win = before - get(whole, "after"), before - get(win, "after")
        assert abs(s_win - s_whole) <= max(WINDOW_TOLERANCE * abs(s_whole), WINDOW_ABS_SHARE * before), metric
    after = np.array([r["after_ms"] for r in win["per_request"]])
    assert float(after.mean()) == pytest.approx(win["after"]["latency_ms"]["mean"], abs=2e-3)


@pytest.fixture(scope="module")
def over_the_limit(tmp_path_factory):
    """zoo launch_bound x6 (benchmarks/make_large.py): 2.2M CUDA calls and GPU operations, over
    predict.MAX_REPLAY_EVENTS without lowering it."""
    from tests.conftest import zoo
    src = zoo("launch_bound")
    out = tmp_path_factory.mktemp("large") / "launch_bound_x6.sqlite"
    r = subprocess.run([sys.executable, str(DATA.parent.parent / "benchmarks" / "make_large.py"), str(src), str(out),
                        "--times", "6"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


# benchmarks/bench_analyze.py's launch_bound x40 (14.7M events), where it has been built on this machine
X40 = pathlib.Path("/tmp/nsd-bench/launch_bound_x40.sqlite")


@pytest.mark.parametrize("which", ["x6", "x40"])
def test_whatif_on_a_profile_over_the_limit_replays_a_window(which, over_the_limit, tmp_path):
    if which == "x40" and not X40.exists():
        pytest.skip(f"{X40} not built (benchmarks/make_large.py)")
    path = over_the_limit if which == "x6" else X40
    res = _whatif_in_process(path, "--graph", out=tmp_path / "out.json")
    w = res["replayed"]
    n = 203 * (6 if which == "x6" else 40)                 # launch_bound: 203 requests per copy
    assert w is not None and w["of"] == n and 1 <= w["first"] <= w["last"] < n
    assert f"replayed requests {w['first']}-{w['last']} of {n}" in res["method"]
    # a graph launch per request removes CPU launch overhead: the run gets faster, never slower
    assert 0 < res["after"]["interval_ms"] < res["before"]["interval_ms"]
