"""Impact in the metric that bounds the run, applied to every finding after the diagnoses ran.

Each diagnosis estimates what its fix saves per request in end-to-end latency. That is the right yardstick when each
request waits for its result (latency-bound runs). When requests queue on the GPU (throughput-bound runs,
model/queueing.py), most of the latency is waiting behind earlier requests, and what a fix buys is a shorter request
interval (1/throughput): the finding's `impact_ms` becomes that saving (`impact_basis` "interval"), `impact_pct` its
share of the interval, and the severity follows on the same scale as before (diagnose/common.py).

What a fix saves on the interval depends on which side it saves on and which side bounds the run:
- a GPU-side saving (less GPU time per request) in a GPU-bound run shortens the interval by the GPU time saved, until
  the CPU's own time per request becomes the bound; in a CPU-bound run it is worth only the time the request threads
  wait for the GPU;
- a CPU-side saving (less CPU time, fewer host waits, launches or stalls) in a GPU-bound run is worth only the GPU idle
  it removes (at most the GPU idle per request of the run); in a CPU-bound run it shortens the interval until the GPU
  becomes the bound.
"""
from __future__ import annotations

from ..report import Finding, severity_for
from ..diagnose.common import HIGH_PCT, MEDIUM_PCT

# The categories whose fix removes GPU time (kernel, copy or collective time on the device); the others remove CPU
# time or host waits, which the GPU sees only as idle.
GPU_SIDE = ("precision", "memory_bandwidth", "memory_transfer", "communication")


def gpu_time_saved_ns(f: Finding) -> float:
    """A GPU-side finding's saving as GPU time per request: precision and memory_bandwidth scale their GPU time saved
    by how far requests queue behind the same work (`queue_factor`) to get latency; undo that."""
    factor = f.evidence.numbers.get("queue_factor", 1.0)
    try:
        factor = max(float(factor), 1.0)
    except (TypeError, ValueError):
        factor = 1.0
    return f.impact_ms * 1e6 / factor


def rebase(findings: list[Finding], load: dict) -> list[Finding]:
    """Set impact_basis on every finding; in a throughput-bound run restate impact_ms / impact_pct / severity as the
    saving in the request interval. Findings already predicted by the replay (`whatif`, analysis/predict.py) are in
    the bounding metric already and stay as they are. Returns the findings ranked by the new impact."""
    if not load or load.get("load") != "throughput-bound":
        for f in findings:
            if not (f.whatif and f.whatif.get("used")):
                f.impact_basis = "latency"
        return findings
    iv = float(load["interval_ns"])
    gpu_bound = load["bound_by"] == "gpu"
    for f in findings:
        if f.whatif is not None and f.whatif.get("used"):
            continue
        gpu_side = f.category in GPU_SIDE
        x = gpu_time_saved_ns(f) if gpu_side else f.impact_ms * 1e6
        if gpu_side == gpu_bound:     # saving on the side that bounds: until the other side bounds
            other = load["cpu_need_ns"] if gpu_bound else load["gpu_need_ns"]
            cap, why = max(iv - other, 0.0), ("the CPU's own time per request" if gpu_bound else
                                                "the GPU's busy time per request")
            how = f"until {why} ({other / 1e6:.3g} ms) bounds the interval instead"
        else:                         # saving on the other side: only what it removes from the bound side's waiting
            cap = load["gpu_idle_per_request_ns"] if gpu_bound else load["sync_wait_per_request_ns"]
            how = ("at most the GPU idle per request in this GPU-bound run" if gpu_bound else
                   "at most the time the request threads wait for the GPU per request in this CPU-bound run")
            how += f" ({cap / 1e6:.3g} ms)"
        saved = max(0.0, min(x, cap, iv))
        pct = 100.0 * saved / iv if iv > 0 else 0.0
        f.estimate = (f"{f.estimate}. This run is throughput-bound (requests queue on the GPU), so the saving counted "
                      f"is in the request interval ({iv / 1e6:.3g} ms): {'GPU' if gpu_side else 'CPU-side'} time "
                      f"saved {x / 1e6:.3g} ms per request, {how}; the latency estimate was {f.impact_ms:.3g} ms")
        f.impact_ms = round(saved / 1e6, 3)
        f.impact_pct = round(min(pct, 100.0), 1)
        f.severity = severity_for(f.impact_pct, HIGH_PCT, MEDIUM_PCT)
        f.impact_basis = "interval"
    findings.sort(key=lambda f: -f.impact_ms)
    return findings
