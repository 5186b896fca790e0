"""Predicted against measured savings inside one process: the --ab runs of the cuda_sync examples, profiled whole.

usage: python benchmarks/ab_blocks.py EXPORT.sqlite[.xz] ... [--work DIR] [--keep]

An `--ab K` run (examples/ab.py) serves K rounds of one block of each variant, slow and fixed alternating, each block
in an NVTX range "ab slow R" / "ab fixed R"; record_examples.sh "abtrace" profiles such runs and keeps their exports.
For every block this cuts the export to the block's time span (a copy: every table with a `start` or `timestamp`
column keeps only the rows that begin inside the block; the block starts and ends with a device synchronize, so no
GPU work crosses its edges) and measures the block's time per request from its NVTX range (what the program's own
clock times: the block from its first synchronize to its last, over its requests). Each slow block's cut is then
analysed in this process (calibrate.block_predictor, the prediction the calibration table uses: the replayed drop
in the request interval where the report uses the replay): the cuda_sync saving predicted from that block alone. Measured saving of a round: its slow block's ms/request minus its fixed block's (neighbours in time, one
process: the same CPU and GPU state, tests/data/README.md "Repeated runs"). Prints one row per round and the medians.
Asserts nothing; the input files are only read.
"""
from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
from nsys_doctor.read import sniff   # noqa: E402  (an .xz expanded once into nsys-doctor's cache)
BLOCK = re.compile(r"^ab (slow|fixed) (\d+)$")


def plain(src: pathlib.Path) -> pathlib.Path:
    """The plain SQLite file of an export (an .xz's expanded copy in nsys-doctor's own cache, made once, shared with
    analyze): read-only; cut() and store() write copies of it."""
    return sniff(pathlib.Path(src))[1]


def timed_tables(db: sqlite3.Connection) -> list[tuple[str, str | None]]:
    """Every table and its time column ("start", else "timestamp"; None: not timed)."""
    out = []
    for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
        cols = {r[1] for r in db.execute(f"PRAGMA table_info('{t}')")}
        out.append((t, "start" if "start" in cols else "timestamp" if "timestamp" in cols else None))
    return out


def blocks(db: sqlite3.Connection, range_name: str = "Inference", untimed: int = 0) -> list[dict]:
    """The --ab blocks (variant, round, start, end) and each one's requests (NVTX `range_name` ranges inside it).
    `untimed`: each block serves that many requests before its clock starts (empty_cache.py's one request that
    leaves the cache as its variant does): the block is measured from its first timed request's start."""
    rows = db.execute("SELECT e.start, e.end, coalesce(e.text, s.value) FROM NVTX_EVENTS e LEFT JOIN StringIds s "
                      "ON e.textId = s.id WHERE e.end IS NOT NULL").fetchall()
    out = []
    for start, end, text in rows:
        m = BLOCK.match(text or "")
        if m:
            reqs = sorted(s for s, e, t in rows if t == range_name and start <= s and e <= end)
            timed = reqs[untimed:]
            begin = timed[0] if untimed and timed else start
            n = len(timed)
            out.append({"variant": m.group(1), "round": int(m.group(2)), "start": begin, "end": end, "requests": n,
                        "ms_per_request": (end - begin) / 1e6 / max(n, 1)})
    return sorted(out, key=lambda b: b["start"])


def cut(src: pathlib.Path, dst: pathlib.Path, start: int, end: int) -> None:
    """dst: the plain export src with only the rows that begin in [start, end] in its timed tables."""
    shutil.copyfile(src, dst)
    db = sqlite3.connect(dst)
    tables = timed_tables(db)
    for t, col in tables:
        if col:
            db.execute(f"DELETE FROM '{t}' WHERE {col} < ? OR {col} > ?", (start, end))
    if "ANALYSIS_DETAILS" in dict(tables):
        db.execute("UPDATE ANALYSIS_DETAILS SET startTime = ?, stopTime = ?, duration = ?", (start, end, end - start))
    db.commit()
    db.execute("VACUUM")
    db.close()


# Tables the stored form leaves empty: CPU samples' and OS calls' backtraces, GPU metrics samples, CPU cycle samples.
# No prediction reads them (checked: every slow block's cuda_sync impact_ms is the same with and without them); they
# are most of an export's size.
UNREAD = ("SAMPLING_CALLCHAINS", "OSRT_CALLCHAINS", "GPU_METRICS", "COMPOSITE_EVENTS")


