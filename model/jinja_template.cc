#include "model/jinja_template.h"

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "model/jinja_builtins.h"
#include "model/jinja_lexer.h"
#include "model/jinja_parser.h"

namespace shardserve {
namespace jinja {

absl::StatusOr<JinjaTemplate> JinjaTemplate::Parse(std::string_view source) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, JinjaLexer::Tokenize(source));
  ASSIGN_OR_RETURN(Body body, JinjaParser::Parse(tokens));
  return JinjaTemplate(std::make_shared<const Body>(std::move(body)));
}

absl::StatusOr<std::string> JinjaTemplate::Render(const nlohmann::ordered_json& variables,
                                                  const RenderLimits& limits) const {
  if (!variables.is_object() && !variables.is_null()) {
    return absl::InvalidArgumentError("template variables must be a JSON object");
  }
  ValueDict globals = BuiltinGlobals();
  if (variables.is_object()) {
    for (const auto& [name, value] : variables.items()) {
      DictSet(&globals, name, Value::FromJson(value));
    }
  }
  Evaluator evaluator(std::move(globals), limits);
  std::string out;
  RETURN_IF_ERROR(evaluator.Render(*body_, &out));
  return out;
}

}  // namespace jinja
}  // namespace shardserve
