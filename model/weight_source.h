// Model weights by canonical name, whatever file format holds them.
//
// The decoder asks for weights by one set of names and gets CPU TensorViews straight out of the
// memory-mapped files, in the file's dtype (F32/F16/BF16, or a GGUF block-quantized type).
// OpenWeightSource() takes a `.gguf` file or a Hugging Face directory (config.json plus
// model.safetensors or a sharded index), reads the ModelConfig, and checks that every tensor
// the config needs is present with the right shape and a supported dtype before returning.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<WeightSource> weights, OpenWeightSource(path));
//   const ModelConfig& config = weights->config();
//   ASSIGN_OR_RETURN(TensorView wq, weights->Get("blk.0.attn_q"));  // [q_dim, hidden]
//
// Canonical names are GGUF's without the ".weight" suffix; shapes are outermost first,
// linear weights [out_features, in_features]:
//   token_embd [vocab, hidden]            output_norm [hidden]
//   output [vocab, hidden]                (absent when tie_word_embeddings)
//   rope_freqs [head_dim / 2]             (optional, GGUF only: Llama 3 RoPE frequency divisors)
// and for each layer L:
//   blk.L.attn_norm [hidden]
//   blk.L.attn_q [q_dim, hidden]   blk.L.attn_k, blk.L.attn_v [kv_dim, hidden]
//   blk.L.attn_output [hidden, q_dim]
//   blk.L.attn_q.bias [q_dim]      blk.L.attn_k.bias, blk.L.attn_v.bias [kv_dim]  (attention_bias)
//   blk.L.attn_q_norm, blk.L.attn_k_norm   [head_dim] (QkNorm::kPerHead) or
//                                          [q_dim] / [kv_dim] (QkNorm::kFull)
//   blk.L.ffn_norm [hidden]
//   dense:  blk.L.ffn_gate, blk.L.ffn_up [intermediate, hidden]
//           blk.L.ffn_down [hidden, intermediate]
//   MoE:    blk.L.ffn_gate_inp [num_experts, hidden]  (router)
//           blk.L.ffn_gate.E, blk.L.ffn_up.E [moe_intermediate, hidden]
//           blk.L.ffn_down.E [hidden, moe_intermediate]    for expert E in [0, num_experts)
//   shared expert (shared_expert_intermediate_size > 0):
//           blk.L.ffn_gate_shexp, blk.L.ffn_up_shexp [shared_inter, hidden]
//           blk.L.ffn_down_shexp [hidden, shared_inter]   blk.L.ffn_gate_inp_shexp [1, hidden]
//
// Lifetime: views stay valid while the WeightSource lives. Thread safety: immutable after
// opening; every method may be called from any thread.
#ifndef SHARDSERVE_MODEL_WEIGHT_SOURCE_H_
#define SHARDSERVE_MODEL_WEIGHT_SOURCE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/dtype.h"
#include "kernels/tensor.h"
#include "model/gguf_file.h"
#include "model/model_config.h"

namespace shardserve {

struct ExpectedTensor {
  std::string name;            // canonical
  std::vector<int64_t> shape;  // outermost first
};

// Every tensor `config` requires, with its shape, in layer order.
std::vector<ExpectedTensor> RequiredTensors(const ModelConfig& config);

class WeightSource {
 public:
  virtual ~WeightSource() = default;

  virtual const ModelConfig& config() const = 0;
  // The tensor called `name` (canonical), or NOT_FOUND naming the file and the tensor.
  virtual absl::StatusOr<TensorView> Get(const std::string& name) const = 0;
  virtual bool Has(const std::string& name) const = 0;
  // The .gguf file or the Hugging Face directory.
  virtual std::string path() const = 0;
  // The GGUF file (for its embedded tokenizer); nullptr for other formats.
  virtual const GgufFile* gguf() const { return nullptr; }

 protected:
  // Checks every RequiredTensors(config()) entry: present, expected shape, dtype in `allowed`
  // (and floating point for vectors such as norms and biases). Errors name path() and the tensor.
  absl::Status ValidateRequiredTensors(absl::Span<const DType> allowed) const;
};

// Opens a `.gguf` file or a Hugging Face model directory, validated as described above.
absl::StatusOr<std::unique_ptr<WeightSource>> OpenWeightSource(const std::string& path);

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_WEIGHT_SOURCE_H_
