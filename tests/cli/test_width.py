"""Text output and --help at 80 columns: every line fits, wrapped lines keep their indent, no number is cut.
The numbers looked for come from the same run's JSON, not from the text renderer."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import zoo

CLI = "import sys; from nsys_doctor.cli import main; sys.exit(main())"


def _run(*args, columns=80):
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("name", ["sync_heavy", "dataload_starved", "thread_contention"])
def test_analyze_fits_80_columns_with_every_number_whole(name):
    path = str(zoo(name))
    text = _run("analyze", path).stdout
    d = json.loads(_run("analyze", path, "--format", "json").stdout)
    lines = text.splitlines()
    assert max(len(x) for x in lines) <= 80 and "…" not in text
    flat = " ".join(text.split())
    lat = d["requests"]["latency_ms"]
    assert " ".join(f"{lat[k]:.2f}" for k in ("p50", "p90", "p99", "max", "mean")) in flat
    for f in d["findings"]:
        assert f"~{f['impact_ms']:.2f} ms/request ({f['impact_pct']:.0f}%)" in flat
        for k, v in f["evidence"]["numbers"].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                shown = f"{v:.3g}" if isinstance(v, float) and abs(v) < 1000 else (
                    f"{v:,.0f}" if isinstance(v, float) else str(v))
                assert f"{k}={shown}" in flat, k
    # a wrapped line starts under the text it continues, never at column 0
    for i, line in enumerate(lines[1:], 1):
        if line.strip() and lines[i - 1].lstrip().startswith(("evidence:", "fix:", "why:", "- ")) \
                and not line.lstrip().startswith(("evidence:", "fix:", "why:", "- ", "note:", "estimate:")):
            assert line.startswith("     "), line


def test_columns_sets_the_width_of_piped_output():
    path = str(zoo("sync_heavy"))
    wide = _run("analyze", path, columns=160).stdout.splitlines()
    assert max(len(x) for x in wide) > 110           # the old hard-wired width no longer caps it
    narrow = _run("analyze", path, columns=60).stdout.splitlines()
    assert max(len(x) for x in narrow) <= 60


def test_help_is_wrapped_to_the_terminal():
    for args in (["--help"], ["analyze", "--help"], ["profile", "--help"], ["env", "--help"], ["check", "--help"],
                 ["whatif", "--help"]):
        out = _run(*args, columns=70).stdout
        assert out and max(len(x) for x in out.splitlines()) <= 70, args
    top = _run("--help", columns=200).stdout
    env_line = next(x for x in top.splitlines() if x.strip().startswith("env "))
    assert env_line.rstrip().endswith(".")           # a whole sentence, not cut where the docstring's line broke
    # the example command in `profile --help` keeps its own line
    assert any(x.strip() == "nsys-doctor profile [options] -- python serve.py --batch 8"
               for x in _run("profile", "--help", columns=70).stdout.splitlines())


def test_tensorrt_layer_table_at_80_columns_keeps_every_number():
    from tests.conftest import external
    path = str(external("realcugan-tensorrt__profile"))
    text = _run("analyze", path).stdout
    d = json.loads(_run("analyze", path, "--format", "json").stdout)
    assert max(len(x) for x in text.splitlines()) <= 80
    table = text[text.index("TensorRT layers"):].splitlines()
    for row in d["requests"]["tensorrt_layers"][:10]:
        line = next(x for x in table if f"{row['gpu_ms_per_enqueue']:.3f}" in x.split())
        assert line.split()[-2:] == [f"{row['gpu_ms_per_enqueue']:.3f}", f"{row['share_pct']:.1f}%"] or \
            line.split()[-3:-1] == [f"{row['gpu_ms_per_enqueue']:.3f}", f"{row['share_pct']:.1f}%"]


def test_diff_and_whatif_fit_80_columns_with_every_number_whole():
    from tests.conftest import DATA
    before, after = str(DATA / "ex_fusion_before.sqlite.xz"), str(DATA / "ex_fusion_after.sqlite.xz")
    text = _run("diff", before, after).stdout
    d = json.loads(_run("diff", before, after, "--format", "json").stdout)
    lines = text.splitlines()
    assert lines and max(len(x) for x in lines) <= 80, [x for x in lines if len(x) > 80]
    for q, row in d["latency"]["percentiles"].items():
        assert f"{row['before_ms']:.3f}" in text and f"{row['after_ms']:.3f}" in text, q
    for r in d["kernels"]["changed"][:10] + d["kernels"]["new"][:5] + d["kernels"]["vanished"][:5]:
        assert f"{r['per_request_ms']['change']:+.3f}" in text
    # whatif: before/after rows from its own JSON, the wrapped explanation indented under its text
    text = _run("whatif", before, "--graph").stdout
    w = json.loads(_run("whatif", before, "--graph", "--format", "json").stdout)
    lines = text.splitlines()
    assert max(len(x) for x in lines) <= 80, [x for x in lines if len(x) > 80]
    row = next(x for x in lines if x.strip().startswith("interval (ms)"))
    assert row.split()[2:4] == [f"{w['before']['interval_ms']:.3f}", f"{w['after']['interval_ms']:.3f}"]
    how = next(i for i, x in enumerate(lines) if x.startswith("  how: "))
    assert len(lines) > how + 1 and lines[how + 1].startswith(" " * len("  how: "))
