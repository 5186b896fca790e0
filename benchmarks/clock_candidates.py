"""Can the `before` trace predict how much slower a fix's busier GPU runs its kernels? For each pair named, four
candidates computed from the `before` export alone (the after export only for the actual change it is compared
with, and in the last candidate for the after clock, as an oracle), for docs/clock.md; not a test:
  actual        the after run's kernel time per measured request / the before run's
  per-request   the slope of mean GPC clock against duty cycle over the before run's requests, extrapolated from the
                before run's duty to the after run's (MHz), against the after run's actual clock change
  after a gap   each kernel that started after an idle GPU gap of at least GAP_NS takes its name's median duration
                among the instances that started back to back (gap < BACK_TO_BACK_NS): the growth (ms/request) if the
                fix made every kernel run back to back
  recent load   per kernel name, the slope of duration / median against the GPU's busy share over the RECENT_NS
                before each instance (time-weighted over names; per unit of busy share)
  clock slope   per kernel name, the log-log slope of duration against the GPC clock sample at the kernel's midpoint
                (time-weighted over names), times the log of the actual after/before kernel-weighted clock

usage: python benchmarks/clock_candidates.py [NAME ...]   (pairs in tests/data/pairs.json; default the four below)
"""
from __future__ import annotations

import json
import pathlib
import sqlite3
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import clock_duty as cd      # noqa: E402

GAP_NS = 20_000              # an idle gap long enough for the clock to move (the samples show it within 0.5 ms)
BACK_TO_BACK_NS = 5_000      # a kernel queued behind the previous work starts within a few us of its end
RECENT_NS = 200_000_000      # the fixed runs' clock settles over 100-200 ms of sustained load (docs/clock.md)
MIN_INSTANCES = 20           # per kernel name, for a slope


def load(path: pathlib.Path, tmp: pathlib.Path) -> dict:
    lo, hi, rs, re_ = cd.window(path)
    db = sqlite3.connect(f"file:{cd.plain(path, tmp)}?mode=ro", uri=True)
    try:
        ks, ke, kn, names = cd.gpu_work(db)
        us, ue = cd.busy_intervals(db)
        ts, gpc = cd.metric(db, "GPC Clock Frequency")
    finally:
        db.close()
    o = np.argsort(ks, kind="stable")
    ks, ke, kn = ks[o], ke[o], kn[o]
    j = np.searchsorted(us, ks, side="right") - 1          # the busy block each kernel is in
    starts_block = us[np.maximum(j, 0)] == ks
    prev_end = np.where(j >= 1, ue[np.maximum(j - 1, 0)], np.iinfo(np.int64).min // 2)
    gap = np.where(starts_block, ks - prev_end, 0)
    m = (ks >= lo) & (ke <= hi)
    per_req = [(cd.clipped(us, ue, s, e) / max(e - s, 1), gpc[(ts >= s) & (ts < e)].mean() / 1e6)
               for s, e in zip(rs, re_) if ((ts >= s) & (ts < e)).any()]
    return {"ks": ks[m], "ke": ke[m], "kn": kn[m], "gap": gap[m], "nreq": len(rs), "ts": ts, "gpc": gpc,
            "us": us, "ue": ue, "duty": cd.clipped(us, ue, lo, hi) / (hi - lo),
            "gpc_mean": gpc[(ts >= lo) & (ts < hi)].mean() / 1e6, "per_req": np.array(per_req)}


def busy_share_before(d: dict, t: np.ndarray, span: int) -> np.ndarray:
    """The GPU's busy share over [t - span, t] for each t."""
    us, ue = d["us"], d["ue"]
    cum = np.concatenate([[0], np.cumsum(ue - us)])

    def busy_upto(x):
        i = np.searchsorted(us, x, side="right")          # blocks started before x
        k = np.maximum(i - 1, 0)
        return np.where(i > 0, cum[k] + np.minimum(ue[k], x) - us[k], 0)
    return (busy_upto(t) - busy_upto(t - span)) / span


def weighted_slope(d: dict, x: np.ndarray, y_of) -> float:
    num = den = 0.0
    dur = (d["ke"] - d["ks"]).astype(float)
    for n in np.unique(d["kn"]):
        s = d["kn"] == n
        if s.sum() < MIN_INSTANCES or np.std(x[s]) < 1e-9:
            continue
        num += np.polyfit(x[s], y_of(dur[s]), 1)[0] * dur[s].sum()
        den += dur[s].sum()
    return num / den if den else float("nan")


def kernel_clock(d: dict) -> np.ndarray:
    mid = (d["ks"] + d["ke"]) // 2
    i = np.clip(np.searchsorted(d["ts"], mid, side="right") - 1, 0, len(d["ts"]) - 1)
    return d["gpc"][i] / 1e6


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or ["ex_sleep", "ex_laysyncgpu", "ex_sync2", "ex_polling"]
    spec = {p["name"]: p for p in json.loads((HERE.parent / "tests/data/pairs.json").read_text())["pairs"]}
    data = HERE.parent / "tests" / "data"
    print("| pair | actual kernel time after/before | per-request clock slope: predicted / actual MHz | "
          "after a gap -> back to back (ms/request) | recent load slope | clock slope x actual clock change |")
    print("|---|---:|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = pathlib.Path(tmpd)
        for name in names:
            p = spec[name]
            b, a = load(data / p["before"]["file"], tmp), load(data / p["after"]["file"], tmp)
            dur = b["ke"] - b["ks"]
            actual = ((a["ke"] - a["ks"]).sum() / a["nreq"]) / (dur.sum() / b["nreq"])
            pr = b["per_req"]
            slope = np.polyfit(pr[:, 0], pr[:, 1], 1)[0] if len(pr) > 2 and pr[:, 0].std() > 1e-3 else 0.0
            grow = 0.0
            for n in np.unique(b["kn"]):
                s = b["kn"] == n
                b2b, after_gap = dur[s][b["gap"][s] < BACK_TO_BACK_NS], dur[s][b["gap"][s] >= GAP_NS]
                if len(b2b) >= 5 and len(after_gap):
                    grow += float((np.median(b2b) - after_gap).sum())
            recent = weighted_slope(b, busy_share_before(b, b["ks"], RECENT_NS), lambda y: y / np.median(y))
            el = weighted_slope(b, np.log(kernel_clock(b)), np.log)
            cb = np.average(kernel_clock(b), weights=dur)
            ca = np.average(kernel_clock(a), weights=a["ke"] - a["ks"])
            print(f"| {name} | {actual:.4f} | {slope * (a['duty'] - b['duty']):+.0f} / "
                  f"{a['gpc_mean'] - b['gpc_mean']:+.0f} | {grow / b['nreq'] / 1e6:+.4f} | {recent:+.3f} | "
                  f"{np.expm1(el * np.log(ca / cb)) * 100:+.2f}% (slope {el:+.2f}) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
