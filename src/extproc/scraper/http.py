"""A minimal keep-alive HTTP/1.1 GET client on `asyncio.Protocol`, for scraping /metrics pages.

One persistent connection per ``host:port``; one request at a time on it (no pipelining). The
response is framed by Content-Length, chunked transfer-encoding, or the connection closing.
Everything else (redirects, compression, TLS, proxies) is out of scope: a model server's
metrics endpoint answers a plain GET on the pod network. Failures raise `FetchError`
subclasses and drop the connection; the next call reconnects.
"""

from __future__ import annotations

import asyncio
from typing import Final
from urllib.parse import urlsplit

from extproc.scraper.errors import (
    FetchConnectionError,
    FetchError,
    FetchProtocolError,
    FetchStatusError,
    FetchTimeout,
    FetchTooLarge,
)
from extproc.scraper.fetch import Completion
from extproc.scraper.ticker import Ticker

DEFAULT_MAX_BODY = 8 * 1024 * 1024
MAX_HEAD = 64 * 1024  # status line plus headers
READ_BUFFER = 256 * 1024
_CRLF: Final = b"\r\n"
_HEAD_END: Final = b"\r\n\r\n"


class _Response:
    """Incremental parser of one response; `feed` returns True once it is complete."""

    __slots__ = ("_chunk_left", "_chunks", "_length", "_max_body", "_size", "body", "mode",
                 "status")  # fmt: skip

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self.status = 0
        self.mode = ""  # "" (head pending), "length", "chunked" or "close"
        self._length = 0
        self._chunk_left = -1  # chunked: bytes left in the current chunk, -1 = read a size line
        self._chunks: list[bytes] = []
        self._size = 0
        self.body = b""

    def head(self, buf: bytearray) -> bool:
        """Parse status line and headers out of `buf` (consumed); False if incomplete."""
        while True:
            end = buf.find(_HEAD_END)
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise FetchProtocolError("response head larger than 64 KiB")
                return False
            lines = bytes(buf[:end]).split(_CRLF)
            del buf[: end + 4]
            status_line = lines[0].split(None, 2)
            if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
                raise FetchProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
            try:
                self.status = int(status_line[1])
            except ValueError:
                raise FetchProtocolError(f"bad status code: {status_line[1][:20]!r}") from None
            if 100 <= self.status < 200:
                continue  # an interim response (100 Continue): the real one follows
            break
        length: bytes | None = None
        chunked = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise FetchProtocolError(f"malformed header line: {line[:80]!r}")
            key = name.strip().lower()
            if key == b"content-length":
                length = value.strip()
            elif key == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
        if chunked:
            self.mode = "chunked"
        elif self.status in (204, 304):
            self.mode, self._length = "length", 0
        elif length is not None:
            if not length.isdigit():
                raise FetchProtocolError(f"bad Content-Length: {length[:20]!r}")
            self._length = int(length)
            if self._length > self._max_body:
                raise FetchTooLarge(f"body of {self._length} bytes over the {self._max_body} cap")
            self.mode = "length"
        else:
            self.mode = "close"
        return True

    def feed(self, buf: bytearray) -> bool:
        """Consume body bytes from `buf`; True when the body is complete."""
        if self.mode == "length":
            if len(buf) < self._length:
                return False
            self.body = bytes(buf[: self._length]) if len(buf) > self._length else bytes(buf)
            del buf[: self._length]
            return True
        if self.mode == "close":
            self._add(bytes(buf))
            buf.clear()
            return False
        return self._feed_chunked(buf)

    def _feed_chunked(self, buf: bytearray) -> bool:
        while True:
            if self._chunk_left < 0:
                end = buf.find(_CRLF)
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise FetchProtocolError("chunk size line too long")
                    return False
                size_text = bytes(buf[:end]).split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise FetchProtocolError(f"bad chunk size: {size_text[:20]!r}") from None
                if size == 0:
                    # Last chunk, then optional trailers and an empty line.
                    if buf.startswith(_CRLF, end + 2):
                        del buf[: end + 4]
                    elif (trailer_end := buf.find(_HEAD_END, end)) >= 0:
                        del buf[: trailer_end + 4]
                    else:
                        return False
                    self.body = b"".join(self._chunks)
                    return True
                del buf[: end + 2]
                self._chunk_left = size
            if len(buf) < self._chunk_left + 2:
                return False
            if buf[self._chunk_left : self._chunk_left + 2] != _CRLF:
                raise FetchProtocolError("chunk not followed by CRLF")
            self._add(bytes(buf[: self._chunk_left]))
            del buf[: self._chunk_left + 2]
            self._chunk_left = -1

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._max_body:
            raise FetchTooLarge(f"body over the {self._max_body} bytes cap")
        self._chunks.append(data)

    def at_eof(self) -> bytes | None:
        """The body if the connection closing completes it (close-delimited), else None."""
        return b"".join(self._chunks) if self.mode == "close" else None


