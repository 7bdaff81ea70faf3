// Parses Jinja expressions with jinja2's grammar and precedence, lowest first:
//   a if c else b,  or,  and,  not,  comparisons / in / not in,  + -,  ~,  * / // %,  **,
//   unary - +,  then filters (|), tests (is), calls, attributes and subscripts.
// Also parses assignment targets (`a`, `a, (b, c)`, `ns.attr`) and filter chains for
// `{% filter %}` and `{% set x | f %}` blocks. Used by JinjaParser for everything inside tags.
#ifndef SHARDSERVE_MODEL_JINJA_EXPRESSION_PARSER_H_
#define SHARDSERVE_MODEL_JINJA_EXPRESSION_PARSER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/jinja_ast.h"
#include "model/jinja_token_stream.h"

namespace shardserve {
namespace jinja {

class ExpressionParser {
 public:
  // REQUIRES: `tokens` outlives the parser.
  explicit ExpressionParser(TokenStream* tokens) : tokens_(tokens) {}

  // One expression, or a tuple when commas separate several (`{{ a, b }}`). Without
  // `with_condexpr`, `x if y` is not consumed (for `{% if %}` and `{% for %}` headers).
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr, std::vector<std::string> extra_ends,
                                     bool explicit_parentheses);
  absl::StatusOr<ExprPtr> ParseCondExpr();
  // `| f(args) | g ...` applied to `node`; with `start_inline` the first `|` is implied and
  // `node` may be null (the block's body is the input).
  absl::StatusOr<ExprPtr> ParseFilter(ExprPtr node, bool start_inline);
  absl::StatusOr<AssignTarget> ParseAssignTarget(std::vector<std::string> extra_ends,
                                                 bool with_namespace);

  // While a macro body is parsed, reads of `varargs` and `kwargs` are recorded on it.
  void PushMacro(Stmt* macro) { macros_.push_back(macro); }
  void PopMacro() { macros_.pop_back(); }

 private:
  static absl::StatusOr<ExprPtr> Binary(ExprPtr left, std::string op, ExprPtr right);
  absl::StatusOr<ExprPtr> ParseOr();
  absl::StatusOr<ExprPtr> ParseAnd();
  absl::StatusOr<ExprPtr> ParseNot();
  absl::StatusOr<ExprPtr> ParseCompare();
  absl::StatusOr<ExprPtr> ParseMath1();
  absl::StatusOr<ExprPtr> ParseConcat();
  absl::StatusOr<ExprPtr> ParseMath2();
  absl::StatusOr<ExprPtr> ParsePow();
  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter);
  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscribed();
  // Appends `( args )` to `node`'s items and keywords.
  absl::Status ParseCallArgs(Expr* node);
  absl::StatusOr<ExprPtr> ParseCall(ExprPtr callee);
  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node);
  absl::StatusOr<std::string> ParseDottedName();
  absl::StatusOr<ExprPtr> ParseTest(ExprPtr node);

  TokenStream* tokens_;
  std::vector<Stmt*> macros_;
};

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_EXPRESSION_PARSER_H_
