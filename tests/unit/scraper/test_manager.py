"""ScrapeManager against a real aiohttp server on a free loopback port."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from prometheus_client import generate_latest

from extproc.api.v1alpha2 import InferencePool
from extproc.endpoints import Endpoint
from extproc.metrics import PickerMetrics
from extproc.scraper import manager as manager_module
from extproc.scraper.engines import MetricNames
from extproc.scraper.manager import ScrapeConfig, ScrapeManager
from extproc.scraper.snapshot import EndpointMetrics, MetricsStore

PAGE = (
    "# TYPE vllm:num_requests_waiting gauge\n"
    'vllm:num_requests_waiting{model_name="m"} 4.0\n'
    'vllm:num_requests_running{model_name="m"} 1.0\n'
    'vllm:kv_cache_usage_perc{model_name="m"} 0.5\n'
)


@dataclass
class FakeServer:
    status: int = 200
    hits: int = 0


@dataclass
class FakeSource:
    """Implements the manager's EndpointSource like Datastore does."""

    eps: tuple[Endpoint, ...] = ()
    listeners: list[Callable[[tuple[Endpoint, ...]], None]] = field(default_factory=list)

    def endpoints(self) -> tuple[Endpoint, ...]:
        return self.eps

    def on_endpoints_changed(self, listener: Callable[[tuple[Endpoint, ...]], None]) -> None:
        self.listeners.append(listener)

    def pool(self) -> InferencePool | None:
        return InferencePool(name="pool", target_port=8000)

    def set(self, *eps: Endpoint) -> None:
        self.eps = eps
        for listener in self.listeners:
            listener(eps)


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakeServer, int]]:
    state = FakeServer()

    async def metrics(_: web.Request) -> web.Response:
        state.hits += 1
        if state.status != 200:
            return web.Response(status=state.status, text="boom")
        return web.Response(text=PAGE)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/prometheus/metrics", metrics)  # trtllm-serve's path
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield state, port
    await runner.cleanup()


