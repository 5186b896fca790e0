"""Command line: `nsys-doctor COMMAND ...`. One module per command with a docstring (its help),
`add_arguments(parser)` and `run(args) -> int`. This is the only place that turns errors into exit codes."""
from __future__ import annotations

import argparse
import errno
import importlib
import io
import os
import re
import signal
import sys
import textwrap

# One small BLAS call in nsys-doctor (model/gpu_metrics.py's least squares), yet OpenBLAS (under numpy) starts a
# thread per core at import that spins
# waiting for work: 11% of all CPU time of `analyze launch_bound` on 2 cores (perf: blas_thread_server). Set before
# numpy is first imported; a value the user set wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .. import __version__
from ..errors import NsysDoctorError, address_space_limit_mb, is_out_of_memory, out_of_memory_problem
from .memory import keep_freed_memory

# errno of a write to stdout that failed (`> /dev/full`, a full disk or quota, a closed descriptor)
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EBADF}

# Below this address-space limit (ulimit -v) no analysis can start: OpenBLAS, loaded with numpy, calls exit(1) when
# it cannot allocate its buffer (measured at 70-90 MB), and the smallest export of ../shared needed 130 MB (a sweep of
# 100-300 MB in steps of 5 MB). Commands that analyse say "not enough memory" at once instead.
MIN_MAPPED_MB = 100
ANALYSING = ("analyze", "demo", "profile", "export", "diff", "check", "whatif")
# A new command is one new file in this folder plus its name here. Each is imported only when it is the command
# asked for (or for the full help): importing all of them costs 10 ms of a 0.4 s `analyze`. A name here without its
# module is an error (tests/cli/test_commands.py imports every one), never skipped.
COMMANDS = ["analyze", "demo", "profile", "env", "export", "diff", "check", "whatif"]



class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line on stderr, exit 2, the user's arguments quoted in them
    through render.safe.clean (argparse prints them raw: an escape sequence in an argument reached the terminal)."""

    def error(self, message: str):
        from ..render.safe import clean
        sys.stderr.write(f"{clean(self.prog)}: {clean(message)} (see {clean(self.prog)} --help)\n")
        sys.exit(2)


class ParagraphFormatter(argparse.HelpFormatter):
    """Rewraps each paragraph of a command's docstring to the terminal (argparse reads COLUMNS), keeps the blank
    lines between paragraphs and indented lines (command examples) as written."""

    def _fill_text(self, text, width, indent):
        out = []
        for para in re.split(r"\n\s*\n", text.strip("\n")):
            lines = para.splitlines()
            if all(line.startswith("    ") for line in lines):
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(textwrap.fill(" ".join(line.strip() for line in lines), width, initial_indent=indent,
                                         subsequent_indent=indent))
        return "\n\n".join(out)


def summary(doc: str) -> str:
    """The first sentence of a docstring, however its lines were wrapped (the command list's one-line help)."""
    first = " ".join(doc.split("\n\n", 1)[0].split())
    m = re.match(r"(.+?\.)(\s|$)", first)
    return m.group(1) if m else first


def command_module(name: str):
    """The module of command `name` (one of COMMANDS)."""
    if name not in COMMANDS:
        raise KeyError(f"no command {name!r}")
    return importlib.import_module(f"{__name__}.{name}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `only` that one (a command's module imports what it needs: building
    all of them costs 10 ms of a 0.4 s `analyze`)."""
    parser = Parser(
        prog="nsys-doctor",
        description="Tells you why your GPU inference is slow, from an Nsight Systems profile.")
    parser.add_argument("--version", action="version", version=f"nsys-doctor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else [only]:
        mod = command_module(name)
        doc = (mod.__doc__ or "").strip()
        p = sub.add_parser(name, help=summary(doc) or None, description=doc, formatter_class=ParagraphFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


class _ClosedStdout(io.TextIOBase):
    """Stands in for a stdout the shell closed (`>&-`: Python then has none): a write fails as a write to a closed
    descriptor does, and ends as one line; a command that writes only files (-o) is not hindered."""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        raise OSError(errno.EBADF, "it is closed")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if sys.stdout is None:
        sys.stdout = _ClosedStdout()
    limit = address_space_limit_mb()
    try:        # building a command's parser imports what it needs (the readers): that can run out of memory too
        if limit is not None and limit < MIN_MAPPED_MB and argv and argv[0] in ANALYSING:
            raise MemoryError       # numpy's OpenBLAS would end the process itself, before any of our code runs
        parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    except (MemoryError, RuntimeError, ImportError) as err:
        if not is_out_of_memory(err):
            raise
        path = next((a for a in argv[1:] if not a.startswith("-") and os.path.exists(a)), None)
        print(f"nsys-doctor: {path + ': ' if path else ''}{out_of_memory_problem(path)}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    keep_freed_memory()
    try:
        code = args._run(args)
        sys.stdout.flush()          # a full disk behind `> FILE` is found here, not in Python's teardown
        return code
    except NsysDoctorError as err:
        print(error_line(err.path, err.problem), file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError, ImportError) as err:
        if not is_out_of_memory(err):
            raise
        path = _input_of(args)     # an allocation failed outside an analysis (an import, the output)
        print(f"nsys-doctor: {path + ': ' if path else ''}{out_of_memory_problem(path)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nsys-doctor: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as err:
        if err.filename is not None or err.errno not in WRITE_ERRORS:
            raise           # not a failed write of stdout: a bug to see whole
        from ..files import stdout_error
        print(stdout_error(err), file=sys.stderr)
        return 2


def error_line(path, problem) -> str:
    """`nsys-doctor: FILE: problem` on one line, whatever the file name or a quoted string holds (newlines,
    escape sequences: render.safe.clean shows them as escapes)."""
    from ..render.safe import clean
    where = f"{clean(path)}: " if path else ""
    return f"nsys-doctor: {where}{clean(' '.join(str(problem).split()))}"


def _input_of(args) -> str | None:
    """The first input file of a command's arguments, for a message that has no other file to name."""
    for name in ("profile", "before", "after"):
        value = getattr(args, name, None)
        if isinstance(value, list):
            value = value[0] if value else None
        if value:
            return str(value)
    return None


def console_main() -> None:
    """The `nsys-doctor` console script and `python -m nsys_doctor`: main(), then the end of the process."""
    # A CI timeout or `kill` sends SIGTERM: end as an exception, so that partial outputs and cache files are removed
    # on the way out (finally blocks run) instead of being left behind.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    code = main()
    # The output is complete and every file closed by now. Python's own teardown (freeing each array, module and
    # idle reader thread one by one) costs 22-68 ms of CPU (median 35, 6 runs on a busy 2-core machine) of a 0.65 s
    # `analyze launch_bound`: the process ends here instead. What it skips are exit handlers, and nsys-doctor
    # registers none (concurrent.futures' join of idle reader threads is the only one, and has nothing to wait for).
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    except OSError as err:
        from ..files import stdout_error
        print(stdout_error(err), file=sys.stderr)
        code = 2
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code)
