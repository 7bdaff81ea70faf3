// Parses Jinja tokens into a syntax tree, with jinja2's grammar and operator precedence:
//   a if c else b  <  or  <  and  <  not  <  comparisons, in, not in  <  + -  <  ~  <  * / // %
//   <  **  <  unary - +  <  filters (|), tests (is), calls, attributes, subscripts.
// Statements: if/elif/else, for (tuple targets, `if` filter, else), set (namespace attributes,
// block set with filters), macro, with, filter, break/continue and transformers' generation
// block. Other tags (include, import, extends, block, call, ...) are rejected with an error.
#ifndef SHARDSERVE_MODEL_JINJA_PARSER_H_
#define SHARDSERVE_MODEL_JINJA_PARSER_H_

#include <vector>

#include "absl/status/statusor.h"
#include "model/jinja_ast.h"
#include "model/jinja_lexer.h"

namespace shardserve {
namespace jinja {

class JinjaParser {
 public:
  // Fails with "line N: ..." on syntax errors. Nesting deeper than a fixed limit is an error,
  // so evaluating the tree cannot exhaust the stack.
  static absl::StatusOr<Body> Parse(const std::vector<Token>& tokens);
};

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_PARSER_H_
