#include "worker/comm/shm_communicator.h"

#include <immintrin.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <new>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "worker/comm/comm_checks.h"

namespace shardserve {
namespace {

// Peers of a decode step arrive within microseconds of each other: spin that long, then yield
// the core for a while (two ranks may share two cores with other work), then sleep on the futex.
constexpr int64_t kSpinNanos = 50'000;
constexpr absl::Duration kYieldPhase = absl::Milliseconds(1);
constexpr absl::Duration kFutexSlice = absl::Milliseconds(5);
constexpr absl::Duration kLivenessPeriod = absl::Milliseconds(2);
constexpr absl::Duration kJoinPoll = absl::Milliseconds(1);

bool ValidGroupId(const std::string& id) {
  if (id.empty() || id.size() > 200) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// False once `pid` has exited, including while it is an unreaped zombie (a parent that forked
// its ranks may not have collected a dead child yet).
bool ProcessAlive(int32_t pid) {
  if (pid <= 0) return true;
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return true;  // no procfs: trust kill()
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return true;
  const char state = line[paren + 2];
  return state != 'Z' && state != 'X';
}

void FutexWait(const std::atomic<uint32_t>& word, uint32_t seen, absl::Duration timeout) {
  const timespec ts = absl::ToTimespec(timeout);
  syscall(SYS_futex, reinterpret_cast<const uint32_t*>(&word), FUTEX_WAIT, seen, &ts, nullptr, 0);
}

void FutexWakeAll(std::atomic<uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

bool Reached(const std::atomic<uint32_t>& word, uint32_t target) {
  return static_cast<int32_t>(word.load(std::memory_order_acquire) - target) >= 0;
}

// out = ((slots[0] + slots[1]) + slots[2]) + ..., elementwise. Every rank adds in this order,
// so all ranks get bit-identical sums. Explicit SIMD because -O2 leaves this loop scalar.
void SumInRankOrder(const float* const* slots, int num_slots, int64_t count, float* out) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    __m128 lo = _mm_loadu_ps(slots[0] + i);
    __m128 hi = _mm_loadu_ps(slots[0] + i + 4);
    for (int q = 1; q < num_slots; ++q) {
      lo = _mm_add_ps(lo, _mm_loadu_ps(slots[q] + i));
      hi = _mm_add_ps(hi, _mm_loadu_ps(slots[q] + i + 4));
    }
    _mm_storeu_ps(out + i, lo);
    _mm_storeu_ps(out + i + 4, hi);
  }
  for (; i < count; ++i) {
    float sum = slots[0][i];
    for (int q = 1; q < num_slots; ++q) sum += slots[q][i];
    out[i] = sum;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShmCommunicator>> ShmCommunicator::Create(
    const std::string& group_id, int rank, int world_size, const ShmOptions& options) {
  if (!ValidGroupId(group_id)) {
    return absl::InvalidArgumentError(absl::StrCat("ShmCommunicator: bad group id '", group_id,
                                                   "' (use [A-Za-z0-9._-], at most 200)"));
  }
  if (world_size < 1 || world_size > kShmMaxRanks || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("ShmCommunicator: rank ", rank, " of world size ", world_size));
  }
  if (options.slot_bytes <= 0 || options.slot_bytes % kShmAlign != 0 || options.p2p_bytes <= 0 ||
      options.p2p_bytes % kShmAlign != 0 || options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "ShmCommunicator: slot_bytes and p2p_bytes must be positive multiples of 64, timeout "
        "positive");
  }
  const std::string name = absl::StrCat("/shardserve_", group_id);
  const ShmLayout layout(world_size, options.slot_bytes, options.p2p_bytes);
  const absl::Time deadline = absl::Now() + options.timeout;
  std::unique_ptr<ShmSegment> segment;
  if (rank == 0) {
    ASSIGN_OR_RETURN(segment, ShmSegment::Create(name, layout.total));
    auto* header = new (segment->data()) ShmHeader();
    header->world_size = world_size;
    header->creator_pid = getpid();
    header->slot_bytes = options.slot_bytes;
    header->p2p_bytes = options.p2p_bytes;
    header->ranks[0].pid.store(getpid());
    auto* channels =
        reinterpret_cast<ShmChannel*>(static_cast<uint8_t*>(segment->data()) + layout.channels);
    for (int i = 0; i < world_size * world_size; ++i) new (&channels[i]) ShmChannel();
    header->ready.store(kShmReady, std::memory_order_release);
  } else {
    // Rank 0 may not have created the segment yet, and a leftover of a crashed run may still
    // carry the name until rank 0 replaces it: retry until a live creator's segment shows up.
    while (segment == nullptr) {
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "shm ", name, ": rank ", rank, " found no segment from a live rank 0 within ",
            absl::FormatDuration(options.timeout)));
      }
      absl::StatusOr<std::unique_ptr<ShmSegment>> opened = ShmSegment::Open(name);
      if (!opened.ok()) {
        if (!absl::IsNotFound(opened.status()) && !absl::IsUnavailable(opened.status())) {
          return opened.status();
        }
        absl::SleepFor(kJoinPoll);
        continue;
      }
      const auto* header = static_cast<const ShmHeader*>((*opened)->data());
      if ((*opened)->size() < sizeof(ShmHeader) ||
          header->ready.load(std::memory_order_acquire) != kShmReady ||
          !ProcessAlive(header->creator_pid)) {
        absl::SleepFor(kJoinPoll);
        continue;
      }
      if (header->world_size != world_size || header->slot_bytes != options.slot_bytes ||
          header->p2p_bytes != options.p2p_bytes || (*opened)->size() < layout.total) {
        return absl::FailedPreconditionError(absl::StrCat(
            "shm ", name, ": rank 0 created it for world size ", header->world_size, " slot_bytes ",
            header->slot_bytes, " p2p_bytes ", header->p2p_bytes, "; rank ", rank, " expects ",
            world_size, ", ", options.slot_bytes, ", ", options.p2p_bytes));
      }
      segment = *std::move(opened);
    }
  }
  std::unique_ptr<ShmCommunicator> comm(
      new ShmCommunicator(std::move(segment), rank, world_size, options));
  RETURN_IF_ERROR(comm->Join());
  return comm;
}

