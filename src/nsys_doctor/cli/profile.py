"""Profile a program with Nsight Systems, export it to SQLite and analyze it.

    nsys-doctor profile [options] -- python serve.py --batch 8

Traces CUDA, NVTX, OS runtime, cuDNN and cuBLAS by default (--trace changes it, e.g. --trace=nvtx,osrt on a
machine without a GPU). Mark requests in your program with nsys_doctor.instrument.request() (docs/profiling.md).
When this machine refuses a feature (CPU sampling or context switches with perf_event_paranoid > 2, GPU metrics
without permission or without a GPU), it is dropped with one line saying so, and the rest is recorded.
Writes NAME.nsys-rep and NAME.sqlite (NAME: -o, or nsd-<program>-<time>); never overwrites without --force.
Exit code: the program's own when it fails, 2 when nsys is missing or fails, else 0.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from ..system import nsys as nsys_tool
from ..errors import BadInput, NsysDoctorError, ToolMissing

DEFAULT_TRACE = "cuda,nvtx,osrt,cudnn,cublas"
GPU_METRICS_HZ = 2000        # 10 kHz (nsys default) makes 100-200 MB exports for 20 s; 2 kHz about 25 MB
MAX_PARANOID_FOR_SAMPLING = 2  # nsys process-tree sampling/context switches need perf_event_paranoid <= 2 as non-root
MAX_RETRIES = 4              # one per feature that can be dropped, so retrying always ends

# Feature -> pattern of the nsys error that names it. Matched only when nsys failed without writing a report.
REFUSALS = {
    "gpu_metrics": re.compile(r"gpu[- ]metrics|no such gpu|GPU Metrics", re.IGNORECASE),
    "sample": re.compile(r"--sample|sampling|perf_event_paranoid|paranoid", re.IGNORECASE),
    "cpuctxsw": re.compile(r"cpuctxsw|context.?switch", re.IGNORECASE),
    "cuda_graph_trace": re.compile(r"cuda-graph-trace", re.IGNORECASE),
}
DROPPED_MEANS = {
    "sample": "CPU sampling off: no call stacks for CPU-bound time",
    "cpuctxsw": "context switches off: cannot tell a waiting thread from a busy one",
    "gpu_metrics": "GPU metrics off: no SM occupancy or DRAM bandwidth findings",
    "cuda_graph_trace": "CUDA graphs traced whole: their kernels are not seen one by one",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", help="report name without extension (default nsd-<program>-<time>)")
    parser.add_argument("--force", action="store_true", help="overwrite existing NAME.nsys-rep / NAME.sqlite")
    parser.add_argument("--trace", default=DEFAULT_TRACE, help=f"nsys --trace list (default {DEFAULT_TRACE})")
    parser.add_argument("--sample", action=argparse.BooleanOptionalAction, default=True,
                        help="CPU call-stack sampling of the process tree (default on)")
    parser.add_argument("--cpuctxsw", action=argparse.BooleanOptionalAction, default=True,
                        help="trace thread context switches (default on)")
    parser.add_argument("--gpu-metrics", action=argparse.BooleanOptionalAction, default=False,
                        help="sample GPU hardware metrics (SM activity, DRAM bandwidth); needs permission")
    parser.add_argument("--gpu-metrics-frequency", type=int, default=GPU_METRICS_HZ, metavar="HZ",
                        help=f"GPU metrics sampling rate (default {GPU_METRICS_HZ}; 10000 makes 100-200 MB exports)")
    parser.add_argument("--cuda-graph-trace", choices=["graph", "node"], default=None,
                        help="node: trace the kernels inside CUDA graphs (more overhead)")
    parser.add_argument("--capture-range", metavar="NVTX_RANGE",
                        help="record only inside the first NVTX range of this name (e.g. a steady-state loop)")
    parser.add_argument("--delay", type=float, metavar="S", help="start recording after S seconds")
    parser.add_argument("--duration", type=float, metavar="S", help="stop recording after S seconds")
    parser.add_argument("--range", dest="range_name", help="NVTX range marking one request (default Inference)")
    parser.add_argument("--skip", type=int, help="warm-up requests to leave out of the analysis")
    parser.add_argument("--no-analyze", dest="analyze", action="store_false",
                        help="only record and export")
    parser.add_argument("program", nargs=argparse.REMAINDER, help="-- CMD ARGS...")


def default_output(program: list[str]) -> str:
    """nsd-<program>-<YYYYmmdd-HHMMSS>; for `python x.py` the script name, since every run is python's."""
    words = [w for w in program if not w.startswith("-")]
    name = Path(words[0]).name if words else "program"
    if re.match(r"python[\d.]*$", name) and len(words) > 1:
        name = Path(words[1]).stem
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "program"
    return f"nsd-{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def paranoid_level() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/perf_event_paranoid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _note(text: str) -> None:
    from ..render.safe import clean      # file names and nsys's messages: shown, never acted on by the terminal
    print(f"nsys-doctor: {clean(text)}", file=sys.stderr)


