"""A gRPC server interceptor that refuses ext_proc streams while this replica may not serve.

Used with leader election: a standby answers every new `Process` stream with UNAVAILABLE
(Envoy retries or fails over per its ext_proc cluster settings) instead of routing with a
view of the pool that nobody guarantees. Streams already open when leadership is lost finish.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from extproc.server.service import SERVICE_NAME

PROCESS_METHOD = f"/{SERVICE_NAME}/Process"

if TYPE_CHECKING:  # generic in the stubs only
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor


class StandbyGate(_Interceptor):
    def __init__(self, serving: Callable[[], bool]) -> None:
        self._serving = serving
        self._refuse = grpc.stream_stream_rpc_method_handler(_unavailable)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if handler_call_details.method == PROCESS_METHOD and not self._serving():
            return self._refuse
        return await continuation(handler_call_details)


async def _unavailable(
    _requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    await context.abort(grpc.StatusCode.UNAVAILABLE, "standby replica: not the leader")
    yield b""  # unreachable; makes this an async generator like the real handler
