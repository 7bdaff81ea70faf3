#include "worker/engine.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shardserve {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

absl::Status CheckGenerateRequest(const ModelConfig& c, int64_t context,
                                  absl::Span<const int32_t> prompt, const SamplingParams& params) {
  RETURN_IF_ERROR(params.Validate());
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  for (int32_t id : prompt) {
    if (id < 0 || id >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prompt token id ", id, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  const int64_t prompt_len = static_cast<int64_t>(prompt.size());
  if (prompt_len + params.max_tokens > context) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt (", prompt_len, " tokens) plus max_tokens (", params.max_tokens,
                     ") exceeds the context window of ", context, " tokens",
                     context < c.max_position_embeddings
                         ? absl::StrCat(" (the KV cache's capacity; the model allows ",
                                        c.max_position_embeddings, ")")
                         : ""));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const WeightSource* weights,
                                                       const EngineOptions& options) {
  if (options.block_size <= 0 || options.max_num_batched_tokens <= 0) {
    return absl::InvalidArgumentError("block_size and max_num_batched_tokens must be positive");
  }
  std::unique_ptr<Engine> e(new Engine());
  e->options_ = options;
  const int threads = options.num_threads > 0 ? options.num_threads : ThreadPool::DefaultThreads();
  e->pool_ = std::make_unique<ThreadPool>(threads);
  ASSIGN_OR_RETURN(e->decoder_, Decoder::Create(weights));
  const ModelConfig& c = e->decoder_->config();
  KvCacheShape shape;
  shape.num_layers = c.num_layers;
  shape.block_size = options.block_size;
  shape.num_kv_heads = c.num_kv_heads;
  shape.head_dim = c.head_dim;
  int64_t kv_bytes = options.kv_cache_bytes;
  if (kv_bytes == 0) {
    kv_bytes = std::min<int64_t>(
        int64_t{4} << 30, (c.max_position_embeddings + shape.block_size) * shape.BytesPerToken());
  }
  shape.num_blocks = kv_bytes / (shape.BytesPerToken() * shape.block_size);
  if (shape.num_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("kv_cache_bytes=", kv_bytes,
                                                   " holds less than one block of ",
                                                   shape.block_size, " tokens"));
  }
  ASSIGN_OR_RETURN(e->kv_cache_, KvCache::Create(shape));
  e->blocks_ = std::make_unique<BlockAllocator>(shape.num_blocks, shape.block_size);
  std::vector<int32_t> eos;
  for (int64_t id : c.eos_token_ids) eos.push_back(static_cast<int32_t>(id));
  e->sampler_ = std::make_unique<Sampler>(std::move(eos));
  return e;
}

int64_t Engine::max_context_tokens() const {
  const ModelConfig& c = decoder_->config();
  return std::min(c.max_position_embeddings,
                  kv_cache_->shape().num_blocks * kv_cache_->shape().block_size);
}

absl::Status Engine::Extend(int64_t seq_id, absl::Span<const int32_t> tokens,
                            int64_t start_position, float* logits) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t block_size = kv_cache_->shape().block_size;
  const std::vector<int32_t>& table = blocks_->BlockTable(seq_id);
  const int64_t kv_len = start_position + n;
  if (static_cast<int64_t>(table.size()) * block_size < kv_len) {
    return absl::InternalError("sequence's KV blocks do not cover the tokens being run");
  }
  positions_.resize(n);
  slots_.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t pos = start_position + i;
    positions_[i] = static_cast<int32_t>(pos);
    slots_[i] = static_cast<int64_t>(table[pos / block_size]) * block_size + pos % block_size;
  }
  const int64_t num_blocks = (kv_len + block_size - 1) / block_size;
  qo_indptr_ = {0, static_cast<int32_t>(n)};
  kv_indptr_ = {0, static_cast<int32_t>(num_blocks)};
  kv_indices_.assign(table.begin(), table.begin() + num_blocks);
  kv_lens_ = {static_cast<int32_t>(kv_len)};
  logits_rows_ = {static_cast<int32_t>(n - 1)};
  ForwardBatch batch;
  batch.token_ids = tokens;
  batch.positions = positions_;
  batch.slot_mapping = slots_;
  batch.attention.qo_indptr = qo_indptr_;
  batch.attention.kv_indptr = kv_indptr_;
  batch.attention.kv_indices = kv_indices_;
  batch.attention.kv_lens = kv_lens_;
  batch.logits_rows = logits_rows_;
  return decoder_->Forward(OpContext::Cpu(pool_.get()), batch, kv_cache_->layers(), logits);
}

absl::StatusOr<GenerationResult> Engine::Generate(
    absl::Span<const int32_t> prompt, const SamplingParams& params,
    const std::function<bool(int32_t token)>& on_token) {
  const ModelConfig& c = decoder_->config();
  RETURN_IF_ERROR(CheckGenerateRequest(c, max_context_tokens(), prompt, params));
  const int64_t prompt_len = static_cast<int64_t>(prompt.size());

  const int64_t seq_id = next_seq_id_++;
  ASSIGN_OR_RETURN(const int num_cached, blocks_->Allocate(seq_id, prompt));
  struct FreeOnExit {
    BlockAllocator* blocks;
    int64_t seq_id;
    ~FreeOnExit() { blocks->Free(seq_id); }
  } free_on_exit{blocks_.get(), seq_id};

  GenerationResult result;
  result.prompt_tokens = prompt_len;
  std::vector<float> logits(c.vocab_size);
  SequenceHistory history(prompt);
  Rng rng = Sampler::MakeRng(params);

  const double t0 = Now();
  const int64_t chunk = options_.max_num_batched_tokens;
  for (int64_t start = num_cached; start < prompt_len; start += chunk) {
    const int64_t n = std::min(chunk, prompt_len - start);
    RETURN_IF_ERROR(Extend(seq_id, prompt.subspan(start, n), start, logits.data()));
    blocks_->MarkComputed(seq_id, static_cast<int>(start + n));
  }
  result.cached_tokens = num_cached;
  double t_first = 0;
  int64_t position = prompt_len;
  while (true) {
    SampleResult s = sampler_->Sample(absl::MakeSpan(logits), params, history, rng);
    if (result.token_ids.empty()) t_first = Now();
    result.token_ids.push_back(s.token_id);
    result.samples.push_back(std::move(s));
    history.AppendOutput(result.token_ids.back());
    const bool go_on = on_token(result.token_ids.back());
    if (!go_on || static_cast<int64_t>(result.token_ids.size()) >= params.max_tokens) break;
    RETURN_IF_ERROR(blocks_->AppendSlot(seq_id, result.token_ids.back()));
    const int32_t last = result.token_ids.back();
    RETURN_IF_ERROR(Extend(seq_id, absl::MakeConstSpan(&last, 1), position, logits.data()));
    ++position;
    blocks_->MarkComputed(seq_id, static_cast<int>(position));
  }
  const double t_end = Now();
  result.prefill_seconds = t_first - t0;
  result.decode_seconds = t_end - t_first;
  return result;
}

}  // namespace shardserve
