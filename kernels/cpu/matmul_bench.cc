// Throughput of MatMul on the shapes of SmolLM2-135M (Q4_1 projections, Q8_0 LM head), at one
// token (decode) and 512 tokens (prefill), on 1 and 2 threads.
//
//   bazel run -c opt //kernels/cpu:matmul_bench [-- --quick] [--step] [--shape=lm_head]
//       [--max-decode-rows=N] [--m=N]
//
// "hot" repeats one weight matrix (it stays in cache); "stream" cycles through enough copies to
// exceed the last-level cache, as a decode step does over 30 layers. "step" runs one whole decode
// step's matmuls (30 layers and the LM head) and reports the tokens/s they alone allow.
// SHARDSERVE_ISA=avx2|scalar caps the kernels used.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "common/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/quantize.h"

namespace shardserve::cpu {
namespace {

using Clock = std::chrono::steady_clock;

struct Shape {
  const char* name;
  DType type;
  int64_t n, k;
};

const Shape kShapes[] = {
    {"attn_q/o [576,576]", DType::kQ4_1, 576, 576},
    {"attn_k/v [192,576]", DType::kQ4_1, 192, 576},
    {"ffn_gate/up [1536,576]", DType::kQ4_1, 1536, 576},
    {"ffn_down [576,1536]", DType::kQ4_1, 576, 1536},
    {"lm_head [49152,576]", DType::kQ8_0, 49152, 576},
};

std::vector<uint8_t> MakeWeights(DType type, int64_t n, int64_t k, std::mt19937* rng) {
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> row(k);
  std::vector<uint8_t> w(n * RowBytes(type, k));
  for (int64_t j = 0; j < n; ++j) {
    for (float& v : row) v = dist(*rng);
    QuantizeRow(type, row.data(), w.data() + j * RowBytes(type, k), k);
  }
  return w;
}

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

struct Timing {
  double wall = 1e30;  // seconds per call, best of the repetitions
  double cpu = 1e30;   // CPU seconds per call over all threads (spinning included), best
};

// Best of `reps` timings of `iters` calls to fn. On a busy machine the CPU time of one-thread
// runs is the steadier number: it leaves out time the process was not scheduled.
template <typename Fn>
Timing TimeBest(int reps, int iters, Fn fn) {
  fn(0);
  Timing best;
  int call = 0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    const double c0 = CpuSeconds();
    for (int i = 0; i < iters; ++i) fn(++call);
    best.cpu = std::min(best.cpu, (CpuSeconds() - c0) / iters);
    best.wall =
        std::min(best.wall, std::chrono::duration<double>(Clock::now() - t0).count() / iters);
  }
  return best;
}

int64_t g_max_decode_rows = -1;  // --max-decode-rows=N overrides MatMul's choice of path
int64_t g_only_m = -1;           // --m=N runs only that number of rows
int64_t g_step_rows = 1;         // --step_rows=N: the decode step of N sequences at once

absl::Status BenchMatMul(const TensorView& x, const TensorView& w, const TensorView& y,
                         ThreadPool* pool) {
  MatMulOptions options;
  options.isa = ActiveIsa();
  options.max_decode_rows = g_max_decode_rows;
  return MatMulWithOptions(x, w, y, pool, options);
}

void Check(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    std::exit(1);
  }
}

void Run(bool quick, const char* filter) {
  std::mt19937 rng(1);
  std::printf("isa: %s (hardware max %s)\n", IsaName(ActiveIsa()), IsaName(MaxSupportedIsa()));
  std::printf("%-24s %4s %3s %7s %10s %10s %9s %9s\n", "shape", "m", "thr", "mode", "us/call",
              "cpu-us", "GB/s", "GFLOP/s");
  const int reps = quick ? 3 : 7;
  for (const Shape& s : kShapes) {
    if (filter != nullptr && std::strstr(s.name, filter) == nullptr) continue;
    const int64_t row_bytes = RowBytes(s.type, s.k);
    const int64_t bytes = s.n * row_bytes;
    // Enough copies that the set exceeds 64 MiB (the last-level cache).
    const int copies = static_cast<int>(std::max<int64_t>(1, (64 << 20) / bytes + 1));
    std::vector<std::vector<uint8_t>> ws;
    for (int c = 0; c < copies; ++c) ws.push_back(MakeWeights(s.type, s.n, s.k, &rng));
    for (int64_t m : {int64_t{1}, int64_t{32}, int64_t{512}}) {
      if (g_only_m > 0 && m != g_only_m) continue;
      std::vector<float> x(m * s.k), y(m * s.n);
      std::normal_distribution<float> dist(0.0f, 1.0f);
      for (float& v : x) v = dist(rng);
      const TensorView xv = TensorView::Cpu(x.data(), DType::kF32, {m, s.k});
      const TensorView yv = TensorView::Cpu(y.data(), DType::kF32, {m, s.n});
      for (int threads : {1, 2}) {
        ThreadPool pool(threads);
        for (bool stream : {false, true}) {
          if (m > 1 && stream) continue;  // prefill is compute bound either way
          const double flops = 2.0 * m * s.n * s.k;
          const int iters = static_cast<int>(std::clamp(
              (quick ? 2e8 : 1e9) / (flops + 1e6 * (s.type == DType::kQ8_0)), 1.0, 2000.0));
          const Timing t = TimeBest(reps, iters, [&](int call) {
            const auto& w = ws[stream ? call % copies : 0];
            Check(BenchMatMul(xv, TensorView::Cpu(w.data(), s.type, {s.n, s.k}), yv, &pool));
          });
          std::printf("%-24s %4lld %3d %7s %10.1f %10.1f %9.2f %9.1f\n", s.name,
                      static_cast<long long>(m), threads, stream ? "stream" : "hot", t.wall * 1e6,
                      t.cpu * 1e6, bytes / t.wall / 1e9, flops / t.wall / 1e9);
        }
      }
    }
  }
}

