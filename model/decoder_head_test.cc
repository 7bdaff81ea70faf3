// The decoder's embedding and LM head against plain math: a one-layer model whose attention and
// MLP add exactly zero to the residual stream (attn_output and ffn_down are zero), so the logits
// of token t are lm_head . (rmsnorm(token_embd[t]) * output_norm), computed here in double from
// the tables' values (kernels/test_tables.h), for F32, F16, Q8_0 and Q4_1 tables, a tied and an
// untied head, and batches of 5 and 100 rows (float heads: row by row, then sgemm over 96 rows;
// quantized heads: activations rounded to 8 bits at every batch size).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/test_env.h"
#include "common/thread_pool.h"
#include "gtest/gtest.h"
#include "kernels/ops.h"
#include "kernels/test_tables.h"
#include "model/decoder.h"
#include "model/gguf_builder.h"
#include "model/weight_source.h"

namespace shardserve {
namespace {

constexpr int64_t kVocab = 50;
constexpr int64_t kHidden = 64;
constexpr int64_t kHeadDim = 32;
constexpr int64_t kInter = 64;
constexpr int64_t kContext = 128;
constexpr float kEps = 1e-5f;

std::vector<uint8_t> F32Bytes(const std::vector<float>& v) {
  std::vector<uint8_t> bytes(v.size() * sizeof(float));
  std::memcpy(bytes.data(), v.data(), bytes.size());
  return bytes;
}

struct HeadCase {
  DType embd;
  std::optional<DType> output;  // nullopt: tied to token_embd
};

std::string CaseName(const HeadCase& c) {
  return absl::StrCat(DTypeName(c.embd), "_",
                      c.output.has_value() ? DTypeName(*c.output) : std::string("tied"));
}

class DecoderHeadTest : public ::testing::TestWithParam<HeadCase> {
 protected:
  void SetUp() override {
    const HeadCase& c = GetParam();
    embd_ = MakeTestTable(c.embd, kVocab, kHidden, /*seed=*/21);
    if (c.output.has_value()) head_ = MakeTestTable(*c.output, kVocab, kHidden, /*seed=*/22);
    for (int64_t i = 0; i < kHidden; ++i) output_norm_.push_back(0.5f + 0.02f * (i % 50));

    GgufBuilder b;
    b.AddString("general.architecture", "llama")
        .AddUint32("llama.block_count", 1)
        .AddUint32("llama.context_length", kContext)
        .AddUint32("llama.embedding_length", kHidden)
        .AddUint32("llama.feed_forward_length", kInter)
        .AddUint32("llama.attention.head_count", kHidden / kHeadDim)
        .AddUint32("llama.attention.head_count_kv", 1)
        .AddFloat32("llama.attention.layer_norm_rms_epsilon", kEps)
        .AddUint32("llama.vocab_size", kVocab);
    b.AddTensor("token_embd.weight", c.embd, {kVocab, kHidden}, embd_.bytes);
    if (c.output.has_value())
      b.AddTensor("output.weight", *c.output, {kVocab, kHidden}, head_.bytes);
    b.AddTensor("output_norm.weight", DType::kF32, {kHidden}, F32Bytes(output_norm_));
    // The layer computes something, but its two output projections are zero.
    auto random = [](int64_t rows, int64_t cols, uint32_t seed) {
      return MakeTestTable(DType::kF32, rows, cols, seed).bytes;
    };
    b.AddTensor("blk.0.attn_norm.weight", DType::kF32, {kHidden}, random(1, kHidden, 31));
    b.AddTensor("blk.0.attn_q.weight", DType::kF32, {kHidden, kHidden},
                random(kHidden, kHidden, 32));
    b.AddTensor("blk.0.attn_k.weight", DType::kF32, {kHeadDim, kHidden},
                random(kHeadDim, kHidden, 33));
    b.AddTensor("blk.0.attn_v.weight", DType::kF32, {kHeadDim, kHidden},
                random(kHeadDim, kHidden, 34));
    b.AddTensor("blk.0.attn_output.weight", DType::kF32, {kHidden, kHidden},
                std::vector<uint8_t>(kHidden * kHidden * sizeof(float), 0));
    b.AddTensor("blk.0.ffn_norm.weight", DType::kF32, {kHidden}, random(1, kHidden, 35));
    b.AddTensor("blk.0.ffn_gate.weight", DType::kF32, {kInter, kHidden},
                random(kInter, kHidden, 36));
    b.AddTensor("blk.0.ffn_up.weight", DType::kF32, {kInter, kHidden}, random(kInter, kHidden, 37));
    b.AddTensor("blk.0.ffn_down.weight", DType::kF32, {kHidden, kInter},
                std::vector<uint8_t>(kHidden * kInter * sizeof(float), 0));
    path_ = absl::StrCat(TestTempDir(), "/decoder_head_", CaseName(c), ".gguf");
    ASSERT_TRUE(b.WriteFile(path_).ok());
  }

  // The head's values: the output table, or the embedding's when tied.
  const TestTable& head() const { return GetParam().output.has_value() ? head_ : embd_; }

