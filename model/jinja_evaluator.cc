#include "model/jinja_evaluator.h"

#include <unordered_map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/jinja_builtins.h"
#include "model/jinja_filters.h"
#include "model/jinja_operators.h"
#include "model/jinja_tests.h"
#include "model/jinja_text.h"

namespace shardserve {
namespace jinja {

struct Evaluator::Scope {
  explicit Scope(std::shared_ptr<Scope> p) : parent(std::move(p)) {}
  std::shared_ptr<Scope> parent;
  std::unordered_map<std::string, Value> vars;
};

namespace {

// Prefixes the source line unless an inner node already did.
absl::Status AtLine(const absl::Status& status, int line) {
  if (status.ok() || absl::StartsWith(status.message(), "line ")) return status;
  return absl::Status(status.code(), absl::StrCat("line ", line, ": ", status.message()));
}

bool ContainsNamespace(const Value& value) {
  if (value.is_namespace()) return true;
  if (value.is_list()) {
    for (const Value& item : value.list()) {
      if (ContainsNamespace(item)) return true;
    }
  } else if (value.is_dict()) {
    for (const auto& item : value.dict()) {
      if (ContainsNamespace(item.second)) return true;
    }
  }
  return false;
}

std::string ObjectName(const Value& v) {
  return v.is_none() ? "'None'" : "'" + v.TypeName() + " object'";
}

}  // namespace

Evaluator::Evaluator(ValueDict globals, RenderLimits limits) : limits_(limits) {
  globals_ = std::make_shared<Scope>(nullptr);
  for (auto& [name, value] : globals) globals_->vars[name] = std::move(value);
  scope_ = globals_;
}

Evaluator::~Evaluator() = default;

absl::Status Evaluator::Render(const Body& body, std::string* out) {
  scope_ = std::make_shared<Scope>(globals_);
  absl::Status status = Exec(body, out);
  scope_ = globals_;
  return status;
}

absl::Status Evaluator::Append(const std::string& text, std::string* out) const {
  if (static_cast<int64_t>(out->size() + text.size()) > limits_.max_output_bytes) {
    return absl::ResourceExhaustedError("template output exceeds " +
                                        std::to_string(limits_.max_output_bytes) + " bytes");
  }
  out->append(text);
  return absl::OkStatus();
}

absl::Status Evaluator::ChargeIterations(int64_t count) {
  iterations_ += count;
  if (iterations_ > limits_.max_loop_iterations) {
    return absl::ResourceExhaustedError(
        "template exceeds " + std::to_string(limits_.max_loop_iterations) + " loop iterations");
  }
  return absl::OkStatus();
}

absl::Status Evaluator::CheckDepth(const Value& value) const {
  if (value.depth() > limits_.max_value_depth) {
    return absl::ResourceExhaustedError("template builds values nested deeper than " +
                                        std::to_string(limits_.max_value_depth));
  }
  return absl::OkStatus();
}

absl::Status Evaluator::Exec(const Body& body, std::string* out) {
  for (const StmtPtr& stmt : body) {
    RETURN_IF_ERROR(AtLine(ExecStmt(*stmt, out), stmt->line));
    if (loop_control_ != LoopControl::kNone) break;
  }
  return absl::OkStatus();
}

absl::Status Evaluator::ExecStmt(const Stmt& stmt, std::string* out) {
  switch (stmt.kind) {
    case Stmt::Kind::kText:
      return Append(stmt.text, out);
    case Stmt::Kind::kOutput: {
      ASSIGN_OR_RETURN(Value value, Eval(*stmt.expr));
      return Append(value.ToString(), out);
    }
    case Stmt::Kind::kIf:
      for (size_t i = 0; i < stmt.conditions.size(); ++i) {
        ASSIGN_OR_RETURN(Value condition, Eval(*stmt.conditions[i]));
        if (condition.Truthy()) return Exec(stmt.bodies[i], out);
      }
      return Exec(stmt.else_body, out);
    case Stmt::Kind::kFor:
      return ExecFor(stmt, out);
    case Stmt::Kind::kSet:
    case Stmt::Kind::kSetBlock:
      return ExecSet(stmt);
    case Stmt::Kind::kMacro: {
      const Stmt* macro = &stmt;
      std::weak_ptr<Scope> closure = scope_;
      scope_->vars[stmt.name] =
          Value::Function(stmt.name, [macro, closure](Evaluator& evaluator, CallArgs& args) {
            return evaluator.CallMacro(*macro, closure, args);
          });
      return absl::OkStatus();
    }
    case Stmt::Kind::kScope: {
      std::vector<std::pair<const AssignTarget*, Value>> values;
      for (const auto& [target, expr] : stmt.assignments) {
        ASSIGN_OR_RETURN(Value value, Eval(*expr));
        values.emplace_back(&target, std::move(value));
      }
      std::shared_ptr<Scope> saved = scope_;
      scope_ = std::make_shared<Scope>(saved);
      absl::Status status;
      for (const auto& [target, value] : values) {
        status = Assign(*target, value, stmt.line);
        if (!status.ok()) break;
      }
      if (status.ok()) status = Exec(stmt.body, out);
      scope_ = saved;
      return status;
    }
    case Stmt::Kind::kFilterBlock: {
      std::string captured;
      RETURN_IF_ERROR(Exec(stmt.body, &captured));
      Value input = Value::String(std::move(captured));
      ASSIGN_OR_RETURN(Value result, ApplyFilterExpr(*stmt.filter, &input));
      return Append(result.ToString(), out);
    }
    case Stmt::Kind::kBreak:
      loop_control_ = LoopControl::kBreak;
      return absl::OkStatus();
    case Stmt::Kind::kContinue:
      loop_control_ = LoopControl::kContinue;
      return absl::OkStatus();
  }
  return absl::InternalError("unknown statement");
}

absl::Status Evaluator::ExecSet(const Stmt& stmt) {
  Value value;
  if (stmt.kind == Stmt::Kind::kSet) {
    ASSIGN_OR_RETURN(value, Eval(*stmt.expr));
  } else {
    std::string captured;
    RETURN_IF_ERROR(Exec(stmt.body, &captured));
    value = Value::String(std::move(captured));
    if (stmt.filter != nullptr) {
      ASSIGN_OR_RETURN(value, ApplyFilterExpr(*stmt.filter, &value));
    }
  }
  return Assign(stmt.target, value, stmt.line);
}

absl::Status Evaluator::Assign(const AssignTarget& target, const Value& value, int line) {
  if (target.is_tuple) {
    if (value.is_undefined()) return absl::InvalidArgumentError(value.undefined_hint());
    ASSIGN_OR_RETURN(ValueList items, Iterate(value));
    if (items.size() != target.elements.size()) {
      return absl::InvalidArgumentError(
          items.size() > target.elements.size()
              ? absl::StrCat("too many values to unpack (expected ", target.elements.size(), ")")
              : absl::StrCat("not enough values to unpack (expected ", target.elements.size(),
                             ", got ", items.size(), ")"));
    }
    for (size_t i = 0; i < items.size(); ++i) {
      RETURN_IF_ERROR(Assign(target.elements[i], items[i], line));
    }
    return absl::OkStatus();
  }
  if (!target.attribute.empty()) {
    Value ns = Lookup(target.name);
    if (!ns.is_namespace()) {
      return absl::InvalidArgumentError("cannot assign attribute on non-namespace object");
    }
    // Namespaces are the only mutable objects; keeping them out of each other rules out cycles.
    if (ContainsNamespace(value)) {
      return absl::UnimplementedError("storing a namespace inside a namespace is not supported");
    }
    DictSet(&ns.namespace_attributes(), target.attribute, value);
    return absl::OkStatus();
  }
  scope_->vars[target.name] = value;
  return absl::OkStatus();
}

absl::Status Evaluator::ExecFor(const Stmt& stmt, std::string* out) {
  ASSIGN_OR_RETURN(Value iterable, Eval(*stmt.expr));
  ASSIGN_OR_RETURN(ValueList items, Iterate(iterable));
  std::shared_ptr<Scope> parent = scope_;
  if (stmt.condition != nullptr) {
    ValueList kept;
    for (Value& item : items) {
      RETURN_IF_ERROR(ChargeIterations(1));
      scope_ = std::make_shared<Scope>(parent);
      absl::Status status = Assign(stmt.target, item, stmt.line);
      absl::StatusOr<Value> keep = status.ok() ? Eval(*stmt.condition) : status;
      scope_ = parent;
      if (!keep.ok()) return keep.status();
      if (keep->Truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    scope_ = std::make_shared<Scope>(parent);
    absl::Status status = Exec(stmt.else_body, out);
    scope_ = parent;
    return status;
  }
  const int64_t length = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < length; ++i) {
    RETURN_IF_ERROR(ChargeIterations(1));
    ValueDict loop = {
        {"index", Value::Int(i + 1)},
        {"index0", Value::Int(i)},
        {"revindex", Value::Int(length - i)},
        {"revindex0", Value::Int(length - i - 1)},
        {"first", Value::Bool(i == 0)},
        {"last", Value::Bool(i == length - 1)},
        {"length", Value::Int(length)},
        {"depth", Value::Int(1)},
        {"depth0", Value::Int(0)},
        {"cycle", Value::Function("cycle",
                                  [i](Evaluator&, CallArgs& args) -> absl::StatusOr<Value> {
                                    if (args.positional.empty()) {
                                      return absl::InvalidArgumentError(
                                          "no items for cycling given");
                                    }
                                    return args.positional[i % args.positional.size()];
                                  })},
    };
    if (i > 0) loop.emplace_back("previtem", items[i - 1]);
    if (i + 1 < length) loop.emplace_back("nextitem", items[i + 1]);
    scope_ = std::make_shared<Scope>(parent);
    absl::Status status = Assign(stmt.target, items[i], stmt.line);
    scope_->vars["loop"] = Value::Dict(std::move(loop));
    if (status.ok()) status = Exec(stmt.body, out);
    scope_ = parent;
    RETURN_IF_ERROR(status);
    LoopControl control = loop_control_;
    loop_control_ = LoopControl::kNone;
    if (control == LoopControl::kBreak) break;
  }
  return absl::OkStatus();
}

absl::StatusOr<Value> Evaluator::CallMacro(const Stmt& macro, const std::weak_ptr<Scope>& closure,
                                           CallArgs& args) {
  if (call_depth_ >= limits_.max_call_depth) {
    return absl::ResourceExhaustedError("macro calls nested deeper than " +
                                        std::to_string(limits_.max_call_depth));
  }
  std::shared_ptr<Scope> parent = closure.lock();
  auto frame = std::make_shared<Scope>(parent != nullptr ? parent : globals_);
  const size_t num_params = macro.params.size();
  std::vector<bool> given(num_params, false);
  ValueList extra_positional;
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < num_params) {
      frame->vars[macro.params[i]] = args.positional[i];
      given[i] = true;
    } else if (macro.takes_varargs) {
      extra_positional.push_back(args.positional[i]);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "macro '", macro.name, "' takes not more than ", num_params, " argument(s)"));
    }
  }
  ValueDict extra_keywords;
  for (auto& [name, value] : args.keyword) {
    size_t i = 0;
    while (i < num_params && macro.params[i] != name) ++i;
    if (i == num_params) {
      if (!macro.takes_kwargs) {
        return absl::InvalidArgumentError("macro '" + macro.name + "' takes no keyword argument '" +
                                          name + "'");
      }
      extra_keywords.emplace_back(name, value);
    } else if (given[i]) {
      return absl::InvalidArgumentError("macro '" + macro.name +
                                        "' got multiple values for argument '" + name + "'");
    } else {
      frame->vars[name] = value;
      given[i] = true;
    }
  }
  if (macro.takes_varargs) frame->vars["varargs"] = Value::Tuple(std::move(extra_positional));
  if (macro.takes_kwargs) frame->vars["kwargs"] = Value::Dict(std::move(extra_keywords));

  std::shared_ptr<Scope> saved = scope_;
  scope_ = frame;
  ++call_depth_;
  absl::Status status;
  for (size_t i = 0; i < num_params && status.ok(); ++i) {
    if (given[i]) continue;
    if (macro.defaults[i] == nullptr) {
      frame->vars[macro.params[i]] =
          Value::Undefined("parameter '" + macro.params[i] + "' was not provided");
      continue;
    }
    absl::StatusOr<Value> value = Eval(*macro.defaults[i]);
    if (value.ok()) {
      frame->vars[macro.params[i]] = *std::move(value);
    } else {
      status = value.status();
    }
  }
  std::string out;
  if (status.ok()) status = Exec(macro.body, &out);
  --call_depth_;
  scope_ = saved;
  RETURN_IF_ERROR(status);
  return Value::String(std::move(out));
}

