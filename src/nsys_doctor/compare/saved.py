"""Reports saved with `nsys-doctor analyze --format json`, read back for `diff`, `check` and `export`.

A saved report is checked against the documented schema (report.schema.json beside report.py, explained in
docs/json-schema.md) before anything uses it: a file with `requests` as a list, a finding that is not an object, a
severity "critical", a string where a number belongs, a missing field, a null or a NaN where a measurement belongs,
is one error naming the file, the place in it and what was expected (exit 2), never a traceback halfway through a
comparison and never a gate that passes because a number could not be compared.
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
from importlib import resources

from ..errors import BadInput, NoData
from ..report import Report

SCHEMA_FILE = "report.schema.json"
# The first key of the top-level object tells a saved report from a PyTorch profiler trace without parsing it
# (Kineto traces start with schemaVersion, deviceProperties, traceEvents, ...; none is a key of a Report), so a
# 300 MB trace is not parsed twice. Read this much of the head to find it.
HEAD_BYTES = 4096
FIRST_KEY = re.compile(rb'^\s*\{\s*"((?:[^"\\]|\\.)*)"')
REPORT_KEYS = {"profile", "requests", "findings", "verdict", "per_request", "notes", "timeline", "schema_version",
               "tool"}
BOOLEAN_COLUMNS = ("warmup",)          # per_request columns of true/false
# per_request columns of finite numbers (what diff and check compute with); a column added by a later 1.x version
# only has to be a list as long as the others
NUMBER_COLUMNS = ("start_ns", "latency_ms", "cpu_ms", "compute_ms", "copy_ms", "other_gpu_ms", "idle_ms", "launches",
                  "queue_ms", "service_ms", "queued_behind")
INT64_MIN, INT64_MAX = -2**63, 2**63 - 1   # the widest integers the tool writes (ns on the profile's clock)
MAX_SHOWN = 60                         # characters of a wrong value quoted in the error


def first_key(path) -> str | None:
    """The first key of the JSON object in `path`, or None when the file does not start with one."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    m = FIRST_KEY.match(head.removeprefix(b"\xef\xbb\xbf"))
    return m.group(1).decode("utf-8", "replace") if m else None


def is_saved_report(path) -> bool:
    return first_key(path) in REPORT_KEYS


def read_saved(path, range_name: str | None = None) -> Report | None:
    """The saved report at `path`, validated; None when the file is not one (a profile: the caller analyses it).
    The caller has checked that `path` is a regular file (read.require_file)."""
    path = os.fspath(path)
    if not is_saved_report(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except UnicodeDecodeError as err:
        raise BadInput(path, f"not valid UTF-8 JSON ({err.reason} at byte {err.start})")
    except (ValueError, RecursionError) as err:
        raise BadInput(path, f"not valid JSON ({err})")
    problem = validate(data)
    if problem:
        raise BadInput(path, f"not a valid saved report ({problem}; the fields are in docs/json-schema.md)")
    if range_name and data["requests"].get("range") != range_name:
        raise BadInput(path, f"saved report measured range {data['requests'].get('range')!r}, not "
                             f"{range_name!r}; re-run analyze on the profile with --range")
    report = Report.from_dict(data)
    if measured_count(data["per_request"]) == 0:
        raise NoData(path, "the saved report has no measured requests (per_request.latency_ms is empty or all "
                           "warm-up); save it again with nsys-doctor analyze --format json")
    return report


def measured_count(per_request: dict) -> int:
    warm = per_request.get("warmup")
    n = len(per_request["latency_ms"])
    return n - sum(bool(w) for w in warm) if isinstance(warm, list) and len(warm) == n else n


def validate(data) -> str | None:
    """What is wrong with `data` as a saved report, in one phrase, or None when nothing is."""
    error = _first_error(data)
    if error is not None:
        return error
    return _per_request_problem(data["per_request"]) or _timeline_problem(data.get("timeline") or {})


def _first_error(data) -> str | None:
    import jsonschema      # only saved reports need it (0.1 s of import)
    error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    return None if error is None else _describe(error)


@functools.lru_cache(maxsize=1)
def _validator():
    import jsonschema
    schema = json.loads(resources.files("nsys_doctor").joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))
    base = jsonschema.Draft202012Validator
    # JSON Schema's "number" admits NaN and infinity (Python's json reads the NaN and Infinity tokens); a measurement
    # that is not finite cannot be compared, and nsys-doctor writes null for one, so a saved report never holds them
    checker = base.TYPE_CHECKER.redefine("number", lambda _, x: _finite(x))
    return jsonschema.validators.extend(base, type_checker=checker)(schema)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _finite(x) -> bool:
    """A number that can be compared: a finite float, or an integer that fits int64 (ns timestamps do; a
    5000-digit one would not even convert to a float)."""
    return _is_number(x) and (math.isfinite(x) if isinstance(x, float) else INT64_MIN <= x <= INT64_MAX)


