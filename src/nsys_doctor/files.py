"""What a command reads and writes, shared by cli/ and api.py (the two top layers): `load_report`, a saved report or
a profile; and every file written, through one guard (`check_outputs` before the work, `output`/`write` after).

Input: what `diff`, `check`, `export` and `nsys_doctor.load` take is a report saved by `analyze --format json` (read
back and validated against its schema) or a profile (analysed now).

Output: stdout, or a file the user named (-o, --html, --perfetto, --junit).
A named output is refused (BadInput: one line, exit 2) when it is an input of the same command (the same file by
device and inode, so symlinks and hard links count), another output of the same command, a folder, or an existing
file that is not a previous output of the same kind (told by its content, `KINDS`). It is written to a new private
file in the same folder and renamed into place only when complete: an interrupted or failed run leaves the old
file as it was and no partial one. Write errors (a full disk, /dev/full, a folder that is a file) are one line.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import sys
import tempfile
from typing import TYPE_CHECKING

from .errors import BadInput

if TYPE_CHECKING:
    from .report import Report

def load_report(path, range_name: str | None = None, skip: int | None = None) -> Report:
    """A saved report (validated), else the profile analysed; BadInput when it is neither or cannot be read."""
    from .compare.saved import read_saved
    from .read import require_file
    require_file(path, "profile or saved report")
    try:
        report = read_saved(path, range_name)
    except OSError as err:
        raise BadInput(path, f"cannot be read ({err.strerror or err})")
    if report is not None:
        return report
    from .analysis import analyze
    return analyze(path, range_name=range_name, skip=skip)


# A previous output is recognised by parsing it; the largest we write (a fleet summary of 1000 reports, a report
# with its 5000-event timeline) is a few MB, so a bigger file is no output of ours and is never parsed whole.
MAX_OWN_OUTPUT_BYTES = 64 << 20
HEAD_BYTES = 4096      # the head that names an HTML or JUnit output of ours, or a text report's first line
ANSI_SGR = re.compile(r"\x1b\[[0-9;]*m")


def _json(path: str, size: int):
    if size > MAX_OWN_OUTPUT_BYTES:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _ours(d) -> bool:
    return isinstance(d, dict) and isinstance(d.get("tool"), dict) and d["tool"].get("name") == "nsys-doctor"


def _report(head: str, path: str, size: int) -> bool:
    if head.startswith("nsys-doctor  "):            # the text report's first line (render/terminal.py)
        return True
    d = _json(path, size) if head.lstrip().startswith("{") else None
    return isinstance(d, dict) and "schema_version" in d and "requests" in d


def _diff(head: str, path: str, size: int) -> bool:
    if head.startswith("nsys-doctor diff  "):       # cli/diff.py render_text
        return True
    d = _json(path, size) if head.lstrip().startswith("{") else None
    return isinstance(d, dict) and {"before", "after", "latency", "verdict"} <= set(d)


def _fleet(head: str, path: str, size: int) -> bool:
    if head.startswith("nsys-doctor fleet  "):      # render/fleet_text.py
        return True
    d = _json(path, size) if head.lstrip().startswith("{") else None
    return _ours(d) and d.get("kind") == "fleet"


def _perfetto(head: str, path: str, size: int) -> bool:
    d = _json(path, size) if head.lstrip().startswith("{") else None
    meta = d.get("metadata") if isinstance(d, dict) else None       # render/perfetto.py: metadata.tool
    return isinstance(meta, dict) and "traceEvents" in d and meta.get("tool") == "nsys-doctor"


def _html(head: str, path: str, size: int) -> bool:
    return head.lstrip().startswith("<!DOCTYPE html>") and "<title>nsys-doctor report</title>" in head


def _junit(head: str, path: str, size: int) -> bool:
    return re.search(r'<testsuite\b[^>]*\bname="nsys-doctor', head) is not None     # compare/gate.py junit_xml


def _whatif(head: str, path: str, size: int) -> bool:
    if head.startswith("what if: "):                # cli/whatif.py _text
        return True
    d = _json(path, size) if head.lstrip().startswith("{") else None
    return isinstance(d, dict) and {"change", "before", "after", "method"} <= set(d)


def _runners(head: str, path: str, size: int) -> bool:
    return True         # GitHub's runner makes the file and every step appends to it (`append`): any content is its


# kind -> (what it is called in messages, recogniser of a previous output of that kind)
KINDS = {
    "report": ("report", _report), "diff": ("diff", _diff), "fleet": ("fleet summary", _fleet),
    "html": ("HTML report", _html), "perfetto": ("Perfetto trace", _perfetto), "junit": ("JUnit XML", _junit),
    "whatif": ("what-if prediction", _whatif),
    "step_summary": ("step summary ($GITHUB_STEP_SUMMARY)", _runners),
}


def _identity(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def check_target(path: str, kind: str, inputs=(), others=()) -> None:
    """BadInput when writing `path` could destroy something: an input (same device and inode), another output
    of this command, a folder, or a file that is not a previous output of this kind. Called before the work
    starts (so a refusal costs nothing) and again just before writing."""
    what = KINDS[kind][0]
    mine = _identity(path)
    for src in inputs:
        if src is not None and mine is not None and _identity(src) == mine:
            raise BadInput(path, f"is an input of this command ({src}); refusing to overwrite it with the {what}")
    for other in others:        # the command's other outputs
        if other and (os.path.abspath(other) == os.path.abspath(path) or
                      (mine is not None and _identity(other) == mine)):
            raise BadInput(path, f"is named for two outputs ({other} too); give each its own file")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):       # writing would create the file it points to, wherever that is
            raise BadInput(path, f"is a symlink to a missing file ({os.readlink(path)}); refusing to write the "
                                 f"{what} through it") from None
        return
    except OSError as err:
        raise BadInput(path, f"cannot write the {what} ({err.strerror})")
    if stat.S_ISDIR(st.st_mode):
        raise BadInput(path, f"is a folder; give a file name for the {what}")
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        return          # /dev/null, /dev/stdout, a pipe: written as a stream
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(path, f"is not a regular file; refusing to write the {what} there")
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES).decode("utf-8", "replace")
    except OSError as err:
        raise BadInput(path, f"exists and cannot be read to check what it is ({err.strerror}); refusing to "
                             f"overwrite it")
    if not head:
        return          # an empty file: nothing to lose (/proc files say size 0 yet are not empty: read)
    head = ANSI_SGR.sub("", head)      # a text report written with FORCE_COLOR starts with colour codes
    if not KINDS[kind][1](head, path, st.st_size):
        article = "an" if what[0] in "aeiouH" else "a"
        raise BadInput(path, f"exists and is not {article} {what} written by nsys-doctor; refusing to overwrite it "
                             "(remove it or choose another name)")


def check_outputs(outputs, inputs=()) -> None:
    """check_target for each (path, kind) of a command's outputs (None: not asked for), before the work starts, so
    that a refusal costs nothing."""
    for i, (path, kind) in enumerate(outputs):
        if path:
            check_target(path, kind, inputs, [p for j, (p, _) in enumerate(outputs) if p and j != i])


def _problem(err: OSError) -> str:
    return err.strerror or str(err)


@contextlib.contextmanager
def output(path: str | None, kind: str = "report", inputs=()):
    """A text file to write the output into: stdout, or `path` written whole or not at all."""
    what = KINDS[kind][0]
    if not path:
        try:
            yield sys.stdout
            sys.stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as err:
            raise BadInput(None, f"cannot write the {what} to standard output ({_problem(err)})") from None
        return
    check_target(path, kind, inputs)       # again: the file may have changed while the command worked
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):        # a device or a pipe: no rename possible
        try:
            with open(path, "w", encoding="utf-8") as f:
                yield f
        except OSError as err:
            raise BadInput(path, f"cannot write the {what} ({_problem(err)})") from None
        return
    real = os.path.realpath(path)       # a symlink to a previous output stays a symlink to the new one
    folder = os.path.dirname(real) or "."
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(real)}.", suffix=".tmp")
    except OSError as err:
        raise BadInput(path, f"cannot write the {what} ({_problem(err)})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~umask)
        os.replace(tmp, real)
    except OSError as err:
        raise BadInput(path, f"cannot write the {what} ({_problem(err)})") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)      # gone when renamed; a failed or interrupted write leaves nothing


def write(path: str, text: str, kind: str, inputs=()) -> None:
    with output(path, kind, inputs) as f:
        f.write(text)


def append(path: str, text: str, kind: str, inputs=()) -> None:
    """`text` added at the end of `path`, for a file that is not ours to replace (the runner's step summary, which
    every step of a job appends to); refused as check_target refuses (an input, a folder, a link to nothing)."""
    check_target(path, kind, inputs)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as err:
        raise BadInput(path, f"cannot append the {KINDS[kind][0]} ({_problem(err)})") from None


def stdout_error(err: OSError) -> str:
    """The one line for an error writing stdout after the command ran (`> /dev/full`, a closed descriptor)."""
    return f"nsys-doctor: cannot write to standard output ({_problem(err)})"
