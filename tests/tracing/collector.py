#!/usr/bin/env python3
"""A loopback trace collector for the end-to-end tests, written against independent
implementations of the wire formats: OTLP/gRPC (grpcio and the opentelemetry-proto package),
OTLP/HTTP with protobuf bodies (plain or gzip), Jaeger Thrift compact over UDP (an agent's
Agent.emitBatch) and Jaeger Thrift binary over HTTP (a collector's /api/traces), both decoded
by thriftpy2 from Jaeger's own IDL files.

Usage: collector.py JAEGER_IDL_MODULE_DIR (the jaeger-idl Go module, holding thrift/)
Prints one JSON line with the ports it listens on, then one JSON line per span received.
"""

import gzip
import json
import os
import socket
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import thriftpy2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from thriftpy2.protocol.binary import TBinaryProtocolFactory
from thriftpy2.protocol.compact import TCompactProtocolFactory
from thriftpy2.transport import TMemoryBuffer

LOCK = threading.Lock()
KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def emit(record):
    with LOCK:
        sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
        sys.stdout.flush()


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    x = getattr(v, kind)
    if kind in ("array_value", "kvlist_value", "bytes_value"):
        return str(x)
    return x


def otlp_spans(req, via, meta):
    for rs in req.resource_spans:
        resource = {a.key: any_value(a.value) for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                emit({
                    "via": via,
                    "meta": meta,
                    "service": resource.get("service.name", ""),
                    "resource": resource,
                    "name": s.name,
                    "kind": KINDS.get(s.kind, str(s.kind)),
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "attributes": {a.key: any_value(a.value) for a in s.attributes},
                    "status_error": s.status.code == 2,
                })


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        meta = {k: v for k, v in context.invocation_metadata() if not k.startswith(":")}
        otlp_spans(request, "otlp_grpc", meta)
        return trace_service_pb2.ExportTraceServiceResponse()


def jaeger_tag(t):
    # TagType: STRING, DOUBLE, BOOL, LONG, BINARY
    return {0: t.vStr, 1: t.vDouble, 2: t.vBool, 3: t.vLong, 4: str(t.vBinary)}.get(t.vType)


def jaeger_spans(batch, via, meta):
    process = batch.process
    ptags = {t.key: jaeger_tag(t) for t in (process.tags or [])}
    for s in batch.spans:
        tags = {t.key: jaeger_tag(t) for t in (s.tags or [])}
        trace = ((s.traceIdHigh & (2**64 - 1)) << 64) | (s.traceIdLow & (2**64 - 1))
        parent = s.parentSpanId & (2**64 - 1)
        emit({
            "via": via,
            "meta": meta,
            "service": process.serviceName,
            "resource": ptags,
            "name": s.operationName,
            "kind": tags.get("span.kind", "internal"),
            "trace_id": "%032x" % trace,
            "span_id": "%016x" % (s.spanId & (2**64 - 1)),
            "parent_span_id": "%016x" % parent if parent else "",
            "attributes": tags,
            "status_error": tags.get("error") is True,
            "flags": s.flags,
            "duration_us": s.duration,
        })


def main():
    idl = os.path.join(sys.argv[1], "thrift")
    jaeger = thriftpy2.load(os.path.join(idl, "jaeger.thrift"), module_name="jaeger_thrift")
    agent = thriftpy2.load(os.path.join(idl, "agent.thrift"), module_name="agent_thrift", include_dirs=[idl])

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    class Http(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            meta = {k.lower(): v for k, v in self.headers.items()}
            if meta.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path == "/api/traces":
                proto = TBinaryProtocolFactory().get_protocol(TMemoryBuffer(body))
                batch = jaeger.Batch()
                proto.read_struct(batch)
                jaeger_spans(batch, "jaeger_http", meta)
                self.send_response(202)
                self.end_headers()
                return
            req = trace_service_pb2.ExportTraceServiceRequest()
            req.ParseFromString(body)
            otlp_spans(req, "otlp_http", dict(meta, path=self.path))
            out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    http = ThreadingHTTPServer(("127.0.0.1", 0), Http)
    threading.Thread(target=http.serve_forever, daemon=True).start()

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))

    def agent_loop():
        while True:
            data = udp.recv(65536)
            try:
                proto = TCompactProtocolFactory().get_protocol(TMemoryBuffer(data))
                name, _, _ = proto.read_message_begin()
                args = agent.Agent.emitBatch_args()
                proto.read_struct(args)
                proto.read_message_end()
                jaeger_spans(args.batch, "jaeger_udp", {"method": name})
            except Exception as e:  # a datagram that does not decode is a test failure
                emit({"via": "jaeger_udp", "error": repr(e), "bytes": data.hex()})

    threading.Thread(target=agent_loop, daemon=True).start()
    emit({"otlp_grpc": grpc_port, "http": http.server_address[1], "jaeger_udp": udp.getsockname()[1]})
    threading.Event().wait()


if __name__ == "__main__":
    main()
