#include "coordinator/active_requests.h"

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace shardserve {

ActiveRequests::ActiveRequests(absl::Duration poll_period)
    : poll_period_(poll_period), watcher_([this] { Watch(); }) {}

ActiveRequests::~ActiveRequests() {
  stop_.Notify();
  watcher_.join();
  absl::MutexLock lock(&mu_);
  LOG_IF(ERROR, !entries_.empty()) << entries_.size() << " requests still registered at shutdown";
}

absl::Status ActiveRequests::Add(const std::string& id, grpc::ServerContextBase* client_call,
                                 grpc::ClientContext* group_call) {
  absl::MutexLock lock(&mu_);
  const bool inserted = entries_.try_emplace(id, Entry{client_call, group_call}).second;
  if (!inserted) {
    return absl::AlreadyExistsError(
        absl::StrCat("a request with id '", id, "' is already running; ids must be unique"));
  }
  return absl::OkStatus();
}

void ActiveRequests::Remove(const std::string& id) {
  absl::MutexLock lock(&mu_);
  entries_.erase(id);
}

void ActiveRequests::SetGroupCall(const std::string& id, grpc::ClientContext* group_call) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  it->second.group_call = group_call;
  if (it->second.cancel_sent) group_call->TryCancel();
}

bool ActiveRequests::Abort(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  it->second.aborted = true;
  if (!it->second.cancel_sent) {
    it->second.cancel_sent = true;
    it->second.group_call->TryCancel();
  }
  return true;
}

bool ActiveRequests::IsAborted(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  return it != entries_.end() && it->second.aborted;
}

int ActiveRequests::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(entries_.size());
}

void ActiveRequests::Watch() {
  while (!stop_.WaitForNotificationWithTimeout(poll_period_)) {
    absl::MutexLock lock(&mu_);
    for (auto& [id, entry] : entries_) {
      if (entry.cancel_sent || entry.client_call == nullptr) continue;
      if (entry.client_call->IsCancelled()) {
        entry.cancel_sent = true;
        entry.group_call->TryCancel();
      }
    }
  }
}

}  // namespace shardserve
