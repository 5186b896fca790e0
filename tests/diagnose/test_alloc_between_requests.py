"""memory_allocation._alloc_rows on a hand-made edge case (synthetic: no recording has two request threads that
allocate between their requests): which allocation calls outside the ranges are the serving loop's, and whose."""
from types import SimpleNamespace

import numpy as np

from nsys_doctor.diagnose import memory_allocation

NAMES = {1: "cudaMalloc_v3020", 2: "cudaFree_v3020", 3: "cudaLaunchKernel_v7000"}


def _ctx():
    # two request threads A (1) and B (2), their ranges interleaved in time; thread C (3) serves none
    A, B, C = 1, 2, 3
    req = {"tid": np.array([A, B, A, B]), "start_ns": np.array([0, 5, 20, 25]), "end_ns": np.array([10, 15, 30, 35])}
    order = np.argsort(req["start_ns"])
    req = {k: v[order] for k, v in req.items()}
    #            A free   B free   A free   C malloc  A malloc  A launch  B malloc
    api_tid = np.array([A, B, A, C, A, A, B])
    api_s = np.array([12, 17, 32, 16, 22, 24, 26])
    api_name = np.array([2, 2, 2, 1, 1, 3, 1])
    # per call: its request (-1 outside any): A's malloc and launch at 22-24 are in A's 2nd range (index 2), B's
    # malloc at 26 in B's 2nd (index 3)
    api_req = np.array([-1, -1, -1, -1, 2, 2, 3])
    api = {"tid": api_tid, "start_ns": api_s, "end_ns": api_s + 1, "name_id": api_name}
    trace = SimpleNamespace(table=lambda name: api, name=lambda i: NAMES[int(i)])
    rq = SimpleNamespace(api_request=api_req, table=req, warmup=0)
    return SimpleNamespace(trace=trace, requests=rq)


def test_between_requests_calls_belong_to_the_request_before_on_their_thread():
    rows, owner, between = memory_allocation._alloc_rows(_ctx())
    got = {int(r): (int(o), bool(b)) for r, o, b in zip(rows, owner, between)}
    # A's free at 12: after A's 1st request (index 0), before its 2nd -> the request path, owned by index 0;
    # B's free at 17: after B's 1st (index 1), before its 2nd -> owned by 1; A's free at 32: after A's last
    # request, no request follows on A -> not the request path; C's malloc: no request on C -> not counted;
    # the mallocs inside ranges keep their request; the launch is no allocation call
    assert got == {0: (0, True), 1: (1, True), 4: (2, False), 6: (3, False)}
