"""Predict what a change would save: replay the profile with it applied, print latency, interval and throughput.

The profile's dependency graph (each thread's calls, each stream's GPU work, launches, host waits, waits between
streams) is replayed with the change applied (model/replay.py); replayed unchanged it gives back the recording.
Changes (combine any):

    --faster-kernels PATTERN=FACTOR
        kernels whose name matches the regular expression take
        FACTOR x their GPU time (0.5 = twice as fast); repeatable
    --remove-syncs
        every host wait inside a request but its last (syncs,
        .item(), blocking copies), as the cuda_sync finding's fix
        removes them: a polling loop or event wait with its event
        record and the dispatch before it, any other wait alone
    --graph [US]
        each request's launches replayed as one CUDA graph launch
        costing US microseconds of CPU (default: cudaGraphLaunch
        as measured in the profile, else 150)
    --pinned [GBPS]
        pageable copies at GBPS (default: the best copy rate in the
        profile or the GPU's documented pinned link rate, whichever
        is higher, else 12); their calls only enqueue (a read-back
        is still waited for), input copies prefetched
    --drop-phase NVTX_NAME[=SHARE]
        remove SHARE (default 1) of the CPU time inside ranges of
        that name; repeatable
    --remove-lock-waits
        lock and condition waits of the OS runtime take no time

A profile of more than 2M CUDA calls and GPU operations (predict.MAX_REPLAY_EVENTS) is replayed over a
window of the requests in the middle of the run, as analyze's predictions are (analysis/predict.py Replayer);
`how` names the requests replayed, the other requests' numbers are extrapolated from the window's saving.

Exit codes: 0 predicted, 2 bad input (one line on stderr says what is wrong)."""
from __future__ import annotations

import json
import math
import re

import numpy as np

from ..errors import BadInput, NoData
from ..files import check_outputs, output

# Largest values the options take: beyond them no fix is being described, and times x factor leave the int64 ns the
# replay computes in (--graph 1e30 and --faster-kernels .=1e308 overflowed: a traceback, or a latency that fell)
MAX_FACTOR = 1e3             # kernels 1000x slower: a 1 s kernel becomes 17 minutes, far inside int64 ns
MAX_GRAPH_US = 1e6           # a graph launch of 1 s of CPU, 10^5 x the 5-10 us cudaGraphLaunch takes
# --graph / --pinned without a value: the cost or rate measured in the profile (not a str, which argparse would
# convert with type=float, nor a number a user could type: -1 used to mean this)
MEASURED = ("measured",)


def add_arguments(p) -> None:
    p.add_argument("profile", metavar="PROFILE", help="the profile (.sqlite, .sqlite.xz/.gz, .nsys-rep, Kineto JSON)")
    p.add_argument("--faster-kernels", action="append", default=[], metavar="PATTERN=FACTOR",
                   help="kernels matching PATTERN (regex, case-insensitive) take FACTOR x their time "
                        f"(0 to {MAX_FACTOR:g})")
    p.add_argument("--remove-syncs", action="store_true", help="remove the host waits inside requests but the last")
    p.add_argument("--graph", nargs="?", const=MEASURED, type=float, metavar="US",
                   help="replay each request's launches as one CUDA graph launch costing US microseconds "
                        f"(0 to {MAX_GRAPH_US:g})")
    p.add_argument("--pinned", nargs="?", const=MEASURED, type=float, metavar="GBPS",
                   help="pageable copies at GBPS GB/s, their calls only enqueuing (read-backs still "
                        "waited for), input copies prefetched")
    p.add_argument("--drop-phase", action="append", default=[], metavar="NVTX_NAME[=SHARE]",
                   help="remove SHARE (default 1) of the CPU time inside the NVTX ranges of that name")
    p.add_argument("--remove-lock-waits", action="store_true", help="OS lock and condition waits take no time")
    p.add_argument("--range", dest="range_name", metavar="NAME", help="the NVTX range that marks one request")
    p.add_argument("--skip", type=int, metavar="N", help="leave the first N requests out as warm-up")
    p.add_argument("--per-request", action="store_true", help="also print every measured request")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the result to FILE instead of stdout")


def _factor(spec: str) -> tuple[re.Pattern, float]:
    pat, sep, f = spec.rpartition("=")
    try:
        factor = float(f)
        if not sep or not pat or not 0 <= factor <= MAX_FACTOR:
            raise ValueError
        return re.compile(pat, re.I), factor
    except (ValueError, re.error):
        raise BadInput(None, f"--faster-kernels {spec!r}: expected PATTERN=FACTOR, a regular expression and a "
                             f"number from 0 to {MAX_FACTOR:g} (0.5 = twice as fast)")


