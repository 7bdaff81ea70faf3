#include "model/jinja_parser.h"

#include <algorithm>
#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace shardserve {
namespace jinja {
namespace {

// Bounds recursion in the parser and, through the tree's depth, in the evaluator.
constexpr int kMaxNesting = 200;

using Names = std::initializer_list<const char*>;

std::string Describe(const Token& t) {
  switch (t.type) {
    case Token::Type::kVariableEnd: return "end of print statement";
    case Token::Type::kBlockEnd: return "end of statement block";
    case Token::Type::kVariableBegin: return "begin of print statement";
    case Token::Type::kBlockBegin: return "begin of statement block";
    case Token::Type::kEnd: return "end of template";
    case Token::Type::kText: return "template data";
    case Token::Type::kString: return "string";
    default: return t.value;
  }
}

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : tokens_(tokens) {}

  absl::StatusOr<Body> ParseTemplate() {
    Body body;
    std::string end;
    RETURN_IF_ERROR(ParseBody({}, &body, &end));
    return body;
  }

 private:
  class DepthGuard {
   public:
    explicit DepthGuard(int* depth) : depth_(depth) { ++*depth_; }
    ~DepthGuard() { --*depth_; }
    bool exceeded() const { return *depth_ > kMaxNesting; }

   private:
    int* depth_;
  };

  const Token& Cur() const { return tokens_[pos_]; }
  const Token& Peek() const { return tokens_[std::min(pos_ + 1, tokens_.size() - 1)]; }
  void Advance() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool IsOp(const char* op) const {
    return Cur().type == Token::Type::kOperator && Cur().value == op;
  }
  bool IsName(const char* name) const {
    return Cur().type == Token::Type::kName && Cur().value == name;
  }
  bool IsNameIn(const std::vector<std::string>& names) const {
    return Cur().type == Token::Type::kName &&
           std::find(names.begin(), names.end(), Cur().value) != names.end();
  }

  absl::Status Error(const std::string& message) const { return ErrorAt(Cur().line, message); }
  static absl::Status ErrorAt(int line, const std::string& message) {
    return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", message));
  }

  absl::Status ExpectOp(const char* op) {
    if (!IsOp(op)) return Error(absl::StrCat("expected token '", op, "', got '", Describe(Cur()), "'"));
    Advance();
    return absl::OkStatus();
  }
  absl::Status ExpectType(Token::Type type, const char* what) {
    if (Cur().type != type) {
      return Error(absl::StrCat("expected token '", what, "', got '", Describe(Cur()), "'"));
    }
    Advance();
    return absl::OkStatus();
  }
  absl::Status ExpectBlockEnd() { return ExpectType(Token::Type::kBlockEnd, "end of statement block"); }
  absl::StatusOr<std::string> ExpectName() {
    if (Cur().type != Token::Type::kName) {
      return Error(absl::StrCat("expected token 'name', got '", Describe(Cur()), "'"));
    }
    std::string name = Cur().value;
    Advance();
    return name;
  }

  static ExprPtr MakeExpr(Expr::Kind kind, int line) { return std::make_unique<Expr>(kind, line); }

  // Statements until a block tag named in `ends`; that tag's name is consumed and stored in *end.
  absl::Status ParseBody(std::vector<std::string> ends, Body* body, std::string* end) {
    DepthGuard guard(&depth_);
    if (guard.exceeded()) return Error("template nesting is too deep");
    while (true) {
      const Token& t = Cur();
      switch (t.type) {
        case Token::Type::kText: {
          auto stmt = std::make_unique<Stmt>(Stmt::Kind::kText, t.line);
          stmt->text = t.value;
          body->push_back(std::move(stmt));
          Advance();
          break;
        }
        case Token::Type::kVariableBegin: {
          auto stmt = std::make_unique<Stmt>(Stmt::Kind::kOutput, t.line);
          Advance();
          ASSIGN_OR_RETURN(stmt->expr, ParseTuple(true, {}, false));
          RETURN_IF_ERROR(ExpectType(Token::Type::kVariableEnd, "end of print statement"));
          body->push_back(std::move(stmt));
          break;
        }
        case Token::Type::kBlockBegin: {
          Advance();
          if (Cur().type != Token::Type::kName) return Error("tag name expected");
          if (IsNameIn(ends)) {
            *end = Cur().value;
            Advance();
            return absl::OkStatus();
          }
          ASSIGN_OR_RETURN(StmtPtr stmt, ParseStatement(ends));
          body->push_back(std::move(stmt));
          break;
        }
        case Token::Type::kEnd:
          if (!ends.empty()) {
            std::vector<std::string> quoted;
            for (const auto& e : ends) quoted.push_back("'" + e + "'");
            return Error("Unexpected end of template. Jinja was looking for the following tags: " +
                         absl::StrJoin(quoted, " or ") + ".");
          }
          return absl::OkStatus();
        default:
          return Error(absl::StrCat("unexpected '", Describe(t), "'"));
      }
    }
  }