// One decode step of SmolLM2-135M: per layer q, k, v, o, gate, up, down; then the LM head.
void RunStep(bool quick) {
  std::mt19937 rng(2);
  constexpr int kLayers = 30;
  const Shape layer[] = {kShapes[0], kShapes[1], kShapes[1], kShapes[0],
                         kShapes[2], kShapes[2], kShapes[3]};
  std::vector<std::vector<uint8_t>> ws;
  int64_t total_bytes = 0;
  for (int l = 0; l < kLayers; ++l) {
    for (const Shape& s : layer) {
      ws.push_back(MakeWeights(s.type, s.n, s.k, &rng));
      total_bytes += ws.back().size();
    }
  }
  std::vector<uint8_t> head = MakeWeights(DType::kQ8_0, 49152, 576, &rng);
  total_bytes += head.size();
  const int64_t rows = g_step_rows;
  std::vector<float> x(rows * 1536, 0.5f), y(rows * 49152);
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    const Timing t = TimeBest(quick ? 3 : 5, quick ? 5 : 20, [&](int) {
      int idx = 0;
      for (int l = 0; l < kLayers; ++l) {
        for (const Shape& s : layer) {
          Check(BenchMatMul(TensorView::Cpu(x.data(), DType::kF32, {rows, s.k}),
                            TensorView::Cpu(ws[idx++].data(), s.type, {s.n, s.k}),
                            TensorView::Cpu(y.data(), DType::kF32, {rows, s.n}), &pool));
        }
      }
      Check(BenchMatMul(TensorView::Cpu(x.data(), DType::kF32, {rows, 576}),
                        TensorView::Cpu(head.data(), DType::kQ8_0, {49152, 576}),
                        TensorView::Cpu(y.data(), DType::kF32, {rows, 49152}), &pool));
    });
    std::printf(
        "decode step of %lld sequence(s) (%.1f MB of weights), %d thread(s): %.2f ms (cpu %.2f "
        "ms), %.1f GB/s, %.1f tok/s\n",
        static_cast<long long>(rows), total_bytes / 1e6, threads, t.wall * 1e3, t.cpu * 1e3,
        total_bytes / t.wall / 1e9, rows / t.wall);
  }
}

}  // namespace
}  // namespace shardserve::cpu

int main(int argc, char** argv) {
  bool quick = false, step_only = false;
  const char* filter = nullptr;  // --shape=SUBSTRING runs only the matching shapes, no step
  for (int i = 1; i < argc; ++i) {
    quick |= std::strcmp(argv[i], "--quick") == 0;
    step_only |= std::strcmp(argv[i], "--step") == 0;
    if (std::strncmp(argv[i], "--shape=", 8) == 0) filter = argv[i] + 8;
    if (std::strncmp(argv[i], "--m=", 4) == 0) shardserve::cpu::g_only_m = std::atoll(argv[i] + 4);
    if (std::strncmp(argv[i], "--step_rows=", 12) == 0) {
      shardserve::cpu::g_step_rows = std::atoll(argv[i] + 12);
    }
    if (std::strncmp(argv[i], "--max-decode-rows=", 18) == 0) {
      shardserve::cpu::g_max_decode_rows = std::atoll(argv[i] + 18);
    }
  }
  if (!step_only) shardserve::cpu::Run(quick, filter);
  if (filter == nullptr) shardserve::cpu::RunStep(quick);
  return 0;
}