async def _until(predicate: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


CONFIG = ScrapeConfig(interval=0.01, timeout=0.5, failure_threshold=3, gauge_interval=0.01)


async def test_failures_mark_unhealthy_and_success_recovers(
    server: tuple[FakeServer, int],
) -> None:
    state, port = server
    ep = Endpoint("p1", "127.0.0.1", port)
    source = FakeSource((ep,))
    store = MetricsStore(staleness=10.0)
    manager = ScrapeManager(source, store, config=CONFIG)
    await manager.start()
    try:
        await _until(lambda: store.is_fresh(ep.address, time.monotonic()))
        snap = store.get(ep.address)
        assert snap is not None and (snap.waiting, snap.running, snap.kv_usage) == (4, 1, 0.5)
        state.status = 500
        # Staleness is 10 s: only the failure counter can make it not fresh this fast.
        await _until(lambda: not store.is_fresh(ep.address, time.monotonic()))
        hits = state.hits
        await _until(lambda: state.hits > hits + 3)  # the loop keeps going after failures
        state.status = 200
        await _until(lambda: store.is_fresh(ep.address, time.monotonic()))
    finally:
        await manager.stop()


async def test_loops_follow_endpoint_changes(server: tuple[FakeServer, int]) -> None:
    _, port = server
    a = Endpoint("a", "127.0.0.1", port)
    gone = Endpoint("b", "127.0.0.2", 1)  # nothing listens: connection refused
    source = FakeSource((a, gone))
    store = MetricsStore()
    manager = ScrapeManager(source, store, config=CONFIG)
    await manager.start()
    try:
        assert manager.scraping() == {a.address, gone.address}
        await _until(lambda: store.get(a.address) is not None)
        source.set(a)
        assert manager.scraping() == {a.address}
        source.set()
        assert manager.scraping() == frozenset()
        assert store.get(a.address) is None
    finally:
        await manager.stop()
    assert manager.scraping() == frozenset()


async def test_pool_gauges(server: tuple[FakeServer, int]) -> None:
    _, port = server
    eps = (Endpoint("a", "127.0.0.1", port), Endpoint("dead", "127.0.0.2", 1))
    metrics = PickerMetrics()
    store = MetricsStore()
    manager = ScrapeManager(FakeSource(eps), store, metrics=metrics, config=CONFIG)
    await manager.start()
    try:

        def exported() -> str:
            return generate_latest(metrics.registry).decode()

        await _until(lambda: 'inference_pool_average_queue_size{name="pool"} 4.0' in exported())
        text = exported()
        assert 'inference_pool_average_kv_cache_utilization{name="pool"} 0.5' in text
        assert 'inference_pool_ready_pods{name="pool"} 2.0' in text
    finally:
        await manager.stop()


@pytest.mark.parametrize("transport", ["builtin", "aiohttp"])
async def test_transports_fail_and_recover(server: tuple[FakeServer, int], transport: str) -> None:
    state, port = server
    ep = Endpoint("p1", "127.0.0.1", port)
    store = MetricsStore(staleness=10.0)
    config = dataclasses.replace(CONFIG, transport=transport)  # type: ignore[arg-type]
    manager = ScrapeManager(FakeSource((ep,)), store, config=config)
    await manager.start()
    try:
        await _until(lambda: store.is_fresh(ep.address, time.monotonic()))
        state.status = 500
        await _until(lambda: not store.is_fresh(ep.address, time.monotonic()))
        state.status = 200
        await _until(lambda: store.is_fresh(ep.address, time.monotonic()))
    finally:
        await manager.stop()


async def test_unchanged_page_is_restamped_not_reparsed(
    server: tuple[FakeServer, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port = server
    ep = Endpoint("p1", "127.0.0.1", port)
    store = MetricsStore()
    parses: list[float] = []
    real = manager_module.parse_metrics

    def counting(text: str, names: MetricNames, updated_at: float) -> EndpointMetrics:
        parses.append(updated_at)
        return real(text, names, updated_at)

    monkeypatch.setattr(manager_module, "parse_metrics", counting)
    manager = ScrapeManager(FakeSource((ep,)), store, config=CONFIG)
    await manager.start()
    try:
        await _until(lambda: store.get(ep.address) is not None)
        first = store.get(ep.address)
        await _until(lambda: store.get(ep.address) is not first)
        second = store.get(ep.address)
        assert first is not None and second is not None
        assert second.updated_at > first.updated_at
        assert dataclasses.replace(second, updated_at=0.0) == dataclasses.replace(
            first, updated_at=0.0
        )
        assert len(parses) == 1
    finally:
        await manager.stop()


async def test_scrape_health_is_exported_per_endpoint(server: tuple[FakeServer, int]) -> None:
    state, port = server
    ep = Endpoint("p1", "127.0.0.1", port)
    dead = Endpoint("dead", "127.0.0.2", 1)  # nothing listens: connection refused
    metrics = PickerMetrics()
    store = MetricsStore(staleness=10.0)
    manager = ScrapeManager(FakeSource((ep, dead)), store, metrics=metrics, config=CONFIG)

    def exported() -> str:
        return generate_latest(metrics.registry).decode()

    await manager.start()
    try:
        await _until(lambda: f'extproc_endpoint_metrics_fresh{{endpoint="{ep.address}"}} 1.0'
                     in exported())  # fmt: skip
        state.status = 500
        await _until(lambda: "FetchStatusError" in exported())
        text = exported()
        assert (
            f'extproc_scrape_failures_total{{endpoint="{dead.address}",'
            'reason="FetchConnectionError"}' in text
        )
        assert f'extproc_endpoint_metrics_fresh{{endpoint="{dead.address}"}} 0.0' in text
        assert f'extproc_endpoint_metrics_age_seconds{{endpoint="{ep.address}"}}' in text
        assert f'extproc_endpoint_metrics_age_seconds{{endpoint="{dead.address}"}}' not in text
        health = {h.endpoint: h for h in manager.health()}
        assert health[ep.address].failures["FetchStatusError"] >= 1
    finally:
        await manager.stop()
    assert "extproc_endpoint_metrics_fresh{" not in exported()  # loops gone, series gone


async def test_the_page_is_read_at_the_configured_path(server: tuple[FakeServer, int]) -> None:
    _, port = server
    a = Endpoint("a", "127.0.0.1", port)
    store = MetricsStore()
    config = dataclasses.replace(CONFIG, path="/prometheus/metrics")
    manager = ScrapeManager(FakeSource((a,)), store, config=config)
    await manager.start()
    try:
        await _until(lambda: store.get(a.address) is not None)
        snapshot = store.get(a.address)
        assert snapshot is not None and snapshot.waiting == 4
    finally:
        await manager.stop()