Value Evaluator::Lookup(const std::string& name) const {
  for (const Scope* s = scope_.get(); s != nullptr; s = s->parent.get()) {
    auto it = s->vars.find(name);
    if (it != s->vars.end()) return it->second;
  }
  return Value::Undefined("'" + name + "' is undefined");
}

absl::StatusOr<Value> Evaluator::Eval(const Expr& expr) {
  absl::StatusOr<Value> value = EvalUncaught(expr);
  if (!value.ok()) return AtLine(value.status(), expr.line);
  return value;
}

absl::StatusOr<CallArgs> Evaluator::EvalArgs(const Expr& expr, size_t first_positional) {
  CallArgs args;
  for (size_t i = first_positional; i < expr.items.size(); ++i) {
    ASSIGN_OR_RETURN(Value value, Eval(*expr.items[i]));
    args.positional.push_back(std::move(value));
  }
  for (const auto& [name, value_expr] : expr.keywords) {
    ASSIGN_OR_RETURN(Value value, Eval(*value_expr));
    args.keyword.emplace_back(name, std::move(value));
  }
  return args;
}

absl::StatusOr<Value> Evaluator::EvalUncaught(const Expr& expr) {
  switch (expr.kind) {
    case Expr::Kind::kConst:
      return expr.value;
    case Expr::Kind::kName:
      return Lookup(expr.name);
    case Expr::Kind::kList:
    case Expr::Kind::kTuple: {
      ValueList items;
      for (const ExprPtr& item : expr.items) {
        ASSIGN_OR_RETURN(Value value, Eval(*item));
        items.push_back(std::move(value));
      }
      Value result = expr.kind == Expr::Kind::kList ? Value::List(std::move(items))
                                                    : Value::Tuple(std::move(items));
      RETURN_IF_ERROR(CheckDepth(result));
      return result;
    }
    case Expr::Kind::kDict: {
      ValueDict items;
      for (size_t i = 0; i + 1 < expr.items.size(); i += 2) {
        ASSIGN_OR_RETURN(Value key, Eval(*expr.items[i]));
        ASSIGN_OR_RETURN(Value value, Eval(*expr.items[i + 1]));
        if (!key.is_string()) {
          return absl::UnimplementedError("dict keys must be strings, not " + key.TypeName());
        }
        DictSet(&items, key.str(), std::move(value));
      }
      Value result = Value::Dict(std::move(items));
      RETURN_IF_ERROR(CheckDepth(result));
      return result;
    }
    case Expr::Kind::kGetAttr: {
      ASSIGN_OR_RETURN(Value object, Eval(*expr.items[0]));
      return GetAttr(object, expr.name);
    }
    case Expr::Kind::kGetItem: {
      ASSIGN_OR_RETURN(Value object, Eval(*expr.items[0]));
      if (expr.items[1]->kind == Expr::Kind::kSlice) return EvalSlice(object, *expr.items[1]);
      ASSIGN_OR_RETURN(Value key, Eval(*expr.items[1]));
      return GetItem(object, key);
    }
    case Expr::Kind::kSlice:
      return absl::InternalError("slice outside a subscript");
    case Expr::Kind::kCall: {
      ASSIGN_OR_RETURN(Value callee, Eval(*expr.items[0]));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1));
      return Call(callee, std::move(args));
    }
    case Expr::Kind::kFilter:
      return ApplyFilterExpr(expr, nullptr);
    case Expr::Kind::kTest: {
      ASSIGN_OR_RETURN(Value input, Eval(*expr.items[0]));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1));
      ASSIGN_OR_RETURN(bool passed, ApplyTest(expr.name, input, std::move(args)));
      return Value::Bool(passed);
    }
    case Expr::Kind::kUnary: {
      ASSIGN_OR_RETURN(Value operand, Eval(*expr.items[0]));
      if (expr.name == "not") return Value::Bool(!operand.Truthy());
      return UnaryOp(expr.name, operand);
    }
    case Expr::Kind::kBinary: {
      ASSIGN_OR_RETURN(Value left, Eval(*expr.items[0]));
      if (expr.name == "and") return left.Truthy() ? Eval(*expr.items[1]) : left;
      if (expr.name == "or") return left.Truthy() ? left : Eval(*expr.items[1]);
      ASSIGN_OR_RETURN(Value right, Eval(*expr.items[1]));
      ASSIGN_OR_RETURN(Value result, BinaryOp(expr.name, left, right));
      RETURN_IF_ERROR(CheckDepth(result));
      return result;
    }
    case Expr::Kind::kCompare: {
      ASSIGN_OR_RETURN(Value left, Eval(*expr.items[0]));
      for (size_t i = 0; i < expr.ops.size(); ++i) {
        ASSIGN_OR_RETURN(Value right, Eval(*expr.items[i + 1]));
        ASSIGN_OR_RETURN(bool holds, CompareOp(expr.ops[i], left, right));
        if (!holds) return Value::Bool(false);
        left = std::move(right);
      }
      return Value::Bool(true);
    }
    case Expr::Kind::kCondExpr: {
      ASSIGN_OR_RETURN(Value condition, Eval(*expr.items[1]));
      if (condition.Truthy()) return Eval(*expr.items[0]);
      if (expr.items[2] != nullptr) return Eval(*expr.items[2]);
      return Value::Undefined(absl::StrCat("the inline if-expression on line ", expr.line,
                                           " evaluated to false and no else section was defined."));
    }
  }
  return absl::InternalError("unknown expression");
}

