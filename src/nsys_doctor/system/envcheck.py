"""What this machine can record: nsys and its version, GPUs and driver, perf_event_paranoid, and for each trace
feature whether it will work and what its absence costs the analysis. Plain data; cli/env.py shows it."""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version as package_version
from pathlib import Path

from . import nsys as nsys_tool

NVIDIA_SMI_TIMEOUT_S = 20          # nvidia-smi on a busy 8-GPU host takes a few seconds
MAX_PARANOID_FOR_SAMPLING = 2      # nsys samples its own process tree as non-root only at paranoid <= 2
# nsys 2023.4 (Debian trixie) records no ranges from nvtx >= 0.2.12 (seen: 0.2.12, 0.2.14, 0.2.16, 0.2.17 record
# nothing; 0.2.10 and 0.2.11 record every range); nsys 2025.3.1 records nvtx 0.2.17 (seen on the H100 host).
# 2024.x is untested: reported as fine.
NVTX_PY_FIRST_UNSEEN_BY_OLD_NSYS = (0, 2, 12)
NSYS_FIRST_NOT_KNOWN_BAD = (2024,)


@dataclass
class Feature:
    name: str
    flag: str                  # the nsys profile option that records it
    works: bool | None         # None: cannot tell before trying
    why: str                   # what decided `works`
    missing_means: str         # what the analysis loses without it


@dataclass
class Environment:
    nsys: str | None
    nsys_version: str | None
    driver: str | None
    gpus: list[str]
    perf_event_paranoid: int | None
    root: bool
    nvtx_package: str | None
    system: str
    features: list[Feature] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def read_paranoid() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/perf_event_paranoid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def query_gpus() -> tuple[str | None, list[str]]:
    """(driver version, ['NVIDIA H100 80GB HBM3 (81559 MiB)', ...]) from nvidia-smi; (None, []) without it."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None, []
    try:
        out = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None, []
    if out.returncode != 0:
        return None, []
    driver, gpus = None, []
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            gpus.append(f"{parts[0]} ({parts[2]})")
            driver = parts[1]
    return driver, gpus


def nvtx_package_version() -> str | None:
    try:
        return package_version("nvtx")
    except PackageNotFoundError:
        return None


def _numbers(text: str | None) -> tuple[int, ...]:
    return tuple(int(n) for n in text.split(".")[:3] if n.isdigit()) if text else ()


def nvtx_ranges_recorded(nsys_version: str | None, nvtx_version: str | None) -> tuple[bool | None, str]:
    """Whether this nsys records ranges made by this `nvtx` package (see NVTX_PY_FIRST_UNSEEN_BY_OLD_NSYS)."""
    if nvtx_version is None:
        return False, "the nvtx Python package is not installed (pip install nvtx)"
    old_nsys = _numbers(nsys_version) and _numbers(nsys_version) < NSYS_FIRST_NOT_KNOWN_BAD
    if old_nsys and _numbers(nvtx_version) >= NVTX_PY_FIRST_UNSEEN_BY_OLD_NSYS:
        return False, (f"nsys {nsys_version} records no ranges from nvtx {nvtx_version}: "
                       "use nvtx==0.2.11 or nsys 2025")
    return True, f"nvtx {nvtx_version}"


def check_environment() -> Environment:
    path = nsys_tool.find_nsys()
    version = nsys_tool.nsys_version(path) if path else None
    driver, gpus = query_gpus()
    paranoid = read_paranoid()
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    env = Environment(nsys=path, nsys_version=version, driver=driver, gpus=gpus, perf_event_paranoid=paranoid,
                      root=root, nvtx_package=nvtx_package_version(),
                      system=f"{platform.system()} {platform.release()} {platform.machine()}")
    no_nsys = "no nsys" if path is None else None

    sampling, sampling_why = None, "cannot tell"
    status = nsys_tool.status_environment(path) if path else None
    from_status = nsys_tool.cpu_sampling_ok(status)
    if no_nsys:
        sampling, sampling_why = False, no_nsys
    elif from_status is not None:
        sampling = from_status
        sampling_why = f"`nsys status -e`: process-tree {'OK' if from_status else 'FAIL'} (paranoid {paranoid})"
    elif paranoid is not None:
        sampling = root or paranoid <= MAX_PARANOID_FOR_SAMPLING
        sampling_why = f"perf_event_paranoid {paranoid}{' (root)' if root else ''}"

    has_gpu = bool(gpus)
    cuda_why = no_nsys or (f"{len(gpus)} GPU(s), driver {driver}" if has_gpu else "no NVIDIA GPU/driver (nvidia-smi)")
    metrics, metrics_why = False, no_nsys or "no GPU"
    if path:
        text = nsys_tool.gpu_metrics_devices(path, nsys_tool.gpu_metrics_option(nsys_tool.profile_help(path)))
        metrics = nsys_tool.gpu_metrics_available(text)
        devices = [ln.strip() for ln in text.splitlines() if re.match(r"\s*\d+:", ln)]   # "0: Hopper GH100 | ..."
        metrics_why = "; ".join(devices) if metrics and devices else (
            nsys_tool.last_error_line(text) if text else "nsys lists no device")
    nvtx_ok, nvtx_why = nvtx_ranges_recorded(version, env.nvtx_package)

    env.features = [
        Feature("CUDA tracing", "--trace=cuda", bool(path) and has_gpu, cuda_why,
                "no kernels, copies or CUDA API calls: no GPU findings at all"),
        Feature("NVTX ranges", "--trace=nvtx", bool(path) and nvtx_ok, no_nsys or nvtx_why,
                "no request ranges: requests are guessed from the GPU work, with wider error"),
        Feature("OS runtime", "--trace=osrt", bool(path) and platform.system() == "Linux", no_nsys or "Linux",
                "blocking OS calls (locks, sleeps, reads) are not seen as causes of CPU gaps"),
        Feature("CPU sampling", "--sample=process-tree", sampling, sampling_why,
                "no call stacks: CPU-bound time is found but not attributed to code"),
        Feature("Context switches", "--cpuctxsw=process-tree", sampling, sampling_why,
                "a waiting thread cannot be told from a busy one (contention findings weaker)"),
        Feature("GPU metrics", "--gpu-metrics-devices", metrics, metrics_why,
                "no SM activity or DRAM bandwidth: memory-bound and occupancy findings unavailable"),
    ]
    return env
