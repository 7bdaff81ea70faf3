#include "model/tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/bpe_added_token_matcher.h"
#include "model/bpe_byte_level.h"
#include "model/bpe_model.h"
#include "model/bpe_utf8.h"
#include "model/pre_tokenizer.h"
#include "model/tokenizer_hf_json.h"
#include "model/tokenizer_normalizer.h"

namespace shardserve {
namespace {

// What Hugging Face's ByteLevel decoder turns a token into: its characters mapped back to bytes
// when all of them are in the byte-level alphabet, else the token's own UTF-8 (added tokens such
// as "\n\n" are stored as plain text).
std::string TokenBytes(const std::string& token) {
  std::string bytes;
  if (ByteLevelAlphabet::Get().Decode(token, &bytes)) return bytes;
  return token;
}

absl::Status CheckSpecialId(const char* what, int64_t id, size_t vocab_size,
                            const std::string& source) {
  if (id < -1 || id >= static_cast<int64_t>(vocab_size)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", what, " id ", id, " is outside the vocabulary of ", vocab_size));
  }
  return absl::OkStatus();
}

// Added tokens implied by GGUF token types, matched in text as llama.cpp does.
std::vector<AddedToken> AddedTokensFromTypes(const TokenizerSpec& spec) {
  std::vector<AddedToken> added;
  for (size_t id = 0; id < spec.token_types.size(); ++id) {
    const int32_t type = spec.token_types[id];
    if (type != kGgufTokenControl && type != kGgufTokenUnknown && type != kGgufTokenUserDefined) {
      continue;
    }
    AddedToken token;
    token.id = static_cast<int32_t>(id);
    token.content = spec.tokens[id];
    token.special = type != kGgufTokenUserDefined;
    added.push_back(std::move(token));
  }
  return added;
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromHfJson(const std::string& json_text,
                                                                 const std::string& source_name) {
  ASSIGN_OR_RETURN(TokenizerSpec spec, TokenizerSpecFromHfJson(json_text, source_name));
  return Create(std::move(spec));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(TokenizerSpec spec) {
  const std::string source = spec.source_name.empty() ? "tokenizer" : spec.source_name;
  auto error = [&](const absl::Status& status) {
    return absl::Status(status.code(), absl::StrCat(source, ": ", status.message()));
  };
  if (spec.tokens.empty()) return absl::InvalidArgumentError(source + ": empty vocabulary");
  if (!spec.token_types.empty() && spec.token_types.size() != spec.tokens.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": ", spec.token_types.size(), " token types for ", spec.tokens.size(), " tokens"));
  }
  const size_t vocab_size = spec.tokens.size();
  if (vocab_size > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(source + ": vocabulary too large");
  }
  RETURN_IF_ERROR(CheckSpecialId("BOS", spec.bos_id, vocab_size, source));
  RETURN_IF_ERROR(CheckSpecialId("EOS", spec.eos_id, vocab_size, source));
  RETURN_IF_ERROR(CheckSpecialId("unknown-token", spec.unk_id, vocab_size, source));
  if (spec.add_bos && spec.bos_id < 0) {
    return absl::InvalidArgumentError(source + ": asks to add BOS but has no BOS token");
  }
  if (spec.add_eos && spec.eos_id < 0) {
    return absl::InvalidArgumentError(source + ": asks to add EOS but has no EOS token");
  }
  if (spec.added_tokens.empty() && !spec.token_types.empty()) {
    spec.added_tokens = AddedTokensFromTypes(spec);
  }

  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  tok->bos_id_ = static_cast<int32_t>(spec.bos_id);
  tok->eos_id_ = static_cast<int32_t>(spec.eos_id);
  tok->add_bos_ = spec.add_bos;
  tok->add_eos_ = spec.add_eos;
  tok->token_bytes_.resize(vocab_size);
  tok->has_token_.assign(vocab_size, false);
  tok->special_.assign(vocab_size, false);
  for (size_t id = 0; id < vocab_size; ++id) {
    if (spec.tokens[id].empty()) continue;
    tok->token_bytes_[id] = TokenBytes(spec.tokens[id]);
    tok->has_token_[id] = true;
  }
  for (const AddedToken& added : spec.added_tokens) {
    if (added.id < 0 || static_cast<size_t>(added.id) >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": added token '", added.content,
                                                     "' has id ", added.id,
                                                     " outside the vocabulary"));
    }
    if (added.content.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": added token ", added.id, " is empty"));
    }
    // An added token decodes to its content, whatever the vocabulary has at its id.
    tok->token_bytes_[added.id] = TokenBytes(added.content);
    tok->has_token_[added.id] = true;
    tok->special_[added.id] = added.special;
    tok->added_ids_.emplace_back(added.content, added.id);
  }
  std::sort(tok->added_ids_.begin(), tok->added_ids_.end());
  // Keep the first id given for a content, as the matcher does.
  tok->added_ids_.erase(
      std::unique(tok->added_ids_.begin(), tok->added_ids_.end(),
                  [](const auto& a, const auto& b) { return a.first == b.first; }),
      tok->added_ids_.end());

  BpeModelOptions bpe_options;
  bpe_options.ignore_merges = spec.ignore_merges;
  bpe_options.unk_id = static_cast<int32_t>(spec.unk_id);
  bpe_options.fuse_unk = spec.fuse_unk;
  auto bpe = BpeModel::Create(spec.tokens, spec.merges, bpe_options);
  if (!bpe.ok()) return error(bpe.status());
  tok->bpe_ = std::move(bpe).value();

  PreTokenizerConfig pre_config;
  if (spec.pre_tokenizer_config.has_value()) {
    pre_config = *spec.pre_tokenizer_config;
  } else {
    auto named = PreTokenizer::ConfigForName(spec.pre_tokenizer);
    if (!named.ok()) return error(named.status());
    pre_config = std::move(named).value();
  }
  auto pre = PreTokenizer::Create(pre_config);
  if (!pre.ok()) return error(pre.status());
  tok->pre_tokenizer_ = std::move(pre).value();

  auto raw = AddedTokenMatcher::Create(spec.added_tokens, /*normalized=*/false);
  if (!raw.ok()) return error(raw.status());
  tok->raw_matcher_ = std::move(raw).value();
  auto normalized = AddedTokenMatcher::Create(spec.added_tokens, /*normalized=*/true);
  if (!normalized.ok()) return error(normalized.status());
  tok->normalized_matcher_ = std::move(normalized).value();

  if (spec.normalizer != Normalizer::kNone) {
    auto normalizer = TokenizerNormalizer::Create(spec.normalizer);
    if (!normalizer.ok()) return error(normalizer.status());
    tok->normalizer_ = std::move(normalizer).value();
  }
  return tok;
}

