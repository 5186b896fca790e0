"""Scaffolding shared by the newer examples, not part of any example's lesson: an NVTX range, the timed serving
loop and a CUDA graph capture (Python finds this file in the script's own folder, as ab.py).

serve_timed(serve, warmup, requests) is what those programs measure: nsys's capture range starts (cudaProfilerStart:
recorded with `--capture-range=cudaProfilerApi`), `warmup` requests are served, the GPU drained, then `requests`
requests are timed from there to a final drain, and the capture range stops. It returns the seconds of the timed
requests; the program prints its own line from them (record_examples.sh reads "N requests in S s (M ms/request)")."""
import contextlib
import time

import torch

CUDA = torch.cuda.is_available()


@contextlib.contextmanager
def nvtx(name):
    """An NVTX push/pop range, visible in Nsight Systems on the thread that runs it (nothing on a CPU-only build)."""
    if CUDA:
        torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        if CUDA:
            torch.cuda.nvtx.range_pop()


def serve_timed(serve, warmup: int, requests: int) -> float:
    """serve(i) for i in range(warmup), then the timed serve(i) for i in range(requests): seconds of the latter."""
    if CUDA:
        torch.cuda.profiler.start()      # nsys --capture-range=cudaProfilerApi records from here (warm-up on)
    for i in range(warmup):
        serve(i)
    if CUDA:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(requests):
        serve(i)
    if CUDA:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    if CUDA:
        torch.cuda.profiler.stop()       # ... to here: the served requests, not start-up and exit
    return dt


def capture_graph(forward, warmup: int = 3):
    """forward() captured once in a CUDA graph, after `warmup` runs on a side stream (torch.cuda.graph wants the
    kernels' one-time set-up done first): (the graph, forward's output in the graph's static memory)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            forward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = forward()
    return graph, out
