"""A recording OpenAI-shaped upstream for tests that must see exactly what reached the pod."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from extproc.endpoints import Endpoint

USAGE = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
# An SSE stream whose usage event is split across writes and shares a write with [DONE].
SSE_PARTS = [
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n',
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"b"}}]}\n\ndata: {"id":"c1","object":"chat.co',
    b'mpletion.chunk","choices":[],"usage":'
    + json.dumps(USAGE).encode()
    + b"}\n\ndata: [DONE]\n\n",
]


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingUpstream:
    endpoint: Endpoint
    requests: list[Recorded] = field(default_factory=list)


_UPSTREAM = web.AppKey("upstream", RecordingUpstream)


async def _handle(request: web.Request) -> web.StreamResponse:
    upstream = request.app[_UPSTREAM]
    body = await request.read()
    upstream.requests.append(Recorded(request.path, dict(request.headers), body))
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    name = upstream.endpoint.name
    pod_headers = {"x-inference-pod": name, "x-inference-pod-address": upstream.endpoint.address}
    if data.get("stream"):
        response = web.StreamResponse(headers={**pod_headers, "content-type": "text/event-stream"})
        await response.prepare(request)
        for part in SSE_PARTS:
            await response.write(part)
            await asyncio.sleep(0.02)
        await response.write_eof()
        return response
    return web.json_response(
        {
            "object": "chat.completion",
            "model": data.get("model"),
            "received_bytes": len(body),
            "received_sha256": hashlib.sha256(body).hexdigest(),
            "usage": USAGE,
        },
        headers=pod_headers,
    )


@contextmanager
def recording_upstream(name: str = "recorder") -> Iterator[RecordingUpstream]:
    """Run the upstream on a free loopback port in a background thread."""
    ready = threading.Event()
    holder: dict[str, object] = {}
    loop = asyncio.new_event_loop()

    async def start() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app[_UPSTREAM] = RecordingUpstream(Endpoint(name, "127.0.0.1", 0))
        app.router.add_route("*", "/{tail:.*}", _handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        upstream = app[_UPSTREAM]
        upstream.endpoint = Endpoint(name, "127.0.0.1", port)
        holder.update(runner=runner, upstream=upstream)
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield holder["upstream"]  # type: ignore[misc]
    finally:
        runner: web.AppRunner = holder["runner"]  # type: ignore[assignment]
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
