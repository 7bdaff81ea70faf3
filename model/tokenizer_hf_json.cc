#include "model/tokenizer_hf_json.h"

#include <nlohmann/json.hpp>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/pre_tokenizer.h"

namespace shardserve {
namespace {

using nlohmann::json;

absl::Status Unsupported(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": unsupported ", what));
}

// `object[key]` when present and not null, else nullptr.
const json* Field(const json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

bool BoolField(const json& object, const char* key, bool default_value) {
  const json* value = Field(object, key);
  return value != nullptr && value->is_boolean() ? value->get<bool>() : default_value;
}

std::string TypeOf(const json& object) {
  const json* type = Field(object, "type");
  return type != nullptr && type->is_string() ? type->get<std::string>() : "";
}

// The components of a Sequence (`list_key` holds them), or the object itself.
std::vector<const json*> Flatten(const json& object, const char* list_key) {
  std::vector<const json*> out;
  if (TypeOf(object) == "Sequence") {
    if (const json* items = Field(object, list_key); items != nullptr && items->is_array()) {
      for (const json& item : *items) {
        std::vector<const json*> inner = Flatten(item, list_key);
        out.insert(out.end(), inner.begin(), inner.end());
      }
    }
    return out;
  }
  out.push_back(&object);
  return out;
}

absl::StatusOr<SplitBehavior> ParseBehavior(const std::string& name) {
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat("unknown split behavior '", name, "'"));
}

