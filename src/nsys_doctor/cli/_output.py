"""Where a command writes its result: stdout, or a file named with -o (one clear error when it cannot be written)."""
from __future__ import annotations

import contextlib
import sys

from ..errors import BadInput


@contextlib.contextmanager
def output(path: str | None, what: str = "report"):
    if not path:
        yield sys.stdout
        return
    try:
        f = open(path, "w", encoding="utf-8")
    except OSError as err:
        raise BadInput(path, f"cannot write the {what} ({err.strerror})")
    with f:
        yield f
