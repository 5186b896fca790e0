"""Fuzz the readers and the analysis: mutated real profiles through `open_trace` + `analyze_trace` + renderers.

An NsysDoctorError is the right answer to a broken file; any other exception, a changed input file, or a
-wal/-shm/-journal file left next to it is a crash. Two engines, one harness (`run_one`):

    python fuzz/fuzz_readers.py                      # atheris (coverage-guided, libFuzzer) when installed
    python fuzz/fuzz_readers.py --plain              # plain random mutation loop, no extra dependency

Mutations are structure-aware where they can be: a SQLite input is opened in memory and damaged one SQL statement
at a time (tests/robustness/mutations.py: NULLs, negatives, huge values, swapped start/end, dropped tables and
columns, non-UTF-8 text, ...); .xz/.gz inputs are expanded, damaged and packed again; the rest of the time bytes are
overwritten in place, truncated, or handed to libFuzzer's own mutator. See fuzz/README.md.
"""
from __future__ import annotations

import argparse
import atexit
import collections
import gzip
import hashlib
import io
import json
import lzma
import os
import pathlib
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from tests.robustness import mutations  # noqa: E402

SQLITE_MAGIC = b"SQLite format 3\x00"
SHARED = pathlib.Path(os.environ.get("NSYS_DOCTOR_SHARED", REPO.parent / "shared"))
DEFAULT_SEEDS = [str(SHARED / "external" / "nsys" / f"{name}.sqlite.xz") for name in (
    "cuda-mlp-inference__nsys_report",                          # no NVTX: iterations inferred, OSRT callchains
    "nvfuser-accidental__report1_64ee035_h200_test_matmul",     # NVTX ranges, H200
    "dlprof-dummy-cnn__nsys_profile_w_relu",                    # NVTX requests, copies, memsets, syncs
)]
KINETO_SEED = str(SHARED / "external" / "kineto" / "hta-kineto-traces__with_gpu_user_annotation__step_based_trace_2543932.json.gz")

WORK = pathlib.Path(tempfile.mkdtemp(prefix="nsd-fuzz-"))
os.environ["NSYS_DOCTOR_CACHE"] = str(WORK / "cache")   # expanded .xz/.gz inputs go here, wiped as we go
STATS = {"execs": 0, "ok": 0, "nsys_doctor_error": 0, "crashes": 0, "start": time.time()}
ERRORS: collections.Counter = collections.Counter()      # NsysDoctorError messages, path stripped
CRASHES: dict[str, str] = {}                              # signature -> saved input
CRASH_DIR = REPO / "fuzz" / "crashes"
KEEP_GOING = True

open_trace = analyze_trace = NsysDoctorError = terminal = json_report = None


def load_target(instrument: bool) -> None:
    global open_trace, analyze_trace, NsysDoctorError, terminal, json_report
    if instrument:
        import atheris
        ctx = atheris.instrument_imports(include=["nsys_doctor"])
    else:
        import contextlib
        ctx = contextlib.nullcontext()
    with ctx:
        from nsys_doctor.analysis import analyze_trace as _a
        from nsys_doctor.errors import NsysDoctorError as _e
        from nsys_doctor.read import open_trace as _o
        from nsys_doctor.render import json_report as _j
        from nsys_doctor.render import terminal as _t
    open_trace, analyze_trace, NsysDoctorError, terminal, json_report = _o, _a, _e, _t, _j


# ------------------------------------------------------------------------------------------------ the harness
def run_one(data: bytes) -> None:
    """Raise on a crash; return on success or on a clean NsysDoctorError."""
    STATS["execs"] += 1
    n = STATS["execs"]
    # a fresh name each time: the .xz/.gz cache is keyed by path, size and mtime
    path = WORK / f"input{n}.sqlite"
    path.write_bytes(data)
    digest = hashlib.sha256(data).digest()
    try:
        try:
            trace = open_trace(path)
            try:
                report = analyze_trace(trace)
            finally:
                trace.close()
            terminal.render(report, file=io.StringIO())
            json.loads(json_report.render(report))
            STATS["ok"] += 1
        except NsysDoctorError as err:
            STATS["nsys_doctor_error"] += 1
            ERRORS[err.problem[:70]] += 1
        if hashlib.sha256(path.read_bytes()).digest() != digest:
            raise AssertionError("the input file was modified")
        left = [p.name for p in WORK.glob(f"input{n}.sqlite-*")]
        if left:
            raise AssertionError(f"files left next to the input: {left}")
    finally:
        for p in WORK.glob(f"input{n}.sqlite*"):
            p.unlink(missing_ok=True)
        if n % 200 == 0:
            shutil.rmtree(WORK / "cache", ignore_errors=True)


