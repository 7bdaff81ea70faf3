#include "kernels/cpu/swiglu.h"

#include <algorithm>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/swiglu_internal.h"
#include "kernels/cpu/vec_exp.h"

namespace shardserve::cpu {
namespace {

void SwiGluSpanPortable(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    // silu(g) = g / (1 + e^-g) = g e^g / (1 + e^g): using e^-|g| never overflows, so large
    // negative gates keep their tiny (still normal) results instead of flushing to zero.
    const float g = gate[i];
    const float e = ExpF(g < 0.0f ? g : -g);
    out[i] = (g < 0.0f ? g * e : g) / (1.0f + e) * up[i];
  }
}

using SpanFn = void (*)(const float* gate, const float* up, int64_t n, float* out);

// The kernel for ActiveIsa(), picked once. Both give the same bits (swiglu_internal.h): the AVX2
// one only does eight elements at a time where the compiler vectorises four.
SpanFn SwiGluSpan() {
  static const SpanFn fn =
      ActiveIsa() >= Isa::kAvx2 ? internal::SwiGluSpanAvx2 : SwiGluSpanPortable;
  return fn;
}

// Calls fn(row, col_begin, col_end) over all of [rows, cols], split over the pool by columns
// as well as rows so that a single decode row also uses every thread.
template <typename Fn>
void ForSpans(int64_t rows, int64_t cols, ThreadPool* pool, const Fn& fn) {
  auto run = [&](int64_t begin, int64_t end) {
    while (begin < end) {
      const int64_t row = begin / cols;
      const int64_t col = begin % cols;
      const int64_t n = std::min(cols - col, end - begin);
      fn(row, col, col + n);
      begin += n;
    }
  };
  const int64_t total = rows * cols;
  if (pool == nullptr || total < (1 << 14)) {
    run(0, total);
  } else {
    pool->ParallelFor(total, 256, run);
  }
}

}  // namespace

void SwiGlu(const float* gate, const float* up, int64_t rows, int64_t inter, float* out,
            ThreadPool* pool) {
  const SpanFn span = SwiGluSpan();
  ForSpans(rows, inter, pool, [&](int64_t r, int64_t c0, int64_t c1) {
    const int64_t off = r * inter + c0;
    span(gate + off, up + off, c1 - c0, out + off);
  });
}

void SwiGluFused(const float* gate_up, int64_t rows, int64_t inter, float* out, ThreadPool* pool) {
  const SpanFn span = SwiGluSpan();
  ForSpans(rows, inter, pool, [&](int64_t r, int64_t c0, int64_t c1) {
    const float* gate = gate_up + r * 2 * inter;
    span(gate + c0, gate + inter + c0, c1 - c0, out + r * inter + c0);
  });
}

}  // namespace shardserve::cpu