absl::StatusOr<Value> Evaluator::EvalSlice(const Value& object, const Expr& slice) {
  if (object.is_undefined()) return absl::InvalidArgumentError(object.undefined_hint());
  std::optional<int64_t> bounds[3];
  for (int i = 0; i < 3; ++i) {
    if (slice.items[i] == nullptr) continue;
    ASSIGN_OR_RETURN(Value bound, Eval(*slice.items[i]));
    if (bound.is_none()) continue;
    if (!bound.is_integral()) {
      return absl::InvalidArgumentError("slice indices must be integers or None");
    }
    bounds[i] = bound.int_value();
  }
  return Slice(object, bounds[0], bounds[1], bounds[2]);
}

absl::StatusOr<Value> Evaluator::ApplyFilterExpr(const Expr& filter, const Value* block_input) {
  Value input;
  const Expr* inner = filter.items[0].get();
  if (inner == nullptr) {
    input = *block_input;
  } else if (inner->kind == Expr::Kind::kFilter && block_input != nullptr) {
    ASSIGN_OR_RETURN(input, ApplyFilterExpr(*inner, block_input));
  } else {
    ASSIGN_OR_RETURN(input, Eval(*inner));
  }
  ASSIGN_OR_RETURN(CallArgs args, EvalArgs(filter, 1));
  absl::StatusOr<Value> result = ApplyFilter(filter.name, input, std::move(args));
  if (!result.ok()) return AtLine(result.status(), filter.line);
  return result;
}