ShmCommunicator::ShmCommunicator(std::unique_ptr<ShmSegment> segment, int rank, int world_size,
                                 const ShmOptions& options)
    : segment_(std::move(segment)),
      header_(static_cast<ShmHeader*>(segment_->data())),
      layout_(world_size, options.slot_bytes, options.p2p_bytes),
      rank_(rank),
      world_size_(world_size),
      timeout_(options.timeout),
      // With more ranks than cores a spinning rank only delays the peer it waits for.
      spin_nanos_(world_size > static_cast<int>(std::thread::hardware_concurrency()) ? 0
                                                                                     : kSpinNanos) {
}

ShmCommunicator::~ShmCommunicator() = default;

absl::Status ShmCommunicator::Join() {
  const absl::Time deadline = absl::Now() + timeout_;
  int32_t expected = 0;
  const int32_t me = getpid();
  if (rank_ != 0 && !header_->ranks[rank_].pid.compare_exchange_strong(expected, me)) {
    return absl::FailedPreconditionError(absl::StrCat("shm ", segment_->name(), ": rank ", rank_,
                                                      " was already taken by pid ", expected));
  }
  for (int q = 0; q < world_size_; ++q) {
    while (header_->ranks[q].pid.load(std::memory_order_acquire) == 0) {
      if (header_->failed.load() != 0) {
        return Fail(absl::UnavailableError(
            absl::StrCat("shm ", segment_->name(), ": the group failed while joining")));
      }
      if (!ProcessAlive(header_->creator_pid)) {
        return Fail(absl::UnavailableError(
            absl::StrCat("shm ", segment_->name(), ": rank 0 exited while joining")));
      }
      if (absl::Now() > deadline) {
        return Fail(absl::DeadlineExceededError(absl::StrCat("shm ", segment_->name(), ": rank ", q,
                                                             " did not join within ",
                                                             absl::FormatDuration(timeout_))));
      }
      absl::SleepFor(kJoinPoll);
    }
  }
  // Everyone has the segment mapped: the name is no longer needed.
  segment_->Unlink();
  return absl::OkStatus();
}

absl::Status ShmCommunicator::Fail(absl::Status status) {
  if (failure_.ok()) failure_ = std::move(status);
  header_->failed.store(1);
  return failure_;
}

bool ShmCommunicator::PeerAlive(int peer) const {
  return ProcessAlive(header_->ranks[peer].pid.load(std::memory_order_relaxed));
}

void ShmCommunicator::Publish(std::atomic<uint32_t>& word, uint32_t value) {
  // seq_cst on both this store and the load of `sleepers` (and in WaitAtLeast) so that either the
  // sleeper sees the new value before sleeping or this side sees the sleeper and wakes it.
  word.store(value, std::memory_order_seq_cst);
  if (header_->sleepers.load(std::memory_order_seq_cst) != 0) FutexWakeAll(word);
}

