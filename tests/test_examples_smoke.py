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
