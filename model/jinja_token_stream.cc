#include "model/jinja_token_stream.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace shardserve {
namespace jinja {

const Token& TokenStream::Peek() const { return tokens_[std::min(pos_ + 1, tokens_.size() - 1)]; }

void TokenStream::Advance() {
  if (pos_ + 1 < tokens_.size()) ++pos_;
}

bool TokenStream::IsOp(const char* op) const {
  return Cur().type == Token::Type::kOperator && Cur().value == op;
}

bool TokenStream::IsName(const char* name) const {
  return Cur().type == Token::Type::kName && Cur().value == name;
}

bool TokenStream::IsNameIn(const std::vector<std::string>& names) const {
  return Cur().type == Token::Type::kName &&
         std::find(names.begin(), names.end(), Cur().value) != names.end();
}

bool TokenStream::IsTupleEnd(const std::vector<std::string>& extra_ends) const {
  Token::Type type = Cur().type;
  return type == Token::Type::kVariableEnd || type == Token::Type::kBlockEnd ||
         type == Token::Type::kEnd || IsOp(")") || IsNameIn(extra_ends);
}

absl::Status TokenStream::ErrorAt(int line, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", message));
}

absl::Status TokenStream::ExpectOp(const char* op) {
  if (!IsOp(op))
    return Error(absl::StrCat("expected token '", op, "', got '", Describe(Cur()), "'"));
  Advance();
  return absl::OkStatus();
}

absl::Status TokenStream::ExpectType(Token::Type type, const char* what) {
  if (Cur().type != type) {
    return Error(absl::StrCat("expected token '", what, "', got '", Describe(Cur()), "'"));
  }
  Advance();
  return absl::OkStatus();
}

absl::StatusOr<std::string> TokenStream::ExpectName() {
  if (Cur().type != Token::Type::kName) {
    return Error(absl::StrCat("expected token 'name', got '", Describe(Cur()), "'"));
  }
  std::string name = Cur().value;
  Advance();
  return name;
}

std::string TokenStream::Describe(const Token& t) {
  switch (t.type) {
    case Token::Type::kVariableEnd:
      return "end of print statement";
    case Token::Type::kBlockEnd:
      return "end of statement block";
    case Token::Type::kVariableBegin:
      return "begin of print statement";
    case Token::Type::kBlockBegin:
      return "begin of statement block";
    case Token::Type::kEnd:
      return "end of template";
    case Token::Type::kText:
      return "template data";
    case Token::Type::kString:
      return "string";
    default:
      return t.value;
  }
}

}  // namespace jinja
}  // namespace shardserve
