#include "tests/conformance/decoder_runner.h"

#include <algorithm>
#include <fstream>

#include "common/status_macros.h"

namespace shardserve {

absl::StatusOr<std::unique_ptr<DecoderRunner>> DecoderRunner::Open(const std::string& model_path,
                                                                   int threads,
                                                                   int64_t max_tokens) {
  auto r = std::make_unique<DecoderRunner>();
  ASSIGN_OR_RETURN(r->weights_, OpenWeightSource(model_path));
  ASSIGN_OR_RETURN(r->decoder_, Decoder::Create(r->weights_.get()));
  const ModelConfig& c = r->decoder_->config();
  KvCacheShape shape;
  shape.num_layers = c.num_layers;
  shape.block_size = 16;
  shape.num_blocks = (max_tokens + 15) / 16;
  shape.num_kv_heads = c.num_kv_heads;
  shape.head_dim = c.head_dim;
  ASSIGN_OR_RETURN(r->cache_, KvCache::Create(shape));
  r->pool_ = std::make_unique<ThreadPool>(threads);
  return r;
}

absl::StatusOr<std::vector<float>> DecoderRunner::Append(const std::vector<int32_t>& tokens,
                                                         int64_t chunk) {
  const int64_t vocab = config().vocab_size;
  const int64_t block_size = cache_->shape().block_size;
  std::vector<float> all(tokens.size() * vocab);
  for (size_t start = 0; start < tokens.size(); start += chunk) {
    const int64_t n = std::min<int64_t>(chunk, tokens.size() - start);
    std::vector<int32_t> ids(tokens.begin() + start, tokens.begin() + start + n);
    std::vector<int32_t> positions(n), rows(n);
    std::vector<int64_t> slots(n);
    for (int64_t i = 0; i < n; ++i) {
      positions[i] = static_cast<int32_t>(length_ + i);
      slots[i] = length_ + i;  // blocks are assigned in order, so slot == position
      rows[i] = static_cast<int32_t>(i);
    }
    const int64_t kv_len = length_ + n;
    const int32_t num_blocks = static_cast<int32_t>((kv_len + block_size - 1) / block_size);
    std::vector<int32_t> blocks(num_blocks);
    for (int32_t b = 0; b < num_blocks; ++b) blocks[b] = b;
    std::vector<int32_t> qo_indptr = {0, static_cast<int32_t>(n)};
    std::vector<int32_t> kv_indptr = {0, num_blocks};
    std::vector<int32_t> kv_lens = {static_cast<int32_t>(kv_len)};
    ForwardBatch batch;
    batch.token_ids = ids;
    batch.positions = positions;
    batch.slot_mapping = slots;
    batch.attention.qo_indptr = qo_indptr;
    batch.attention.kv_indptr = kv_indptr;
    batch.attention.kv_indices = blocks;
    batch.attention.kv_lens = kv_lens;
    batch.logits_rows = rows;
    RETURN_IF_ERROR(decoder_->Forward(OpContext::Cpu(pool_.get()), batch, cache_->layers(),
                                      all.data() + start * vocab));
    length_ = kv_len;
  }
  return all;
}

std::vector<float> ReadF32File(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> out(bytes.size() / 4);
  std::copy(bytes.begin(), bytes.begin() + out.size() * 4, reinterpret_cast<char*>(out.data()));
  return out;
}

}  // namespace shardserve
