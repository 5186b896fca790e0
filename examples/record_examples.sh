#!/bin/bash
# Record the examples under Nsight Systems and write xz'd SQLite exports, grouped in plain tar files.
#
#   NSYS=/path/to/nsys OUTDIR=out bash examples/record_examples.sh [JOB...]      (default: every job)
#
# JOB is one of (or a set: "new" the second, "third" the third, "repeats", "ab", "ab2", "ab3", "blind"): sync_before sync_after sync_after_run2 sync_after_run3 graph_before graph_after
#   pinned_before pinned_after gpupre_before gpupre_after mixed_before mixed_after demo
#   dataload_before dataload_after postproc_before postproc_after contention_before contention_after
#   alloc_before alloc_after reload_before reload_after polling_before polling_after rowwise_before rowwise_after
#   llm_layers fusion_before fusion_after                                          (the second set, H200)
#   exit_before exit_after sleep_before sleep_after lnfuse_before lnfuse_after readback_before readback_after
#   convprec_before convprec_after sdreload_before sdreload_after                 (the third set, H200)
#   laysync_before laysync_after, and exit_ab polling_ab sleep_ab sync_ab laysync_ab  ("ab", H200)
#   laysyncgpu_before laysyncgpu_after laysyncgpu_ab                               ("ab2", H200)
#   sync2_before sync2_after sync2_ab                                              ("ab3", H200)
#   mobgraph_* encfp32_* emptycache_* tokworkers_* (_before, _after)                ("blind", H200)
#   emptycache_ab tokworkers_ab                                                    ("blindab", H200)
#   fcopies_before fcopies_after sockfetch_before sockfetch_after                  ("blind2", H200)
#   dlog_before dlog_after gmlp_before gmlp_after                                  ("blind3", "blind4": dlog)
#   jsonresp_before jsonresp_after jitreload_before jitreload_after                ("blind5", H200)
#   tsync_before tsync_after tgraph_after tsync_ab                                 ("zoosync", H200)
#   fres_before fres_after fgraph_after fres_ab tgraph_abt                         ("zoofetch", H200)
# Each job profiles one example (`--fixed` for *_after*), exports `ex_NAME.sqlite` (or `demo.sqlite`), xz's it and
# appends it to OUTDIR/GROUP.tar (tar -xf to unpack). DEADLINE (epoch seconds) stops starting new jobs after it.
# The export of one job runs in the background while the next job is profiled. XZ (default -6) sets xz's preset.
# *_ab jobs run a program's --ab mode (both variants alternating in one process) under the same nsys flags and keep
# only its printed clocks (no export). "ab": the fourth pair (laysync), then three --ab runs of each sync program;
# "ab2": the GPU-bound laysync pair (--batch 96) and three --ab runs of it. Both set SERIAL=1. "abtrace": two --ab 4
# runs of six sync programs whose exports are kept (SERIAL=1); "abtrace2": the same for polling_wait.py --tokens 1024.
# JOB:rN (e.g. exit_before:r2) records the same job again as ex_NAME_rN, in group rep_PAIR ("repeats" runs them all:
# each of the cuda_sync pairs three times per side, alternating before/after). SERIAL=1 (set by "repeats") exports
# nothing until every job is profiled, so no export or xz shares the CPU with a measured run: the launch-bound
# pairs' own clocks moved by up to 2x between single runs, see tests/data/README.md "Repeated runs".
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NSYS=${NSYS:-nsys}
W=${WORK:-/tmp/x}; mkdir -p "$W"
OUTDIR=${OUTDIR:-$PWD/recordings}; mkdir -p "$OUTDIR"
DEADLINE=${DEADLINE:-0}
FULL="--trace=cuda,nvtx,osrt,cudnn,cublas --sample=process-tree --cpuctxsw=process-tree --gpu-metrics-devices=0 --gpu-metrics-frequency=2000"
BASIC="--trace=cuda,nvtx,osrt --sample=none --cpuctxsw=none"
# FULLCAP (third set): FULL, recording only from the program's cudaProfilerStart (before its warm-up) to its
# cudaProfilerStop (after its last request): start-up and exit are left out, which keeps the exports small.
FULLCAP="$FULL --capture-range=cudaProfilerApi --capture-range-end=stop"
FIRST="sync_before sync_after sync_after_run2 sync_after_run3 graph_before graph_after pinned_before pinned_after gpupre_before gpupre_after mixed_before mixed_after demo"
NEW="dataload_before dataload_after postproc_before postproc_after contention_before contention_after alloc_before alloc_after reload_before reload_after polling_before polling_after rowwise_before rowwise_after llm_layers fusion_before fusion_after"
THIRD="exit_before exit_after sleep_before sleep_after lnfuse_before lnfuse_after readback_before readback_after convprec_before convprec_after sdreload_before sdreload_after"
AB="laysync_before laysync_after"
for r in r1 r2 r3; do for p in exit polling sleep sync laysync; do AB="$AB ${p}_ab:$r"; done; done
AB2="laysyncgpu_before laysyncgpu_after laysyncgpu_ab:r1 laysyncgpu_ab:r2 laysyncgpu_ab:r3"
AB3="sync2_before sync2_after sync2_ab:r1 sync2_ab:r2 sync2_ab:r3"
ABTRACE=""
for r in r1 r2; do for p in polling sleep laysyncgpu sync2 exit laysync; do ABTRACE="$ABTRACE ${p}_abt:$r"; done; done
REPEATS=""
for r in r1 r2 r3; do for p in exit polling sleep sync; do REPEATS="$REPEATS ${p}_before:$r ${p}_after:$r"; done; done
ALL="$FIRST $NEW $THIRD"
XZ=${XZ:--6}

