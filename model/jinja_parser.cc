#include "model/jinja_parser.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "model/jinja_expression_parser.h"
#include "model/jinja_token_stream.h"

namespace shardserve {
namespace jinja {
namespace {

std::string QuotedList(const std::vector<std::string>& names) {
  std::vector<std::string> quoted;
  for (const auto& name : names) quoted.push_back("'" + name + "'");
  return absl::StrJoin(quoted, " or ");
}

// Statements; everything inside tags goes to the ExpressionParser.
class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : stream_(tokens), expressions_(&stream_) {}

  absl::StatusOr<Body> ParseTemplate() {
    Body body;
    std::string end;
    RETURN_IF_ERROR(ParseBody({}, &body, &end));
    return body;
  }

 private:
  // Statements until a block tag named in `ends`; that tag's name is consumed and stored in *end.
  absl::Status ParseBody(std::vector<std::string> ends, Body* body, std::string* end);
  absl::StatusOr<StmtPtr> ParseStatement(const std::vector<std::string>& enclosing_ends);
  absl::StatusOr<StmtPtr> ParseIf(int line);
  absl::StatusOr<StmtPtr> ParseFor(int line);
  absl::StatusOr<StmtPtr> ParseSet(int line);
  absl::StatusOr<StmtPtr> ParseMacro(int line);
  absl::StatusOr<StmtPtr> ParseScope(int line, const std::string& tag);
  absl::StatusOr<StmtPtr> ParseFilterBlock(int line);

