#include "model/gguf_config.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/gguf_builder.h"

namespace shardserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Parses the builder's bytes; keeps them alive beside the file.
struct Parsed {
  std::vector<uint8_t> bytes;
  std::unique_ptr<GgufFile> file;
};

Parsed Parse(const GgufBuilder& b) {
  Parsed p;
  p.bytes = b.Build();
  auto f = GgufFile::Parse("tiny.gguf", absl::MakeConstSpan(p.bytes));
  EXPECT_TRUE(f.ok()) << f.status();
  if (f.ok()) p.file = std::move(*f);
  return p;
}

// Metadata in the shape llama.cpp writes for a small dense llama model.
GgufBuilder TinyLlama() {
  GgufBuilder b;
  b.AddString("general.architecture", "llama")
      .AddUint32("llama.block_count", 2)
      .AddUint32("llama.context_length", 256)
      .AddUint32("llama.embedding_length", 64)
      .AddUint32("llama.feed_forward_length", 128)
      .AddUint32("llama.attention.head_count", 4)
      .AddUint32("llama.attention.head_count_kv", 2)
      .AddFloat32("llama.rope.freq_base", 50000.0f)
      .AddFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
      .AddUint32("llama.vocab_size", 100)
      .AddUint32("tokenizer.ggml.bos_token_id", 1)
      .AddUint32("tokenizer.ggml.eos_token_id", 2);
  return b;
}

TEST(GgufConfigTest, ReadsDenseLlama) {
  Parsed p = Parse(TinyLlama());
  ASSERT_NE(p.file, nullptr);
  absl::StatusOr<ModelConfig> c = ConfigFromGguf(*p.file);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kLlama);
  EXPECT_EQ(c->arch_name, "llama");
  EXPECT_EQ(c->num_layers, 2);
  EXPECT_EQ(c->max_position_embeddings, 256);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->intermediate_size, 128);
  EXPECT_EQ(c->num_heads, 4);
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_FLOAT_EQ(c->rope_theta, 50000.0f);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_EQ(c->vocab_size, 100);
  EXPECT_EQ(c->rope_style, RopeStyle::kInterleaved);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_TRUE(c->tie_word_embeddings);  // no output.weight
  EXPECT_FALSE(c->attention_bias);
  EXPECT_FALSE(c->is_moe());
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(2));
}

TEST(GgufConfigTest, ReadsOutputTensorVocabFromTokensAndScaling) {
  GgufBuilder b;
  b.AddString("general.architecture", "llama")
      .AddUint32("llama.block_count", 1)
      .AddUint32("llama.context_length", 64)
      .AddUint32("llama.embedding_length", 32)
      .AddUint32("llama.feed_forward_length", 64)
      .AddUint32("llama.attention.head_count", 2)
      .AddFloat32("llama.attention.layer_norm_rms_epsilon", 1e-6f)
      .AddString("llama.rope.scaling.type", "linear")
      .AddFloat32("llama.rope.scaling.factor", 4.0f)
      .AddStringArray("tokenizer.ggml.tokens", {"a", "b", "c", "d", "e"})
      .AddUint32("tokenizer.ggml.eos_token_id", 3)
      .AddUint32("tokenizer.ggml.eot_token_id", 4);
  b.AddTensor("output.weight", DType::kF32, {5, 32});
  Parsed p = Parse(b);
  ASSERT_NE(p.file, nullptr);
  absl::StatusOr<ModelConfig> c = ConfigFromGguf(*p.file);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->vocab_size, 5);
  EXPECT_EQ(c->num_kv_heads, 2);  // defaults to head_count
  EXPECT_FLOAT_EQ(c->rope_theta, 10000.0f);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_FLOAT_EQ(c->rope_scaling.factor, 4.0f);
  EXPECT_EQ(c->bos_token_id, -1);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(3, 4));
}

TEST(GgufConfigTest, ReadsMixtralAsLlamaWithExperts) {
  GgufBuilder b = TinyLlama();
  b.AddUint32("llama.expert_count", 8).AddUint32("llama.expert_used_count", 2);
  Parsed p = Parse(b);
  ASSERT_NE(p.file, nullptr);
  absl::StatusOr<ModelConfig> c = ConfigFromGguf(*p.file);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kMixtral);
  EXPECT_EQ(c->num_experts, 8);
  EXPECT_EQ(c->num_experts_per_tok, 2);
  EXPECT_EQ(c->moe_intermediate_size, 128);
  EXPECT_TRUE(c->norm_topk_prob);
  EXPECT_EQ(c->rope_style, RopeStyle::kInterleaved);
}

