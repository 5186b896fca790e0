"""argparse's own usage errors (an unknown option, a bad number, an unknown command) quote the user's arguments:
they are one line on stderr with every control character shown as an escape (render.safe.clean), exit 2.
Before cli.Parser, `nsys-doctor analyze --x$'\\e]0;PWNED\\a'` printed the escape sequence raw after a usage line."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.robustness.test_hostile_output import CLI, UNSAFE
from tests.robustness.test_hostile_output import PAYLOAD as NAMES

PAYLOAD = NAMES.replace(" ", "")     # argparse takes an argument with a space for a positional, never an option


@pytest.mark.parametrize("args", [
    ["analyze", "--x" + PAYLOAD, "p.sqlite"],                        # unrecognized argument
    ["check", "p.sqlite", "--max-p99-ms", "fast" + PAYLOAD],          # type conversion
    ["nosuch" + PAYLOAD],                                             # invalid choice of command
    ["diff", "--range"],                                              # expected one argument
    ["whatif", "p.sqlite", "--" + PAYLOAD],
])
def test_usage_error_is_one_clean_line(args, tmp_path):
    res = subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, cwd=tmp_path, timeout=60)
    err = res.stderr.decode("utf-8")
    assert res.returncode == 2, err
    assert res.stdout == b""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert not UNSAFE.search(err) and "Traceback" not in err
    assert err.startswith("nsys-doctor") and "--help)" in err
    if PAYLOAD in "".join(args):
        assert "\\x1b]0;PWNED" in err          # shown, as an escape, not dropped
