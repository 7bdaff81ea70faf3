#!/usr/bin/env bash
# Builds the model file format fuzz targets (GGUF, safetensors, config.json) with libFuzzer, AddressSanitizer and UBSan, straight
# from the sources (no Bazel), and runs each for $1 seconds (default 20) on a scratch copy of its
# seed corpus. Exits non-zero when a target crashes; the crashing input is kept under
# ${FUZZ_ARTIFACTS:-${TMPDIR:-/tmp}/shardserve-fuzz} and replays with
#   bazel-bin/tests/fuzz/gguf_fuzz_regression <crash file> --mutations=0
# Needs clang-14 and libclang-rt-14-dev; run from anywhere.
set -euo pipefail

seconds="${1:-20}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cxx="${CXX:-clang++-14}"
artifacts="${FUZZ_ARTIFACTS:-${TMPDIR:-/tmp}/shardserve-fuzz}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts"

flags=(-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -std=c++17 -O1 -g
       -I"$root")
# The Abseil libraries Bazel links (//third_party:absl).
mapfile -t absl < <(grep -o '"-labsl_[a-z0-9_]*"' "$root/third_party/BUILD.bazel" | tr -d '"')

base_srcs=(common/mapped_file.cc kernels/dtype.cc kernels/tensor.cc)
safetensors_srcs=(model/safetensors_file.cc model/safetensors_checkpoint.cc)
gguf_srcs=(model/gguf_file.cc model/gguf_config.cc model/config_validation.cc
           model/weight_source.cc model/gguf_weight_source.cc model/hf_weight_source.cc
           model/hf_config.cc "${safetensors_srcs[@]}")

# build NAME SOURCES...
build() {
  local name="$1"
  shift
  echo "== building $name"
  (cd "$root" && "$cxx" "${flags[@]}" "$@" "${base_srcs[@]}" -o "$work/$name" "${absl[@]}" \
    -lpthread)
}

# run NAME CORPUS_SUBDIR
run() {
  local name="$1" corpus="$2"
  mkdir -p "$work/corpus-$name"
  cp "$root/tests/fuzz/corpus/$corpus/"* "$work/corpus-$name/"
  echo "== fuzzing $name for ${seconds}s"
  if ! "$work/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/$name-" "$work/corpus-$name"; then
    echo "!! $name crashed; inputs saved under $artifacts" >&2
    return 1
  fi
}

build gguf_fuzzer tests/fuzz/gguf_fuzzer.cc "${gguf_srcs[@]}"
build safetensors_fuzzer tests/fuzz/safetensors_fuzzer.cc "${safetensors_srcs[@]}"
build hf_config_fuzzer tests/fuzz/hf_config_fuzzer.cc model/hf_config.cc \
  model/config_validation.cc
status=0
run gguf_fuzzer gguf || status=1
run safetensors_fuzzer safetensors || status=1
run hf_config_fuzzer hf_config || status=1
exit "$status"