GgufBuilder TinyQwen(const std::string& arch) {
  GgufBuilder b;
  b.AddString("general.architecture", arch)
      .AddUint32(arch + ".block_count", 3)
      .AddUint32(arch + ".context_length", 512)
      .AddUint32(arch + ".embedding_length", 64)
      .AddUint32(arch + ".feed_forward_length", 96)
      .AddUint32(arch + ".attention.head_count", 4)
      .AddUint32(arch + ".attention.head_count_kv", 1)
      .AddFloat32(arch + ".rope.freq_base", 1e6f)
      .AddFloat32(arch + ".attention.layer_norm_rms_epsilon", 1e-6f)
      .AddStringArray("tokenizer.ggml.tokens", std::vector<std::string>(50, "t"));
  return b;
}

TEST(GgufConfigTest, ReadsQwen2AndQwen3) {
  Parsed q2 = Parse(TinyQwen("qwen2"));
  ASSERT_NE(q2.file, nullptr);
  absl::StatusOr<ModelConfig> c = ConfigFromGguf(*q2.file);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kQwen2);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_EQ(c->rope_style, RopeStyle::kNeox);
  EXPECT_EQ(c->qk_norm, QkNorm::kNone);
  EXPECT_EQ(c->vocab_size, 50);

  GgufBuilder b3 = TinyQwen("qwen3");
  b3.AddUint32("qwen3.attention.key_length", 32).AddUint32("qwen3.attention.value_length", 32);
  Parsed q3 = Parse(b3);
  ASSERT_NE(q3.file, nullptr);
  c = ConfigFromGguf(*q3.file);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kQwen3);
  EXPECT_EQ(c->head_dim, 32);  // key_length, not 64 / 4
  EXPECT_EQ(c->q_dim(), 128);
  EXPECT_EQ(c->qk_norm, QkNorm::kPerHead);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->rope_style, RopeStyle::kNeox);
}

TEST(GgufConfigTest, ReadsMoeArchitectures) {
  GgufBuilder q2 = TinyQwen("qwen2moe");
  q2.AddUint32("qwen2moe.expert_count", 6)
      .AddUint32("qwen2moe.expert_used_count", 2)
      .AddUint32("qwen2moe.expert_feed_forward_length", 32)
      .AddUint32("qwen2moe.expert_shared_feed_forward_length", 80);
  Parsed p = Parse(q2);
  ASSERT_NE(p.file, nullptr);
  absl::StatusOr<ModelConfig> c = ConfigFromGguf(*p.file);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kQwen2Moe);
  EXPECT_EQ(c->num_experts, 6);
  EXPECT_EQ(c->num_experts_per_tok, 2);
  EXPECT_EQ(c->moe_intermediate_size, 32);
  EXPECT_EQ(c->shared_expert_intermediate_size, 80);
  EXPECT_FALSE(c->norm_topk_prob);
  EXPECT_TRUE(c->attention_bias);

  GgufBuilder q3 = TinyQwen("qwen3moe");
  q3.AddUint32("qwen3moe.expert_count", 4)
      .AddUint32("qwen3moe.expert_used_count", 2)
      .AddUint32("qwen3moe.expert_feed_forward_length", 48);
  p = Parse(q3);
  ASSERT_NE(p.file, nullptr);
  c = ConfigFromGguf(*p.file);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kQwen3Moe);
  EXPECT_TRUE(c->norm_topk_prob);
  EXPECT_EQ(c->qk_norm, QkNorm::kPerHead);
  EXPECT_EQ(c->moe_intermediate_size, 48);

  q3.AddBool("qwen3moe.expert_weights_norm", false);
  p = Parse(q3);
  c = ConfigFromGguf(*p.file);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->norm_topk_prob);

  GgufBuilder ol = TinyQwen("olmoe");
  ol.AddUint32("olmoe.expert_count", 8).AddUint32("olmoe.expert_used_count", 2);
  p = Parse(ol);
  ASSERT_NE(p.file, nullptr);
  c = ConfigFromGguf(*p.file);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kOlmoe);
  EXPECT_EQ(c->qk_norm, QkNorm::kFull);
  EXPECT_EQ(c->moe_intermediate_size, 96);  // feed_forward_length
  EXPECT_FALSE(c->norm_topk_prob);
  EXPECT_EQ(c->rope_style, RopeStyle::kNeox);
}

