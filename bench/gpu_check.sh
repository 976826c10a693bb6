#!/usr/bin/env bash
# The GPU checks of the generated code, as one script for a machine with a CUDA device:
# `symflop validate` on cuda (eager torch, float64 and float32, the whole catalogue;
# torch.compile on a subset, since every pass compiles for each size set), then
# bench/codegen.py on cuda.  Logs go to $OUT (default ./gpu-out).  Each step has its own
# time limit, so that one slow step leaves the others their time.
# Run:  OUT=/some/dir bash bench/gpu_check.sh
set -u
export PYTHONUNBUFFERED=1 SYMFLOP_CACHE_DIR=${SYMFLOP_CACHE_DIR:-/tmp/symflop-cache}
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
COMPILED_SUBSET="adam layernorm batchnorm cross-entropy dropout cosine"

step() {  # step NAME SECONDS COMMAND...: run, keep the log, print its last line
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    echo "$name: rc=$rc, $((SECONDS - start)) s: $(tail -n 1 "$OUT/$name.txt")"
}

{
    $PY -c "import sys, torch, sympy, numpy; print('python', sys.version.split()[0], \
'torch', torch.__version__, 'sympy', sympy.__version__, 'numpy', numpy.__version__, \
torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
    $PY -m pip install --no-deps --no-build-isolation -q -e . 2>&1 | tail -n 1
    for dtype in float64 float32; do
        step "validate-cuda-torch-$dtype" 120 $PY -m symflop validate --device cuda \
            --dtype "$dtype"
    done
    for dtype in float32 float64; do
        # shellcheck disable=SC2086
        step "validate-cuda-compiled-$dtype" 100 $PY -m symflop validate --device cuda \
            --dtype "$dtype" --backend torch-compiled $COMPILED_SUBSET
    done
    step bench-cuda 180 $PY bench/codegen.py --device cuda --repeats 10
    cat "$OUT/bench-cuda.txt"
} 2>&1 | tee "$OUT/gpu-check.txt"
