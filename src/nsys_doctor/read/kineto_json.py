"""PyTorch profiler (Kineto) Chrome-trace JSON -> the same model tables as an Nsight Systems export.

docs/kineto.md has the full mapping. In short: kernel, gpu_memcpy, gpu_memset, cuda_runtime/cuda_driver, cuda_sync
and user_annotation events (2020 traces: Kernel, Memcpy, Memset, Runtime, Operator) fill kernels, copies, memsets,
api_calls, syncs and ranges. Other cpu_op and python_function events are not ranges: tens of thousands, no requests.
`ProfilerStep#N` is renamed `ProfilerStep#*` (STEP_RANGE) so the steps are one repeated range, the natural request
of a training loop; the numbers stay in `meta["profiler_steps"]`.
Times: `ts`/`dur` are microseconds, in recent traces with three decimals (ns); floats are parsed as text and
converted exactly (float64 keeps ~0.25 us of a 1.7e15 us timestamp), then re-based to the first event.
Hostile input: an event whose time is not a finite number of microseconds within int64 ns, whose args are not an
object or whose pid/tid/cat is not a plain value is skipped and counted (`meta["skipped_events"]`, and a note in the
report); integers beyond int64 in args read as absent (-1); lone UTF-16 surrogates (`"\ud800"`, valid JSON but not
encodable as UTF-8) in any string are replaced with U+FFFD, so every string that leaves the reader can be written.
Ids: nsys-style global ids, process << 24 | thread, from OS ids when they fit in 24 bits and small indexes otherwise,
so `tid >> 24` is the process as model/requests.py expects. The GPU "process" of a Kineto event is the device, so GPU
rows get the process of the API call with their correlation id.
"""
from __future__ import annotations

import gc
import re
from decimal import Decimal, DecimalException

import numpy as np

from ..errors import BadInput, NoData
from ..model.columns import TABLES
from ..model.trace import Trace
from .ids import NSYS_IDS
from .nsys_sqlite import DEFAULT_ENUMS

STEP_RANGE = "ProfilerStep#*"
STEP_RE = re.compile(r"^ProfilerStep#(\d+)$")
# record_function labels PyTorch itself emits; profilers before user_annotation existed filed them as operators
TORCH_RANGE_RE = re.compile(r"^(ProfilerStep#\d+$|enumerate\(DataLoader\)#|Optimizer\.(step|zero_grad)#)")
KIND_OF_CAT = {"kernel": "kernels", "Kernel": "kernels", "gpu_memcpy": "copies", "Memcpy": "copies",
               "gpu_memset": "memsets", "Memset": "memsets", "cuda_runtime": "runtime", "Runtime": "runtime",
               "cuda_driver": "driver", "Driver": "driver", "cuda_sync": "syncs", "user_annotation": "ranges"}
CPU_OP_CATS = ("cpu_op", "Operator")
COPY_KIND = {"HtoD": 1, "DtoH": 2, "HtoA": 3, "AtoH": 4, "AtoA": 5, "AtoD": 6, "DtoA": 7, "DtoD": 8, "HtoH": 9,
             "PtoP": 10}                                                 # ENUM_CUDA_MEMCPY_OPER
MEM_KIND = {"Pageable": 0, "Pinned": 1, "Device": 2, "Array": 3, "Managed": 4}   # ENUM_CUDA_MEM_KIND
COPY_RE = re.compile(r"Memcpy (\w+)(?: \((\w+) -> (\w+)\))?")
SYNC_TYPE = {"Event Sync": 1, "Stream Wait Event": 2, "Stream Sync": 3, "Context Sync": 4}   # ENUM_CUPTI_SYNC_TYPE
NOT_IN_KINETO = "not in PyTorch profiler traces"
ID_BITS = 24                           # nsys globalTid layout: process above bit 24, thread below
# Times (us) whose ns fit in int64 with room for the differences and sums the model takes: 2**62 ns is 146 years,
# beyond any epoch timestamp (1.7e15 us today) and any trace's length.
MAX_TIME_US = 2**62 // 1000
INT64_MAX = 2**63 - 1
PLAIN = (int, str)                     # what a pid or tid may be (Chrome traces use both)
SURROGATE = re.compile("[\ud800-\udfff]")   # json.loads leaves a lone "\ud800" in a str: not encodable


