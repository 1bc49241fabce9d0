#!/usr/bin/python3
"""A fake cairnd that refuses everything with a retry pushback.

Every call, unary or streaming (WatchEvents), of any method, ends at once
with UNAVAILABLE "pushed back" and the trailing metadata
grpc-retry-pushback-ms: VALUE, VALUE sent as it is (no check: the point is
to send what a real server never would).

Run: pushback_server.py --pushback-ms VALUE

It listens on 127.0.0.1 with an ephemeral port, never another address,
prints "listening on 127.0.0.1:PORT" once it accepts calls, then one line
"call METHOD" per call it answered, and runs until SIGTERM (or until its
parent dies). Needs Debian's python3-grpcio (/usr/bin/python3).
"""
import argparse
import ctypes
import signal
import sys
import threading
from concurrent import futures

import grpc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pushback-ms", required=True)
    args = ap.parse_args()
    # Dies with the test that started it, even when the test is killed.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)

    out = threading.Lock()

    def refuse(context, method):
        with out:
            print("call %s" % method, flush=True)
        context.set_trailing_metadata((("grpc-retry-pushback-ms", args.pushback_ms),))
        context.abort(grpc.StatusCode.UNAVAILABLE, "pushed back")

    class Refuse(grpc.GenericRpcHandler):
        def service(self, details):
            method = details.method
            if method.endswith("/WatchEvents"):
                def stream(request, context):
                    refuse(context, method)
                    yield b""  # never reached: makes this a generator
                return grpc.unary_stream_rpc_method_handler(stream)
            return grpc.unary_unary_rpc_method_handler(
                lambda request, context: refuse(context, method))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[Refuse()])
    port = server.add_insecure_port("127.0.0.1:0")
    if not port:
        sys.exit("cannot listen on 127.0.0.1")
    server.start()
    print("listening on 127.0.0.1:%d" % port, flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop(0)


if __name__ == "__main__":
    main()