spec() {  # job -> "output-name group flags-kind script args..."
  case $1 in
    sync_before)     echo "ex_sync_before ex_sync FULL sync_per_layer.py";;
    sync_after)      echo "ex_sync_after ex_sync FULL sync_per_layer.py --fixed";;
    sync_after_run2) echo "ex_sync_after_run2 noise FULL sync_per_layer.py --fixed";;
    sync_after_run3) echo "ex_sync_after_run3 noise FULL sync_per_layer.py --fixed";;
    graph_before)    echo "ex_graph_before ex_graph FULL cuda_graph_decode.py";;
    graph_after)     echo "ex_graph_after ex_graph FULL cuda_graph_decode.py --fixed";;
    pinned_before)   echo "ex_pinned_before ex_pinned FULL pinned_copies.py";;
    pinned_after)    echo "ex_pinned_after ex_pinned FULL pinned_copies.py --fixed";;
    gpupre_before)   echo "ex_gpupre_before ex_gpupre FULL gpu_preprocess.py";;
    gpupre_after)    echo "ex_gpupre_after ex_gpupre FULL gpu_preprocess.py --fixed";;
    mixed_before)    echo "ex_mixed_before ex_mixed FULL mixed_precision.py";;
    mixed_after)     echo "ex_mixed_after ex_mixed FULL mixed_precision.py --fixed";;
    demo)            echo "demo demo BASIC sync_per_layer.py --requests 12";;
    dataload_before)   echo "ex_dataload_before new_a FULL data_loading.py";;
    dataload_after)    echo "ex_dataload_after new_a FULL data_loading.py --fixed";;
    postproc_before)   echo "ex_postproc_before new_a FULL cpu_postprocess.py";;
    postproc_after)    echo "ex_postproc_after new_a FULL cpu_postprocess.py --fixed";;
    contention_before) echo "ex_contention_before new_a FULL thread_contention.py";;
    contention_after)  echo "ex_contention_after new_a FULL thread_contention.py --fixed";;
    alloc_before)      echo "ex_alloc_before new_b FULL alloc_per_request.py";;
    alloc_after)       echo "ex_alloc_after new_b FULL alloc_per_request.py --fixed";;
    reload_before)     echo "ex_reload_before new_b FULL model_reload.py";;
    reload_after)      echo "ex_reload_after new_b FULL model_reload.py --fixed";;
    polling_before)    echo "ex_polling_before new_b FULL polling_wait.py";;
    polling_after)     echo "ex_polling_after new_b FULL polling_wait.py --fixed";;
    rowwise_before)    echo "ex_rowwise_before new_c FULL rowwise_loop.py";;
    rowwise_after)     echo "ex_rowwise_after new_c FULL rowwise_loop.py --fixed";;
    llm_layers)        echo "ex_llm_layers new_c FULL llm_layer_ranges.py";;
    fusion_before)     echo "ex_fusion_before new_c FULL elementwise_fusion.py";;
    fusion_after)      echo "ex_fusion_after new_c FULL elementwise_fusion.py --fixed";;
    exit_before)       echo "ex_exit_before third_a FULLCAP early_exit_sync.py";;
    exit_after)        echo "ex_exit_after third_a FULLCAP early_exit_sync.py --fixed";;
    sleep_before)      echo "ex_sleep_before third_a FULLCAP sleep_poll.py";;
    sleep_after)       echo "ex_sleep_after third_a FULLCAP sleep_poll.py --fixed";;
    lnfuse_before)     echo "ex_lnfuse_before third_b FULLCAP fused_layernorm.py";;
    lnfuse_after)      echo "ex_lnfuse_after third_b FULLCAP fused_layernorm.py --fixed";;
    readback_before)   echo "ex_readback_before third_b FULLCAP pageable_readback.py";;
    readback_after)    echo "ex_readback_after third_b FULLCAP pageable_readback.py --fixed";;
    convprec_before)   echo "ex_convprec_before third_c FULLCAP conv_precision.py";;
    convprec_after)    echo "ex_convprec_after third_c FULLCAP conv_precision.py --fixed";;
    sdreload_before)   echo "ex_sdreload_before third_c FULLCAP state_dict_reload.py";;
    sdreload_after)    echo "ex_sdreload_after third_c FULLCAP state_dict_reload.py --fixed";;
    laysync_before)    echo "ex_laysync_before fourth FULLCAP layer_timing_sync.py";;
    laysync_after)     echo "ex_laysync_after fourth FULLCAP layer_timing_sync.py --fixed";;
    exit_ab)           echo "ex_exit_ab ab FULLCAP early_exit_sync.py --ab 5";;
    polling_ab)        echo "ex_polling_ab ab FULL polling_wait.py --ab 5";;
    sleep_ab)          echo "ex_sleep_ab ab FULLCAP sleep_poll.py --ab 5";;
    sync_ab)           echo "ex_sync_ab ab FULL sync_per_layer.py --ab 5";;
    laysync_ab)        echo "ex_laysync_ab ab FULLCAP layer_timing_sync.py --ab 5";;
    laysyncgpu_before) echo "ex_laysyncgpu_before fifth FULLCAP layer_timing_sync.py --batch 96";;
    laysyncgpu_after)  echo "ex_laysyncgpu_after fifth FULLCAP layer_timing_sync.py --batch 96 --fixed";;
    laysyncgpu_ab)     echo "ex_laysyncgpu_ab ab FULLCAP layer_timing_sync.py --batch 96 --ab 5";;
    sync2_before)      echo "ex_sync2_before sixth FULLCAP sync_per_layer.py";;
    sync2_after)       echo "ex_sync2_after sixth FULLCAP sync_per_layer.py --fixed";;
    sync2_ab)          echo "ex_sync2_ab ab FULLCAP sync_per_layer.py --ab 5";;
    polling_abt)       echo "ex_polling_abt abt FULL polling_wait.py --ab 4 --requests 20";;
    sleep_abt)         echo "ex_sleep_abt abt FULLCAP sleep_poll.py --ab 4 --requests 20";;
    laysyncgpu_abt)    echo "ex_laysyncgpu_abt abt FULLCAP layer_timing_sync.py --batch 96 --ab 4 --requests 20";;
    sync2_abt)         echo "ex_sync2_abt abt FULLCAP sync_per_layer.py --ab 4 --requests 30";;
    exit_abt)          echo "ex_exit_abt abt FULLCAP early_exit_sync.py --ab 4 --requests 20";;
    laysync_abt)       echo "ex_laysync_abt abt FULLCAP layer_timing_sync.py --ab 4 --requests 20";;
    pollsmall_abt)     echo "ex_pollsmall_abt abt FULL polling_wait.py --tokens 1024 --ab 4 --requests 20";;
    mobgraph_before)   echo "ex_mobgraph_before blind FULLCAP mobilenet_graph.py";;
    mobgraph_after)    echo "ex_mobgraph_after blind FULLCAP mobilenet_graph.py --fixed";;
    encfp32_before)    echo "ex_encfp32_before blind FULLCAP encoder_fp32.py";;
    encfp32_after)     echo "ex_encfp32_after blind FULLCAP encoder_fp32.py --fixed";;
    emptycache_before) echo "ex_emptycache_before blind FULLCAP empty_cache.py";;
    emptycache_after)  echo "ex_emptycache_after blind FULLCAP empty_cache.py --fixed";;
    tokworkers_before) echo "ex_tokworkers_before blind FULLCAP tokenize_workers.py";;
    tokworkers_after)  echo "ex_tokworkers_after blind FULLCAP tokenize_workers.py --fixed";;
    fcopies_before)    echo "ex_fcopies_before blind2 FULLCAP feature_copies.py";;
    fcopies_after)     echo "ex_fcopies_after blind2 FULLCAP feature_copies.py --fixed";;
    sockfetch_before)  echo "ex_sockfetch_before blind2 FULLCAP socket_fetch.py";;
    sockfetch_after)   echo "ex_sockfetch_after blind2 FULLCAP socket_fetch.py --fixed";;
    dlog_before)       echo "ex_dlog_before blind3 FULLCAP debug_logging.py";;
    dlog_after)        echo "ex_dlog_after blind3 FULLCAP debug_logging.py --fixed";;
    gmlp_before)       echo "ex_gmlp_before blind3 FULLCAP gated_mlp_fusion.py";;
    gmlp_after)        echo "ex_gmlp_after blind3 FULLCAP gated_mlp_fusion.py --fixed";;
    jsonresp_before)   echo "ex_jsonresp_before blind5 FULLCAP json_response.py";;
    jsonresp_after)    echo "ex_jsonresp_after blind5 FULLCAP json_response.py --fixed";;
    jitreload_before)  echo "ex_jitreload_before blind5 FULLCAP jit_reload.py";;
    jitreload_after)   echo "ex_jitreload_after blind5 FULLCAP jit_reload.py --fixed";;
    emptycache_abt)    echo "ex_emptycache_abt abt FULLCAP empty_cache.py --ab 4 --requests 20";;
    emptycache_ab)     echo "ex_emptycache_ab ab FULLCAP empty_cache.py --ab 5";;
    tokworkers_ab)     echo "ex_tokworkers_ab ab FULLCAP tokenize_workers.py --ab 5";;
    tsync_before)      echo "ex_tsync_before zoosync FULLCAP transformer_sync.py";;
    tsync_after)       echo "ex_tsync_after zoosync FULLCAP transformer_sync.py --fixed";;
    tgraph_after)      echo "ex_tgraph_after zoosync FULLCAP transformer_sync.py --graph";;
    tsync_ab)          echo "ex_tsync_ab ab FULLCAP transformer_sync.py --ab 6";;
    tgraph_abt)        echo "ex_tgraph_abt abt FULLCAP transformer_sync.py --ab 4 --requests 30 --ab-fix graph";;
    fres_before)       echo "ex_fres_before zoofetch FULLCAP fetch_resnet.py";;
    fres_after)        echo "ex_fres_after zoofetch FULLCAP fetch_resnet.py --fixed";;
    fgraph_after)      echo "ex_fgraph_after zoofetch FULLCAP fetch_resnet.py --graph";;
    fres_ab)           echo "ex_fres_ab ab FULLCAP fetch_resnet.py --ab 6 --requests 30";;
    *) return 1;;
  esac
}

