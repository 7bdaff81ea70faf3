#include "model/hf_config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The config.json of SmolLM2-135M-Instruct, as published.
constexpr char kSmolLm2[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 576,
  "initializer_range": 0.041666666666666664, "intermediate_size": 1536,
  "is_llama_config": true, "max_position_embeddings": 8192, "model_type": "llama",
  "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
  "pad_token_id": 2, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_interleaved": false,
  "rope_scaling": null, "rope_theta": 100000, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "transformers_version": "4.42.3", "use_cache": true,
  "vocab_size": 49152})";

// Replaces the first occurrence of `from` in `text`.
std::string Edit(std::string text, const std::string& from, const std::string& to) {
  const size_t pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

void ExpectError(const std::string& json, const std::string& part) {
  absl::StatusOr<ModelConfig> c = ParseHfConfig(json, "cfg/config.json");
  ASSERT_FALSE(c.ok()) << "expected an error containing " << part;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("cfg/config.json"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(part));
}

TEST(HfConfigTest, ParsesSmolLm2) {
  absl::StatusOr<ModelConfig> c = ParseHfConfig(kSmolLm2, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kLlama);
  EXPECT_EQ(c->arch_name, "LlamaForCausalLM");
  EXPECT_EQ(c->vocab_size, 49152);
  EXPECT_EQ(c->hidden_size, 576);
  EXPECT_EQ(c->intermediate_size, 1536);
  EXPECT_EQ(c->num_layers, 30);
  EXPECT_EQ(c->num_heads, 9);
  EXPECT_EQ(c->num_kv_heads, 3);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->max_position_embeddings, 8192);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c->rope_theta, 100000.0f);
  EXPECT_EQ(c->rope_style, RopeStyle::kNeox);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->qk_norm, QkNorm::kNone);
  EXPECT_FALSE(c->is_moe());
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(2));
}

TEST(HfConfigTest, ParsesLlama3RopeScalingAndEosList) {
  const std::string json = R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}})";
  absl::StatusOr<ModelConfig> c = ParseHfConfig(json, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_FLOAT_EQ(c->rope_scaling.factor, 8.0f);
  EXPECT_FLOAT_EQ(c->rope_scaling.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c->rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c->rope_scaling.original_max_position, 8192);
  EXPECT_FLOAT_EQ(c->rope_theta, 500000.0f);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(128001, 128008, 128009));
}

TEST(HfConfigTest, ParsesLinearScalingAndTransformers5RopeParameters) {
  std::string json = Edit(kSmolLm2, R"("rope_scaling": null, "rope_theta": 100000,)",
                          R"("rope_scaling": {"type": "linear", "factor": 2.0},)");
  absl::StatusOr<ModelConfig> c = ParseHfConfig(json, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_FLOAT_EQ(c->rope_scaling.factor, 2.0f);
  EXPECT_FLOAT_EQ(c->rope_theta, 10000.0f);  // Llama's default

  json = Edit(kSmolLm2, R"("rope_scaling": null, "rope_theta": 100000,)",
              R"("rope_parameters": {"rope_type": "default", "rope_theta": 250000.0},)");
  c = ParseHfConfig(json, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FLOAT_EQ(c->rope_theta, 250000.0f);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
}

TEST(HfConfigTest, MistralSlidingWindowCapsTheContext) {
  const std::string json = R"({
    "architectures": ["MistralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "vocab_size": 32000, "max_position_embeddings": 32768, "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0, "sliding_window": 4096, "bos_token_id": 1, "eos_token_id": 2})";
  absl::StatusOr<ModelConfig> c = ParseHfConfig(json, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kMistral);
  EXPECT_EQ(c->max_position_embeddings, 4096);

  c = ParseHfConfig(Edit(json, R"("sliding_window": 4096)", R"("sliding_window": null)"), "c");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->max_position_embeddings, 32768);
}

TEST(HfConfigTest, ParsesQwen2WithBiasesAndUnusedWindow) {
  const std::string json = R"({
    "architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "intermediate_size": 4864,
    "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
    "vocab_size": 151936, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 4096, "use_sliding_window": false,
    "tie_word_embeddings": true, "bos_token_id": 151643, "eos_token_id": 151643})";
  absl::StatusOr<ModelConfig> c = ParseHfConfig(json, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kQwen2);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->max_position_embeddings, 32768);  // window not in use
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->qk_norm, QkNorm::kNone);
}

