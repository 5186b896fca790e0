"""Fleet mode: analyse many profiles (ranks, replicas, runs) in parallel and summarise them together.

`analyze_many(paths, scheduler=None, workers=None, progress=None) -> Fleet`, on Dask (a LocalCluster, or the cluster
of --scheduler) when it is installed, else on a standard-library process pool. Files, folders and globs expand into
profile paths; each worker process reads and diagnoses one profile and sends back a compact `Result` (the measured
requests' latencies, the requests summary, the findings as dicts: never the timeline) or a `Failure` naming the file
and the problem. Every file keeps its fate: a bad file, or a bug while analysing one, is a Failure and the rest go on.
The summary (`Fleet.to_dict()`) has exact fleet-wide percentiles from the merged samples, the straggler, outliers,
findings counted across the fleet, and the failures. Dask is imported only here, only when a fleet runs.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import pathlib
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .errors import BadInput, NsysDoctorError, ToolMissing
from .cli.memory import give_back, keep_freed_memory
from .model.arrays import median
from .read import identify, suffixes

PERCENTILES = (50, 90, 99)
# A report is an outlier when its p50 is more than 3.5 scaled MADs (1.4826 x MAD, which estimates the standard
# deviation of normal data) from the median of the reports' p50s: Iglewicz & Hoaglin's modified z-score cut-off;
# with a normal spread about 1 report in 2,000 lies beyond it by chance, and one slow rank cannot hide itself by
# inflating the spread as it would a standard deviation.
OUTLIER_MADS = 3.5
MAD_TO_SIGMA = 1.4826
# Spread floor: 1% of the median p50. Replicas of one program on one GPU model differ by ~2% run to run
# (compare.MIN_CHANGE_PCT); when most reports agree to the microsecond the MAD is ~0 and would flag noise.
MAD_FLOOR_PCT = 1.0
MIN_REPORTS_FOR_OUTLIERS = 3    # with two reports the median is their midpoint: both are equally "out"
MS_DIGITS = 4       # per-request latencies are saved to 0.1 us (analysis.per_request_columns): no more digits here
TOP_FINDINGS_PER_REPORT = 3     # findings of each report kept in the fleet JSON (all are in Result.findings)
# A folder or glob picks up the files a reader accepts by content (read.identify); an explicitly named file is
# analysed whatever it holds (its reader says what is wrong with it).
RANK_IN_NAME = re.compile(r"(?:^|[^a-z])rank[-_.]?(\d+)", re.IGNORECASE)     # rank3.sqlite, report_rank_03.nsys-rep
REQUEST_KEYS_DROPPED = ("kernels", "tensorrt_layers", "candidates")           # per-kernel tables: too big to gather
DASK_MISSING = "--scheduler needs Dask: pip install 'nsys-doctor[fleet]' (or 'dask[distributed]')"


@dataclass
class Result:
    """What a worker sends back for one analysed profile: small, picklable, no timeline."""
    path: str
    latency_ms: list[float]          # end-to-end latency of each measured (not warm-up) request
    requests: dict[str, Any]         # Report.requests without the per-kernel tables
    findings: list[dict[str, Any]]   # Report.findings as dicts, ranked
    verdict: str
    profile: dict[str, Any]          # format, nsys version, GPUs, duration
    seconds: float                   # read + diagnose, wall time in the worker
    cpu_seconds: float               # the same, CPU time of the worker process (all its threads)
    worker: str                      # host:pid of the worker process
    peak_rss_mb: float | None        # that process's peak resident memory so far


@dataclass
class Failure:
    """A file the fleet could not analyse, and why, in one line."""
    path: str
    problem: str
    error: str = "BadInput"          # the exception type: an NsysDoctorError subclass, or a bug's type
    bug: bool = False                # not an NsysDoctorError: nsys-doctor itself failed on this file


def analyze_one(path: str, range_name: str | None = None, skip: int | None = None,
                tune_memory: bool = True) -> Result | Failure:
    """Read and diagnose one profile in this process; never raises (Dask's worker function). `tune_memory`: the
    process is ours (a worker of our own LocalCluster), so its allocator may be set as the command line's is
    (cli/memory.py says why); never in the workers of a user's own scheduler."""
    t, cpu = time.perf_counter(), time.process_time()
    if tune_memory:
        keep_freed_memory()
    try:
        from .analysis import analyze
        from .compare import measured
        report = analyze(path, range_name=range_name, skip=skip, timeline=False)   # not sent back: not built
        return Result(path=path, latency_ms=[float(x) for x in measured(report)],
                      requests={k: v for k, v in report.requests.items() if k not in REQUEST_KEYS_DROPPED},
                      findings=[dataclasses.asdict(f) for f in report.findings], verdict=report.verdict,
                      profile={k: report.profile.get(k) for k in ("format", "nsys_version", "gpus", "duration_s")},
                      seconds=time.perf_counter() - t, cpu_seconds=time.process_time() - cpu,
                      worker=f"{os.uname().nodename}:{os.getpid()}", peak_rss_mb=_peak_rss_mb())
    except NsysDoctorError as err:       # an error about another file (the cache folder, an export) names it
        problem = err.problem if err.path in (None, os.fspath(path)) else f"{err.path}: {err.problem}"
        return Failure(path, problem, type(err).__name__)
    except Exception as err:        # noqa: BLE001 - a bug on one file must not stop the fleet; it is reported
        return Failure(path, f"{type(err).__name__}: {err}{_where(err)} (a bug in nsys-doctor; please report it)",
                       type(err).__name__, bug=True)
    finally:
        if tune_memory:
            give_back()


def _where(err: BaseException) -> str:
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}" if tb else ""


