"""Report -> JSON text (docs/json-schema.md)."""
from __future__ import annotations

import json
import math

from ..report import Report


def _clean(x):
    # JSON has no NaN or infinity: say "unknown" with null. Every key is kept, as on the fast path: keys come from
    # the profile too (TensorRT's "__myl_*" kernel family), so a leading "_" does not mark a private one (the
    # Report holds none: the timeline drops its "_sort" where it makes it)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):   # numpy scalars
        return _clean(x.item())
    return x


def _plain(x):
    """json.dumps fallback for numpy scalars and arrays."""
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


# Bulk data (timeline events, per-request columns) is written on one line per section: json indents only through its
# pure-Python encoder, which took 0.13 s of a 0.4 s command on launch_bound's 1.5 MB report; unindented, C does it
BULK = ("timeline", "per_request")


def render(report: Report | dict, indent: int | None = 2) -> str:
    d = report.to_dict() if isinstance(report, Report) else report
    try:   # the common case: nothing to clean, in C but for the small sections
        return _dumps(d, indent, allow_nan=False, default=_plain)
    except (ValueError, TypeError):   # NaN/inf or a numpy array: the careful walk
        return _dumps(_clean(d), indent)


def _dumps(d, indent, **kw) -> str:
    if indent is None or not isinstance(d, dict) or not any(k in d for k in BULK):
        return json.dumps(d, indent=indent, ensure_ascii=False, **kw)
    pad = " " * indent
    parts = []
    for k, v in d.items():
        if k in BULK:
            text = json.dumps(v, ensure_ascii=False, separators=(",", ":"), **kw)
        else:
            text = json.dumps(v, indent=indent, ensure_ascii=False, **kw).replace("\n", "\n" + pad)
        parts.append(f"{pad}{json.dumps(str(k), ensure_ascii=False)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}" if parts else "{}"