TEST(HfConfigTest, ParsesQwen3WithExplicitHeadDim) {
  const std::string json = R"({
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "head_dim": 128,
    "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
    "num_attention_heads": 16, "num_key_value_heads": 8, "vocab_size": 151936,
    "max_position_embeddings": 40960, "rms_norm_eps": 1e-06, "rope_theta": 1000000,
    "rope_scaling": null, "sliding_window": null, "use_sliding_window": false,
    "tie_word_embeddings": true, "bos_token_id": 151643, "eos_token_id": 151645})";
  absl::StatusOr<ModelConfig> c = ParseHfConfig(json, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kQwen3);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->q_dim(), 2048);
  EXPECT_EQ(c->kv_dim(), 1024);
  EXPECT_EQ(c->qk_norm, QkNorm::kPerHead);
  EXPECT_FALSE(c->attention_bias);
}

TEST(HfConfigTest, ParsesMixtral) {
  const std::string json = R"({
    "architectures": ["MixtralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "num_local_experts": 8, "num_experts_per_tok": 2, "vocab_size": 32000,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "sliding_window": null,
    "bos_token_id": 1, "eos_token_id": 2})";
  absl::StatusOr<ModelConfig> c = ParseHfConfig(json, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kMixtral);
  EXPECT_TRUE(c->is_moe());
  EXPECT_EQ(c->num_experts, 8);
  EXPECT_EQ(c->num_experts_per_tok, 2);
  EXPECT_EQ(c->moe_intermediate_size, 14336);
  EXPECT_TRUE(c->norm_topk_prob);
  EXPECT_EQ(c->shared_expert_intermediate_size, 0);
  EXPECT_FLOAT_EQ(c->rope_theta, 1e6f);  // Mixtral's default
}

TEST(HfConfigTest, ParsesQwen2Moe) {
  const std::string json = R"({
    "architectures": ["Qwen2MoeForCausalLM"], "hidden_size": 2048, "intermediate_size": 5632,
    "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
    "num_experts": 60, "num_experts_per_tok": 4, "norm_topk_prob": false,
    "decoder_sparse_step": 1, "mlp_only_layers": [], "num_hidden_layers": 24,
    "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 151936,
    "max_position_embeddings": 8192, "rope_theta": 1000000.0, "use_sliding_window": false,
    "sliding_window": 32768, "bos_token_id": 151643, "eos_token_id": 151643})";
  absl::StatusOr<ModelConfig> c = ParseHfConfig(json, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kQwen2Moe);
  EXPECT_EQ(c->num_experts, 60);
  EXPECT_EQ(c->num_experts_per_tok, 4);
  EXPECT_EQ(c->moe_intermediate_size, 1408);
  EXPECT_EQ(c->shared_expert_intermediate_size, 5632);
  EXPECT_FALSE(c->norm_topk_prob);
  EXPECT_TRUE(c->attention_bias);

  ExpectError(Edit(json, R"("mlp_only_layers": [])", R"("mlp_only_layers": [0])"),
              "mixing dense and MoE");
  ExpectError(Edit(json, R"("decoder_sparse_step": 1)", R"("decoder_sparse_step": 2)"),
              "mixing dense and MoE");
  ExpectError(Edit(json, R"("shared_expert_intermediate_size": 5632,)", ""),
              "shared_expert_intermediate_size");
}

TEST(HfConfigTest, ParsesQwen3Moe) {
  const std::string json = R"({
    "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": false, "head_dim": 128,
    "hidden_size": 2048, "intermediate_size": 6144, "moe_intermediate_size": 768,
    "num_experts": 128, "num_experts_per_tok": 8, "norm_topk_prob": true,
    "decoder_sparse_step": 1, "mlp_only_layers": [], "num_hidden_layers": 48,
    "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 151936,
    "max_position_embeddings": 40960, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "rope_scaling": null, "sliding_window": null, "use_sliding_window": false,
    "tie_word_embeddings": false, "bos_token_id": 151643, "eos_token_id": 151645})";
  absl::StatusOr<ModelConfig> c = ParseHfConfig(json, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kQwen3Moe);
  EXPECT_EQ(c->qk_norm, QkNorm::kPerHead);
  EXPECT_TRUE(c->norm_topk_prob);
  EXPECT_EQ(c->moe_intermediate_size, 768);
  EXPECT_EQ(c->num_experts, 128);
  EXPECT_EQ(c->q_dim(), 4096);

  c = ParseHfConfig(Edit(json, R"("norm_topk_prob": true,)", ""), "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->norm_topk_prob);  // the transformers default
}

