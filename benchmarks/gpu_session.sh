#!/usr/bin/env bash
# GPU validation in steps, one device call each, each well inside the
# 10-minute limit of a call (torch, pybind11, scikit-build-core and cupy are
# installed on the device machine). Every step builds the extension for
# sm_90 first if this machine has no current build, and tees its log into
# $OUT, so a killed call still returns what it printed.
#
#   OUT=$OUT bash benchmarks/gpu_session.sh test          build; kernel tests (-x, blocking launches); full suite
#   OUT=$OUT bash benchmarks/gpu_session.sh sanitize      memcheck, racecheck, synccheck on a reduced case set
#   OUT=$OUT bash benchmarks/gpu_session.sh bench-gram    benchmarks/bench_gram.py
#   OUT=$OUT bash benchmarks/gpu_session.sh bench-logdet  benchmarks/bench_logdet.py
#   OUT=$OUT bash benchmarks/gpu_session.sh sweep         VGG-16 layer sweep, kernels against torch
#
# `test` and `sanitize` also write gpu_tests_<gpu>.<step>.txt pieces (first
# line the GPU's name as nvidia-smi prints it); here, after fetching them:
#   bash benchmarks/gpu_session.sh merge FETCHED_DIR...   -> benchmarks/results/gpu_tests_<gpu>.txt
set -uo pipefail
cd "$(dirname "$0")/.."
step="${1:?usage: gpu_session.sh test|sanitize|bench-gram|bench-logdet|sweep|merge}"
export PYTHONUNBUFFERED=1

if [ "$step" = merge ]; then
  shift
  pieces=()
  for dir in "$@"; do pieces+=("$dir"/gpu_tests_*.test.txt "$dir"/gpu_tests_*.sanitize.txt); done
  first=$(ls "${pieces[@]}" 2>/dev/null | head -n 1)
  [ -n "$first" ] || { echo "merge: no gpu_tests_*.txt pieces in $*" >&2; exit 1; }
  name=$(basename "$first"); name="${name%.*.txt}"
  { head -n 1 "$first"; for p in "${pieces[@]}"; do [ -f "$p" ] && tail -n +2 "$p"; done; } \
    > "benchmarks/results/$name.txt"
  echo "wrote benchmarks/results/$name.txt"; exit 0
fi

OUT="${OUT:?set OUT to the results folder}"
mkdir -p "$OUT"
log="$OUT/$step.log"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
piece="$OUT/gpu_tests_${gpu// /_}.$step.txt"

build() {
  if python3 -c "import pyfastent._C" 2>/dev/null && [ -z "$(find csrc CMakeLists.txt -newer build/.built 2>/dev/null)" ]; then
    return 0
  fi
  nvidia-smi
  PYFASTENT_CUDA=ON CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=90-real" \
    pip install --no-build-isolation --no-deps -e . 2>&1 | tail -n 5 || return 1
  python3 -c "import json, pyfastent; print(json.dumps(pyfastent.backend_info(), indent=1))" || return 1
  touch build/.built
}

# The sanitizers need hardware support: gVisor machines (the H200s) refuse
# the device. Probe once on a tiny program and say so instead of failing.
sanitizer_refusal() {
  local probe
  probe=$(compute-sanitizer --tool memcheck --error-exitcode 9 python3 -c \
          "import torch; torch.ones(4, device='cuda').sum().item()" 2>&1)
  [ $? -eq 0 ] && return 1
  echo "$probe" | grep -m 1 -iE "not supported|error|fail" || echo "exit code non-zero"
}

# Small sizes keep the sanitizers within minutes; every kernel still runs,
# the blocked Cholesky included (n = 65, 127, 129).
SANITIZED=(tests/test_cuda_kernels.py -q -p no:cacheprovider
           -k "not 1000 and not 1025 and not 4099 and not estimators and not cupy and not above_the_grid")

{
  build || { echo "build failed"; exit 1; }
  case "$step" in
    test)
      CUDA_LAUNCH_BLOCKING=1 python3 -m pytest tests/test_cuda_kernels.py -x -q -rs -p no:cacheprovider \
        | tee "$OUT/pytest-kernels.txt"
      python3 -m pytest tests -q -p no:cacheprovider | tee "$OUT/pytest-all.txt"
      { echo "$gpu"
        echo "tests/test_cuda_kernels.py (CUDA_LAUNCH_BLOCKING=1): $(tail -n 1 "$OUT/pytest-kernels.txt")"
        echo "full suite: $(tail -n 1 "$OUT/pytest-all.txt")"; } > "$piece"
      ;;
    sanitize)
      echo "$gpu" > "$piece"
      if reason=$(sanitizer_refusal); then
        echo "compute-sanitizer could not run on this machine (kernel $(uname -r)): $reason" | tee -a "$piece"
      else
        for tool in memcheck racecheck synccheck; do
          compute-sanitizer --tool "$tool" --error-exitcode 9 python3 -m pytest "${SANITIZED[@]}" \
            > "$OUT/sanitizer-$tool.txt" 2>&1
          code=$?
          echo "compute-sanitizer $tool: exit code $code; $(grep -m 1 'ERROR SUMMARY' "$OUT/sanitizer-$tool.txt"); pytest: $(grep -E 'passed|failed' "$OUT/sanitizer-$tool.txt" | tail -n 1)" \
            | tee -a "$piece"
        done
      fi
      ;;
    bench-gram) python3 benchmarks/bench_gram.py --out "$OUT" ;;
    bench-logdet) python3 benchmarks/bench_logdet.py --out "$OUT" ;;
    sweep) python3 benchmarks/bench_sweep.py --device cuda --out "$OUT" ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
} 2>&1 | tee "$log"