class _Connection(asyncio.BufferedProtocol):
    """One keep-alive connection; `request` sends a GET and resolves with the 200 body.

    A BufferedProtocol reading into a buffer shared by all connections: asyncio's plain
    Protocol reads with `recv(256 KiB)`, which glibc serves with mmap + mremap + munmap and
    fresh page faults on every read (the scraper's system time doubled with it).
    """

    def __init__(self, max_body: int, read_buffer: memoryview, ticker: Ticker) -> None:
        self._read_buffer = read_buffer
        self._loop = asyncio.get_running_loop()
        self._ticker = ticker
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._response: _Response | None = None
        self._on_done: Completion | None = None
        self._request = 0  # numbers requests: a timeout for an earlier one is ignored
        self.closed = False
        self.busy = False
        self.used = False  # a response was read on it: a close before the next one is a race
        self.received = False  # bytes of the current response arrived

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        self.received = True
        if self._response is None:  # bytes nobody asked for: framing is lost
            self._fail(FetchProtocolError("unsolicited data on an idle connection"))
            return
        buf = self._buf
        buf += data
        try:
            response = self._response
            if not response.mode and not response.head(buf):
                return
            if response.feed(buf):
                if buf:
                    raise FetchProtocolError("extra bytes after the response")
                self._finish(response)
        except FetchError as exc:
            self._fail(exc)

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self._response
        body = response.at_eof() if response is not None and response.mode else None
        if body is not None and response is not None and exc is None:
            response.body = body
            self._finish(response, keep=False)
            return
        detail = f": {exc}" if exc is not None else ""
        self._fail(FetchConnectionError(f"connection closed before a complete response{detail}"))

    # --- requests -----------------------------------------------------------------------------
    def request(self, payload: bytes, deadline: float) -> asyncio.Future[bytes]:
        """Send a GET; the future resolves with the 200 body or a FetchError."""
        waiter: asyncio.Future[bytes] = self._loop.create_future()

        def settle(body: bytes | None, error: FetchError | None) -> None:
            if waiter.done():
                return
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(body or b"")

        self.start(payload, deadline, settle)
        return waiter

    def start(self, payload: bytes, deadline: float, on_done: Completion) -> None:
        """Send a GET; `on_done(body, None)` or `on_done(None, error)` is called exactly once."""
        assert self._transport is not None and not self.busy
        self.busy, self.received = True, False
        self._response = _Response(self._max_body)
        self._on_done = on_done
        self._request += 1
        self._ticker.call_at(deadline, self._on_timeout, self._request)
        self._transport.write(payload)

    def _on_timeout(self, request: int) -> None:
        if request == self._request and self.busy:
            self._fail(FetchTimeout("no complete response within the timeout"))

    def _finish(self, response: _Response, *, keep: bool = True) -> None:
        on_done = self._on_done
        self._done()
        if not keep:
            self.close()
        if on_done is not None:
            if response.status == 200:
                on_done(response.body, None)
            else:
                on_done(None, FetchStatusError(response.status))

    def _fail(self, exc: FetchError) -> None:
        on_done = self._on_done
        self._done()
        self.close()
        if on_done is not None:
            on_done(None, exc)

    def _done(self) -> None:
        self._on_done = None
        self._response = None
        self.busy = False
        self.used = True

    def close(self) -> None:
        self.closed = True
        self._buf.clear()
        if self._transport is not None:
            self._transport.abort()  # never reuse a connection whose framing is unknown


