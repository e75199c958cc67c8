#!/usr/bin/env python3
"""Writes the generated part of the fuzz targets' seed corpora (fuzz/corpus/<target>/):
link frames encoded by hand after proto/synapse/link/v1/link.proto (length prefix and
protobuf wire format, canonical as prost writes them), HTTP requests for the gateway's fast
path and instance answers for its answer reader. The configuration and ONNX seeds are copies
of the files the project ships (scripts/fuzz.sh refreshes them). Run from anywhere; the
output is deterministic, so a re-run changes nothing in git."""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def f_varint(field, n):
    return key(field, 0) + varint(n) if n else b""


def f_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return key(field, 2) + varint(len(data)) + data if data else b""


def f_msg(field, data):
    # A message field is written even when empty (it is set).
    return key(field, 2) + varint(len(data)) + data


def f_double(field, x):
    return key(field, 1) + struct.pack("<d", x) if x != 0.0 else b""


def f_opt_double(field, x):
    return key(field, 1) + struct.pack("<d", x)


def packed_varints(field, values):
    body = b"".join(varint(v) for v in values)
    return key(field, 2) + varint(len(body)) + body if values else b""


def packed_doubles(field, values):
    body = b"".join(struct.pack("<d", v) for v in values)
    return key(field, 2) + varint(len(body)) + body if values else b""


def packed_floats(field, values):
    body = b"".join(struct.pack("<f", v) for v in values)
    return key(field, 2) + varint(len(body)) + body if values else b""


def frame(field, body):
    message = f_msg(field, body)
    return struct.pack(">I", len(message)) + message


def frames():
    capacity = f_varint(1, 2) + f_varint(2, 8 << 30)
    label = f_bytes(1, "region") + f_bytes(2, "eu-west")
    hello = (
        f_bytes(1, "edge-1")
        + f_varint(2, 1)
        + f_msg(3, label)
        + f_bytes(4, "0.1.0")
        + packed_varints(5, [1])
        + f_msg(6, capacity)
        + f_bytes(7, "0.0.0.0:8080")
        + f_varint(8, 0x1234_5678_9ABC)
    )
    interval = (
        f_bytes(1, "echo")
        + f_varint(2, 1_780_000_000_000)
        + f_varint(3, 60_000)
        + f_varint(4, 120)
        + f_varint(5, 3)
        + f_varint(6, 1)
        + packed_doubles(7, [0.01, 0.1, 1.0])
        + packed_varints(8, [1, 1, 1, 0])
        + f_double(9, 0.42)
        + f_double(10, 12.5)
        + f_varint(11, 118)
        + f_varint(12, 2)
        + f_varint(13, 3)
        + packed_doubles(14, [0.001, 0.01])
        + packed_varints(15, [100, 18, 0])
        + f_opt_double(16, 2.0)
        + f_varint(17, 7)
    )
    telemetry = f_varint(1, 42) + f_msg(2, interval) + f_msg(2, f_bytes(1, "resize"))
    out = {
        "hello": frame(1, hello),
        "welcome": frame(2, f_varint(1, 1) + f_bytes(2, "synapse-hub")),
        "heartbeat": frame(3, f_varint(1, 1_780_000_000_000) + f_varint(2, 5) + f_varint(4, 250)),
        "telemetry": frame(4, telemetry),
        "ack": frame(5, f_varint(1, 42)),
        "error": frame(6, f_bytes(1, "malformed") + f_bytes(2, "frame does not decode")),
        "round_open": frame(
            7, f_varint(1, 3) + f_varint(2, 2) + f_bytes(3, "ab" * 32) + f_varint(4, 337)
        ),
        "gradient_report": frame(
            8, f_varint(1, 3) + f_varint(2, 2) + packed_floats(3, [0.5, -0.25, 1e-3]) + f_varint(4, 600)
        ),
        "model_offer": frame(9, f_varint(1, 4) + f_bytes(2, "cd" * 32) + f_varint(3, 1757) + f_varint(4, 1)),
        "model_chunk": frame(10, f_varint(1, 4) + f_bytes(3, b"\x08\x07\x12\x04onnx")),
        "model_report": frame(11, f_varint(1, 4) + f_varint(2, 2) + f_bytes(3, "sha mismatch")),
        "empty_heartbeat": frame(3, b""),
        "no_body": struct.pack(">I", 0),
        "oversized": struct.pack(">I", 1 << 24) + b"\x1a\x00",
    }
    # A stream of several frames, as one connection sends them.
    out["stream"] = out["hello"] + out["heartbeat"] + out["telemetry"] + out["ack"]
    return out


