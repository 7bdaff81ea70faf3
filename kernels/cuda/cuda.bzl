"""Helpers for targets that exist only under --config=cuda (--define=shardserve_cuda=1)."""

# target_compatible_with value: incompatible (skipped by `//...`) unless --config=cuda.
CUDA_ONLY = select({
    "//kernels/cuda:cuda_enabled": [],
    "//conditions:default": ["@platforms//:incompatible"],
})

def cuda_deps(labels):
    """`labels` (usually in @cuda) as deps only under --config=cuda.

    Bazel 4 still analyzes the deps of an incompatible target, so @cuda labels listed plainly
    would be analyzed by the default build too; behind this select they are not.
    """
    return select({
        "//kernels/cuda:cuda_enabled": labels,
        "//conditions:default": [],
    })