def store(src: pathlib.Path, dst: pathlib.Path, range_name: str = "Inference", untimed: int = 0) -> None:
    """dst (plain SQLite): src with only what calibration reads: the rows that begin inside a slow block (every
    table with a `start` or `timestamp` column), every NVTX range (the fixed blocks' ranges and their requests give
    their ms/request), and no rows in the UNREAD tables. tests/data keeps the --ab exports in this form (tree size)."""
    shutil.copyfile(plain(src), dst)
    db = sqlite3.connect(dst)
    spans = [(b["start"], b["end"]) for b in blocks(db, range_name, untimed) if b["variant"] == "slow"]
    inside = " OR ".join(f"({{c}} BETWEEN {a} AND {b})" for a, b in spans) or "0"
    for t, col in timed_tables(db):
        if t in UNREAD:
            db.execute(f"DELETE FROM '{t}'")
        elif col and t != "NVTX_EVENTS":    # all ranges stay (a few hundred rows): the fixed blocks' and their requests'
            db.execute(f"DELETE FROM '{t}' WHERE NOT ({inside.format(c=col)})")
    db.commit()
    db.execute("VACUUM")
    db.close()


def rounds(src: pathlib.Path, work: pathlib.Path, predict, range_name: str = "Inference",
           untimed: int = 0) -> list[dict]:
    """Per round of the --ab export src: its slow and fixed blocks' ms/request, the measured saving, and
    predict(cut) -> (predicted ms, severity) on the slow block's cut (made in `work`, removed after)."""
    src_plain = plain(src)
    db = sqlite3.connect(f"file:{src_plain}?mode=ro", uri=True)
    try:
        bl = blocks(db, range_name, untimed)
    finally:
        db.close()
    out = []
    for r in sorted({b["round"] for b in bl}):
        slow = [b for b in bl if b["round"] == r and b["variant"] == "slow"]
        fixed = [b for b in bl if b["round"] == r and b["variant"] == "fixed"]
        if not slow or not fixed or not slow[0]["requests"] or not fixed[0]["requests"]:
            continue
        s, f = slow[0], fixed[0]
        c = work / f"{src.name.removesuffix('.xz').removesuffix('.sqlite')}.slow{r}.sqlite"
        cut(src_plain, c, s["start"], s["end"])
        try:
            pred, sev = predict(c)
        finally:
            c.unlink()
        out.append({"round": r, "slow_ms": s["ms_per_request"], "fixed_ms": f["ms_per_request"],
                    "measured_ms": s["ms_per_request"] - f["ms_per_request"], "predicted_ms": pred,
                    "severity": sev, "requests": s["requests"]})
    return out


def one(src: pathlib.Path, work: pathlib.Path) -> dict:
    import calibrate    # its prediction of a block, the one the calibration table uses (calibrate imports this file)
    return {"file": src.name, "rounds": rounds(src, work, calibrate.block_predictor("cuda_sync"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("exports", nargs="+", type=pathlib.Path)
    ap.add_argument("--work", type=pathlib.Path, help="folder for the cuts (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the cuts in --work")
    ap.add_argument("--store", type=pathlib.Path, metavar="DIR",
                    help="only write each export's stored form (store()) as DIR/NAME.sqlite, then stop")
    a = ap.parse_args()
    if a.store:
        a.store.mkdir(parents=True, exist_ok=True)
        for src in a.exports:
            dst = a.store / src.name.removesuffix(".xz")
            if dst.exists() or src.resolve() == dst.resolve():
                sys.exit(f"ab_blocks: {dst}: exists; not overwritten")
            store(src, dst)
        return 0
    work = a.work or pathlib.Path(tempfile.mkdtemp(prefix="nsd-ab-"))
    work.mkdir(parents=True, exist_ok=True)
    print("| export | round | slow ms/req | fixed ms/req | measured saving | predicted (cuda_sync) | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for src in a.exports:
        res = one(src, work)
        for r in res["rounds"]:
            ratio = (f"{r['predicted_ms'] / r['measured_ms']:.2f}" if r["predicted_ms"] is not None
                     and r["measured_ms"] > 0 else "-")
            pred = "none (no finding)" if r["predicted_ms"] is None else \
                f"{r['predicted_ms']:.2f} ({r['severity']})"
            print(f"| {res['file']} | {r['round']} | {r['slow_ms']:.2f} | {r['fixed_ms']:.2f} | "
                  f"{r['measured_ms']:.2f} | {pred} | {ratio} |")
        ok = [r for r in res["rounds"] if r["predicted_ms"] is not None]
        if ok:
            m = statistics.median(r["measured_ms"] for r in ok)
            p = statistics.median(r["predicted_ms"] for r in ok)
            print(f"| {res['file']} | median | {statistics.median(r['slow_ms'] for r in ok):.2f} | "
                  f"{statistics.median(r['fixed_ms'] for r in ok):.2f} | {m:.2f} | {p:.2f} | "
                  f"{p / m:.2f} |" if m > 0 else f"| {res['file']} | median | | | {m:.2f} | {p:.2f} | - |")
    if not a.keep and not a.work:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
