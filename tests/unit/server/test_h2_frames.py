"""The built-in HTTP/2 gRPC server against hand-made frames and the `h2` library on loopback:
padding, CONTINUATION, tiny windows and frames, PING, a bad preface, HPACK table changes,
floods, half-sent replies, truncated requests, TCP keepalive.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest

from extproc.server.grpc_call import INTERNAL, UNAVAILABLE, GrpcError
from extproc.server.h2 import GrpcServer
from extproc.server.h2wire import KEEPALIVE_IDLE_S, ResetBudget, leaves_table_unchanged
from tests.unit.server.h2_helpers import ECHO, EchoSession, Recorder, chat

pytestmark = pytest.mark.timeout(30)


def grpc_frame(payload: bytes) -> bytes:
    return struct.pack(">BI", 0, len(payload)) + payload


class RawClient:
    """An `h2` client connection over an asyncio stream, for frames grpcio never sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.events: list[h2.events.Event] = []

    @classmethod
    async def connect(cls, port: int, settings: dict[int, int] | None = None) -> RawClient:
        client = cls(*await asyncio.open_connection("127.0.0.1", port))
        client.conn.local_settings = h2.settings.Settings(
            client=True, initial_values=settings or {}
        )
        client.conn.initiate_connection()
        await client.flush()
        return client

    async def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())
        await self.writer.drain()

    @staticmethod
    def headers(path: str) -> list[tuple[str, str]]:
        return [
            (":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", "test"), ("content-type", "application/grpc"), ("te", "trailers"),
        ]  # fmt: skip

    async def until(self, done: type[h2.events.Event], stream_id: int | None = None) -> bytes:
        """Read until an event of type `done` (on `stream_id`); return the DATA received."""
        data = bytearray()
        finished = False
        while not finished:
            chunk = await asyncio.wait_for(self.reader.read(65536), 5)
            if not chunk:
                break
            for event in self.conn.receive_data(chunk):
                self.events.append(event)
                if isinstance(event, h2.events.DataReceived):
                    data += event.data
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                if isinstance(event, done) and (
                    stream_id is None or getattr(event, "stream_id", None) == stream_id
                ):
                    finished = True
            await self.flush()
        return bytes(data)

    def close(self) -> None:
        self.writer.close()


async def read_frames(
    reader: asyncio.StreamReader, until: Callable[[int, int, int], bool]
) -> list[tuple[int, int, int, bytes]]:
    """Raw frames (type, flags, stream, payload) up to the first one `until` accepts."""
    frames = []
    while True:
        header = await asyncio.wait_for(reader.readexactly(9), 5)
        high, low, kind, flags, stream_id = struct.unpack(">HBBBI", header)
        payload = await reader.readexactly((high << 8) | low)
        frames.append((kind, flags, stream_id, payload))
        if until(kind, flags, stream_id):
            return frames


async def test_padding_continuation_and_ping(served: tuple[GrpcServer, Recorder, int]) -> None:
    _, _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # A header block split over HEADERS + CONTINUATION, a padded DATA frame ending the stream,
    # then a PING: all hand-made frames (no client library sends these shapes on demand).
    block = hpack.Encoder().encode(RawClient.headers(ECHO))
    first, rest = block[:5], block[5:]
    message = grpc_frame(b"padded")
    padded = bytes([7]) + message + b"\x00" * 7
    writer.write(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + struct.pack(">HBBBI", 0, 0, 0x4, 0x0, 0)  # SETTINGS, empty
        + struct.pack(">HBBBI", 0, len(first), 0x1, 0x0, 1) + first  # HEADERS, no END_HEADERS
        + struct.pack(">HBBBI", 0, len(rest), 0x9, 0x4, 1) + rest  # CONTINUATION, END_HEADERS
        + struct.pack(">HBBBI", 0, len(padded), 0x0, 0x8 | 0x1, 1) + padded  # DATA PADDED|END
        + struct.pack(">HBBBI", 0, 8, 0x6, 0x0, 0) + b"pingpong"  # PING
    )  # fmt: skip
    frames = await read_frames(reader, lambda kind, flags, _: kind == 0x6 and bool(flags & 1))
    data = b"".join(p for kind, _, sid, p in frames if kind == 0x0 and sid == 1)
    assert data == grpc_frame(b"deddap")
    decoder = hpack.Decoder()
    blocks = [decoder.decode(p) for kind, _, sid, p in frames if kind == 0x1 and sid == 1]
    assert blocks[0][:2] == [(":status", "200"), ("content-type", "application/grpc")]
    assert blocks[-1] == [("grpc-status", "0")]
    assert (0x6, 0x1, 0, b"pingpong") in frames  # the PING's ACK
    writer.close()


