#include "coordinator/disagg_router.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/block_allocator.h"

namespace shardserve {
namespace {

// Whether `a` goes before `b` when both are equally good otherwise: fewer in flight, lower id.
bool LessLoaded(const DisaggRouter::GroupState& a, const DisaggRouter::GroupState& b) {
  if (a.in_flight != b.in_flight) return a.in_flight < b.in_flight;
  return a.group_id < b.group_id;
}

int64_t AvailableBlocks(const DisaggRouter::GroupState& g) {
  return static_cast<int64_t>(g.load.free_kv_blocks) - g.reserved_kv_blocks;
}

// The ready groups of `groups`, or UNAVAILABLE naming `pool`; then those below the in-flight
// bound, or RESOURCE_EXHAUSTED.
absl::StatusOr<std::vector<const DisaggRouter::GroupState*>> Admissible(
    absl::Span<const DisaggRouter::GroupState> groups, absl::string_view pool,
    int max_inflight_per_group) {
  int num_ready = 0;
  std::vector<const DisaggRouter::GroupState*> out;
  for (const DisaggRouter::GroupState& g : groups) {
    if (!g.ready) continue;
    ++num_ready;
    if (g.in_flight < max_inflight_per_group) out.push_back(&g);
  }
  if (num_ready == 0) {
    return absl::UnavailableError(absl::StrCat("no ready group in the ", pool, " pool (0 of ",
                                               groups.size(), " groups ready)"));
  }
  if (out.empty()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "every ready group of the ", pool, " pool (", num_ready, ") has max_inflight_per_group=",
        max_inflight_per_group, " requests in flight; retry later"));
  }
  return out;
}

}  // namespace

DisaggRouter::DisaggRouter(prometheus::Registry& registry, Options options)
    : options_(options),
      decisions_(
          prometheus::BuildCounter()
              .Name("shardserve_router_decisions_total")
              .Help("Routing decisions of disaggregated requests, by pool, group and reason.")
              .Register(registry)),
      prefix_hit_blocks_(prometheus::BuildCounter()
                             .Name("shardserve_router_prefix_hit_blocks_total")
                             .Help("Prompt blocks found in the prefix index of the prefill group "
                                   "they were routed to.")
                             .Register(registry)) {}

absl::string_view DisaggRouter::ReasonName(Reason reason) {
  switch (reason) {
    case Reason::kPrefixAffinity:
      return "prefix_affinity";
    case Reason::kLeastLoaded:
      return "least_loaded";
    case Reason::kAffinityOverloaded:
      return "affinity_overloaded";
  }
  return "unknown";
}

std::vector<uint64_t> DisaggRouter::BlockHashes(absl::Span<const int32_t> token_ids,
                                                int32_t block_size) {
  std::vector<uint64_t> hashes;
  if (block_size < 1) return hashes;
  const size_t num_full_blocks = token_ids.size() / block_size;
  hashes.reserve(num_full_blocks);
  uint64_t parent = BlockAllocator::kRootHash;
  for (size_t b = 0; b < num_full_blocks; ++b) {
    parent = BlockAllocator::HashBlock(parent, token_ids.subspan(b * block_size, block_size));
    hashes.push_back(parent);
  }
  return hashes;
}

int DisaggRouter::Matched(const PrefixIndex* index, absl::Span<const uint64_t> hashes) {
  if (index == nullptr) return 0;
  int matched = 0;
  for (uint64_t h : hashes) {
    if (!index->pos.contains(h)) break;
    ++matched;
  }
  return matched;
}

void DisaggRouter::Record(PrefixIndex& index, absl::Span<const uint64_t> hashes) {
  // Deepest block first, so the prompt's first block ends up most recent and eviction trims
  // chains from their tail (a kept child of an evicted parent could never match).
  for (auto it = hashes.rbegin(); it != hashes.rend(); ++it) {
    auto found = index.pos.find(*it);
    if (found != index.pos.end()) {
      index.lru.splice(index.lru.begin(), index.lru, found->second);
    } else {
      index.lru.push_front(*it);
      index.pos.emplace(*it, index.lru.begin());
    }
  }
  while (index.lru.size() > static_cast<size_t>(std::max(1, options_.prefix_index_capacity))) {
    index.pos.erase(index.lru.back());
    index.lru.pop_back();
  }
}

void DisaggRouter::ForgetUnready(absl::Span<const GroupState> prefill_groups) {
  for (auto it = indexes_.begin(); it != indexes_.end();) {
    const int32_t id = it->first;
    const bool ready =
        std::any_of(prefill_groups.begin(), prefill_groups.end(),
                    [id](const GroupState& g) { return g.group_id == id && g.ready; });
    if (ready) {
      ++it;
    } else {
      indexes_.erase(it++);
    }
  }
}

void DisaggRouter::ForgetGroup(int32_t group_id) {
  absl::MutexLock lock(&mu_);
  indexes_.erase(group_id);
}

int DisaggRouter::IndexSize(int32_t group_id) const {
  absl::MutexLock lock(&mu_);
  auto it = indexes_.find(group_id);
  return it == indexes_.end() ? 0 : static_cast<int>(it->second.lru.size());
}

