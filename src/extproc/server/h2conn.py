"""One HTTP/2 connection of the built-in gRPC server: frames in, calls, the receive windows.

The inbound half of the protocol (`extproc.server.h2` describes what the server implements);
replies go out through the connection's `Sender` (`extproc.server.h2send`).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import hpack

from extproc.logs import get_logger
from extproc.server.grpc_call import (
    INTERNAL,
    OK,
    RESOURCE_EXHAUSTED,
    UNIMPLEMENTED,
    GrpcError,
    RefusedSession,
    StreamSession,
)
from extproc.server.h2send import Sender, Stream
from extproc.server.h2wire import (
    ACK,
    CANCEL,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    ERROR_NAMES,
    FLOW_CONTROL_ERROR,
    FRAME_HEADER,
    FRAME_SIZE_ERROR,
    GOAWAY,
    GRPC_PREFIX,
    HEADERS,
    INTERNAL_ERROR,
    MAX_CONCURRENT_STREAMS,
    MAX_CONTINUATIONS,
    MAX_HEADER_BLOCK,
    MAX_WINDOW,
    NO_ERROR,
    PADDED,
    PING,
    PREFACE,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    RECEIVE_MAX_FRAME,
    RECEIVE_WINDOW,
    REFUSED_STREAM,
    RST_STREAM,
    SETTING,
    SETTINGS,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    SETTINGS_MAX_FRAME_SIZE,
    U32,
    WINDOW_UPDATE,
    HeaderBlock,
    PathReader,
    ResetBudget,
    enable_keepalive,
    frame,
)

if TYPE_CHECKING:
    from extproc.server.h2 import GrpcServer

log = get_logger(__name__)


class _ConnectionError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class Connection(asyncio.BufferedProtocol):
    """One HTTP/2 connection from Envoy: the inbound half (frames, HPACK, calls, the receive
    windows) here, the outbound half (replies within the client's windows, trailers) in its
    `Sender` (`extproc.server.h2send`).

    A BufferedProtocol: asyncio's plain Protocol reads with `recv(256 KiB)`, and glibc serves
    every such allocation with mmap + mremap + munmap and fresh page faults (the freed, shrunk
    chunk never raises its mmap threshold): system time on every message. Reads go into one
    buffer shared by all connections instead (each read is consumed before the next).
    """

    def __init__(self, server: GrpcServer) -> None:
        self._server = server
        self._routes = server.routes
        self._max_message = server.limits.max_message_bytes
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._preface_seen = False
        self._paths = PathReader()
        self._streams: dict[int, Stream] = {}
        self._last_stream = 0
        self._send = Sender(self._end, self._replenish)  # the outbound half
        self._out = self._send.out  # control frames join the same write
        self._conn_unacked = 0
        self._continuation: HeaderBlock | None = None  # a block awaiting CONTINUATION
        self._resets = ResetBudget()
        self.going_away = False
        self._close_after_flush = False

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            enable_keepalive(sock)
        settings = (
            SETTING.pack(SETTINGS_MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_STREAMS)
            + SETTING.pack(SETTINGS_INITIAL_WINDOW_SIZE, RECEIVE_WINDOW)
            + SETTING.pack(SETTINGS_MAX_FRAME_SIZE, RECEIVE_MAX_FRAME)
        )
        transport.write(
            frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, U32.pack(RECEIVE_WINDOW - DEFAULT_WINDOW))
        )
        if self._server.stopping:  # accepted (or its TLS handshake ended) during stop()
            self.start_going_away()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._server.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._server.read_buffer[:nbytes]))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        try:
            consumed = self._receive(buffer)
        except _ConnectionError as exc:
            log.warning("http2_connection_error", code=exc.code, reason=str(exc))
            self._close_on_error(exc.code, str(exc))
            return
        except Exception as exc:  # a bug here must cost one connection, not the server
            log.error("http2_connection_failed", error=repr(exc), exc_info=True)
            self._close_on_error(INTERNAL_ERROR, "")
            return
        self._buffer = buffer[consumed:]
        self._flush()

    def _close_on_error(self, code: int, reason: str) -> None:
        """GOAWAY, end every stream now (sessions closed), then close the connection."""
        if self._server.on_connection_error is not None:
            self._server.on_connection_error(ERROR_NAMES.get(code, str(code)))
        self._send.goaway(self._last_stream, code, reason)
        for stream in list(self._streams.values()):
            self._end(stream)
        self._close_when_flushed()
        self._flush()

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        for stream in list(self._streams.values()):
            self._end(stream)
        self._transport = None

    def pause_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    # -- inbound ----------------------------------------------------------------------------
    def _receive(self, buffer: bytes) -> int:
        """Handle every complete frame in `buffer`; return the number of bytes consumed."""
        pos = 0
        if not self._preface_seen:
            if len(buffer) < len(PREFACE):
                if not PREFACE.startswith(buffer):
                    raise _ConnectionError(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                return 0
            if not buffer.startswith(PREFACE):
                raise _ConnectionError(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
            self._preface_seen = True
            pos = len(PREFACE)
        end = len(buffer)
        while end - pos >= 9:
            high, low, kind, flags, stream_id = FRAME_HEADER.unpack_from(buffer, pos)
            size = (high << 8) | low
            if size > RECEIVE_MAX_FRAME:
                raise _ConnectionError(FRAME_SIZE_ERROR, f"frame of {size} bytes")
            if end - pos - 9 < size:
                break
            payload = buffer[pos + 9 : pos + 9 + size]
            pos += 9 + size
            stream_id &= 0x7FFFFFFF
            if self._continuation is not None and kind != CONTINUATION:
                raise _ConnectionError(PROTOCOL_ERROR, "expected CONTINUATION")
            if kind == DATA:
                self._on_data(stream_id, flags, payload, size)
            elif kind == HEADERS:
                self._on_headers(stream_id, flags, payload)
            elif kind == CONTINUATION:
                self._on_continuation(stream_id, flags, payload)
            elif kind == WINDOW_UPDATE:
                self._on_window_update(stream_id, payload)
            elif kind == SETTINGS:
                self._on_settings(stream_id, flags, payload)
            elif kind == PING:
                if len(payload) != 8:
                    raise _ConnectionError(FRAME_SIZE_ERROR, "PING payload is not 8 bytes")
                if not flags & ACK:
                    self._out.append(frame(PING, ACK, 0, payload))
            elif kind == RST_STREAM:
                self._on_rst_stream(stream_id)
            elif kind == GOAWAY:
                self.going_away = True
            elif kind == PUSH_PROMISE:
                raise _ConnectionError(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
            # PRIORITY and unknown frame types are ignored (RFC 9113 §5.5).
        if self.going_away and not self._streams:
            self._close_when_flushed()
        return pos

    @staticmethod
    def _unpad(flags: int, payload: bytes) -> bytes:
        if not flags & PADDED:
            return payload
        if not payload or payload[0] >= len(payload):
            raise _ConnectionError(PROTOCOL_ERROR, "bad padding")
        return payload[1 : len(payload) - payload[0]]

    def _on_data(self, stream_id: int, flags: int, payload: bytes, size: int) -> None:
        if stream_id == 0:
            raise _ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
        # Every DATA byte counts against the connection window, even on streams we closed.
        self._conn_unacked += size
        if self._conn_unacked >= RECEIVE_WINDOW // 2:
            self._out.append(frame(WINDOW_UPDATE, 0, 0, U32.pack(self._conn_unacked)))
            self._conn_unacked = 0
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed:
            return  # a stream we already ended (or reset): drop its data
        data = self._unpad(flags, payload)
        stream.unacked += size
        if not flags & END_STREAM:
            self._replenish(stream)
        if data:
            self._on_grpc_bytes(stream, data)
        if flags & END_STREAM and stream.id in self._streams:
            self._remote_end(stream)

    def _replenish(self, stream: Stream) -> None:
        """Return half a window of received bytes to the client, unless the stream's replies
        are waiting for the client's window: then its input waits too (bounded memory)."""
        if stream.unacked >= RECEIVE_WINDOW // 2 and not stream.pending:
            self._out.append(frame(WINDOW_UPDATE, 0, stream.id, U32.pack(stream.unacked)))
            stream.unacked = 0

    def _on_grpc_bytes(self, stream: Stream, data: bytes) -> None:
        buffer = stream.buffer
        if buffer:
            # A message spread over DATA frames: copy once, when it is complete.
            buffer += data
            if len(buffer) < 5:
                return
            needed = 5 + int.from_bytes(buffer[1:5], "big")
            if len(buffer) < needed <= self._max_message + 5:
                return
            data = bytes(buffer)
            buffer.clear()
        pos, end = 0, len(data)
        while end - pos >= 5:
            compressed, size = GRPC_PREFIX.unpack_from(data, pos)
            if size > self._max_message:
                self._send.fail(
                    stream, RESOURCE_EXHAUSTED, f"message of {size} bytes over the limit"
                )
                return
            if end - pos - 5 < size:
                break
            if compressed:
                self._send.fail(stream, INTERNAL, "compressed messages are not accepted")
                return
            message = data[pos + 5 : pos + 5 + size]
            pos += 5 + size
            stream.delivered = True
            try:
                replies = stream.session.on_message(message)
                for reply in replies:
                    self._send.message(stream, reply)
            except GrpcError as exc:
                self._send.fail(stream, exc.status, exc.message)
                return
            except Exception as exc:  # a handler bug costs one call, never the connection
                log.error("grpc_handler_failed", error=repr(exc), exc_info=True)
                self._send.fail(stream, INTERNAL, "internal error")
                return
            if stream.id not in self._streams:
                return
        if pos < end:
            if end - pos > self._max_message + 5:
                self._send.fail(stream, RESOURCE_EXHAUSTED, "message over the limit")
                return
            buffer += data[pos:]

    def _on_headers(self, stream_id: int, flags: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _ConnectionError(PROTOCOL_ERROR, "HEADERS on stream 0")
        block = self._unpad(flags, payload)
        if flags & PRIORITY_FLAG:
            block = block[5:]
        if len(block) > MAX_HEADER_BLOCK:
            raise _ConnectionError(PROTOCOL_ERROR, "header block too large")
        if flags & END_HEADERS:
            self._on_header_block(stream_id, bool(flags & END_STREAM), block)
        else:
            self._continuation = HeaderBlock(stream_id, bool(flags & END_STREAM), [block])

    def _on_continuation(self, stream_id: int, flags: int, payload: bytes) -> None:
        pending = self._continuation
        if pending is None or pending.stream_id != stream_id:
            raise _ConnectionError(PROTOCOL_ERROR, "unexpected CONTINUATION")
        pending.fragments.append(payload)
        pending.size += len(payload)
        # Bounded in bytes and in frames: empty CONTINUATIONs must not be free to send.
        if pending.size > MAX_HEADER_BLOCK or len(pending.fragments) > MAX_CONTINUATIONS:
            raise _ConnectionError(PROTOCOL_ERROR, "header block too large")
        if flags & END_HEADERS:
            self._continuation = None
            self._on_header_block(stream_id, pending.end_stream, b"".join(pending.fragments))

    def _on_header_block(self, stream_id: int, end_stream: bool, block: bytes) -> None:
        try:  # every block, trailers too: keeps the decoder's table in step with the client
            path = self._paths.path_of(block)
        except hpack.HPACKError as exc:
            raise _ConnectionError(COMPRESSION_ERROR, f"HPACK: {exc}") from exc
        stream = self._streams.get(stream_id)
        if stream is not None:  # trailers from the client end its side of the call
            if end_stream:
                self._remote_end(stream)
            return
        if stream_id <= self._last_stream or not stream_id & 1:
            if stream_id > self._last_stream:
                raise _ConnectionError(PROTOCOL_ERROR, f"even stream id {stream_id}")
            return  # headers for a stream that already ended: nothing to do
        self._last_stream = stream_id
        if self.going_away or self._server.stopping or len(self._streams) >= MAX_CONCURRENT_STREAMS:
            self._out.append(frame(RST_STREAM, 0, stream_id, U32.pack(REFUSED_STREAM)))
            return
        factory = self._routes.get(path.decode("latin-1"))
        session: StreamSession
        try:
            if factory is None:
                raise GrpcError(UNIMPLEMENTED, f"unknown method {path.decode('latin-1')!r}")
            session = factory()
        except Exception as exc:
            if not isinstance(exc, GrpcError):  # a bug costs this call, not the connection
                log.error("grpc_session_factory_failed", error=repr(exc), exc_info=True)
                exc = GrpcError(INTERNAL, "internal error")
            if end_stream:
                self._send.trailers_only(stream_id, exc.status, exc.message)
                return
            # Answer when the client's first message (or end of stream) arrives: grpcio's
            # client reports "Internal error from Core" instead of our status when the call
            # ends before it has written its first message.
            session = RefusedSession(exc)
        stream = Stream(stream_id, session, self._send.stream_window)
        self._streams[stream_id] = stream
        self._server.open_streams += 1
        if end_stream:
            self._remote_end(stream)

    def _on_rst_stream(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # a stream we already ended
        self._end(stream)
        # Envoy ends every ext_proc stream with RST_STREAM once its HTTP request is done,
        # while the call is still open here (thousands a second under load): only a reset
        # before any message, the shape of a rapid-reset flood, spends the budget.
        if stream.delivered:
            self._server.resets_under_way += 1
            return
        self._server.resets_before_message += 1
        if not self._resets.spend(time.monotonic()):
            raise _ConnectionError(ENHANCE_YOUR_CALM, "too many stream resets")

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(FRAME_SIZE_ERROR, "WINDOW_UPDATE payload is not 4 bytes")
        increment = U32.unpack(payload)[0] & 0x7FFFFFFF
        send = self._send
        if stream_id == 0:
            send.window_update(None, increment)
        else:
            stream = self._streams.get(stream_id)
            if stream is None:
                return
            send.window_update(stream, increment)
        if send.blocked:
            self._unblock()

    def _on_settings(self, stream_id: int, flags: int, payload: bytes) -> None:
        if stream_id != 0:
            raise _ConnectionError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            return
        if len(payload) % 6:
            raise _ConnectionError(FRAME_SIZE_ERROR, "SETTINGS payload not a multiple of 6")
        for offset in range(0, len(payload), 6):
            key, value = SETTING.unpack_from(payload, offset)
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise _ConnectionError(FLOW_CONTROL_ERROR, "initial window too large")
                self._send.initial_window(value, self._streams)
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME <= value <= 2**24 - 1:
                    raise _ConnectionError(PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE")
                self._send.max_frame = value
            # HEADER_TABLE_SIZE only bounds an encoder's dynamic table, and ours uses none.
        self._out.append(frame(SETTINGS, ACK, 0))
        if self._send.blocked:
            self._unblock()

    def _unblock(self) -> None:
        self._send.unblock(self._streams)
        if self.going_away and not self._streams:
            self._close_when_flushed()

    # -- call ends ---------------------------------------------------------------------------
    def _remote_end(self, stream: Stream) -> None:
        stream.remote_closed = True
        if isinstance(stream.session, RefusedSession):
            self._send.finish(stream, stream.session.error.status, stream.session.error.message)
        elif stream.buffer:
            self._send.fail(stream, INTERNAL, "the request stream ended inside a message")
        else:
            self._send.finish(stream, OK)

    def _end(self, stream: Stream) -> None:
        """Forget the stream and tell its session, exactly once."""
        if self._streams.pop(stream.id, None) is None:
            return
        self._send.blocked.pop(stream.id, None)
        self._server.open_streams -= 1
        try:
            stream.session.on_close()
        except Exception as exc:
            log.error("grpc_session_close_failed", error=repr(exc), exc_info=True)
        self._server.stream_ended()

    def _flush(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            # Closing already: asyncio's TLS transport must not be written or closed again.
            self._out.clear()
            return
        if self._out:
            transport.write(b"".join(self._out) if len(self._out) > 1 else self._out[0])
            self._out.clear()
        if self._close_after_flush:
            transport.close()  # asyncio writes what is buffered, then closes

    def _close_when_flushed(self) -> None:
        self._close_after_flush = True

    # -- server control ---------------------------------------------------------------------
    def start_going_away(self) -> None:
        """Graceful stop: no new streams; the open ones finish, then the connection closes."""
        self.going_away = True
        self._send.goaway(self._last_stream, NO_ERROR)
        if not self._streams:
            self._close_when_flushed()
        self._flush()

    def cancel_all(self) -> None:
        """The drain deadline passed: end every open stream and drop the connection (abort: a
        client that stopped reading must not hold the socket open)."""
        for stream in list(self._streams.values()):
            self._out.append(frame(RST_STREAM, 0, stream.id, U32.pack(CANCEL)))
            self._end(stream)
        self._flush()
        if self._transport is not None:
            self._transport.abort()
