#include "model/shard_weights.h"

#include <cstring>
#include <string>
#include <vector>

#include "common/testing/test_env.h"
#include "common/thread_pool.h"
#include "gtest/gtest.h"
#include "kernels/ops.h"
#include "model/gguf_builder.h"
#include "model/shard_spec.h"
#include "model/weight_source.h"

namespace shardserve {
namespace {

// A 2-layer llama with Q8_0 linear weights (blocks of 32): hidden 64, 4 heads of 16, 2 KV
// heads, MLP 96, vocab 40. Under TP=2, o_proj's column slices (32 each) fall on block
// boundaries; ffn_down's (48 each) split a block.
std::string WriteModel() {
  GgufBuilder b;
  b.AddString("general.architecture", "llama")
      .AddUint32("llama.block_count", 2)
      .AddUint32("llama.context_length", 64)
      .AddUint32("llama.embedding_length", 64)
      .AddUint32("llama.feed_forward_length", 96)
      .AddUint32("llama.attention.head_count", 4)
      .AddUint32("llama.attention.head_count_kv", 2)
      .AddFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
      .AddUint32("llama.vocab_size", 40);
  b.AddTensor("token_embd.weight", DType::kQ8_0, {40, 64});
  b.AddTensor("output_norm.weight", DType::kF32, {64});
  for (const std::string p : {"blk.0.", "blk.1."}) {
    b.AddTensor(p + "attn_norm.weight", DType::kF32, {64});
    b.AddTensor(p + "attn_q.weight", DType::kQ8_0, {64, 64});
    b.AddTensor(p + "attn_k.weight", DType::kQ8_0, {32, 64});
    b.AddTensor(p + "attn_v.weight", DType::kQ8_0, {32, 64});
    b.AddTensor(p + "attn_output.weight", DType::kQ8_0, {64, 64});
    b.AddTensor(p + "ffn_norm.weight", DType::kF32, {64});
    b.AddTensor(p + "ffn_gate.weight", DType::kQ8_0, {96, 64});
    b.AddTensor(p + "ffn_up.weight", DType::kQ8_0, {96, 64});
    b.AddTensor(p + "ffn_down.weight", DType::kQ8_0, {64, 96});
  }
  const std::string path = TestTempDir() + "/shard_weights.gguf";
  EXPECT_TRUE(b.WriteFile(path).ok());
  return path;
}

std::vector<float> Dequantize(const TensorView& t) {
  std::vector<int32_t> ids(t.dim(0));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  std::vector<float> out(t.dim(0) * t.cols());
  ThreadPool pool(1);
  EXPECT_TRUE(ops::Embedding(OpContext::Cpu(&pool), t, ids,
                             TensorView::Cpu(out.data(), DType::kF32, {t.dim(0), t.cols()}))
                  .ok());
  return out;
}

TEST(ShardWeightsTest, SlicesRowsAndColumnsOfQuantizedWeights) {
  auto source = OpenWeightSource(WriteModel());
  ASSERT_TRUE(source.ok()) << source.status();
  const WeightSource& w = **source;
  auto shard = MakeShardSpec(w.config(), {2, 1, 1}, 1, 0);
  ASSERT_TRUE(shard.ok());
  auto bound = ShardWeights::Bind(w, *shard);
  ASSERT_TRUE(bound.ok()) << bound.status();
  const LayerWeights& l = (*bound)->layer(0);

  // Column-parallel: rows of the stored [out, in] tensor, in place.
  const TensorView q = *w.Get("blk.0.attn_q");
  EXPECT_EQ(l.q.data, q.row(32));
  EXPECT_EQ(l.q.ShapeString(), "[32, 64]");
  EXPECT_EQ(l.k.data, w.Get("blk.0.attn_k")->row(16));
  EXPECT_EQ(l.gate.data, w.Get("blk.0.ffn_gate")->row(48));
  EXPECT_EQ((*bound)->token_embd().data, w.Get("token_embd")->row(20));
  EXPECT_EQ((*bound)->lm_head().data, (*bound)->token_embd().data);  // tied

  // Row-parallel on a block boundary: a strided view in place.
  const TensorView o = *w.Get("blk.0.attn_output");
  EXPECT_EQ(l.o.dtype, DType::kQ8_0);
  EXPECT_EQ(l.o.ShapeString(), "[64, 32]");
  EXPECT_EQ(l.o.data, o.row<uint8_t>(0) + RowBytes(DType::kQ8_0, 32));
  EXPECT_EQ(l.o.stride_bytes(), o.row_bytes());

  // Row-parallel through a block: an F32 copy of exactly those columns.
  const TensorView down = *w.Get("blk.0.ffn_down");
  EXPECT_EQ(l.down.dtype, DType::kF32);
  EXPECT_EQ(l.down.ShapeString(), "[64, 48]");
  const std::vector<float> full = Dequantize(down);
  for (int64_t r = 0; r < 64; ++r) {
    EXPECT_EQ(std::memcmp(l.down.row<float>(r), full.data() + r * 96 + 48, 48 * sizeof(float)), 0)
        << "row " << r;
  }

  // Resident bytes: the views' slices, the F32 copy, and the F32 norms.
  const int64_t q8_row64 = RowBytes(DType::kQ8_0, 64);
  const int64_t per_layer = (32 + 16 + 16) * q8_row64          // q, k, v rows
                            + 64 * RowBytes(DType::kQ8_0, 32)  // o columns
                            + 2 * 48 * q8_row64                // gate, up rows
                            + 64 * 48 * 4                      // down copy
                            + 2 * 64 * 4;                      // attn_norm, ffn_norm
  // The embedding rows (shared by the tied head), two layers, output_norm.
  const int64_t expected = 20 * q8_row64 + 2 * per_layer + 64 * 4;
  EXPECT_EQ((*bound)->resident_bytes(), expected);
}

TEST(ShardWeightsTest, WholeModelBindsTheStoredTensors) {
  auto source = OpenWeightSource(WriteModel());
  ASSERT_TRUE(source.ok()) << source.status();
  const WeightSource& w = **source;
  auto shard = MakeShardSpec(w.config(), ParallelLayout{}, 0, 0);
  ASSERT_TRUE(shard.ok());
  auto bound = ShardWeights::Bind(w, *shard);
  ASSERT_TRUE(bound.ok()) << bound.status();
  const LayerWeights& l = (*bound)->layer(0);
  EXPECT_EQ(l.o.data, w.Get("blk.0.attn_output")->data);
  EXPECT_TRUE(l.o.is_packed());
  EXPECT_EQ(l.down.dtype, DType::kQ8_0);
  EXPECT_EQ(l.down.data, w.Get("blk.0.ffn_down")->data);
}

TEST(ShardWeightsTest, PipelineStagesBindOnlyTheirLayersAndEnds) {
  auto source = OpenWeightSource(WriteModel());
  ASSERT_TRUE(source.ok()) << source.status();
  const WeightSource& w = **source;
  auto first = ShardWeights::Bind(w, *MakeShardSpec(w.config(), {1, 2, 1}, 0, 0));
  auto last = ShardWeights::Bind(w, *MakeShardSpec(w.config(), {1, 2, 1}, 0, 1));
  ASSERT_TRUE(first.ok() && last.ok());
  EXPECT_EQ((*first)->layer(0).q.data, w.Get("blk.0.attn_q")->data);
  EXPECT_EQ((*last)->layer(0).q.data, w.Get("blk.1.attn_q")->data);
  EXPECT_EQ((*first)->token_embd().data, w.Get("token_embd")->data);
  EXPECT_EQ((*first)->lm_head().data, nullptr);
  EXPECT_EQ((*last)->token_embd().data, nullptr);
  EXPECT_EQ((*last)->lm_head().data, w.Get("token_embd")->data);
  EXPECT_EQ((*last)->output_norm().data.size(), 64u);
}

}  // namespace
}  // namespace shardserve
