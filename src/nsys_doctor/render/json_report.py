"""Report -> JSON text (docs/json-schema.md)."""
from __future__ import annotations

import json
import math

from ..report import Report


def _clean(x):
    # JSON has no NaN or infinity: say "unknown" with null
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items() if not str(k).startswith("_")}
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


def render(report: Report | dict, indent: int | None = 2) -> str:
    d = report.to_dict() if isinstance(report, Report) else report
    try:   # the common case: nothing to clean, one pass in C
        return json.dumps(d, indent=indent, ensure_ascii=False, allow_nan=False, default=_plain)
    except (ValueError, TypeError):   # NaN/inf or a private key to drop: the careful walk
        return json.dumps(_clean(d), indent=indent, ensure_ascii=False)
