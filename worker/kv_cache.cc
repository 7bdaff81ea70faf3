#include "worker/kv_cache.h"

#include <sys/mman.h>

#include "absl/strings/str_cat.h"

namespace shardserve {

absl::StatusOr<DType> ParseKvCacheDType(absl::string_view name) {
  if (name == "f16") return DType::kF16;
  if (name == "f32") return DType::kF32;
  return absl::InvalidArgumentError(
      absl::StrCat("--kv_cache_dtype must be f16 or f32, not '", name, "'"));
}

absl::string_view KvCacheDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF16:
      return "f16";
    case DType::kF32:
      return "f32";
    default:
      return "invalid";
  }
}

void KvCache::Unmapper::operator()(uint8_t* p) const { munmap(p, bytes); }

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(const KvCacheShape& shape) {
  if (shape.dtype != DType::kF32 && shape.dtype != DType::kF16) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache dtype ", DTypeName(shape.dtype),
                                                   " is not supported: use f16 or f32"));
  }
  if (shape.num_layers <= 0 || shape.num_blocks <= 0 || shape.block_size <= 0 ||
      shape.num_kv_heads <= 0 || shape.head_dim <= 0) {
    return absl::InvalidArgumentError("KV cache dimensions must be positive");
  }
  // Elements of one layer's K (or V).
  const int64_t per_layer =
      shape.num_blocks * shape.block_size * shape.num_kv_heads * shape.head_dim;
  const int64_t total = per_layer * 2 * shape.num_layers;
  constexpr int64_t kMaxBytes = int64_t{1} << 38;  // 256 GiB
  if (total <= 0 || total > kMaxBytes / shape.ElemBytes()) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache of ", total, " elements of ",
                                                   shape.ElemBytes(), " bytes is too large"));
  }
  const int64_t total_bytes = total * shape.ElemBytes();
  std::unique_ptr<KvCache> cache(new KvCache(shape));
  const size_t bytes = static_cast<size_t>(total_bytes);
  // Anonymous pages read as zeros until written, as calloc's did (zero bits are 0.0 in F16 too).
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate a KV cache of ", total_bytes, " bytes"));
  }
  cache->storage_ = std::unique_ptr<uint8_t, Unmapper>(static_cast<uint8_t*>(p), Unmapper{bytes});
  cache->total_bytes_ = total_bytes;
  uint8_t* base = cache->storage_.get();
  const int64_t layer_bytes = per_layer * shape.ElemBytes();
  for (int64_t l = 0; l < shape.num_layers; ++l) {
    KvLayerView v;
    v.k = base + (2 * l) * layer_bytes;
    v.v = base + (2 * l + 1) * layer_bytes;
    v.dtype = shape.dtype;
    v.num_blocks = shape.num_blocks;
    v.block_size = shape.block_size;
    v.num_kv_heads = shape.num_kv_heads;
    v.head_dim = shape.head_dim;
    cache->layers_.push_back(v);
  }
  return cache;
}

}  // namespace shardserve
