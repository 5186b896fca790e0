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
from ..errors import NsysDoctorError
from .memory import keep_freed_memory

# A new command is one new file in this folder plus its name here.
COMMANDS = ["analyze", "demo", "profile", "env", "export", "diff", "check", "whatif"]


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
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
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
    except KeyboardInterrupt:
        print("nsys-doctor: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


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
