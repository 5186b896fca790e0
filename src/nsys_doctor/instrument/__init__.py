"""NVTX annotation for user code, so `nsys-doctor analyze` can find requests and their phases.

    from nsys_doctor.instrument import request, phase

    with request():                      # one NVTX push/pop range named "Inference" per request
        with phase("preprocess"): x = prep(raw)
        with phase("infer"):      y = model(x)
        with phase("postprocess"): out = post(y)

    @request()                           # or as a decorator
    def handle(raw): ...

Built on the `nvtx` package: when no profiler is attached it hands back a no-op domain, so the ranges cost a
few hundred nanoseconds (benchmarks/bench_instrument.py measures it). Ranges are push/pop, i.e. per thread:
open and close a request on the same thread.
"""
from __future__ import annotations

from functools import lru_cache

import nvtx

from .wrappers import wrap_onnxruntime_session, wrap_tensorrt_context, wrap_torch_module

REQUEST_RANGE = "Inference"   # the range name `analyze` looks for by default (analyze --range changes it)
PREPROCESS, INFER, POSTPROCESS = "preprocess", "infer", "postprocess"   # the phase names the report knows

__all__ = ["REQUEST_RANGE", "PREPROCESS", "INFER", "POSTPROCESS", "request", "phase",
           "wrap_tensorrt_context", "wrap_torch_module", "wrap_onnxruntime_session"]


@lru_cache(maxsize=1024)
def _range(name: str, domain: str | None) -> nvtx.annotate:
    # One annotate object per name: it registers the string once, and entering it again only pushes a range.
    # NVTX push/pop keeps its stack per thread, so sharing the object across threads and nesting levels is safe.
    return nvtx.annotate(name, domain=domain, color=None)


def request(name: str = REQUEST_RANGE, domain: str | None = None) -> nvtx.annotate:
    """One request: `with request(): ...` or `@request()`. The name is what `analyze --range` matches."""
    return _range(name, domain)


def phase(name: str, domain: str | None = None) -> nvtx.annotate:
    """A phase inside a request: "preprocess", "infer", "postprocess" or any name; context manager or decorator."""
    return _range(name, domain)
