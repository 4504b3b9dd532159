#!/usr/bin/env bash
# Everything a session with a GPU measures, in one call of the device tool (one short,
# prepared script: device time is scarce, about 15 minutes a session, starts included).
#
#   1. the device's name, driver and torch                       -> $OUT/device.txt
#   2. bench_gpu.py: samples/s per method, the AE step's TFLOP/s  -> $OUT/bench_gpu.txt
#   3. reproduce.py --budget: the papers' runs, breadth first (seed 0 of every paper on
#      MNIST first), continuing the runs already recorded in
#      benchmarks/results/paper_tables.json; each run is recorded as it ends
#                                              -> $OUT/paper_tables.{json,md}, reproduce.log
#      with --checkpoints $CKPT_DIR: a run that does not end within the budget is cut there
#      and saved, and the next call continues it (on a warm machine the folder is still
#      there; a fresh one needs it carried back: step 4)
#   4. the saved stages of runs cut at the budget, packed in pieces of 15 MiB, as many as
#      the device tool brings back beside the rest (8 files)  -> $OUT/ckpt.tar.part-aa, ...
#
# Run from the repository root on the GPU machine, with the datasets copied into an ignored
# folder that the call carries (benchmarks/README.md, "A GPU session", has the steps):
#
#   BUDGET_MIN=6 bash benchmarks/gpu_session.sh
#
# Then copy $OUT's paper_tables.json, paper_tables.md and bench_gpu.txt into
# benchmarks/results/ and commit them: the next GPU session goes on from there. If pieces of
# ckpt.tar came back, unpack them in the repository's root (`cat .../ckpt.tar.part-* | tar
# -x`: it makes CKPT_DIR, ignored by git) and carry that folder in the next session's call.
# Settings (environment): CKPT_DIR (default .ckpt, relative to the repository's root),
# BUDGET_MIN (minutes for reproduce.py, default 6), BENCH_GPU_S
# (seconds for bench_gpu.py, default 150; 0 skips it), REPRODUCE_ARGS (more arguments, e.g.
# "--only dccf,balanced --seeds 3"), CLUSTERKIT_DATA (default .data), PY (default python3),
# DRY_RUN=1: on a CPU, the same steps with bench_gpu.py --cpu and reproduce.py --cpu --tiny
# (seconds; tests/test_reproduce.py runs it so that the script works when a GPU comes).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-benchmarks/results/gpu_session}
mkdir -p "$OUT"
PY=${PY:-python3}
BUDGET_MIN=${BUDGET_MIN:-6}
BENCH_GPU_S=${BENCH_GPU_S:-150}
CKPT_DIR=${CKPT_DIR:-.ckpt}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export CLUSTERKIT_DATA=${CLUSTERKIT_DATA:-.data}
export CLUSTERKIT_COMMIT=${CLUSTERKIT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}

# wheels of packages the machine lacks travel in .whl/ (the device tool's README)
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

{
    date -u
    nvidia-smi -L 2>&1 || echo "nvidia-smi: not found"
    $PY -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name()
            if torch.cuda.is_available() else 'no GPU visible to torch')"
    echo "commit $CLUSTERKIT_COMMIT; CLUSTERKIT_DATA=$CLUSTERKIT_DATA"
    ls "$CLUSTERKIT_DATA" 2>&1
} >"$OUT/device.txt" 2>&1
cat "$OUT/device.txt"
DRY=()
if [ "${DRY_RUN:-0}" = 1 ]; then
    DRY=(--cpu)
    echo "gpu_session: DRY_RUN: CPU, tiny settings; the numbers mean nothing"
elif ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_session: no GPU is visible to torch; nothing to measure here (DRY_RUN=1 checks" \
         "the script on a CPU)" >&2
    exit 2
fi

if [ "$BENCH_GPU_S" != 0 ]; then
    timeout "$BENCH_GPU_S" $PY benchmarks/bench_gpu.py "${DRY[@]}" 2>&1 | tee "$OUT/bench_gpu.txt"
fi

# the runs recorded by earlier GPU sessions: this call adds to them
if [ -z "${DRY[*]}" ] && [ -f benchmarks/results/paper_tables.json ] \
        && [ ! -f "$OUT/paper_tables.json" ]; then
    cp benchmarks/results/paper_tables.json "$OUT/paper_tables.json"
fi
# reproduce.py cuts a run at the budget and saves it in CKPT_DIR; a hard stop a little after
# it, so that the call ends and its files come back even if a step hangs (what the stopped
# run did since its last saved stage is then lost; every run that ended is in the record)
[ -n "${DRY[*]}" ] && DRY+=(--tiny --only dccf)
timeout $(( ${BUDGET_MIN%.*} * 60 + 60 )) $PY benchmarks/reproduce.py --budget "$BUDGET_MIN" \
    "${DRY[@]}" --results "$OUT/paper_tables.json" --out "$OUT/paper_tables.md" \
    --checkpoints "$CKPT_DIR" ${REPRODUCE_ARGS:-} \
    2>&1 | tr '\r' '\n' | grep -v "^reproduce: *[0-9]*%|" | tee "$OUT/reproduce.log"

# the runs cut at the budget: their saved stages come back in pieces the tool can return
if [ -d "$CKPT_DIR" ] && [ -n "$(ls -A "$CKPT_DIR" 2>/dev/null)" ]; then
    size=$(du -sm "$CKPT_DIR" | cut -f1)
    slots=$(( 8 - $(ls -A "$OUT" | wc -l) ))  # the tool brings back 8 files of <= 16 MiB
    if [ "$size" -lt $(( slots * 15 )) ]; then
        tar -cf - "$CKPT_DIR" | split -b 15m - "$OUT/ckpt.tar.part-"
        echo "gpu_session: the runs cut at the budget ($size MiB in $CKPT_DIR) are in" \
             "$OUT/ckpt.tar.part-*: unpack them here and carry $CKPT_DIR next time"
    else
        echo "gpu_session: $CKPT_DIR holds $size MiB, more than comes back ($slots x 15" \
             "MiB): a next call on this warm machine continues from it; a fresh machine" \
             "starts those runs again" >&2
    fi
fi
echo "gpu_session: done; files in $OUT:"
ls -la "$OUT"
