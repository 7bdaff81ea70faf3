// The memory of the paged KV cache of one rank: for every layer, K and V arrays of
// [num_blocks, block_size, num_kv_heads, head_dim] F32. Which block belongs to which sequence is
// kept by the BlockAllocator; this class only owns the memory and hands out per-layer views.
#ifndef SHARDSERVE_WORKER_KV_CACHE_H_
#define SHARDSERVE_WORKER_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/ops.h"

namespace shardserve {

struct KvCacheShape {
  int64_t num_layers = 0;
  int64_t num_blocks = 0;
  int64_t block_size = 16;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;

  // Bytes of K plus V for one token across all layers.
  int64_t BytesPerToken() const { return num_layers * 2 * num_kv_heads * head_dim * 4; }
};

class KvCache {
 public:
  // Reserves the memory (pages are touched lazily by the OS). Fails on absurd sizes or when the
  // allocation fails.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(const KvCacheShape& shape);

  const KvCacheShape& shape() const { return shape_; }
  absl::Span<const KvLayerView> layers() const { return layers_; }
  int64_t total_bytes() const { return num_floats_ * 4; }

 private:
  explicit KvCache(const KvCacheShape& shape) : shape_(shape) {}

  KvCacheShape shape_;
  struct Unmapper {
    size_t bytes;
    void operator()(float* p) const;
  };
  // All layers' K then V, in an anonymous mapping: untouched blocks cost no resident memory, and
  // page alignment starts every cached row on a cache line, so that attention reads a head's
  // slice of a token in as few lines as it can (calloc's large blocks start 16 bytes into a
  // page, which costs a fifth more lines per row).
  std::unique_ptr<float, Unmapper> storage_;
  int64_t num_floats_ = 0;
  std::vector<KvLayerView> layers_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_KV_CACHE_H_