def _phase(spec: str) -> tuple[str, float]:
    name, sep, share = spec.rpartition("=")
    if not sep:
        return spec, 1.0
    try:
        s = float(share)
    except ValueError:
        return spec, 1.0                 # an NVTX name that contains '='
    if not 0 <= s <= 1:
        raise BadInput(None, f"--drop-phase {spec!r}: SHARE must be between 0 and 1")
    return name, s


def _or_measured(value, measure, trace, say: str, notes: list):
    """An option's value; given without one (MEASURED), what `measure(trace)` finds, noted with where it came from."""
    if value != MEASURED:
        return value
    found, why = measure(trace)
    notes.append(f"{say.format(found)}: {why}")
    return found


def _us(ns: int, why: str) -> tuple[float, str]:
    return ns / 1e3, why


def _printable(s: str, n: int = 80) -> str:
    """Profile strings are untrusted: shown through render.safe.clean (escapes, never control characters), bounded
    length."""
    from ..render.safe import clean
    s = clean(str(s))
    return s if len(s) <= n else s[:n - 3] + "..."


def _summary(out, lat_ns: np.ndarray) -> dict:
    """Latency statistics over the measured requests and the interval: of a replay's Outcome, or of the whole run
    extrapolated from a window (analysis/predict.py Extrapolated: its mean and interval are analyze's)."""
    m = out.measured
    lat = lat_ns[m] / 1e6
    iv = out.interval_ns / 1e6
    return {"latency_ms": {"mean": round(float(out.mean_latency_ns) / 1e6, 3), "p50": round(float(np.percentile(lat, 50)), 3),
                           "p90": round(float(np.percentile(lat, 90)), 3), "max": round(float(lat.max()), 3)},
            "interval_ms": round(iv, 3), "throughput_per_s": round(1e3 / iv, 1) if iv > 0 else None}


def _sync_change(trace, reqs):
    """--remove-syncs as the cuda_sync finding's fix (diagnose/cuda_sync.change: a wait on an event goes whole with
    its record and dispatch, a value read or a bare synchronize as its wait), so whatif and analyze predict the same;
    None where cuda_sync measures nothing to remove (under its reporting threshold), and the replay's own rule
    (every host wait but each request's last, as a wait) applies."""
    from ..analysis.predict import to_replay
    from ..diagnose import Context
    from ..diagnose import cuda_sync
    m = cuda_sync.measure(Context(trace, reqs))
    if m is None:
        return None
    ch, _ = to_replay(trace, cuda_sync.change(m))
    return None if ch.is_empty() else ch