SUFFIXES = (".json",)
DESCRIPTION = "a PyTorch profiler (Kineto) .json trace"
SAVED_REPORT_HEAD = re.compile(rb'^\s*\{\s*"(profile|schema_version|kind)"\s*:')   # nsys-doctor's own JSON output
REPORT_INSTEAD = ("this is an nsys-doctor report, not a profile; use `nsys-doctor diff` or `nsys-doctor check` on "
                  "saved reports")


def accepts(head: bytes, path) -> bool:
    """A Chrome-trace JSON: an object with a "traceEvents" key in its first bytes (after the header, see
    read.HEAD_BYTES), or a list of events (the "JSON array format")."""
    start = head.lstrip()[:1]
    if start == b"{":
        return b'"traceEvents"' in head and not SAVED_REPORT_HEAD.match(head)
    return start == b"[" and b'"ph"' in head


def rejects(head: bytes, path) -> str | None:
    """Why a JSON file is not a trace (None when it is no JSON at all)."""
    start = head.lstrip()[:1]
    if start not in (b"{", b"["):
        return None
    if SAVED_REPORT_HEAD.match(head):
        return REPORT_INSTEAD
    if start == b"[":
        return "a JSON list that holds no trace events (\"ph\"): not a PyTorch profiler (Chrome trace) file"
    return "JSON without traceEvents: not a PyTorch profiler (Chrome trace) file"


def read(path: str, display_path: str | None = None) -> Trace:
    shown = display_path or path
    doc = _load(path, shown)
    events, header = _events(doc, shown)
    try:
        return _Builder(shown, header).build(events)
    except (ValueError, TypeError, DecimalException, OverflowError) as err:
        raise BadInput(shown, f"PyTorch profiler trace with an unreadable event field ({err})")


def _load(path: str, shown: str):
    import json         # here, not at import: read.READERS imports every reader on every run
    gc_was_on = gc.isenabled()
    gc.disable()        # millions of new dicts would trigger full collections: twice as slow with the GC on
    try:
        with open(path, "rb") as fh:
            return json.load(fh, parse_float=str)     # floats as text: exact ns, see the module docstring
    except json.JSONDecodeError as err:
        raise BadInput(shown, f"malformed JSON ({err.msg} at line {err.lineno} column {err.colno}); "
                              "the trace is truncated or not JSON")
    except UnicodeDecodeError:
        raise BadInput(shown, "JSON file is not UTF-8 text")
    except RecursionError:
        raise BadInput(shown, "JSON nested too deeply to be a PyTorch profiler trace")
    except ValueError as err:       # Python refuses integers of more than 4300 digits (int_max_str_digits)
        raise BadInput(shown, f"JSON with a number too long to read ({str(err).split(':')[0]})")
    finally:
        if gc_was_on:
            gc.enable()


def _events(doc, shown: str) -> tuple[list, dict]:
    if isinstance(doc, list):                          # Chrome trace "JSON array format"
        header: dict = {}
        events = doc
    elif isinstance(doc, dict):
        if "schema_version" in doc and "findings" in doc:
            raise BadInput(shown, REPORT_INSTEAD)
        if "traceEvents" not in doc:
            raise BadInput(shown, "JSON without traceEvents: not a PyTorch profiler (Chrome trace) file")
        events, header = doc["traceEvents"], doc
        if not isinstance(events, list):
            raise BadInput(shown, "traceEvents is not a list: not a PyTorch profiler (Chrome trace) file")
    else:
        raise BadInput(shown, "JSON holds neither an object with traceEvents nor a list of events")
    if not events:
        raise NoData(shown, "PyTorch profiler trace with no events (did the profiler schedule reach an active step?)")
    return events, header


def _ns(v) -> int:
    """Chrome-trace microseconds (int, or float kept as text) -> int64 ns, exact to the ns. Call it on values that
    `_time_ok` accepted (None reads as 0)."""
    if type(v) is int:
        return v * 1000
    if isinstance(v, str):
        head, _, frac = v.partition(".")
        if len(frac) <= 3 and frac.isdigit() and head.isdigit():
            return int(head) * 1000 + int(frac.ljust(3, "0"))
        return int((Decimal(v) * 1000).to_integral_value())
    if v is None:
        return 0
    return int(round(float(v) * 1000))


def _time_ok(v) -> bool:
    """A time or duration we can use: an int, or a float kept as text, finite and within MAX_TIME_US."""
    if type(v) is int:
        return -MAX_TIME_US < v < MAX_TIME_US
    if type(v) is not str:
        return False
    head, _, frac = v.partition(".")
    if len(head) <= 15 and head.isdigit() and frac.isdigit():     # the usual "1700000000000.123"
        return True
    try:
        d = Decimal(v)
    except DecimalException:
        return False
    return d.is_finite() and -MAX_TIME_US < d < MAX_TIME_US