// Escapes `literal` for Oniguruma so it matches itself.
std::string EscapeRegex(const std::string& literal) {
  std::string out;
  for (char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    const bool plain = u >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                       (c >= 'A' && c <= 'Z') || c == '_' || c == ' ';
    if (!plain) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

absl::StatusOr<PreTokenizerConfig> ParsePreTokenizer(const json* root, const std::string& source) {
  if (root == nullptr) {
    return Unsupported(source, "pre_tokenizer null: not a byte-level BPE tokenizer");
  }
  PreTokenizerConfig config;
  bool saw_byte_level = false;
  for (const json* step : Flatten(*root, "pretokenizers")) {
    const std::string type = TypeOf(*step);
    if (saw_byte_level) {
      return Unsupported(source, absl::StrCat("pre_tokenizer ", type, " after ByteLevel"));
    }
    if (type == "ByteLevel") {
      saw_byte_level = true;
      if (BoolField(*step, "add_prefix_space", true)) {
        if (!config.splits.empty()) {
          return Unsupported(source, "ByteLevel add_prefix_space after other pre-tokenizers");
        }
        config.add_prefix_space = true;
      }
      if (BoolField(*step, "use_regex", true)) config.splits.push_back({kGpt2Pattern});
    } else if (type == "Digits") {
      if (BoolField(*step, "individual_digits", false)) {
        config.splits.push_back({R"(\p{N})"});
      } else {
        config.splits.push_back({R"(\p{N}+)"});
      }
    } else if (type == "Split") {
      PreTokenizerSplit split;
      const json* pattern = Field(*step, "pattern");
      if (pattern == nullptr) return Unsupported(source, "Split without a pattern");
      if (const json* regex = Field(*pattern, "Regex"); regex != nullptr && regex->is_string()) {
        split.pattern = regex->get<std::string>();
      } else if (const json* literal = Field(*pattern, "String");
                 literal != nullptr && literal->is_string()) {
        split.pattern = EscapeRegex(literal->get<std::string>());
      } else {
        return Unsupported(source, "Split pattern (expected Regex or String)");
      }
      const json* behavior = Field(*step, "behavior");
      if (behavior != nullptr && behavior->is_string()) {
        auto parsed = ParseBehavior(behavior->get<std::string>());
        if (!parsed.ok()) return Unsupported(source, std::string(parsed.status().message()));
        split.behavior = *parsed;
      }
      split.invert = BoolField(*step, "invert", false);
      config.splits.push_back(std::move(split));
    } else {
      return Unsupported(source, absl::StrCat("pre_tokenizer '", type, "'"));
    }
  }
  if (!saw_byte_level) {
    return Unsupported(source, "pre_tokenizer without ByteLevel: not a byte-level tokenizer");
  }
  return config;
}

absl::Status ParseNormalizer(const json* root, const std::string& source, TokenizerSpec* spec) {
  if (root == nullptr) return absl::OkStatus();
  for (const json* step : Flatten(*root, "normalizers")) {
    const std::string type = TypeOf(*step);
    if (type != "NFC") return Unsupported(source, absl::StrCat("normalizer '", type, "'"));
    spec->normalizer = Normalizer::kNfc;
  }
  return absl::OkStatus();
}

absl::Status ParseDecoder(const json* root, const std::string& source) {
  if (root == nullptr) return Unsupported(source, "decoder null (expected ByteLevel)");
  for (const json* step : Flatten(*root, "decoders")) {
    const std::string type = TypeOf(*step);
    if (type != "ByteLevel") return Unsupported(source, absl::StrCat("decoder '", type, "'"));
  }
  return absl::OkStatus();
}

// The ids of a TemplateProcessing special token, by name.
absl::StatusOr<int64_t> TemplateTokenId(const json& processor, const std::string& name,
                                        const std::string& source) {
  const json* specials = Field(processor, "special_tokens");
  const json* entry = specials != nullptr ? Field(*specials, name.c_str()) : nullptr;
  const json* ids = entry != nullptr ? Field(*entry, "ids") : nullptr;
  if (ids == nullptr || !ids->is_array() || ids->size() != 1 || !(*ids)[0].is_number_integer()) {
    return Unsupported(source, absl::StrCat("TemplateProcessing token '", name, "'"));
  }
  return (*ids)[0].get<int64_t>();
}

absl::Status ParsePostProcessor(const json* root, const std::string& source, TokenizerSpec* spec) {
  if (root == nullptr) return absl::OkStatus();
  for (const json* step : Flatten(*root, "processors")) {
    const std::string type = TypeOf(*step);
    if (type == "ByteLevel") continue;
    if (type != "TemplateProcessing") {
      return Unsupported(source, absl::StrCat("post_processor '", type, "'"));
    }
    const json* single = Field(*step, "single");
    if (single == nullptr || !single->is_array()) {
      return Unsupported(source, "TemplateProcessing without 'single'");
    }
    std::vector<int64_t> before, after;
    bool seen_text = false;
    for (const json& piece : *single) {
      if (Field(piece, "Sequence") != nullptr) {
        if (seen_text) return Unsupported(source, "TemplateProcessing with two sequences");
        seen_text = true;
      } else if (const json* special = Field(piece, "SpecialToken"); special != nullptr) {
        const json* id = Field(*special, "id");
        if (id == nullptr || !id->is_string()) {
          return Unsupported(source, "TemplateProcessing special token without a name");
        }
        ASSIGN_OR_RETURN(int64_t token_id, TemplateTokenId(*step, id->get<std::string>(), source));
        (seen_text ? after : before).push_back(token_id);
      } else {
        return Unsupported(source, "TemplateProcessing piece");
      }
    }
    if (before.size() > 1 || after.size() > 1) {
      return Unsupported(source, "TemplateProcessing with more than one token on a side");
    }
    if (!before.empty()) {
      spec->bos_id = before[0];
      spec->add_bos = true;
    }
    if (!after.empty()) {
      spec->eos_id = after[0];
      spec->add_eos = true;
    }
  }
  return absl::OkStatus();
}

absl::Status ParseModel(const json& model, const std::string& source, TokenizerSpec* spec,
                        absl::flat_hash_map<std::string, int64_t>* ids) {
  const std::string type = TypeOf(model);
  if (!type.empty() && type != "BPE") {
    return Unsupported(source, absl::StrCat("model type '", type, "' (expected BPE)"));
  }
  if (BoolField(model, "byte_fallback", false)) {
    return Unsupported(source, "BPE byte_fallback (SentencePiece-style BPE)");
  }
  if (const json* dropout = Field(model, "dropout");
      dropout != nullptr && !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return Unsupported(source, "BPE dropout");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json* value = Field(model, key);
    if (value != nullptr && !(value->is_string() && value->get<std::string>().empty())) {
      return Unsupported(source, absl::StrCat("BPE ", key));
    }
  }
  const json* vocab = Field(model, "vocab");
  if (vocab == nullptr || !vocab->is_object()) {
    return absl::InvalidArgumentError(source + ": model.vocab missing");
  }
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() >= INT32_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": bad id for vocabulary token '", it.key(), "'"));
    }
    (*ids)[it.key()] = it.value().get<int64_t>();
  }
  const json* merges = Field(model, "merges");
  if (merges == nullptr || !merges->is_array()) {
    return absl::InvalidArgumentError(source + ": model.merges missing");
  }
  spec->merges.reserve(merges->size());
  for (const json& merge : *merges) {
    if (merge.is_string()) {
      spec->merges.push_back(merge.get<std::string>());
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      const std::string left = merge[0].get<std::string>();
      const std::string right = merge[1].get<std::string>();
      if (left.find(' ') != std::string::npos || right.find(' ') != std::string::npos) {
        return Unsupported(source, "merge of tokens containing a space");
      }
      spec->merges.push_back(absl::StrCat(left, " ", right));
    } else {
      return absl::InvalidArgumentError(source + ": bad entry in model.merges");
    }
  }
  spec->ignore_merges = BoolField(model, "ignore_merges", false);
  spec->fuse_unk = BoolField(model, "fuse_unk", false);
  if (const json* unk = Field(model, "unk_token"); unk != nullptr) {
    if (!unk->is_string() || !ids->contains(unk->get<std::string>())) {
      return absl::InvalidArgumentError(source + ": unk_token is not in the vocabulary");
    }
    spec->unk_id = (*ids)[unk->get<std::string>()];
  }
  return absl::OkStatus();
}