def _peak_rss_mb() -> float | None:
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # KiB on Linux
    except (ImportError, OSError):
        return None


def is_collection(arg: str | os.PathLike) -> bool:
    """A folder, or a glob pattern that is not itself an existing file: fleet mode even when it is the only one."""
    arg = os.fspath(arg)
    return os.path.isdir(arg) or (bool(re.search(r"[*?[]", arg)) and not os.path.exists(arg))


def _not_a_file(p: pathlib.Path) -> str:
    if p.is_symlink() and not p.exists():
        return "a symbolic link to nothing (broken, or a loop): not read"
    return "not a regular file (a pipe, socket or device): not read"


def expand_paths(args) -> tuple[list[str], list[Failure], list[dict]]:
    """Files, folders (searched recursively) and globs -> (profile paths in order, failures, skipped files)."""
    found: list[str] = []
    failures: list[Failure] = []
    skipped: list[dict] = []
    for arg in [os.fspath(a) for a in args]:
        if os.path.isfile(arg) or (os.path.exists(arg) and not os.path.isdir(arg)):
            found.append(arg)               # named explicitly: the reader decides what it is
            continue
        if os.path.isdir(arg):
            roots, what = [arg], "folder holds no profiles"
        elif re.search(r"[*?[]", arg):
            roots, what = sorted(glob.glob(arg, recursive=True)), "no file matches this pattern"
        else:
            failures.append(Failure(arg, "no such file"))
            continue
        before, skipped_before = len(found), len(skipped)
        for root in roots:
            candidates = sorted(str(p) for p in pathlib.Path(root).rglob("*") if p.is_file()) \
                if os.path.isdir(root) else [root]
            if os.path.isdir(root):          # named like a profile but no file to read: said, never dropped unsaid
                skipped.extend({"path": str(p), "why": _not_a_file(p)} for p in sorted(pathlib.Path(root).rglob("*"))
                               if p.name.lower().endswith(suffixes()) and not p.is_file() and not p.is_dir())
            for c in candidates:
                try:
                    reader, why = identify(c)   # by content: the readers in read.READERS say what they accept
                except BadInput as err:
                    failures.append(Failure(c, err.problem))
                    continue
                if reader is not None:
                    found.append(c)
                elif os.path.isdir(arg) and not c.lower().endswith(suffixes()):
                    continue        # a folder's READMEs and logs: passed over, named like no profile
                else:
                    skipped.append({"path": c, "why": why})    # labels.json beside the profiles: said, not failed
        if len(found) == before:
            n = len(skipped) - skipped_before
            where = "it holds" if os.path.isdir(arg) else "matching this pattern"
            failures.append(Failure(arg, f"none of the {n} files {where} is a profile (each is listed as skipped)"
                                    if n else what))
    paths, seen = [], set()
    exports = {str(pathlib.Path(p).with_suffix("")) for p in found if p.endswith(".sqlite")}
    for p in found:
        key = os.path.realpath(p)
        if key in seen:
            continue
        seen.add(key)
        if p.endswith((".nsys-rep", ".qdrep")) and str(pathlib.Path(p).with_suffix("")) in exports:
            skipped.append({"path": p, "why": "its SQLite export beside it is analysed instead"})
            continue
        paths.append(p)
    return paths, failures, skipped