  TokenStream stream_;
  ExpressionParser expressions_;
  int loop_depth_ = 0;
};

absl::Status Parser::ParseBody(std::vector<std::string> ends, Body* body, std::string* end) {
  TokenStream::DepthGuard guard(&stream_);
  if (guard.exceeded()) return stream_.Error("template nesting is too deep");
  while (true) {
    const Token& t = stream_.Cur();
    switch (t.type) {
      case Token::Type::kText: {
        auto stmt = std::make_unique<Stmt>(Stmt::Kind::kText, t.line);
        stmt->text = t.value;
        body->push_back(std::move(stmt));
        stream_.Advance();
        break;
      }
      case Token::Type::kVariableBegin: {
        auto stmt = std::make_unique<Stmt>(Stmt::Kind::kOutput, t.line);
        stream_.Advance();
        ASSIGN_OR_RETURN(stmt->expr, expressions_.ParseTuple(true, {}, false));
        RETURN_IF_ERROR(stream_.ExpectType(Token::Type::kVariableEnd, "end of print statement"));
        body->push_back(std::move(stmt));
        break;
      }
      case Token::Type::kBlockBegin: {
        stream_.Advance();
        if (stream_.Cur().type != Token::Type::kName) return stream_.Error("tag name expected");
        if (stream_.IsNameIn(ends)) {
          *end = stream_.Cur().value;
          stream_.Advance();
          return absl::OkStatus();
        }
        ASSIGN_OR_RETURN(StmtPtr stmt, ParseStatement(ends));
        body->push_back(std::move(stmt));
        break;
      }
      case Token::Type::kEnd:
        if (!ends.empty()) {
          return stream_.Error(
              "Unexpected end of template. Jinja was looking for the following tags: " +
              QuotedList(ends) + ".");
        }
        return absl::OkStatus();
      default:
        return stream_.Error(absl::StrCat("unexpected '", TokenStream::Describe(t), "'"));
    }
  }
}

absl::StatusOr<StmtPtr> Parser::ParseStatement(const std::vector<std::string>& enclosing_ends) {
  int line = stream_.Cur().line;
  std::string tag = stream_.Cur().value;
  stream_.Advance();
  if (tag == "if") return ParseIf(line);
  if (tag == "for") return ParseFor(line);
  if (tag == "set") return ParseSet(line);
  if (tag == "macro") return ParseMacro(line);
  if (tag == "with" || tag == "generation") return ParseScope(line, tag);
  if (tag == "filter") return ParseFilterBlock(line);
  if (tag == "break" || tag == "continue") {
    if (loop_depth_ == 0) return TokenStream::ErrorAt(line, "'" + tag + "' outside loop");
    RETURN_IF_ERROR(stream_.ExpectBlockEnd());
    return std::make_unique<Stmt>(tag == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue,
                                  line);
  }
  static const char* const kUnsupported[] = {"include", "import",     "from", "extends", "block",
                                             "call",    "autoescape", "do",   "trans"};
  for (const char* unsupported : kUnsupported) {
    if (tag == unsupported)
      return TokenStream::ErrorAt(line, "the '" + tag + "' tag is not supported");
  }
  std::string message = "Encountered unknown tag '" + tag + "'.";
  if (!enclosing_ends.empty()) {
    message += " Jinja was looking for the following tags: " + QuotedList(enclosing_ends) + ".";
  }
  return TokenStream::ErrorAt(line, message);
}

absl::StatusOr<StmtPtr> Parser::ParseIf(int line) {
  auto stmt = std::make_unique<Stmt>(Stmt::Kind::kIf, line);
  ASSIGN_OR_RETURN(ExprPtr condition, expressions_.ParseTuple(false, {}, false));
  RETURN_IF_ERROR(stream_.ExpectBlockEnd());
  while (true) {
    Body body;
    std::string end;
    RETURN_IF_ERROR(ParseBody({"elif", "else", "endif"}, &body, &end));
    stmt->conditions.push_back(std::move(condition));
    stmt->bodies.push_back(std::move(body));
    if (end == "elif") {
      ASSIGN_OR_RETURN(condition, expressions_.ParseTuple(false, {}, false));
      RETURN_IF_ERROR(stream_.ExpectBlockEnd());
      continue;
    }
    RETURN_IF_ERROR(stream_.ExpectBlockEnd());
    if (end == "else") {
      RETURN_IF_ERROR(ParseBody({"endif"}, &stmt->else_body, &end));
      RETURN_IF_ERROR(stream_.ExpectBlockEnd());
    }
    return stmt;
  }
}

absl::StatusOr<StmtPtr> Parser::ParseFor(int line) {
  auto stmt = std::make_unique<Stmt>(Stmt::Kind::kFor, line);
  ASSIGN_OR_RETURN(stmt->target, expressions_.ParseAssignTarget({"in"}, false));
  if (!stream_.IsName("in"))
    return stream_.Error("expected token 'in', got '" + TokenStream::Describe(stream_.Cur()) + "'");
  stream_.Advance();
  ASSIGN_OR_RETURN(stmt->expr, expressions_.ParseTuple(false, {"recursive"}, false));
  if (stream_.IsName("if")) {
    stream_.Advance();
    ASSIGN_OR_RETURN(stmt->condition, expressions_.ParseCondExpr());
  }
  if (stream_.IsName("recursive")) return stream_.Error("recursive for loops are not supported");
  RETURN_IF_ERROR(stream_.ExpectBlockEnd());
  std::string end;
  ++loop_depth_;
  absl::Status status = ParseBody({"endfor", "else"}, &stmt->body, &end);
  --loop_depth_;
  RETURN_IF_ERROR(status);
  RETURN_IF_ERROR(stream_.ExpectBlockEnd());
  if (end == "else") {
    RETURN_IF_ERROR(ParseBody({"endfor"}, &stmt->else_body, &end));
    RETURN_IF_ERROR(stream_.ExpectBlockEnd());
  }
  return stmt;
}

absl::StatusOr<StmtPtr> Parser::ParseSet(int line) {
  auto stmt = std::make_unique<Stmt>(Stmt::Kind::kSet, line);
  ASSIGN_OR_RETURN(stmt->target, expressions_.ParseAssignTarget({}, true));
  if (stream_.IsOp("=")) {
    stream_.Advance();
    ASSIGN_OR_RETURN(stmt->expr, expressions_.ParseTuple(true, {}, false));
    RETURN_IF_ERROR(stream_.ExpectBlockEnd());
    return stmt;
  }
  stmt->kind = Stmt::Kind::kSetBlock;
  if (stream_.IsOp("|")) {
    ASSIGN_OR_RETURN(stmt->filter, expressions_.ParseFilter(nullptr, false));
  }
  RETURN_IF_ERROR(stream_.ExpectBlockEnd());
  std::string end;
  RETURN_IF_ERROR(ParseBody({"endset"}, &stmt->body, &end));
  RETURN_IF_ERROR(stream_.ExpectBlockEnd());
  return stmt;
}

absl::StatusOr<StmtPtr> Parser::ParseMacro(int line) {
  auto stmt = std::make_unique<Stmt>(Stmt::Kind::kMacro, line);
  ASSIGN_OR_RETURN(stmt->name, stream_.ExpectName());
  RETURN_IF_ERROR(stream_.ExpectOp("("));
  bool any_default = false;
  while (!stream_.IsOp(")")) {
    if (!stmt->params.empty()) RETURN_IF_ERROR(stream_.ExpectOp(","));
    ASSIGN_OR_RETURN(std::string param, stream_.ExpectName());
    ExprPtr default_value;
    if (stream_.IsOp("=")) {
      stream_.Advance();
      ASSIGN_OR_RETURN(default_value, expressions_.ParseCondExpr());
      any_default = true;
    } else if (any_default) {
      return stream_.Error("non-default argument follows default argument");
    }
    stmt->params.push_back(std::move(param));
    stmt->defaults.push_back(std::move(default_value));
  }
  stream_.Advance();
  RETURN_IF_ERROR(stream_.ExpectBlockEnd());
  int saved_loop_depth = loop_depth_;
  loop_depth_ = 0;
  expressions_.PushMacro(stmt.get());
  std::string end;
  absl::Status status = ParseBody({"endmacro"}, &stmt->body, &end);
  expressions_.PopMacro();
  loop_depth_ = saved_loop_depth;
  RETURN_IF_ERROR(status);
  RETURN_IF_ERROR(stream_.ExpectBlockEnd());
  return stmt;
}

absl::StatusOr<StmtPtr> Parser::ParseScope(int line, const std::string& tag) {
  auto stmt = std::make_unique<Stmt>(Stmt::Kind::kScope, line);
  while (tag == "with" && stream_.Cur().type != Token::Type::kBlockEnd) {
    if (!stmt->assignments.empty()) RETURN_IF_ERROR(stream_.ExpectOp(","));
    ASSIGN_OR_RETURN(AssignTarget target, expressions_.ParseAssignTarget({}, false));
    RETURN_IF_ERROR(stream_.ExpectOp("="));
    ASSIGN_OR_RETURN(ExprPtr value, expressions_.ParseCondExpr());
    stmt->assignments.emplace_back(std::move(target), std::move(value));
  }
  RETURN_IF_ERROR(stream_.ExpectBlockEnd());
  std::string end;
  RETURN_IF_ERROR(ParseBody({"end" + tag}, &stmt->body, &end));
  RETURN_IF_ERROR(stream_.ExpectBlockEnd());
  return stmt;
}

absl::StatusOr<StmtPtr> Parser::ParseFilterBlock(int line) {
  auto stmt = std::make_unique<Stmt>(Stmt::Kind::kFilterBlock, line);
  ASSIGN_OR_RETURN(stmt->filter, expressions_.ParseFilter(nullptr, true));
  RETURN_IF_ERROR(stream_.ExpectBlockEnd());
  std::string end;
  RETURN_IF_ERROR(ParseBody({"endfilter"}, &stmt->body, &end));
  RETURN_IF_ERROR(stream_.ExpectBlockEnd());
  return stmt;
}

// name | ns.attr | (targets) | targets, separated by commas.

}  // namespace

absl::StatusOr<Body> JinjaParser::Parse(const std::vector<Token>& tokens) {
  if (tokens.empty() || tokens.back().type != Token::Type::kEnd) {
    return absl::InvalidArgumentError("token stream must end with an end token");
  }
  return Parser(tokens).ParseTemplate();
}

}  // namespace jinja
}  // namespace shardserve
