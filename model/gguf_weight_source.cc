#include "model/gguf_weight_source.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "model/gguf_config.h"

namespace shardserve {
namespace {

constexpr DType kSupportedDTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ8_0,
                                      DType::kQ4_0, DType::kQ4_1, DType::kQ4_K, DType::kQ6_K};

// Splits "blk.L.ffn_gate.E" into "blk.L.ffn_gate_exps.weight" and E; false for other names.
bool ParseExpertName(const std::string& name, std::string* stacked, int64_t* expert) {
  const std::vector<absl::string_view> parts = absl::StrSplit(name, '.');
  if (parts.size() != 4 || parts[0] != "blk") return false;
  if (parts[2] != "ffn_gate" && parts[2] != "ffn_up" && parts[2] != "ffn_down") return false;
  if (parts[3].empty() || !absl::ascii_isdigit(parts[3][0])) return false;
  if (!absl::SimpleAtoi(parts[3], expert)) return false;
  *stacked = absl::StrCat("blk.", parts[1], ".", parts[2], "_exps.weight");
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GgufWeightSource>> GgufWeightSource::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
  return FromFile(std::move(file));
}

absl::StatusOr<std::unique_ptr<GgufWeightSource>> GgufWeightSource::FromFile(
    std::unique_ptr<GgufFile> file) {
  ASSIGN_OR_RETURN(ModelConfig config, ConfigFromGguf(*file));
  std::unique_ptr<GgufWeightSource> source(
      new GgufWeightSource(std::move(file), std::move(config)));
  RETURN_IF_ERROR(source->ValidateRequiredTensors(kSupportedDTypes));
  return source;
}

absl::StatusOr<TensorView> GgufWeightSource::Get(const std::string& name) const {
  const bool is_bias = absl::EndsWith(name, ".bias");
  const std::string file_name = is_bias ? name : name + ".weight";
  if (const GgufTensorInfo* t = file_->FindTensor(file_name)) {
    TensorView v = t->view();
    // llama.cpp stores this [1, hidden] projection as a vector.
    if (v.ndim == 1 && absl::EndsWith(name, "ffn_gate_inp_shexp")) {
      v.ndim = 2;
      v.shape = {1, t->shape[0], 0, 0};
    }
    return v;
  }
  std::string stacked;
  int64_t expert = 0;
  if (ParseExpertName(name, &stacked, &expert)) return ExpertSlice(name, stacked, expert);
  return absl::NotFoundError(
      absl::StrCat(file_->name(), ": no tensor '", name, "' (looked for '", file_name, "')"));
}

absl::StatusOr<TensorView> GgufWeightSource::ExpertSlice(const std::string& name,
                                                         const std::string& stacked_name,
                                                         int64_t expert) const {
  const GgufTensorInfo* t = file_->FindTensor(stacked_name);
  if (t == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(file_->name(), ": no tensor '", name, "' (looked for '", stacked_name, "')"));
  }
  if (t->ndim != 3 || t->shape[0] != config_.num_experts) {
    return absl::InvalidArgumentError(absl::StrCat(
        file_->name(), ": tensor '", stacked_name, "' has shape ", t->view().ShapeString(),
        ", expected [", config_.num_experts, ", rows, cols]"));
  }
  if (expert < 0 || expert >= t->shape[0]) {
    return absl::NotFoundError(absl::StrCat(file_->name(), ": no tensor '", name, "' (",
                                            stacked_name, " holds ", t->shape[0], " experts)"));
  }
  const int64_t rows = t->shape[1];
  const int64_t cols = t->shape[2];
  TensorView v = t->view();
  v.ndim = 2;
  v.shape = {rows, cols, 0, 0};
  v.data = const_cast<uint8_t*>(t->data) + expert * rows * RowBytes(t->dtype, cols);
  return v;
}

}  // namespace shardserve
