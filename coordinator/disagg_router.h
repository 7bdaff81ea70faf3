// Picks the prefill group and the decode group of a disaggregated request. Pure logic: the
// caller passes each pool's groups as it knows them (plan readiness, its own in-flight counts,
// the leaders' latest GetLoad replies; staleness is the caller's business) and gets back two
// group ids. Nothing here talks to the network or holds slots.
//
// Prefill: prefix-cache affinity without asking the workers. The router keeps, per prefill group,
// an LRU index (at most `prefix_index_capacity` hashes) of the chained block hashes
// (BlockAllocator::HashBlock over the full blocks of a prompt, from BlockAllocator::kRootHash,
// the same hashes the group's allocator publishes) of the prompts it sent there. A prompt's
// affinity to a group is the number of its leading full blocks whose hashes are in that group's
// index, stopping at the first miss. Among the admissible groups (ready, in_flight below
// `max_inflight_per_group`):
//   1. no group has affinity > 0                   -> the least loaded (kLeastLoaded);
//   2. the best-affinity group (longest prefix; ties: lower in_flight, then lower id) has
//      in_flight <= least loaded's in_flight + max_affinity_imbalance -> it (kPrefixAffinity);
//   3. otherwise                                   -> the least loaded (kAffinityOverloaded).
// "Least loaded" is the fewest in_flight, ties to the lower id. The prompt's hashes are then
// recorded in the chosen group's index (deepest blocks least recent, so eviction trims prefixes
// from their tail). A prefill group passed as not ready, or not passed at all, loses its index:
// its cache is gone, or it is not this plan's group.
//
// Decode: the group receives the prompt's KV and generates up to max_tokens, so it needs
//   needed_blocks = ceil((prompt tokens + max_tokens) / block_size)
// of its available blocks, available = load.free_kv_blocks - reserved_kv_blocks (the caller
// adds a decision's needed_blocks to the group's reserved_kv_blocks while that request is in
// flight and not yet reflected in a load report). Among admissible decode groups with
// available >= needed_blocks, the highest
//   score = available / (in_flight + 1)      (free blocks per request once this one is added)
// wins, compared exactly (cross-multiplied in 64 bits); ties: lower in_flight, then lower id.
// When no admissible group has that many, the one with the most available blocks takes the
// request anyway (ties: the first in order): its leader queues it until blocks free up, as a
// colocated group does, and its bounded queue answers RESOURCE_EXHAUSTED when full.
// Its reason is always kLeastLoaded.
//
// Errors (nothing recorded, nothing counted): INVALID_ARGUMENT for an empty prompt,
// block_size < 1 or max_tokens < 0; UNAVAILABLE naming the pool ("prefill" or "decode") when it
// has no ready group; RESOURCE_EXHAUSTED when every ready group of a pool holds
// max_inflight_per_group requests.
//
// Metrics, on the registry given to the constructor (which must outlive the router):
//   shardserve_router_decisions_total{pool="prefill|decode", group, reason}  counter; reason is
//       "prefix_affinity", "least_loaded" or "affinity_overloaded"; one per pool per decision
//   shardserve_router_prefix_hit_blocks_total{pool="prefill", group}         counter; the
//       matched prefix blocks of the prompts routed to that group
//
//   DisaggRouter router(*registry, DisaggRouter::Options{});
//   std::vector<DisaggRouter::GroupState> prefill = ..., decode = ...;  // from plan + GetLoad
//   ASSIGN_OR_RETURN(DisaggRouter::Decision d,
//                    router.Route(prefill, decode, {prompt_ids, max_tokens, block_size}));
//   // send the prefill to d.prefill_group_id, the decode to d.decode_group_id; count both in
//   // flight and reserve d.decode_blocks_needed on the decode group until it reports again.
//
// Thread safety: Route() and the other methods may be called from many threads at once; one
// absl::Mutex guards the prefix indexes, so one decision's match and record are atomic.
#ifndef SHARDSERVE_COORDINATOR_DISAGG_ROUTER_H_
#define SHARDSERVE_COORDINATOR_DISAGG_ROUTER_H_