def _dask():
    try:
        import distributed
    except ImportError:
        raise ToolMissing(None, DASK_MISSING) from None
    return distributed


def _have_dask() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def analyze_many(paths, scheduler: str | None = None, workers: int | None = None,
                 progress: Callable[[int, int, Result | Failure], None] | None = None,
                 range_name: str | None = None, skip: int | None = None, use_dask: bool | None = None,
                 expanded: tuple | None = None) -> "Fleet":
    """Analyse every profile under `paths` in parallel; `progress(done, total, outcome)` after each one.

    scheduler: address of a running Dask scheduler (its workers must have nsys-doctor installed and see the same
    paths); default: `workers` local processes (default the CPU count), one analysis each at a time (the analysis
    holds the GIL in places, so processes, not threads, run in parallel): a Dask LocalCluster when Dask is
    installed, else a standard-library process pool. use_dask: force one or the other (None: Dask when present).
    expanded: `expand_paths(paths)` when the caller has it already (the CLI checks its output against those files
    before the work), so that a folder is not scanned twice."""
    t0 = time.perf_counter()
    found, failures, skipped = expanded if expanded is not None else expand_paths(paths)
    if workers is not None and workers < 1:
        raise BadInput(None, "--workers must be 1 or more")
    if use_dask is None:
        use_dask = bool(scheduler) or _have_dask()
    if not use_dask:
        if scheduler:
            raise ToolMissing(scheduler, DASK_MISSING)
        n_workers = min(workers or os.cpu_count() or 1, max(len(found), 1))
        outcomes = _on_local_processes(found, n_workers, progress, range_name, skip)
        return _fleet(found, outcomes, failures, skipped, n_workers, None, t0, engine="processes")
    distributed = _dask()
    outcomes: dict[str, Result | Failure] = {}
    n_workers = None
    if found:
        cluster = None
        try:
            if scheduler:
                client = distributed.Client(scheduler, timeout="20s")
            else:
                import logging
                n_workers = workers or os.cpu_count() or 1
                cluster = distributed.LocalCluster(n_workers=min(n_workers, len(found)), threads_per_worker=1,
                                                   processes=True, dashboard_address=None,
                                                   silence_logs=logging.ERROR)
                client = distributed.Client(cluster)
        except (OSError, TimeoutError, ValueError) as err:     # ValueError: an address Dask cannot parse
            if cluster is not None:
                cluster.close()
            raise BadInput(scheduler, f"cannot start or reach the Dask cluster ({err})") from None
        try:
            if scheduler:
                n_workers = len(client.scheduler_info().get("workers", {})) or None
            futures = client.map(analyze_one, found, range_name=range_name, skip=skip, tune_memory=not scheduler,
                                 pure=False)
            path_of = {f.key: p for f, p in zip(futures, found)}
            outcomes = _collect(((path_of[f.key], f) for f in distributed.as_completed(futures)), len(found),
                                progress)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return _fleet(found, outcomes, failures, skipped, n_workers, scheduler, t0, engine="dask")


def _fleet(found, outcomes, failures, skipped, n_workers, scheduler, t0, engine) -> "Fleet":
    ordered = [outcomes[p] for p in found]
    return Fleet(results=[o for o in ordered if isinstance(o, Result)],
                 failures=failures + [o for o in ordered if isinstance(o, Failure)], skipped=skipped,
                 workers=n_workers, scheduler=scheduler, seconds=time.perf_counter() - t0, engine=engine)


def _on_local_processes(found: list[str], n_workers: int, progress, range_name, skip) -> dict:
    """The same work on a standard-library process pool: what runs when Dask is not installed."""
    import concurrent.futures as cf
    import multiprocessing
    outcomes: dict[str, Result | Failure] = {}
    if not found:
        return outcomes
    # forkserver: workers start from a clean process, not a fork of this one and its reader and progress threads
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    with cf.ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
        futures = {pool.submit(analyze_one, p, range_name, skip): p for p in found}
        return _collect(((futures[f], f) for f in cf.as_completed(futures)), len(found), progress)


