// Renders a parsed Jinja template: runs statements, evaluates expressions, and provides the
// attribute, item, call, filter and test semantics that filters and callables build on.
//
// Scoping follows jinja2: a `for` iteration, a macro call and a `with` block each get a new scope
// whose assignments vanish when it ends (hence namespace()); `if` blocks do not. Macros see the
// scope they were defined in, read when they are called.
//
// One Evaluator renders one template once, on one thread. Every render is bounded: macro call
// depth, loop iterations, output size and value nesting have limits, and exceeding one is a
// RESOURCE_EXHAUSTED error rather than a hang or a crash.
#ifndef SHARDSERVE_MODEL_JINJA_EVALUATOR_H_
#define SHARDSERVE_MODEL_JINJA_EVALUATOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/jinja_ast.h"
#include "model/jinja_value.h"

namespace shardserve {
namespace jinja {

struct RenderLimits {
  int max_call_depth = 100;
  int64_t max_loop_iterations = 1'000'000;
  int64_t max_output_bytes = 64 << 20;
  int max_value_depth = 256;
};

class Evaluator {
 public:
  // `globals` are the variables every scope falls back to (template variables and builtins).
  Evaluator(ValueDict globals, RenderLimits limits);
  ~Evaluator();
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  // Renders `body` (which must outlive this Evaluator) and appends the text to *out.
  absl::Status Render(const Body& body, std::string* out);

  // The operations filters, methods and globals are written in terms of.
  absl::StatusOr<Value> Call(const Value& callee, CallArgs args);
  absl::StatusOr<Value> ApplyFilter(const std::string& name, const Value& input, CallArgs args);
  absl::StatusOr<bool> ApplyTest(const std::string& name, const Value& input, CallArgs args);
  // jinja2's getattr/getitem: a missing attribute or item is Undefined; any access on an
  // Undefined is an error.
  absl::StatusOr<Value> GetAttr(const Value& object, const std::string& name);
  absl::StatusOr<Value> GetItem(const Value& object, const Value& key);
  // Python's iteration: list and tuple items, dict keys, string characters; Undefined is empty.
  absl::StatusOr<ValueList> Iterate(const Value& value);
  // Charges `count` iterations against the loop limit (filters that walk sequences call this).
  absl::Status ChargeIterations(int64_t count);
  // Fails when a value built by the template nests deeper than the limit.
  absl::Status CheckDepth(const Value& value) const;

 private:
  struct Scope;
  enum class LoopControl { kNone, kBreak, kContinue };

  absl::Status Exec(const Body& body, std::string* out);
  absl::Status ExecStmt(const Stmt& stmt, std::string* out);
  absl::Status ExecFor(const Stmt& stmt, std::string* out);
  absl::Status ExecSet(const Stmt& stmt);
  absl::Status Assign(const AssignTarget& target, const Value& value, int line);
  absl::StatusOr<Value> CallMacro(const Stmt& macro, const std::weak_ptr<Scope>& closure,
                                  CallArgs& args);
  absl::StatusOr<Value> ApplyFilterExpr(const Expr& filter, const Value* block_input);
  absl::Status Append(const std::string& text, std::string* out) const;

  absl::StatusOr<Value> Eval(const Expr& expr);
  absl::StatusOr<Value> EvalUncaught(const Expr& expr);
  absl::StatusOr<CallArgs> EvalArgs(const Expr& expr, size_t first_positional);
  absl::StatusOr<Value> EvalSlice(const Value& object, const Expr& slice);
  Value Lookup(const std::string& name) const;

  RenderLimits limits_;
  std::shared_ptr<Scope> globals_;
  std::shared_ptr<Scope> scope_;
  int call_depth_ = 0;
  int64_t iterations_ = 0;
  LoopControl loop_control_ = LoopControl::kNone;
};

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_EVALUATOR_H_
