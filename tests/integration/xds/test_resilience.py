"""The xDS server restarts and rejected updates: Envoy keeps its last good config throughout."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from envoy_data_plane.envoy.config.cluster.v3 import ClusterLbPolicy
from envoy_data_plane.google.protobuf import Any as AnyMsg

from extproc.envoyconf.policy import CircuitBreakerSpec
from extproc.xds.app import XdsApp, XdsConfig
from extproc.xds.resources import CLUSTER_TYPE, pool_cluster
from tests.integration.xds.harness import XdsStack, send, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
POOL = "inference-pool"


@pytest.fixture
def stack() -> Iterator[XdsStack]:
    with XdsStack(pods=2, mode="pool") as s:
        s.start_sim()
        s.write_config(maxParallelRequests=2, maxPendingRequests=1)
        s.start_picker()
        yield s


def test_xds_restart_envoy_keeps_serving_and_resyncs(stack: XdsStack) -> None:
    stack.start_xds()
    envoy = stack.start_envoy()
    wait_until(lambda: envoy.max_requests(POOL) == 2, 15, "pool cluster from CDS")
    assert stack.xds is not None
    old_version = envoy.clusters()[POOL]

    stack.stop_xds()
    for _ in range(3):
        assert send(envoy.url).status == 200  # last config in force
    assert envoy.max_requests(POOL) == 2
    stack.write_config(maxParallelRequests=4, maxPendingRequests=1)  # changed while down

    stack.start_xds(port=stack.xds_port)
    started = time.monotonic()
    wait_until(lambda: envoy.max_requests(POOL) == 4, 30, "resync after restart", 0.05)
    print(f"xds restart -> Envoy resynchronised in {time.monotonic() - started:.2f}s")
    m = stack.xds.wait_for(r"event=subscribed .*type=Cluster .*envoy_version=(\S+)", 5)
    assert m.group(1) == old_version  # Envoy told the new server what it held
    assert envoy.clusters()[POOL] != old_version
    assert send(envoy.url).status == 200


class InProcessXds:
    """`XdsApp` on its own event loop in a thread, so that a test can reach into its cache."""

    def __init__(self, config_file: Path) -> None:
        self.app = XdsApp(XdsConfig(config_file=config_file, port=0, cluster_mode="pool"))
        self.app.load()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "in-process xds did not start"

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        task = asyncio.create_task(self.app.run(self._stop))
        await self.app.listening.wait()
        self._ready.set()
        await task

    def call(self, fn: object) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def find(self, event: str) -> list[dict[str, object]]:
        return [r.kv for r in self.records if r.getMessage() == event]  # type: ignore[attr-defined]


def test_nacked_update_is_logged_and_traffic_is_unaffected(stack: XdsStack) -> None:
    records = Records()
    logger = logging.getLogger("extproc.xds")
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    xds = InProcessXds(stack.config_path)
    try:
        stack.xds_port = xds.app.port
        envoy = stack.start_envoy()
        wait_until(lambda: envoy.max_requests(POOL) == 2, 15, "pool cluster from CDS")
        good_version = envoy.clusters()[POOL]

        # An update Envoy must reject: ORIGINAL_DST only works with CLUSTER_PROVIDED.
        bad = pool_cluster(CircuitBreakerSpec(max_parallel_requests=7))
        bad.lb_policy = ClusterLbPolicy.ROUND_ROBIN

        def publish_bad() -> None:
            cache = xds.app.cache
            served = {t: dict(cache.get(t).resources) for t in cache.versions()}  # type: ignore[union-attr]
            cache.update({**served, CLUSTER_TYPE: {POOL: AnyMsg.pack(bad)}})

        xds.call(publish_bad)
        wait_until(lambda: bool(records.find("update_rejected")), 10, "NACK", 0.05)
        (nack,) = records.find("update_rejected")
        print(f"NACK logged: {nack}")
        assert "ORIGINAL_DST" in str(nack["error"])
        assert nack["kept_version"] == good_version
        time.sleep(0.5)
        assert len(records.find("update_rejected")) == 1  # not resent in a loop
        # The cluster and the route, then the rejected cluster.
        assert len(records.find("update_sent")) == 3
        assert xds.app.servicer.counts.rejected == {CLUSTER_TYPE: 1}
        assert envoy.max_requests(POOL) == 2
        assert envoy.clusters()[POOL] == good_version
        assert [send(envoy.url).status for _ in range(3)] == [200, 200, 200]

        # The next good change is applied.
        stack.write_config(maxParallelRequests=5, maxPendingRequests=1)
        wait_until(lambda: envoy.max_requests(POOL) == 5, 5, "good update after a NACK")
    finally:
        xds.stop()
        logger.removeHandler(records)
