#include "model/model_bundle.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/gguf_file.h"
#include "model/tokenizer_gguf.h"
#include "nlohmann/json.hpp"

namespace shardserve {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The directory of an HF checkpoint: the weight source's path itself.
std::string HfDir(const WeightSource& weights) { return weights.path(); }

absl::StatusOr<GgufTokenizerMetadata> ReadGgufTokenizer(const GgufFile& g) {
  GgufTokenizerMetadata m;
  ASSIGN_OR_RETURN(m.model, g.GetString("tokenizer.ggml.model"));
  if (g.Has("tokenizer.ggml.pre")) {
    ASSIGN_OR_RETURN(m.pre, g.GetString("tokenizer.ggml.pre"));
  }
  ASSIGN_OR_RETURN(m.tokens, g.GetStringArray("tokenizer.ggml.tokens"));
  if (g.Has("tokenizer.ggml.merges")) {
    ASSIGN_OR_RETURN(m.merges, g.GetStringArray("tokenizer.ggml.merges"));
  }
  if (g.Has("tokenizer.ggml.token_type")) {
    ASSIGN_OR_RETURN(std::vector<int64_t> types, g.GetIntArray("tokenizer.ggml.token_type"));
    m.token_types.assign(types.begin(), types.end());
  }
  auto opt_int = [&](const char* key, std::optional<int64_t>* out) -> absl::Status {
    if (!g.Has(key)) return absl::OkStatus();
    ASSIGN_OR_RETURN(int64_t v, g.GetInt(key));
    *out = v;
    return absl::OkStatus();
  };
  auto opt_bool = [&](const char* key, std::optional<bool>* out) -> absl::Status {
    if (!g.Has(key)) return absl::OkStatus();
    ASSIGN_OR_RETURN(bool v, g.GetBool(key));
    *out = v;
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(opt_int("tokenizer.ggml.bos_token_id", &m.bos_id));
  RETURN_IF_ERROR(opt_int("tokenizer.ggml.eos_token_id", &m.eos_id));
  RETURN_IF_ERROR(opt_int("tokenizer.ggml.unknown_token_id", &m.unknown_id));
  RETURN_IF_ERROR(opt_bool("tokenizer.ggml.add_bos_token", &m.add_bos));
  RETURN_IF_ERROR(opt_bool("tokenizer.ggml.add_eos_token", &m.add_eos));
  return m;
}

// tokenizer_config.json writes special tokens as a string or as {"content": "..."}.
std::string TokenString(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return "";
}

std::string PieceOrEmpty(const Tokenizer& tok, int32_t id) {
  if (id < 0) return "";
  auto piece = tok.Decode({id}, /*skip_special_tokens=*/false);
  return piece.ok() ? *piece : "";
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const WeightSource& weights) {
  if (const GgufFile* g = weights.gguf(); g != nullptr) {
    ASSIGN_OR_RETURN(GgufTokenizerMetadata meta, ReadGgufTokenizer(*g));
    ASSIGN_OR_RETURN(TokenizerSpec spec, TokenizerSpecFromGguf(std::move(meta), weights.path()));
    return Tokenizer::Create(std::move(spec));
  }
  const std::string path = HfDir(weights) + "/tokenizer.json";
  ASSIGN_OR_RETURN(std::string json, ReadFile(path));
  return Tokenizer::FromHfJson(json, path);
}

absl::StatusOr<std::optional<ChatTemplate>> LoadChatTemplate(const WeightSource& weights,
                                                             const Tokenizer& tokenizer) {
  std::string source, bos, eos;
  if (const GgufFile* g = weights.gguf(); g != nullptr) {
    if (!g->Has("tokenizer.chat_template")) return std::optional<ChatTemplate>();
    ASSIGN_OR_RETURN(source, g->GetString("tokenizer.chat_template"));
    bos = PieceOrEmpty(tokenizer, tokenizer.bos_id());
    eos = PieceOrEmpty(tokenizer, tokenizer.eos_id());
  } else {
    const std::string path = HfDir(weights) + "/tokenizer_config.json";
    auto text = ReadFile(path);
    if (!text.ok()) return std::optional<ChatTemplate>();
    nlohmann::json cfg = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (cfg.is_discarded() || !cfg.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(path, " is not a JSON object"));
    }
    if (!cfg.contains("chat_template") || !cfg["chat_template"].is_string()) {
      return std::optional<ChatTemplate>();
    }
    source = cfg["chat_template"].get<std::string>();
    bos = cfg.contains("bos_token") ? TokenString(cfg["bos_token"]) : "";
    eos = cfg.contains("eos_token") ? TokenString(cfg["eos_token"]) : "";
  }
  ASSIGN_OR_RETURN(ChatTemplate t, ChatTemplate::Create(source, bos, eos));
  return std::optional<ChatTemplate>(std::move(t));
}

absl::StatusOr<ModelBundle> LoadModelBundle(const std::string& path) {
  ModelBundle b;
  ASSIGN_OR_RETURN(b.weights, OpenWeightSource(path));
  ASSIGN_OR_RETURN(b.tokenizer, LoadTokenizer(*b.weights));
  ASSIGN_OR_RETURN(b.chat_template, LoadChatTemplate(*b.weights, *b.tokenizer));
  return b;
}

}  // namespace shardserve
