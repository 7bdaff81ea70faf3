#include "model/safetensors_checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/mapped_file.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace shardserve {
namespace {

using Json = nlohmann::json;

constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";

bool IsRegularFile(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& path) {
  std::unique_ptr<SafetensorsCheckpoint> ckpt(new SafetensorsCheckpoint(path));
  std::error_code ec;
  if (IsRegularFile(path)) {
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
    RETURN_IF_ERROR(ckpt->AddShard(std::move(file)));
    return ckpt;
  }
  if (!std::filesystem::is_directory(path, ec)) {
    return absl::NotFoundError(absl::StrCat("no safetensors checkpoint at ", path));
  }
  const std::string index_path = absl::StrCat(path, "/", kIndexFile);
  if (IsRegularFile(index_path)) {
    RETURN_IF_ERROR(ckpt->LoadIndex(path, index_path));
    return ckpt;
  }
  const std::string single_path = absl::StrCat(path, "/", kSingleFile);
  if (IsRegularFile(single_path)) {
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(single_path));
    RETURN_IF_ERROR(ckpt->AddShard(std::move(file)));
    return ckpt;
  }
  return absl::NotFoundError(absl::StrCat("no ", kSingleFile, " or ", kIndexFile, " in ", path));
}

absl::Status SafetensorsCheckpoint::AddShard(std::unique_ptr<SafetensorsFile> shard) {
  for (const SafetensorsTensor& t : shard->tensors()) {
    if (!tensors_.emplace(t.name, &t).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(shard->name(), ": tensor '", t.name, "' appears in more than one shard"));
    }
  }
  shards_.push_back(std::move(shard));
  return absl::OkStatus();
}

absl::Status SafetensorsCheckpoint::LoadIndex(const std::string& dir,
                                              const std::string& index_path) {
  auto error = [&index_path](absl::string_view msg) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": ", msg));
  };
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> index_file, MappedFile::Open(index_path));
  const char* text = reinterpret_cast<const char*>(index_file->data());
  const Json root = Json::parse(text, text + index_file->size(), /*cb=*/nullptr,
                                /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) return error("not a JSON object");
  auto map_it = root.find("weight_map");
  if (map_it == root.end() || !map_it->is_object()) return error("missing object 'weight_map'");

  std::map<std::string, size_t> shard_by_file;
  for (const auto& item : map_it->items()) {
    if (!item.value().is_string()) {
      return error(absl::StrCat("weight_map entry '", item.key(), "' is not a file name"));
    }
    const std::string& file = item.value().get_ref<const std::string&>();
    // Shards sit beside the index; anything else would let an index point anywhere on disk.
    if (file.empty() || file == "." || file == ".." || absl::StrContains(file, "/")) {
      return error(absl::StrCat("weight_map entry '", item.key(), "' names shard '", file,
                                "', which is not a file in the checkpoint directory"));
    }
    auto [it, inserted] = shard_by_file.emplace(file, shards_.size());
    if (inserted) {
      ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> shard,
                       SafetensorsFile::Open(absl::StrCat(dir, "/", file)));
      shards_.push_back(std::move(shard));
    }
    const SafetensorsTensor* t = shards_[it->second]->FindTensor(item.key());
    if (t == nullptr) {
      return error(absl::StrCat("weight_map maps '", item.key(), "' to ", file,
                                ", which has no such tensor"));
    }
    tensors_[item.key()] = t;
  }
  return absl::OkStatus();
}

const SafetensorsTensor* SafetensorsCheckpoint::Find(absl::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second;
}

absl::StatusOr<TensorView> SafetensorsCheckpoint::Get(absl::string_view name) const {
  const SafetensorsTensor* t = Find(name);
  if (t == nullptr) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor '", name, "'"));
  }
  return t->view;
}

std::vector<std::string> SafetensorsCheckpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, t] : tensors_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace shardserve
