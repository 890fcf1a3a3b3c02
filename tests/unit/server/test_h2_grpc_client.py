"""The built-in HTTP/2 gRPC server against grpcio's client on loopback.

grpcio's C-core client checks the protocol strictly (framing, trailers, flow control, status
and cancellation); `test_h2_frames.py` drives the corner cases it never produces.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc.server.h2 import (
    GrpcServer,
)
from tests.unit.server.h2_helpers import ECHO, REFUSE, Recorder, chat

pytestmark = pytest.mark.timeout(30)


async def test_bidirectional_stream_round_trips_in_order(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    server, recorder, port = served
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = chat(channel)()
        for text in (b"abc", b"", b"many", b"xyz"):
            await call.write(text)
        await call.done_writing()
        replies = [reply async for reply in call]
        assert replies == [b"cba", b"", b"1", b"2", b"3", b"zyx"]
        assert await call.code() == grpc.StatusCode.OK
    await asyncio.wait_for(recorder.closed_event.wait(), 5)
    assert (recorder.opened, recorder.closed, server.open_streams) == (1, 1, 0)


async def test_many_concurrent_streams_share_one_connection(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    _, recorder, port = served
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:

        async def one(n: int) -> list[bytes]:
            call = chat(channel)()
            await call.write(str(n).encode() * 3)
            await call.done_writing()
            return [reply async for reply in call]

        results = await asyncio.gather(*(one(n) for n in range(50)))
    assert results == [[(str(n).encode() * 3)[::-1]] for n in range(50)]
    assert recorder.closed == 50


async def test_large_messages_respect_the_clients_flow_control(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    # 3 MB each way: far beyond the client's initial 64 KB windows and 16 KB frames.
    _, _, port = served
    payload = bytes(range(256)) * (3 * 4096)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = chat(channel)()
        await call.write(payload)
        await call.write(b"tail")
        await call.done_writing()
        replies = [reply async for reply in call]
    assert replies == [payload[::-1], b"liat"]


async def test_errors_become_grpc_statuses_and_the_connection_survives(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    _, recorder, port = served
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        unknown = chat(channel, "/test.Echo/Nope")()
        await unknown.done_writing()
        assert await unknown.code() == grpc.StatusCode.UNIMPLEMENTED

        # A refusal waits for the client's first message: grpcio's client would report its own
        # INTERNAL error if the call ended before its write (a race every time without it).
        for _ in range(10):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                _ = [r async for r in chat(channel, REFUSE)(iter([b"hello"]))]
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert refused.value.details() == "standby replica: not the leader"

        failing = chat(channel)()
        await failing.write(b"boom")
        assert await failing.code() == grpc.StatusCode.INTERNAL

        too_big = chat(channel)()
        await too_big.write(b"x" * (5 * 1024 * 1024))
        assert await too_big.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        after = chat(channel)()
        await after.write(b"ok")
        await after.done_writing()
        assert [r async for r in after] == [b"ko"]
    assert recorder.closed == recorder.opened == 3


async def test_a_cancelled_call_closes_its_session(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    server, recorder, port = served
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = chat(channel)()
        await call.write(b"one")
        assert await call.read() == b"eno"
        call.cancel()
        await asyncio.wait_for(recorder.closed_event.wait(), 5)
    assert server.open_streams == 0


async def test_health_check_answers_known_services(
    served: tuple[GrpcServer, Recorder, int],
) -> None:
    _, _, port = served
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Check(health_pb2.HealthCheckRequest(service="other"))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


@contextlib.asynccontextmanager
async def open_call() -> AsyncIterator[tuple[GrpcServer, Recorder, grpc.aio.Channel, Any]]:
    """A server of its own (the tests stop it) and one call on it that has round-tripped."""
    recorder = Recorder()
    server = GrpcServer({ECHO: recorder.session})
    port = await server.start("127.0.0.1", 0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = chat(channel)()
        await call.write(b"before")
        assert await call.read() == b"erofeb"
        yield server, recorder, channel, call


async def test_stop_lets_open_streams_finish_and_refuses_new_ones() -> None:
    async with open_call() as (server, recorder, channel, call):
        stopping = asyncio.create_task(server.stop(5))
        await asyncio.sleep(0.1)
        await call.write(b"during")  # the open stream still works while draining
        assert await call.read() == b"gnirud"
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
        await asyncio.wait_for(stopping, 5)
        late = chat(channel)()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await late.write(b"late")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert recorder.opened == recorder.closed == 1


async def test_stop_cancels_streams_still_open_at_the_deadline() -> None:
    async with open_call() as (server, recorder, _, call):
        await server.stop(0.2)
        assert recorder.closed == 1
        assert server.open_streams == 0
        assert await call.code() != grpc.StatusCode.OK


# -- corner cases with a hand-driven HTTP/2 client ------------------------------------------
