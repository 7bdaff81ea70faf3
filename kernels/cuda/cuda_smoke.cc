// Runs the CUDA RMSNorm on a small input and compares it with the same math on the host.
// Exits 0 on agreement, 1 on disagreement, 2 when no CUDA device is present.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "kernels/cuda/rms_norm.h"

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device\n");
    return 2;
  }
  const int rows = 4, dim = 576;
  std::vector<float> x(rows * dim), w(dim), y(rows * dim);
  for (int i = 0; i < rows * dim; ++i) x[i] = std::sin(0.1f * i);
  for (int i = 0; i < dim; ++i) w[i] = 1.0f + 0.01f * i;
  float *dx, *dw, *dy;
  cudaMalloc(&dx, x.size() * 4);
  cudaMalloc(&dw, w.size() * 4);
  cudaMalloc(&dy, y.size() * 4);
  cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dw, w.data(), w.size() * 4, cudaMemcpyHostToDevice);
  if (shardserve::cuda::RmsNorm(dx, dw, dy, rows, dim, 1e-5f, nullptr) != 0) return 1;
  cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost);
  double max_err = 0;
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
    const double inv = 1.0 / std::sqrt(ss / dim + 1e-5);
    for (int i = 0; i < dim; ++i) {
      max_err = std::fmax(max_err, std::fabs(x[r * dim + i] * inv * w[i] - y[r * dim + i]));
    }
  }
  std::printf("max abs error %.3g\n", max_err);
  return max_err < 1e-4 ? 0 : 1;
}