INVOKE = b"POST /v1/functions/echo/invoke HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"


def requests():
    return {
        "invoke": INVOKE + b"Content-Length: 5\r\n\r\nhello",
        "invoke_query": b"POST /v1/functions/resize/invoke?w=10&h=%20 HTTP/1.1\r\nhost: x\r\n"
        b"content-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
        "invoke_close": INVOKE + b"Connection: keep-alive, close\r\n\r\n",
        "pipelined": INVOKE + b"Content-Length: 1\r\n\r\na" + INVOKE + b"Content-Length: 1\r\n\r\nb",
        "chunked": INVOKE + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "expect": INVOKE + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        "upgrade": INVOKE + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "two_lengths": INVOKE + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "http10": b"POST /v1/functions/echo/invoke HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        "list": b"GET /v1/functions HTTP/1.1\r\nHost: x\r\n\r\n",
        "leading_crlf": b"\r\n" + INVOKE + b"\r\n",
        "partial": INVOKE + b"Content-Le",
    }


def answers():
    # The first byte is the target's control byte: bit 7 clear = raw answer, bit 6 = answer
    # to a HEAD request, bits 0-5 = size of each read (0 = all at once).
    raw = {
        "length": b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello",
        "chunked": b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\nx-a: 1\r\n\r\n"
        b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nx-trailer: t\r\n\r\n",
        "until_close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthe rest of the connection",
        "continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nx-b: 2\r\n\r\n",
        "length_and_chunked": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        "gzip_chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
        "bad_chunk": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        "switch": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
    }
    out = {}
    for i, (name, answer) in enumerate(raw.items()):
        out[name] = bytes([0]) + answer
        out[name + "_pieces"] = bytes([1 + 7 * i % 63]) + answer
    out["head_request"] = bytes([0x40]) + raw["length"][:-5]
    # Structured mode (bit 7 set): a chunked answer built from the rest of the input.
    out["built_chunked"] = bytes([0x83, 0x5A]) + b"a body cut into chunks of many sizes"
    return out


def sample_classifier():
    """The agent's sample ONNX classifier (agent/src/runtime/sample_model.rs) in ONNX's wire
    format: logits = x . W + b, x of shape [N, 4], three classes; IR 8, opset 13."""
    weights = [0.5, -1.0, 0.25, 1.5, 0.75, -0.5, -0.25, 0.5, 1.0, 0.125, -0.375, 0.625]
    bias = [0.1, -0.2, 0.05]

    def node(op, inputs, output):
        return (
            b"".join(f_bytes(1, i) for i in inputs) + f_bytes(2, output) + f_bytes(3, output) + f_bytes(4, op)
        )

    def initializer(name, dims, values):
        return packed_varints(1, dims) + f_varint(2, 1) + packed_floats(4, values) + f_bytes(8, name)

    def value_info(name, width):
        shape = f_msg(1, f_bytes(2, "N")) + f_msg(1, f_varint(1, width))
        tensor = f_varint(1, 1) + f_msg(2, shape)
        return f_bytes(1, name) + f_msg(2, f_msg(1, tensor))

    graph = (
        f_msg(1, node("MatMul", ["x", "W"], "xw"))
        + f_msg(1, node("Add", ["xw", "b"], "logits"))
        + f_bytes(2, "synapse-sample-classifier")
        + f_msg(5, initializer("W", [4, 3], weights))
        + f_msg(5, initializer("b", [3], bias))
        + f_msg(11, value_info("x", 4))
        + f_msg(12, value_info("logits", 3))
    )
    opset = f_varint(2, 13)
    return f_varint(1, 8) + f_bytes(2, "synapse-agent") + f_bytes(3, "0.1.0") + f_msg(7, graph) + f_msg(8, opset)


def write(target, files):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("frame_codec", frames())
    write("gateway_request", requests())
    write("gateway_answer", answers())
    write("onnx_model", {"sample_classifier.onnx": sample_classifier()})