absl::Status ParseAddedTokens(const json* added, const std::string& source, TokenizerSpec* spec) {
  if (added == nullptr) return absl::OkStatus();
  if (!added->is_array()) return absl::InvalidArgumentError(source + ": bad added_tokens");
  for (const json& entry : *added) {
    const json* id = Field(entry, "id");
    const json* content = Field(entry, "content");
    if (id == nullptr || !id->is_number_integer() || id->get<int64_t>() < 0 ||
        id->get<int64_t>() >= INT32_MAX || content == nullptr || !content->is_string()) {
      return absl::InvalidArgumentError(source + ": bad entry in added_tokens");
    }
    AddedToken token;
    token.id = static_cast<int32_t>(id->get<int64_t>());
    token.content = content->get<std::string>();
    token.special = BoolField(entry, "special", false);
    token.lstrip = BoolField(entry, "lstrip", false);
    token.rstrip = BoolField(entry, "rstrip", false);
    token.single_word = BoolField(entry, "single_word", false);
    token.normalized = BoolField(entry, "normalized", !token.special);
    spec->added_tokens.push_back(std::move(token));
  }
  return absl::OkStatus();
}

absl::StatusOr<TokenizerSpec> ParseRoot(const json& root, const std::string& source) {
  if (!root.is_object()) return absl::InvalidArgumentError(source + ": not a JSON object");
  TokenizerSpec spec;
  spec.source_name = source;
  const json* model = Field(root, "model");
  if (model == nullptr) return absl::InvalidArgumentError(source + ": no 'model'");
  absl::flat_hash_map<std::string, int64_t> ids;
  RETURN_IF_ERROR(ParseModel(*model, source, &spec, &ids));
  RETURN_IF_ERROR(ParseAddedTokens(Field(root, "added_tokens"), source, &spec));
  RETURN_IF_ERROR(ParseNormalizer(Field(root, "normalizer"), source, &spec));
  ASSIGN_OR_RETURN(spec.pre_tokenizer_config,
                   ParsePreTokenizer(Field(root, "pre_tokenizer"), source));
  RETURN_IF_ERROR(ParsePostProcessor(Field(root, "post_processor"), source, &spec));
  RETURN_IF_ERROR(ParseDecoder(Field(root, "decoder"), source));

  int64_t max_id = -1;
  for (const auto& [token, id] : ids) max_id = std::max(max_id, id);
  for (const AddedToken& token : spec.added_tokens) max_id = std::max<int64_t>(max_id, token.id);
  spec.tokens.resize(static_cast<size_t>(max_id + 1));
  for (const auto& [token, id] : ids) {
    if (!spec.tokens[id].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": id ", id, " is given to both '",
                                                     spec.tokens[id], "' and '", token, "'"));
    }
    spec.tokens[id] = token;
  }
  return spec;
}

// The content of a tokenizer_config.json token entry: "text" or {"content": "text", ...}.
const json* TokenContent(const json& config, const char* key) {
  const json* entry = Field(config, key);
  if (entry == nullptr) return nullptr;
  if (entry->is_string()) return entry;
  const json* content = Field(*entry, "content");
  return content != nullptr && content->is_string() ? content : nullptr;
}

}  // namespace

absl::StatusOr<TokenizerSpec> TokenizerSpecFromHfJson(const std::string& json_text,
                                                      const std::string& source_name) {
  const json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(source_name + ": not valid JSON");
  }
  // The accessors above check types; this only guards against a missed case.
  try {
    return ParseRoot(root, source_name);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": ", e.what()));
  }
}

absl::Status ApplyHfTokenizerConfig(const std::string& json_text, TokenizerSpec* spec) {
  const json config = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError("tokenizer_config.json: not a JSON object");
  }
  auto find_id = [&](const std::string& content) -> int64_t {
    for (const AddedToken& token : spec->added_tokens) {
      if (token.content == content) return token.id;
    }
    for (size_t id = 0; id < spec->tokens.size(); ++id) {
      if (spec->tokens[id] == content) return static_cast<int64_t>(id);
    }
    return -1;
  };
  try {
    if (const json* bos = TokenContent(config, "bos_token")) {
      if (int64_t id = find_id(bos->get<std::string>()); id >= 0) spec->bos_id = id;
    }
    if (const json* eos = TokenContent(config, "eos_token")) {
      if (int64_t id = find_id(eos->get<std::string>()); id >= 0) spec->eos_id = id;
    }
    if (const json* add_bos = Field(config, "add_bos_token"); add_bos && add_bos->is_boolean()) {
      spec->add_bos = add_bos->get<bool>();
    }
    if (const json* add_eos = Field(config, "add_eos_token"); add_eos && add_eos->is_boolean()) {
      spec->add_eos = add_eos->get<bool>();
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer_config.json: ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace shardserve