def _run_nsys(cmd: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run nsys with the program's output shown live; keep nsys/program stderr to read refusals from."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, errors="replace", env=env)
    kept = []
    for line in proc.stderr:
        sys.stderr.write(line)
        kept.append(line)
    return proc.wait(), "".join(kept[-200:])


def run(args: argparse.Namespace) -> int:
    program = list(args.program)
    if program and program[0] == "--":
        program = program[1:]
    if not program:
        raise BadInput(None, "no program to profile: nsys-doctor profile [options] -- CMD ARGS...")
    nsys = nsys_tool.require_nsys()

    base = Path(args.output or default_output(program))
    base = base.with_suffix("") if base.suffix in (".nsys-rep", ".sqlite", ".qdrep") else base
    rep, db = Path(f"{base}.nsys-rep"), Path(f"{base}.sqlite")
    for p in (rep, db):
        if p.is_dir():
            raise BadInput(p, "is a folder; give another name with -o")
        if os.path.lexists(p) and not args.force:
            raise BadInput(p, "already exists; use --force to overwrite or -o for another name")
    if os.path.lexists(base.parent) and not base.parent.is_dir():
        raise BadInput(base.parent, "is not a folder; cannot write the profile in it")
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BadInput(base.parent, f"cannot create the folder for the profile ({err.strerror})") from None

    features = {"sample": args.sample, "cpuctxsw": args.cpuctxsw, "gpu_metrics": args.gpu_metrics,
                "cuda_graph_trace": args.cuda_graph_trace}
    level = paranoid_level()
    if os.geteuid() != 0 and level is not None and level > MAX_PARANOID_FOR_SAMPLING:
        for feature in ("sample", "cpuctxsw"):
            if features[feature]:
                features[feature] = False
                _note(f"perf_event_paranoid is {level} (> {MAX_PARANOID_FOR_SAMPLING}): {DROPPED_MEANS[feature]}")
    if features["sample"] or features["cpuctxsw"]:
        if nsys_tool.cpu_sampling_ok(nsys_tool.status_environment(nsys)) is False:
            for feature in ("sample", "cpuctxsw"):
                if features[feature]:
                    features[feature] = False
                    _note(f"`nsys status -e` says CPU profiling is unavailable: {DROPPED_MEANS[feature]}")
    metrics_option = nsys_tool.gpu_metrics_option(nsys_tool.profile_help(nsys))
    if features["gpu_metrics"]:
        devices = nsys_tool.gpu_metrics_devices(nsys, metrics_option)
        if not nsys_tool.gpu_metrics_available(devices):
            features["gpu_metrics"] = False
            reason = nsys_tool.last_error_line(devices) if devices else "nsys lists no GPU for it"
            _note(f"{reason}: {DROPPED_MEANS['gpu_metrics']}")

    if "nvtx" in args.trace:
        from ..system.envcheck import nvtx_package_version, nvtx_ranges_recorded
        recorded, why = nvtx_ranges_recorded(nsys_tool.nsys_version(nsys), nvtx_package_version())
        if recorded is False:
            _note(f"NVTX ranges may be missing: {why}")   # about this Python's nvtx; the program may use another

    env = dict(os.environ)
    if args.capture_range:
        env["NSYS_NVTX_PROFILER_REGISTER_ONLY"] = "0"   # match plain-string ranges too, not only registered ones
    trace = [t.strip() for t in args.trace.split(",") if t.strip()]
    # nsys records under a private name beside NAME; the report is renamed into place only when it and its export
    # are complete, so an interrupted run leaves neither half a report nor a file of the user's replaced.
    stage = base.with_name(f".{base.name}.part{os.getpid()}")
    staged = Path(f"{stage}.nsys-rep")
    try:
        for _attempt in range(MAX_RETRIES + 1):
            staged.unlink(missing_ok=True)
            cmd = nsys_tool.profile_command(
                nsys, stage, program, trace=trace, sample=features["sample"], cpuctxsw=features["cpuctxsw"],
                gpu_metrics=features["gpu_metrics"], gpu_metrics_frequency=args.gpu_metrics_frequency,
                gpu_metrics_option=metrics_option, cuda_graph_trace=features["cuda_graph_trace"],
                capture_range=args.capture_range, delay_s=args.delay, duration_s=args.duration)
            code, errors = _run_nsys(cmd, env)
            nsys_tool.remove_leftovers(stage)
            if staged.is_file():
                break           # the program ran: code is its own exit code (nsys passes it through)
            refused = [f for f, on in features.items() if on and REFUSALS[f].search(errors)]
            if not refused:
                raise ToolMissing(None, f"nsys profile failed (exit {code}): {nsys_tool.last_error_line(errors)}")
            for feature in refused:
                features[feature] = None if feature == "cuda_graph_trace" else False
                _note(f"nsys refused it, retrying without: {DROPPED_MEANS[feature]}")
        else:
            raise ToolMissing(None, "nsys profile kept failing after dropping every optional feature")
        nsys_tool.export_sqlite(nsys, staged, db, overwrite=args.force)
        nsys_tool.move_into_place(staged, rep, overwrite=args.force)
    finally:
        staged.unlink(missing_ok=True)
        nsys_tool.remove_leftovers(stage)
    _note(f"wrote {rep} and {db}")
    if code != 0:
        _note(f"the program exited with code {code}; analyzing what was recorded")
    if args.analyze:
        from ..analysis import analyze          # imported here: `profile` must work while analysis is optional
        from ..render import terminal
        try:
            report = analyze(str(db), range_name=args.range_name, skip=args.skip)
        except NsysDoctorError as err:
            if code == 0:
                raise               # cli.main prints it in one line, exit 2
            _note(f"{err.problem}")  # the program's failure is the news; keep its exit code
            return code
        terminal.render(report, file=sys.stdout)
    return code
