// Everything a front end needs to use a model from one path: its weights, tokenizer and chat
// template, loaded from a GGUF file (embedded tokenizer and template) or a Hugging Face
// directory (tokenizer.json and tokenizer_config.json).
//
//   ASSIGN_OR_RETURN(ModelBundle model, LoadModelBundle(path));
//   std::vector<int32_t> ids = model.tokenizer->Encode(text, /*add_special_tokens=*/true);
#ifndef SHARDSERVE_MODEL_MODEL_BUNDLE_H_
#define SHARDSERVE_MODEL_MODEL_BUNDLE_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"
#include "model/weight_source.h"

namespace shardserve {

struct ModelBundle {
  std::unique_ptr<WeightSource> weights;
  std::unique_ptr<Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat_template;  // absent when the model ships none
};

// Loads the tokenizer of an opened model: GGUF metadata, or tokenizer.json beside config.json.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const WeightSource& weights);

// Loads the chat template: GGUF tokenizer.chat_template, or tokenizer_config.json's
// "chat_template" with its bos_token / eos_token. nullopt when the model has none.
absl::StatusOr<std::optional<ChatTemplate>> LoadChatTemplate(const WeightSource& weights,
                                                             const Tokenizer& tokenizer);

// Opens the weights, then the tokenizer and chat template.
absl::StatusOr<ModelBundle> LoadModelBundle(const std::string& path);

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_MODEL_BUNDLE_H_
