// The weights one rank binds for its ShardSpec: its stage's layers, and in each its
// tensor-parallel slice, as views into a WeightSource (zero-copy where possible).
//
// Megatron slicing of a linear weight stored [out, in]:
//  - column-parallel (q/k/v, MLP gate/up, expert gate/up, embedding and LM head rows): a
//    contiguous range of rows, a plain sub-view;
//  - row-parallel (o_proj, MLP down, expert down): a range of columns. When the range starts and
//    ends on a quantization block boundary the view keeps the full row as its row_stride_bytes;
//    otherwise the slice is dequantized into an owned F32 copy.
// Norm weights and biases are small and copied to F32 (sliced where they follow heads).
//
// A whole-model shard (ParallelLayout{} rank 0) binds exactly the tensors of the unsharded
// decoder. Lifetime: the WeightSource must outlive this object.
#ifndef SHARDSERVE_MODEL_SHARD_WEIGHTS_H_
#define SHARDSERVE_MODEL_SHARD_WEIGHTS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"
#include "model/layer_weights.h"
#include "model/shard_spec.h"
#include "model/weight_source.h"

namespace shardserve {

class ShardWeights {
 public:
  // Binds and shape-checks every tensor the shard needs.
  static absl::StatusOr<std::unique_ptr<ShardWeights>> Bind(const WeightSource& weights,
                                                            const ShardSpec& shard);

  // [shard.vocab.size(), hidden] rows of the embedding; empty (data == nullptr) unless this is
  // the first stage.
  const TensorView& token_embd() const { return token_embd_; }
  // [shard.vocab.size(), hidden] rows of the LM head; empty unless this is the last stage.
  const TensorView& lm_head() const { return lm_head_; }
  const OwnedVector& output_norm() const { return output_norm_; }  // [hidden]
  // Layer shard.layers.begin + i, i < shard.layers.size(). Under expert parallelism, experts
  // outside shard.experts have empty views.
  const LayerWeights& layer(int64_t i) const { return layers_[i]; }

  // Bytes this rank keeps for weights: the slices its views cover plus its owned copies.
  int64_t resident_bytes() const { return resident_bytes_; }
  // Weight bytes read per forward pass of one token (for bandwidth reports).
  int64_t bytes_per_token() const { return bytes_per_token_; }

 private:
  ShardWeights(const ModelConfig& config, const ShardSpec& shard)
      : config_(config), shard_(shard) {}

  absl::Status BindAll(const WeightSource& w);
  absl::Status BindLayer(const WeightSource& w, int64_t layer, LayerWeights& lw);
  absl::Status BindExperts(const WeightSource& w, int64_t layer, LayerWeights& lw);
  // The rows [range) of `t` (a view). REQUIRES: range inside t's rows.
  TensorView Rows(const TensorView& t, const IndexRange& range);
  // The columns [range) of a 2-D `t`: a strided view, or an owned F32 copy.
  absl::StatusOr<TensorView> Columns(const TensorView& t, const IndexRange& range);
  // A norm or bias, converted to F32, elements [range).
  absl::StatusOr<OwnedVector> Vector(const WeightSource& w, const std::string& name, int64_t n,
                                     const IndexRange& range);
  void CountView(const TensorView& t) { resident_bytes_ += t.nbytes(); }

  const ModelConfig config_;
  const ShardSpec shard_;
  TensorView token_embd_;
  TensorView lm_head_;
  OwnedVector output_norm_;
  std::vector<LayerWeights> layers_;
  std::vector<std::vector<float>> owned_;  // dequantized column slices
  int64_t resident_bytes_ = 0;
  int64_t bytes_per_token_ = 0;
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_SHARD_WEIGHTS_H_
