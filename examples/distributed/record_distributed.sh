#!/bin/bash
# Record the distributed examples under Nsight Systems (needs 2 GPUs): per-rank and multi-process reports of
# tp_inference.py (balanced, unbalanced) and one report of model_server.py; xz'd SQLite exports into OUTDIR.
#   source .device/nsys-env.sh; OUTDIR=out bash examples/distributed/record_distributed.sh
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NSYS=${NSYS:-nsys}
W=${WORK:-/tmp/dist}; mkdir -p "$W"
OUTDIR=${OUTDIR:-$PWD/recordings}; mkdir -p "$OUTDIR"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi -L; "$NSYS" --version; python3 -c 'import torch; print("torch", torch.__version__, "nccl", torch.cuda.nccl.version())'
TRACE=cuda,nvtx,osrt
if "$NSYS" profile --help 2>&1 | grep -A12 -- '--trace=' | grep -qw nccl; then TRACE=$TRACE,nccl; fi
FLAGS="--trace=$TRACE --sample=none --cpuctxsw=none"
echo "FLAGS: $FLAGS"
TR="python3 -m torch.distributed.run --standalone --nproc_per_node=2"
prof() {  # name cmd...
  local n=$1; shift; local t=$SECONDS
  timeout 150 "$@" > "$W/$n.log" 2>&1; local rc=$?
  rm -f "$W"/*.qdstrm /tmp/nsys-report-*.qdstrm
  echo "$n: rc=$rc in $((SECONDS - t))s: $*"; grep -E "tp_inference|model_server|Error|error|Traceback" "$W/$n.log" | head -6 | sed 's/^/   /'
}
for v in balanced unbalanced; do
  a=; [ $v = unbalanced ] && a=--unbalanced
  prof tp_${v}_ranks $TR --no-python "$NSYS" profile $FLAGS -f true -o "$W/tp_${v}_rank%q{RANK}" python3 "$HERE/tp_inference.py" $a
  prof tp_${v}_multi "$NSYS" profile $FLAGS -f true -o "$W/tp_${v}_multi" $TR "$HERE/tp_inference.py" $a
done
python3 "$HERE/model_server.py" --write
prof model_server "$NSYS" profile $FLAGS -f true -o "$W/model_server" python3 "$HERE/model_server.py"
rm -rf /tmp/nsys_doctor_models
ls -l "$W"
for r in "$W"/*.nsys-rep; do
  n=$(basename "$r" .nsys-rep)
  ( "$NSYS" export --type sqlite --force-overwrite true -o "$W/$n.sqlite" "$r" > "$W/$n.export.log" 2>&1 \
      && xz -9 -T4 -c "$W/$n.sqlite" > "$OUTDIR/$n.sqlite.xz" \
      && echo "$n: sqlite $(stat -c %s "$W/$n.sqlite") xz $(stat -c %s "$OUTDIR/$n.sqlite.xz")" \
      || { echo "$n: EXPORT FAILED"; tail -3 "$W/$n.export.log"; } ) &
done
wait
cat "$W"/*.log > "$OUTDIR/programs.log" 2>/dev/null
ls -l "$OUTDIR"