TEST(HfConfigTest, ParsesOlmoe) {
  const std::string json = R"({
    "architectures": ["OlmoeForCausalLM"], "hidden_size": 2048, "intermediate_size": 1024,
    "num_experts": 64, "num_experts_per_tok": 8, "norm_topk_prob": false, "clip_qkv": null,
    "num_hidden_layers": 16, "num_attention_heads": 16, "num_key_value_heads": 16,
    "vocab_size": 50304, "max_position_embeddings": 4096, "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0, "bos_token_id": null, "eos_token_id": 50279, "pad_token_id": 1})";
  absl::StatusOr<ModelConfig> c = ParseHfConfig(json, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kOlmoe);
  EXPECT_EQ(c->qk_norm, QkNorm::kFull);
  EXPECT_EQ(c->moe_intermediate_size, 1024);  // OLMoE experts use intermediate_size
  EXPECT_FALSE(c->norm_topk_prob);
  EXPECT_EQ(c->bos_token_id, -1);
  EXPECT_THAT(c->eos_token_ids, ElementsAre(50279));
  ExpectError(Edit(json, R"("clip_qkv": null)", R"("clip_qkv": 8.0)"), "clip_qkv");
}

TEST(HfConfigTest, FallsBackToModelType) {
  std::string json = Edit(kSmolLm2, R"("architectures": ["LlamaForCausalLM"],)", "");
  absl::StatusOr<ModelConfig> c = ParseHfConfig(json, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kLlama);
}

TEST(HfConfigTest, RejectsUnsupportedAndInconsistentConfigs) {
  ExpectError(Edit(kSmolLm2, "LlamaForCausalLM", "GPT2LMHeadModel"),
              "unsupported architecture GPT2LMHeadModel in");
  ExpectError(Edit(kSmolLm2, "LlamaForCausalLM", "GPT2LMHeadModel"), "supported: LlamaForCausalLM");
  ExpectError("{not json", "not valid JSON");
  ExpectError("[1]", "not a JSON object");
  ExpectError(Edit(kSmolLm2, R"("num_key_value_heads": 3)", R"("num_key_value_heads": 2)"),
              "not a multiple of num_key_value_heads 2");
  ExpectError(Edit(kSmolLm2, R"("num_attention_heads": 9)", R"("num_attention_heads": 7)"),
              "hidden_size 576 is not a multiple of num_attention_heads 7");
  ExpectError(Edit(kSmolLm2, R"("num_hidden_layers": 30)", R"("num_hidden_layers": 0)"),
              "num_hidden_layers is 0");
  ExpectError(Edit(kSmolLm2, R"("vocab_size": 49152)", R"("vocab_size": 1000000000000)"),
              "vocab_size is 1000000000000");
  ExpectError(Edit(kSmolLm2, R"("vocab_size": 49152)", R"("vocab_size": "big")"),
              "'vocab_size' is not an integer");
  ExpectError(Edit(kSmolLm2, R"("hidden_size": 576,)", ""), "missing 'hidden_size'");
  ExpectError(Edit(kSmolLm2, R"("hidden_act": "silu")", R"("hidden_act": "gelu")"),
              "hidden_act 'gelu'");
  ExpectError(Edit(kSmolLm2, R"("rope_scaling": null)",
                   R"("rope_scaling": {"rope_type": "yarn", "factor": 4.0})"),
              "unsupported rope_scaling type 'yarn'");
  ExpectError(Edit(kSmolLm2, R"("rope_scaling": null)", R"("rope_scaling": {"type": "linear"})"),
              "rope_scaling: missing 'factor'");
  ExpectError(Edit(kSmolLm2, R"("eos_token_id": 2)", R"("eos_token_id": 49152)"),
              "eos_token_id 49152 is outside the vocabulary");
  ExpectError(Edit(kSmolLm2, R"("eos_token_id": 2)", R"("eos_token_id": [2, "x"])"),
              "'eos_token_id' is not an integer");
  ExpectError(Edit(kSmolLm2, R"("rope_theta": 100000)", R"("rope_theta": 1e300)"),
              "rope_theta inf is not a positive finite number");
  ExpectError(Edit(kSmolLm2, R"("rms_norm_eps": 1e-05)", R"("rms_norm_eps": -1e300)"),
              "rms_norm_eps -inf is not in (0, 1)");
  ExpectError(Edit(kSmolLm2, R"("tie_word_embeddings": true)", R"("tie_word_embeddings": 1)"),
              "'tie_word_embeddings' is not true or false");
}

}  // namespace
}  // namespace shardserve