absl::Status ShmCommunicator::WaitAtLeast(const std::atomic<uint32_t>& word, uint32_t target,
                                          int peer, const char* op) {
  if (Reached(word, target)) return absl::OkStatus();
  const int64_t spin_end = absl::GetCurrentTimeNanos() + spin_nanos_;
  for (int i = 1;; ++i) {
    _mm_pause();
    if (Reached(word, target)) return absl::OkStatus();
    if (i % 64 == 0 && absl::GetCurrentTimeNanos() > spin_end) break;
  }
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + timeout_;
  absl::Time next_liveness_check = start;
  while (!Reached(word, target)) {
    if (header_->failed.load(std::memory_order_relaxed) != 0) {
      return Fail(absl::UnavailableError(absl::StrCat(
          "shm ", op, " (rank ", rank_, "/", world_size_, "): another rank of the group failed")));
    }
    const absl::Time now = absl::Now();
    if (now >= next_liveness_check) {
      if (!PeerAlive(peer)) {
        return Fail(absl::UnavailableError(
            absl::StrCat("shm ", op, " (rank ", rank_, "/", world_size_, "): rank ", peer, " (pid ",
                         header_->ranks[peer].pid.load(), ") has exited")));
      }
      next_liveness_check = now + kLivenessPeriod;
    }
    if (now >= deadline) {
      return Fail(absl::DeadlineExceededError(
          absl::StrCat("shm ", op, " (rank ", rank_, "/", world_size_, "): rank ", peer,
                       " made no progress within ", absl::FormatDuration(timeout_))));
    }
    if (now - start < kYieldPhase) {
      sched_yield();
      continue;
    }
    header_->sleepers.fetch_add(1, std::memory_order_seq_cst);
    const uint32_t seen = word.load(std::memory_order_seq_cst);
    if (static_cast<int32_t>(seen - target) < 0) FutexWait(word, seen, kFutexSlice);
    header_->sleepers.fetch_sub(1, std::memory_order_seq_cst);
  }
  return absl::OkStatus();
}

uint8_t* ShmCommunicator::Slot(int rank) const {
  const size_t index = static_cast<size_t>(round_ & 1) * world_size_ + rank;
  return static_cast<uint8_t*>(segment_->data()) + layout_.slots + index * layout_.slot_bytes;
}

ShmChannel& ShmCommunicator::Channel(int src, int dst) const {
  auto* channels =
      reinterpret_cast<ShmChannel*>(static_cast<uint8_t*>(segment_->data()) + layout_.channels);
  return channels[src * world_size_ + dst];
}

uint8_t* ShmCommunicator::Mailbox(int src, int dst) const {
  const size_t index = static_cast<size_t>(src) * world_size_ + dst;
  return static_cast<uint8_t*>(segment_->data()) + layout_.mailboxes + index * layout_.p2p_bytes;
}

absl::Status ShmCommunicator::Round(const char* op,
                                    const std::function<void(uint8_t* my_slot)>& fill) {
  ++round_;
  if (fill) fill(Slot(rank_));
  Publish(header_->ranks[rank_].arrived, round_);
  for (int q = 0; q < world_size_; ++q) {
    if (q == rank_) continue;
    RETURN_IF_ERROR(WaitAtLeast(header_->ranks[q].arrived, round_, q, op));
  }
  return absl::OkStatus();
}

absl::Status ShmCommunicator::AllReduceSum(const TensorView& data) {
  if (data.dtype != DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat("AllReduceSum: dtype ", DTypeName(data.dtype), ", expected f32"));
  }
  RETURN_IF_ERROR(CheckCpuPacked(data, "AllReduceSum", "data"));
  if (!failure_.ok()) return failure_;
  float* values = data.ptr<float>();
  const int64_t n = data.numel();
  const int64_t per_round = layout_.slot_bytes / sizeof(float);
  for (int64_t off = 0; off < n; off += per_round) {
    const int64_t count = std::min(per_round, n - off);
    RETURN_IF_ERROR(Round("all-reduce", [&](uint8_t* slot) {
      std::memcpy(slot, values + off, count * sizeof(float));
    }));
    if (world_size_ == 1) continue;
    const float* slots[kShmMaxRanks];
    for (int q = 0; q < world_size_; ++q) slots[q] = reinterpret_cast<const float*>(Slot(q));
    SumInRankOrder(slots, world_size_, count, values + off);
  }
  return absl::OkStatus();
}

absl::Status ShmCommunicator::AllGather(const TensorView& send, const TensorView& recv) {
  RETURN_IF_ERROR(CheckCpuPacked(send, "AllGather", "send"));
  RETURN_IF_ERROR(CheckCpuPacked(recv, "AllGather", "recv"));
  RETURN_IF_ERROR(CheckGatherSizes(send, recv, world_size_, "AllGather"));
  if (!failure_.ok()) return failure_;
  const auto* in = send.ptr<const uint8_t>();
  auto* out = recv.ptr<uint8_t>();
  const int64_t n = send.nbytes();
  for (int64_t off = 0; off < n; off += layout_.slot_bytes) {
    const int64_t count = std::min<int64_t>(layout_.slot_bytes, n - off);
    RETURN_IF_ERROR(
        Round("all-gather", [&](uint8_t* slot) { std::memcpy(slot, in + off, count); }));
    for (int q = 0; q < world_size_; ++q) std::memcpy(out + q * n + off, Slot(q), count);
  }
  return absl::OkStatus();
}

