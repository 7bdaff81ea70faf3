// Our decoder against llama.cpp on tiny random checkpoints of every supported family: the
// logits of a 64-token prefill and of 16 greedy decode steps (tests/fixtures/tiny/).
// Each family is loaded twice: from the Hugging Face safetensors (our HF loader, HF tensor
// layout, NEOX RoPE) and from the GGUF that llama.cpp itself ran (llama-family Q/K permuted,
// interleaved RoPE).
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "common/testing/test_env.h"
#include "gtest/gtest.h"
#include "model/model_config.h"
#include "nlohmann/json.hpp"
#include "tests/conformance/decoder_runner.h"

namespace shardserve {
namespace {

// llama.cpp and a float64 numpy forward pass agree to about 2e-6 on these logits.
constexpr float kLogitTolerance = 2e-3f;

struct Case {
  std::string family;
  std::string model;  // relative to the family directory
};

class TinyModelTest : public ::testing::TestWithParam<Case> {};

TEST_P(TinyModelTest, MatchesLlamaCppPrefillAndGreedyDecode) {
  const Case& c = GetParam();
  const std::string dir = TestRunfile("tests/fixtures/tiny/" + c.family);
  std::ifstream f(dir + "/reference.json");
  ASSERT_TRUE(f.good()) << dir;
  const nlohmann::json ref = nlohmann::json::parse(f);
  const std::vector<int32_t> prompt = ref["prompt_ids"].get<std::vector<int32_t>>();
  const std::vector<int32_t> generated = ref["generated_ids"].get<std::vector<int32_t>>();
  const int64_t vocab = ref["vocab_size"].get<int64_t>();
  const std::vector<float> expected = ReadF32File(dir + "/logits.f32");
  ASSERT_EQ(expected.size(), static_cast<size_t>(80 * vocab));

  for (int threads : {1, 2}) {
    auto runner = DecoderRunner::Open(dir + "/" + c.model, threads, 96);
    ASSERT_TRUE(runner.ok()) << runner.status();
    ASSERT_EQ((*runner)->config().vocab_size, vocab);
    // Chunked prefill (24 + 24 + 16 tokens) exercises attention over earlier chunks.
    auto prefill = (*runner)->Append(prompt, 24);
    ASSERT_TRUE(prefill.ok()) << prefill.status();
    float max_diff = 0;
    for (size_t i = 0; i < prefill->size(); ++i) {
      max_diff = std::max(max_diff, std::fabs((*prefill)[i] - expected[i]));
    }
    EXPECT_LT(max_diff, kLogitTolerance) << "prefill logits, threads=" << threads;

    std::vector<int32_t> ours;
    const float* last = prefill->data() + 63 * vocab;
    for (int step = 0; step < 17; ++step) {
      const int32_t argmax = static_cast<int32_t>(std::max_element(last, last + vocab) - last);
      ours.push_back(argmax);
      if (step == 16) break;
      // Feed llama.cpp's token so one flip cannot cascade; equality is checked below.
      auto logits = (*runner)->Append({generated[step]}, 1);
      ASSERT_TRUE(logits.ok()) << logits.status();
      float step_diff = 0;
      for (int64_t v = 0; v < vocab; ++v) {
        step_diff =
            std::max(step_diff, std::fabs((*logits)[v] - expected[(64 + step) * vocab + v]));
      }
      EXPECT_LT(step_diff, kLogitTolerance) << "decode step " << step;
      static thread_local std::vector<float> keep;
      keep = *logits;
      last = keep.data();
    }
    EXPECT_EQ(ours, generated) << "greedy tokens, threads=" << threads;
  }
}

// Mistral's sliding window is not implemented as a windowed attention: the HF config's window
// (128, shorter than max_position_embeddings 256) only caps the context, which is exact because
// attention within the window is plain causal attention. The GGUF (arch "llama") has no window.
TEST(TinyMistralTest, SlidingWindowCapsTheContext) {
  const std::string dir = TestRunfile("tests/fixtures/tiny/mistral");
  auto hf = DecoderRunner::Open(dir, 1, 16);
  ASSERT_TRUE(hf.ok()) << hf.status();
  EXPECT_EQ((*hf)->config().arch, Architecture::kMistral);
  EXPECT_EQ((*hf)->config().max_position_embeddings, 128);
  auto gguf = DecoderRunner::Open(dir + "/model.gguf", 1, 16);
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  EXPECT_EQ((*gguf)->config().arch, Architecture::kLlama);
  EXPECT_EQ((*gguf)->config().max_position_embeddings, 256);
}

INSTANTIATE_TEST_SUITE_P(Families, TinyModelTest,
                         ::testing::Values(Case{"mixtral", "."}, Case{"mixtral", "model.gguf"},
                                           Case{"mixtral", "bf16"}, Case{"mixtral", "sharded"},
                                           Case{"qwen2moe", "."}, Case{"qwen2moe", "model.gguf"},
                                           Case{"qwen3moe", "."}, Case{"qwen3moe", "model.gguf"},
                                           Case{"olmoe", "."}, Case{"olmoe", "model.gguf"},
                                           Case{"qwen2", "."}, Case{"qwen2", "model.gguf"},
                                           Case{"qwen3", "."}, Case{"qwen3", "model.gguf"},
                                           Case{"llama", "."}, Case{"llama", "model.gguf"},
                                           Case{"mistral", "."}, Case{"mistral", "model.gguf"}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string name =
                               info.param.family + "_" +
                               (info.param.model == "." ? std::string("hf") : info.param.model);
                           for (char& ch : name) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace shardserve
