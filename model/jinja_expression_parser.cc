#include "model/jinja_expression_parser.h"

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shardserve {
namespace jinja {
namespace {

ExprPtr MakeExpr(Expr::Kind kind, int line) { return std::make_unique<Expr>(kind, line); }

}  // namespace

absl::StatusOr<AssignTarget> ExpressionParser::ParseAssignTarget(
    std::vector<std::string> extra_ends, bool with_namespace) {
  AssignTarget tuple;
  while (true) {
    if (!tuple.elements.empty()) RETURN_IF_ERROR(tokens_->ExpectOp(","));
    if (tokens_->IsTupleEnd(extra_ends) || tokens_->IsOp("=")) break;
    AssignTarget element;
    if (tokens_->IsOp("(")) {
      tokens_->Advance();
      ASSIGN_OR_RETURN(element, ParseAssignTarget({}, with_namespace));
      RETURN_IF_ERROR(tokens_->ExpectOp(")"));
    } else if (tokens_->Cur().type == Token::Type::kName &&
               !tokens_->IsNameIn({"true", "false", "True", "False", "none", "None"})) {
      element.name = tokens_->Cur().value;
      tokens_->Advance();
      if (with_namespace && tokens_->IsOp(".")) {
        tokens_->Advance();
        ASSIGN_OR_RETURN(element.attribute, tokens_->ExpectName());
      }
    } else {
      return tokens_->Error("can't assign to '" + TokenStream::Describe(tokens_->Cur()) + "'");
    }
    tuple.elements.push_back(std::move(element));
    if (!tokens_->IsOp(",")) break;
    tuple.is_tuple = true;
  }
  if (tuple.elements.empty()) return tokens_->Error("expected an assignment target");
  if (!tuple.is_tuple) return std::move(tuple.elements[0]);
  return tuple;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseTuple(bool with_condexpr,
                                                     std::vector<std::string> extra_ends,
                                                     bool explicit_parentheses) {
  int line = tokens_->Cur().line;
  auto tuple = MakeExpr(Expr::Kind::kTuple, line);
  bool is_tuple = false;
  while (true) {
    if (!tuple->items.empty()) RETURN_IF_ERROR(tokens_->ExpectOp(","));
    if (tokens_->IsTupleEnd(extra_ends)) break;
    ExprPtr item;
    if (with_condexpr) {
      ASSIGN_OR_RETURN(item, ParseCondExpr());
    } else {
      ASSIGN_OR_RETURN(item, ParseOr());
    }
    tuple->items.push_back(std::move(item));
    if (!tokens_->IsOp(",")) break;
    is_tuple = true;
  }
  if (!is_tuple) {
    if (!tuple->items.empty()) return std::move(tuple->items[0]);
    if (!explicit_parentheses) {
      return tokens_->Error("Expected an expression, got '" +
                            TokenStream::Describe(tokens_->Cur()) + "'");
    }
  }
  return tuple;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseCondExpr() {
  ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
  while (tokens_->IsName("if")) {
    auto cond = MakeExpr(Expr::Kind::kCondExpr, tokens_->Cur().line);
    tokens_->Advance();
    ASSIGN_OR_RETURN(ExprPtr test, ParseOr());
    ExprPtr otherwise;
    if (tokens_->IsName("else")) {
      tokens_->Advance();
      ASSIGN_OR_RETURN(otherwise, ParseCondExpr());
    }
    cond->items.push_back(std::move(expr));
    cond->items.push_back(std::move(test));
    cond->items.push_back(std::move(otherwise));
    expr = std::move(cond);
  }
  return expr;
}

absl::StatusOr<ExprPtr> ExpressionParser::Binary(ExprPtr left, std::string op, ExprPtr right) {
  auto node = MakeExpr(Expr::Kind::kBinary, left->line);
  node->name = std::move(op);
  node->items.push_back(std::move(left));
  node->items.push_back(std::move(right));
  return node;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseOr() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
  while (tokens_->IsName("or")) {
    tokens_->Advance();
    ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
    ASSIGN_OR_RETURN(left, Binary(std::move(left), "or", std::move(right)));
  }
  return left;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseAnd() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
  while (tokens_->IsName("and")) {
    tokens_->Advance();
    ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
    ASSIGN_OR_RETURN(left, Binary(std::move(left), "and", std::move(right)));
  }
  return left;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseNot() {
  if (tokens_->IsName("not")) {
    TokenStream::DepthGuard guard(tokens_);
    if (guard.exceeded()) return tokens_->Error("expression nesting is too deep");
    auto node = MakeExpr(Expr::Kind::kUnary, tokens_->Cur().line);
    node->name = "not";
    tokens_->Advance();
    ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
    node->items.push_back(std::move(operand));
    return node;
  }
  return ParseCompare();
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseCompare() {
  ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
  auto node = MakeExpr(Expr::Kind::kCompare, first->line);
  node->items.push_back(std::move(first));
  while (true) {
    std::string op;
    if (tokens_->Cur().type == Token::Type::kOperator &&
        (tokens_->IsOp("==") || tokens_->IsOp("!=") || tokens_->IsOp("<") || tokens_->IsOp("<=") ||
         tokens_->IsOp(">") || tokens_->IsOp(">="))) {
      op = tokens_->Cur().value;
      tokens_->Advance();
    } else if (tokens_->IsName("in")) {
      op = "in";
      tokens_->Advance();
    } else if (tokens_->IsName("not") && tokens_->Peek().type == Token::Type::kName &&
               tokens_->Peek().value == "in") {
      op = "notin";
      tokens_->Advance();
      tokens_->Advance();
    } else {
      break;
    }
    ASSIGN_OR_RETURN(ExprPtr operand, ParseMath1());
    node->ops.push_back(op);
    node->items.push_back(std::move(operand));
  }
  if (node->ops.empty()) return std::move(node->items[0]);
  return node;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseMath1() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseConcat());
  while (tokens_->IsOp("+") || tokens_->IsOp("-")) {
    std::string op = tokens_->Cur().value;
    tokens_->Advance();
    ASSIGN_OR_RETURN(ExprPtr right, ParseConcat());
    ASSIGN_OR_RETURN(left, Binary(std::move(left), op, std::move(right)));
  }
  return left;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseConcat() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseMath2());
  while (tokens_->IsOp("~")) {
    tokens_->Advance();
    ASSIGN_OR_RETURN(ExprPtr right, ParseMath2());
    ASSIGN_OR_RETURN(left, Binary(std::move(left), "~", std::move(right)));
  }
  return left;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseMath2() {
  ASSIGN_OR_RETURN(ExprPtr left, ParsePow());
  while (tokens_->IsOp("*") || tokens_->IsOp("/") || tokens_->IsOp("//") || tokens_->IsOp("%")) {
    std::string op = tokens_->Cur().value;
    tokens_->Advance();
    ASSIGN_OR_RETURN(ExprPtr right, ParsePow());
    ASSIGN_OR_RETURN(left, Binary(std::move(left), op, std::move(right)));
  }
  return left;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParsePow() {
  ASSIGN_OR_RETURN(ExprPtr left, ParseUnary(true));
  while (tokens_->IsOp("**")) {
    tokens_->Advance();
    ASSIGN_OR_RETURN(ExprPtr right, ParseUnary(true));
    ASSIGN_OR_RETURN(left, Binary(std::move(left), "**", std::move(right)));
  }
  return left;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseUnary(bool with_filter) {
  TokenStream::DepthGuard guard(tokens_);
  if (guard.exceeded()) return tokens_->Error("expression nesting is too deep");
  ExprPtr node;
  if (tokens_->IsOp("-") || tokens_->IsOp("+")) {
    node = MakeExpr(Expr::Kind::kUnary, tokens_->Cur().line);
    node->name = tokens_->Cur().value;
    tokens_->Advance();
    ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(false));
    node->items.push_back(std::move(operand));
  } else {
    ASSIGN_OR_RETURN(node, ParsePrimary());
  }
  ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
  if (with_filter) {
    ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
  }
  return node;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParsePrimary() {
  const Token& t = tokens_->Cur();
  int line = t.line;
  switch (t.type) {
    case Token::Type::kName: {
      auto node = MakeExpr(Expr::Kind::kConst, line);
      if (t.value == "true" || t.value == "True") {
        node->value = Value::Bool(true);
      } else if (t.value == "false" || t.value == "False") {
        node->value = Value::Bool(false);
      } else if (t.value == "none" || t.value == "None") {
        node->value = Value::None();
      } else {
        node->kind = Expr::Kind::kName;
        node->name = t.value;
        if (!macros_.empty() && t.value == "varargs") macros_.back()->takes_varargs = true;
        if (!macros_.empty() && t.value == "kwargs") macros_.back()->takes_kwargs = true;
      }
      tokens_->Advance();
      return node;
    }
    case Token::Type::kString: {
      std::string text;
      while (tokens_->Cur().type == Token::Type::kString) {
        text += tokens_->Cur().value;
        tokens_->Advance();
      }
      auto node = MakeExpr(Expr::Kind::kConst, line);
      node->value = Value::String(std::move(text));
      return node;
    }
    case Token::Type::kInteger:
    case Token::Type::kFloat: {
      auto node = MakeExpr(Expr::Kind::kConst, line);
      node->value =
          t.type == Token::Type::kInteger ? Value::Int(t.int_value) : Value::Float(t.float_value);
      tokens_->Advance();
      return node;
    }
    default:
      break;
  }
  if (tokens_->IsOp("(")) {
    tokens_->Advance();
    ASSIGN_OR_RETURN(ExprPtr inner, ParseTuple(true, {}, true));
    RETURN_IF_ERROR(tokens_->ExpectOp(")"));
    return inner;
  }
  if (tokens_->IsOp("[") || tokens_->IsOp("{")) {
    bool is_list = tokens_->IsOp("[");
    const char* close = is_list ? "]" : "}";
    auto node = MakeExpr(is_list ? Expr::Kind::kList : Expr::Kind::kDict, line);
    tokens_->Advance();
    while (!tokens_->IsOp(close)) {
      if (!node->items.empty()) {
        RETURN_IF_ERROR(tokens_->ExpectOp(","));
        if (tokens_->IsOp(close)) break;
      }
      ASSIGN_OR_RETURN(ExprPtr item, ParseCondExpr());
      node->items.push_back(std::move(item));
      if (!is_list) {
        RETURN_IF_ERROR(tokens_->ExpectOp(":"));
        ASSIGN_OR_RETURN(ExprPtr value, ParseCondExpr());
        node->items.push_back(std::move(value));
      }
    }
    tokens_->Advance();
    return node;
  }
  return tokens_->Error("unexpected '" + TokenStream::Describe(t) + "'");
}

absl::StatusOr<ExprPtr> ExpressionParser::ParsePostfix(ExprPtr node) {
  while (true) {
    if (tokens_->IsOp(".")) {
      int line = tokens_->Cur().line;
      tokens_->Advance();
      if (tokens_->Cur().type == Token::Type::kName) {
        auto attr = MakeExpr(Expr::Kind::kGetAttr, line);
        attr->name = tokens_->Cur().value;
        attr->items.push_back(std::move(node));
        node = std::move(attr);
      } else if (tokens_->Cur().type == Token::Type::kInteger) {
        auto item = MakeExpr(Expr::Kind::kGetItem, line);
        auto key = MakeExpr(Expr::Kind::kConst, line);
        key->value = Value::Int(tokens_->Cur().int_value);
        item->items.push_back(std::move(node));
        item->items.push_back(std::move(key));
        node = std::move(item);
      } else {
        return tokens_->Error("expected name or number");
      }
      tokens_->Advance();
    } else if (tokens_->IsOp("[")) {
      int line = tokens_->Cur().line;
      tokens_->Advance();
      std::vector<ExprPtr> args;
      while (!tokens_->IsOp("]")) {
        if (!args.empty()) RETURN_IF_ERROR(tokens_->ExpectOp(","));
        ASSIGN_OR_RETURN(ExprPtr arg, ParseSubscribed());
        args.push_back(std::move(arg));
      }
      tokens_->Advance();
      auto item = MakeExpr(Expr::Kind::kGetItem, line);
      item->items.push_back(std::move(node));
      if (args.size() == 1) {
        item->items.push_back(std::move(args[0]));
      } else {
        auto tuple = MakeExpr(Expr::Kind::kTuple, line);
        tuple->items = std::move(args);
        item->items.push_back(std::move(tuple));
      }
      node = std::move(item);
    } else if (tokens_->IsOp("(")) {
      ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
    } else {
      return node;
    }
  }
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseSubscribed() {
  int line = tokens_->Cur().line;
  auto slice = MakeExpr(Expr::Kind::kSlice, line);
  if (tokens_->IsOp(":")) {
    tokens_->Advance();
    slice->items.push_back(nullptr);
  } else {
    ASSIGN_OR_RETURN(ExprPtr start, ParseCondExpr());
    if (!tokens_->IsOp(":")) return start;
    tokens_->Advance();
    slice->items.push_back(std::move(start));
  }
  if (tokens_->IsOp(":") || tokens_->IsOp("]") || tokens_->IsOp(",")) {
    slice->items.push_back(nullptr);
  } else {
    ASSIGN_OR_RETURN(ExprPtr stop, ParseCondExpr());
    slice->items.push_back(std::move(stop));
  }
  if (tokens_->IsOp(":")) {
    tokens_->Advance();
    if (tokens_->IsOp("]") || tokens_->IsOp(",")) {
      slice->items.push_back(nullptr);
    } else {
      ASSIGN_OR_RETURN(ExprPtr step, ParseCondExpr());
      slice->items.push_back(std::move(step));
    }
  } else {
    slice->items.push_back(nullptr);
  }
  return slice;
}

// Appends `( args )` to `node`'s items and keywords.
absl::Status ExpressionParser::ParseCallArgs(Expr* node) {
  RETURN_IF_ERROR(tokens_->ExpectOp("("));
  bool require_comma = false;
  while (!tokens_->IsOp(")")) {
    if (require_comma) {
      RETURN_IF_ERROR(tokens_->ExpectOp(","));
      if (tokens_->IsOp(")")) break;
    }
    if (tokens_->IsOp("*") || tokens_->IsOp("**"))
      return tokens_->Error("*args and **kwargs in calls are not supported");
    if (tokens_->Cur().type == Token::Type::kName &&
        tokens_->Peek().type == Token::Type::kOperator && tokens_->Peek().value == "=") {
      std::string key = tokens_->Cur().value;
      tokens_->Advance();
      tokens_->Advance();
      ASSIGN_OR_RETURN(ExprPtr value, ParseCondExpr());
      node->keywords.emplace_back(std::move(key), std::move(value));
    } else {
      if (!node->keywords.empty())
        return tokens_->Error("invalid syntax for function call expression");
      ASSIGN_OR_RETURN(ExprPtr value, ParseCondExpr());
      node->items.push_back(std::move(value));
    }
    require_comma = true;
  }
  tokens_->Advance();
  return absl::OkStatus();
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseCall(ExprPtr callee) {
  auto call = MakeExpr(Expr::Kind::kCall, tokens_->Cur().line);
  call->items.push_back(std::move(callee));
  RETURN_IF_ERROR(ParseCallArgs(call.get()));
  return call;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseFilterExpr(ExprPtr node) {
  while (true) {
    if (tokens_->IsOp("|")) {
      ASSIGN_OR_RETURN(node, ParseFilter(std::move(node), false));
    } else if (tokens_->IsName("is")) {
      ASSIGN_OR_RETURN(node, ParseTest(std::move(node)));
    } else if (tokens_->IsOp("(")) {
      ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
    } else {
      return node;
    }
  }
}

absl::StatusOr<std::string> ExpressionParser::ParseDottedName() {
  ASSIGN_OR_RETURN(std::string name, tokens_->ExpectName());
  while (tokens_->IsOp(".")) {
    tokens_->Advance();
    ASSIGN_OR_RETURN(std::string part, tokens_->ExpectName());
    name += "." + part;
  }
  return name;
}

// `| name(args) | name ...`; with `start_inline` the first filter has no leading `|`.
absl::StatusOr<ExprPtr> ExpressionParser::ParseFilter(ExprPtr node, bool start_inline) {
  while (tokens_->IsOp("|") || start_inline) {
    if (!start_inline) tokens_->Advance();
    start_inline = false;
    auto filter = MakeExpr(Expr::Kind::kFilter, tokens_->Cur().line);
    ASSIGN_OR_RETURN(filter->name, ParseDottedName());
    filter->items.push_back(std::move(node));
    if (tokens_->IsOp("(")) RETURN_IF_ERROR(ParseCallArgs(filter.get()));
    node = std::move(filter);
  }
  return node;
}

absl::StatusOr<ExprPtr> ExpressionParser::ParseTest(ExprPtr node) {
  int line = tokens_->Cur().line;
  tokens_->Advance();
  bool negated = false;
  if (tokens_->IsName("not")) {
    negated = true;
    tokens_->Advance();
  }
  auto test = MakeExpr(Expr::Kind::kTest, line);
  ASSIGN_OR_RETURN(test->name, ParseDottedName());
  test->items.push_back(std::move(node));
  Token::Type type = tokens_->Cur().type;
  if (tokens_->IsOp("(")) {
    RETURN_IF_ERROR(ParseCallArgs(test.get()));
  } else if ((type == Token::Type::kName || type == Token::Type::kString ||
              type == Token::Type::kInteger || type == Token::Type::kFloat || tokens_->IsOp("[") ||
              tokens_->IsOp("{")) &&
             !tokens_->IsNameIn({"else", "or", "and"})) {
    if (tokens_->IsName("is")) return tokens_->Error("You cannot chain multiple tests with is");
    ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
    ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
    test->items.push_back(std::move(arg));
  }
  if (!negated) return test;
  auto not_node = MakeExpr(Expr::Kind::kUnary, line);
  not_node->name = "not";
  not_node->items.push_back(std::move(test));
  return not_node;
}

}  // namespace jinja
}  // namespace shardserve
