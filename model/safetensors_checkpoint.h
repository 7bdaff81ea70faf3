// A Hugging Face checkpoint's tensors, in one safetensors file or sharded over several.
//
// Open() takes a directory holding `model.safetensors.index.json` (whose `weight_map` maps each
// tensor to its shard file) or `model.safetensors`, or the path of a single .safetensors file.
// Each shard is mapped once; every tensor the index names must exist in its shard.
//
//   ASSIGN_OR_RETURN(auto ckpt, SafetensorsCheckpoint::Open("/models/qwen2-0.5b"));
//   ASSIGN_OR_RETURN(TensorView w, ckpt->Get("model.embed_tokens.weight"));  // [vocab, hidden]
//
// Views stay valid while the checkpoint lives. Thread safety: immutable after Open().
#ifndef SHARDSERVE_MODEL_SAFETENSORS_CHECKPOINT_H_
#define SHARDSERVE_MODEL_SAFETENSORS_CHECKPOINT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/tensor.h"
#include "model/safetensors_file.h"

namespace shardserve {

class SafetensorsCheckpoint {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(const std::string& path);

  SafetensorsCheckpoint(const SafetensorsCheckpoint&) = delete;
  SafetensorsCheckpoint& operator=(const SafetensorsCheckpoint&) = delete;

  // What was opened: the directory or the single file.
  const std::string& path() const { return path_; }
  size_t num_shards() const { return shards_.size(); }
  const SafetensorsFile& shard(size_t i) const { return *shards_[i]; }

  bool Has(absl::string_view name) const { return Find(name) != nullptr; }
  // nullptr when absent.
  const SafetensorsTensor* Find(absl::string_view name) const;
  // NOT_FOUND naming the checkpoint and the tensor when absent.
  absl::StatusOr<TensorView> Get(absl::string_view name) const;
  // Every tensor name, sorted.
  std::vector<std::string> TensorNames() const;

 private:
  explicit SafetensorsCheckpoint(std::string path) : path_(std::move(path)) {}
  absl::Status AddShard(std::unique_ptr<SafetensorsFile> shard);
  absl::Status LoadIndex(const std::string& dir, const std::string& index_path);

  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  absl::flat_hash_map<std::string, const SafetensorsTensor*> tensors_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_SAFETENSORS_CHECKPOINT_H_
