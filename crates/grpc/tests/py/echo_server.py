"""A grpcio server for ringest-grpc's interop test: raw-bytes methods under /test.Echo/.

Prints the bound port on the first stdout line, then serves until killed.
"""
import sys
import time
from concurrent import futures

import grpc

FAIL_MESSAGE = "conflict: 100% \u2713\nsecond line"


def echo(request, context):
    return request


def fail(request, context):
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, FAIL_MESSAGE)


def slow(request, context):
    time.sleep(2)
    return request


def main():
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(fn)  # no (de)serializers: raw bytes
        for name, fn in {"Echo": echo, "Fail": fail, "Slow": slow}.items()
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()  # exit when the test closes our stdin (or dies)
    server.stop(0)


if __name__ == "__main__":
    main()
