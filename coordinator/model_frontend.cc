#include "coordinator/model_frontend.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "model/model_bundle.h"
#include "model/weight_source.h"

namespace shardserve {

absl::StatusOr<std::unique_ptr<ModelFrontend>> ModelFrontend::Load(const std::string& path,
                                                                   std::string fingerprint) {
  // The weight source maps the file (no tensor is read) so the tokenizer can come from GGUF
  // metadata; it is dropped before returning.
  ASSIGN_OR_RETURN(std::unique_ptr<WeightSource> weights, OpenWeightSource(path));
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, LoadTokenizer(*weights));
  ASSIGN_OR_RETURN(std::optional<ChatTemplate> chat_template,
                   LoadChatTemplate(*weights, *tokenizer));
  const ModelConfig& config = weights->config();
  Info info;
  info.arch = config.arch_name;
  info.fingerprint = std::move(fingerprint);
  info.vocab_size = config.vocab_size;
  info.max_model_len = config.max_position_embeddings;
  for (int64_t id : config.eos_token_ids) info.eos_token_ids.push_back(static_cast<int32_t>(id));
  const int32_t tokenizer_eos = tokenizer->eos_id();
  if (tokenizer_eos >= 0 && std::find(info.eos_token_ids.begin(), info.eos_token_ids.end(),
                                      tokenizer_eos) == info.eos_token_ids.end()) {
    info.eos_token_ids.push_back(tokenizer_eos);
  }
  if (info.max_model_len <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the model states no context window (max_position_embeddings)"));
  }
  return std::make_unique<ModelFrontend>(std::move(info), std::move(tokenizer),
                                         std::move(chat_template));
}

std::string ModelFrontend::DefaultServedName(const std::string& model_argument,
                                             const std::string& resolved_path) {
  if (model_argument != resolved_path) return model_argument;
  std::string name = resolved_path;
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  const size_t slash = name.rfind('/');
  if (slash != std::string::npos) name = name.substr(slash + 1);
  const size_t dot = name.rfind('.');
  if (dot != std::string::npos && dot > 0) name = name.substr(0, dot);
  return name;
}

ModelFrontend::ModelFrontend(Info info, std::unique_ptr<Tokenizer> tokenizer,
                             std::optional<ChatTemplate> chat_template)
    : info_(std::move(info)),
      tokenizer_(std::move(tokenizer)),
      chat_template_(std::move(chat_template)) {
  CHECK(tokenizer_ != nullptr);
}

absl::StatusOr<std::vector<int32_t>> ModelFrontend::EncodeText(absl::string_view text,
                                                               bool add_special_tokens) const {
  if (text.empty()) return absl::InvalidArgumentError("the input text is empty");
  return tokenizer_->Encode(text, add_special_tokens);
}

absl::StatusOr<std::string> ModelFrontend::RenderChat(
    const std::vector<ChatMessage>& messages) const {
  if (messages.empty()) return absl::InvalidArgumentError("the chat input has no messages");
  if (!chat_template_.has_value()) {
    return absl::InvalidArgumentError(
        "this model ships no chat template; send text or token ids instead");
  }
  absl::StatusOr<std::string> prompt =
      chat_template_->Apply(messages, /*add_generation_prompt=*/true);
  if (!prompt.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the chat template refused the messages: ", prompt.status().message()));
  }
  return prompt;
}

std::vector<int32_t> ModelFrontend::EncodeRenderedChat(absl::string_view prompt) const {
  // The template writes any BOS itself, as Hugging Face's apply_chat_template assumes.
  return tokenizer_->Encode(prompt, /*add_special_tokens=*/false);
}

absl::Status ModelFrontend::CheckTokenIds(absl::Span<const int32_t> ids) const {
  if (ids.empty()) return absl::InvalidArgumentError("the input token ids are empty");
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= info_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", ids[i], " at position ", i,
                                                     " is outside the vocabulary [0, ",
                                                     info_.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace shardserve
