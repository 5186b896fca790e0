#!/usr/bin/env python3
"""Compare two folders of `nsys-doctor analyze --format json` outputs (as /work/dump_json.sh writes them: NAME.json,
NAME.err, NAME.rc): which files differ, and where in the JSON. Used to show a refactoring changes no output.

usage: compare_json.py BEFORE_DIR AFTER_DIR
"""
from __future__ import annotations

import json
import pathlib
import sys


def diff(a, b, path="", out=None):
    out = [] if out is None else out
    if type(a) is not type(b):
        out.append(f"{path}: {a!r:.80} != {b!r:.80}")
    elif isinstance(a, dict):
        if list(a) != list(b):
            out.append(f"{path}: keys {list(a)[:6]} != {list(b)[:6]}")
        for k in a.keys() & b.keys():
            diff(a[k], b[k], f"{path}/{k}", out)
    elif isinstance(a, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} items != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"{path}: {a!r:.80} != {b!r:.80}")
    return out


def main(before: str, after: str) -> int:
    b, a = pathlib.Path(before), pathlib.Path(after)
    names = sorted({p.name for p in b.iterdir()} | {p.name for p in a.iterdir()})
    differ = 0
    for n in names:
        pb, pa = b / n, a / n
        if not pb.exists() or not pa.exists():
            print(f"{n}: only in {'after' if pa.exists() else 'before'}")
            differ += 1
        elif pb.read_bytes() != pa.read_bytes():
            differ += 1
            where = []
            if n.endswith(".json"):
                try:
                    where = diff(json.loads(pb.read_text()), json.loads(pa.read_text()))
                except ValueError:
                    pass
            print(f"{n}: differs" + "".join(f"\n    {w}" for w in where[:8]))
    print(f"{len(names)} files, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
