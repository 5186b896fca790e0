"""PyTorch profiler (Kineto) traces in ../shared/external/kineto: every one analyses, and what the reader maps is
checked against the JSON read independently here with plain `json` (counts by event category and name).
Synthetic files only for the bad-input edge cases, and they say so."""
from __future__ import annotations

import gc
import gzip
import json
import re
import subprocess
import sys
from decimal import Decimal

import numpy as np
import pytest

from nsys_doctor.analysis import analyze
from nsys_doctor.errors import BadInput, NoData
from tests.conftest import EXTERNAL, analysed, opened

KINETO = EXTERNAL / "kineto"
STEP = "ProfilerStep#*"

# file -> (request range, requests): what `analyze` finds. Range counts are re-derived from the JSON below; the
# reasons are in docs/kineto.md. None as range: no eligible range, iterations are inferred from syncs.
EXPECTED = {
    # nine sibling ranges (attn/mlp/dispatch/combine, forward and backward) in one order, 4 times, nothing around them
    "deepseek-profile-data__train.json": ("step (combine(B) .. combine(F))", 4),
    # two warm-up forwards, the second nested inside the first on the same thread: one outermost instance
    "hta-kineto-traces__critical_path__alexnet__benchmark_result_2869224_1695835535_trace.json.gz":
        ("[param|pytorch.model.alex_net|0|0|0|warmup|forward]", 1),
    "hta-kineto-traces__df_index_resolver__df_index_resolver.json.gz": (STEP, 5),
    "hta-kineto-traces__nccl_parser_config__nccl_data.json.gz": (STEP, 3),
    "hta-kineto-traces__negative_queue_length_values_check__rank0.json.gz": (STEP, 5),
    "hta-kineto-traces__ns_resolution_trace__rank-0.Apr_03_18_51_38.1102.pt.trace.json.gz": (STEP, 5),
    "hta-kineto-traces__timeline_analysis__sampled_rank-0.json.gz": (STEP, 2),
    "hta-kineto-traces__trace_diff__control__control.json.gz": (STEP, 6),
    "hta-kineto-traces__trace_diff__test__test.json.gz": (STEP, 6),
    # no ProfilerStep: zero_grad and step, siblings, 5 times each, make one training step together
    "hta-kineto-traces__with_gpu_user_annotation__step_based_trace_2543932.json.gz":
        ("step (Optimizer.zero_grad#SGD.zero_grad .. Optimizer.step#SGD.step)", 5),
    "kineto-tbplugin-samples__resnet50_num_workers_0.worker0.pt.trace.json.gz": (STEP, 6),
    "kineto-tbplugin-samples__resnet50_num_workers_4.worker0.pt.trace.json.gz": (STEP, 6),
    # only nccl:* annotations (a library's ranges): 9 iterations ending in cudaStreamSynchronize, the first included
    "tracemap-vllm-kineto__1_h100_1000isl_10osl_32con.pt.trace.json.gz": (None, 9),
}
RANGE_CATS = ("user_annotation", "cpu_op", "Operator")   # record_function ranges; Operator in 2020 traces



def kineto(name: str):
    path = KINETO / name
    if not path.exists():
        pytest.skip(f"{path} not found (../shared is missing)")
    return path


def events(name: str, exact: bool = False) -> list[dict]:
    """The trace's events, read with plain json (exact: floats as Decimal, to the nanosecond)."""
    path = kineto(name)      # not cached: holding millions of dicts makes every later collection slow
    opener = gzip.open if name.endswith(".gz") else open
    gc.disable()
    try:
        with opener(path, "rb") as fh:
            doc = json.load(fh, parse_float=Decimal) if exact else json.load(fh)
    finally:
        gc.enable()
    return doc if isinstance(doc, list) else doc["traceEvents"]


def trace(name: str):
    return opened(kineto(name))        # parsed once per session (conftest), shared with report() and test_compare


def report(name: str):
    return analysed(kineto(name))


