#include "model/bpe_model.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/bpe_byte_level.h"

namespace shardserve {

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(const std::vector<std::string>& tokens,
                                                           const std::vector<std::string>& merges,
                                                           const BpeModelOptions& options) {
  std::unique_ptr<BpeModel> model(new BpeModel());
  model->options_ = options;
  if (options.unk_id >= static_cast<int64_t>(tokens.size())) {
    return absl::InvalidArgumentError(absl::StrCat("unk id ", options.unk_id, " out of range"));
  }
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
  model->vocab_.reserve(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (tokens[id].empty()) continue;
    model->vocab_[tokens[id]] = static_cast<int32_t>(id);
    std::string bytes;
    if (alphabet.Decode(tokens[id], &bytes)) model->by_bytes_[bytes] = static_cast<int32_t>(id);
  }
  for (int b = 0; b < 256; ++b) {
    model->byte_ids_[b] = model->TokenId(alphabet.Utf8(static_cast<uint8_t>(b)));
  }
  model->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& merge = merges[rank];
    const size_t space = merge.size() > 1 ? merge.find(' ', 1) : std::string::npos;
    if (space == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", rank, " ('", merge, "') is not of the form 'left right'"));
    }
    const absl::string_view left(merge.data(), space);
    const absl::string_view right(merge.data() + space + 1, merge.size() - space - 1);
    const int32_t left_id = model->TokenId(left);
    const int32_t right_id = model->TokenId(right);
    const int32_t new_id = model->TokenId(absl::StrCat(left, right));
    if (left_id < 0 || right_id < 0 || new_id < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "merge ", rank, " ('", merge, "') uses or makes a token missing from the vocabulary"));
    }
    model->merges_[PairKey(left_id, right_id)] = {static_cast<uint32_t>(rank), new_id};
  }
  return model;
}

int32_t BpeModel::TokenId(absl::string_view token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

const BpeModel::Merge* BpeModel::FindMerge(int32_t left, int32_t right) const {
  auto it = merges_.find(PairKey(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::Encode(absl::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (word.size() == 1 && byte_ids_[static_cast<uint8_t>(word[0])] >= 0) {
    ids->push_back(byte_ids_[static_cast<uint8_t>(word[0])]);
    return;
  }
  if (options_.ignore_merges) {
    auto it = by_bytes_.find(word);
    if (it != by_bytes_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  if (word.size() > kMaxCachedBytes) {
    MergeWord(word, ids);
    return;
  }
  CacheShard& shard = cache_[absl::Hash<absl::string_view>()(word) % kCacheShards];
  {
    absl::MutexLock lock(&shard.mutex);
    auto it = shard.entries.find(word);
    if (it != shard.entries.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = ids->size();
  MergeWord(word, ids);
  absl::MutexLock lock(&shard.mutex);
  if (shard.entries.size() >= kMaxEntriesPerShard) shard.entries.clear();
  shard.entries.emplace(std::string(word), std::vector<int32_t>(ids->begin() + first, ids->end()));
}

namespace {

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  bool removed;
};

struct Candidate {
  uint32_t rank;
  int32_t pos;  // index of the left symbol
  int32_t new_id;
};

// Per-thread buffers, so that merging a piece allocates nothing once they have grown. Pieces
// longer than this use buffers of their own, so one huge piece does not pin memory.
constexpr size_t kMaxScratchBytes = 4096;
thread_local std::vector<Symbol> scratch_symbols;
thread_local std::vector<Candidate> scratch_heap;

}  // namespace

void BpeModel::MergeWord(absl::string_view word, std::vector<int32_t>* ids) const {
  std::vector<Symbol> own_symbols;
  std::vector<Candidate> own_heap;
  const bool use_scratch = word.size() <= kMaxScratchBytes;
  std::vector<Symbol>& symbols = use_scratch ? scratch_symbols : own_symbols;
  std::vector<Candidate>& heap = use_scratch ? scratch_heap : own_heap;
  symbols.clear();
  heap.clear();
  symbols.reserve(word.size());
  bool last_was_unk = false;
  for (char c : word) {
    const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
    if (id >= 0) {
      symbols.push_back({id, 0, 0, false});
      last_was_unk = false;
    } else if (options_.unk_id >= 0 && !(options_.fuse_unk && last_was_unk)) {
      symbols.push_back({options_.unk_id, 0, 0, false});
      last_was_unk = true;
    }
  }
  const auto n = static_cast<int32_t>(symbols.size());
  for (int32_t i = 0; i < n; ++i) {
    symbols[i].prev = i - 1;
    symbols[i].next = i + 1 < n ? i + 1 : -1;
  }

  // Min-heap on (rank, pos): lowest rank first, leftmost first among equal ranks.
  auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  for (int32_t i = 0; i + 1 < n; ++i) {
    if (const Merge* m = FindMerge(symbols[i].id, symbols[i + 1].id)) {
      heap.push_back({m->rank, i, m->new_id});
    }
  }
  std::make_heap(heap.begin(), heap.end(), later);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.removed || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Entries go stale when a neighbour merged since they were pushed.
    const Merge* current = FindMerge(left.id, right.id);
    if (current == nullptr || current->new_id != top.new_id) continue;

    left.id = top.new_id;
    right.removed = true;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const Merge* m = FindMerge(symbols[left.prev].id, left.id)) {
        heap.push_back({m->rank, left.prev, m->new_id});
        std::push_heap(heap.begin(), heap.end(), later);
      }
    }
    if (left.next >= 0) {
      if (const Merge* m = FindMerge(left.id, symbols[left.next].id)) {
        heap.push_back({m->rank, top.pos, m->new_id});
        std::push_heap(heap.begin(), heap.end(), later);
      }
    }
  }
  for (int32_t i = 0; i >= 0 && i < n; i = symbols[i].next) {
    ids->push_back(symbols[i].id);
  }
}

}  // namespace shardserve
