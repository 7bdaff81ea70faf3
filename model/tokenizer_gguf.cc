#include "model/tokenizer_gguf.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/pre_tokenizer.h"

namespace shardserve {

absl::StatusOr<TokenizerSpec> TokenizerSpecFromGguf(GgufTokenizerMetadata metadata,
                                                    const std::string& source_name) {
  if (metadata.model != "gpt2") {
    if (metadata.model == "llama") {
      return absl::UnimplementedError(absl::StrCat(
          source_name,
          ": tokenizer.ggml.model 'llama' (SentencePiece BPE) is not supported yet; only "
          "byte-level BPE ('gpt2') is"));
    }
    return absl::UnimplementedError(absl::StrCat(source_name, ": tokenizer.ggml.model '",
                                                 metadata.model, "' is not supported"));
  }
  if (metadata.tokens.empty()) {
    return absl::InvalidArgumentError(source_name + ": tokenizer.ggml.tokens is missing");
  }
  if (!metadata.token_types.empty() && metadata.token_types.size() != metadata.tokens.size()) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": tokenizer.ggml.token_type has ",
                                                   metadata.token_types.size(), " entries for ",
                                                   metadata.tokens.size(), " tokens"));
  }
  TokenizerSpec spec;
  spec.source_name = source_name;
  const std::string pre = metadata.pre.empty() ? "default" : metadata.pre;
  auto config = PreTokenizer::ConfigForName(pre);
  if (!config.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": tokenizer.ggml.pre: ", config.status().message()));
  }
  spec.pre_tokenizer = pre;
  spec.pre_tokenizer_config = std::move(config).value();
  const bool llama3_like = pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" ||
                           pre == "falcon3" || pre == "falcon-h1" || pre == "pixtral" ||
                           pre == "tekken";
  spec.ignore_merges = llama3_like;
  spec.add_bos = metadata.add_bos.value_or(llama3_like);
  spec.add_eos = metadata.add_eos.value_or(false);
  spec.bos_id = metadata.bos_id.value_or(-1);
  spec.eos_id = metadata.eos_id.value_or(-1);
  // An empty GGUF token cannot be matched or merged; llama.cpp renames it, we mark it unused.
  spec.tokens = std::move(metadata.tokens);
  spec.merges = std::move(metadata.merges);
  spec.token_types = std::move(metadata.token_types);
  return spec;
}

}  // namespace shardserve
