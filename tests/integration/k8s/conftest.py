"""Fixtures: the fake API server, picker processes in Kubernetes mode, gRPC health probes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc.stack.process import ManagedProcess
from tests.unit.k8s.builders import POOL
from tests.unit.k8s.fake_apiserver import FakeApiServer

STARTUP_S = 20.0


@pytest.fixture
async def apiserver() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    await server.start()
    yield server
    await server.stop()


class Picker:
    """One `extproc serve --pool-name` process and its bound ports."""

    def __init__(self, proc: ManagedProcess, ports: dict[str, int]) -> None:
        self.proc = proc
        self.ports = ports

    async def health(self, service: str) -> str:
        """The status of `service` on the plaintext health port (UNREACHABLE on error)."""
        return await health_status(f"127.0.0.1:{self.ports['health']}", service)


async def health_status(
    target: str, service: str, credentials: grpc.ChannelCredentials | None = None,
    options: list[tuple[str, str]] | None = None,
) -> str:  # fmt: skip
    channel = (
        grpc.aio.secure_channel(target, credentials, options=options)
        if credentials is not None
        else grpc.aio.insecure_channel(target)
    )
    async with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
        except grpc.aio.AioRpcError as exc:
            return f"UNREACHABLE:{exc.code().name}"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


StartPicker = Callable[..., Awaitable[Picker]]


@pytest.fixture
async def start_picker(apiserver: FakeApiServer, tmp_path: Path) -> AsyncIterator[StartPicker]:
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    pickers: list[Picker] = []

    async def start(*extra: str, name: str = "picker") -> Picker:
        argv = [
            sys.executable, "-m", "extproc", "serve", "--pool-name", POOL,
            "--pool-namespace", "default", "--kubeconfig", str(kubeconfig),
            "--host", "127.0.0.1", "--grpc-port", "0", "--grpc-health-port", "0",
            "--metrics-port", "0", "--profile", "least-inflight", "--drain-seconds", "1",
            *extra,
        ]  # fmt: skip
        proc = ManagedProcess(name, argv, tmp_path / f"{name}.log")
        picker = Picker(proc, {})
        pickers.append(picker)
        match = await asyncio.to_thread(proc.wait_for, r"extproc serving (.*)$", STARTUP_S)
        for item in match.group(1).split():
            key, _, address = item.partition("=")
            picker.ports[key] = int(address.rsplit(":", 1)[1])
        return picker

    yield start
    await asyncio.gather(*(asyncio.to_thread(p.proc.stop, 5.0) for p in pickers))
