#!/usr/bin/env bash
# One prepared GPU check for a lent CUDA machine: one command, under 5 minutes, that
# returns data even when cut short (every result line is appended to $OUT/*_gpu.jsonl
# the moment it is measured; at most 8 files come back).
#
#   bash benchmarks/gpu_check.sh            # on the CUDA machine (device tool: $OUT is set)
#   bash benchmarks/gpu_check.sh --dry-run  # on a CPU: every step at tiny sizes under the
#                                           # Triton interpreter (< 3 minutes), no install
#
# Steps: install (pip --no-build-isolation --no-deps -e ., the machine has no package
# index) -> GPU/CUDA/driver/torch/triton versions -> PASS/FAIL per kernel x dtype with
# the max error against fp64 (incl. the fp16 gradient at N = 16k) -> every kernel test
# natively (no -x; the gpu-marked ones too) -> contrastive timing at N = 65,536, D = 512,
# bf16 per tile config against the GEMM floor -> one forward at N = 1,048,576 -> Barlow
# Twins / VICReg at N = 2048, D = 8192 against the official reference -> t-SNE gradient on
# 70k x 2 with 90 neighbours -> bench_losses contrastive on cuda.
# Autotuning is off (FASTRL_AUTOTUNE=0: one fixed config per kernel). Exit status != 0
# when any step fails; the failed steps are listed at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0 LIMIT_MULT=1
if [ "${1:-}" = "--dry-run" ]; then DRY=1 LIMIT_MULT=2; fi  # the interpreter on a shared CPU: looser step limits
export PYTHONUNBUFFERED=1 FASTRL_AUTOTUNE=0
PY=${PYTHON:-python3}
failed=()
step() {  # step NAME TIMEOUT_S CMD...: run, record the failure, carry on
  local name=$1 limit=$(( $2 * LIMIT_MULT )); shift 2
  echo "=== [$name] $(date -u +%H:%M:%S) (limit ${limit}s)"
  timeout "$limit" "$@"
  local rc=$?
  if [ $rc -ne 0 ]; then echo "!!! [$name] FAILED (exit $rc)"; failed+=("$name"); fi
}

if [ $DRY = 1 ]; then
  export TRITON_INTERPRET=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  OUT_DIR=${OUT:-$(mktemp -d /tmp/gpu_check_dry.XXXXXX)}
  SCALE=(--dry-run)
else
  export TRITON_INTERPRET=0
  OUT_DIR=${OUT:-benchmarks/results}
  SCALE=()
  echo "=== [install] $(date -u +%H:%M:%S)"
  if ! $PY -m pip install --no-build-isolation --no-deps -e . 2>&1 | tail -3; then
    echo "!!! [install] FAILED: pip install --no-build-isolation --no-deps -e ." >&2; exit 1
  fi
  $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "!!! no CUDA device visible to torch" >&2; exit 1; }
fi
mkdir -p "$OUT_DIR"
$PY -c "import fastrl" || { echo "!!! fastrl does not import" >&2; exit 1; }
B="$PY benchmarks/gpu_bench.py --out $OUT_DIR ${SCALE[*]}"

step env 20 $B env
step correct 45 $B correct

# every kernel test file (new ones such as tests/test_losses_siglip*.py are picked up
# by the glob); the gloo-distributed tests are CPU-only and stay out
TESTS=$(ls tests/test_losses_*.py tests/test_kernel_tiles.py tests/test_gpu_readiness.py tests/test_tsne_triton.py \
        tests/test_masking_*.py 2>/dev/null | grep -v '_dist\.py$' | sort -u)
if [ $DRY = 1 ]; then
  # the full selection is collected (proves it imports); a tile subset runs under the interpreter
  step tests-collect 30 $PY -m pytest -q -p no:cacheprovider --co -m "gpu or not slow" $TESTS
  step tests 45 bash -c "$PY -m pytest -q -rA -p no:cacheprovider tests/test_kernel_tiles.py -k 'contrastive_each or cross_form' 2>&1 | tee $OUT_DIR/tests_gpu.log"
else
  step tests 100 bash -c "$PY -m pytest -q -rA -p no:cacheprovider -m 'gpu or not slow' $(echo $TESTS) 2>&1 | tee $OUT_DIR/tests_gpu.log"
fi

step contrastive 60 $B contrastive
step large_n 40 $B large_n
step decorrelation 25 $B decorrelation
step tsne 20 $B tsne
if $PY benchmarks/bench_losses.py --help 2>/dev/null | grep -q -- "--device"; then
  if [ $DRY = 1 ]; then
    # the CPU grid at tiny sizes, its JSON kept out of benchmarks/results
    BL=(--sizes 64 --dims 16 --repeat 1 --no-acceptance --device cpu)
    export FASTRL_RESULTS_DIR="$OUT_DIR/bench"; mkdir -p "$FASTRL_RESULTS_DIR"
  else
    BL=(--device cuda)
  fi
  step bench-losses 25 bash -c "set -o pipefail; $PY benchmarks/bench_losses.py --family contrastive ${BL[*]} 2>&1 | tee $OUT_DIR/bench_losses_gpu.log"
  # the benchmark (CLIP, NT-Xent, SigLIP rows) writes its JSON in the repo: append it to the
  # log that comes back (at most 8 files return from the device machine)
  cat "${FASTRL_RESULTS_DIR:-benchmarks/results}/losses_contrastive_gpu.json" >> "$OUT_DIR/bench_losses_gpu.log" 2>/dev/null || true
else
  echo "=== [bench-losses] skipped: bench_losses.py has no --device option here"
fi

echo "=== results in $OUT_DIR: $(ls "$OUT_DIR" | tr '\n' ' ')"
if [ ${#failed[@]} -ne 0 ]; then
  echo "!!! FAILED STEPS: ${failed[*]}" >&2
  exit 1
fi
echo "=== all steps passed $(date -u +%H:%M:%S)"