async def test_tiny_client_windows_and_frames_split_and_resume(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    _, _, port = served
    codes = h2.settings.SettingCodes
    client = await RawClient.connect(
        port, {codes.INITIAL_WINDOW_SIZE: 100, codes.MAX_FRAME_SIZE: 16384}
    )
    await client.until(h2.events.SettingsAcknowledged)
    payload = bytes(range(256)) * 400  # 100 KB: the server must wait for WINDOW_UPDATEs
    client.conn.send_headers(1, client.headers(ECHO))
    client.conn.send_data(1, grpc_frame(payload[:30_000]))
    await client.flush()
    client.conn.send_data(1, grpc_frame(payload[30_000:]), end_stream=False)
    client.conn.end_stream(1)
    await client.flush()
    data = await client.until(h2.events.StreamEnded, 1)
    assert data == grpc_frame(payload[:30_000][::-1]) + grpc_frame(payload[30_000:][::-1])
    sizes = [len(e.data) for e in client.events if isinstance(e, h2.events.DataReceived)]
    assert max(sizes) <= 16384 and len(sizes) > 10
    client.close()


async def test_a_bad_preface_gets_goaway_and_close(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    server, _, port = served
    errors: list[str] = []
    server.on_connection_error = errors.append
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), 5)  # until the server closes
    # The server's SETTINGS, WINDOW_UPDATE, then GOAWAY (type 7) with PROTOCOL_ERROR.
    assert b"\x00\x00\x00\x00\x00\x00\x00\x01" in received
    assert bytes([0x07]) in received[3::1]
    assert errors == ["PROTOCOL_ERROR"]
    writer.close()