def _collect(done, total: int, progress) -> dict:
    """Outcomes from (path, future) pairs as each finishes, Dask's or the process pool's alike; `progress` after
    each one."""
    outcomes: dict[str, Result | Failure] = {}
    for path, fut in done:
        try:
            outcome = fut.result()
        except Exception as err:    # noqa: BLE001 - the worker died (memory, crash): this file failed, not all
            outcome = Failure(path, f"the worker could not analyse it ({type(err).__name__}: {err})",
                              type(err).__name__, bug=True)
        outcomes[path] = outcome
        if progress:
            progress(len(outcomes), total, outcome)
    return outcomes


def _stats(values: np.ndarray) -> dict:
    """Exact percentiles (numpy's default linear interpolation, as `analyze` uses) of the samples given."""
    if len(values) == 0:
        return {"count": 0}
    out = {f"p{q}": _r(np.percentile(values, q)) for q in PERCENTILES}
    out.update(max=_r(values.max()), min=_r(values.min()), mean=_r(values.mean()), count=int(len(values)))
    return out


def _r(x, digits: int = MS_DIGITS) -> float | None:
    """A float for the JSON, to the precision of the per-request latencies it comes from (not 82.23201999999999)."""
    return None if x is None else round(float(x), digits)


def _finding_brief(f: dict) -> dict:
    return {k: f.get(k) for k in ("category", "severity", "title", "impact_ms", "impact_pct")}


def _labels(paths: list[str]) -> list[str]:
    """Paths relative to their common folder: short, and still unique."""
    if not paths:
        return []
    dirs = [os.path.dirname(os.path.abspath(p)) for p in paths]
    base = os.path.commonpath(dirs)
    return [os.path.relpath(os.path.abspath(p), base) for p in paths]


def rank_of(path: str) -> int | None:
    m = RANK_IN_NAME.search(os.path.basename(path))
    return int(m.group(1)) if m else None


@dataclass
class Fleet:
    results: list[Result]
    failures: list[Failure] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    workers: int | None = None
    scheduler: str | None = None
    seconds: float = 0.0
    engine: str = "dask"             # "dask" (LocalCluster or --scheduler) or "processes" (no Dask installed)

    def samples(self) -> np.ndarray:
        """All measured requests' latencies of the fleet, in ms."""
        arrays = [np.asarray(r.latency_ms, dtype=np.float64) for r in self.results]
        return np.concatenate(arrays) if arrays else np.empty(0)

    def to_dict(self) -> dict[str, Any]:
        from . import __version__
        results = sorted(self.results, key=lambda r: (rank_of(r.path) is None, rank_of(r.path) or 0))  # stable
        labels = _labels([r.path for r in results])
        reports = []
        for r, label in zip(results, labels):
            reports.append({"path": r.path, "label": label, "rank": rank_of(r.path),
                            "latency_ms": _stats(np.asarray(r.latency_ms, dtype=np.float64)),
                            "requests": {k: r.requests.get(k) for k in ("range", "count", "total", "warmup",
                                                                         "gpu_busy_pct", "inferred")},
                            "findings": [_finding_brief(f) for f in r.findings[:TOP_FINDINGS_PER_REPORT]],
                            "verdict": r.verdict, "seconds": round(r.seconds, 3), "worker": r.worker,
                            "peak_rss_mb": _r(r.peak_rss_mb, 1)})
        measured = [x for x in reports if x["latency_ms"]["count"]]
        p50s = np.array([x["latency_ms"]["p50"] for x in measured])
        median_p50 = _r(median(p50s)) if len(p50s) else None
        return {
            "kind": "fleet", "tool": {"name": "nsys-doctor", "version": __version__},
            "analysed": len(self.results), "failed": len(self.failures), "skipped_count": len(self.skipped),
            "latency_ms": _stats(self.samples()),
            "median_report_p50_ms": median_p50,
            "reports": reports,
            "straggler": _straggler(measured, median_p50, len(reports), results),
            "outliers": _outliers(measured, p50s, median_p50),
            "findings": _across(results, labels),
            "failures": [dataclasses.asdict(f) for f in self.failures],
            "skipped": list(self.skipped),
            "workers": _workers(results), "n_workers": self.workers, "scheduler": self.scheduler,
            "engine": self.engine, "seconds": round(self.seconds, 3),
        }


