// Fuzz target for the safetensors reader: parse arbitrary bytes and touch the first and last
// byte of every tensor it accepts. Any crash, out-of-bounds read (under AddressSanitizer) or
// undefined behaviour (under UBSan) is a bug; errors are expected.
//
// `bazel test //tests/fuzz:safetensors_fuzz_regression` runs it over the seed corpus and
// mutations of it; tests/fuzz/run_fuzzers.sh runs it under libFuzzer.
#include <cstddef>
#include <cstdint>

#include "absl/types/span.h"
#include "model/safetensors_file.h"

namespace {
volatile uint8_t sink;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shardserve;
  auto file = SafetensorsFile::Parse("fuzz.safetensors", absl::MakeConstSpan(data, size));
  if (!file.ok()) return 0;
  for (const SafetensorsTensor& t : (*file)->tensors()) {
    const int64_t nbytes = t.view.nbytes();
    if (nbytes != static_cast<int64_t>(t.end - t.begin)) __builtin_trap();
    if (nbytes == 0) continue;
    const uint8_t* p = static_cast<const uint8_t*>(t.view.data);
    sink = sink ^ p[0] ^ p[nbytes - 1];
    auto again = (*file)->Get(t.name);
    if (!again.ok() || again->data != t.view.data) __builtin_trap();
  }
  return 0;
}
