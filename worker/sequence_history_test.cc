#include "worker/sequence_history.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

TEST(SequenceHistoryTest, TracksSeenTokensAndOutputCounts) {
  SequenceHistory history(std::vector<int32_t>{5, 3, 5});
  EXPECT_EQ(history.num_output_tokens(), 0);
  EXPECT_THAT(history.seen_token_ids(), UnorderedElementsAre(3, 5));
  EXPECT_TRUE(history.output_token_counts().empty());

  history.AppendOutput(7);
  history.AppendOutput(5);
  history.AppendOutput(7);
  EXPECT_EQ(history.num_output_tokens(), 3);
  EXPECT_THAT(history.prompt_token_ids(), ElementsAre(5, 3, 5));
  EXPECT_THAT(history.output_token_ids(), ElementsAre(7, 5, 7));
  EXPECT_THAT(history.seen_token_ids(), UnorderedElementsAre(3, 5, 7));
  // Prompt occurrences of 5 do not count: presence/frequency penalties see the output only.
  EXPECT_THAT(history.output_token_counts(), UnorderedElementsAre(Pair(7, 2), Pair(5, 1)));
}

}  // namespace
}  // namespace shardserve