def signature(err: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "nsys_doctor" in f.filename]
    where = f"{pathlib.Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(err).__name__} at {where}"


def test_one_input(data: bytes) -> None:
    if time.time() - STATS.setdefault("last_report", STATS["start"]) > 60:   # libFuzzer exits without atexit
        STATS["last_report"] = time.time()
        report()
    try:
        run_one(data)
    except Exception as err:   # noqa: BLE001 - anything but NsysDoctorError is a finding
        sig = signature(err)
        if sig not in CRASHES:
            CRASH_DIR.mkdir(exist_ok=True)
            name = CRASH_DIR / f"crash-{hashlib.sha1(data).hexdigest()[:12]}"
            name.write_bytes(data)
            name.with_suffix(".txt").write_text("".join(traceback.format_exception(err)))
            CRASHES[sig] = str(name)
            print(f"\n=== NEW CRASH {sig}: input saved to {name}\n{''.join(traceback.format_exception(err))}",
                  file=sys.stderr, flush=True)
        STATS["crashes"] += 1
        if not KEEP_GOING:
            raise


# ------------------------------------------------------------------------------------------------ mutation
def unwrap(data: bytes) -> tuple[str, bytes]:
    try:
        if data.startswith(b"\xfd7zXZ\x00"):
            return "xz", lzma.decompress(data)
        if data.startswith(b"\x1f\x8b"):
            return "gz", gzip.decompress(data)
    except (lzma.LZMAError, EOFError, OSError, ValueError):
        pass
    return "", data


def wrap(kind: str, data: bytes) -> bytes:
    if kind == "xz":
        return lzma.compress(data, preset=0)
    if kind == "gz":
        return gzip.compress(data, compresslevel=1)
    return data


def sql_mutate(data: bytes, rnd: random.Random) -> bytes | None:
    """1-3 SQL-level mutations of a SQLite image, or None when it does not open."""
    db = sqlite3.connect(":memory:")
    try:
        db.deserialize(data)
        for _ in range(rnd.choice((1, 1, 2, 3))):
            mutations.random_mutation(db, rnd)
        db.commit()
        return db.serialize()
    except (sqlite3.DatabaseError, OverflowError, ValueError, MemoryError):
        return None
    finally:
        db.close()


def byte_mutate(data: bytes, rnd: random.Random) -> bytes:
    if not data:
        return bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 64)))
    b = bytearray(data)
    r = rnd.random()
    if r < 0.15:                                        # truncate (a page boundary or anywhere)
        cut = rnd.randrange(len(b))
        if rnd.random() < 0.5:
            cut -= cut % 4096
        return bytes(b[:cut])
    if r < 0.3:                                         # smash a run of bytes
        at = rnd.randrange(len(b))
        run = rnd.choice((4, 64, 512, 4096))
        b[at:at + run] = bytes(rnd.randrange(256) for _ in range(min(run, len(b) - at)))
        return bytes(b)
    for _ in range(rnd.choice((1, 2, 4, 16))):          # flip a few bytes in place: page layout stays
        at = rnd.randrange(len(b)) if rnd.random() < 0.95 else rnd.randrange(min(len(b), 100))
        b[at] = rnd.randrange(256) if rnd.random() < 0.5 else b[at] ^ (1 << rnd.randrange(8))
    return bytes(b)


def mutate(data: bytes, rnd: random.Random, libfuzzer=None, max_size: int | None = None) -> bytes:
    kind, inner = unwrap(data)
    r = rnd.random()
    out = None
    if inner.startswith(SQLITE_MAGIC) and r < 0.6:
        out = sql_mutate(inner, rnd)
    elif inner[:1] in (b"{", b"[") and r < 0.6:
        out = json_mutate(inner, rnd)
    if out is None:
        if libfuzzer is not None and rnd.random() < 0.3:
            out = libfuzzer(inner, max(len(inner) + 64, max_size or 0))
        else:
            out = byte_mutate(inner, rnd)
    out = wrap(kind, out) if rnd.random() < 0.97 else out     # now and then drop the wrapper
    if max_size is not None and len(out) > max_size:
        out = out[:max_size]
    return out


