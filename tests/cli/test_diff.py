"""`nsys-doctor diff` as a subprocess on real profiles and a saved JSON report."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import zoo

CLI = "import sys; from nsys_doctor.cli import main; sys.exit(main())"


def nsd(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_diff_json_of_launch_bound_vs_graphed(tmp_path):
    saved = tmp_path / "before.json"
    r = nsd("analyze", zoo("launch_bound"), "--format", "json", "-o", saved)
    assert r.returncode == 0, r.stderr
    r = nsd("diff", saved, zoo("launch_bound_graphed"), "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    # measured: p50 16.3 -> 61.7 ms as requests queue on the GPU (test_compare.py verifies it with SQL), while the
    # throughput rises 22.7x: the verdict is about throughput
    assert d["verdict"] == "faster" and d["headline"] == "throughput" and d["latency"]["n_before"] == 200
    assert d["latency"]["verdict"] == "slower"
    assert d["kernels"]["new"][0]["name"] == "CUDA graph 1"


def test_diff_text_names_verdict_and_sections(tmp_path):
    out = tmp_path / "diff.txt"
    r = nsd("diff", zoo("launch_bound_graphed"), zoo("launch_bound"), "-o", out)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    for needle in ("Slower: 0.044x the throughput", "latency fell 74% because fewer requests queue",
                   "Request latency", "interval (mean)", "Where a request's time went",
                   "vectorized_elementwise_kernel", "CUDA graph 1", "throughput"):
        assert needle in text, needle


def test_diff_bad_input_exits_2(tmp_path):
    junk = tmp_path / "x.json"
    junk.write_text("{not json")
    r = nsd("diff", junk, zoo("launch_bound"))
    assert r.returncode == 2 and "JSON" in r.stderr and r.stderr.count("\n") == 1   # the trace reader says it
    r = nsd("diff", tmp_path / "missing.sqlite", zoo("launch_bound"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
