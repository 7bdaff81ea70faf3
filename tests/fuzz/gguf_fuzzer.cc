// Fuzz target for the GGUF reader: parse arbitrary bytes, read every metadata value through
// every getter, touch the first and last byte of every tensor, derive a ModelConfig, and open a
// GgufWeightSource and read every weight it validated. Any crash, out-of-bounds read (under
// AddressSanitizer) or undefined behaviour (under UBSan) is a bug; errors are expected.
//
// `bazel test //tests/fuzz:gguf_fuzz_regression` runs it over the seed corpus and mutations of
// it; tests/fuzz/run_fuzzers.sh runs it under libFuzzer.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/types/span.h"
#include "model/gguf_config.h"
#include "model/gguf_file.h"
#include "model/gguf_weight_source.h"
#include "model/weight_source.h"

namespace {

volatile uint8_t sink;

void Touch(const void* data, int64_t nbytes) {
  if (nbytes <= 0) return;
  const uint8_t* p = static_cast<const uint8_t*>(data);
  sink = sink ^ p[0] ^ p[nbytes - 1];
}

void ReadAllMetadata(const shardserve::GgufFile& f) {
  for (const std::string& key : f.Keys()) {
    (void)f.TypeOf(key);
    (void)f.GetString(key);
    (void)f.GetInt(key);
    (void)f.GetFloat(key);
    (void)f.GetBool(key);
    (void)f.GetArrayLength(key);
    (void)f.GetStringArray(key);
    (void)f.GetIntArray(key);
    (void)f.GetFloatArray(key);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shardserve;
  auto file = GgufFile::Parse("fuzz.gguf", absl::MakeConstSpan(data, size));
  if (!file.ok()) return 0;
  ReadAllMetadata(**file);
  for (const GgufTensorInfo& t : (*file)->tensors()) {
    const TensorView v = t.view();
    Touch(v.data, v.nbytes());
  }
  (void)ConfigFromGguf(**file);
  auto source = GgufWeightSource::FromFile(std::move(*file));
  if (!source.ok()) return 0;
  for (const ExpectedTensor& want : RequiredTensors((*source)->config())) {
    auto v = (*source)->Get(want.name);
    if (!v.ok()) __builtin_trap();  // validation promised every required tensor
    Touch(v->data, v->nbytes());
  }
  return 0;
}
