"""Every table of the trace model and every column, with its unit and meaning. Written once; readers fill these.

Times are int64 ns on the profile's clock (`start_ns`, `end_ns`). `tid` is a globally unique thread id and `pid` a
globally unique process id, numbered as the reader chooses (nsys: globalTid / globalPid); `Trace.ids` (model.trace.Ids,
filled by the reader: read/ids.py) gives a thread's process, a process's compact key and the OS ids shown to users, so
nothing outside read/ depends on how the ids are packed. Columns ending in `_id` index `Trace.strings` unless noted.
`absent_flag` says which `nsys profile` option records the table when a profile lacks it.
"""
from __future__ import annotations

TABLES: dict[str, dict] = {
    "kernels": {
        "absent_flag": "--trace=cuda",
        "columns": {
            "start_ns": "GPU start", "end_ns": "GPU end", "device": "CUDA device id", "stream": "stream id",
            "correlation": "correlation id, shared with the API call that launched it", "pid": "process",
            "name_id": "short kernel name", "full_name_id": "demangled kernel name",
            "grid": "threads blocks launched (gridX*gridY*gridZ)", "block": "threads per block",
            "registers": "registers per thread", "graph_node": "CUDA graph node id, 0 when not launched from a graph",
        }},
    "copies": {
        "absent_flag": "--trace=cuda",
        "columns": {
            "start_ns": "GPU start", "end_ns": "GPU end", "device": "CUDA device id", "stream": "stream id",
            "correlation": "correlation id of the API call", "pid": "process", "bytes": "bytes copied",
            "kind": "copy direction, ENUM_CUDA_MEMCPY_OPER (1 HtoD, 2 DtoH, 8 DtoD, 10 PtoP)",
            "src_kind": "source memory kind, ENUM_CUDA_MEM_KIND (0 pageable, 1 pinned, 2 device)",
            "dst_kind": "destination memory kind, ENUM_CUDA_MEM_KIND",
        }},
    "memsets": {
        "absent_flag": "--trace=cuda",
        "columns": {"start_ns": "GPU start", "end_ns": "GPU end", "device": "CUDA device id", "stream": "stream id",
                    "correlation": "correlation id", "pid": "process", "bytes": "bytes set"}},
    "graphs": {
        "absent_flag": "",  # nsys creates the table only when graphs ran
        "columns": {"start_ns": "GPU start of a whole graph", "end_ns": "GPU end", "device": "CUDA device id",
                    "stream": "stream id", "correlation": "correlation id of cudaGraphLaunch", "pid": "process",
                    "graph_id": "graph id (not a string id)"}},
    "syncs": {
        "absent_flag": "--trace=cuda",
        "columns": {"start_ns": "wait start", "end_ns": "wait end", "stream": "stream id", "pid": "process",
                    "correlation": "correlation id of the API call that waited",
                    "sync_type": "ENUM_CUPTI_SYNC_TYPE (1 event, 2 stream wait event, 3 stream, 4 context)",
                    "event": "CUPTI event id of an event sync or stream wait event (not a string id), -1 when none"}},
    "event_records": {
        "absent_flag": "",  # CUPTI_ACTIVITY_KIND_CUDA_EVENT: cudaEventRecord calls, in nsys exports since ~2023
        "columns": {"stream": "stream id the event was recorded on", "device": "CUDA device id", "pid": "process",
                    "correlation": "correlation id of the cudaEventRecord call",
                    "event": "CUPTI event id (not a string id), the same as in syncs.event"}},
    "api_calls": {
        "absent_flag": "--trace=cuda",
        "columns": {"start_ns": "CPU start", "end_ns": "CPU end", "tid": "calling thread",
                    "correlation": "correlation id, shared with the GPU work it launched", "name_id": "API name",
                    "driver": "bool: a CUDA driver API call (else the runtime API)",
                    "callchain": "backtrace id in the OS runtime call chains, -1 when none",
                    "status": "the call's return code (0 success, 600 not ready: a query of unfinished work), -1 "
                              "when not recorded"}},
    "ranges": {
        "absent_flag": "--trace=nvtx",
        "columns": {"start_ns": "range start", "end_ns": "range end", "tid": "thread that opened it",
                    "name": "range text (object array of str)", "domain": "domain name (object array of str)",
                    "push_pop": "1 for push/pop ranges (nested per thread), 0 for start/end ranges"}},
    "os_calls": {
        "absent_flag": "--trace=osrt",
        "columns": {"start_ns": "call start", "end_ns": "call end", "tid": "calling thread",
                    "name_id": "function name (read, nanosleep, pthread_mutex_lock, ...)",
                    "callchain": "backtrace id, -1 when none"}},
    "sched": {
        "absent_flag": "--cpuctxsw=process-tree",
        "columns": {"start_ns": "switch time", "tid": "thread", "cpu": "CPU core", "sched_in": "1 in, 0 out",
                    "state": "thread state when switched out, ENUM_SAMPLING_THREAD_STATE",
                    "block": "why it blocked, ENUM_SCHEDULING_THREAD_BLOCK, -1 when none"}},
    "samples": {
        "absent_flag": "--sample=process-tree",
        "columns": {"start_ns": "sample time", "tid": "sampled thread", "callchain": "call chain id", "cpu": "core"}},
    "callchains": {
        "absent_flag": "--sample=process-tree",
        "columns": {"id": "call chain id", "depth": "0 is the sampled (leaf) frame", "symbol_id": "function",
                    "module_id": "module (library or python file)"}},
    "os_callchains": {
        "absent_flag": "--trace=osrt with --osrt-backtrace-threshold",
        "columns": {"id": "call chain id", "depth": "0 is the leaf frame", "symbol_id": "function",
                    "module_id": "module"}},
    "gpu_metrics": {
        "absent_flag": "--gpu-metrics-devices=all",
        "columns": {"start_ns": "sample time", "metric": "metric id (see Trace.meta['gpu_metric_names'])",
                    "value": "value (float64)", "gpu": "GPU (typeId)"}},
    "threads": {
        "absent_flag": "",
        "columns": {"tid": "thread", "name_id": "thread name", "pid": "process"}},
    "processes": {
        "absent_flag": "",
        "columns": {"pid": "process", "os_pid": "OS process id", "name": "process name (object array)"}},
}

# GPU metrics the diagnoses and the timeline read (matched as substrings of TARGET_INFO_GPU_METRICS names). Readers
# keep only these: a 2 kHz capture holds 22 metrics, and the other 17 would be most of the rows (855k in healthy).
GPU_METRICS_USED = ("DRAM Read Bandwidth", "DRAM Write Bandwidth", "SM Issue", "SMs Active", "Tensor Active")
