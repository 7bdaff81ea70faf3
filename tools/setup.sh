#!/usr/bin/env bash
# Installs what shardserve's build, tests and default model need on Debian 12. Idempotent.
#
#   tools/setup.sh                   # build + test dependencies, and the default model
#   tools/setup.sh --with-reference  # also llama-cpp-python (the benchmark's reference engine)
#   tools/setup.sh --no-model        # skip fetching the default model
set -euo pipefail

with_reference=0
fetch_model=1
for arg in "$@"; do
  case "$arg" in
    --with-reference) with_reference=1 ;;
    --no-model) fetch_model=0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

APT_PACKAGES=(
  bazel-bootstrap bazel-rules-java bazel-platforms bazel-skylib
  g++ pkg-config python3 python3-pip python3-yaml unzip
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libgoogle-glog-dev libgflags-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  prometheus-cpp-dev libgloo-dev libopenblas-dev libonig-dev
  nlohmann-json3-dev libcpp-httplib-dev libicu-dev
  clang-14 libclang-rt-14-dev clang-format
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup.sh: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ((with_reference)); then
  python3 -c "import llama_cpp" 2>/dev/null ||
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) python3 -m pip install -q --no-deps llama-cpp-python==0.3.36
  python3 -m pip install -q numpy gguf diskcache jinja2 typing-extensions
  # llama-cpp-python's OpenAI-compatible server, the serving benchmark's reference.
  python3 -m pip install -q uvicorn fastapi sse-starlette starlette-context pydantic-settings
fi

if ((fetch_model)); then
  "$(dirname "$0")/fetch_default_model.sh" >/dev/null
fi
echo "setup.sh: ok"