facts() {  # quick check of an export: NVTX ranges named Inference, kernels, allocation and polling calls
  python3 - "$1" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
tabs = {r[0] for r in c.execute("select name from sqlite_master where type='table'")}
inf = c.execute("select count(*) from NVTX_EVENTS e left join StringIds s on e.textId = s.id "
                "where coalesce(e.text, s.value) = 'Inference'").fetchone()[0] if "NVTX_EVENTS" in tabs else -1
nvtx = c.execute("select count(*) from NVTX_EVENTS").fetchone()[0] if "NVTX_EVENTS" in tabs else -1
k = c.execute("select count(*) from CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0] \
    if "CUPTI_ACTIVITY_KIND_KERNEL" in tabs else 0
calls = dict(c.execute("select case when s.value like 'cudaMalloc%' then 'malloc' when s.value like 'cudaFree%' "
                       "then 'free' when s.value like 'cudaEventQuery%' then 'query' "
                       "when s.value like 'cudaStreamQuery%' then 'squery' when s.value like 'cuda%Synchronize%' "
                       "then 'sync' else 'other' end, count(*) "
                       "from CUPTI_ACTIVITY_KIND_RUNTIME r join StringIds s on r.nameId = s.id group by 1").fetchall()) \
    if "CUPTI_ACTIVITY_KIND_RUNTIME" in tabs else {}
print(f"Inference={inf} nvtx={nvtx} kernels={k} cudaMalloc={calls.get('malloc', 0)} cudaFree={calls.get('free', 0)} "
      f"cudaEventQuery={calls.get('query', 0)} cudaStreamQuery={calls.get('squery', 0)} "
      f"syncs={calls.get('sync', 0)} gpu_metrics={'GPU_METRICS' in tabs}")
EOF
}

export_job() {  # name group
  local n=$1 grp=$2 t=$SECONDS
  "$NSYS" export --type sqlite --force-overwrite true -o "$W/$n.sqlite" "$W/$n.nsys-rep" > "$W/$n.export.log" 2>&1 \
    || { echo "$n: EXPORT FAILED"; tail -3 "$W/$n.export.log"; return; }
  local f; f=$(facts "$W/$n.sqlite")
  xz -T4 "$XZ" -c "$W/$n.sqlite" > "$W/$n.sqlite.xz"
  (cd "$W" && tar -rf "$OUTDIR/$grp.tar" "$n.sqlite.xz")
  echo "$n: exported in $((SECONDS - t))s, sqlite $(stat -c %s "$W/$n.sqlite") B, xz $(stat -c %s "$W/$n.sqlite.xz") B, $f"
  rm -f "$W/$n.sqlite" "$W/$n.nsys-rep"
}

EXPORT_PID=
JOBS=${*:-$ALL}; [ "$JOBS" = new ] && JOBS=$NEW      # "new": the second set only
[ "$JOBS" = third ] && JOBS=$THIRD                    # "third": the third set only
[ "$JOBS" = repeats ] && { JOBS=$REPEATS; SERIAL=1; }  # "repeats": alternating repeated runs, exported at the end
[ "$JOBS" = ab ] && { JOBS=$AB; SERIAL=1; }            # "ab": the fourth pair, then each sync program's --ab runs
[ "$JOBS" = ab2 ] && { JOBS=$AB2; SERIAL=1; }          # "ab2": the GPU-bound per-layer sync pair and its --ab runs
[ "$JOBS" = ab3 ] && { JOBS=$AB3; SERIAL=1; }          # "ab3": sync_per_layer on the H200 (FULLCAP) and its --ab runs
[ "$JOBS" = abtrace ] && { JOBS=$ABTRACE; SERIAL=1; }  # "abtrace": --ab runs of the sync programs, exported
# "blind" (session 7, pre-registered in the closing note): four new programs, before and after, then a second run
# of each side (JOB:r2), alternating; all exported at the end (SERIAL=1)
BLIND=""
for r in "" :r2; do for p in mobgraph encfp32 emptycache tokworkers; do BLIND="$BLIND ${p}_before$r ${p}_after$r"; done; done
[ "$JOBS" = blind ] && { JOBS=$BLIND; SERIAL=1; }
# "blind2": the second blind round (two programs), before and after, then a second run of each side; and two
# profiled --ab 4 runs of empty_cache.py (its one-process profiles, like "abtrace")
[ "$JOBS" = blind2 ] && { JOBS="fcopies_before fcopies_after sockfetch_before sockfetch_after fcopies_before:r2 fcopies_after:r2 sockfetch_before:r2 sockfetch_after:r2 emptycache_abt:r1 emptycache_abt:r2"; SERIAL=1; }
# "blind3": the third blind round (two programs), alternating, two runs of each side
[ "$JOBS" = blind3 ] && { JOBS="dlog_before dlog_after gmlp_before gmlp_after dlog_before:r2 dlog_after:r2 gmlp_before:r2 gmlp_after:r2 dlog_before:r3 dlog_after:r3"; SERIAL=1; }
# "blind4": debug_logging.py again (its first recording planted no sync), three runs of each side, alternating
[ "$JOBS" = blind4 ] && { JOBS="dlog_before dlog_after dlog_before:r2 dlog_after:r2 dlog_before:r3 dlog_after:r3"; SERIAL=1; }
# "blind5": the fifth blind round (two programs), alternating, two runs of each side
[ "$JOBS" = blind5 ] && { JOBS="jsonresp_before jsonresp_after jitreload_before jitreload_after jsonresp_before:r2 jsonresp_after:r2 jitreload_before:r2 jitreload_after:r2"; SERIAL=1; }
# "blindab": three --ab 5 processes each of the two blind programs whose two separate runs disagreed by 1 ms or more
[ "$JOBS" = blindab ] && { JOBS="emptycache_ab:r1 tokworkers_ab:r1 emptycache_ab:r2 tokworkers_ab:r2 emptycache_ab:r3 tokworkers_ab:r3"; SERIAL=1; }
# "zoosync" (session 8): the zoo's sync_heavy program and its two fixes (--fixed: no per-layer sync; --graph: a CUDA
# graph), alternating, two runs of each, then three --ab 6 processes (all three variants in one process)
[ "$JOBS" = zoosync ] && { JOBS="tsync_before tsync_after tgraph_after tsync_before:r2 tsync_after:r2 tgraph_after:r2 tsync_ab:r1 tsync_ab:r2 tsync_ab:r3"; SERIAL=1; }
# "zoofetch" (session 8): the zoo's dataload_starved program and its two fixes (--fixed: a loader thread; --graph:
# the model in a CUDA graph), alternating, two runs of each, two --ab 6 processes, and two profiled --ab 4 runs of
# transformer_sync.py's slow and graph variants (exports kept, as "abtrace")
[ "$JOBS" = zoofetch ] && { JOBS="fres_before fres_after fgraph_after fres_before:r2 fres_after:r2 fgraph_after:r2 fres_ab:r1 fres_ab:r2 tgraph_abt:r1 tgraph_abt:r2"; SERIAL=1; }
[ "$JOBS" = abtrace2 ] && { JOBS="pollsmall_abt:r1 pollsmall_abt:r2"; SERIAL=1; }  # polling_wait at 1024 tokens
SERIAL=${SERIAL:-0}
DEFERRED=""
for job in $JOBS; do
  rep=${job#*:}; [ "$rep" = "$job" ] && rep=""
  read -r name grp kind script args <<< "$(spec "${job%%:*}")"
  [ -n "$name" ] || { echo "unknown job $job"; continue; }
  if [ -n "$rep" ]; then grp=rep_$(echo "$name" | sed -E 's/^ex_//; s/_(before|after).*//'); name=${name}_$rep; fi
  if [ "$DEADLINE" -gt 0 ] && [ "$(date +%s)" -gt "$DEADLINE" ]; then echo "$job: SKIPPED (deadline)"; continue; fi
  fallback=BASIC; [ "$kind" = FULLCAP ] && fallback="FULL BASIC"
  for k in $kind $fallback; do
    flags=${!k}
    rm -f "$W/$name".*
    t=$SECONDS
    timeout 150 "$NSYS" profile $flags -o "$W/$name" -f true python3 "$HERE/$script" $args > "$W/$name.log" 2>&1
    rc=$?
    rm -f "$W/$name.qdstrm" /tmp/nsys-report-*.qdstrm
    [ -f "$W/$name.nsys-rep" ] && break
    echo "$name: nsys failed (rc=$rc) with: $flags"; tail -5 "$W/$name.log"
  done
  echo "$name: profiled in $((SECONDS - t))s rc=$rc flags=[$flags] cmd=[python3 examples/$script $args]"
  grep -E "requests in|\[ab\]|difference|Traceback|Error|error" "$W/$name.log" | head -5 | sed "s/^/  $name program: /"
  [ -f "$W/$name.nsys-rep" ] || continue
  case $name in *_abt*) ;; *_ab*) rm -f "$W/$name.nsys-rep"; continue;; esac   # --ab runs: their printed clocks
  # are the result; *_abt ("abtrace") keep their export too: both variants' requests in one profile, each block in
  # an NVTX range "ab slow R" / "ab fixed R" (examples/ab.py)
  if [ "$SERIAL" = 1 ]; then DEFERRED="$DEFERRED $name:$grp"; continue; fi
  [ -n "$EXPORT_PID" ] && wait "$EXPORT_PID"
  export_job "$name" "$grp" &
  EXPORT_PID=$!
done
wait
# SERIAL: the exports, four at a time, once nothing is measured any more (one tar per group, so one writer each)
for grp in $(for d in $DEFERRED; do echo "${d#*:}"; done | sort -u); do
  ( for d in $DEFERRED; do [ "${d#*:}" = "$grp" ] && export_job "${d%%:*}" "$grp"; done ) &
done
wait
ls -l "$OUTDIR"
