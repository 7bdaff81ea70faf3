#include "model/chat_template.h"

#include <utility>

#include "absl/status/status.h"
#include "common/status_macros.h"

namespace shardserve {

ChatTemplate::ChatTemplate(jinja::JinjaTemplate compiled, std::string source, std::string bos_token,
                           std::string eos_token)
    : compiled_(std::move(compiled)),
      source_(std::move(source)),
      bos_token_(std::move(bos_token)),
      eos_token_(std::move(eos_token)) {}

absl::StatusOr<ChatTemplate> ChatTemplate::Create(std::string template_source,
                                                  std::string bos_token, std::string eos_token) {
  ASSIGN_OR_RETURN(jinja::JinjaTemplate compiled, jinja::JinjaTemplate::Parse(template_source));
  return ChatTemplate(std::move(compiled), std::move(template_source), std::move(bos_token),
                      std::move(eos_token));
}

absl::StatusOr<std::string> ChatTemplate::Apply(const std::vector<ChatMessage>& messages,
                                                bool add_generation_prompt) const {
  return Apply(messages, add_generation_prompt, nullptr);
}

absl::StatusOr<std::string> ChatTemplate::Apply(
    const std::vector<ChatMessage>& messages, bool add_generation_prompt,
    const nlohmann::ordered_json& extra_variables) const {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const ChatMessage& message : messages) {
    list.push_back({{"role", message.role}, {"content", message.content}});
  }
  return ApplyJson(list, add_generation_prompt, extra_variables);
}

absl::StatusOr<std::string> ChatTemplate::ApplyJson(
    const nlohmann::ordered_json& messages, bool add_generation_prompt,
    const nlohmann::ordered_json& extra_variables) const {
  if (!messages.is_array()) return absl::InvalidArgumentError("messages must be a JSON array");
  if (!extra_variables.is_object() && !extra_variables.is_null()) {
    return absl::InvalidArgumentError("extra template variables must be a JSON object");
  }
  // The same variables, in the same order, as transformers' render_jinja_template.
  nlohmann::ordered_json variables = {
      {"messages", messages},    {"tools", nullptr},
      {"documents", nullptr},    {"add_generation_prompt", add_generation_prompt},
      {"bos_token", bos_token_}, {"eos_token", eos_token_},
  };
  if (extra_variables.is_object()) {
    for (const auto& [name, value] : extra_variables.items()) variables[name] = value;
  }
  return compiled_.Render(variables);
}

}  // namespace shardserve