class HttpFetcher:
    """`Fetcher` over persistent HTTP/1.1 connections, one per ``host:port``.

    Each call is bounded by `timeout` (connect included). A non-200 status raises
    `FetchStatusError` and keeps the connection; every other failure drops it. A request on a
    reused connection that the server closed before any response byte is retried once on a
    new connection (an idle keep-alive connection may be closed at any moment).
    """

    def __init__(
        self, timeout: float, *, max_body: int = DEFAULT_MAX_BODY, ticker: Ticker | None = None
    ) -> None:
        self._timeout = timeout
        self._own_ticker = ticker is None
        self._ticker = ticker or Ticker()  # request timeouts: see extproc.scraper.ticker
        self._max_body = max_body
        self._connections: dict[tuple[str, int], _Connection] = {}
        self._targets: dict[str, tuple[str, int, bytes]] = {}
        self._retries: set[asyncio.Task[bytes]] = set()  # start_fetch's retries, referenced
        self._read_buffer = memoryview(bytearray(READ_BUFFER))  # shared: see _Connection

    def _target(self, url: str) -> tuple[str, int, bytes]:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname:
                raise FetchError(f"unsupported URL {url!r} (only http://host[:port]/path)")
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            payload = (
                f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/plain\r\n"
                "Accept-Encoding: identity\r\n\r\n"
            ).encode("latin-1")
            target = self._targets[url] = (parts.hostname, parts.port or 80, payload)
        return target

    async def fetch(self, url: str) -> bytes:
        host, port, payload = self._target(url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        key = (host, port)
        conn = self._connections.get(key)
        shared = True
        if conn is None or conn.closed:
            conn = self._connections[key] = await self._connect(host, port, deadline)
        elif conn.busy:  # a concurrent call for the same endpoint: use a one-off connection
            conn, shared = await self._connect(host, port, deadline), False
        try:
            reused = conn.used
            try:
                return await conn.request(payload, deadline)
            except FetchConnectionError:
                if not (reused and shared and not conn.received):
                    raise
            # The server closed the idle connection as we reused it: once more, on a new one.
            conn = self._connections[key] = await self._connect(host, port, deadline)
            return await conn.request(payload, deadline)
        except asyncio.CancelledError:
            conn.close()  # a response may still arrive: its framing would be lost
            raise
        finally:
            if not shared:
                conn.close()

    def start_fetch(self, url: str, on_done: Completion) -> bool:
        """Start fetching `url` on an idle kept-alive connection without a task or future:
        `on_done(body, None)` or `on_done(None, error)` follows. False when there is no idle
        connection (then use `fetch`). A reused connection the server had just closed is
        retried once through `fetch`, as there."""
        host, port, payload = self._target(url)
        conn = self._connections.get((host, port))
        if conn is None or conn.closed or conn.busy:
            return False
        loop = conn._loop
        reused = conn.used

        def done(body: bytes | None, error: FetchError | None) -> None:
            if (
                isinstance(error, FetchConnectionError) and reused and not conn.received
            ):  # the idle connection was closed under us: once more, on a new one
                task = loop.create_task(self.fetch(url))
                self._retries.add(task)
                task.add_done_callback(lambda t: self._deliver(t, on_done))
                return
            on_done(body, error)

        conn.start(payload, loop.time() + self._timeout, done)
        return True

    def _deliver(self, task: asyncio.Task[bytes], on_done: Completion) -> None:
        self._retries.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            on_done(task.result(), None)
        elif isinstance(error, FetchError):
            on_done(None, error)
        else:
            on_done(None, FetchError(repr(error)))

    async def _connect(self, host: str, port: int, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._max_body, self._read_buffer, self._ticker), host, port
                )
        except TimeoutError as exc:
            raise FetchTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise FetchConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
        return conn

    def forget(self, url: str) -> None:
        """Close the kept-alive connection to `url`'s host (its endpoint left the pool)."""
        target = self._targets.pop(url, None)
        if target is not None:
            conn = self._connections.pop((target[0], target[1]), None)
            if conn is not None:
                conn.close()

    async def close(self) -> None:
        for task in self._retries:
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()
        if self._own_ticker:
            self._ticker.close()
