// The decoder-only transformer shared by every supported architecture (Llama/SmolLM2, Mistral,
// Qwen2, Qwen3, Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE): options in ModelConfig select q/k/v
// biases, q/k norms, RoPE pairing and scaling, and a dense or mixture-of-experts MLP.
//
//   ASSIGN_OR_RETURN(auto weights, OpenWeightSource(path));
//   ASSIGN_OR_RETURN(auto decoder, Decoder::Create(weights.get()));
//   RETURN_IF_ERROR(decoder->Forward(ctx, batch, kv_layers, logits));
//
// One replica may be spread over a group of tp_size x pp_size ranks (model/shard_spec.h), each
// with its own Decoder over its ShardSpec, all running Forward on the same batch (SPMD):
//
//   ASSIGN_OR_RETURN(ShardSpec shard, MakeShardSpec(config, layout, tp_rank, pp_rank));
//   ASSIGN_OR_RETURN(auto decoder, Decoder::Create(weights.get(), shard, {tp_comm, pp_comm}));
//
// Tensor parallelism (Megatron): each rank holds whole KV-head groups of q/k/v (column-parallel)
// and the matching columns of o_proj (row-parallel), a slice of the MLP's gate/up rows and down
// columns; the partial outputs of o_proj and of the MLP are summed with one AllReduceSum each.
// The MoE router is replicated; a rank runs its experts (whole under EP, column slices when
// ep_size == 1) and its slice of the shared expert, and one AllReduceSum per layer combines
// them (MoeCombine::kAllReduce, the default). MoeCombine::kAllToAll (EP == TP) moves tokens
// to their experts instead of replicating the expert work's inputs: see MoeCombine. OLMoE's
// q/k norm spans all heads, so its sum of squares is all-reduced. The embedding
// and LM head are vocab-parallel: the embedding is all-reduced (rows outside a rank's slice
// give zeros), the logits slices are all-gathered.
//
// Pipeline parallelism: stage 0 embeds; each stage runs its layers and sends the residual
// stream [num_tokens, hidden] to the next stage's rank with the same tp_rank; the last stage
// computes the logits, and its tp rank 0 sends them [num_outputs, vocab] to the group leader
// (stage 0, tp rank 0), which receives them after sending its own hidden states on.
//
// The decoder reads weights in place from the WeightSource, which must outlive it. It owns
// scratch activations sized to the largest step seen, so Forward is not thread-safe: one step
// at a time.
#ifndef SHARDSERVE_MODEL_DECODER_H_
#define SHARDSERVE_MODEL_DECODER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/communicator.h"
#include "kernels/ops.h"
#include "model/forward_batch.h"
#include "model/layer_weights.h"
#include "model/model_config.h"
#include "model/moe_block.h"
#include "model/shard_spec.h"
#include "model/shard_weights.h"
#include "model/weight_source.h"

namespace shardserve {

// How an expert-parallel MoE layer (ep_size == tp_size > 1) combines the ranks' experts. Both
// give the same result up to the order of float sums.
enum class MoeCombine {
  // Every rank routes every token, runs its experts over the tokens routed to them and its TP
  // slice of the shared expert, and one AllReduceSum [num_tokens, hidden] sums the ranks.
  kAllReduce,
  // Tokens are split into tp_size contiguous slices (EvenSplit); each rank routes its slice and
  // sends every (token, choice) pair's row and expert id to the rank holding that expert: an
  // AllGather of the [tp, tp] pair counts fixes one capacity (the largest count), so
  // AllToAll's blocks are equal, padded to it. The owners run their experts over what they
  // received and return the rows with a second AllToAll; each rank sums its tokens' rows with
  // their router weights (kept at the sender), and an AllGather of the slices, padded to the
  // largest, gives every rank all tokens' output. The shared expert (Qwen2-MoE) stays TP-sliced
  // over all tokens and is summed with an AllReduceSum, as in kAllReduce. Requires
  // ep_size == tp_size; ignored when tp_size == 1.
  kAllToAll,
};

// The communicators of one rank; not owned, they must outlive the decoder.
struct DecoderComms {
  // The tp_size ranks of this pipeline stage, rank == tp_rank. Required when tp_size > 1.
  Communicator* tp = nullptr;
  // The pp_size ranks that share this tp_rank, rank == pp_rank. Required when pp_size > 1.
  Communicator* pp = nullptr;
  // The expert-parallel MoE mode; the same on every rank of a stage.
  MoeCombine moe_combine = MoeCombine::kAllReduce;
};

class Decoder {
 public:
  // The whole model in one process. REQUIRES: weights outlives the decoder.
  static absl::StatusOr<std::unique_ptr<Decoder>> Create(const WeightSource* weights);

  // One rank's shard. Binds and checks the shard's weights; checks that the communicators
  // match the shard's layout. The rank's KV cache holds shard.layers.size() layers of
  // shard.kv_heads.size() heads. INVALID_ARGUMENT unless shard is MakeShardSpec's for its
  // layout and ranks (the vocab-parallel gather relies on EvenSplit's ranges).
  // REQUIRES: weights and comms outlive the decoder.
  static absl::StatusOr<std::unique_ptr<Decoder>> Create(const WeightSource* weights,
                                                         const ShardSpec& shard,
                                                         const DecoderComms& comms);

  const ModelConfig& config() const { return config_; }
  const ShardSpec& shard() const { return shard_; }

