"""Python gRPC stubs for cairn, generated at test time from proto/ with
protoc and grpc_python_plugin (the interop suites and the power-cut test
use the same ones).
"""
import os
import shutil
import subprocess
import sys


def _run(cmd):
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True)
    if res.returncode != 0:
        raise RuntimeError("command failed (%d): %s\n%s" % (res.returncode, " ".join(cmd),
                                                            res.stdout))


def generate(protoc, proto_dir, grpc_plugin, out):
    """Generates the coordinator and health stubs into `out`, puts `out` on
    sys.path and returns (coordinator_pb2, coordinator_pb2_grpc, health_pb2,
    health_pb2_grpc)."""
    plugin = "--plugin=protoc-gen-grpc=" + grpc_plugin
    _run([protoc, "-I" + proto_dir, "--python_out=" + out, "--grpc_out=" + out,
          plugin, "cairn/v1/coordinator.proto"])
    # The health proto lives under grpc/health/v1, which as a Python package
    # would shadow the installed `grpc`. Generate it from a copy under
    # cairn_health/ instead: the module path changes, the proto package (and
    # so the wire name /grpc.health.v1.Health/Check) does not.
    src = os.path.join(out, "_src")
    os.makedirs(os.path.join(src, "cairn_health"))
    shutil.copyfile(os.path.join(proto_dir, "grpc", "health", "v1", "health.proto"),
                    os.path.join(src, "cairn_health", "health.proto"))
    _run([protoc, "-I" + src, "--python_out=" + out, "--grpc_out=" + out, plugin,
          "cairn_health/health.proto"])
    # Regular packages, so nothing else named cairn on sys.path can win.
    for pkg in ("cairn", os.path.join("cairn", "v1"), "cairn_health"):
        open(os.path.join(out, pkg, "__init__.py"), "a").close()
    sys.path.insert(0, out)
    from cairn.v1 import coordinator_pb2, coordinator_pb2_grpc
    from cairn_health import health_pb2, health_pb2_grpc
    return coordinator_pb2, coordinator_pb2_grpc, health_pb2, health_pb2_grpc
