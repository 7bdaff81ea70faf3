#include "model/tokenizer_normalizer.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace shardserve {
namespace {

const icu::Normalizer2* Icu(const void* normalizer) {
  return static_cast<const icu::Normalizer2*>(normalizer);
}

icu::StringPiece Piece(absl::string_view text) {
  return icu::StringPiece(text.data(), static_cast<int32_t>(text.size()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenizerNormalizer>> TokenizerNormalizer::Create(Normalizer kind) {
  if (kind != Normalizer::kNfc) {
    return absl::InvalidArgumentError("only the NFC normalizer is supported");
  }
  UErrorCode error = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(error);
  if (U_FAILURE(error) || nfc == nullptr) {
    return absl::InternalError(absl::StrCat("cannot load ICU's NFC data: ", u_errorName(error)));
  }
  return std::unique_ptr<TokenizerNormalizer>(new TokenizerNormalizer(nfc));
}

bool TokenizerNormalizer::IsNormalized(absl::string_view text) const {
  UErrorCode error = U_ZERO_ERROR;
  const bool normalized = Icu(icu_normalizer_)->isNormalizedUTF8(Piece(text), error);
  return U_SUCCESS(error) && normalized;
}

std::string TokenizerNormalizer::Normalize(absl::string_view text) const {
  if (IsNormalized(text)) return std::string(text);
  std::string out;
  out.reserve(text.size());
  icu::StringByteSink<std::string> sink(&out, static_cast<int32_t>(text.size()));
  UErrorCode error = U_ZERO_ERROR;
  Icu(icu_normalizer_)->normalizeUTF8(0, Piece(text), sink, nullptr, error);
  // Only invalid UTF-8 makes ICU fail, and callers pass valid text; keep the input then.
  if (U_FAILURE(error)) return std::string(text);
  return out;
}

}  // namespace shardserve
