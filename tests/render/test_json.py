"""JSON rendering: the careful path (taken when a value is NaN) writes the same keys as the fast one."""
from __future__ import annotations

import json

from nsys_doctor.render import json_report

from ..conftest import zoo_report


def test_both_paths_keep_the_same_keys():
    d = zoo_report("healthy").to_dict()
    # keys from a profile may start with "_" (TensorRT's "__myl_*" kernel family, as in the external TensorRT
    # exports): injected here, with a NaN to force the careful path (synthetic edge case)
    d["profile"] = {**d["profile"], "tensorrt": {"kernel_families": {"__myl_* / myelin": 3}}}
    fast = json.loads(json_report.render(d))
    d["requests"] = {**d["requests"], "unknown_ms": float("nan")}
    slow = json.loads(json_report.render(d))
    assert slow["requests"].pop("unknown_ms") is None
    assert slow == fast
    assert fast["profile"]["tensorrt"]["kernel_families"] == {"__myl_* / myelin": 3}
