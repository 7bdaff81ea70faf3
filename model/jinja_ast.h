// The syntax tree of a parsed Jinja template: expressions (Expr) and statements (Stmt).
// Plain data built by JinjaParser and walked by Evaluator; every node knows its source line for
// error messages. The node structs live together here because they are one vocabulary.
#ifndef SHARDSERVE_MODEL_JINJA_AST_H_
#define SHARDSERVE_MODEL_JINJA_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/jinja_value.h"

namespace shardserve {
namespace jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kConst,     // value
    kName,      // name
    kList,      // items
    kTuple,     // items
    kDict,      // items: key, value, key, value, ...
    kGetAttr,   // items[0].name
    kGetItem,   // items[0][items[1]]
    kSlice,     // items: start, stop, step (each may be null); only as a kGetItem subscript
    kCall,      // items[0](items[1:], keywords)
    kFilter,    // items[0] | name(items[1:], keywords); items[0] is null in filter blocks
    kTest,      // items[0] is name(items[1:], keywords)
    kUnary,     // op items[0]; op: "-", "+", "not"
    kBinary,    // items[0] op items[1]; op: + - * / // % ** ~ and or
    kCompare,   // items[0] ops[0] items[1] ops[1] items[2] ...; ops: == != < <= > >= in notin
    kCondExpr,  // items[0] if items[1] else items[2] (items[2] may be null)
  };

  Expr(Kind k, int l) : kind(k), line(l) {}

  Kind kind;
  int line;
  Value value;
  std::string name;  // variable, attribute, filter or test name; operator of kUnary/kBinary
  std::vector<std::string> ops;
  std::vector<ExprPtr> items;
  std::vector<std::pair<std::string, ExprPtr>> keywords;
};

// Where `{% set %}`, `{% for %}` and `{% with %}` store values.
struct AssignTarget {
  std::string name;                    // a variable, or the namespace holding `attribute`
  std::string attribute;               // set for `ns.attr` targets
  std::vector<AssignTarget> elements;  // non-empty for tuple unpacking: a, (b, c)
  bool is_tuple = false;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kText,         // text
    kOutput,       // {{ expr }}
    kIf,           // if conditions[i]: bodies[i] ...; else else_body
    kFor,          // for target in expr [if condition]: body; else else_body
    kSet,          // set target = expr
    kSetBlock,     // set target [| filter]: body
    kMacro,        // macro name(params = defaults): body
    kScope,        // with assignments: body (also transformers' {% generation %})
    kFilterBlock,  // filter chain (a kFilter with null innermost input): body
    kBreak,
    kContinue,
  };

  Stmt(Kind k, int l) : kind(k), line(l) {}

  Kind kind;
  int line;
  std::string text;
  ExprPtr expr;
  ExprPtr condition;  // kFor's `if` filter
  ExprPtr filter;     // kSetBlock's filter chain
  AssignTarget target;
  std::vector<ExprPtr> conditions;
  std::vector<Body> bodies;
  Body body;
  Body else_body;
  // kMacro
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // aligned with params; null where there is no default
  bool takes_varargs = false;     // the body reads `varargs`: extra positional arguments go there
  bool takes_kwargs = false;      // the body reads `kwargs`: unknown keywords go there
  // kScope
  std::vector<std::pair<AssignTarget, ExprPtr>> assignments;
};

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_AST_H_
