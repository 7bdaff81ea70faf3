#include "model/incremental_detokenizer.h"

#include "common/status_macros.h"
#include "model/bpe_utf8.h"

namespace shardserve {

absl::StatusOr<std::string> IncrementalDetokenizer::Add(int32_t id) {
  ASSIGN_OR_RETURN(absl::string_view piece, tokenizer_.TokenToPiece(id));
  if (skip_special_tokens_ && tokenizer_.IsSpecial(id)) return std::string();
  pending_.append(piece.data(), piece.size());
  const size_t held = Utf8IncompleteTailBytes(pending_);
  const size_t ready = pending_.size() - held;
  if (ready == 0) return std::string();
  std::string text = Utf8Lossy(absl::string_view(pending_).substr(0, ready));
  pending_.erase(0, ready);
  return text;
}

std::string IncrementalDetokenizer::Finish() {
  std::string text = Utf8Lossy(pending_);
  pending_.clear();
  return text;
}

}  // namespace shardserve