def _int(v, default: int = -1) -> int:
    """An id or count (int, or text of one) -> int within int64; anything else, or beyond int64, -> default."""
    if type(v) is int:
        return v if -INT64_MAX <= v <= INT64_MAX else default
    if isinstance(v, str) and len(v) < 40:     # longer text is no int64 (and int() refuses 4300+ digits)
        try:
            out = int(v)
        except ValueError:
            try:
                f = float(v)
            except ValueError:
                return default
            if f != f or not -INT64_MAX <= f <= INT64_MAX:
                return default
            out = int(f)
        return out if -INT64_MAX <= out <= INT64_MAX else default
    return default


def _clean(s: str) -> str:
    """A string as it may leave the reader: lone surrogates replaced (see the module docstring)."""
    return s if s.isascii() else SURROGATE.sub("\ufffd", s)


def _clean_json(v):
    """A header value (any JSON) with every string cleaned; numbers too large to be exact become None."""
    if isinstance(v, str):
        return _clean(v)
    if isinstance(v, dict):
        return {_clean(str(k)): _clean_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean_json(x) for x in v]
    if type(v) is int and not -INT64_MAX <= v <= INT64_MAX:
        return None
    return v


def _list(v) -> list:
    return v if type(v) is list else []


def _args(e: dict) -> dict:
    a = e.get("args")
    return a if type(a) is dict else {}


def _product(v) -> int:
    """grid/block [x, y, z] -> x*y*z; -1 when absent."""
    if not isinstance(v, list) or not v:
        return -1
    p = 1
    for x in v:
        if type(x) is not int or not 0 <= x <= INT64_MAX:
            return -1
        p *= x
    return p if p <= INT64_MAX else -1


def short_kernel_name(full: str) -> str:
    """`void at::native::vectorized_elementwise_kernel<4, ...>(int, ...)` -> `vectorized_elementwise_kernel`, the
    way nsys's shortName reads; names without templates or arguments stay as they are."""
    s = full.replace("(anonymous namespace)", "anonymous_namespace")
    if s.startswith("void "):
        s = s[5:]
    cut = [i for i in (s.find("<"), s.find("(")) if i > 0]
    if cut:
        s = s[:min(cut)]
    s = s.rsplit("::", 1)[-1].strip()
    return s or full