def json_mutate(data: bytes, rnd: random.Random) -> bytes | None:
    """Damage a Chrome-trace JSON: change one value somewhere in traceEvents."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    events = doc.get("traceEvents") if isinstance(doc, dict) else doc
    if not isinstance(events, list) or not events:
        return None
    ev = rnd.choice(events)
    if isinstance(ev, dict) and ev:
        key = rnd.choice(list(ev))
        ev[key] = rnd.choice((None, -1, 0, 2**63, 1e308, "x", "<script>", [], {}, True, -5.5))
    elif rnd.random() < 0.5:
        events.remove(ev)
    return json.dumps(doc).encode()


# ------------------------------------------------------------------------------------------------ engines
def seeds(paths: list[str]) -> list[bytes]:
    out = []
    for p in paths:
        if os.path.exists(p):
            data = pathlib.Path(p).read_bytes()
            out.append(lzma.decompress(data) if p.endswith(".xz") else data)
    if out:   # the same exports compressed, to reach the .xz/.gz path
        out.append(gzip.compress(out[0], compresslevel=1))
        out.append(lzma.compress(out[1] if len(out) > 2 else out[0], preset=0))
    try:
        import importlib
        importlib.import_module("nsys_doctor.read.kineto_json")
        if os.path.exists(KINETO_SEED):
            out.append(pathlib.Path(KINETO_SEED).read_bytes())
    except ModuleNotFoundError:
        pass
    return out


def report(stream=sys.stderr) -> None:
    took = time.time() - STATS["start"]
    print(f"\nfuzz_readers: {STATS['execs']} executions in {took:.0f} s ({STATS['execs'] / max(took, 1e-9):.1f}/s): "
          f"{STATS['ok']} analysed, {STATS['nsys_doctor_error']} NsysDoctorError, {STATS['crashes']} crashes "
          f"({len(CRASHES)} distinct)", file=stream)
    for sig, where in CRASHES.items():
        print(f"  crash: {sig} -> {where}", file=stream)
    for msg, k in ERRORS.most_common(12):
        print(f"  {k:6d} x {msg}", file=stream)
    stream.flush()


def plain_loop(corpus: list[bytes], seconds: float, seed: int) -> None:
    rnd = random.Random(seed)
    pool = list(corpus)
    end = time.time() + seconds
    last = time.time()
    for data in corpus:
        test_one_input(data)
    while time.time() < end:
        base = rnd.choice(pool)
        data = mutate(base, rnd)
        for _ in range(rnd.choice((0, 0, 1, 2))):        # stack mutations now and then
            data = mutate(data, rnd)
        test_one_input(data)
        if rnd.random() < 0.02 and len(pool) < 64:       # keep a few mutants as parents (no coverage signal)
            pool.append(data)
        if time.time() - last > 60:
            report()
            last = time.time()


def main() -> None:
    global KEEP_GOING
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plain", action="store_true", help="plain mutation loop (no atheris)")
    ap.add_argument("--seconds", type=float, default=600, help="how long to run (default 600)")
    ap.add_argument("--seed", type=int, default=0, help="random seed of the plain loop")
    ap.add_argument("--stop-on-crash", action="store_true", help="stop at the first crash (libFuzzer's default)")
    ap.add_argument("--seeds", nargs="*", default=DEFAULT_SEEDS, help="seed profiles (small real exports)")
    args, libfuzzer_args = ap.parse_known_args()
    KEEP_GOING = not args.stop_on_crash
    atexit.register(report)
    atexit.register(shutil.rmtree, WORK, True)
    use_atheris = not args.plain
    if use_atheris:
        try:
            import atheris
        except ImportError:
            print("fuzz_readers: atheris is not installed; running the plain loop", file=sys.stderr)
            use_atheris = False
    load_target(instrument=use_atheris)
    corpus = seeds(args.seeds)
    if not corpus:
        sys.exit("fuzz_readers: no seed profiles found; pass --seeds FILE...")
    if not use_atheris:
        plain_loop(corpus, args.seconds, args.seed)
        return
    corpus_dir = WORK / "corpus"
    corpus_dir.mkdir()
    for i, data in enumerate(corpus):
        (corpus_dir / f"seed{i}").write_bytes(data)

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        return mutate(data, random.Random(seed), atheris.Mutate, max_size)

    argv = [sys.argv[0], f"-max_total_time={int(args.seconds)}", "-timeout=60", "-rss_limit_mb=8192", f"-artifact_prefix={CRASH_DIR}/",
            f"-max_len={max(len(c) for c in corpus) * 2}", *libfuzzer_args, str(corpus_dir)]
    CRASH_DIR.mkdir(exist_ok=True)
    atheris.Setup(argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
