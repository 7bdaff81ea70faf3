#!/usr/bin/env bash
# Builds the fuzz targets (GGUF, safetensors, config.json, tokenizer) with libFuzzer,
# AddressSanitizer and UBSan, straight from the sources (no Bazel), and runs each for $1 seconds
# (default 20) on a scratch copy of its seed corpus. Exits non-zero when a target crashes; the crashing input is kept under
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

# Each source is compiled once (two at a time) and shared by the fuzzers that link it.
compile_all() {
  printf '%s\n' "$@" | sort -u | xargs -P 2 -I{} sh -c \
    'mkdir -p "$(dirname "$0/{}.o")" && cd "$1" && '"$cxx"' '"${flags[*]}"' -c {} -o "$0/{}.o"' \
    "$work/obj" "$root"
}

# link NAME SOURCES...
link() {
  local name="$1"
  shift
  local objs=()
  for src in "$@" "${base_srcs[@]}"; do objs+=("$work/obj/$src.o"); done
  echo "== linking $name"
  "$cxx" "${flags[@]}" "${objs[@]}" -o "$work/$name" "${absl[@]}" "${extra_libs[@]}" -lpthread
}

# run NAME CORPUS_SUBDIR
run() {
  local name="$1" corpus="$2"
  mkdir -p "$work/corpus-$name"
  cp "$root/tests/fuzz/corpus/$corpus/"* "$work/corpus-$name/"
  echo "== fuzzing $name for ${seconds}s"
  # libFuzzer's progress lines go to a log; only its summary (or, on a crash, the report) is
  # printed, so that the test summary stays readable.
  if ! "$work/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/$name-" "$work/corpus-$name" \
      >"$work/$name.log" 2>&1; then
    tail -60 "$work/$name.log" >&2
    echo "!! $name crashed; inputs saved under $artifacts" >&2
    return 1
  fi
  grep -E '^(Done|stat::number_of_executed_units)' "$work/$name.log" || true
}

tokenizer_srcs=(model/bpe_utf8.cc model/bpe_byte_level.cc model/bpe_model.cc
                model/bpe_added_token_matcher.cc model/pre_tokenizer.cc model/tokenizer.cc
                model/tokenizer_gguf.cc model/tokenizer_hf_json.cc model/tokenizer_normalizer.cc
                model/incremental_detokenizer.cc)
extra_libs=(-lonig -licuuc)

echo "== compiling"
compile_all tests/fuzz/gguf_fuzzer.cc tests/fuzz/safetensors_fuzzer.cc \
  tests/fuzz/hf_config_fuzzer.cc tests/fuzz/tokenizer_fuzzer.cc "${gguf_srcs[@]}" \
  "${tokenizer_srcs[@]}" "${base_srcs[@]}"
link gguf_fuzzer tests/fuzz/gguf_fuzzer.cc "${gguf_srcs[@]}"
link safetensors_fuzzer tests/fuzz/safetensors_fuzzer.cc "${safetensors_srcs[@]}"
link hf_config_fuzzer tests/fuzz/hf_config_fuzzer.cc model/hf_config.cc model/config_validation.cc
link tokenizer_fuzzer tests/fuzz/tokenizer_fuzzer.cc "${tokenizer_srcs[@]}"

status=0
run gguf_fuzzer gguf || status=1
run safetensors_fuzzer safetensors || status=1
run hf_config_fuzzer hf_config || status=1
SHARDSERVE_FUZZ_TOKENIZER="$root/tests/tokenizer/smollm2_tokenizer.json" \
  run tokenizer_fuzzer tokenizer || status=1
exit "$status"
