// Turns a conversation into the prompt text a chat model was trained on, by rendering the
// model's Jinja chat template (tokenizer_config.json "chat_template", or GGUF metadata
// "tokenizer.chat_template") as Hugging Face transformers' apply_chat_template(tokenize=False)
// does.
//
//   ASSIGN_OR_RETURN(ChatTemplate chat,
//                    ChatTemplate::Create(template_source, "<|im_start|>", "<|im_end|>"));
//   ASSIGN_OR_RETURN(std::string prompt,
//                    chat.Apply({{"system", "Be brief."}, {"user", "Hi"}},
//                               /*add_generation_prompt=*/true));
//
// The template sees what transformers passes: `messages`, `tools` and `documents` (none unless
// given), `add_generation_prompt`, `bos_token`, `eos_token`, and any extra variables (e.g.
// {"enable_thinking": false} for Qwen3, {"date_string": "26 Jul 2024"} for Llama 3), which are
// set last and so override the others. A template that rejects the conversation
// (raise_exception) yields INVALID_ARGUMENT with the template's message.
//
// A ChatTemplate is immutable; copies are cheap and it may be applied from several threads.
#ifndef SHARDSERVE_MODEL_CHAT_TEMPLATE_H_
#define SHARDSERVE_MODEL_CHAT_TEMPLATE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/jinja_template.h"
#include "nlohmann/json.hpp"

namespace shardserve {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool", ...
  std::string content;
};

class ChatTemplate {
 public:
  // Parses the template; INVALID_ARGUMENT ("line N: ...") when it is not valid Jinja.
  static absl::StatusOr<ChatTemplate> Create(std::string template_source, std::string bos_token,
                                             std::string eos_token);

  absl::StatusOr<std::string> Apply(const std::vector<ChatMessage>& messages,
                                    bool add_generation_prompt) const;
  // `extra_variables`: a JSON object of further template variables, or null.
  absl::StatusOr<std::string> Apply(const std::vector<ChatMessage>& messages,
                                    bool add_generation_prompt,
                                    const nlohmann::ordered_json& extra_variables) const;
  // Messages as JSON objects, for fields beyond role and content (tool_calls, tool_call_id,
  // reasoning_content, content given as a list of parts, ...). Object key order is kept.
  absl::StatusOr<std::string> ApplyJson(const nlohmann::ordered_json& messages,
                                        bool add_generation_prompt,
                                        const nlohmann::ordered_json& extra_variables) const;

  const std::string& source() const { return source_; }
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }

 private:
  ChatTemplate(jinja::JinjaTemplate compiled, std::string source, std::string bos_token,
               std::string eos_token);

  jinja::JinjaTemplate compiled_;
  std::string source_;
  std::string bos_token_;
  std::string eos_token_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_CHAT_TEMPLATE_H_