  absl::StatusOr<StmtPtr> ParseStatement(const std::vector<std::string>& enclosing_ends) {
    int line = Cur().line;
    std::string tag = Cur().value;
    Advance();
    if (tag == "if") return ParseIf(line);
    if (tag == "for") return ParseFor(line);
    if (tag == "set") return ParseSet(line);
    if (tag == "macro") return ParseMacro(line);
    if (tag == "with" || tag == "generation") return ParseScope(line, tag);
    if (tag == "filter") return ParseFilterBlock(line);
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) return ErrorAt(line, "'" + tag + "' outside loop");
      RETURN_IF_ERROR(ExpectBlockEnd());
      return std::make_unique<Stmt>(tag == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue, line);
    }
    static const char* const kUnsupported[] = {"include", "import", "from", "extends", "block",
                                               "call", "autoescape", "do", "trans"};
    for (const char* unsupported : kUnsupported) {
      if (tag == unsupported) return ErrorAt(line, "the '" + tag + "' tag is not supported");
    }
    std::string message = "Encountered unknown tag '" + tag + "'.";
    if (!enclosing_ends.empty()) {
      std::vector<std::string> quoted;
      for (const auto& e : enclosing_ends) quoted.push_back("'" + e + "'");
      message += " Jinja was looking for the following tags: " + absl::StrJoin(quoted, " or ") + ".";
    }
    return ErrorAt(line, message);
  }

  absl::StatusOr<StmtPtr> ParseIf(int line) {
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::kIf, line);
    ASSIGN_OR_RETURN(ExprPtr condition, ParseTuple(false, {}, false));
    RETURN_IF_ERROR(ExpectBlockEnd());
    while (true) {
      Body body;
      std::string end;
      RETURN_IF_ERROR(ParseBody({"elif", "else", "endif"}, &body, &end));
      stmt->conditions.push_back(std::move(condition));
      stmt->bodies.push_back(std::move(body));
      if (end == "elif") {
        ASSIGN_OR_RETURN(condition, ParseTuple(false, {}, false));
        RETURN_IF_ERROR(ExpectBlockEnd());
        continue;
      }
      RETURN_IF_ERROR(ExpectBlockEnd());
      if (end == "else") {
        RETURN_IF_ERROR(ParseBody({"endif"}, &stmt->else_body, &end));
        RETURN_IF_ERROR(ExpectBlockEnd());
      }
      return stmt;
    }
  }

  absl::StatusOr<StmtPtr> ParseFor(int line) {
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::kFor, line);
    ASSIGN_OR_RETURN(stmt->target, ParseAssignTarget({"in"}, false));
    if (!IsName("in")) return Error("expected token 'in', got '" + Describe(Cur()) + "'");
    Advance();
    ASSIGN_OR_RETURN(stmt->expr, ParseTuple(false, {"recursive"}, false));
    if (IsName("if")) {
      Advance();
      ASSIGN_OR_RETURN(stmt->condition, ParseCondExpr());
    }
    if (IsName("recursive")) return Error("recursive for loops are not supported");
    RETURN_IF_ERROR(ExpectBlockEnd());
    std::string end;
    ++loop_depth_;
    absl::Status status = ParseBody({"endfor", "else"}, &stmt->body, &end);
    --loop_depth_;
    RETURN_IF_ERROR(status);
    RETURN_IF_ERROR(ExpectBlockEnd());
    if (end == "else") {
      RETURN_IF_ERROR(ParseBody({"endfor"}, &stmt->else_body, &end));
      RETURN_IF_ERROR(ExpectBlockEnd());
    }
    return stmt;
  }

  absl::StatusOr<StmtPtr> ParseSet(int line) {
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::kSet, line);
    ASSIGN_OR_RETURN(stmt->target, ParseAssignTarget({}, true));
    if (IsOp("=")) {
      Advance();
      ASSIGN_OR_RETURN(stmt->expr, ParseTuple(true, {}, false));
      RETURN_IF_ERROR(ExpectBlockEnd());
      return stmt;
    }
    stmt->kind = Stmt::Kind::kSetBlock;
    if (IsOp("|")) {
      ASSIGN_OR_RETURN(stmt->filter, ParseFilter(nullptr, false));
    }
    RETURN_IF_ERROR(ExpectBlockEnd());
    std::string end;
    RETURN_IF_ERROR(ParseBody({"endset"}, &stmt->body, &end));
    RETURN_IF_ERROR(ExpectBlockEnd());
    return stmt;
  }

  absl::StatusOr<StmtPtr> ParseMacro(int line) {
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::kMacro, line);
    ASSIGN_OR_RETURN(stmt->name, ExpectName());
    RETURN_IF_ERROR(ExpectOp("("));
    bool any_default = false;
    while (!IsOp(")")) {
      if (!stmt->params.empty()) RETURN_IF_ERROR(ExpectOp(","));
      ASSIGN_OR_RETURN(std::string param, ExpectName());
      ExprPtr default_value;
      if (IsOp("=")) {
        Advance();
        ASSIGN_OR_RETURN(default_value, ParseCondExpr());
        any_default = true;
      } else if (any_default) {
        return Error("non-default argument follows default argument");
      }
      stmt->params.push_back(std::move(param));
      stmt->defaults.push_back(std::move(default_value));
    }
    Advance();
    RETURN_IF_ERROR(ExpectBlockEnd());
    int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    macros_.push_back(stmt.get());
    std::string end;
    absl::Status status = ParseBody({"endmacro"}, &stmt->body, &end);
    macros_.pop_back();
    loop_depth_ = saved_loop_depth;
    RETURN_IF_ERROR(status);
    RETURN_IF_ERROR(ExpectBlockEnd());
    return stmt;
  }

  absl::StatusOr<StmtPtr> ParseScope(int line, const std::string& tag) {
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::kScope, line);
    while (tag == "with" && Cur().type != Token::Type::kBlockEnd) {
      if (!stmt->assignments.empty()) RETURN_IF_ERROR(ExpectOp(","));
      ASSIGN_OR_RETURN(AssignTarget target, ParseAssignTarget({}, false));
      RETURN_IF_ERROR(ExpectOp("="));
      ASSIGN_OR_RETURN(ExprPtr value, ParseCondExpr());
      stmt->assignments.emplace_back(std::move(target), std::move(value));
    }
    RETURN_IF_ERROR(ExpectBlockEnd());
    std::string end;
    RETURN_IF_ERROR(ParseBody({"end" + tag}, &stmt->body, &end));
    RETURN_IF_ERROR(ExpectBlockEnd());
    return stmt;
  }

  absl::StatusOr<StmtPtr> ParseFilterBlock(int line) {
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::kFilterBlock, line);
    ASSIGN_OR_RETURN(stmt->filter, ParseFilter(nullptr, true));
    RETURN_IF_ERROR(ExpectBlockEnd());
    std::string end;
    RETURN_IF_ERROR(ParseBody({"endfilter"}, &stmt->body, &end));
    RETURN_IF_ERROR(ExpectBlockEnd());
    return stmt;
  }

  // name | ns.attr | (targets) | targets, separated by commas.
  absl::StatusOr<AssignTarget> ParseAssignTarget(std::vector<std::string> extra_ends,
                                                 bool with_namespace) {
    AssignTarget tuple;
    while (true) {
      if (!tuple.elements.empty()) RETURN_IF_ERROR(ExpectOp(","));
      if (IsTupleEnd(extra_ends) || IsOp("=")) break;
      AssignTarget element;
      if (IsOp("(")) {
        Advance();
        ASSIGN_OR_RETURN(element, ParseAssignTarget({}, with_namespace));
        RETURN_IF_ERROR(ExpectOp(")"));
      } else if (Cur().type == Token::Type::kName &&
                 !IsNameIn({"true", "false", "True", "False", "none", "None"})) {
        element.name = Cur().value;
        Advance();
        if (with_namespace && IsOp(".")) {
          Advance();
          ASSIGN_OR_RETURN(element.attribute, ExpectName());
        }
      } else {
        return Error("can't assign to '" + Describe(Cur()) + "'");
      }
      tuple.elements.push_back(std::move(element));
      if (!IsOp(",")) break;
      tuple.is_tuple = true;
    }
    if (tuple.elements.empty()) return Error("expected an assignment target");
    if (!tuple.is_tuple) return std::move(tuple.elements[0]);
    return tuple;
  }

  bool IsTupleEnd(const std::vector<std::string>& extra_ends) const {
    Token::Type type = Cur().type;
    return type == Token::Type::kVariableEnd || type == Token::Type::kBlockEnd ||
           type == Token::Type::kEnd || IsOp(")") || IsNameIn(extra_ends);
  }

  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr, std::vector<std::string> extra_ends,
                                     bool explicit_parentheses) {
    int line = Cur().line;
    auto tuple = MakeExpr(Expr::Kind::kTuple, line);
    bool is_tuple = false;
    while (true) {
      if (!tuple->items.empty()) RETURN_IF_ERROR(ExpectOp(","));
      if (IsTupleEnd(extra_ends)) break;
      ExprPtr item;
      if (with_condexpr) {
        ASSIGN_OR_RETURN(item, ParseCondExpr());
      } else {
        ASSIGN_OR_RETURN(item, ParseOr());
      }
      tuple->items.push_back(std::move(item));
      if (!IsOp(",")) break;
      is_tuple = true;
    }
    if (!is_tuple) {
      if (!tuple->items.empty()) return std::move(tuple->items[0]);
      if (!explicit_parentheses) {
        return Error("Expected an expression, got '" + Describe(Cur()) + "'");
      }
    }
    return tuple;
  }

  absl::StatusOr<ExprPtr> ParseCondExpr() {
    ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
    while (IsName("if")) {
      auto cond = MakeExpr(Expr::Kind::kCondExpr, Cur().line);
      Advance();
      ASSIGN_OR_RETURN(ExprPtr test, ParseOr());
      ExprPtr otherwise;
      if (IsName("else")) {
        Advance();
        ASSIGN_OR_RETURN(otherwise, ParseCondExpr());
      }
      cond->items.push_back(std::move(expr));
      cond->items.push_back(std::move(test));
      cond->items.push_back(std::move(otherwise));
      expr = std::move(cond);
    }
    return expr;
  }

  absl::StatusOr<ExprPtr> Binary(ExprPtr left, std::string op, ExprPtr right) {
    auto node = MakeExpr(Expr::Kind::kBinary, left->line);
    node->name = std::move(op);
    node->items.push_back(std::move(left));
    node->items.push_back(std::move(right));
    return node;
  }

  absl::StatusOr<ExprPtr> ParseOr() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
    while (IsName("or")) {
      Advance();
      ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
      ASSIGN_OR_RETURN(left, Binary(std::move(left), "or", std::move(right)));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseAnd() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
    while (IsName("and")) {
      Advance();
      ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
      ASSIGN_OR_RETURN(left, Binary(std::move(left), "and", std::move(right)));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (IsName("not")) {
      DepthGuard guard(&depth_);
      if (guard.exceeded()) return Error("expression nesting is too deep");
      auto node = MakeExpr(Expr::Kind::kUnary, Cur().line);
      node->name = "not";
      Advance();
      ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
      node->items.push_back(std::move(operand));
      return node;
    }
    return ParseCompare();
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
    auto node = MakeExpr(Expr::Kind::kCompare, first->line);
    node->items.push_back(std::move(first));
    while (true) {
      std::string op;
      if (Cur().type == Token::Type::kOperator &&
          (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp("<=") || IsOp(">") || IsOp(">="))) {
        op = Cur().value;
        Advance();
      } else if (IsName("in")) {
        op = "in";
        Advance();
      } else if (IsName("not") && Peek().type == Token::Type::kName && Peek().value == "in") {
        op = "notin";
        Advance();
        Advance();
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

  absl::StatusOr<ExprPtr> ParseMath1() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseConcat());
    while (IsOp("+") || IsOp("-")) {
      std::string op = Cur().value;
      Advance();
      ASSIGN_OR_RETURN(ExprPtr right, ParseConcat());
      ASSIGN_OR_RETURN(left, Binary(std::move(left), op, std::move(right)));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseConcat() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseMath2());
    while (IsOp("~")) {
      Advance();
      ASSIGN_OR_RETURN(ExprPtr right, ParseMath2());
      ASSIGN_OR_RETURN(left, Binary(std::move(left), "~", std::move(right)));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseMath2() {
    ASSIGN_OR_RETURN(ExprPtr left, ParsePow());
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      std::string op = Cur().value;
      Advance();
      ASSIGN_OR_RETURN(ExprPtr right, ParsePow());
      ASSIGN_OR_RETURN(left, Binary(std::move(left), op, std::move(right)));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParsePow() {
    ASSIGN_OR_RETURN(ExprPtr left, ParseUnary(true));
    while (IsOp("**")) {
      Advance();
      ASSIGN_OR_RETURN(ExprPtr right, ParseUnary(true));
      ASSIGN_OR_RETURN(left, Binary(std::move(left), "**", std::move(right)));
    }
    return left;
  }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter) {
    DepthGuard guard(&depth_);
    if (guard.exceeded()) return Error("expression nesting is too deep");
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      node = MakeExpr(Expr::Kind::kUnary, Cur().line);
      node->name = Cur().value;
      Advance();
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

  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token& t = Cur();
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
        Advance();
        return node;
      }
      case Token::Type::kString: {
        std::string text;
        while (Cur().type == Token::Type::kString) {
          text += Cur().value;
          Advance();
        }
        auto node = MakeExpr(Expr::Kind::kConst, line);
        node->value = Value::String(std::move(text));
        return node;
      }
      case Token::Type::kInteger:
      case Token::Type::kFloat: {
        auto node = MakeExpr(Expr::Kind::kConst, line);
        node->value = t.type == Token::Type::kInteger ? Value::Int(t.int_value) : Value::Float(t.float_value);
        Advance();
        return node;
      }
      default:
        break;
    }
    if (IsOp("(")) {
      Advance();
      ASSIGN_OR_RETURN(ExprPtr inner, ParseTuple(true, {}, true));
      RETURN_IF_ERROR(ExpectOp(")"));
      return inner;
    }
    if (IsOp("[") || IsOp("{")) {
      bool is_list = IsOp("[");
      const char* close = is_list ? "]" : "}";
      auto node = MakeExpr(is_list ? Expr::Kind::kList : Expr::Kind::kDict, line);
      Advance();
      while (!IsOp(close)) {
        if (!node->items.empty()) {
          RETURN_IF_ERROR(ExpectOp(","));
          if (IsOp(close)) break;
        }
        ASSIGN_OR_RETURN(ExprPtr item, ParseCondExpr());
        node->items.push_back(std::move(item));
        if (!is_list) {
          RETURN_IF_ERROR(ExpectOp(":"));
          ASSIGN_OR_RETURN(ExprPtr value, ParseCondExpr());
          node->items.push_back(std::move(value));
        }
      }
      Advance();
      return node;
    }
    return Error("unexpected '" + Describe(t) + "'");
  }

  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node) {
    while (true) {
      if (IsOp(".")) {
        int line = Cur().line;
        Advance();
        if (Cur().type == Token::Type::kName) {
          auto attr = MakeExpr(Expr::Kind::kGetAttr, line);
          attr->name = Cur().value;
          attr->items.push_back(std::move(node));
          node = std::move(attr);
        } else if (Cur().type == Token::Type::kInteger) {
          auto item = MakeExpr(Expr::Kind::kGetItem, line);
          auto key = MakeExpr(Expr::Kind::kConst, line);
          key->value = Value::Int(Cur().int_value);
          item->items.push_back(std::move(node));
          item->items.push_back(std::move(key));
          node = std::move(item);
        } else {
          return Error("expected name or number");
        }
        Advance();
      } else if (IsOp("[")) {
        int line = Cur().line;
        Advance();
        std::vector<ExprPtr> args;
        while (!IsOp("]")) {
          if (!args.empty()) RETURN_IF_ERROR(ExpectOp(","));
          ASSIGN_OR_RETURN(ExprPtr arg, ParseSubscribed());
          args.push_back(std::move(arg));
        }
        Advance();
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
      } else if (IsOp("(")) {
        ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParseSubscribed() {
    int line = Cur().line;
    auto slice = MakeExpr(Expr::Kind::kSlice, line);
    if (IsOp(":")) {
      Advance();
      slice->items.push_back(nullptr);
    } else {
      ASSIGN_OR_RETURN(ExprPtr start, ParseCondExpr());
      if (!IsOp(":")) return start;
      Advance();
      slice->items.push_back(std::move(start));
    }
    if (IsOp(":") || IsOp("]") || IsOp(",")) {
      slice->items.push_back(nullptr);
    } else {
      ASSIGN_OR_RETURN(ExprPtr stop, ParseCondExpr());
      slice->items.push_back(std::move(stop));
    }
    if (IsOp(":")) {
      Advance();
      if (IsOp("]") || IsOp(",")) {
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
  absl::Status ParseCallArgs(Expr* node) {
    RETURN_IF_ERROR(ExpectOp("("));
    bool require_comma = false;
    while (!IsOp(")")) {
      if (require_comma) {
        RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp(")")) break;
      }
      if (IsOp("*") || IsOp("**")) return Error("*args and **kwargs in calls are not supported");
      if (Cur().type == Token::Type::kName && Peek().type == Token::Type::kOperator &&
          Peek().value == "=") {
        std::string key = Cur().value;
        Advance();
        Advance();
        ASSIGN_OR_RETURN(ExprPtr value, ParseCondExpr());
        node->keywords.emplace_back(std::move(key), std::move(value));
      } else {
        if (!node->keywords.empty()) return Error("invalid syntax for function call expression");
        ASSIGN_OR_RETURN(ExprPtr value, ParseCondExpr());
        node->items.push_back(std::move(value));
      }
      require_comma = true;
    }
    Advance();
    return absl::OkStatus();
  }

  absl::StatusOr<ExprPtr> ParseCall(ExprPtr callee) {
    auto call = MakeExpr(Expr::Kind::kCall, Cur().line);
    call->items.push_back(std::move(callee));
    RETURN_IF_ERROR(ParseCallArgs(call.get()));
    return call;
  }

  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (IsOp("|")) {
        ASSIGN_OR_RETURN(node, ParseFilter(std::move(node), false));
      } else if (IsName("is")) {
        ASSIGN_OR_RETURN(node, ParseTest(std::move(node)));
      } else if (IsOp("(")) {
        ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<std::string> ParseDottedName() {
    ASSIGN_OR_RETURN(std::string name, ExpectName());
    while (IsOp(".")) {
      Advance();
      ASSIGN_OR_RETURN(std::string part, ExpectName());
      name += "." + part;
    }
    return name;
  }

  // `| name(args) | name ...`; with `start_inline` the first filter has no leading `|`.
  absl::StatusOr<ExprPtr> ParseFilter(ExprPtr node, bool start_inline) {
    while (IsOp("|") || start_inline) {
      if (!start_inline) Advance();
      start_inline = false;
      auto filter = MakeExpr(Expr::Kind::kFilter, Cur().line);
      ASSIGN_OR_RETURN(filter->name, ParseDottedName());
      filter->items.push_back(std::move(node));
      if (IsOp("(")) RETURN_IF_ERROR(ParseCallArgs(filter.get()));
      node = std::move(filter);
    }
    return node;
  }

  absl::StatusOr<ExprPtr> ParseTest(ExprPtr node) {
    int line = Cur().line;
    Advance();
    bool negated = false;
    if (IsName("not")) {
      negated = true;
      Advance();
    }
    auto test = MakeExpr(Expr::Kind::kTest, line);
    ASSIGN_OR_RETURN(test->name, ParseDottedName());
    test->items.push_back(std::move(node));
    Token::Type type = Cur().type;
    if (IsOp("(")) {
      RETURN_IF_ERROR(ParseCallArgs(test.get()));
    } else if ((type == Token::Type::kName || type == Token::Type::kString ||
                type == Token::Type::kInteger || type == Token::Type::kFloat || IsOp("[") ||
                IsOp("{")) &&
               !IsNameIn({"else", "or", "and"})) {
      if (IsName("is")) return Error("You cannot chain multiple tests with is");
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

  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<Stmt*> macros_;
};

}  // namespace

absl::StatusOr<Body> JinjaParser::Parse(const std::vector<Token>& tokens) {
  if (tokens.empty() || tokens.back().type != Token::Type::kEnd) {
    return absl::InvalidArgumentError("token stream must end with an end token");
  }
  return Parser(tokens).ParseTemplate();
}

}  // namespace jinja
}  // namespace shardserve
