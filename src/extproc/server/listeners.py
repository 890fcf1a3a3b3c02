"""The ext_proc port: the built-in HTTP/2 server (default) or grpcio's grpc.aio server.

Both serve the ExternalProcessor service and gRPC health `Check` on one port, with or without
TLS; `PickerApp` picks one with `--grpc-server` and treats them alike (`start`, `stop`).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from extproc.endpoints import host_port
from extproc.metrics import PickerMetrics
from extproc.server.grpc_call import ServerLimits
from extproc.server.h2 import GrpcServer
from extproc.server.health import CHECK_PATH, HealthCheckSession
from extproc.server.service import PROCESS_PATH, ExternalProcessor
from extproc.tls import CertificateFiles

BUILTIN, GRPCIO = "builtin", "grpcio"
GRPC_SERVERS = (BUILTIN, GRPCIO)
MAX_GRPC_MESSAGE_BYTES = 64 * 1024 * 1024


class ExtProcListener(Protocol):
    async def start(self) -> int:
        """Listen; return the bound port."""

    async def stop(self, grace: float) -> None:
        """Refuse new streams; open ones get `grace` seconds, then are cancelled."""


def grpcio_options() -> list[tuple[str, int]]:
    return [
        # grpcio binds with SO_REUSEPORT by default: a stale server would silently share the port.
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_BYTES),
    ]


class BuiltinListener:
    """The built-in server (`server/h2.py`); with TLS, watches the certificate files."""

    def __init__(
        self,
        processor: ExternalProcessor,
        health_status: Callable[[str], int | None],
        address: tuple[str, int],
        tls: tuple[ssl.SSLContext, CertificateFiles | None] | None = None,
        metrics: PickerMetrics | None = None,
    ) -> None:
        self._address = address
        self._tls = tls
        errors = metrics.grpc_connection_errors if metrics is not None else None
        self._server = server = GrpcServer(
            {
                PROCESS_PATH: processor.session,
                CHECK_PATH: lambda: HealthCheckSession(health_status),
            },
            limits=ServerLimits(max_message_bytes=MAX_GRPC_MESSAGE_BYTES),
            ssl_context=tls[0] if tls else None,
            on_connection_error=(lambda code: errors.labels(code).inc()) if errors else None,
        )
        if metrics is not None:
            metrics.grpc_connections.set_function(lambda: len(server.connections))
            metrics.grpc_open_streams.set_function(lambda: server.open_streams)
            metrics.watch_grpc_resets(
                lambda: {
                    "under_way": server.resets_under_way,
                    "before_message": server.resets_before_message,
                }
            )
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> int:
        port = await self._server.start(*self._address)
        context, files = self._tls or (None, None)
        if context is not None and files is not None:
            self._watch = asyncio.create_task(files.watch(context), name="certificate-watch")
        return port

    async def stop(self, grace: float) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        await self._server.stop(grace)


class GrpcioListener:
    """grpc.aio with the generic ExternalProcessor handler and grpcio's health servicer."""

    def __init__(
        self,
        processor: ExternalProcessor,
        health: HealthServicer,
        address: tuple[str, int],
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self._server = grpc.aio.server(options=grpcio_options())
        self._server.add_generic_rpc_handlers((processor.handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(health, self._server)
        self._address = host_port(*address)
        self._credentials = credentials

    async def start(self) -> int:
        if self._credentials is not None:
            port = self._server.add_secure_port(self._address, self._credentials)
        else:
            port = self._server.add_insecure_port(self._address)
        await self._server.start()
        return port

    async def stop(self, grace: float) -> None:
        await self._server.stop(grace)