class _Builder:
    def __init__(self, shown: str, header: dict):
        self.shown, self.header = shown, header
        self.ids: dict[str, int] = {}
        self.cpu_pids: dict = {}          # raw pid -> global process id (pid << 24)
        self.tids: dict = {}              # (raw pid, raw tid) -> global thread id
        self.thread_names: dict = {}      # (raw pid, raw tid) -> name
        self.process_names: dict = {}     # raw pid -> name

    def intern(self, s: str) -> int:
        i = self.ids.get(s)
        if i is None:
            i = self.ids[s] = len(self.ids)
        return i

    # ------------------------------------------------------------------------------------------------ one pass
    def build(self, events: list) -> Trace:
        by: dict[str, list] = {k: [] for k in ("kernels", "copies", "memsets", "runtime", "driver", "syncs",
                                               "ranges", "gpu_annotations")}
        window, skipped = [], 0
        self.bad: dict[str, int] = {}     # field -> events skipped for it
        for e in events:
            if type(e) is not dict:
                skipped += 1
                continue
            ph = e.get("ph")
            if ph == "X":
                cat = e.get("cat")
                if type(cat) is not str:
                    if cat is not None:
                        self.bad["cat"] = self.bad.get("cat", 0) + 1
                        skipped += 1
                    continue
                kind = KIND_OF_CAT.get(cat)
                if kind is None:
                    if cat in CPU_OP_CATS and TORCH_RANGE_RE.match(str(e.get("name", ""))):
                        kind = "ranges"
                    elif cat == "gpu_user_annotation":
                        kind = "gpu_annotations"
                    elif cat == "Trace":
                        if self._usable(e):
                            window.append(e)
                        continue
                    else:
                        continue
                if "ts" not in e:
                    skipped += 1
                    continue
                if not self._usable(e):
                    skipped += 1
                    continue
                by[kind].append(e)
            elif ph == "M":
                pid, tid = e.get("pid"), e.get("tid")
                if not (isinstance(pid, PLAIN) or pid is None) or not (isinstance(tid, PLAIN) or tid is None):
                    continue
                args = _args(e)
                if e.get("name") == "process_name":
                    self.process_names[pid] = _clean(str(args.get("name", "")))
                elif e.get("name") == "thread_name":
                    self.thread_names[(pid, tid)] = _clean(str(args.get("name", "")))
        api = by["runtime"] + by["driver"]
        self._ids_for(api + by["ranges"])
        tables = {"api_calls": self._api_calls(by["runtime"], by["driver"]), "ranges": self._ranges(by["ranges"])}
        host = _HostOf(tables["api_calls"])
        tables["kernels"] = self._kernels(by["kernels"], host)
        tables["copies"] = self._copies(by["copies"], host)
        tables["memsets"] = self._gpu(by["memsets"], host, {"bytes": lambda a, e: _int(a.get("bytes"))})
        tables["syncs"] = self._syncs(by["syncs"], host)
        origin = self._rebase(tables, window)
        tables["threads"], tables["processes"] = self._threads(), self._processes()
        return self._trace(tables, origin, window, skipped, len(by["gpu_annotations"]))

    def _usable(self, e: dict) -> bool:
        """False (and the field counted) when a field the tables need has the wrong type or an impossible value."""
        why = None
        if not _time_ok(e.get("ts")):
            why = "ts"
        elif "dur" in e and e["dur"] is not None and not _time_ok(e["dur"]):
            why = "dur"
        elif "args" in e and e["args"] is not None and type(e["args"]) is not dict:
            why = "args"
        elif not isinstance(e.get("pid"), PLAIN) and e.get("pid") is not None:
            why = "pid"
        elif not isinstance(e.get("tid"), PLAIN) and e.get("tid") is not None:
            why = "tid"
        if why is None:
            return True
        self.bad[why] = self.bad.get(why, 0) + 1
        return False

    def _ids_for(self, cpu_events: list) -> None:
        """Global process and thread ids for the CPU events we keep (see the module docstring)."""
        pairs = list(dict.fromkeys((e.get("pid"), e.get("tid")) for e in cpu_events))
        pids = list(dict.fromkeys(p for p, _ in pairs))
        fits = all(type(p) is int and 0 < p < (1 << ID_BITS) for p in pids)
        self.cpu_pids = {p: (p if fits else k + 1) << ID_BITS for k, p in enumerate(pids)}
        for p in pids:
            mine = [t for q, t in pairs if q == p]
            fits = all(type(t) is int and 0 <= t < (1 << ID_BITS) for t in mine)
            for k, t in enumerate(mine):
                self.tids[(p, t)] = self.cpu_pids[p] | (t if fits else k + 1)

    # ------------------------------------------------------------------------------------------------ tables
    def _times(self, evs: list) -> tuple[np.ndarray, np.ndarray]:
        start = np.array([_ns(e["ts"]) for e in evs], np.int64)
        dur = np.array([_ns(e.get("dur", 0)) for e in evs], np.int64)
        return start, start + np.maximum(dur, 0)

    def _api_calls(self, runtime: list, driver: list) -> dict:
        evs = runtime + driver
        start, end = self._times(evs)
        args = [_args(e) for e in evs]
        return {"start_ns": start, "end_ns": end,
                "tid": np.array([self.tids[(e.get("pid"), e.get("tid"))] for e in evs], np.int64),
                "correlation": np.array([_int(a.get("correlation")) for a in args], np.int64),
                "name_id": np.array([self.intern(str(e.get("name", ""))) for e in evs], np.int64),
                "driver": np.r_[np.zeros(len(runtime), bool), np.ones(len(driver), bool)],
                "callchain": np.full(len(evs), -1, np.int64), "status": np.full(len(evs), -1, np.int64)}

    def _ranges(self, evs: list) -> dict:
        start, end = self._times(evs)
        names = [_clean(str(e.get("name", ""))) for e in evs]
        self.steps = sorted(int(m.group(1)) for m in map(STEP_RE.match, names) if m)
        return {"start_ns": start, "end_ns": end,
                "tid": np.array([self.tids[(e.get("pid"), e.get("tid"))] for e in evs], np.int64),
                "name": np.array([STEP_RANGE if STEP_RE.match(n) else n for n in names], dtype=object),
                "domain": np.full(len(evs), "", dtype=object),
                "push_pop": np.ones(len(evs), np.int64)}

    def _gpu(self, evs: list, host: "_HostOf", extra: dict) -> dict:
        start, end = self._times(evs)
        args = [_args(e) for e in evs]
        corr = np.array([_int(a.get("correlation")) for a in args], np.int64)
        out = {"start_ns": start, "end_ns": end,
               "device": np.array([_int(a.get("device"), _int(e.get("pid"), 0)) for a, e in zip(args, evs)],
                                  np.int64),
               "stream": np.array([_int(a.get("stream"), _stream_of(e.get("tid"))) for a, e in zip(args, evs)],
                                  np.int64),
               "correlation": corr, "pid": host.pid(corr)}
        for col, get in extra.items():
            out[col] = np.array([get(a, e) for a, e in zip(args, evs)], np.int64)
        return out

    def _kernels(self, evs: list, host: "_HostOf") -> dict:
        short: dict[str, int] = {}

        def short_id(full: str) -> int:
            if full not in short:
                short[full] = self.intern(short_kernel_name(full))
            return short[full]
        return self._gpu(evs, host, {
            "name_id": lambda a, e: short_id(str(e.get("name", ""))),
            "full_name_id": lambda a, e: self.intern(str(e.get("name", ""))),
            "grid": lambda a, e: _product(a.get("grid")), "block": lambda a, e: _product(a.get("block")),
            "registers": lambda a, e: _int(a.get("registers per thread")), "graph_node": lambda a, e: 0})

    def _copies(self, evs: list, host: "_HostOf") -> dict:
        parsed: dict[str, tuple[int, int, int]] = {}

        def kinds(name: str) -> tuple[int, int, int]:
            if name not in parsed:
                m = COPY_RE.match(name)
                parsed[name] = (COPY_KIND.get(m.group(1), 0), MEM_KIND.get(m.group(2) or "", -1),
                                MEM_KIND.get(m.group(3) or "", -1)) if m else (0, -1, -1)
            return parsed[name]
        return self._gpu(evs, host, {
            "bytes": lambda a, e: _int(a.get("bytes")),
            "kind": lambda a, e: kinds(str(e.get("name", "")))[0],
            "src_kind": lambda a, e: kinds(str(e.get("name", "")))[1],
            "dst_kind": lambda a, e: kinds(str(e.get("name", "")))[2]})

    def _syncs(self, evs: list, host: "_HostOf") -> dict:
        t = self._gpu(evs, host, {"sync_type": lambda a, e: SYNC_TYPE.get(
            str(a.get("cuda_sync_kind", e.get("name", ""))), 0),
            "event": lambda a, e: -1})      # Kineto's cuda_sync events carry no event id
        return {c: t[c] for c in TABLES["syncs"]["columns"]}

    def _rebase(self, tables: dict, window: list) -> int:
        """Times since the earliest event (or the profiler's own window, whichever is first)."""
        firsts = [int(t["start_ns"].min()) for t in tables.values() if len(t["start_ns"])]
        firsts += [_ns(w["ts"]) for w in window]
        origin = min(firsts) if firsts else 0
        for t in tables.values():
            t["start_ns"] -= origin
            t["end_ns"] -= origin
            if len(t["start_ns"]) > 1 and (np.diff(t["start_ns"]) < 0).any():
                order = np.argsort(t["start_ns"], kind="stable")
                for c in t:
                    t[c] = t[c][order]
        return origin

    def _threads(self) -> dict:
        rows = list(self.tids.items())
        return {"tid": np.array([g for _, g in rows], np.int64),
                "name_id": np.array([self.intern(self.thread_names.get(k) or f"thread {k[1]}") for k, _ in rows],
                                    np.int64),
                "pid": np.array([g >> ID_BITS << ID_BITS for _, g in rows], np.int64)}

    def _processes(self) -> dict:
        rows = list(self.cpu_pids.items())
        return {"pid": np.array([g for _, g in rows], np.int64),
                "os_pid": np.array([_int(p) for p, _ in rows], np.int64),
                "name": np.array([self.process_names.get(p, "") for p, _ in rows], dtype=object)}

    # ------------------------------------------------------------------------------------------------ the trace
    def _trace(self, tables: dict, origin: int, window: list, skipped: int, gpu_annotations: int) -> Trace:
        strings = _Strings({i: _clean(s) for s, i in self.ids.items()})
        t = Trace(path=self.shown, source="kineto-json", strings=strings.__getitem__, ids=NSYS_IDS)
        t.enums = {k: dict(v) for k, v in DEFAULT_ENUMS.items()}
        counts = {name: len(tab["start_ns"] if "start_ns" in tab else tab["tid"] if "tid" in tab else tab["pid"])
                  for name, tab in tables.items()}
        for name, tab in tables.items():
            if counts[name]:
                t.loaders[name] = (lambda tab=tab: tab)
        gpu = counts["kernels"] + counts["copies"] + counts["memsets"]
        if not gpu:
            for name in ("kernels", "copies", "memsets"):
                t.absent[name] = "no GPU activity in this trace (profile with activities=[ProfilerActivity.CUDA])"
        if not counts["api_calls"]:
            t.absent["api_calls"] = "no CUDA runtime events in this trace (profile with ProfilerActivity.CUDA)"
        if not counts["syncs"]:
            t.absent["syncs"] = "no cuda_sync events in this trace (only recent PyTorch profilers record them)"
        if not counts["ranges"]:
            t.absent["ranges"] = ("no user annotations in this trace (torch.profiler.record_function, or "
                                  "prof.step() for ProfilerStep ranges)")
        for name in ("os_calls", "sched", "samples", "callchains", "os_callchains", "gpu_metrics"):
            t.absent[name] = NOT_IN_KINETO
        h = {k: _clean_json(v) for k, v in self.header.items() if k != "traceEvents"}
        ends = [int(tab["end_ns"].max()) for tab in tables.values() if "end_ns" in tab and len(tab["end_ns"])]
        ends += [_ns(w["ts"]) + _ns(w.get("dur", 0)) - origin for w in window]
        t.meta = {
            "kineto_schema_version": h.get("schemaVersion"), "trace_name": h.get("traceName"),
            "display_time_unit": h.get("displayTimeUnit"),
            "base_time_ns": _int(h.get("baseTimeNanoseconds"), 0) or None,
            "time_origin_ns": origin,       # ns on the trace's own clock (since base_time_ns when that is given)
            "capture_start_ns": 0, "capture_end_ns": max(ends) if ends else 0,
            "gpus": [{"name": str(d.get("name") or "GPU"), "memory_bandwidth_Bps": None,
                      "sm_count": _int(d.get("numSms"), None), "id": _int(d.get("id"), None),
                      "memory_bytes": _int(d.get("totalGlobalMem"), None),
                      "compute_capability": f"{d.get('computeMajor')}.{d.get('computeMinor')}"}
                     for d in _list(h.get("deviceProperties")) if isinstance(d, dict)],
            "distributed": h.get("distributedInfo"),
            "cuda_runtime_version": h.get("cuda_runtime_version"), "cuda_driver_version": h.get("cuda_driver_version"),
            "profiler_steps": getattr(self, "steps", []), "range_renames": {"ProfilerStep#<N>": STEP_RANGE},
            "gpu_annotations": gpu_annotations, "skipped_events": skipped, "counts": counts,
        }
        if self.bad:
            t.meta["notes"] = [f"{sum(self.bad.values())} events skipped, with a field that cannot be read: " + ", ".join(
                f"{n} {k}" for k, n in sorted(self.bad.items(), key=lambda x: -x[1]))]
        return t


class _HostOf:
    """Process of the API call that launched each GPU row, found by correlation id (Kineto gives the device as pid)."""

    def __init__(self, api: dict):
        corr, pid = api["correlation"], api["tid"] >> ID_BITS << ID_BITS
        order = np.argsort(corr, kind="stable")
        self.corr, self.pid_sorted = corr[order], pid[order]
        uniq, count = np.unique(pid, return_counts=True)
        self.default = int(uniq[np.argmax(count)]) if len(uniq) else 1 << ID_BITS

    def pid(self, corr: np.ndarray) -> np.ndarray:
        out = np.full(len(corr), self.default, np.int64)
        if len(self.corr) and len(corr):
            pos = np.clip(np.searchsorted(self.corr, corr), 0, len(self.corr) - 1)
            hit = self.corr[pos] == corr
            out[hit] = self.pid_sorted[pos[hit]]
        return out


def _stream_of(tid) -> int:
    """GPU tid is the stream: 7 or 'stream 7'."""
    if type(tid) is int:
        return tid if -INT64_MAX <= tid <= INT64_MAX else -1
    m = re.search(r"(\d{1,18})", str(tid))
    return int(m.group(1)) if m else -1


class _Strings(dict):
    def __missing__(self, key):
        return f"<string {key}>"
