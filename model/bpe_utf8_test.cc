// Expected replacements are what Python's bytes.decode("utf-8", errors="replace") returns.
#include "model/bpe_utf8.h"

#include <gtest/gtest.h>

namespace shardserve {
namespace {

constexpr char kFffd[] = "\xEF\xBF\xBD";

TEST(Utf8Test, LossyReplacesMaximalSubparts) {
  EXPECT_EQ(Utf8Lossy("plain"), "plain");
  EXPECT_EQ(Utf8Lossy("caf\xC3"), std::string("caf") + kFffd);
  // E2 82 is one maximal subpart, then a space.
  EXPECT_EQ(Utf8Lossy("\xE2\x82 x"), std::string(kFffd) + " x");
  // Overlong C0 AF: two bytes that can never start or continue a sequence.
  EXPECT_EQ(Utf8Lossy("\xC0\xAF"), std::string(kFffd) + kFffd);
  // Surrogate ED A0 80: ED's second byte must be below A0, so three replacements.
  EXPECT_EQ(Utf8Lossy("\xED\xA0\x80"), std::string(kFffd) + kFffd + kFffd);
  // F0 9F 98 then end: one replacement for the truncated emoji.
  EXPECT_EQ(Utf8Lossy("\xF0\x9F\x98"), kFffd);
  EXPECT_EQ(Utf8Lossy("\xF4\x90\x80\x80"), std::string(kFffd) + kFffd + kFffd + kFffd);
}

TEST(Utf8Test, IncompleteTail) {
  EXPECT_EQ(Utf8IncompleteTailBytes(""), 0u);
  EXPECT_EQ(Utf8IncompleteTailBytes("abc"), 0u);
  EXPECT_EQ(Utf8IncompleteTailBytes("a\xE2"), 1u);
  EXPECT_EQ(Utf8IncompleteTailBytes("a\xE2\x82"), 2u);
  EXPECT_EQ(Utf8IncompleteTailBytes("a\xE2\x82\xAC"), 0u);
  EXPECT_EQ(Utf8IncompleteTailBytes("\xF0\x9F\x98"), 3u);
  // E0 80 can never become a character: nothing to wait for.
  EXPECT_EQ(Utf8IncompleteTailBytes("\xE0\x80"), 0u);
  EXPECT_EQ(Utf8IncompleteTailBytes("\xFF"), 0u);
  EXPECT_EQ(Utf8IncompleteTailBytes("\x80"), 0u);
}

TEST(Utf8Test, Validity) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("\xF0\x9F\x98\x80 \xE6\xBC\xA2"));
  EXPECT_FALSE(IsValidUtf8("\xF0\x9F\x98"));
  EXPECT_EQ(Utf8ValidPrefixBytes("ab\xFF"
                                 "cd"),
            2u);
}

}  // namespace
}  // namespace shardserve
