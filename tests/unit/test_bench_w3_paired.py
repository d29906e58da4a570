"""The paired W3 bench's own plumbing: HTTP/1.1 head parsing, HPACK literals, HTTP/2 framing and
client, the block bootstrap. Clients run against independent implementations (the ``hpack`` and
``h2`` packages, the standard library's HTTP server) in threads. No latency is asserted."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from bench.w3_paired import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PADDED,
    PRIORITY,
    GrpcChecker,
    GrpcResponse,
    H2Client,
    RestClient,
    block_bootstrap,
    frame,
    grpc_header_block,
    grpc_message_payload,
    header_fragment,
    hpack_int,
    hpack_literal,
    parse_http_head,
    rest_request,
    split_frames,
)
from bench.w3_server import grpc_frame


def test_parse_http_head() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 12\r\n\r\n"
    assert parse_http_head(head[:-2]) is None
    assert parse_http_head(head + b"{}") == (200, 12, len(head))
    assert parse_http_head(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n") == (404, 0, 45)
    with pytest.raises(ValueError, match="Content-Length"):
        parse_http_head(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
    with pytest.raises(ValueError, match="chunked"):
        parse_http_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    with pytest.raises(ValueError, match="HTTP"):
        parse_http_head(b"SSH-2.0\r\n\r\n")


def test_hpack_literals_decode_with_an_independent_decoder() -> None:
    assert hpack_int(10, 5) == bytes([10])  # RFC 7541 C.1.1
    assert hpack_int(1337, 5) == bytes([31, 154, 10])  # C.1.2
    assert hpack_int(42, 8) == bytes([42])  # C.1.3
    long_value = "v" * 300  # a length past the 7-bit prefix
    block = hpack_literal("x-long", long_value) + grpc_header_block(50051)
    decoder = hpack.Decoder()
    headers = [(str(n), str(v)) for n, v in decoder.decode(block)]  # str: raw=False
    assert headers[0] == ("x-long", long_value)
    assert dict(headers[1:]) == {
        ":method": "POST", ":scheme": "http", ":path": "/feast.serving.ServingService/GetOnlineFeatures",
        ":authority": "127.0.0.1:50051", "content-type": "application/grpc", "te": "trailers",
    }  # fmt: skip
    assert len(decoder.header_table.dynamic_entries) == 0  # literals without indexing


def test_split_frames_and_header_fragments() -> None:
    one = frame(HEADERS, END_HEADERS, 1, b"abc")
    two = frame(DATA, END_STREAM, 1, b"x" * 70000)  # a length of three bytes
    partial = frame(DATA, 0, 3, b"yz")[:-1]
    frames, used = split_frames(one + two + partial)
    assert frames == [(HEADERS, END_HEADERS, 1, b"abc"), (DATA, END_STREAM, 1, b"x" * 70000)]
    assert used == len(one) + len(two)
    assert split_frames(partial) == ([], 0)
    padded = bytes([2]) + b"\x00\x00\x00\x01\x10" + b"block" + b"\x00\x00"
    assert header_fragment(PADDED | PRIORITY, padded) == b"block"
    assert header_fragment(0, b"block") == b"block"


def test_grpc_message_payload() -> None:
    assert grpc_message_payload(grpc_frame(b"hello")) == b"hello"
    with pytest.raises(ValueError):
        grpc_message_payload(grpc_frame(b"hello") + b"!")
    with pytest.raises(ValueError):
        grpc_message_payload(b"\x01" + grpc_frame(b"hello")[1:])  # compressed


def test_block_bootstrap() -> None:
    plain = [300_000 + (i * 7919) % 20_000 for i in range(4000)]  # nanoseconds
    same = block_bootstrap(plain, plain, 500, resamples=200)
    assert same["p50_change_pct"] == 0.0 and same["p50_change_90ci_pct"] == [0.0, 0.0]
    assert same["blocks"] == 8
    slower = block_bootstrap(plain, [v * 1.1 for v in plain], 500, resamples=200)
    assert slower["p50_change_pct"] == pytest.approx(10.0, abs=0.01)
    low, high = slower["p50_change_90ci_pct"]
    assert low <= 10.0 <= high
    assert slower["mean_paired_diff_us"] == pytest.approx(sum(plain) / len(plain) * 0.1 / 1e3, abs=0.01)
    assert slower["block_p50_changes_pct"]["share_logged_slower"] == 1.0
    assert "p50_change_90ci_pct" not in block_bootstrap(plain[:600], plain[:600], 500)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        reply = json.dumps({"echo": json.loads(body), "host": self.headers["Host"]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


def test_rest_client_keeps_the_connection() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        client = RestClient(port)
        for code in ("CMD00001", "CMD09999"):
            elapsed, status, body = client.call(rest_request(port, "svc", [code]))
            assert status == 200 and elapsed > 0
            assert json.loads(body) == {
                "echo": {"feature_service": "svc", "entities": {"commodity_code": [code]}},
                "host": f"127.0.0.1:{port}",
            }
        client.close()
    finally:
        server.shutdown()
        server.server_close()


def _h2_server(listener: socket.socket, small_window: bool) -> None:
    """Answers every gRPC call with the reversed request message, a PING first, windows kept small."""
    sock, _ = listener.accept()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    if small_window:
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    sock.sendall(conn.data_to_send())
    bodies: dict[int, bytes] = {}
    while data := sock.recv(65536):
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                bodies[event.stream_id] = bodies.get(event.stream_id, b"") + event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                message = grpc_message_payload(bodies.pop(event.stream_id))
                conn.ping(b"12345678")
                conn.send_headers(event.stream_id, [(":status", "200"), ("content-type", "application/grpc")])
                conn.send_data(event.stream_id, grpc_frame(message[::-1]))
                conn.send_headers(event.stream_id, [("grpc-status", "0")], end_stream=True)
        sock.sendall(conn.data_to_send())
    sock.close()


@pytest.fixture(params=[False, True], ids=["default-window", "small-window"])
def h2_port(request: pytest.FixtureRequest) -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=_h2_server, args=(listener, request.param), daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    thread.join(5)
    listener.close()


def test_h2_client_against_an_independent_server(h2_port: int) -> None:
    """Many calls on one connection (more request bytes than the connection's first window, so the
    server's WINDOW_UPDATEs must be taken in), PINGs answered, every answer checked."""
    client, checker = H2Client(h2_port), GrpcChecker()
    block = grpc_header_block(h2_port)
    message = b"0123456789" * 90  # 905 bytes framed: 80 calls pass the 65,535 bytes of a first window
    for call in range(80):
        payload = grpc_frame(message + str(call).encode())
        client.prepare(len(payload))
        elapsed, response = client.call(block, payload)
        assert elapsed > 0
        checker.check(response)
        assert grpc_message_payload(response.data) == (message + str(call).encode())[::-1]
    assert client.stream == 159
    client.close()


def test_grpc_checker_rejects_errors() -> None:
    encoder, checker = hpack.Encoder(), GrpcChecker()
    response = GrpcResponse()
    response.blocks = [encoder.encode([(":status", "200")]), encoder.encode([("grpc-status", "13")])]
    with pytest.raises(ValueError, match="not OK"):
        checker.check(response)
    response.blocks = response.blocks[:1]
    with pytest.raises(ValueError, match="header blocks"):
        checker.check(response)