def json_ranges(evs: list[dict], range_name: str) -> list[dict]:
    """Outermost instances of a range (same name nested on the same thread is one request), from the JSON."""
    if range_name == STEP:
        match = lambda n: re.fullmatch(r"ProfilerStep#\d+", n)  # noqa: E731
    else:
        match = lambda n: n == range_name  # noqa: E731
    inst = sorted((e for e in evs if e.get("ph") == "X" and e.get("cat") in RANGE_CATS
                   and match(str(e.get("name")))), key=lambda e: e["ts"])
    outer, end = [], {}
    for e in inst:
        key = (e["pid"], str(e["tid"]))
        if key in end and e["ts"] + e["dur"] <= end[key]:
            continue
        outer.append(e)
        end[key] = max(end.get(key, 0), e["ts"] + e["dur"])
    return outer


def test_expected_table_covers_every_file():
    if not KINETO.exists():
        pytest.skip("../shared is missing")
    assert sorted(p.name for p in KINETO.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_trace_analyses(name):
    range_name, count = EXPECTED[name]
    rep = report(name)
    q = rep.requests
    assert rep.profile["format"] == "kineto-json"
    assert q["total"] == count
    if range_name is None:
        assert q["inferred"]
        # independent: every annotation in the JSON is a library's (nccl:...), so none can be a request
        names = {e["name"] for e in events(name) if e.get("cat") == "user_annotation"}
        assert names and all(n.startswith("nccl:") for n in names)
    else:
        assert q["range"] == range_name and not q["inferred"]
        # a step of sibling ranges: as many steps as instances of its first range
        first = range_name[len("step ("):].split(" .. ")[0] if range_name.startswith("step (") else range_name
        assert len(json_ranges(events(name), first)) == count


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_gpu_and_api_counts_match_json(name):
    evs = events(name)
    tr = trace(name)
    by_cat = {}
    for e in evs:
        if e.get("ph") == "X":
            by_cat[e.get("cat")] = by_cat.get(e.get("cat"), 0) + 1
    n = lambda *cats: sum(by_cat.get(c, 0) for c in cats)  # noqa: E731
    tables = {t: len(tr.table(t)["start_ns"]) for t in ("kernels", "copies", "memsets", "api_calls", "syncs")}
    assert tables == {"kernels": n("kernel", "Kernel"), "copies": n("gpu_memcpy", "Memcpy"),
                      "memsets": n("gpu_memset", "Memset"), "api_calls": n("cuda_runtime", "Runtime", "cuda_driver"),
                      "syncs": n("cuda_sync")}
    assert tr.source == "kineto-json"
    for t in ("os_calls", "sched", "samples", "gpu_metrics"):
        assert tr.absent[t] == "not in PyTorch profiler traces"
    # the reader's ids: every API call's process (Trace.ids) is a process of the processes table, and GPU rows
    # that share a correlation id with an API call carry that call's process
    api, k = tr.table("api_calls"), tr.table("kernels")
    assert set(np.unique(tr.ids.process_of(api["tid"]))) <= set(tr.table("processes")["pid"])
    order = np.argsort(api["correlation"], kind="stable")
    a_corr, a_pid = api["correlation"][order], tr.ids.process_of(api["tid"])[order]
    pos = np.clip(np.searchsorted(a_corr, k["correlation"]), 0, len(a_corr) - 1)
    hit = a_corr[pos] == k["correlation"]
    assert hit.mean() > 0.85 and (k["pid"][hit] == a_pid[pos[hit]]).all()
    assert (np.diff(k["start_ns"]) >= 0).all() and (k["end_ns"] >= k["start_ns"]).all()


def test_ns_resolution_times_are_exact():
    # ts/dur written with three decimals (1712195495519689.0 + 63.813): float64 keeps only ~0.25 us of the ts
    name = "hta-kineto-traces__ns_resolution_trace__rank-0.Apr_03_18_51_38.1102.pt.trace.json.gz"
    ks = sorted((e for e in events(name, exact=True) if e.get("cat") == "kernel"), key=lambda e: e["ts"])
    want_dur = sorted(int(e["dur"] * 1000) for e in ks)
    want_gap = [int((b["ts"] - a["ts"]) * 1000) for a, b in zip(ks, ks[1:])]
    k = trace(name).table("kernels")
    assert sorted((k["end_ns"] - k["start_ns"]).tolist()) == want_dur
    assert np.diff(k["start_ns"]).tolist() == want_gap
    assert any(d % 1000 for d in want_dur)          # really sub-microsecond


def test_copy_direction_and_memory_kinds_from_names():
    # vLLM: 'Memcpy HtoD (Pinned -> Device)' etc.; ResNet-50 (2020 format): 'Memcpy HtoD (Pageable -> Device)'
    kind = {"HtoD": 1, "DtoH": 2, "DtoD": 8}
    mem = {"Pageable": 0, "Pinned": 1, "Device": 2}
    for name in ("tracemap-vllm-kineto__1_h100_1000isl_10osl_32con.pt.trace.json.gz",
                 "kineto-tbplugin-samples__resnet50_num_workers_0.worker0.pt.trace.json.gz"):
        want = {}
        for e in events(name):
            if e.get("cat") in ("gpu_memcpy", "Memcpy"):
                m = re.fullmatch(r"Memcpy (\w+) \((\w+) -> (\w+)\)", e["name"])
                key = (kind[m.group(1)], mem[m.group(2)], mem[m.group(3)])
                want[key] = want.get(key, 0) + 1
        c = trace(name).table("copies")
        got = {}
        for key in zip(c["kind"].tolist(), c["src_kind"].tolist(), c["dst_kind"].tolist()):
            got[key] = got.get(key, 0) + 1
        assert got == want and len(want) >= 1


def test_cuda_sync_events_become_syncs():
    # alexnet records cuda_sync events (Stream Sync, Context Sync, Stream Wait Event)
    name = "hta-kineto-traces__critical_path__alexnet__benchmark_result_2869224_1695835535_trace.json.gz"
    types = {"Event Sync": 1, "Stream Wait Event": 2, "Stream Sync": 3, "Context Sync": 4}
    want = sorted(types[e["args"]["cuda_sync_kind"]] for e in events(name) if e.get("cat") == "cuda_sync")
    assert sorted(trace(name).table("syncs")["sync_type"].tolist()) == want


def test_step_ranges_share_one_name_and_keep_their_numbers():
    name = "hta-kineto-traces__ns_resolution_trace__rank-0.Apr_03_18_51_38.1102.pt.trace.json.gz"
    steps = sorted(int(e["name"].split("#")[1]) for e in events(name) if str(e.get("name")).startswith("ProfilerStep#"))
    tr = trace(name)
    r = tr.table("ranges")
    assert (r["name"] == STEP).sum() == len(steps) == 5
    assert tr.meta["profiler_steps"] == steps
    assert not any(str(x).startswith("ProfilerStep#") and x != STEP for x in r["name"])


def test_gpu_names_from_device_properties():
    name = "tracemap-vllm-kineto__1_h100_1000isl_10osl_32con.pt.trace.json.gz"
    with gzip.open(kineto(name)) as fh:
        props = json.load(fh)["deviceProperties"]
    assert report(name).profile["gpus"] == [p["name"] for p in props]
    assert "NVIDIA H100 80GB HBM3" in report(name).profile["gpus"]


# ------------------------------------------------------------------------ ResNet-50, DataLoader workers 0 vs 4
W0 = "kineto-tbplugin-samples__resnet50_num_workers_0.worker0.pt.trace.json.gz"
W4 = "kineto-tbplugin-samples__resnet50_num_workers_4.worker0.pt.trace.json.gz"


def _mean_dur_ms(name: str, prefix: str) -> float:
    d = [e["dur"] for e in events(name) if e.get("ph") == "X" and str(e.get("name", "")).startswith(prefix)]
    return float(sum(d)) / len(d) / 1000


def test_resnet_pair_profiler_steps():
    for name in (W0, W4):
        steps = [e for e in events(name) if re.fullmatch(r"ProfilerStep#\d+", str(e.get("name")))]
        assert len(steps) == 6 == report(name).requests["total"]   # steps 5..10 in both


def test_resnet_data_loading_gap_larger_with_0_workers():
    # from the JSON: enumerate(DataLoader) takes ~52 ms a step with 0 workers, ~1.6 ms with 4
    dl0, dl4 = _mean_dur_ms(W0, "enumerate(DataLoader)"), _mean_dur_ms(W4, "enumerate(DataLoader)")
    assert dl0 > 40 and dl4 < 5
    # and the step is longer by about that much: ProfilerStep mean 213.8 vs 181.0 ms
    s0, s4 = _mean_dur_ms(W0, "ProfilerStep#"), _mean_dur_ms(W4, "ProfilerStep#")
    assert s0 - s4 > 25
    r0, r4 = report(W0), report(W4)
    assert r0.requests["latency_ms"]["mean"] > r4.requests["latency_ms"]["mean"] + 25
    assert r0.requests["breakdown_ms"]["gpu_idle"] > r4.requests["breakdown_ms"]["gpu_idle"] + 25
    pre0 = [f for f in r0.findings if f.category == "cpu_preprocessing"]
    assert pre0 and "DataLoader" in pre0[0].title and pre0[0].impact_ms > 40
    assert not [f for f in r4.findings if f.category == "cpu_preprocessing"]


# ------------------------------------------------------------------------ bad input (synthetic files, on purpose)
@pytest.mark.parametrize("text, error, words", [
    ('{"traceEvents": [{"ph": "X", ', BadInput, "malformed JSON"),
    ('{"deviceProperties": []}', BadInput, "without traceEvents"),
    ('{"traceEvents": {"a": 1}}', BadInput, "not a list"),
    ('{"schema_version": 1, "findings": [], "requests": {}}', BadInput, "nsys-doctor report, not a profile"),
    ('{"traceEvents": []}', NoData, "no events"),
    ('"just a string"', BadInput, "not a profile"),
])
def test_bad_json_says_what_is_wrong(tmp_path, text, error, words):
    path = tmp_path / "trace.json"
    path.write_text(text)
    with pytest.raises(error) as err:
        analyze(path)
    assert words in err.value.problem and "\n" not in err.value.problem


def test_trace_without_gpu_work_is_no_data(tmp_path):
    # synthetic: a CPU-only profile (ProfilerActivity.CPU) has operators and steps but no CUDA events
    evs = [{"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{i}", "pid": 7, "tid": 7,
            "ts": 1000 * i, "dur": 900} for i in range(5)]
    path = tmp_path / "cpu_only.json"
    path.write_text(json.dumps({"schemaVersion": 1, "traceEvents": evs}))
    with pytest.raises(NoData) as err:
        analyze(path)
    assert "no CUDA activity" in err.value.problem


def test_cli_reads_kineto_and_refuses_a_report(tmp_path):
    name = "hta-kineto-traces__critical_path__alexnet__benchmark_result_2869224_1695835535_trace.json.gz"
    cli = [sys.executable, "-c", "import sys; from nsys_doctor.cli import main; sys.exit(main())"]
    out = tmp_path / "report.json"
    ok = subprocess.run(cli + ["analyze", "--format", "json", "-o", str(out), str(kineto(name))],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(out.read_text())["profile"]["format"] == "kineto-json"
    bad = subprocess.run(cli + ["analyze", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "nsys-doctor report, not a profile" in bad.stderr


def test_ids_show_the_json_process_and_thread():
    # the ids the model shows users are the JSON's own: every Kineto process's os_pid is a pid of the JSON's events
    tr = trace("hta-kineto-traces__nccl_parser_config__nccl_data.json.gz")
    procs = tr.table("processes")
    json_pids = {e.get("pid") for e in events("hta-kineto-traces__nccl_parser_config__nccl_data.json.gz")}
    shown = {tr.ids.os_pid(int(p)) for p in procs["pid"]}
    assert shown and shown == set(int(p) for p in procs["os_pid"]) and shown <= {p for p in json_pids
                                                                                if isinstance(p, int)}