async def test_handler_error_mid_stream_resets_only_that_stream(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    server, recorder, port = served
    client = await RawClient.connect(port)
    client.conn.send_headers(1, client.headers(ECHO))
    client.conn.send_data(1, grpc_frame(b"boom"))
    client.conn.send_headers(3, client.headers(ECHO))
    client.conn.send_data(3, grpc_frame(b"fine"), end_stream=True)
    await client.flush()
    await client.until(h2.events.StreamEnded, 3)
    trailers = {
        e.stream_id: dict(e.headers) for e in client.events
        if isinstance(e, (h2.events.TrailersReceived, h2.events.ResponseReceived))
        and b"grpc-status" in dict(e.headers)
    }  # fmt: skip
    assert trailers[1][b"grpc-status"] == str(INTERNAL).encode()
    assert trailers[3][b"grpc-status"] == b"0"
    assert server.open_streams == 0 and recorder.closed == 2
    client.close()


def test_header_blocks_that_leave_the_hpack_table_unchanged_are_recognised() -> None:
    encoder = hpack.Encoder()
    headers = RawClient.headers(ECHO)
    first = encoder.encode(headers)  # literals with incremental indexing: changes the table
    again = encoder.encode(headers)  # now all indexed: changes nothing
    never = encoder.encode([(":path", ECHO, True)])  # a never-indexed literal
    resize = b"\x3f\xe1\x1f" + again  # a dynamic table size update first
    assert not leaves_table_unchanged(first)
    assert leaves_table_unchanged(again)
    assert leaves_table_unchanged(never)
    assert not leaves_table_unchanged(resize)
    assert not leaves_table_unchanged(again[:-1] + b"\xff")  # truncated integer


async def test_paths_stay_right_when_the_client_changes_its_hpack_table(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    # The server remembers the path of a block that leaves the table unchanged; a block that
    # changes the table (a new method here) must make it decode again.
    _, _, port = served
    client = await RawClient.connect(port)
    sid = 1
    for path in (ECHO, ECHO, "/test.Echo/Nope", ECHO, "/test.Echo/Nope", ECHO):
        client.conn.send_headers(sid, client.headers(path))
        client.conn.send_data(sid, grpc_frame(b"ab"), end_stream=True)
        await client.flush()
        data = await client.until(h2.events.StreamEnded, sid)
        assert data == (grpc_frame(b"ba") if path == ECHO else b""), path
        sid += 2
    client.close()


# -- misbehaving clients and failures at awkward moments -------------------------------------


async def raw_connection(
    port: int, *frames: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Preface, an empty SETTINGS frame, then `frames`, all hand-made."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + raw(0x4, 0, 0) + b"".join(frames))
    return reader, writer


def raw(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HBBBI", len(payload) >> 8, len(payload) & 0xFF, kind, flags, stream_id) + (
        payload
    )


def headers_frame(stream_id: int, path: str = ECHO, flags: int = 0x4) -> bytes:
    return raw(0x1, flags, stream_id, hpack.Encoder().encode(RawClient.headers(path)))


def trailers_of(frames: list[tuple[int, int, int, bytes]], stream_id: int) -> dict[str, str]:
    decoder = hpack.Decoder()  # every block here is encoded without the dynamic table
    blocks = [decoder.decode(p) for kind, _, sid, p in frames if kind == 0x1 and sid == stream_id]
    return dict(blocks[-1])


def ends_stream(stream_id: int) -> Callable[[int, int, int], bool]:
    return lambda kind, flags, sid: sid == stream_id and kind in (0x0, 0x1) and bool(flags & 1)


async def test_an_error_after_a_half_sent_reply_finishes_that_message_first(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    # The client allows 10 bytes: the 105-byte reply is cut by flow control, then the next
    # message fails. The reply's rest must still come (when the window opens) before the
    # trailers, or the body would end inside a gRPC message.
    _, _, port = served
    settings = raw(0x4, 0, 0, struct.pack(">HI", 0x4, 10))
    reader, writer = await raw_connection(
        port,
        settings,
        headers_frame(1),
        raw(0x0, 0, 1, grpc_frame(b"A" * 100) + grpc_frame(b"boom")),
    )
    first = await read_frames(reader, lambda kind, _, sid: kind == 0x0 and sid == 1)
    assert len(first[-1][3]) == 10
    writer.write(raw(0x8, 0, 1, struct.pack(">I", 1000)))  # WINDOW_UPDATE: the rest may come
    frames = first + await read_frames(reader, ends_stream(1))
    body = b"".join(p for kind, _, sid, p in frames if kind == 0x0 and sid == 1)
    assert body == grpc_frame(b"A" * 100)
    assert trailers_of(frames, 1)["grpc-status"] == str(INTERNAL)
    writer.close()


async def test_a_stream_ending_inside_a_message_is_an_error(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    _, recorder, port = served
    cut = grpc_frame(b"B" * 100)[:15]
    reader, writer = await raw_connection(port, headers_frame(1), raw(0x0, 0x1, 1, cut))
    frames = await read_frames(reader, ends_stream(1))
    assert trailers_of(frames, 1)["grpc-status"] == str(INTERNAL)
    assert recorder.received == []
    writer.close()


async def test_endless_continuation_frames_end_the_connection(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    _, _, port = served
    block = hpack.Encoder().encode(RawClient.headers(ECHO))
    flood = raw(0x1, 0, 1, block[:3]) + raw(0x9, 0, 1) * 1000  # empty CONTINUATIONs
    reader, writer = await raw_connection(port, flood)
    frames = await read_frames(reader, lambda kind, _, __: kind == 0x7)  # GOAWAY
    assert struct.unpack(">I", frames[-1][3][4:8])[0] == 1  # PROTOCOL_ERROR
    writer.close()


async def test_a_failing_session_factory_costs_one_call_and_long_messages_are_cut() -> None:
    calls = 0

    def flaky() -> EchoSession:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug while opening a session")
        raise GrpcError(UNAVAILABLE, "x" * 100_000)

    server = GrpcServer({ECHO: flaky, "/test.Echo/Ok": Recorder().session})
    port = await server.start("127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE):
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    _ = [r async for r in chat(channel)(iter([b"hi"]))]
                assert failed.value.code() == code
                assert len(failed.value.details() or "") <= 1024
            fine = chat(channel, "/test.Echo/Ok")()
            await fine.write(b"ok")
            await fine.done_writing()
            assert [r async for r in fine] == [b"ko"]
    finally:
        await server.stop(0)


async def test_accepted_connections_use_tcp_keepalive(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    server, _, port = served
    _, writer = await raw_connection(port)
    try:
        for _ in range(100):
            if server.connections:
                break
            await asyncio.sleep(0.01)
        (conn,) = server.connections
        sock = conn._transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE_S
    finally:
        writer.close()


FLOOD = 1100  # streams opened and reset: past the reset budget's burst of 1,000


def reset_flood(*, with_message: bool) -> bytes:
    """`FLOOD` streams, each opened (with one request message or none) and reset (CANCEL)."""
    message = grpc_frame(b"hi")
    return b"".join(
        headers_frame(sid)
        + (raw(0x0, 0, sid, message) if with_message else b"")
        + raw(0x3, 0, sid, struct.pack(">I", 0x8))
        for sid in range(1, 2 * FLOOD, 2)
    )


async def test_a_rapid_reset_flood_gets_goaway_enhance_your_calm(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    server, _, port = served
    errors: list[str] = []
    server.on_connection_error = errors.append
    reader, writer = await raw_connection(port, reset_flood(with_message=False))
    frames = await read_frames(reader, lambda kind, _, __: kind == 0x7)  # GOAWAY
    assert struct.unpack(">I", frames[-1][3][4:8])[0] == 0xB  # ENHANCE_YOUR_CALM
    assert errors == ["ENHANCE_YOUR_CALM"]
    assert server.resets_before_message > 1000 and server.resets_under_way == 0
    writer.close()


async def test_resets_of_streams_under_way_do_not_spend_the_budget(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    # What Envoy does at the end of every call: RST_STREAM after the call's messages. The
    # connection must stay up and serve the next call.
    server, _, port = served
    errors: list[str] = []
    server.on_connection_error = errors.append
    last = 2 * FLOOD + 1
    reader, writer = await raw_connection(
        port,
        reset_flood(with_message=True),
        headers_frame(last),
        raw(0x0, 0x1, last, grpc_frame(b"ok")),
    )
    frames = await read_frames(reader, ends_stream(last))
    assert trailers_of(frames, last)["grpc-status"] == "0"
    assert not any(kind == 0x7 for kind, _, _, _ in frames)  # no GOAWAY
    assert errors == []
    assert server.resets_under_way == FLOOD and server.resets_before_message == 0
    writer.close()


def test_the_reset_budget_refills_at_its_rate() -> None:
    budget = ResetBudget(burst=2, rate=10.0)
    assert budget.spend(0.0) and budget.spend(0.0)
    assert not budget.spend(0.0)  # empty: a third reset at once is one too many
    assert budget.spend(0.5)  # 0.5 s at 10/s refills 5, capped at the burst of 2
    assert budget.spend(0.5)
    assert not budget.spend(0.5)