def _where(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the top level"


def _kind(x) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else "infinite"
    if isinstance(x, int) and not _finite(x):
        return "an integer beyond 64 bits"
    if _is_number(x):
        return "a number"
    return {str: "a string", list: "a list", dict: "an object"}.get(type(x), type(x).__name__)


def _shown(x) -> str:
    text = json.dumps(x, ensure_ascii=False) if not isinstance(x, float) or math.isfinite(x) else _kind(x)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def _describe(e) -> str:
    where, x, v = _where(e.absolute_path), e.instance, e.validator_value
    if e.validator == "type":
        want = " or ".join({"object": "an object", "array": "a list", "string": "a string", "number": "a finite number",
                            "integer": "an integer", "boolean": "true or false", "null": "null"}[t]
                           for t in ([v] if isinstance(v, str) else v))
        return f"{where} is {_kind(x) if not isinstance(x, str) else 'the string ' + _shown(x)}, expected {want}"
    if e.validator == "enum":
        return f"{where} is {_shown(x)}, expected one of {', '.join(map(str, v))}"
    if e.validator == "required":
        missing = next((k for k in v if k not in x), v[0]) if isinstance(x, dict) else v[0]
        return f"{where} has no {missing!r}"
    if e.validator == "pattern" and list(e.absolute_path) == ["schema_version"]:
        return f"schema_version {_shown(x)}: this nsys-doctor reads schema 1.x"
    if e.validator == "minimum":
        return f"{where} is {_shown(x)}, expected {v} or more"
    if e.validator in ("minItems", "maxItems"):
        return f"{where} has {len(x)} items, expected {'at least' if e.validator == 'minItems' else 'at most'} {v}"
    message = e.message if len(e.message) <= 2 * MAX_SHOWN else e.message[:2 * MAX_SHOWN] + "..."
    return f"{where}: {message}"


# The bulk sections (per-request columns, timeline events: up to tens of thousands of values) are checked here in a
# plain loop: through jsonschema each value cost ~0.1 ms (1.0 s for thread_contention's report), here < 1 us.

def _per_request_problem(pr: dict) -> str | None:
    """Equal lengths, true/false in the warm-up column, finite numbers in the measured ones."""
    n = len(pr["latency_ms"])
    for name, col in pr.items():
        where = f"per_request.{name}"
        if len(col) != n:
            return f"{where} has {len(col)} values, per_request.latency_ms {n}"
        if name not in BOOLEAN_COLUMNS + NUMBER_COLUMNS:
            continue
        if name in BOOLEAN_COLUMNS:
            bad = next((i for i, x in enumerate(col) if not isinstance(x, bool)), None)
            if bad is not None:
                return f"{where}[{bad}] is {_kind(col[bad])}, expected true or false"
            continue
        bad = next((i for i, x in enumerate(col) if not _finite(x)), None)
        if bad is not None:
            return f"{where}[{bad}] is {_kind(col[bad])}, expected a finite number"
    return None


EVENT_TYPES = (int, int, str, int, str)      # start_ns, end_ns, name, lane, kind (timeline.event_fields)


def _timeline_problem(tl: dict) -> str | None:
    """Each excerpt's events are [start_ns, end_ns, name, lane, kind] and its metric points [time, value]."""
    for i, ex in enumerate(tl.get("excerpts") or []):
        for j, e in enumerate(ex.get("events") or []):
            if not (isinstance(e, list) and len(e) == len(EVENT_TYPES) and all(
                    isinstance(x, t) and not isinstance(x, bool) for x, t in zip(e, EVENT_TYPES)) and e[3] >= 0):
                return (f"timeline.excerpts[{i}].events[{j}] is {_shown(e)}, expected [start_ns, end_ns, name, "
                        "lane, kind]")
        for j, m in enumerate(ex.get("metrics") or []):
            for k, pt in enumerate(m.get("points") or []):
                if not (isinstance(pt, list) and len(pt) >= 2 and all(_finite(x) for x in pt[:2])):
                    return f"timeline.excerpts[{i}].metrics[{j}].points[{k}] is {_shown(pt)}, expected [time, value]"
    return None