absl::StatusOr<Value> Evaluator::Call(const Value& callee, CallArgs args) {
  if (callee.is_undefined()) return absl::InvalidArgumentError(callee.undefined_hint());
  if (!callee.is_function()) {
    return absl::InvalidArgumentError("'" + callee.TypeName() + "' object is not callable");
  }
  ASSIGN_OR_RETURN(Value result, callee.function()(*this, args));
  RETURN_IF_ERROR(CheckDepth(result));
  return result;
}

absl::StatusOr<Value> Evaluator::ApplyFilter(const std::string& name, const Value& input,
                                             CallArgs args) {
  const FilterFunction* filter = FindFilter(name);
  if (filter == nullptr) return absl::InvalidArgumentError("No filter named '" + name + "'.");
  ASSIGN_OR_RETURN(Value result, (*filter)(*this, input, args));
  RETURN_IF_ERROR(CheckDepth(result));
  return result;
}

absl::StatusOr<bool> Evaluator::ApplyTest(const std::string& name, const Value& input,
                                          CallArgs args) {
  const TestFunction* test = FindTest(name);
  if (test == nullptr) return absl::InvalidArgumentError("No test named '" + name + "'.");
  return (*test)(*this, input, args);
}

absl::StatusOr<Value> Evaluator::GetAttr(const Value& object, const std::string& name) {
  if (object.is_undefined()) return absl::InvalidArgumentError(object.undefined_hint());
  if (std::optional<Value> method = LookupMethod(object, name)) return *method;
  if ((object.is_dict() || object.is_namespace())) {
    if (const Value* found = object.Find(name)) return *found;
  }
  return Value::Undefined(ObjectName(object) + " has no attribute '" + name + "'");
}

