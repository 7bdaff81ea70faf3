// Fuzz target for the Hugging Face config.json reader: any text must yield a validated
// ModelConfig or an error, never a crash, an uncaught exception or undefined behaviour.
//
// `bazel test //tests/fuzz:hf_config_fuzz_regression` runs it over the seed corpus and
// mutations of it; tests/fuzz/run_fuzzers.sh runs it under libFuzzer.
#include <cstddef>
#include <cstdint>
#include <string>

#include "model/config_validation.h"
#include "model/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shardserve;
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = ParseHfConfig(text, "fuzz/config.json");
  if (config.ok() && !ValidateModelConfig(*config, "fuzz").ok()) __builtin_trap();
  return 0;
}
