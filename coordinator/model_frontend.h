// What the coordinator knows of the served model: its tokenizer, its chat template and the few
// numbers that request validation needs (vocabulary size, context window, EOS ids). The
// coordinator never holds weights: Load() opens the model file only long enough to read its
// config, tokenizer and template (a GGUF file is memory-mapped, never read in full), then closes
// it.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<ModelFrontend> model, ModelFrontend::Load(path, fp));
//   ASSIGN_OR_RETURN(std::vector<int32_t> ids, model->EncodeText("Hello", true));
//
// Tests build one from a tokenizer.json and a hand-written Info.
//
// Thread safety: immutable after construction; every method may be called from many threads.
#ifndef SHARDSERVE_COORDINATOR_MODEL_FRONTEND_H_
#define SHARDSERVE_COORDINATOR_MODEL_FRONTEND_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"

namespace shardserve {

class ModelFrontend {
 public:
  struct Info {
    std::string arch;         // as written in the model file ("llama", "qwen2moe")
    std::string fingerprint;  // ModelFingerprint of the file
    // Token ids in [0, vocab_size) are the model's; the tokenizer may know fewer.
    int64_t vocab_size = 0;
    // The context window in tokens: prompt plus output must fit.
    int64_t max_model_len = 0;
    // Ids that end generation unless ignore_eos: the config's and the tokenizer's EOS.
    std::vector<int32_t> eos_token_ids;
  };

  // Reads the config, tokenizer and chat template of the model at `path` (a .gguf file or a
  // Hugging Face directory). Errors name the file.
  static absl::StatusOr<std::unique_ptr<ModelFrontend>> Load(const std::string& path,
                                                             std::string fingerprint);

  // The name a model is served under when none is configured: the --model argument when it is a
  // known short name that resolution turned into a path ("smollm2"), else the file or directory
  // name without its extension ("/models/Qwen3-0.6B.Q8_0.gguf" -> "Qwen3-0.6B.Q8_0").
  static std::string DefaultServedName(const std::string& model_argument,
                                       const std::string& resolved_path);

  // REQUIRES: tokenizer != nullptr.
  ModelFrontend(Info info, std::unique_ptr<Tokenizer> tokenizer,
                std::optional<ChatTemplate> chat_template);

  ModelFrontend(const ModelFrontend&) = delete;
  ModelFrontend& operator=(const ModelFrontend&) = delete;

  const Info& info() const { return info_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  bool has_chat_template() const { return chat_template_.has_value(); }

  // Token ids of `text`, with BOS when the model wants one and `add_special_tokens`.
  // INVALID_ARGUMENT for empty text.
  absl::StatusOr<std::vector<int32_t>> EncodeText(absl::string_view text,
                                                  bool add_special_tokens) const;

  // The prompt text for a conversation, ending with the assistant's turn. INVALID_ARGUMENT when
  // there are no messages, the model ships no chat template, or the template rejects them.
  absl::StatusOr<std::string> RenderChat(const std::vector<ChatMessage>& messages) const;

  // Token ids of a rendered chat prompt: the template writes any BOS itself.
  std::vector<int32_t> EncodeRenderedChat(absl::string_view prompt) const;

  // INVALID_ARGUMENT for an empty list or an id outside [0, vocab_size), naming the first one.
  absl::Status CheckTokenIds(absl::Span<const int32_t> ids) const;

 private:
  const Info info_;
  const std::unique_ptr<Tokenizer> tokenizer_;
  const std::optional<ChatTemplate> chat_template_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_MODEL_FRONTEND_H_
