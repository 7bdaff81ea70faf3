// Prints the logits our decoder computes after a prompt, for investigating a disagreement with a
// reference implementation: dump_logits MODEL OUT.f32 ID [ID ...] writes the last position's
// logits as raw float32.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "tests/conformance/decoder_runner.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL OUT.f32 ID [ID ...]\n", argv[0]);
    return 2;
  }
  std::vector<int32_t> ids;
  for (int i = 3; i < argc; ++i) ids.push_back(std::atoi(argv[i]));
  auto runner = shardserve::DecoderRunner::Open(argv[1], 1, ids.size() + 16);
  if (!runner.ok()) {
    std::fprintf(stderr, "%s\n", runner.status().ToString().c_str());
    return 1;
  }
  auto logits = (*runner)->Append(ids, 512);
  if (!logits.ok()) {
    std::fprintf(stderr, "%s\n", logits.status().ToString().c_str());
    return 1;
  }
  const int64_t vocab = (*runner)->config().vocab_size;
  FILE* f = std::fopen(argv[2], "wb");
  std::fwrite(logits->data() + logits->size() - vocab, 4, vocab, f);
  std::fclose(f);
  return 0;
}
