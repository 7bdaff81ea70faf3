"""The `@cuda` repository: the CUDA toolkit when it is installed, an empty stub when it is not.

The toolkit is looked for at $SHARDSERVE_CUDA_PATH (default /usr/local/cuda). Found: the repository
links the toolkit's `include/`, `lib64/` and `bin/` and exposes `cuda_runtime`, `cublas`, `nccl`
(third_party/cuda.BUILD). Not found: the same targets exist, but building any of them fails with a
message naming the missing toolkit (third_party/cuda_stub.BUILD), so a CUDA-less host can still
load and analyze every package. Either way `@cuda//:defs.bzl` says which (CUDA_FOUND) and where
nvcc is (NVCC).

Only `--config=cuda` builds reach `@cuda` targets; the default build selects them away.
"""

_ENV_PATH = "SHARDSERVE_CUDA_PATH"
_DEFAULT_PATH = "/usr/local/cuda"

def _cuda_configure_impl(repository_ctx):
    cuda_path = repository_ctx.os.environ.get(_ENV_PATH, _DEFAULT_PATH)
    root = repository_ctx.path(cuda_path)
    found = root.get_child("include").get_child("cuda_runtime.h").exists
    if found:
        for child in ["include", "lib64", "bin"]:
            if root.get_child(child).exists:
                repository_ctx.symlink(root.get_child(child), child)
        repository_ctx.template(
            "BUILD.bazel",
            repository_ctx.attr.build_file,
            substitutions = {"%{cuda_path}": cuda_path},
        )
    else:
        repository_ctx.template(
            "BUILD.bazel",
            repository_ctx.attr.stub_build_file,
            substitutions = {"%{cuda_path}": cuda_path},
        )
    repository_ctx.file(
        "defs.bzl",
        "CUDA_FOUND = %s\nCUDA_PATH = %r\nNVCC = %r\n" % (
            found,
            cuda_path,
            cuda_path + "/bin/nvcc",
        ),
    )

cuda_configure = repository_rule(
    implementation = _cuda_configure_impl,
    attrs = {
        "build_file": attr.label(allow_single_file = True, mandatory = True),
        "stub_build_file": attr.label(allow_single_file = True, mandatory = True),
    },
    environ = [_ENV_PATH],
    local = True,
)
