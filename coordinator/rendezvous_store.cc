#include "coordinator/rendezvous_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace shardserve {

namespace {

absl::Status Closed() { return absl::UnavailableError("rendezvous store is shut down"); }

}  // namespace

RendezvousStore::RendezvousStore(const Limits& limits) : limits_(limits) {}

absl::Status RendezvousStore::CheckKey(absl::string_view key) const {
  if (key.empty()) return absl::InvalidArgumentError("rendezvous key is empty");
  if (key.size() > limits_.max_key_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("rendezvous key of ", key.size(),
                                                   " bytes exceeds the limit of ",
                                                   limits_.max_key_bytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Duration RendezvousStore::ClampTimeout(absl::Duration timeout) const {
  return std::max(absl::ZeroDuration(), std::min(timeout, limits_.max_wait));
}

absl::Status RendezvousStore::Set(absl::string_view key, std::string value) {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  if (value.size() > limits_.max_value_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("value of rendezvous key '", key, "' is ",
                                                   value.size(), " bytes, over the limit of ",
                                                   limits_.max_value_bytes));
  }
  absl::MutexLock lock(&mu_);
  if (closed_) return Closed();
  auto it = values_.find(key);
  if (it != values_.end()) {
    it->second = std::move(value);
    return absl::OkStatus();
  }
  if (values_.size() + counters_.size() >= limits_.max_keys) {
    return absl::ResourceExhaustedError(absl::StrCat("rendezvous store holds its limit of ",
                                                     limits_.max_keys, " keys; refusing new key '",
                                                     key, "'"));
  }
  values_.emplace(std::string(key), std::move(value));
  // Waiters are woken by the Mutex itself: Await re-evaluates conditions on unlock.
  return absl::OkStatus();
}

absl::StatusOr<std::string> RendezvousStore::Get(absl::string_view key, absl::Duration timeout) {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  timeout = ClampTimeout(timeout);
  absl::MutexLock lock(&mu_);
  auto ready = [this, key]()
                   ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_ || values_.contains(key); };
  if (!ready() && timeout == absl::ZeroDuration()) {
    return absl::NotFoundError(absl::StrCat("rendezvous key '", key, "' is not set"));
  }
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (closed_) return Closed();
  auto it = values_.find(key);
  if (it == values_.end()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "rendezvous key '", key, "' was not set within ", absl::FormatDuration(timeout)));
  }
  return it->second;
}

absl::Status RendezvousStore::Wait(const std::vector<std::string>& keys, absl::Duration timeout) {
  if (keys.size() > limits_.max_keys_per_wait) {
    return absl::InvalidArgumentError(absl::StrCat(
        "wait for ", keys.size(), " keys exceeds the limit of ", limits_.max_keys_per_wait));
  }
  for (const std::string& key : keys) {
    if (absl::Status s = CheckKey(key); !s.ok()) return s;
  }
  timeout = ClampTimeout(timeout);
  absl::MutexLock lock(&mu_);
  auto ready = [this, &keys]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (closed_) return true;
    return std::all_of(keys.begin(), keys.end(),
                       [this](const std::string& k) { return values_.contains(k); });
  };
  if (mu_.AwaitWithTimeout(absl::Condition(&ready), timeout) && !closed_) {
    return absl::OkStatus();
  }
  return WaitFailure(keys, timeout);
}

absl::Status RendezvousStore::WaitFailure(const std::vector<std::string>& keys,
                                          absl::Duration timeout) const {
  if (closed_) return Closed();
  std::vector<absl::string_view> missing;
  for (const std::string& key : keys) {
    if (!values_.contains(key)) missing.push_back(key);
  }
  constexpr size_t kMaxNamed = 8;
  std::string named =
      absl::StrJoin(missing.begin(), missing.begin() + std::min(missing.size(), kMaxNamed), ", ");
  if (missing.size() > kMaxNamed) absl::StrAppend(&named, ", ...");
  return absl::DeadlineExceededError(absl::StrCat(missing.size(), " of ", keys.size(),
                                                  " rendezvous keys not set within ",
                                                  absl::FormatDuration(timeout), ": ", named));
}

absl::StatusOr<int64_t> RendezvousStore::Add(absl::string_view key, int64_t delta) {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  if (closed_) return Closed();
  auto it = counters_.find(key);
  if (it == counters_.end()) {
    if (values_.size() + counters_.size() >= limits_.max_keys) {
      return absl::ResourceExhaustedError(absl::StrCat("rendezvous store holds its limit of ",
                                                       limits_.max_keys,
                                                       " keys; refusing new counter '", key, "'"));
    }
    it = counters_.emplace(std::string(key), 0).first;
  }
  it->second += delta;
  return it->second;
}

size_t RendezvousStore::RemovePrefix(absl::string_view prefix) {
  absl::MutexLock lock(&mu_);
  size_t removed = 0;
  auto erase_matching = [&](auto& map) {
    for (auto it = map.begin(); it != map.end();) {
      if (absl::StartsWith(it->first, prefix)) {
        map.erase(it++);
        ++removed;
      } else {
        ++it;
      }
    }
  };
  erase_matching(values_);
  erase_matching(counters_);
  return removed;
}

size_t RendezvousStore::size() const {
  absl::MutexLock lock(&mu_);
  return values_.size() + counters_.size();
}

void RendezvousStore::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

}  // namespace shardserve
