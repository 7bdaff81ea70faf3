// The memory layout of a ShmCommunicator's segment, shared by every rank of the group.
//
//   ShmHeader                          group parameters, per-rank arrival counters and pids
//   ShmChannel[world_size^2]           point-to-point counters, [src][dst]
//   slots[2][world_size][slot_bytes]   collective data, double-buffered by round parity
//   mailboxes[world_size^2][p2p_bytes] point-to-point data, [src][dst]
//
// Every counter is a 32-bit futex word that only one rank writes; readers compare with
// wrap-around arithmetic. Each sits on its own cache line so spinning ranks do not slow writers.
#ifndef SHARDSERVE_WORKER_COMM_SHM_LAYOUT_H_
#define SHARDSERVE_WORKER_COMM_SHM_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shardserve {

constexpr int kShmMaxRanks = 64;
constexpr uint32_t kShmReady = 0x52454459;  // "REDY": set last by the creator
constexpr size_t kShmAlign = 64;

static_assert(std::atomic<uint32_t>::is_always_lock_free, "futex words must be lock-free");

struct alignas(kShmAlign) ShmRankState {
  std::atomic<uint32_t> arrived;  // the last collective round this rank published
  std::atomic<int32_t> pid;       // 0 until the rank joins
};

struct alignas(kShmAlign) ShmChannel {
  alignas(kShmAlign) std::atomic<uint32_t> sent;   // chunks the sender has put in the mailbox
  alignas(kShmAlign) std::atomic<uint32_t> taken;  // chunks the receiver has copied out
};

struct ShmHeader {
  int32_t world_size;
  int32_t creator_pid;
  int64_t slot_bytes;
  int64_t p2p_bytes;
  std::atomic<uint32_t> ready;     // kShmReady once the creator has initialised the segment
  std::atomic<uint32_t> failed;    // set by a rank that failed: the others give up too
  std::atomic<uint32_t> sleepers;  // ranks inside futex_wait: writers wake only when non-zero
  ShmRankState ranks[kShmMaxRanks];
};

inline size_t ShmAlignUp(size_t n) { return (n + kShmAlign - 1) / kShmAlign * kShmAlign; }

// Byte offsets of the regions for a group's parameters.
struct ShmLayout {
  ShmLayout(int world_size, size_t slot_bytes, size_t p2p_bytes)
      : world_size(world_size), slot_bytes(slot_bytes), p2p_bytes(p2p_bytes) {
    channels = ShmAlignUp(sizeof(ShmHeader));
    slots = channels + ShmAlignUp(sizeof(ShmChannel) * world_size * world_size);
    mailboxes = slots + 2 * world_size * slot_bytes;
    total = mailboxes + static_cast<size_t>(world_size) * world_size * p2p_bytes;
  }

  int world_size;
  size_t slot_bytes;
  size_t p2p_bytes;
  size_t channels;
  size_t slots;
  size_t mailboxes;
  size_t total;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_COMM_SHM_LAYOUT_H_
