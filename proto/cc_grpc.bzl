"""cc_grpc_library: C++ protobuf and gRPC code from .proto files with the system protoc.

The build is offline and uses Debian's protoc and grpc_cpp_plugin, so code generation is a genrule
rather than rules_proto. Import paths are relative to the workspace root
(`import "proto/shardserve/v1/foo.proto";`) and the generated headers are included the same way:

    #include "proto/shardserve/v1/store.grpc.pb.h"
"""

_PROTOC = "/usr/bin/protoc"
_GRPC_PLUGIN = "/usr/bin/grpc_cpp_plugin"

def cc_grpc_library(name, srcs, deps = [], proto_deps = [], visibility = None):
    """Generates *.pb.{h,cc} and *.grpc.pb.{h,cc} for `srcs` and compiles them.

    Args:
      name: the cc_library's name.
      srcs: .proto files of this package.
      deps: cc_grpc_library targets whose messages `srcs` import (for linking).
      proto_deps: the .proto files of `deps`, so protoc can resolve the imports.
      visibility: visibility of the cc_library.
    """
    stems = [src[:-len(".proto")] for src in srcs]
    hdrs = [s + ".pb.h" for s in stems] + [s + ".grpc.pb.h" for s in stems]
    cc_srcs = [s + ".pb.cc" for s in stems] + [s + ".grpc.pb.cc" for s in stems]
    own = " ".join(["$(location %s)" % src for src in srcs])
    native.genrule(
        name = name + "_gen",
        srcs = srcs + proto_deps,
        outs = hdrs + cc_srcs,
        cmd = ("%s -I. --cpp_out=$(GENDIR) --grpc_out=$(GENDIR) " +
               "--plugin=protoc-gen-grpc=%s %s") % (_PROTOC, _GRPC_PLUGIN, own),
    )
    native.cc_library(
        name = name,
        srcs = cc_srcs,
        hdrs = hdrs,
        deps = deps + [
            "//third_party:grpc",
            "//third_party:protobuf",
        ],
        visibility = visibility,
    )
