"""The outbound half of a server HTTP/2 connection: one stream's state, and the `Sender`.

`Sender` queues frames for the connection to write once per read (`out`), sends each gRPC
reply as DATA within the client's windows (connection, stream, maximum frame size), parks
what does not fit until a WINDOW_UPDATE or SETTINGS frame opens the window, and sends a call's
trailers only after the DATA before them. The inbound half (`extproc.server.h2`) tells it
about the client's windows and settings.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping

from extproc.server.grpc_call import StreamSession
from extproc.server.h2wire import (
    DATA,
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
    END_HEADERS,
    END_STREAM,
    FRAME_HEADER,
    GOAWAY,
    GRPC_PREFIX,
    HEADERS,
    RESPONSE_HEADERS,
    U32,
    frame,
    status_block,
)


class Stream:
    """One call: its session, inbound buffer and window, and outbound queue and window."""

    __slots__ = (
        "buffer",
        "delivered",
        "headers_sent",
        "id",
        "partial",
        "pending",
        "remote_closed",
        "send_window",
        "session",
        "trailers",
        "unacked",
    )  # fmt: skip

    def __init__(self, stream_id: int, session: StreamSession, send_window: int) -> None:
        self.id = stream_id
        self.session = session
        self.buffer = bytearray()  # an incomplete gRPC message
        self.delivered = False  # a request message reached the session
        self.send_window = send_window
        self.unacked = 0  # received DATA bytes not yet returned with WINDOW_UPDATE
        self.pending: deque[memoryview] = deque()  # DATA waiting for flow-control window
        self.trailers: bytes | None = None  # sent once `pending` drains
        self.headers_sent = False
        self.remote_closed = False
        self.partial = False  # pending[0] is the tail of a message already partly sent


class Sender:
    """Frames out of one connection, flow-controlled by the client's windows.

    `end(stream)` is called once a stream's trailers are queued (the connection forgets it);
    `replenish(stream)` when a parked stream's replies have all gone (its input may flow again).
    """

    __slots__ = ("_end", "_replenish", "blocked", "max_frame", "out", "stream_window", "window")

    def __init__(self, end: Callable[[Stream], None], replenish: Callable[[Stream], None]) -> None:
        self._end = end
        self._replenish = replenish
        self.out: list[bytes] = []  # written by the connection once per read
        self.stream_window = DEFAULT_WINDOW  # a new stream's send window (client SETTINGS)
        self.max_frame = DEFAULT_MAX_FRAME
        self.window = DEFAULT_WINDOW  # the connection's send window
        self.blocked: dict[int, None] = {}  # streams with pending DATA, in arrival order

    def message(self, stream: Stream, payload: bytes) -> None:
        """Send one gRPC message (response headers first, once)."""
        if not stream.headers_sent:
            stream.headers_sent = True
            self.out.append(frame(HEADERS, END_HEADERS, stream.id, RESPONSE_HEADERS))
        size = len(payload)
        prefix = GRPC_PREFIX.pack(0, size)
        total = size + 5
        if (
            not stream.pending
            and total <= self.max_frame
            and total <= stream.send_window
            and total <= self.window
        ):
            stream.send_window -= total
            self.window -= total
            self.out.append(
                FRAME_HEADER.pack(total >> 8, total & 0xFF, DATA, 0, stream.id) + prefix + payload
            )
            return
        stream.pending.append(memoryview(prefix + payload))
        self.drain(stream)

    def drain(self, stream: Stream) -> None:
        """Send as much of `stream.pending` as the windows allow; then its trailers."""
        while stream.pending:
            allowed = min(stream.send_window, self.window, self.max_frame)
            if allowed <= 0:
                self.blocked[stream.id] = None
                return
            chunk = stream.pending[0]
            piece = chunk[:allowed]
            if len(piece) == len(chunk):
                stream.pending.popleft()
                stream.partial = False
            else:
                stream.pending[0] = chunk[allowed:]
                stream.partial = True  # a message is half sent: it must be finished
            stream.send_window -= len(piece)
            self.window -= len(piece)
            self.out.append(frame(DATA, 0, stream.id, bytes(piece)))
        self.blocked.pop(stream.id, None)
        if not stream.remote_closed:
            self._replenish(stream)
        if stream.trailers is not None:
            self.out.append(frame(HEADERS, END_STREAM | END_HEADERS, stream.id, stream.trailers))
            self._end(stream)

    def unblock(self, streams: Mapping[int, Stream]) -> None:
        """A window opened: drain the parked streams, oldest first, while it lasts."""
        for stream_id in list(self.blocked):
            stream = streams.get(stream_id)
            if stream is None:
                self.blocked.pop(stream_id, None)
                continue
            self.drain(stream)
            if self.window <= 0:
                break

    def window_update(self, stream: Stream | None, increment: int) -> None:
        """WINDOW_UPDATE for the connection (`stream` None) or a stream."""
        if stream is None:
            self.window += increment
        else:
            stream.send_window += increment

    def initial_window(self, value: int, streams: Mapping[int, Stream]) -> None:
        """SETTINGS_INITIAL_WINDOW_SIZE: every open stream's window moves by the change."""
        delta = value - self.stream_window
        self.stream_window = value
        for stream in streams.values():
            stream.send_window += delta

    def finish(self, stream: Stream, status: int, message: str = "") -> None:
        """End the call with trailers (after any DATA still waiting for window)."""
        if not stream.headers_sent:
            stream.headers_sent = True
            block = RESPONSE_HEADERS + status_block(status, message)
            self.out.append(frame(HEADERS, END_STREAM | END_HEADERS, stream.id, block))
            self._end(stream)
            return
        trailers = status_block(status, message)
        if stream.pending:
            stream.trailers = trailers
            return
        self.out.append(frame(HEADERS, END_STREAM | END_HEADERS, stream.id, trailers))
        self._end(stream)

    def fail(self, stream: Stream, status: int, message: str) -> None:
        """End the call with an error status. Unsent replies are dropped, except the rest of
        a half-sent one: the body must stay well framed for the client to read the status."""
        # No RST_STREAM after the trailers: grpcio's client may then report INTERNAL instead
        # of our status. Whatever the client still sends on the stream is dropped.
        head = stream.pending[0] if stream.partial else None
        stream.pending.clear()
        if head is not None:
            stream.pending.append(head)
        self.finish(stream, status, message)

    def trailers_only(self, stream_id: int, status: int, message: str) -> None:
        """Answer a call that never became a stream with headers that end it."""
        block = RESPONSE_HEADERS + status_block(status, message)
        self.out.append(frame(HEADERS, END_STREAM | END_HEADERS, stream_id, block))

    def goaway(self, last_stream: int, code: int, reason: str = "") -> None:
        payload = U32.pack(last_stream) + U32.pack(code) + reason.encode()[:256]
        self.out.append(frame(GOAWAY, 0, 0, payload))
