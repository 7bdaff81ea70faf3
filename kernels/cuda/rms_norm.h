// CUDA RMSNorm: the device twin of kernels/cpu/rms_norm.h (same math, same argument order).
// Built only with --config=cuda.
#ifndef SHARDSERVE_KERNELS_CUDA_RMS_NORM_H_
#define SHARDSERVE_KERNELS_CUDA_RMS_NORM_H_

#include <cstdint>

namespace shardserve {
namespace cuda {

// y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight[:] for r in [0, rows).
// All pointers are device memory; x and y may alias. `stream` is a cudaStream_t (nullptr: the
// default stream). Returns 0 on success, else the cudaError_t of the launch.
int RmsNorm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps,
            void* stream);

}  // namespace cuda
}  // namespace shardserve

#endif  // SHARDSERVE_KERNELS_CUDA_RMS_NORM_H_