  // Runs one step of this rank: embeds batch.token_ids (first stage) or receives the previous
  // stage's hidden states, runs the stage's layers (writing each token's K and V of this rank's
  // KV heads into kv[i] for layer shard().layers.begin + i, at batch.slot_mapping), and produces
  // the logits of batch.logits_rows, logits [num_outputs, vocab_size].
  // `logits` is written on the group leader (group rank 0), and when pp_size == 1 on every rank
  // that passes it; other ranks may pass nullptr.
  // REQUIRES: kv.size() == shard().layers.size(), each view holding shard().kv_heads.size()
  // heads; the cache blocks named by the batch exist; every rank of the group runs the same
  // batch.
  //
  // `after_attention`, when given, runs after each layer's attention has written that layer's
  // K and V (the model's layer index), before its MLP: it may read the layer's KV cache, e.g.
  // to ship it to another group while the rest of the step computes. Its error ends the step.
  using LayerHook = std::function<absl::Status(int64_t layer)>;
  absl::Status Forward(const OpContext& ctx, const ForwardBatch& batch,
                       absl::Span<const KvLayerView> kv, float* logits,
                       const LayerHook& after_attention = nullptr);

  // Bytes of weights this rank reads per forward pass of one token (for bandwidth reports).
  int64_t WeightBytesPerToken() const { return weights_->bytes_per_token(); }
  // Bytes of weights this rank keeps: its views' slices plus owned copies.
  int64_t ResidentWeightBytes() const { return weights_->resident_bytes(); }

 private:
  Decoder(const ModelConfig& config, const ShardSpec& shard, const DecoderComms& comms);

  absl::Status Embed(const OpContext& ctx, const ForwardBatch& batch);
  absl::Status Attention(const OpContext& ctx, const LayerWeights& w, const ForwardBatch& batch,
                         const KvLayerView& kv);
  // RMSNorm of q and k over all heads of all ranks (OLMoE), with this rank's heads in place.
  absl::Status ShardedFullQkNorm(const LayerWeights& w, int64_t num_tokens);
  absl::Status DenseMlp(const OpContext& ctx, const LayerWeights& w, int64_t num_tokens);
  absl::Status Moe(const OpContext& ctx, const LayerWeights& w, int64_t num_tokens);
  // MoeCombine::kAllToAll's layer: hidden += MoE(normed) for every token.
  absl::Status MoeAllToAll(const OpContext& ctx, const LayerWeights& w, int64_t num_tokens);
  // hidden += sum over TP ranks of proj (proj: this rank's partial [num_tokens, hidden]).
  absl::Status ReduceIntoResidual(const OpContext& ctx, int64_t num_tokens);
  // Final norm and LM head over the wanted rows; gathers the vocab slices into `logits`.
  absl::Status Logits(const OpContext& ctx, const ForwardBatch& batch, float* logits);
  void EnsureScratch(int64_t num_tokens);

  const ModelConfig config_;
  const ShardSpec shard_;
  const DecoderComms comms_;
  const int64_t num_q_heads_;   // this rank's query heads
  const int64_t num_kv_heads_;  // this rank's KV heads
  const int64_t q_dim_;         // num_q_heads_ * head_dim
  const int64_t kv_dim_;        // num_kv_heads_ * head_dim
  const int64_t inter_;         // this rank's dense MLP columns
  RopeParams rope_;
  std::unique_ptr<ShardWeights> weights_;
  std::unique_ptr<MoeBlock> moe_;

  // Scratch activations, F32, sized for scratch_tokens_ rows.
  int64_t scratch_tokens_ = 0;
  std::vector<float> hidden_;           // [num_tokens, hidden] the residual stream
  std::vector<float> normed_;           // [num_tokens, hidden]
  std::vector<float> q_;                // [num_tokens, q_dim_]
  std::vector<float> k_;                // [num_tokens, kv_dim_]
  std::vector<float> v_;                // [num_tokens, kv_dim_]
  std::vector<float> attn_out_;         // [num_tokens, q_dim_]
  std::vector<float> proj_;             // [num_tokens, hidden]
  std::vector<float> gate_;             // [num_tokens, inter_] silu(gate) * up
  std::vector<float> sum_sq_;           // [num_tokens, 2] q and k sums of squares (sharded OLMoE)
  std::vector<float> out_rows_;         // [num_outputs, hidden]
  std::vector<float> logits_slice_;     // [num_outputs, vocab_per_rank] (padded, TP > 1)
  std::vector<float> logits_gathered_;  // [tp_size, num_outputs, vocab_per_rank]
  std::vector<float> logits_full_;      // [num_outputs, vocab] on a last stage that sends them
  // MoeCombine::kAllToAll; a "pair" is one (token, choice) of this rank's token slice, `cap`
  // the capacity per pair of ranks and `per_rank` the largest slice's token count.
  std::vector<int32_t> a2a_ids_;         // [per_rank, k] expert of each pair
  std::vector<float> a2a_weights_;       // [per_rank, k] router weight of each pair
  std::vector<int32_t> a2a_counts_;      // [tp, tp] pairs rank i sends rank j, at i * tp + j
  std::vector<int32_t> a2a_pair_token_;  // [tp, cap] token (in the slice) of each sent pair
  std::vector<float> a2a_pair_weight_;   // [tp, cap] its router weight
  std::vector<float> a2a_send_;          // [tp, cap, hidden + 1] rows, expert id in the last
  std::vector<float> a2a_recv_;          // [tp, cap, hidden + 1] the pairs sent to this rank
  std::vector<int32_t> a2a_recv_ids_;    // [tp * cap] their experts, -1 for padding
  std::vector<float> a2a_ones_;          // [tp * cap] 1.0: the owner returns unweighted rows
  std::vector<float> a2a_expert_out_;    // [tp, cap, hidden] expert outputs to return
  std::vector<float> a2a_returned_;      // [tp, cap, hidden] this rank's pairs' outputs
  std::vector<float> a2a_slice_out_;     // [per_rank, hidden] MoE output of this rank's slice
  std::vector<float> a2a_gathered_;      // [tp, per_rank, hidden]
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_DECODER_H_
