"""Find and run the Nsight Systems CLI (`nsys`): profile a program, export a report to SQLite.

Shared by read/nsys_rep.py (export) and cli/profile.py (profile). No printing: results and errors are returned or
raised; the caller decides what the user sees.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import BadInput, ToolMissing

HOW_TO_GET_NSYS = (
    "nsys (Nsight Systems) not found: install it from https://developer.nvidia.com/nsight-systems "
    "(or Debian non-free `nsight-systems`, scripts/install-nsys-debian.sh), put it on PATH or set $NSYS")

# Where installers put nsys when it is not on PATH. Globs; each sorted newest version first.
INSTALL_GLOBS = (
    "/opt/nvidia/nsight-systems*/*/bin/nsys",            # NVIDIA .run/.deb: /opt/nvidia/nsight-systems/2025.3.1/bin
    "/opt/nvidia/nsight-systems*/bin/nsys",
    "/usr/local/cuda*/bin/nsys",                           # CUDA toolkit
    "/usr/local/cuda*/nsight-systems*/bin/nsys",
    "/opt/nvidia/nsight-compute/*/host/target-linux-x64/nsys",  # the GPU host image ships it only here
    "/usr/lib/nsight-systems/bin/nsys",                    # Debian non-free package
    "/opt/nsys-doctor/nsight-systems*/usr/lib/nsight-systems/bin/nsys",  # scripts/install-nsys-debian.sh
)

EXPORT_TIMEOUT_S = 1800        # exports of long GPU-metrics runs take minutes; an hour-long hang is a bug
VERSION_TIMEOUT_S = 60         # first `nsys --version` on a cold disk takes a few seconds


def _version_key(path: str) -> tuple:
    """Sort key: the numbers in the path (2025.3.1 > 2023.4.4 > cuda-12.4), so newest installs come first."""
    return tuple(int(n) for n in re.findall(r"\d+", path))


def candidates() -> list[str]:
    """Every nsys this machine has, in the order find_nsys tries them ($NSYS, PATH, install folders)."""
    found: list[str] = []
    if os.environ.get("NSYS"):
        found.append(os.environ["NSYS"])
    on_path = shutil.which("nsys")
    if on_path:
        found.append(on_path)
    for pattern in INSTALL_GLOBS:
        found.extend(sorted(glob.glob(pattern), key=_version_key, reverse=True))
    seen, unique = set(), []
    for path in found:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            unique.append(path)
    return unique


def find_nsys() -> str | None:
    """Path of the nsys to use, or None: $NSYS first (the user's choice), then PATH, then usual install folders."""
    for path in candidates():
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def require_nsys() -> str:
    """find_nsys() or ToolMissing with how to get it."""
    path = find_nsys()
    if path is None:
        raise ToolMissing(None, HOW_TO_GET_NSYS)
    return path


def nsys_version(path: str) -> str | None:
    """'2023.4.4.54' from `nsys --version` ('NVIDIA Nsight Systems version 2023.4.4.54-234433681190v0'), or None."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"(\d{4}\.\d+(?:\.\d+)*)", out.stdout + out.stderr)
    return match.group(1) if match else None


def version_tuple(version: str | None) -> tuple[int, ...]:
    return tuple(int(n) for n in version.split(".")) if version else ()


def status_environment(path: str) -> str | None:
    """Text of `nsys status -e` (CPU sampling readiness, paranoid level), or None when it cannot run."""
    try:
        out = subprocess.run([path, "status", "-e"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout + out.stderr).strip() or None


def profile_help(path: str) -> str:
    """`nsys profile --help`: option names changed across versions (--gpu-metrics-device became -devices)."""
    try:
        out = subprocess.run([path, "profile", "--help"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout + out.stderr


def profile_command(nsys: str, output_base: str | os.PathLike, program: list[str], *, trace: list[str],
                    sample: bool = False, cpuctxsw: bool = False, gpu_metrics: bool = False,
                    gpu_metrics_frequency: int = 2000, gpu_metrics_option: str = "--gpu-metrics-devices",
                    cuda_graph_trace: str | None = None, capture_range: str | None = None,
                    delay_s: float | None = None, duration_s: float | None = None) -> list[str]:
    """The `nsys profile` command line. `output_base` has no extension: nsys adds .nsys-rep.

    Always -f true: the caller checks for existing files itself, because without -f nsys silently writes a
    differently named report (nsys-report-XXXX.nsys-rep) instead of failing (seen with 2023.4)."""
    cmd = [nsys, "profile", f"--trace={','.join(trace)}",
           f"--sample={'process-tree' if sample else 'none'}",
           f"--cpuctxsw={'process-tree' if cpuctxsw else 'none'}",
           "-o", os.fspath(output_base), "-f", "true"]
    if gpu_metrics:
        cmd += [f"{gpu_metrics_option}=all" if gpu_metrics_option.endswith("s") else f"{gpu_metrics_option}=0",
                f"--gpu-metrics-frequency={gpu_metrics_frequency}"]
    if cuda_graph_trace:
        cmd.append(f"--cuda-graph-trace={cuda_graph_trace}")
    if capture_range:
        # Record inside the first instance of this range (e.g. a steady-state loop around many requests);
        # "stop" lets the program run on to its own end, so its exit code stays its own.
        cmd += ["--capture-range=nvtx", f"--nvtx-capture={capture_range}", "--capture-range-end=stop"]
    if delay_s:
        cmd.append(f"--delay={delay_s:g}")
    if duration_s:
        cmd.append(f"--duration={duration_s:g}")
    return cmd + list(program)


def export_sqlite(nsys: str | None, rep_path: str | os.PathLike, out_path: str | os.PathLike,
                  overwrite: bool = True) -> Path:
    """`nsys export --type sqlite` of one report into out_path; ToolMissing/BadInput with one line on failure.
    With overwrite=False an out_path that appears meanwhile is left alone (BadInput)."""
    import tempfile
    nsys = nsys or require_nsys()
    rep_path, out_path = Path(rep_path), Path(out_path)
    if not rep_path.is_file():
        raise BadInput(rep_path, "no such report file")
    # Export to a new private name (mkstemp) beside it and rename, so an interrupted export never looks like a
    # finished one and no file of the user's is ever taken for a temporary one.
    try:
        fd, name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".partial")
    except OSError as err:
        raise BadInput(out_path, f"cannot write the export ({err.strerror})") from None
    os.close(fd)
    partial = Path(name)
    cmd = [nsys, "export", "--type", "sqlite", "--force-overwrite", "true", "-o", str(partial), str(rep_path)]
    try:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S)
        except FileNotFoundError:
            raise ToolMissing(None, f"{nsys} cannot be run; {HOW_TO_GET_NSYS}") from None
        except subprocess.TimeoutExpired:
            raise ToolMissing(rep_path, f"`nsys export` took over {EXPORT_TIMEOUT_S} s and was stopped") from None
        if out.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
            raise BadInput(rep_path, f"`nsys export --type sqlite` failed: {last_error_line(out.stdout + out.stderr)}")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o666 & ~umask)       # as nsys would create it, not mkstemp's 0600
        move_into_place(partial, out_path, overwrite)
    finally:
        partial.unlink(missing_ok=True)
    return out_path


def move_into_place(src: Path, dst: Path, overwrite: bool) -> None:
    """Rename a finished file to its name; without `overwrite` never over a file that is there (a hard link fails
    when the name exists; where the file system has no hard links, checked just before the rename)."""
    try:
        if overwrite:
            os.replace(src, dst)
            return
        try:
            os.link(src, dst)
        except FileExistsError:
            raise BadInput(dst, "appeared while it was being written; refusing to overwrite it") from None
        except OSError:
            if os.path.lexists(dst):
                raise BadInput(dst, "appeared while it was being written; refusing to overwrite it") from None
            os.rename(src, dst)
    except OSError as err:
        raise BadInput(dst, f"cannot be written ({err.strerror or err})") from None


def last_error_line(text: str) -> str:
    """The most telling line of nsys output: the first one that says error/illegal/failed, else the last one."""
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip() and "%]" not in ln]
    for line in lines:
        if re.search(r"error|illegal|fail|cannot|not supported|permission", line, re.IGNORECASE):
            return line
    return lines[-1] if lines else "no output"


def remove_leftovers(output_base: str | os.PathLike) -> list[Path]:
    """Delete .qdstrm files nsys leaves when the import fails or is interrupted (about 2 GB for a GPU run)."""
    base = Path(output_base)
    removed = []
    for path in base.parent.glob(glob.escape(base.name) + "*.qdstrm"):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def gpu_metrics_option(help_text: str) -> str:
    """--gpu-metrics-devices (2024+) or --gpu-metrics-device (2023.x), whichever this nsys has."""
    return "--gpu-metrics-devices" if "--gpu-metrics-devices" in help_text else "--gpu-metrics-device"


def gpu_metrics_devices(path: str, option: str) -> str:
    """`nsys profile --gpu-metrics-device(s)=help`: the GPUs that can sample metrics, or why none can."""
    try:
        out = subprocess.run([path, "profile", f"{option}=help"], capture_output=True, text=True,
                             timeout=VERSION_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout + out.stderr).strip()


def gpu_metrics_available(devices_text: str) -> bool:
    """False when nsys says it has no GPU for metrics ('NVIDIA GPUs not found, feature is not available')."""
    return bool(devices_text) and not re.search(r"not found|not available|not supported|insufficient|permission",
                                                devices_text, re.IGNORECASE)


def cpu_sampling_ok(status_text: str | None) -> bool | None:
    """From `nsys status -e`: 'CPU Profiling Environment (process-tree): OK' -> True, FAIL -> False, absent -> None."""
    match = re.search(r"CPU Profiling Environment \(process-tree\):\s*(\w+)", status_text or "")
    return None if match is None else match.group(1).upper() == "OK"
