"""The ExternalProcessor gRPC service: moves messages between Envoy and an Exchange.

Two transports carry it: the built-in HTTP/2 server (`h2.py`, the default: `session()` per
stream) and grpcio's grpc.aio (`handler()`, selected with `--grpc-server grpcio`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from extproc._proto.envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from extproc.server.exchange import Exchange
from extproc.server.grpc_call import UNAVAILABLE, GrpcError, decode

SERVICE_NAME = "envoy.service.ext_proc.v3.ExternalProcessor"
PROCESS_PATH = f"/{SERVICE_NAME}/Process"
_STANDBY = "standby replica: not the leader"
_EOF = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs


class ExternalProcessor:
    """One Exchange per stream; counts open streams so shutdown can drain them.

    `serving` (when given) is asked once per new stream: a standby replica (leader election)
    answers UNAVAILABLE instead of routing with a view of the pool nobody guarantees; streams
    already open when leadership is lost finish.
    """

    def __init__(
        self, new_exchange: Callable[[], Exchange], serving: Callable[[], bool] | None = None
    ) -> None:
        self._new_exchange = new_exchange
        self._serving = serving
        self.open_streams = 0

    async def process(
        self,
        requests: AsyncIterator[pb.ProcessingRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        # context.read()/write() skip the async-iterator layers grpc.aio wraps around a
        # generator handler: measurably less CPU per message on the hot path.
        if self._serving is not None and not self._serving():
            await context.abort(grpc.StatusCode.UNAVAILABLE, _STANDBY)
        exchange = self._new_exchange()
        self.open_streams += 1
        try:
            while (message := await context.read()) is not _EOF:
                for reply in exchange.handle(message):
                    await context.write(reply.SerializeToString())
        finally:
            exchange.close()
            self.open_streams -= 1

    def session(self) -> ExchangeSession:
        """A new stream on the built-in HTTP/2 server."""
        if self._serving is not None and not self._serving():
            raise GrpcError(UNAVAILABLE, _STANDBY)
        exchange = self._new_exchange()
        self.open_streams += 1
        return ExchangeSession(self, exchange)

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        # Replies are serialised in `process` (constant ones could be cached as bytes), so the
        # response serializer is the identity.
        method = grpc.stream_stream_rpc_method_handler(
            self.process,
            request_deserializer=pb.ProcessingRequest.FromString,
            response_serializer=_identity,
        )
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {"Process": method})


class ExchangeSession:
    """One ext_proc stream on the built-in server: bytes in, serialised replies out."""

    __slots__ = ("_exchange", "_processor")

    def __init__(self, processor: ExternalProcessor, exchange: Exchange) -> None:
        self._processor = processor
        self._exchange = exchange

    def on_message(self, data: bytes) -> list[bytes]:
        message = decode(pb.ProcessingRequest, data)
        return [reply.SerializeToString() for reply in self._exchange.handle(message)]

    def on_close(self) -> None:
        self._exchange.close()
        self._processor.open_streams -= 1


def _identity(data: bytes) -> bytes:
    return data
