"""Precision: matrix multiplies and convolutions run in fp32 on the CUDA cores (FFMA, SGEMM) of a GPU that has tensor
cores, which would run the same math several times faster in TF32, FP16/BF16 or INT8."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..model.arrays import distinct_ids, id_mask
from ..model.changes import ScaleGpuWork
from ..model.device import gpu_names, tensor_core_speedup
from ..model.gpu_metrics import metric_during
from ..model.kernel_classes import CUDA_CORE, TENSOR_CORE
from ..report import Evidence
from .common import WORST, instance, latency_saving, make_finding
from .common import no_data, not_evaluated

# GPUs without tensor cores (Maxwell, Pascal and older): the fix does not exist there
NO_TENSOR_CORE_GPU = re.compile(r"\b(K\d+|M\d+|P\d+|GTX|Tesla [KMP])", re.I)
TC_SPEEDUP = 2.0            # assumed speed-up of the tensor-core path: TF32 dense peak is ~7x FP32 FFMA on H100/A100
                            # (495 vs 67 TFLOP/s), large GEMMs reach 3-5x; 2x keeps the estimate conservative
TENSOR_ACTIVE_MAX_PCT = 10.0  # while those kernels ran; above it they do use tensor cores (fp32_gemm: 0.8%;
                            # healthy's real tensor-core kernels read 11-21% blended)
MIN_SHARE_PCT = 1.0         # under 1% of latency: not worth a line

CATEGORIES = ("precision",)
NEEDS = ("kernels",)


@dataclass
class Measurement:
    impact_ns: float            # mean latency saving over measured requests
    factor: float               # mean queueing factor (latency_saving)
    cc_rows: np.ndarray         # kernel rows: fp32 GEMM/conv kernels on CUDA cores inside measured requests
    cc_ns: np.ndarray           # per request: their time
    tensor_active_pct: float | None   # 'Tensor Active' GPU metric while they ran (None: not recorded)
    sm_issue_pct: float | None
    speedup: float = 0.0        # the GPU's documented tensor-core speed-up (model/device.py); 0: unknown


def measure(ctx) -> Measurement | None:
    trace, rq = ctx.trace, ctx.requests
    k = trace.table("kernels")
    if "kernels" in trace.absent:
        return not_evaluated(ctx, CATEGORIES, no_data(trace, "kernels", "CUDA kernels"))
    kreq = rq.gpu_request.get("kernels", np.zeros(0, np.int64))
    inreq = kreq >= rq.warmup
    if not inreq.any() or ctx.mean_latency_ns <= 0:
        return None
    gpus = gpu_names(trace)
    if gpus and all(NO_TENSOR_CORE_GPU.search(g) for g in gpus):
        return None
    ids = distinct_ids(k["name_id"][inreq])
    cc_ids = [int(i) for i in ids if _cuda_core(trace.name(i))]
    if not cc_ids:
        return None
    is_cc = inreq & id_mask(k["name_id"], cc_ids)
    dur = (k["end_ns"] - k["start_ns"]).astype(np.float64)
    cc_ns = np.bincount(kreq[is_cc], weights=dur[is_cc], minlength=rq.count)
    tensor = metric_during(trace, "Tensor Active", k["start_ns"][is_cc], k["end_ns"][is_cc])
    issue = metric_during(trace, "SM Issue", k["start_ns"][is_cc], k["end_ns"][is_cc])
    if tensor is not None and tensor > TENSOR_ACTIVE_MAX_PCT:
        return None       # names say fp32, but the tensor pipes are busy: not this problem
    impact, factor = latency_saving(ctx, cc_ns * (1.0 - 1.0 / TC_SPEEDUP))
    if 100.0 * impact / ctx.mean_latency_ns < MIN_SHARE_PCT:
        return None
    return Measurement(impact_ns=impact, factor=factor, cc_rows=np.flatnonzero(is_cc), cc_ns=cc_ns,
                       tensor_active_pct=tensor, sm_issue_pct=issue, speedup=tensor_core_speedup(trace) or 0.0)


def change(m: Measurement) -> list:
    """The CUDA-core matrix kernels run on tensor cores: the GPU's documented BF16 tensor-core / FP32 peak ratio
    faster (model/device.py), TC_SPEEDUP on a GPU not in that table."""
    return [ScaleGpuWork("kernels", m.cc_rows, 1.0 / (m.speedup or TC_SPEEDUP))]


def finding(ctx, m: Measurement) -> list:
    trace, rq = ctx.trace, ctx.requests
    k = trace.table("kernels")
    kreq = rq.gpu_request.get("kernels", np.zeros(0, np.int64))
    numbers = {"cuda_core_gemm_ms_per_request": round(float(m.cc_ns[ctx.measured].mean()) / 1e6, 3),
               "own_gpu_ms_per_request": round(float(rq.table["busy_ns"][ctx.measured].mean()) / 1e6, 3)}
    own = numbers["own_gpu_ms_per_request"]
    numbers["cuda_core_gemm_share_of_gpu_pct"] = round(100 * numbers["cuda_core_gemm_ms_per_request"] / own, 1) \
        if own else 0.0
    notes = []
    if m.tensor_active_pct is not None:
        numbers["tensor_active_pct_during"] = round(m.tensor_active_pct, 1)
    else:
        notes.append("no 'Tensor Active' GPU metric (record with --gpu-metrics-devices=all); judged by kernel names")
    if m.sm_issue_pct is not None:
        numbers["sm_issue_pct_during"] = round(m.sm_issue_pct, 1)
    factor = m.factor
    numbers["queue_factor"] = round(factor, 2)
    dur = (k["end_ns"] - k["start_ns"]).astype(np.float64)
    idx = m.cc_rows[np.argsort(-dur[m.cc_rows], kind="stable")]
    seen, worst = set(), []
    for i in idx:                        # the longest instance of each distinct kernel
        if k["name_id"][i] in seen:
            continue
        seen.add(k["name_id"][i])
        worst.append(instance(ctx, int(kreq[i]), int(k["start_ns"][i]), int(k["end_ns"][i]),
                              "fp32 matrix kernel on CUDA cores (FFMA)", tid=int(rq.table["tid"][kreq[i]]),
                              name=trace.name(k["name_id"][i])))
        if len(worst) >= WORST:
            break
    return [make_finding(
        ctx, "precision",
        f"fp32 matrix math on CUDA cores, no tensor cores: {numbers['cuda_core_gemm_ms_per_request']:.1f} ms of "
        f"{own:.1f} ms GPU per request", m.impact_ns,
        f"time of CUDA-core GEMM/conv kernels x (1 - 1/{TC_SPEEDUP:g}), assuming the tensor-core path is at least "
        f"{TC_SPEEDUP:g}x faster (TF32 peak is ~7x FP32 on A100/H100, BF16 ~14x); x{factor:.1f} where requests queue "
        "on a saturated GPU behind the same work",
        Evidence(numbers=numbers, worst=worst, notes=notes),
        ("Let the matmuls use tensor cores: TF32 with `torch.set_float32_matmul_precision('high')` (or "
         "torch.backends.cuda.matmul.allow_tf32 = True and torch.backends.cudnn.allow_tf32 = True), or run the "
         "model in FP16/BF16 with torch.autocast / model.half(); for deployment build a TensorRT engine in "
         "FP16/INT8 (calibrated or quantised). Check accuracy once after the switch."),
        ("Without TF32 or 16-bit types, cuBLAS/cuDNN pick FFMA kernels that run on the ordinary fp32 CUDA cores; "
         "tensor cores do the same matrix math many times faster, and they sit idle here."))]


def diagnose(ctx) -> list:
    m = measure(ctx)
    return [] if m is None else finding(ctx, m)


def _cuda_core(name: str) -> bool:
    low = name.lower()
    return bool(CUDA_CORE.search(low)) and not TENSOR_CORE.search(low)