#include <cstdint>
#include <list>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"

namespace shardserve {

class DisaggRouter {
 public:
  struct Options {
    // Requests routed to one group and not yet finished, at most (as RequestRouter's).
    int max_inflight_per_group = 256;
    // A prefix-affinity group is skipped when its in_flight exceeds the least loaded group's by
    // more than this.
    int max_affinity_imbalance = 4;
    // Block hashes remembered per prefill group. REQUIRES: >= 1.
    int prefix_index_capacity = 65536;
  };

  // The latest GetLoad reply of a group's leader (v1::GetLoadReply's fields).
  struct LoadReport {
    int32_t free_kv_blocks = 0;
    int32_t num_kv_blocks = 0;
    int32_t running_requests = 0;
    int32_t waiting_requests = 0;
  };

  // One group of a pool, as the caller knows it now.
  struct GroupState {
    int32_t group_id = 0;
    bool ready = false;
    int in_flight = 0;  // requests this coordinator routed there and not yet finished
    LoadReport load;
    // KV blocks the caller holds back for decisions not yet reflected in `load` (decode).
    int32_t reserved_kv_blocks = 0;
  };

  struct Request {
    absl::Span<const int32_t> prompt_token_ids;  // [num_prompt_tokens]
    int32_t max_tokens = 0;                      // output tokens at most
    int32_t block_size = 0;                      // tokens per KV block, as the workers use
  };

  enum class Reason { kPrefixAffinity, kLeastLoaded, kAffinityOverloaded };

  struct Decision {
    int32_t prefill_group_id = 0;
    int32_t decode_group_id = 0;
    int matched_prefix_blocks = 0;         // leading full blocks found in the prefill group's index
    Reason reason = Reason::kLeastLoaded;  // of the prefill choice; decode is kLeastLoaded
    int32_t decode_blocks_needed = 0;      // ceil((prompt + max_tokens) / block_size)
  };

  DisaggRouter(prometheus::Registry& registry, Options options);

  DisaggRouter(const DisaggRouter&) = delete;
  DisaggRouter& operator=(const DisaggRouter&) = delete;

  // Decides one request, as described above.
  absl::StatusOr<Decision> Route(absl::Span<const GroupState> prefill_groups,
                                 absl::Span<const GroupState> decode_groups,
                                 const Request& request);

  // Forgets a prefill group's index (e.g. when the caller learns its cache was reset).
  void ForgetGroup(int32_t group_id);
  // Hashes remembered for a prefill group.
  int IndexSize(int32_t group_id) const;
  // Leading full blocks of `prompt_token_ids` in the group's index (no recording).
  int MatchedPrefixBlocks(int32_t group_id, absl::Span<const int32_t> prompt_token_ids,
                          int32_t block_size) const;

  // The chained hashes of the prompt's full blocks, as BlockAllocator computes them.
  static std::vector<uint64_t> BlockHashes(absl::Span<const int32_t> token_ids, int32_t block_size);
  // "prefix_affinity", "least_loaded", "affinity_overloaded".
  static absl::string_view ReasonName(Reason reason);

  const Options& options() const { return options_; }

 private:
  // Bounded LRU set of block hashes; front = most recently recorded.
  struct PrefixIndex {
    std::list<uint64_t> lru;
    absl::flat_hash_map<uint64_t, std::list<uint64_t>::iterator> pos;
  };

  static int Matched(const PrefixIndex* index, absl::Span<const uint64_t> hashes);
  void Record(PrefixIndex& index, absl::Span<const uint64_t> hashes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the indexes of groups not ready or not in `prefill_groups`.
  void ForgetUnready(absl::Span<const GroupState> prefill_groups)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Count(absl::string_view pool, int32_t group_id, Reason reason, int hit_blocks);

  const Options options_;
  prometheus::Family<prometheus::Counter>& decisions_;
  prometheus::Family<prometheus::Counter>& prefix_hit_blocks_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<int32_t, PrefixIndex> indexes_ ABSL_GUARDED_BY(mu_);  // prefill group id
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_DISAGG_ROUTER_H_