absl::Status ShmCommunicator::Broadcast(const TensorView& data, int root) {
  RETURN_IF_ERROR(CheckCpuPacked(data, "Broadcast", "data"));
  RETURN_IF_ERROR(CheckRank(root, world_size_, "Broadcast"));
  if (!failure_.ok()) return failure_;
  auto* bytes = data.ptr<uint8_t>();
  const int64_t n = data.nbytes();
  for (int64_t off = 0; off < n; off += layout_.slot_bytes) {
    const int64_t count = std::min<int64_t>(layout_.slot_bytes, n - off);
    RETURN_IF_ERROR(Round("broadcast", [&](uint8_t* slot) {
      if (rank_ == root) std::memcpy(slot, bytes + off, count);
    }));
    if (rank_ != root) std::memcpy(bytes + off, Slot(root), count);
  }
  return absl::OkStatus();
}

absl::Status ShmCommunicator::AllToAll(const TensorView& send, const TensorView& recv) {
  RETURN_IF_ERROR(CheckCpuPacked(send, "AllToAll", "send"));
  RETURN_IF_ERROR(CheckCpuPacked(recv, "AllToAll", "recv"));
  RETURN_IF_ERROR(CheckAllToAllSizes(send, recv, world_size_, "AllToAll"));
  if (!failure_.ok()) return failure_;
  const auto* in = send.ptr<const uint8_t>();
  auto* out = recv.ptr<uint8_t>();
  const int64_t block = send.nbytes() / world_size_;
  // Each round carries a piece of every block: the slot is split in world_size parts.
  const int64_t piece = layout_.slot_bytes / world_size_;
  for (int64_t off = 0; off < block; off += piece) {
    const int64_t count = std::min(piece, block - off);
    RETURN_IF_ERROR(Round("all-to-all", [&](uint8_t* slot) {
      for (int q = 0; q < world_size_; ++q) {
        std::memcpy(slot + q * count, in + q * block + off, count);
      }
    }));
    for (int q = 0; q < world_size_; ++q) {
      std::memcpy(out + q * block + off, Slot(q) + rank_ * count, count);
    }
  }
  return absl::OkStatus();
}

absl::Status ShmCommunicator::Send(const TensorView& data, int dst_rank) {
  RETURN_IF_ERROR(CheckCpuPacked(data, "Send", "data"));
  RETURN_IF_ERROR(CheckRank(dst_rank, world_size_, "Send"));
  if (dst_rank == rank_) return absl::InvalidArgumentError("Send: to self");
  if (!failure_.ok()) return failure_;
  ShmChannel& channel = Channel(rank_, dst_rank);
  uint8_t* mailbox = Mailbox(rank_, dst_rank);
  const auto* bytes = data.ptr<const uint8_t>();
  const int64_t n = data.nbytes();
  uint32_t sent = channel.sent.load(std::memory_order_relaxed);
  for (int64_t off = 0; off < n; off += layout_.p2p_bytes) {
    const int64_t count = std::min<int64_t>(layout_.p2p_bytes, n - off);
    RETURN_IF_ERROR(WaitAtLeast(channel.taken, sent, dst_rank, "send"));  // mailbox empty
    std::memcpy(mailbox, bytes + off, count);
    Publish(channel.sent, ++sent);
  }
  return absl::OkStatus();
}

absl::Status ShmCommunicator::Recv(const TensorView& data, int src_rank) {
  RETURN_IF_ERROR(CheckCpuPacked(data, "Recv", "data"));
  RETURN_IF_ERROR(CheckRank(src_rank, world_size_, "Recv"));
  if (src_rank == rank_) return absl::InvalidArgumentError("Recv: from self");
  if (!failure_.ok()) return failure_;
  ShmChannel& channel = Channel(src_rank, rank_);
  const uint8_t* mailbox = Mailbox(src_rank, rank_);
  auto* bytes = data.ptr<uint8_t>();
  const int64_t n = data.nbytes();
  uint32_t taken = channel.taken.load(std::memory_order_relaxed);
  for (int64_t off = 0; off < n; off += layout_.p2p_bytes) {
    const int64_t count = std::min<int64_t>(layout_.p2p_bytes, n - off);
    RETURN_IF_ERROR(WaitAtLeast(channel.sent, taken + 1, src_rank, "recv"));
    std::memcpy(bytes + off, mailbox, count);
    Publish(channel.taken, ++taken);
  }
  return absl::OkStatus();
}

absl::Status ShmCommunicator::Barrier() {
  if (!failure_.ok()) return failure_;
  return Round("barrier", nullptr);
}

}  // namespace shardserve
