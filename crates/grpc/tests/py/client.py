"""A grpcio client for ringest-grpc's interop test: calls our Server at 127.0.0.1:<port>.

The server under test routes /test.Echo/{Echo,Fail,Panic}, serves the health check and
accepts messages up to 4 MiB. Exits non-zero with a description on the first mismatch.
"""
import sys

import grpc

FAIL_MESSAGE = "conflict: 100% \u2713\nsecond line"
LIMIT = 4 << 20


def expect_error(fn, code, details=None):
    try:
        fn()
    except grpc.RpcError as e:
        assert e.code() == code, f"want {code}, got {e.code()}: {e.details()}"
        if details is not None:
            assert e.details() == details, f"details {e.details()!r} != {details!r}"
        return
    raise AssertionError(f"call succeeded, want {code}")


def main():
    port = sys.argv[1]
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=options)
    call = lambda path: channel.unary_unary(path)  # no serializers: raw bytes
    echo = call("/test.Echo/Echo")

    for msg in [b"", b"hello", bytes(range(256)) * 1000, b"\x01" * (LIMIT - 64)]:
        got = echo(msg, timeout=10)
        assert got == msg, f"echo of {len(msg)} bytes returned {len(got)} bytes"

    expect_error(lambda: call("/test.Echo/Fail")(b"", timeout=5), grpc.StatusCode.ALREADY_EXISTS, FAIL_MESSAGE)
    expect_error(lambda: call("/test.Echo/Panic")(b"", timeout=5), grpc.StatusCode.INTERNAL)
    expect_error(lambda: call("/test.Nope/Nope")(b"", timeout=5), grpc.StatusCode.UNIMPLEMENTED)
    expect_error(lambda: echo(b"\x02" * (LIMIT + 1), timeout=10), grpc.StatusCode.RESOURCE_EXHAUSTED)
    # gzip is not something we accept: Unimplemented, as grpc-go answers.
    expect_error(lambda: echo(b"x" * 100, timeout=5, compression=grpc.Compression.Gzip), grpc.StatusCode.UNIMPLEMENTED)
    # Deadline propagation: the server stops waiting and the client sees DEADLINE_EXCEEDED.
    expect_error(lambda: call("/test.Echo/Slow")(b"x", timeout=0.2), grpc.StatusCode.DEADLINE_EXCEEDED)

    check = call("/grpc.health.v1.Health/Check")
    # HealthCheckRequest{} and HealthCheckRequest{service: "thanos"}; response {status: SERVING}.
    assert check(b"", timeout=5) == b"\x08\x01"
    assert check(b"\x0a\x06thanos", timeout=5) == b"\x08\x01"
    expect_error(lambda: call("/grpc.health.v1.Health/Watch")(b"", timeout=5), grpc.StatusCode.UNIMPLEMENTED)

    assert echo(b"still alive", timeout=5) == b"still alive"
    print("OK")


if __name__ == "__main__":
    main()
