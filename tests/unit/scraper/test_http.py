"""HttpFetcher against real servers on free loopback ports: aiohttp, and raw asyncio for bad peers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from extproc.scraper.errors import (
    FetchConnectionError,
    FetchProtocolError,
    FetchStatusError,
    FetchTimeout,
    FetchTooLarge,
)
from extproc.scraper.http import HttpFetcher

PAGE = b"vllm:num_requests_waiting 4.0\n" * 200


@dataclass
class Server:
    port: int
    peers: set[object] = field(default_factory=set)
    hits: int = 0


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(0)

    async def length(request: web.Request) -> web.Response:
        state.hits += 1
        assert request.transport is not None
        state.peers.add(request.transport.get_extra_info("peername"))
        return web.Response(body=PAGE, content_type="text/plain")

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(0, len(PAGE), 1000):
            await response.write(PAGE[i : i + 1000])
        await response.write_eof()
        return response

    async def status(_: web.Request) -> web.Response:
        return web.Response(status=503, text="busy")

    async def close(request: web.Request) -> web.Response:
        response = web.Response(body=PAGE)
        response.force_close()
        return response

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(body=PAGE)

    async def big(_: web.Request) -> web.Response:
        return web.Response(body=b"x" * 4096)

    app = web.Application()
    for path, handler in [("/metrics", length), ("/chunked", chunked), ("/status", status),
                          ("/close", close), ("/slow", slow), ("/big", big)]:  # fmt: skip
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield state
    await runner.cleanup()


async def test_content_length_and_keep_alive_reuse(server: Server) -> None:
    fetcher = HttpFetcher(1.0)
    try:
        for _ in range(5):
            assert await fetcher.fetch(f"http://127.0.0.1:{server.port}/metrics") == PAGE
    finally:
        await fetcher.close()
    assert server.hits == 5
    assert len(server.peers) == 1  # one connection served every call


async def test_chunked_body(server: Server) -> None:
    fetcher = HttpFetcher(1.0)
    try:
        for _ in range(2):
            assert await fetcher.fetch(f"http://127.0.0.1:{server.port}/chunked") == PAGE
    finally:
        await fetcher.close()


async def test_non_200_raises_status_and_keeps_working(server: Server) -> None:
    fetcher = HttpFetcher(1.0)
    try:
        with pytest.raises(FetchStatusError) as info:
            await fetcher.fetch(f"http://127.0.0.1:{server.port}/status")
        assert info.value.status == 503
        assert await fetcher.fetch(f"http://127.0.0.1:{server.port}/metrics") == PAGE
    finally:
        await fetcher.close()


async def test_server_closing_the_connection_reconnects(server: Server) -> None:
    fetcher = HttpFetcher(1.0)
    try:
        for _ in range(3):
            assert await fetcher.fetch(f"http://127.0.0.1:{server.port}/close") == PAGE
            assert await fetcher.fetch(f"http://127.0.0.1:{server.port}/metrics") == PAGE
    finally:
        await fetcher.close()


async def test_timeout(server: Server) -> None:
    fetcher = HttpFetcher(0.1)
    try:
        with pytest.raises(FetchTimeout):
            await fetcher.fetch(f"http://127.0.0.1:{server.port}/slow")
        assert await fetcher.fetch(f"http://127.0.0.1:{server.port}/metrics") == PAGE
    finally:
        await fetcher.close()


async def test_oversized_body(server: Server) -> None:
    fetcher = HttpFetcher(1.0, max_body=1024)
    try:
        with pytest.raises(FetchTooLarge):
            await fetcher.fetch(f"http://127.0.0.1:{server.port}/big")
    finally:
        await fetcher.close()


async def test_connection_refused() -> None:
    fetcher = HttpFetcher(1.0)
    with pytest.raises(FetchConnectionError):
        await fetcher.fetch("http://127.0.0.1:1/metrics")


# --- raw peers: what aiohttp would never send -------------------------------------------------
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _raw(handler: Handler) -> tuple[asyncio.Server, int]:
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


def _replying(*replies: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for reply in replies:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
        writer.close()

    return handle


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        pytest.param(b"garbage garbage\r\n\r\n", FetchProtocolError, id="not-http"),
        pytest.param(b"HTTP/1.1 abc OK\r\n\r\n", FetchProtocolError, id="bad-status"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", FetchProtocolError,
                     id="bad-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                     FetchProtocolError, id="bad-chunk"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", FetchConnectionError,
                     id="truncated"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef", FetchProtocolError,
                     id="extra-bytes"),
    ],
)  # fmt: skip
async def test_garbage_responses(reply: bytes, error: type[Exception]) -> None:
    srv, port = await _raw(_replying(reply))
    fetcher = HttpFetcher(1.0)
    try:
        with pytest.raises(error):
            await fetcher.fetch(f"http://127.0.0.1:{port}/metrics")
    finally:
        await fetcher.close()
        srv.close()


async def test_close_delimited_body_and_interim_response() -> None:
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nX: y\r\n\r\nhello"
    srv, port = await _raw(_replying(reply))
    fetcher = HttpFetcher(1.0)
    try:
        assert await fetcher.fetch(f"http://127.0.0.1:{port}/metrics") == b"hello"
    finally:
        await fetcher.close()
        srv.close()


async def test_chunked_with_trailers_split_across_reads() -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\nT: 1\r\n\r\n"
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for i in range(len(reply)):  # one byte per write: every parser state sees a split
            writer.write(reply[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0)
        await reader.read()

    srv, port = await _raw(handle)
    fetcher = HttpFetcher(1.0)
    try:
        assert await fetcher.fetch(f"http://127.0.0.1:{port}/metrics") == b"abc"
    finally:
        await fetcher.close()
        srv.close()


async def test_idle_connection_closed_by_server_is_retried() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    srv, port = await _raw(_replying(ok))  # answers once, then closes
    fetcher = HttpFetcher(1.0)
    try:
        assert await fetcher.fetch(f"http://127.0.0.1:{port}/metrics") == b"ok"
        assert await fetcher.fetch(f"http://127.0.0.1:{port}/metrics") == b"ok"
    finally:
        await fetcher.close()
        srv.close()
