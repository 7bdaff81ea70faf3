// A cursor over Jinja tokens for the statement and expression parsers: lookahead, expectations
// with jinja2's error wording ("line N: expected token 'x', got 'y'"), and the nesting depth the
// parsers share so that deeply nested input fails instead of exhausting the stack.
#ifndef SHARDSERVE_MODEL_JINJA_TOKEN_STREAM_H_
#define SHARDSERVE_MODEL_JINJA_TOKEN_STREAM_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/jinja_lexer.h"

namespace shardserve {
namespace jinja {

class TokenStream {
 public:
  // Counts one level of nesting for as long as it lives.
  class DepthGuard {
   public:
    explicit DepthGuard(TokenStream* stream) : stream_(stream) { ++stream_->depth_; }
    ~DepthGuard() { --stream_->depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;
    bool exceeded() const { return stream_->depth_ > kMaxNesting; }

   private:
    TokenStream* stream_;
  };

  // REQUIRES: `tokens` ends with a kEnd token and outlives the stream.
  explicit TokenStream(const std::vector<Token>& tokens) : tokens_(tokens) {}

  const Token& Cur() const { return tokens_[pos_]; }
  const Token& Peek() const;
  void Advance();

  bool IsOp(const char* op) const;
  bool IsName(const char* name) const;
  bool IsNameIn(const std::vector<std::string>& names) const;
  // The end of a tuple: the end of the tag, `)`, or one of `extra_ends` (e.g. `in`).
  bool IsTupleEnd(const std::vector<std::string>& extra_ends) const;

  absl::Status Error(const std::string& message) const { return ErrorAt(Cur().line, message); }
  static absl::Status ErrorAt(int line, const std::string& message);
  absl::Status ExpectOp(const char* op);
  absl::Status ExpectType(Token::Type type, const char* what);
  absl::Status ExpectBlockEnd() {
    return ExpectType(Token::Type::kBlockEnd, "end of statement block");
  }
  absl::StatusOr<std::string> ExpectName();

  // How jinja2 names a token in error messages.
  static std::string Describe(const Token& token);

 private:
  static constexpr int kMaxNesting = 200;

  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_TOKEN_STREAM_H_
