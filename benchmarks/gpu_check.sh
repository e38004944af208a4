#!/usr/bin/env bash
# One prepared GPU check for a lent CUDA machine (fits ~5 minutes):
#   1. builds fastrl, 2. runs the kernel tests natively (TRITON_INTERPRET=0),
#   3. runs the GPU modes of the benchmarks, writing benchmarks/results/*_gpu.json.
# Usage (device tool): bash benchmarks/gpu_check.sh   (copies results to $OUT if set)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0
python3 -m pip install -q -e ".[test]" 2>&1 | tail -2
python3 -c "import fastrl, json; print(json.dumps(fastrl.backend_info()))"
status=0
timeout 150 python3 -m pytest -q -x tests -k "triton or cuda or gpu" -m "not slow" 2>&1 | tail -15 || status=1
for b in "bench_losses.py --family all" bench_masking.py; do
  [ -f "benchmarks/${b%% *}" ] || continue
  timeout 120 python3 benchmarks/$b 2>&1 | tail -25 || status=1
done
if [ -n "${OUT:-}" ]; then cp benchmarks/results/*.json "$OUT"/ 2>/dev/null; fi
exit $status
