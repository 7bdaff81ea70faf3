#include "worker/kv_cache.h"

#include <sys/mman.h>

#include "absl/strings/str_cat.h"

namespace shardserve {

void KvCache::Unmapper::operator()(float* p) const { munmap(p, bytes); }

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(const KvCacheShape& shape) {
  if (shape.num_layers <= 0 || shape.num_blocks <= 0 || shape.block_size <= 0 ||
      shape.num_kv_heads <= 0 || shape.head_dim <= 0) {
    return absl::InvalidArgumentError("KV cache dimensions must be positive");
  }
  const int64_t per_layer =
      shape.num_blocks * shape.block_size * shape.num_kv_heads * shape.head_dim;
  const int64_t total = per_layer * 2 * shape.num_layers;
  constexpr int64_t kMaxFloats = int64_t{1} << 36;  // 256 GiB
  if (total <= 0 || total > kMaxFloats) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache of ", total * 4, " bytes is too large"));
  }
  std::unique_ptr<KvCache> cache(new KvCache(shape));
  const size_t bytes = static_cast<size_t>(total) * sizeof(float);
  // Anonymous pages read as zeros until written, as calloc's did.
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate a KV cache of ", total * 4, " bytes"));
  }
  cache->storage_ = std::unique_ptr<float, Unmapper>(static_cast<float*>(p), Unmapper{bytes});
  cache->num_floats_ = total;
  float* base = cache->storage_.get();
  for (int64_t l = 0; l < shape.num_layers; ++l) {
    KvLayerView v;
    v.k = base + (2 * l) * per_layer;
    v.v = base + (2 * l + 1) * per_layer;
    v.num_blocks = shape.num_blocks;
    v.block_size = shape.block_size;
    v.num_kv_heads = shape.num_kv_heads;
    v.head_dim = shape.head_dim;
    cache->layers_.push_back(v);
  }
  return cache;
}

}  // namespace shardserve