  // Runs one prefill step over `ids` and returns the logits of every row, [ids.size(), vocab].
  std::vector<float> Forward(const std::vector<int32_t>& ids) {
    auto weights = OpenWeightSource(path_);
    EXPECT_TRUE(weights.ok()) << weights.status();
    if (!weights.ok()) return {};
    auto decoder = Decoder::Create(weights->get());
    EXPECT_TRUE(decoder.ok()) << decoder.status();
    if (!decoder.ok()) return {};
    const int64_t n = static_cast<int64_t>(ids.size());
    const int32_t block_size = 16;
    const int32_t num_blocks = static_cast<int32_t>((n + block_size - 1) / block_size);
    std::vector<float> k_cache(num_blocks * block_size * kHeadDim);
    std::vector<float> v_cache(k_cache.size());
    const KvLayerView kv = {k_cache.data(), v_cache.data(), DType::kF32, num_blocks, block_size, 1,
                            kHeadDim};
    std::vector<int32_t> positions(n), rows(n), blocks(num_blocks);
    std::vector<int64_t> slots(n);
    for (int64_t i = 0; i < n; ++i) {
      positions[i] = rows[i] = static_cast<int32_t>(i);
      slots[i] = i;
    }
    for (int32_t b = 0; b < num_blocks; ++b) blocks[b] = b;
    const std::vector<int32_t> qo_indptr = {0, static_cast<int32_t>(n)};
    const std::vector<int32_t> kv_indptr = {0, num_blocks};
    const std::vector<int32_t> kv_lens = {static_cast<int32_t>(n)};
    ForwardBatch batch;
    batch.token_ids = ids;
    batch.positions = positions;
    batch.slot_mapping = slots;
    batch.attention = {qo_indptr, kv_indptr, blocks, kv_lens};
    batch.logits_rows = rows;
    std::vector<float> logits(n * kVocab);
    ThreadPool pool(2);
    const absl::Status st = (*decoder)->Forward(OpContext::Cpu(&pool), batch,
                                                absl::MakeConstSpan(&kv, 1), logits.data());
    EXPECT_TRUE(st.ok()) << st;
    return logits;
  }

  void ExpectLogitsMatchReference(const std::vector<int32_t>& ids) {
    const std::vector<float> logits = Forward(ids);
    ASSERT_EQ(logits.size(), ids.size() * kVocab);
    const bool int8_path = IsQuantized(head().dtype);
    double worst_ratio = 0;
    for (size_t t = 0; t < ids.size(); ++t) {
      // Final norm of the embedding row, in double.
      const double* x = embd_.Row(ids[t]);
      double sum_sq = 0;
      for (int64_t k = 0; k < kHidden; ++k) sum_sq += x[k] * x[k];
      const double inv_rms = 1.0 / std::sqrt(sum_sq / kHidden + kEps);
      std::vector<double> y(kHidden);
      for (int64_t k = 0; k < kHidden; ++k) y[k] = x[k] * inv_rms * output_norm_[k];
      // A quantized head's MatMul rounds y to 8 bits per block of 32: an element
      // moves by at most half a step, amax / 254, plus the fp16 rounding of the step (127 steps
      // of at most 2^-11 relative): 0.57 of a step in all.
      std::vector<double> step_error(kHidden, 0.0);
      if (int8_path) {
        for (int64_t b = 0; b < kHidden; b += 32) {
          double amax = 0;
          for (int64_t k = b; k < b + 32; ++k) amax = std::max(amax, std::fabs(y[k]));
          for (int64_t k = b; k < b + 32; ++k) step_error[k] = 0.57 * amax / 127;
        }
      }
      double lo = INFINITY, hi = -INFINITY, largest_bound = 0;
      for (int64_t v = 0; v < kVocab; ++v) {
        const double* w = head().Row(v);
        double want = 0, magnitude = 0, bound = 0;
        for (int64_t k = 0; k < kHidden; ++k) {
          want += w[k] * y[k];
          magnitude += std::fabs(w[k] * y[k]);
          bound += std::fabs(w[k]) * step_error[k];
        }
        bound += 1e-5 * magnitude + 1e-6;  // float arithmetic
        const float got = logits[t * kVocab + v];
        ASSERT_NEAR(got, want, bound) << "token " << ids[t] << " vocab row " << v;
        worst_ratio = std::max(worst_ratio, std::fabs(got - want) / bound);
        lo = std::min(lo, want);
        hi = std::max(hi, want);
        largest_bound = std::max(largest_bound, bound);
      }
      // The bound still tells rows apart: a wrong row, a missing norm weight or a wrong scale
      // moves logits by a good part of their spread.
      EXPECT_LT(largest_bound, 0.1 * (hi - lo)) << "token " << ids[t] << ": bound too loose";
    }
    std::printf("%s, %zu tokens: largest |ours - reference| is %.3f of its bound\n",
                CaseName(GetParam()).c_str(), ids.size(), worst_ratio);
  }

  TestTable embd_, head_;
  std::vector<float> output_norm_;
  std::string path_;
};

TEST_P(DecoderHeadTest, LogitsOfAFewTokens) { ExpectLogitsMatchReference({7, 0, 49, 7, 23}); }

TEST_P(DecoderHeadTest, LogitsOfMoreThan96Tokens) {
  std::vector<int32_t> ids(100);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 37 + 5) % kVocab);
  ExpectLogitsMatchReference(ids);
}

INSTANTIATE_TEST_SUITE_P(
    Heads, DecoderHeadTest,
    ::testing::Values(HeadCase{DType::kF32, DType::kF32}, HeadCase{DType::kF16, std::nullopt},
                      HeadCase{DType::kQ8_0, std::nullopt}, HeadCase{DType::kQ4_1, std::nullopt},
                      HeadCase{DType::kQ4_1, DType::kQ8_0}, HeadCase{DType::kF16, DType::kQ4_1}),
    [](const ::testing::TestParamInfo<HeadCase>& info) { return CaseName(info.param); });

}  // namespace
}  // namespace shardserve
