"""The cuda_sync examples' `--ab K` mode (both variants alternating in one process: the measured saving of the
cuda_sync pairs in tests/data/pairs.json "ab"), run for real on the CPU build of PyTorch in the examples' smoke mode
(EXAMPLES_SMOKE=1: tiny sizes, no measurement). Checked: the line each prints has K blocks per variant, and its
medians and saving are those of the blocks it lists (recomputed here from the printed blocks)."""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytest.importorskip("torch")

# sync_per_layer.py has no smoke mode (it needs a GPU); the other four do
PROGRAMS = ("early_exit_sync.py", "polling_wait.py", "sleep_poll.py", "layer_timing_sync.py")
LINE = re.compile(r"\[ab\]: (\d+) rounds of (\d+) requests per variant in one process: slow ([\d.]+) ms/request "
                  r"\(blocks ([\d. ]+)\), fixed ([\d.]+) ms/request \(blocks ([\d. ]+)\); saving (-?[\d.]+) ms/request")


@pytest.mark.parametrize("program", PROGRAMS)
def test_ab_mode_prints_the_medians_of_its_blocks(program):
    env = dict(os.environ, EXAMPLES_SMOKE="1", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, str(ROOT / "examples" / program), "--ab", "3", "--requests", "2",
                        "--warmup", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    m = LINE.search(r.stdout)
    assert m, r.stdout
    rounds, requests = int(m[1]), int(m[2])
    slow, fixed = [float(v) for v in m[4].split()], [float(v) for v in m[6].split()]
    assert (rounds, requests) == (3, 2) and len(slow) == len(fixed) == 3
    # printed to 2 decimals: the medians and the saving within rounding of those of the printed blocks
    assert float(m[3]) == pytest.approx(statistics.median(slow), abs=0.011)
    assert float(m[5]) == pytest.approx(statistics.median(fixed), abs=0.011)
    assert float(m[7]) == pytest.approx(statistics.median(s - f for s, f in zip(slow, fixed)), abs=0.021)
