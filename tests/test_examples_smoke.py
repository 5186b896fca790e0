"""The blind-check examples (tests/data/README.md "Blind pairs"), both variants, run for real on the CPU build of
PyTorch in smoke mode (EXAMPLES_SMOKE=1: tiny sizes, no measurement): each must finish and print the line
record_examples.sh reads, whose ms/request is its seconds over its request count (examples/serving.py's clock)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytest.importorskip("torch")

PROGRAMS = ("mobilenet_graph.py", "encoder_fp32.py", "empty_cache.py", "tokenize_workers.py", "feature_copies.py",
            "socket_fetch.py", "gated_mlp_fusion.py", "debug_logging.py", "json_response.py", "jit_reload.py")
LINE = re.compile(r"\[(slow|fixed)\]: (\d+) requests in ([\d.]+)s \(([\d.]+) ms/request\)")


@pytest.mark.parametrize("fixed", [False, True], ids=["slow", "fixed"])
@pytest.mark.parametrize("program", PROGRAMS)
def test_example_runs_and_prints_its_clock(program, fixed):
    env = dict(os.environ, EXAMPLES_SMOKE="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, str(ROOT / "examples" / program), "--requests", "3", "--warmup", "1"]
    r = subprocess.run(cmd + (["--fixed"] if fixed else []), capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    m = LINE.search(r.stdout)
    assert m, r.stdout
    assert m[1] == ("fixed" if fixed else "slow") and int(m[2]) == 3
    # both printed rounded (seconds to 1 ms, ms/request to 0.01 ms)
    assert float(m[4]) == pytest.approx(float(m[3]) / 3 * 1e3, abs=0.5 / 3 + 0.006)


ZOO_LINE = re.compile(r"\[(slow|fixed|graph)\]: (\d+) requests in ([\d.]+)s \(([\d.]+) ms/request\)")
AB_LINE = re.compile(r"(?:transformer_sync|fetch_resnet) (fixed|graph) \[ab\]: (\d+) rounds of (\d+) requests per variant in one "
                     r"process: slow ([\d.]+) ms/request \(blocks ([\d. ]+)\), fixed ([\d.]+) ms/request \(blocks "
                     r"([\d. ]+)\); saving (-?[\d.]+) ms/request")


@pytest.mark.parametrize("variant", ["slow", "fixed", "graph"])
@pytest.mark.parametrize("program", ["transformer_sync.py", "fetch_resnet.py"])
def test_zoo_program_variants_print_their_clock(program, variant):
    """examples/transformer_sync.py and fetch_resnet.py (the zoo's sync_heavy and dataload_starved, each with its two
    fixes): each variant serves and prints its clock (on the CPU build --graph serves eagerly: no CUDA graph without
    a GPU)."""
    env = dict(os.environ, EXAMPLES_SMOKE="1", CUDA_VISIBLE_DEVICES="")
    flag = {"slow": [], "fixed": ["--fixed"], "graph": ["--graph"]}[variant]
    r = subprocess.run([sys.executable, str(ROOT / "examples" / program), "--requests", "3",
                        "--warmup", "1", *flag], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    m = ZOO_LINE.search(r.stdout)
    assert m and m[1] == variant and int(m[2]) == 3, r.stdout
    assert float(m[4]) == pytest.approx(float(m[3]) / 3 * 1e3, abs=0.5 / 3 + 0.006)


@pytest.mark.parametrize("ab_fix", [None, "graph"])
@pytest.mark.parametrize("program", ["transformer_sync.py", "fetch_resnet.py"])
def test_zoo_program_ab_lines_are_consistent(program, ab_fix):
    """--ab: one line per fix whose medians and saving follow from the blocks it prints (the rounds' differences'
    median can differ from the difference of medians, so the saving is checked against the blocks themselves);
    --ab-fix: the slow variant and that fix only."""
    from statistics import median
    env = dict(os.environ, EXAMPLES_SMOKE="1", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, str(ROOT / "examples" / program), "--ab", "3", "--requests", "2", "--warmup",
                        "1"] + (["--ab-fix", ab_fix] if ab_fix else []), capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = {m[1]: m for m in AB_LINE.finditer(r.stdout)}
    assert set(lines) == ({ab_fix} if ab_fix else {"fixed", "graph"}), r.stdout
    slow_blocks = None
    for m in lines.values():
        slow, fixed = [float(v) for v in m[5].split()], [float(v) for v in m[7].split()]
        assert len(slow) == len(fixed) == int(m[2]) == 3 and int(m[3]) == 2
        assert float(m[4]) == pytest.approx(median(slow), abs=0.006)
        assert float(m[8]) == pytest.approx(median([s - f for s, f in zip(slow, fixed)]), abs=0.02)
        assert slow_blocks in (None, slow)      # both fixes are compared with the same slow blocks
        slow_blocks = slow
