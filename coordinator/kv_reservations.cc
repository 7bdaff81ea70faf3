#include "coordinator/kv_reservations.h"

#include <algorithm>
#include <limits>

#include "glog/logging.h"

namespace shardserve {

KvReservations::Handle::Handle(KvReservations* owner, int32_t group_id, uint64_t id)
    : owner_(owner), group_id_(group_id), id_(id) {}

KvReservations::Handle::Handle(Handle&& other) noexcept
    : owner_(other.owner_), group_id_(other.group_id_), id_(other.id_) {
  other.owner_ = nullptr;
}

KvReservations::Handle& KvReservations::Handle::operator=(Handle&& other) noexcept {
  if (this == &other) return *this;
  if (owner_ != nullptr) owner_->Release(group_id_, id_);
  owner_ = other.owner_;
  group_id_ = other.group_id_;
  id_ = other.id_;
  other.owner_ = nullptr;
  return *this;
}

KvReservations::Handle::~Handle() {
  if (owner_ != nullptr) owner_->Release(group_id_, id_);
}

KvReservations::Handle KvReservations::Reserve(int32_t group_id, int32_t blocks, uint64_t mark) {
  CHECK_GE(blocks, 0);
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_id_++;
  groups_[group_id].emplace(id, Entry{blocks, mark});
  return Handle(this, group_id, id);
}

int32_t KvReservations::Reserved(int32_t group_id, uint64_t report_sequence) {
  absl::MutexLock lock(&mu_);
  auto group = groups_.find(group_id);
  if (group == groups_.end()) return 0;
  int64_t total = 0;
  for (auto it = group->second.begin(); it != group->second.end();) {
    if (it->second.mark < report_sequence) {
      group->second.erase(it++);  // the report's call was issued after the decision
      continue;
    }
    total += it->second.blocks;
    ++it;
  }
  if (group->second.empty()) groups_.erase(group);
  return static_cast<int32_t>(std::min<int64_t>(total, std::numeric_limits<int32_t>::max()));
}

int KvReservations::NumReservations(int32_t group_id) const {
  absl::MutexLock lock(&mu_);
  auto group = groups_.find(group_id);
  return group == groups_.end() ? 0 : static_cast<int>(group->second.size());
}

void KvReservations::Release(int32_t group_id, uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto group = groups_.find(group_id);
  if (group == groups_.end()) return;  // dropped by a newer report already
  group->second.erase(id);
  if (group->second.empty()) groups_.erase(group);
}

}  // namespace shardserve
