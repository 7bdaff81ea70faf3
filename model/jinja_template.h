// A compiled Jinja template, rendered the way Python's jinja2 renders Hugging Face chat templates
// (ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, loop controls, and
// transformers' raise_exception, strftime_now and tojson).
//
//   ASSIGN_OR_RETURN(JinjaTemplate t, JinjaTemplate::Parse("Hi {{ name | upper }}!"));
//   ASSIGN_OR_RETURN(std::string text, t.Render(nlohmann::ordered_json{{"name", "ada"}}));
//   // text == "Hi ADA!"
//
// Variables are JSON values; use nlohmann::ordered_json to keep object key order, which `tojson`
// and dict iteration expose (nlohmann::json sorts keys). Variables shadow the builtins.
// A JinjaTemplate is immutable after Parse; copies share the syntax tree and may render
// concurrently from several threads.
#ifndef SHARDSERVE_MODEL_JINJA_TEMPLATE_H_
#define SHARDSERVE_MODEL_JINJA_TEMPLATE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/jinja_ast.h"
#include "model/jinja_evaluator.h"
#include "nlohmann/json.hpp"

namespace shardserve {
namespace jinja {

class JinjaTemplate {
 public:
  // INVALID_ARGUMENT with "line N: ..." on syntax errors.
  static absl::StatusOr<JinjaTemplate> Parse(std::string_view source);

  // REQUIRES: `variables` is a JSON object or null.
  // Errors: INVALID_ARGUMENT for template errors (type errors, undefined values used where a
  // value is needed, raise_exception(message) — the message is kept verbatim), RESOURCE_EXHAUSTED
  // when a render limit is exceeded.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& variables,
                                     const RenderLimits& limits = RenderLimits()) const;

 private:
  explicit JinjaTemplate(std::shared_ptr<const Body> body) : body_(std::move(body)) {}

  std::shared_ptr<const Body> body_;
};

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_TEMPLATE_H_
