// The memory of the paged KV cache of one rank: for every layer, K and V arrays of
// [num_blocks, block_size, num_kv_heads, head_dim] elements of the cache's dtype (F32, or F16 as
// llama.cpp stores its cache by default). Which block belongs to which sequence is kept by the
// BlockAllocator; this class only owns the memory and hands out per-layer views.
#ifndef SHARDSERVE_WORKER_KV_CACHE_H_
#define SHARDSERVE_WORKER_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "kernels/ops.h"

namespace shardserve {

struct KvCacheShape {
  int64_t num_layers = 0;
  int64_t num_blocks = 0;
  int64_t block_size = 16;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  // The element type of K and V: kF32 or kF16 (KvCache::Create refuses any other). Last, so
  // that brace-initialised shapes keep their meaning and stay F32.
  DType dtype = DType::kF32;

  // Bytes of one element of K or V: 4 for F32, 2 for F16.
  int64_t ElemBytes() const { return dtype == DType::kF16 ? 2 : 4; }
  // Bytes of K plus V for one token across all layers.
  int64_t BytesPerToken() const { return num_layers * 2 * num_kv_heads * head_dim * ElemBytes(); }
};

// The values of the --kv_cache_dtype flags: "f16" -> kF16, "f32" -> kF32; anything else is
// INVALID_ARGUMENT naming the flag and the allowed values, the message every command prints.
absl::StatusOr<DType> ParseKvCacheDType(absl::string_view name);
// "f16" or "f32" (what ParseKvCacheDType accepts); "invalid" for other dtypes.
absl::string_view KvCacheDTypeName(DType dtype);

class KvCache {
 public:
  // Reserves the memory (pages are touched lazily by the OS). Fails on a dtype other than F32 or
  // F16, on absurd sizes, or when the allocation fails.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(const KvCacheShape& shape);

  const KvCacheShape& shape() const { return shape_; }
  absl::Span<const KvLayerView> layers() const { return layers_; }
  int64_t total_bytes() const { return total_bytes_; }

 private:
  explicit KvCache(const KvCacheShape& shape) : shape_(shape) {}

  KvCacheShape shape_;
  struct Unmapper {
    size_t bytes;
    void operator()(uint8_t* p) const;
  };
  // All layers' K then V, in an anonymous mapping: untouched blocks cost no resident memory, and
  // page alignment starts every cached row on a cache line (whenever a head's slice is a multiple
  // of 64 bytes: head_dim 64 or 128, in F32 as in F16), so that attention reads a head's slice
  // of a token in as few lines as it can (calloc's large blocks start 16 bytes into a page,
  // which costs a fifth more lines per row).
  std::unique_ptr<uint8_t, Unmapper> storage_;
  int64_t total_bytes_ = 0;
  std::vector<KvLayerView> layers_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_KV_CACHE_H_
