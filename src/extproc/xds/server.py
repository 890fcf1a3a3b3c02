"""The ADS gRPC service (`StreamAggregatedResources`, state of the world) over grpc.aio.

Messages cross gRPC as bytes (generic handler, no generated stubs) and are parsed into the
typed `envoy_data_plane` messages; this is the control path, not the per-request path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest

from extproc.logs import get_logger
from extproc.xds.cache import ResourceCache
from extproc.xds.metrics import StreamCounts
from extproc.xds.stream import AdsStream

log = get_logger(__name__)
SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
METHOD = "StreamAggregatedResources"
_END = object()


class AdsServicer:
    """Runs one `AdsStream` per Envoy connection; cache changes are pushed to every stream."""

    def __init__(self, cache: ResourceCache) -> None:
        self._cache = cache
        self.open_streams = 0
        self.counts = StreamCounts()

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        async def behaviour(requests: AsyncIterator[bytes], context: Any) -> None:
            await self.stream(requests, context.write, peer=str(context.peer()))

        method = grpc.stream_stream_rpc_method_handler(behaviour)
        return grpc.method_handlers_generic_handler(SERVICE, {METHOD: method})

    async def stream(
        self,
        requests: AsyncIterator[bytes],
        send: Callable[[bytes], Awaitable[None]],
        peer: str = "",
    ) -> None:
        """Serve one stream until the client closes it (or sends something unparseable)."""
        state = AdsStream(self._cache, peer, self.counts)
        events: asyncio.Queue[object] = asyncio.Queue()

        def changed(type_urls: list[str]) -> None:
            events.put_nowait(type_urls)

        async def read() -> None:
            try:
                async for raw in requests:
                    events.put_nowait(DiscoveryRequest.parse(raw))
            except Exception as exc:  # a malformed message or a broken stream ends the stream
                log.warning("stream_read_failed", peer=peer, error=repr(exc))
            finally:
                events.put_nowait(_END)

        self._cache.subscribe(changed)
        self.open_streams += 1
        reader = asyncio.create_task(read())
        try:
            while (item := await events.get()) is not _END:
                if isinstance(item, DiscoveryRequest):
                    responses = state.on_request(item)
                else:
                    responses = state.on_change(item)  # type: ignore[arg-type]
                for response in responses:
                    await send(bytes(response))
        finally:
            self.open_streams -= 1
            self._cache.unsubscribe(changed)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            log.info("stream_closed", node=state.node_id, peer=peer)
