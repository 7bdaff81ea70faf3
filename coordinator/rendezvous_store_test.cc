#include "coordinator/rendezvous_store.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

TEST(RendezvousStoreTest, SetThenGet) {
  RendezvousStore store;
  ASSERT_TRUE(store.Set("a", "1").ok());
  ASSERT_TRUE(store.Set("a", "2").ok());  // replaces
  absl::StatusOr<std::string> v = store.Get("a", absl::ZeroDuration());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "2");
  EXPECT_EQ(store.size(), 1u);
}

TEST(RendezvousStoreTest, GetAbsentWithoutWaitIsNotFound) {
  RendezvousStore store;
  EXPECT_EQ(store.Get("nope", absl::ZeroDuration()).status().code(), absl::StatusCode::kNotFound);
}

TEST(RendezvousStoreTest, BlockingGetIsReleasedByLaterSet) {
  RendezvousStore store;
  absl::StatusOr<std::string> got;
  absl::Time start = absl::Now();
  std::thread reader([&] { got = store.Get("k", absl::Seconds(20)); });
  absl::SleepFor(absl::Milliseconds(50));
  ASSERT_TRUE(store.Set("k", std::string("v\0w", 3)).ok());
  reader.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, std::string("v\0w", 3));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST(RendezvousStoreTest, GetTimesOut) {
  RendezvousStore store;
  absl::Time start = absl::Now();
  absl::StatusOr<std::string> got = store.Get("k", absl::Milliseconds(100));
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(took, absl::Milliseconds(90));
  EXPECT_LT(took, absl::Seconds(5));
}

TEST(RendezvousStoreTest, WaitForSeveralKeys) {
  RendezvousStore store;
  ASSERT_TRUE(store.Set("a", "").ok());
  absl::Status waited;
  std::thread waiter([&] { waited = store.Wait({"a", "b", "c"}, absl::Seconds(20)); });
  absl::SleepFor(absl::Milliseconds(20));
  ASSERT_TRUE(store.Set("b", "x").ok());
  absl::SleepFor(absl::Milliseconds(20));
  ASSERT_TRUE(store.Set("c", "y").ok());
  waiter.join();
  EXPECT_TRUE(waited.ok()) << waited;
  EXPECT_TRUE(store.Wait({}, absl::ZeroDuration()).ok());
}

TEST(RendezvousStoreTest, WaitTimeoutNamesMissingKeys) {
  RendezvousStore store;
  ASSERT_TRUE(store.Set("a", "").ok());
  absl::Status s = store.Wait({"a", "rank_1"}, absl::Milliseconds(50));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(s.message().find("1 of 2"), std::string::npos) << s;
  EXPECT_NE(s.message().find("rank_1"), std::string::npos) << s;
}

TEST(RendezvousStoreTest, AddCountsFromZeroConcurrently) {
  RendezvousStore store;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) ASSERT_TRUE(store.Add("n", 1).ok());
    });
  }
  for (std::thread& t : threads) t.join();
  absl::StatusOr<int64_t> v = store.Add("n", 0);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 400);
  EXPECT_EQ(*store.Add("n", -401), -1);
  // Counters are not byte values.
  EXPECT_EQ(store.Get("n", absl::ZeroDuration()).status().code(), absl::StatusCode::kNotFound);
}

TEST(RendezvousStoreTest, RefusesAbuseClearly) {
  RendezvousStore::Limits limits;
  limits.max_key_bytes = 8;
  limits.max_value_bytes = 16;
  limits.max_keys = 2;
  limits.max_keys_per_wait = 3;
  RendezvousStore store(limits);
  EXPECT_EQ(store.Set("", "x").code(), absl::StatusCode::kInvalidArgument);
  absl::Status long_key = store.Set("123456789", "x");
  EXPECT_EQ(long_key.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(long_key.message().find("limit of 8"), std::string::npos) << long_key;
  EXPECT_EQ(store.Set("k", std::string(17, 'x')).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(store.Set("k", std::string(16, 'x')).ok());
  ASSERT_TRUE(store.Add("c", 1).ok());
  EXPECT_EQ(store.Set("k2", "x").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store.Add("c2", 1).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(store.Set("k", "replace is fine").ok());
  EXPECT_EQ(store.Wait({"a", "b", "c", "d"}, absl::ZeroDuration()).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RendezvousStoreTest, WaitIsCappedAtMaxWait) {
  RendezvousStore::Limits limits;
  limits.max_wait = absl::Milliseconds(50);
  RendezvousStore store(limits);
  absl::Time start = absl::Now();
  EXPECT_EQ(store.Get("k", absl::Hours(1)).status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(RendezvousStoreTest, CloseReleasesWaiters) {
  RendezvousStore store;
  absl::Status waited;
  std::thread waiter([&] { waited = store.Wait({"never"}, absl::Seconds(30)); });
  absl::SleepFor(absl::Milliseconds(30));
  store.Close();
  waiter.join();
  EXPECT_EQ(waited.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(store.Set("k", "v").code(), absl::StatusCode::kUnavailable);
}

TEST(RendezvousStoreTest, RemovePrefix) {
  RendezvousStore store;
  ASSERT_TRUE(store.Set("g/0/a", "").ok());
  ASSERT_TRUE(store.Set("g/0/b", "").ok());
  ASSERT_TRUE(store.Add("g/0/n", 1).ok());
  ASSERT_TRUE(store.Set("g/1/a", "").ok());
  EXPECT_EQ(store.RemovePrefix("g/0/"), 3u);
  EXPECT_EQ(store.size(), 1u);
  EXPECT_TRUE(store.Get("g/1/a", absl::ZeroDuration()).ok());
}

}  // namespace
}  // namespace shardserve
