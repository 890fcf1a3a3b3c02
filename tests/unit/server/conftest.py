"""Fixtures of the server tests: a built-in HTTP/2 gRPC server on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from grpc_health.v1 import health_pb2

from extproc.server.grpc_call import ServerLimits
from extproc.server.h2 import GrpcServer
from extproc.server.health import CHECK_PATH, HealthCheckSession
from tests.unit.server.h2_helpers import ECHO, REFUSE, Recorder, refuse


@pytest.fixture
async def served() -> AsyncIterator[tuple[GrpcServer, Recorder, int]]:
    recorder = Recorder()
    statuses = {"": health_pb2.HealthCheckResponse.SERVING}
    server = GrpcServer(
        {
            ECHO: recorder.session,
            REFUSE: refuse,
            CHECK_PATH: lambda: HealthCheckSession(statuses.get),
        },
        limits=ServerLimits(max_message_bytes=4 * 1024 * 1024),
    )
    port = await server.start("127.0.0.1", 0)
    yield server, recorder, port
    await server.stop(0)