int DisaggRouter::MatchedPrefixBlocks(int32_t group_id, absl::Span<const int32_t> prompt_token_ids,
                                      int32_t block_size) const {
  const std::vector<uint64_t> hashes = BlockHashes(prompt_token_ids, block_size);
  absl::MutexLock lock(&mu_);
  auto it = indexes_.find(group_id);
  return Matched(it == indexes_.end() ? nullptr : &it->second, hashes);
}

void DisaggRouter::Count(absl::string_view pool, int32_t group_id, Reason reason, int hit_blocks) {
  const std::string pool_name(pool);
  const std::string group = absl::StrCat(group_id);
  decisions_
      .Add({{"pool", pool_name}, {"group", group}, {"reason", std::string(ReasonName(reason))}})
      .Increment();
  if (pool == "prefill") {
    prefix_hit_blocks_.Add({{"pool", pool_name}, {"group", group}}).Increment(hit_blocks);
  }
}

absl::StatusOr<DisaggRouter::Decision> DisaggRouter::Route(
    absl::Span<const GroupState> prefill_groups, absl::Span<const GroupState> decode_groups,
    const Request& request) {
  if (request.prompt_token_ids.empty()) {
    return absl::InvalidArgumentError("the prompt has no tokens");
  }
  if (request.block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("block_size must be >= 1, got ", request.block_size));
  }
  if (request.max_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be >= 0, got ", request.max_tokens));
  }
  const std::vector<uint64_t> hashes = BlockHashes(request.prompt_token_ids, request.block_size);
  const int64_t num_tokens =
      static_cast<int64_t>(request.prompt_token_ids.size()) + request.max_tokens;
  const int64_t needed_blocks = (num_tokens + request.block_size - 1) / request.block_size;

  Decision decision;
  decision.decode_blocks_needed = static_cast<int32_t>(needed_blocks);
  {
    absl::MutexLock lock(&mu_);
    ForgetUnready(prefill_groups);

    absl::StatusOr<std::vector<const GroupState*>> prefill =
        Admissible(prefill_groups, "prefill", options_.max_inflight_per_group);
    if (!prefill.ok()) return prefill.status();
    absl::StatusOr<std::vector<const GroupState*>> decode =
        Admissible(decode_groups, "decode", options_.max_inflight_per_group);
    if (!decode.ok()) return decode.status();

    // Decode: most available blocks per request once this one is added.
    const GroupState* best_decode = nullptr;
    const GroupState* most_available = nullptr;
    for (const GroupState* g : *decode) {
      if (most_available == nullptr || AvailableBlocks(*g) > AvailableBlocks(*most_available)) {
        most_available = g;
      }
      if (AvailableBlocks(*g) < needed_blocks) continue;
      if (best_decode == nullptr) {
        best_decode = g;
        continue;
      }
      // a / (a_n + 1) vs b / (b_n + 1), exactly.
      const int64_t lhs = AvailableBlocks(*g) * (best_decode->in_flight + 1);
      const int64_t rhs = AvailableBlocks(*best_decode) * (g->in_flight + 1);
      if (lhs > rhs || (lhs == rhs && LessLoaded(*g, *best_decode))) best_decode = g;
    }
    // No group has room now: the request waits in the queue of the one with the most blocks
    // available (its leader takes it in as blocks free up, and refuses it at once when its
    // bounded queue is full), as a colocated request waits for blocks on its group.
    if (best_decode == nullptr) best_decode = most_available;
    decision.decode_group_id = best_decode->group_id;

    // Prefill: longest cached prefix unless overloaded, else least loaded.
    const GroupState* least = nullptr;
    const GroupState* affinity = nullptr;
    int affinity_blocks = 0;
    for (const GroupState* g : *prefill) {
      if (least == nullptr || LessLoaded(*g, *least)) least = g;
      auto it = indexes_.find(g->group_id);
      const int matched = Matched(it == indexes_.end() ? nullptr : &it->second, hashes);
      if (matched == 0) continue;
      if (matched > affinity_blocks || (matched == affinity_blocks && LessLoaded(*g, *affinity))) {
        affinity = g;
        affinity_blocks = matched;
      }
    }
    const GroupState* chosen = least;
    if (affinity == nullptr) {
      decision.reason = Reason::kLeastLoaded;
    } else if (affinity->in_flight - least->in_flight <= options_.max_affinity_imbalance) {
      chosen = affinity;
      decision.reason = Reason::kPrefixAffinity;
      decision.matched_prefix_blocks = affinity_blocks;
    } else {
      decision.reason = Reason::kAffinityOverloaded;
    }
    if (chosen != affinity) {
      auto it = indexes_.find(chosen->group_id);
      decision.matched_prefix_blocks =
          Matched(it == indexes_.end() ? nullptr : &it->second, hashes);
    }
    decision.prefill_group_id = chosen->group_id;
    Record(indexes_[chosen->group_id], hashes);
  }
  Count("prefill", decision.prefill_group_id, decision.reason, decision.matched_prefix_blocks);
  Count("decode", decision.decode_group_id, Reason::kLeastLoaded, 0);
  return decision;
}

}  // namespace shardserve
