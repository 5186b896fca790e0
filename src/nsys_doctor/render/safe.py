"""Untrusted text (names from a profile, file names, messages that quote them) made safe to show, in one place.

`clean(s)` replaces every character that a terminal, a CI log or an XML parser would act on instead of showing:
C0 and C1 controls and DEL (so every escape sequence loses its introducer: ESC of CSI `\\e[2J`, OSC `\\e]0;title`
and `\\e]8;;url` hyperlinks, DCS, and their one-byte C1 forms), the line and paragraph separators U+2028/U+2029,
the bidirectional overrides and isolates that reorder what is shown (U+202A-U+202E, U+2066-U+2069 and the marks),
lone surrogates (a JSON trace can hold `\\ud800`; they cannot be encoded for output) and the noncharacters
U+FFFE/U+FFFF (not allowed in XML). Each becomes a visible escape (`\\x1b`, `\\n`, `\\u202e`) so the reader sees
that something was there, and the rest of the sequence is left as plain text. One sequence of printable characters
is acted on too: GitHub's runner takes `##[error]`, `##[add-mask]`, `##[stop-commands]` ... anywhere in a line of
a job's output as a workflow command (its older syntax, still parsed), so the `[` after `##` becomes `\\x5b`; and
`::error::`, `::add-mask::` ... at the start of a line (after spaces), where wrapping a long line can put any word
of a name, so the first `:` of `::` before a command the runner knows becomes `\\x3a` (C++ scopes such as
`at::native::` are left alone). rich's own markup escaping strips only BEL, BS, VT, FF and CR; `escape(s)` is
`clean` and then rich's escaping, for text printed as rich markup.
"""
from __future__ import annotations

import re

from rich.markup import escape as _markup_escape

# The commands GitHub's runner registers (actions/runner, ActionCommandManager): `::NAME::` or `::NAME props::`
WORKFLOW_COMMANDS = ("error", "warning", "notice", "debug", "group", "endgroup", "add-mask", "stop-commands", "echo",
                     "set-output", "save-state", "set-env", "add-path", "add-matcher", "remove-matcher",
                     "internal-set-repo-path")
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]"
                    "|(?<=##)\\["
                    "|:(?=:(?:" + "|".join(WORKFLOW_COMMANDS) + ")(?: |::))", re.IGNORECASE)
NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(m: re.Match) -> str:
    c = m.group()
    return NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def clean(text) -> str:
    """`text` (any value: str() of it) with every control character replaced by a visible escape."""
    s = text if isinstance(text, str) else str(text)
    return UNSAFE.sub(_visible, s) if UNSAFE.search(s) else s


def escape(text) -> str:
    """`clean(text)` escaped for rich markup: what every renderer prints of a string it did not write itself."""
    return _markup_escape(clean(text))
