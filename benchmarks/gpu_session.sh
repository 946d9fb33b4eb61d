#!/usr/bin/env bash
# One full GPU session on the device machine (torch, pybind11,
# scikit-build-core and cupy are installed there): build the extension for
# sm_90, run the GPU tests, compute-sanitizer (memcheck, racecheck) on the
# kernels, then both GPU benchmarks. Everything lands in $OUT (at most 8 files).
# Usage: OUT=/some/dir bash benchmarks/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to the results folder}"
mkdir -p "$OUT"

{
  nvidia-smi
  PYFASTENT_CUDA=ON CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=90-real" \
    pip install --no-build-isolation --no-deps -e . 2>&1 | tail -5
  python -c "import json, pyfastent; print(json.dumps(pyfastent.backend_info(), indent=1))"
} > "$OUT/build.txt" 2>&1

python -m pytest tests -q -rs -p no:cacheprovider > "$OUT/tests.txt" 2>&1
echo "pytest exit code $?" >> "$OUT/tests.txt"

# Small sizes keep the sanitizers within minutes; every kernel still runs,
# the blocked Cholesky included (n = 65, 127, 129).
sanitized=(tests/test_cuda_kernels.py -q -p no:cacheprovider
           -k "not 1000 and not 1025 and not 4099 and not estimators and not cupy")
for tool in memcheck racecheck; do
  compute-sanitizer --tool "$tool" --error-exitcode 9 python -m pytest "${sanitized[@]}" > "$OUT/sanitizer-$tool.txt" 2>&1
  echo "compute-sanitizer $tool exit code $?" >> "$OUT/sanitizer-$tool.txt"
done

python benchmarks/bench_gram.py --out "$OUT" > /dev/null 2>> "$OUT/build.txt"
python benchmarks/bench_logdet.py --out "$OUT" > /dev/null 2>> "$OUT/build.txt"
ls -la "$OUT"