std::vector<int32_t> Tokenizer::Encode(absl::string_view text, bool add_special_tokens,
                                       bool allow_special) const {
  std::string repaired;
  if (!IsValidUtf8(text)) {
    repaired = Utf8Lossy(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_special_tokens && add_bos_) ids.push_back(bos_id_);
  std::vector<AddedTokenMatcher::Segment> segments;
  raw_matcher_->Split(text, allow_special, &segments);
  for (const AddedTokenMatcher::Segment& segment : segments) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
    } else {
      EncodeText(text.substr(segment.begin, segment.end - segment.begin), allow_special, &ids);
    }
  }
  if (add_special_tokens && add_eos_) ids.push_back(eos_id_);
  return ids;
}

void Tokenizer::EncodeText(absl::string_view text, bool allow_special,
                           std::vector<int32_t>* ids) const {
  std::string normalized;
  if (normalizer_ != nullptr && !normalizer_->IsNormalized(text)) {
    normalized = normalizer_->Normalize(text);
    text = normalized;
  }
  if (normalized_matcher_->empty()) {
    EncodePlain(text, ids);
    return;
  }
  std::vector<AddedTokenMatcher::Segment> segments;
  normalized_matcher_->Split(text, allow_special, &segments);
  for (const AddedTokenMatcher::Segment& segment : segments) {
    if (segment.id >= 0) {
      ids->push_back(segment.id);
    } else {
      EncodePlain(text.substr(segment.begin, segment.end - segment.begin), ids);
    }
  }
}

void Tokenizer::EncodePlain(absl::string_view text, std::vector<int32_t>* ids) const {
  if (text.empty()) return;
  std::string prefixed;
  if (pre_tokenizer_->add_prefix_space() && text[0] != ' ') {
    prefixed = absl::StrCat(" ", text);
    text = prefixed;
  }
  std::vector<absl::string_view> pieces;
  pre_tokenizer_->Split(text, &pieces);
  for (absl::string_view piece : pieces) bpe_->Encode(piece, ids);
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids,
                                              bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (!IsValidId(id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is not in the vocabulary (size ", vocab_size(), ")"));
    }
    if (skip_special_tokens && special_[id]) continue;
    bytes += token_bytes_[id];
  }
  return Utf8Lossy(bytes);
}

absl::StatusOr<absl::string_view> Tokenizer::TokenToPiece(int32_t id) const {
  if (!IsValidId(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("token id ", id, " is not in the vocabulary (size ", vocab_size(), ")"));
  }
  return absl::string_view(token_bytes_[id]);
}

int32_t Tokenizer::TokenId(absl::string_view token) const {
  auto it = std::lower_bound(added_ids_.begin(), added_ids_.end(), token,
                             [](const std::pair<std::string, int32_t>& entry, absl::string_view t) {
                               return entry.first < t;
                             });
  if (it != added_ids_.end() && it->first == token) return it->second;
  return bpe_->TokenId(token);
}

}  // namespace shardserve
