"""A purpose-built gRPC-over-HTTP/2 server for the ext_proc hot path, on asyncio.

Why not grpcio: with grpc.aio every message crosses grpc's completion-queue thread, the event
loop and a coroutine step, and that machinery, not the picker's logic, was most of the CPU per
request (docs/performance.md; a constant-reply grpc.aio server was barely faster than the
picker). grpclib (pure Python over the `h2` state machine) measured the same. Envoy is our only
client, every call is one bidirectional stream of small protobuf messages, and the picker's
per-message work is synchronous (`Exchange.handle`), so this server does the whole job inside
one read callback: parse frames, run the handler, write every reply of the batch with one
`transport.write`. No thread hop, no coroutine per message.

What it implements (RFC 9113 and the gRPC HTTP/2 protocol, server side):
- connection preface, SETTINGS (with ACK), PING (ACK), GOAWAY both ways, RST_STREAM,
  WINDOW_UPDATE, PRIORITY (ignored), unknown frame types (ignored), padding, CONTINUATION;
- HPACK decoding with the well-kept `hpack` library (one decoder per connection, fed every
  header block that may change its dynamic table, so that it stays in step with the client;
  a block that cannot is decoded once and its `:path` remembered); our own header blocks are
  constant and encoded as literals without indexing, so they need no encoder state;
- flow control in both directions: generous receive windows replenished at half use; sends
  respect the client's connection and stream windows and the client's maximum frame size, and
  wait for WINDOW_UPDATE when a window is exhausted;
- gRPC length-prefixed messages split across or packed into DATA frames, uncompressed only
  (we advertise no `grpc-accept-encoding`), a per-message size limit, trailers with
  `grpc-status`/`grpc-message`, trailers-only error responses;
- graceful stop: GOAWAY, open streams finish until a deadline, then connections close.
- abuse limits: 4,096 concurrent streams (more are refused), header blocks of at most 64 KiB
  in 64 CONTINUATION frames, and a budget of client resets of streams that never got a
  message (`ResetBudget`: "rapid reset" floods get GOAWAY ENHANCE_YOUR_CALM).

Handlers are `SessionFactory` callables per method path; a `StreamSession` receives each
request message as bytes and returns the serialised replies (`extproc.server.grpc_call`).

Here: `GrpcServer` (listening, connections, graceful stop). One connection's inbound half
(frames, HPACK, calls, receive windows) is `extproc.server.h2conn.Connection`, its outbound
half (replies within the client's windows) `extproc.server.h2send.Sender`; wire constants and
encodings are in `extproc.server.h2wire`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping

from extproc.logs import get_logger
from extproc.server.grpc_call import (
    ServerLimits,
    SessionFactory,
)
from extproc.server.h2conn import Connection

log = get_logger(__name__)

READ_BUFFER = 256 * 1024  # one per server, shared by its connections (see Connection)


class GrpcServer:
    """Serves `routes` ({"/package.Service/Method": SessionFactory}) on one TCP port."""

    def __init__(
        self,
        routes: Mapping[str, SessionFactory],
        *,
        limits: ServerLimits | None = None,
        ssl_context: ssl.SSLContext | None = None,
        on_connection_error: Callable[[str], None] | None = None,
    ) -> None:
        self.routes = dict(routes)
        # Told the error's name (PROTOCOL_ERROR, ...) when a connection is closed on an error.
        self.on_connection_error = on_connection_error
        self.limits = limits or ServerLimits()
        self._ssl = ssl_context
        self.connections: set[Connection] = set()
        self.open_streams = 0
        # Streams the client reset while open: after a request message (a call under way)
        # and before any (what the reset budget counts).
        self.resets_under_way = 0
        self.resets_before_message = 0
        self.read_buffer = memoryview(bytearray(READ_BUFFER))  # see Connection
        self.stopping = False
        self._server: asyncio.Server | None = None
        self._idle = asyncio.Event()

    async def start(self, host: str, port: int) -> int:
        """Listen; return the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self), host, port, ssl=self._ssl, reuse_address=True
        )
        return int(self._server.sockets[0].getsockname()[1])

    def stream_ended(self) -> None:
        if self.stopping and self.open_streams == 0:
            self._idle.set()

    async def stop(self, grace: float) -> None:
        """Refuse new connections and streams; give open streams `grace` seconds to finish."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.start_going_away()
        if self.open_streams:
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                log.warning("drain_deadline_passed", open_streams=self.open_streams)
        for connection in list(self.connections):
            connection.cancel_all()
        if self._server is not None:
            await self._server.wait_closed()
