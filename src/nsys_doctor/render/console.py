"""The rich Console every text renderer writes through: one rule for the width, one for wrapped lines."""
from __future__ import annotations

import os

from rich.console import Console
from rich.text import Text

# Piped output (a file, a CI log) with no COLUMNS set: wide enough that the latency and fleet tables keep one row
# per line; a terminal's own width, or COLUMNS when set, wins (`COLUMNS=80 nsys-doctor analyze ... | less`).
PIPED_WIDTH = 110
MIN_BODY = 20      # a hanging indent never squeezes the text itself narrower than this


def console(file, width: int | None = None, color: bool | None = None, soft_wrap: bool = False) -> Console:
    """soft_wrap: lines are never wrapped here (the terminal wraps them; check's PASS/FAIL lines, see check_text)."""
    if width is None and not file.isatty() and not os.environ.get("COLUMNS", "").strip().isdigit():
        width = PIPED_WIDTH      # rich reads COLUMNS itself, and the terminal's size when there is one
    return Console(file=file, width=width, highlight=False, force_terminal=color, no_color=color is False,
                   soft_wrap=soft_wrap)


def hang(con: Console, prefix: str, body: str) -> None:
    """Print `prefix` (markup) then `body` (markup), wrapped to the console so that continuation lines start under
    the body, not at column 0."""
    head = Text.from_markup(prefix)
    pad = head.cell_len
    lines = Text.from_markup(body).wrap(con, max(MIN_BODY, con.width - pad))
    for i, line in enumerate(lines):
        line.rstrip()
        con.print((head if i == 0 else Text(" " * pad)) + line)
