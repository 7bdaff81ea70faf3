// Runs a libFuzzer target without libFuzzer, so fuzz targets run as plain `bazel test`s.
//
//   fuzz_regression <corpus dir or file>... [--mutations=N] [--seed=S]
//
// Every corpus file is fed to LLVMFuzzerTestOneInput as is, then N (default 3000) inputs made by
// deterministic random mutations of them (bit flips, "interesting" integers written over 1, 2,
// 4 or 8 bytes, truncations, insertions, deletions and duplicated chunks; seeded with S). A crash
// or sanitizer report fails the test, as it would under libFuzzer. The mutations are fixed by
// the seed, so failures reproduce.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));

namespace {

std::vector<uint8_t> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Runs one input from a buffer of exactly its size, so AddressSanitizer catches reads past it.
void RunOne(const std::vector<uint8_t>& input) {
  std::vector<uint8_t> copy(input);
  LLVMFuzzerTestOneInput(copy.empty() ? nullptr : copy.data(), copy.size());
}

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  std::vector<uint8_t> Mutate(std::vector<uint8_t> in) {
    const int n = 1 + static_cast<int>(Below(4));
    for (int i = 0; i < n; ++i) MutateOnce(&in);
    return in;
  }

 private:
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

  void MutateOnce(std::vector<uint8_t>* v) {
    static constexpr uint64_t kInteresting[] = {
        0,          1,          2,          3,          4,          7,
        8,          9,          12,         13,         16,         31,
        32,         33,         64,         255,        256,        0x7f,
        0x80,       0x7fff,     0x8000,     0xffff,     0x10000,    0x7fffffff,
        0x80000000, 0xffffffff, 1ull << 32, 1ull << 40, 1ull << 62, (1ull << 63) - 1,
        1ull << 63, ~0ull,      ~0ull - 1,  100000000,  100000001,  ~0ull >> 1,
    };
    const uint64_t op = Below(v->empty() ? 2 : 8);
    switch (op) {
      case 0: {  // insert random bytes
        const size_t pos = Below(v->size() + 1);
        const size_t len = 1 + Below(16);
        std::vector<uint8_t> bytes(len);
        for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng_());
        v->insert(v->begin() + pos, bytes.begin(), bytes.end());
        return;
      }
      case 1: {  // append an interesting integer
        const uint64_t x = kInteresting[Below(std::size(kInteresting))];
        const uint8_t* p = reinterpret_cast<const uint8_t*>(&x);
        v->insert(v->end(), p, p + 8);
        return;
      }
      case 2:  // flip a bit
        (*v)[Below(v->size())] ^= static_cast<uint8_t>(1u << Below(8));
        return;
      case 3:  // random byte
        (*v)[Below(v->size())] = static_cast<uint8_t>(rng_());
        return;
      case 4: {  // overwrite with an interesting integer of 1, 2, 4 or 8 bytes
        const size_t width = size_t{1} << Below(4);
        if (v->size() < width) return;
        const size_t pos = Below(v->size() - width + 1);
        uint64_t x = kInteresting[Below(std::size(kInteresting))];
        if (Below(4) == 0) x += Below(3) - 1;
        std::memcpy(v->data() + pos, &x, width);
        return;
      }
      case 5:  // truncate
        v->resize(Below(v->size()));
        return;
      case 6: {  // erase a chunk
        const size_t pos = Below(v->size());
        const size_t len = 1 + Below(std::min<size_t>(64, v->size() - pos));
        v->erase(v->begin() + pos, v->begin() + pos + len);
        return;
      }
      default: {  // duplicate a chunk elsewhere
        const size_t pos = Below(v->size());
        const size_t len = 1 + Below(std::min<size_t>(64, v->size() - pos));
        const std::vector<uint8_t> chunk(v->begin() + pos, v->begin() + pos + len);
        const size_t at = Below(v->size() + 1);
        v->insert(v->begin() + at, chunk.begin(), chunk.end());
        return;
      }
    }
  }

  std::mt19937_64 rng_;
};

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  long mutations = 3000;
  uint64_t seed = 20240601;
  std::vector<std::filesystem::path> files;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--mutations=", 0) == 0) {
      mutations = std::strtol(arg.c_str() + 12, nullptr, 10);
    } else if (arg.rfind("--seed=", 0) == 0) {
      seed = std::strtoull(arg.c_str() + 7, nullptr, 10);
    } else if (std::filesystem::is_directory(arg)) {
      for (const auto& entry : std::filesystem::directory_iterator(arg)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
    } else if (std::filesystem::is_regular_file(arg)) {
      files.push_back(arg);
    } else {
      std::fprintf(stderr, "fuzz_regression: no such corpus: %s\n", arg.c_str());
      return 2;
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "fuzz_regression: empty corpus\n");
    return 2;
  }
  std::sort(files.begin(), files.end());  // directory order varies; the mutations must not
  std::vector<std::vector<uint8_t>> corpus;
  for (const auto& f : files) {
    corpus.push_back(ReadFile(f));
    RunOne(corpus.back());
  }
  Mutator mutator(seed);
  for (long i = 0; i < mutations; ++i) {
    RunOne(mutator.Mutate(corpus[i % corpus.size()]));
  }
  std::printf("fuzz_regression: %zu corpus files and %ld mutations ran cleanly\n", corpus.size(),
              mutations);
  return 0;
}
