"""Kubernetes mode with a real Envoy: editing the policy object changes Envoy's breaker live."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from extproc.envoyconf.ads import AdsBootstrapParams, ClusterMode
from extproc.envoyconf.bootstrap import POOL_CLUSTER, BootstrapParams, CircuitBreaker
from extproc.k8s.policies import POLICY_RESOURCE
from extproc.stack.process import ManagedProcess, free_port
from extproc.stack.stack import retry_port_clash
from tests.integration.xds.harness import STARTUP, Envoy, wait_until
from tests.unit.k8s.builders import POOL, make_pod, make_pool
from tests.unit.k8s.fake_apiserver import FakeApiServer
from tests.unit.xds.builders import make_policy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
T = TypeVar("T")


class ThreadedApiServer:
    """The fake API server on its own event loop in a thread; every state change goes there."""

    def __init__(self) -> None:
        self.server = FakeApiServer()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._run(self.server.start())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        async def on_loop() -> T:
            return fn(*args)

        return self._run(on_loop())

    def stop(self) -> None:
        try:
            self._run(self.server.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()


class Stack:
    """Fake API server, `extproc xds --pool-name` and one Envoy, all stopped by `stop()`."""

    def __init__(self, mode: ClusterMode) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="extproc-xds-k8s-")
        self.dir = Path(self._tmp.name)
        self.api = ThreadedApiServer()
        self.xds: ManagedProcess | None = None
        self.envoy: Envoy | None = None
        self.mode = mode

    def start(self) -> Envoy:
        kubeconfig = self.api.server.write_kubeconfig(self.dir / "kubeconfig")
        argv = [
            sys.executable, "-m", "extproc", "xds", "--pool-name", POOL, "--pool-namespace",
            "default", "--kubeconfig", str(kubeconfig), "--host", "127.0.0.1", "--port", "0",
            "--metrics-port", "0", "--cluster-mode", self.mode,
        ]  # fmt: skip
        self.xds = ManagedProcess("xds", argv, self.dir / "xds.log")
        port = int(self.xds.wait_for(r"extproc xds serving xds=\S+:(\d+)", STARTUP).group(1))
        self.envoy = retry_port_clash(lambda: Envoy(
            self.dir / "envoy",
            AdsBootstrapParams(
                base=BootstrapParams(
                    listen_address="127.0.0.1", listen_port=free_port(), admin_port=free_port(),
                    extproc_port=free_port(), message_timeout_ms=2000,
                ),
                cluster_mode=self.mode, xds_port=port,
            ),
        ))  # fmt: skip
        return self.envoy

    def stop(self) -> None:
        for proc in (self.envoy.proc if self.envoy else None, self.xds):
            if proc is not None:
                proc.stop()
        self.api.stop()
        self._tmp.cleanup()


@pytest.fixture
def pool_stack() -> Iterator[Stack]:
    stack = Stack("pool")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def per_endpoint_stack() -> Iterator[Stack]:
    stack = Stack("per-endpoint")
    try:
        yield stack
    finally:
        stack.stop()


def test_policy_edit_changes_envoy_breaker(
    pool_stack: Stack, record_property: pytest.RecordProperty
) -> None:
    api = pool_stack.api
    api.call(api.server.put, "inferencepools", make_pool())
    api.call(api.server.put, POLICY_RESOURCE, make_policy(maxParallelRequests=1))
    envoy = pool_stack.start()
    wait_until(lambda: envoy.max_requests(POOL_CLUSTER) == 1, 15, "max_requests 1 from CDS")
    pid = envoy.proc.proc.pid

    written = time.monotonic()
    api.call(api.server.put, POLICY_RESOURCE, make_policy(maxParallelRequests=3))
    wait_until(lambda: envoy.max_requests(POOL_CLUSTER) == 3, 10, "max_requests 3 in Envoy")
    delay = time.monotonic() - written
    record_property("xds_k8s_update_delay_s", round(delay, 3))
    print(f"policy object edited -> Envoy max_requests=3: {delay * 1000:.0f} ms")
    assert delay <= 2.0

    invalid = make_policy(maxParallelRequests=-1)
    api.call(api.server.put, POLICY_RESOURCE, invalid)
    assert pool_stack.xds is not None
    pool_stack.xds.wait_for(r"invalid_policy_ignored", 10)
    assert envoy.max_requests(POOL_CLUSTER) == 3  # the last good thresholds stay

    api.call(api.server.delete, POLICY_RESOURCE, "breaker")
    default = CircuitBreaker().max_requests
    wait_until(lambda: envoy.max_requests(POOL_CLUSTER) == default, 10, "Envoy's default")
    assert envoy.proc.alive() and envoy.proc.proc.pid == pid  # the same Envoy, no restart


def test_endpoint_churn_adds_and_removes_clusters(per_endpoint_stack: Stack) -> None:
    api = per_endpoint_stack.api
    api.call(api.server.put, "inferencepools", make_pool())
    api.call(api.server.put, "pods", make_pod("p1", "127.0.0.1"))
    api.call(api.server.put, POLICY_RESOURCE, make_policy(maxParallelRequests=1))
    envoy = per_endpoint_stack.start()
    wait_until(lambda: "127.0.0.1:8000" in envoy.clusters(), 15, "p1 cluster")

    api.call(api.server.put, "pods", make_pod("p2", "127.0.0.2"))
    wait_until(lambda: "127.0.0.2:8000" in envoy.clusters(), 10, "p2 cluster")
    assert envoy.max_requests("127.0.0.2:8000") == 1
    api.call(api.server.delete, "pods", "p1")
    wait_until(lambda: "127.0.0.1:8000" not in envoy.clusters(), 10, "p1 cluster removed")