absl::StatusOr<Value> Evaluator::GetItem(const Value& object, const Value& key) {
  if (object.is_undefined()) return absl::InvalidArgumentError(object.undefined_hint());
  if (object.is_dict() || object.is_namespace()) {
    if (key.is_string()) {
      if (const Value* found = object.Find(key.str())) return *found;
      return GetAttr(object, key.str());
    }
    return Value::Undefined(ObjectName(object) + " has no attribute " + key.Repr());
  }
  if ((object.is_list() || object.is_string()) && key.is_integral()) {
    int64_t index = key.int_value();
    if (object.is_list()) {
      int64_t n = static_cast<int64_t>(object.list().size());
      if (index < 0) index += n;
      if (index >= 0 && index < n) return object.list()[index];
    } else {
      std::u32string chars = DecodeUtf8(object.str());
      int64_t n = static_cast<int64_t>(chars.size());
      if (index < 0) index += n;
      if (index >= 0 && index < n) return Value::String(EncodeUtf8(chars.substr(index, 1)));
    }
    return Value::Undefined(ObjectName(object) + " has no element " + key.Repr());
  }
  if (key.is_string()) return GetAttr(object, key.str());
  return Value::Undefined(ObjectName(object) + " has no element " + key.Repr());
}

absl::StatusOr<ValueList> Evaluator::Iterate(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return ValueList{};
    case Value::Kind::kList:
      return value.list();
    case Value::Kind::kDict: {
      ValueList keys;
      keys.reserve(value.dict().size());
      for (const auto& item : value.dict()) keys.push_back(Value::String(item.first));
      return keys;
    }
    case Value::Kind::kString: {
      ValueList chars;
      std::string one;
      for (char32_t c : DecodeUtf8(value.str())) {
        one.clear();
        AppendUtf8(c, &one);
        chars.push_back(Value::String(one));
      }
      return chars;
    }
    default:
      return absl::InvalidArgumentError("'" + value.TypeName() + "' object is not iterable");
  }
}

}  // namespace jinja
}  // namespace shardserve