TEST(GgufConfigTest, AcceptsUniformPerLayerArrays) {
  GgufBuilder fresh;
  fresh.AddString("general.architecture", "qwen2")
      .AddUint32("qwen2.block_count", 3)
      .AddUint32("qwen2.context_length", 512)
      .AddUint32("qwen2.embedding_length", 64)
      .AddInt32Array("qwen2.feed_forward_length", {96, 96, 96})
      .AddUint32("qwen2.attention.head_count", 4)
      .AddFloat32("qwen2.attention.layer_norm_rms_epsilon", 1e-6f)
      .AddUint32("qwen2.vocab_size", 10);
  Parsed p = Parse(fresh);
  ASSERT_NE(p.file, nullptr);
  absl::StatusOr<ModelConfig> c = ConfigFromGguf(*p.file);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->intermediate_size, 96);

  fresh.AddInt32Array("qwen2.attention.head_count_kv", {1, 2, 1});
  p = Parse(fresh);
  c = ConfigFromGguf(*p.file);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("differs between layers"));
}

void ExpectError(const GgufBuilder& b, const std::string& part) {
  Parsed p = Parse(b);
  ASSERT_NE(p.file, nullptr);
  absl::StatusOr<ModelConfig> c = ConfigFromGguf(*p.file);
  ASSERT_FALSE(c.ok()) << "expected an error containing " << part;
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("tiny.gguf"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(part));
}

TEST(GgufConfigTest, RejectsBadMetadata) {
  ExpectError(GgufBuilder(), "general.architecture");
  ExpectError(GgufBuilder().AddString("general.architecture", "gpt2"),
              "unsupported architecture gpt2 in tiny.gguf; supported: llama");
  ExpectError(GgufBuilder().AddString("general.architecture", "llama"), "llama.block_count");
  ExpectError(TinyLlama().AddString("llama.rope.scaling.type", "yarn"), "'yarn'");
  ExpectError(TinyLlama().AddUint32("llama.rope.dimension_count", 8), "rope.dimension_count 8");
  ExpectError(TinyQwen("qwen2moe"), "num_experts is 0");
  ExpectError(
      TinyQwen("qwen2").AddUint32("qwen2.expert_count", 4).AddUint32("qwen2.expert_used_count", 2),
      "dense");
  GgufBuilder no_eps;
  no_eps.AddString("general.architecture", "qwen3")
      .AddUint32("qwen3.block_count", 1)
      .AddUint32("qwen3.context_length", 8)
      .AddUint32("qwen3.embedding_length", 8)
      .AddUint32("qwen3.attention.head_count", 3);
  ExpectError(no_eps, "embedding_length 8 is not a multiple of head_count 3");
}

// The default model, when the environment provides it.
TEST(GgufConfigTest, ReadsTheDefaultModel) {
  const char* path = std::getenv("SHARDSERVE_TEST_GGUF");
  if (path == nullptr)
    FAIL() << "SHARDSERVE_TEST_GGUF must name the default model (tools/test.sh sets it)";
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  absl::StatusOr<ModelConfig> c = ConfigFromGguf(**f);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kLlama);
  EXPECT_EQ(c->num_layers, 30);
  EXPECT_EQ(c->hidden_size, 576);
  EXPECT_EQ(c->intermediate_size, 1536);
  EXPECT_EQ(c->num_heads, 9);
  EXPECT_EQ(c->num_kv_heads, 3);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->vocab_size, 49152);
  EXPECT_EQ(c->max_position_embeddings, 8192);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->rope_style, RopeStyle::kInterleaved);
  EXPECT_FLOAT_EQ(c->rope_theta, 100000.0f);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(2));
}

}  // namespace
}  // namespace shardserve
