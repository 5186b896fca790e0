"""On the GPU machine: what sets the GPU's clock when a fix keeps it busier? Samples NVML (SM clock, power draw, power
limit, temperature, clock event reasons) every SAMPLE_S while it runs (1) the cuda_sync example programs slow and
fixed, one after the other, and (2) a duty-cycle sweep of one kernel: bursts of a bf16 matrix product (compute-bound)
or of a large elementwise add (DRAM-bound), with idle time between bursts set for a target duty, timing each burst's
kernels with CUDA events. Writes $OUT/nvml.csv (samples), $OUT/phases.json (what ran when, programs' output, the sweep's
per-phase kernel times). For docs/clock.md; not a test.

usage (device machine): python3 benchmarks/device_clock_probe.py OUTDIR
"""
import json
import os
import subprocess
import sys
import threading
import time

import pynvml
import torch

SAMPLE_S = 0.01          # NVML's clock and power readings update at about this rate or slower
PHASE_S = 4.0            # each sweep phase: long enough for a power or thermal controller to settle (seconds)
BURST_S = 0.005          # one burst of back-to-back kernels: the examples' requests are 5-13 ms of GPU work
DUTIES = (1.0, 0.9, 0.75, 0.5)
REASONS = {"sw_power_cap": 0x4, "hw_slowdown": 0x8, "sw_thermal": 0x20, "hw_thermal": 0x40, "hw_power_brake": 0x80,
           "gpu_idle": 0x1}


def sampler(handle, rows, stop):
    while not stop.is_set():
        t = time.time()
        try:
            r = pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
        except pynvml.NVMLError:
            r = -1
        rows.append((t, pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
                     pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
                     pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
                     pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU), r))
        time.sleep(SAMPLE_S)


def sweep(kind, phases):
    if kind == "gemm":
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        op = lambda: torch.mm(a, b)                                        # noqa: E731
    else:
        a = torch.randn(256 << 20, device="cuda", dtype=torch.float16)     # 512 MB: far past L2
        b = torch.randn(256 << 20, device="cuda", dtype=torch.float16)
        op = lambda: torch.add(a, b)                                       # noqa: E731
    for _ in range(20):
        op()
    torch.cuda.synchronize()
    ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ev0.record()
    for _ in range(10):
        op()
    ev1.record()
    torch.cuda.synchronize()
    per_op = ev0.elapsed_time(ev1) / 10 / 1e3
    n_burst = max(1, round(BURST_S / per_op))
    for duty in DUTIES:
        t0 = time.time()
        times = []
        while time.time() - t0 < PHASE_S:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for _ in range(n_burst):
                op()
            e.record()
            e.synchronize()
            ms = s.elapsed_time(e)
            times.append(ms / n_burst)
            idle = ms / 1e3 * (1 - duty) / duty
            if idle > 0:
                time.sleep(idle)
        phases.append({"what": f"{kind} duty {duty}", "start": t0, "end": time.time(), "per_kernel_ms": times,
                       "kernels_per_burst": n_burst})
        time.sleep(1.0)


def main():
    out = sys.argv[1]
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    rows, stop, phases = [], threading.Event(), []
    th = threading.Thread(target=sampler, args=(h, rows, stop), daemon=True)
    th.start()
    time.sleep(1.0)
    progs = [["examples/sleep_poll.py", "--requests", "300"], ["examples/sleep_poll.py", "--fixed", "--requests", "300"],
             ["examples/layer_timing_sync.py", "--batch", "96", "--requests", "300"],
             ["examples/layer_timing_sync.py", "--batch", "96", "--fixed", "--requests", "300"],
             ["examples/elementwise_fusion.py", "--requests", "4000"]]
    for p in progs:
        t0 = time.time()
        r = subprocess.run([sys.executable] + p, capture_output=True, text=True, env=dict(os.environ))
        phases.append({"what": " ".join(p), "start": t0, "end": time.time(), "rc": r.returncode,
                       "stdout": r.stdout[-3000:], "stderr": r.stderr[-1500:]})
        time.sleep(2.0)
    for kind in ("gemm", "add"):
        sweep(kind, phases)
    stop.set()
    th.join()
    with open(os.path.join(out, "nvml.csv"), "w") as f:
        f.write("t,sm_mhz,power_w,limit_w,temp_c,reasons\n")
        for r in rows:
            f.write(",".join(str(x) for x in r) + "\n")
    with open(os.path.join(out, "phases.json"), "w") as f:
        json.dump({"device": torch.cuda.get_device_name(0), "reasons": REASONS, "phases": phases}, f)


if __name__ == "__main__":
    main()
