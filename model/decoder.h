// The decoder-only transformer shared by every supported architecture (Llama/SmolLM2, Mistral,
// Qwen2, Qwen3, Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE): options in ModelConfig select q/k/v
// biases, q/k norms, RoPE pairing and scaling, and a dense or mixture-of-experts MLP.
//
//   ASSIGN_OR_RETURN(auto weights, OpenWeightSource(path));
//   ASSIGN_OR_RETURN(auto decoder, Decoder::Create(weights.get(), {}));
//   RETURN_IF_ERROR(decoder->Forward(ctx, batch, kv_layers, logits));
//
// The decoder reads weights in place from the WeightSource, which must outlive it. It owns
// scratch activations sized to the largest step seen, so Forward is not thread-safe: one step
// at a time.
#ifndef SHARDSERVE_MODEL_DECODER_H_
#define SHARDSERVE_MODEL_DECODER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/ops.h"
#include "model/forward_batch.h"
#include "model/layer_weights.h"
#include "model/model_config.h"
#include "model/moe_block.h"
#include "model/weight_source.h"

namespace shardserve {

class Decoder {
 public:
  // Binds every layer's weights and checks their shapes. REQUIRES: weights outlives the decoder.
  static absl::StatusOr<std::unique_ptr<Decoder>> Create(const WeightSource* weights);

  const ModelConfig& config() const { return config_; }

  // Runs one step: embeds batch.token_ids, runs every layer (writing each token's K and V into
  // kv[layer] at batch.slot_mapping), and writes the logits of batch.logits_rows into
  // logits [num_outputs, vocab_size].
  // REQUIRES: kv.size() == num_layers; the cache blocks named by the batch exist.
  absl::Status Forward(const OpContext& ctx, const ForwardBatch& batch,
                       absl::Span<const KvLayerView> kv, float* logits);

  // Bytes of weights this decoder reads per forward pass of one token (for bandwidth reports).
  int64_t WeightBytesPerToken() const { return weight_bytes_per_token_; }

 private:
  explicit Decoder(const ModelConfig& config) : config_(config) {}

  absl::Status BindWeights(const WeightSource& weights);
  absl::Status Attention(const OpContext& ctx, const LayerWeights& w, const ForwardBatch& batch,
                         const KvLayerView& kv);
  absl::Status DenseMlp(const OpContext& ctx, const LayerWeights& w, int64_t num_tokens);
  void EnsureScratch(int64_t num_tokens);

  ModelConfig config_;
  RopeParams rope_;
  TensorView token_embd_;  // [vocab, hidden]
  TensorView lm_head_;     // [vocab, hidden] (token_embd_ when tied)
  OwnedVector output_norm_;
  std::vector<LayerWeights> layers_;
  std::unique_ptr<MoeBlock> moe_;
  int64_t weight_bytes_per_token_ = 0;

  // Scratch activations, F32, sized for scratch_tokens_ rows.
  int64_t scratch_tokens_ = 0;
  std::vector<float> hidden_;    // [num_tokens, hidden] the residual stream
  std::vector<float> normed_;    // [num_tokens, hidden]
  std::vector<float> q_;         // [num_tokens, q_dim]
  std::vector<float> k_;         // [num_tokens, kv_dim]
  std::vector<float> v_;         // [num_tokens, kv_dim]
  std::vector<float> attn_out_;  // [num_tokens, q_dim]
  std::vector<float> proj_;      // [num_tokens, hidden]
  std::vector<float> gate_;      // [num_tokens, inter]
  std::vector<float> up_;        // [num_tokens, inter]
  std::vector<float> out_rows_;  // [num_outputs, hidden]
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_DECODER_H_
