// What a decoder-only model is, independent of the file format it came from.
//
// Filled from a Hugging Face config.json (ParseHfConfig) or from GGUF metadata
// (ConfigFromGguf); consumed by the decoder, the placement planner and the CLI.
#ifndef SHARDSERVE_MODEL_MODEL_CONFIG_H_
#define SHARDSERVE_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

namespace shardserve {

enum class Architecture {
  kLlama,     // Llama, SmolLM2 (HF "LlamaForCausalLM", GGUF "llama")
  kMistral,   // HF "MistralForCausalLM"; GGUF files call it "llama"
  kQwen2,     // HF "Qwen2ForCausalLM", GGUF "qwen2": q/k/v biases
  kQwen3,     // HF "Qwen3ForCausalLM", GGUF "qwen3": per-head RMSNorm on q and k
  kMixtral,   // HF "MixtralForCausalLM"; GGUF "llama" with expert_count > 0
  kQwen2Moe,  // HF "Qwen2MoeForCausalLM", GGUF "qwen2moe": shared expert with sigmoid gate
  kQwen3Moe,  // HF "Qwen3MoeForCausalLM", GGUF "qwen3moe"
  kOlmoe,     // HF "OlmoeForCausalLM", GGUF "olmoe": RMSNorm over all of q and all of k
};

// How RoPE pairs the dimensions of a head.
enum class RopeStyle {
  kInterleaved,  // pairs (2i, 2i+1): llama.cpp's "normal" mode, used with GGUF llama weights
  kNeox,         // pairs (i, i + head_dim/2): HF rotate_half, GGUF qwen2/qwen3/olmoe
};

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;          // llama3
  float high_freq_factor = 4.0f;         // llama3
  int64_t original_max_position = 8192;  // llama3
};

enum class QkNorm {
  kNone,
  kPerHead,  // Qwen3, Qwen3-MoE: RMSNorm of each head's q and k, weight [head_dim]
  kFull,     // OLMoE: RMSNorm of the whole q [num_heads*head_dim] and k [num_kv_heads*head_dim]
};

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  std::string arch_name;  // as written in the file, for messages

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // dense MLP width
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;  // the context window
  float rms_norm_eps = 1e-5f;

  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::kNeox;
  RopeScaling rope_scaling;

  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry biases (Qwen2)
  QkNorm qk_norm = QkNorm::kNone;

  // Mixture of experts; num_experts == 0 for dense models.
  int64_t num_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;            // width of each routed expert
  int64_t shared_expert_intermediate_size = 0;  // Qwen2-MoE; 0 when there is none
  bool norm_topk_prob = false;                  // renormalise the top-k router weights

  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;

  bool is_moe() const { return num_experts > 0; }
  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_MODEL_CONFIG_H_
