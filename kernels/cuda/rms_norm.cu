#include <cuda_runtime.h>

#include "kernels/cuda/rms_norm.h"

namespace shardserve {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// One block per row: each thread sums squares over a strided slice, the block reduces through
// shared memory, then every thread scales its slice.
__global__ void RmsNormKernel(const float* __restrict__ x, const float* __restrict__ weight,
                              float* __restrict__ y, int64_t dim, float eps) {
  __shared__ float partial[kThreads];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * dim;
  float* yr = y + row * dim;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) sum += xr[i] * xr[i];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  const float inv = rsqrtf(partial[0] / static_cast<float>(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * inv * weight[i];
}

}  // namespace

int RmsNorm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps,
            void* stream) {
  if (rows <= 0) return 0;
  RmsNormKernel<<<static_cast<unsigned>(rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      x, weight, y, dim, eps);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace cuda
}  // namespace shardserve
