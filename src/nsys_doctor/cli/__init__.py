"""Command line: `nsys-doctor COMMAND ...`. One module per command with a docstring (its help),
`add_arguments(parser)` and `run(args) -> int`. This is the only place that turns errors into exit codes."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# No BLAS call anywhere in nsys-doctor, yet OpenBLAS (under numpy) starts a thread per core at import that spins
# waiting for work: 11% of all CPU time of `analyze launch_bound` on 2 cores (perf: blas_thread_server). Set before
# numpy is first imported; a value the user set wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .. import __version__
from ..errors import NsysDoctorError, address_space_limit_mb, is_out_of_memory, out_of_memory_problem
from .memory import keep_freed_memory

# Below this address-space limit (ulimit -v) no analysis can start: OpenBLAS, loaded with numpy, calls exit(1) when
# it cannot allocate its buffer (measured at 70-90 MB), and the smallest export of ../shared needed 130 MB (a sweep of
# 100-300 MB in steps of 5 MB). Commands that analyse say "not enough memory" at once instead.
MIN_MAPPED_MB = 100
ANALYSING = ("analyze", "demo", "profile", "export", "diff", "check")
# A new command is one new file in this folder plus its name here.
COMMANDS = ["analyze", "demo", "profile", "env", "export", "diff", "check"]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `only` that one (a command's module imports what it needs: building
    all of them costs 10 ms of a 0.4 s `analyze`)."""
    parser = argparse.ArgumentParser(
        prog="nsys-doctor",
        description="Tells you why your GPU inference is slow, from an Nsight Systems profile.")
    parser.add_argument("--version", action="version", version=f"nsys-doctor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else [only]:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                continue        # command not built yet
            raise
        doc = (mod.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc.splitlines()[0] if doc else None, description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
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
        return args._run(args)
    except NsysDoctorError as err:
        where = f"{err.path}: " if err.path else ""
        problem = " ".join(str(err.problem).split())     # one line, whatever a message quoted
        print(f"nsys-doctor: {where}{problem}", file=sys.stderr)
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
    code = main()
    # The output is complete and every file closed by now. Python's own teardown (freeing each array, module and
    # idle reader thread one by one) took 15 ms of a 0.4 s `analyze`; the process ends here instead.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, OSError):
        pass
    os._exit(code)
