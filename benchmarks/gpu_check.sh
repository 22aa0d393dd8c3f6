#!/usr/bin/env bash
# The GPU check of issue 16, in one run: environment, the GPU tests, the GPU benchmark.
#
# Run it from anywhere on a machine with an NVIDIA GPU whose Python already has CuPy,
# NumPy, Numba, pytest and PyTorch (CUDA build):
#
#     bash benchmarks/gpu_check.sh [LOG_DIR]
#
# It does not install nnlite's dependencies (never the `gpu` extra there: CuPy is
# already installed for that machine's CUDA); nnlite itself is put on PYTHONPATH.
# Every step's output goes to LOG_DIR (default: $OUT if set, else ./gpu_logs), one
# file per step, and each step has its own time limit, so that one hung kernel does
# not cost the whole run. The exit status is that of the GPU tests, or 3 when this
# machine has no usable GPU and CuPy (the GPU tests then all skip: nothing was checked).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG="${1:-${OUT:-gpu_logs}}"
mkdir -p "$LOG"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: run COMMAND with a time limit, log to LOG/NAME.txt
    local name="$1" limit="$2"
    shift 2
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > "$LOG/$name.txt" 2>&1
    local rc=$?
    echo "$name: exit $rc after $((SECONDS - start)) s (limit $limit s)" | tee -a "$LOG/summary.txt"
    return $rc
}

: > "$LOG/summary.txt"
step environment 60 sh -c 'nvidia-smi; python -c "
import numpy, numba, cupy, sys
print(sys.version)
print(\"numpy\", numpy.__version__, \"numba\", numba.__version__, \"cupy\", cupy.__version__)
print(\"CUDA runtime\", cupy.cuda.runtime.runtimeGetVersion(), \"driver\", cupy.cuda.runtime.driverGetVersion())
print(\"device\", cupy.cuda.runtime.getDeviceProperties(0)[\"name\"])
try:
    import torch; print(\"torch\", torch.__version__, \"cuda\", torch.cuda.is_available(), \"cudnn\", torch.backends.cudnn.version())
except ImportError as e:
    print(\"torch missing:\", e)
import nnlite; print(\"nnlite\", nnlite.__version__, \"from\", nnlite.__file__)
"'
env_rc=$?

# The GPU tests: -m gpu selects them; faulthandler dumps every thread's stack if one
# test runs past 120 s (the outer limit then ends the run).
step pytest_gpu 300 python -m pytest -q -m gpu -rs -o faulthandler_timeout=120 \
    -p no:cacheprovider tests
tests_rc=$?

# The benchmark: nnlite on CuPy against PyTorch + cuDNN on the same GPU, and nnlite's CPU.
step bench_gpu 240 python benchmarks/bench_gpu.py --json "$LOG/bench_gpu.json"

echo "logs in $LOG"
if [ "$env_rc" -ne 0 ]; then
    echo "gpu_check: no usable GPU and CuPy here (see $LOG/environment.txt): the GPU tests were skipped" >&2
    exit 3
fi
exit $tests_rc
