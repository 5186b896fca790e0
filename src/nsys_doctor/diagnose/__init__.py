"""Diagnoses: one module per bottleneck, each with `NEEDS` and `diagnose(ctx) -> list[Finding]`.

A new diagnosis is one new module in this folder plus its name in DIAGNOSES. `diagnose_all` runs them all over one
Context (the trace and its requests), keeps every finding, and ranks by impact.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from ..model.requests import Requests
from ..model.trace import Trace
from ..report import Finding

# Order matters only for gpu_idle, which runs last and sees what the others explained (ctx.cache["findings"]).
DIAGNOSES: list[str] = ["cuda_sync", "launch_overhead", "cpu_work", "transfers", "dram_bandwidth", "precision",
                        "thread_contention", "communication", "model_loading", "gpu_idle"]


@dataclass
class Context:
    trace: Trace
    requests: Requests
    cache: dict = field(default_factory=dict)   # shared intermediate results between diagnoses

    @property
    def measured(self) -> np.ndarray:
        return self.requests.measured

    @property
    def mean_latency_ns(self) -> float:
        lat = self.requests.table["latency_ns"][self.measured]
        return float(lat.mean()) if len(lat) else 0.0


def diagnose_all(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    ctx.cache["findings"] = findings
    for name in DIAGNOSES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                continue        # not written yet
            raise
        findings.extend(mod.diagnose(ctx) or [])
    findings.sort(key=lambda f: -f.impact_ms)
    return findings