def run(args) -> int:
    from ..model import replay as R
    from ..model.requests import find_requests
    from ..read import open_trace
    if args.skip is not None and args.skip < 0:
        raise BadInput(None, "--skip must be 0 or more")
    check_outputs([(args.output, "whatif")], [args.profile])     # before the work: refused outputs cost nothing
    factors = [_factor(s) for s in args.faster_kernels]
    phases = dict(_phase(s) for s in args.drop_phase)
    if args.graph not in (None, MEASURED) and not 0 <= args.graph <= MAX_GRAPH_US:
        raise BadInput(None, f"--graph US must be from 0 to {MAX_GRAPH_US:g} microseconds, not {args.graph:g}")
    if args.pinned not in (None, MEASURED) and not (args.pinned > 0 and math.isfinite(args.pinned)):
        raise BadInput(None, f"--pinned GBPS must be a finite number more than 0, not {args.pinned:g}")
    if not (factors or phases or args.remove_syncs or args.graph is not None or args.pinned is not None
            or args.remove_lock_waits):
        raise BadInput(None, "no change given: use --faster-kernels, --remove-syncs, --graph, --pinned, "
                             "--drop-phase or --remove-lock-waits")
    trace = open_trace(args.profile)
    try:
        reqs = find_requests(trace, range_name=args.range_name, skip=args.skip)
        r = trace.table("ranges")
        for name in phases:
            if not len(r["name"]) or not (r["name"] == name).any():
                raise BadInput(args.profile, f"--drop-phase: no NVTX range named {_printable(name)!r}")
        from ..analysis.predict import graph_launch_cost_ns
        from ..diagnose.memory_transfer import pinned_gbps      # the rate the memory_transfer finding's fix replays
        notes = []
        graph_us = _or_measured(args.graph, lambda t: _us(*graph_launch_cost_ns(t)), trace,
                                "graph launch cost {:.0f} us", notes)
        gbps = _or_measured(args.pinned, pinned_gbps, trace, "pinned rate {:.1f} GB/s", notes)
        graph_ns = None if graph_us is None else round(graph_us * 1e3)
        rate = None if gbps is None else gbps * 1e9
        sync_change = _sync_change(trace, reqs) if args.remove_syncs else None
        change = R.Change(kernel_factor=factors, remove_syncs=args.remove_syncs and sync_change is None,
                          graph_launch_ns=graph_ns, drop_phase=phases, pageable_rate=rate,
                          remove_lock_waits=args.remove_lock_waits)
        if sync_change is not None:
            change = change.combined(sync_change)
        # analyze's replayer: the whole profile, or above MAX_REPLAY_EVENTS a window of its requests (one rule)
        from ..analysis.predict import Replayer
        rp = Replayer(trace, reqs)
        if rp.base is None:
            raise NoData(args.profile, f"cannot replay this profile: {rp.error}")
        after, err = rp.run(change)
        if after is None:
            raise NoData(args.profile, f"cannot replay this change: {err}")
        before = rp.base
    finally:
        trace.close()
    method = ("replay of the profile's dependency graph with the change applied (model/replay.py); replayed "
              "unchanged it reproduces the recorded latencies and interval")
    if rp.window is not None:
        method += ("; " + "; ".join(rp.how) + ": each request's latency after is its recorded one less its own "
                   "replayed saving (requests of the window) or less the window's mean saving (the others)")
    replayed = getattr(before, "replayed", None)
    result = {"profile": str(args.profile), "range": reqs.range_name, "requests": len(reqs.measured),
              "warmup": reqs.warmup, "change": change.describe(), "assumptions": notes,
              "before": _summary(before, before.latency_ns), "after": _summary(after, after.latency_ns),
              "replayed": (None if rp.window is None else
                           {"first": rp.window.first + 1, "last": rp.window.last + 1, "of": rp.window.total,
                            "steady": rp.steady}),
              "method": method}
    if args.per_request:
        m = reqs.measured
        result["per_request"] = [{"request": int(i), "before_ms": round(float(before.latency_ns[i]) / 1e6, 3),
                                  "after_ms": round(float(after.latency_ns[i]) / 1e6, 3),
                                  "replayed": bool(replayed is None or replayed[i])} for i in m]
    with output(args.output, "whatif", [args.profile]) as out:
        if args.format == "json":
            out.write(json.dumps(result, indent=1) + "\n")
        else:
            _text(result, out)
    return 0


def _text(res: dict, out) -> None:
    import textwrap

    from ..render.console import console
    from ..render.safe import clean
    b, a = res["before"], res["after"]
    w = out.write
    width = console(out).width      # the renderers' width rule: the terminal, COLUMNS, else 110

    def para(prefix: str, text: str) -> None:    # wrapped, continuation lines under the text
        w(textwrap.fill(clean(text), max(width, len(prefix) + 20), initial_indent=prefix,
                        subsequent_indent=" " * len(prefix), break_on_hyphens=False) + "\n")
    w(f"what if: {_printable(res['profile'], 120)}\n")
    w(f"  {res['requests']} requests of range {_printable(res['range'])!r} ({res['warmup']} warm-up left out)\n")
    for c in res["change"]:
        para("  change: ", _printable(c, 160))
    for n in res["assumptions"]:
        para("  assumed: ", n)

    def row(label, x, y, unit=""):
        d = f"{(y - x) / x * 100:+.0f}%" if x else ""
        w(f"  {label:<22}{x:>12.3f}{y:>12.3f}{d:>9}{unit}\n")
    w(f"  {'':<22}{'before':>12}{'after':>12}{'change':>9}\n")
    row("latency mean (ms)", b["latency_ms"]["mean"], a["latency_ms"]["mean"])
    row("latency p50 (ms)", b["latency_ms"]["p50"], a["latency_ms"]["p50"])
    row("latency p90 (ms)", b["latency_ms"]["p90"], a["latency_ms"]["p90"])
    row("interval (ms)", b["interval_ms"], a["interval_ms"])
    if b["throughput_per_s"] and a["throughput_per_s"]:
        row("throughput (req/s)", b["throughput_per_s"], a["throughput_per_s"])
    for r in res.get("per_request", []):
        w(f"  request {r['request']:>5}: {r['before_ms']:10.3f} -> {r['after_ms']:10.3f} ms"
          f"{'' if r['replayed'] else ' (extrapolated)'}\n")
    para("  how: ", res["method"])
