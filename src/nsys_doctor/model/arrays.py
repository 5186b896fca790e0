"""Array helpers that numpy does slowly for our shapes.

`np.unique(x)` without return_* options takes a hash-based path in numpy 2.3+ that is ~15x slower than sorting on
millions of distinct int64 ids (2.3 s vs 0.14 s for 2.4M correlation keys, measured on launch_bound x10).
"""
from __future__ import annotations

import numpy as np


def uniq(a) -> np.ndarray:
    """Sorted distinct values of a 1-d array (np.unique's result, through a plain sort)."""
    a = np.asarray(a)
    if a.dtype.kind not in "iufb" or a.ndim != 1:
        return np.unique(a)
    if len(a) == 0:
        return a.copy()
    s = np.sort(a, kind="stable")
    keep = np.empty(len(s), bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]
