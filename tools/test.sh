#!/usr/bin/env bash
# Runs the whole test suite: installs dependencies, builds, runs every Bazel test (with the
# default model available to the tests that use it), a clang-format check, the CUDA build when
# nvcc is installed, then a short fuzzing run of the parsers and the tokenizer.
# Ends with one line "N passed, N failed".
#
#   tools/test.sh                 # everything
#   FUZZ_SECONDS=0 tools/test.sh  # skip the fuzzing run
#   CUDA_BUILD=0 tools/test.sh    # skip `bazel build --config=cuda //...` (done when nvcc exists)
set -uo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh || { echo "0 passed, 1 failed"; exit 1; }
model="$(tools/fetch_default_model.sh)"

log="$(mktemp)"
# Multi-process tests share 2 cores with each other; a test that fails and then passes on its
# second attempt is reported FLAKY (and listed at the end), not hidden.
bazel test //... --test_env=SHARDSERVE_TEST_GGUF="$model" --test_output=errors \
  --flaky_test_attempts=2 "$@" 2>&1 | tee "$log"
bazel_rc=${PIPESTATUS[0]}

passed=$(grep -cE '^//[^ ]+ +(\(cached\) )?(PASSED|FLAKY)' "$log")
failures=()
mapfile -t failures < <(grep -E '^//[^ ]+ +(\(cached\) )?(FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD|INCOMPLETE)' "$log" | awk '{print $1}')
mapfile -t flaky < <(grep -E '^//[^ ]+ +(\(cached\) )?FLAKY' "$log" | awk '{print $1}')
failed=${#failures[@]}
if [[ $bazel_rc -ne 0 && $failed -eq 0 ]]; then failed=1; failures+=("bazel (build error)"); fi

# Formatting: clang-format (Google style, 100 columns; .clang-format) on every C++ and CUDA file.
mapfile -t sources < <(git ls-files '*.cc' '*.h' '*.cu')
if clang-format --dry-run --Werror "${sources[@]}" >"$log.format" 2>&1; then
  echo "clang-format: PASSED"
  passed=$((passed + 1))
else
  head -20 "$log.format"
  echo "clang-format: FAILED (run: clang-format -i \$(git ls-files '*.cc' '*.h' '*.cu'))" >&2
  failed=$((failed + 1))
  failures+=("clang-format")
fi
rm -f "$log.format"

# The CUDA backend must keep compiling even though no GPU runs it here.
if [[ "${CUDA_BUILD:-auto}" != "0" && -x /usr/local/cuda/bin/nvcc ]]; then
  bazel build --config=cuda //... >"$log.cuda" 2>&1
  cuda_rc=$?
  tail -3 "$log.cuda"
  rm -f "$log.cuda"
  if [[ $cuda_rc -eq 0 ]]; then
    echo "cuda build: PASSED"
    passed=$((passed + 1))
  else
    echo "cuda build: FAILED" >&2
    failed=$((failed + 1))
    failures+=("cuda build")
  fi
fi

fuzz_seconds="${FUZZ_SECONDS:-15}"
if [[ "$fuzz_seconds" != "0" && -x tests/fuzz/run_fuzzers.sh ]]; then
  if tests/fuzz/run_fuzzers.sh "$fuzz_seconds"; then
    passed=$((passed + 1))
  else
    echo "fuzzing found a failure" >&2
    failed=$((failed + 1))
    failures+=("fuzzing")
  fi
fi
rm -f "$log"
if [[ ${#flaky[@]} -gt 0 ]]; then echo "flaky (passed on a second attempt): ${flaky[*]}"; fi
if [[ $failed -gt 0 ]]; then echo "failed: ${failures[*]}"; fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