def _straggler(measured: list[dict], median_p50: float | None, n_reports: int, results) -> dict | None:
    if len(measured) < 2:
        return None
    s = max(measured, key=lambda x: x["latency_ms"]["p50"])      # first of equals, in path order
    p50 = s["latency_ms"]["p50"]
    top = s["findings"][0] if s["findings"] else None
    shared = sum(1 for r in results if top and any(f["category"] == top["category"] for f in r.findings))
    return {"path": s["path"], "label": s["label"], "rank": s["rank"], "p50_ms": p50,
            "fleet_median_ms": median_p50, "excess_ms": _r(p50 - median_p50),
            "ratio": _r(p50 / median_p50, 3) if median_p50 else None,
            "explanation": top, "explanation_in_reports": shared, "of_reports": n_reports}


def _outliers(measured: list[dict], p50s: np.ndarray, median_p50: float | None) -> dict:
    out = {"threshold_mads": OUTLIER_MADS, "center_ms": median_p50, "mad_ms": None, "spread_ms": None, "reports": []}
    if len(measured) < MIN_REPORTS_FOR_OUTLIERS:
        out["note"] = f"needs at least {MIN_REPORTS_FOR_OUTLIERS} analysed reports"
        return out
    mad = float(median(np.abs(p50s - median_p50)))
    spread = max(MAD_TO_SIGMA * mad, MAD_FLOOR_PCT / 100 * abs(median_p50))
    out.update(mad_ms=_r(mad), spread_ms=_r(spread))
    for x, p50 in zip(measured, p50s):
        score = (p50 - median_p50) / spread if spread else 0.0
        if abs(score) > OUTLIER_MADS:
            out["reports"].append({"path": x["path"], "label": x["label"], "rank": x["rank"], "p50_ms": _r(p50),
                                   "mads": _r(score, 2), "direction": "slower" if score > 0 else "faster",
                                   "top_finding": x["findings"][0] if x["findings"] else None})
    out["reports"].sort(key=lambda o: -abs(o["mads"]))
    return out


def _across(results: list[Result], labels: list[str]) -> list[dict]:
    """Each finding category: in how many reports, at which severities, how often the top one."""
    cats: dict[str, dict] = {}
    for r, label in zip(results, labels):
        for i, f in enumerate(r.findings):
            c = cats.setdefault(f["category"], {"category": f["category"], "reports": 0, "of": len(results),
                                                 "severity": {"high": 0, "medium": 0, "low": 0}, "top_in": 0,
                                                 "impact_ms": [], "labels": []})
            if label in c["labels"]:
                continue                     # a category counted once per report (its largest instance)
            c["reports"] += 1
            c["severity"][f["severity"]] = c["severity"].get(f["severity"], 0) + 1
            c["top_in"] += i == 0
            c["impact_ms"].append(float(f["impact_ms"]))
            c["labels"].append(label)
    out = []
    for c in cats.values():
        imp = c.pop("impact_ms")
        c["mean_impact_ms"], c["max_impact_ms"] = _r(np.mean(imp), 3), _r(np.max(imp), 3)
        out.append(c)
    return sorted(out, key=lambda c: (-c["reports"], -c["severity"]["high"], -c["mean_impact_ms"]))


def _workers(results: list[Result]) -> dict[str, dict]:
    w: dict[str, dict] = {}
    for r in results:
        e = w.setdefault(r.worker, {"reports": 0, "seconds": 0.0, "cpu_seconds": 0.0, "peak_rss_mb": None})
        e["reports"] += 1
        e["seconds"] = round(e["seconds"] + r.seconds, 3)
        e["cpu_seconds"] = round(e["cpu_seconds"] + r.cpu_seconds, 3)
        if r.peak_rss_mb is not None:
            e["peak_rss_mb"] = max(e["peak_rss_mb"] or 0.0, round(r.peak_rss_mb, 1))
    return w
