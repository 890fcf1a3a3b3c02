"""ScrapeManager: one scrape loop per endpoint, started and stopped as the pool changes."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from extproc.api.v1alpha2 import InferencePool
from extproc.endpoints import Endpoint
from extproc.logs import get_logger
from extproc.metrics import PickerMetrics, ScrapeHealth
from extproc.scraper.engines import Engine, MetricNames, metric_names
from extproc.scraper.fetch import AiohttpFetcher, CallbackFetcher, Completion, Fetcher
from extproc.scraper.http import HttpFetcher
from extproc.scraper.parser import parse_metrics
from extproc.scraper.pool_gauges import remove_series, update_pool_gauges
from extproc.scraper.snapshot import EndpointMetrics, MetricsStore
from extproc.scraper.ticker import Ticker

log = get_logger(__name__)

DEFAULT_INTERVAL_S = 0.05
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_GAUGE_INTERVAL_S = 1.0
# Scrapes due within the same tick are sent together: a fifth of the interval, at most 10 ms.
# Sending in bursts costs ~10% less CPU than one timer per scrape (`make bench-scheduling`,
# 100 endpoints): fewer event-loop wake-ups, and on loopback fewer cross-CPU wake-ups of the
# server. A burst of 20 sends holds the event loop for ~0.7 ms.
MAX_TICK_S = 0.01
# "builtin": the keep-alive asyncio.Protocol client (extproc.scraper.http), about 10x cheaper
# per scrape than aiohttp's client; "aiohttp": aiohttp.ClientSession.
Transport = Literal["builtin", "aiohttp"]
DEFAULT_TRANSPORT: Transport = "builtin"


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeConfig:
    """How often and how patiently to scrape, and which engine's metric names to read."""

    interval: float = DEFAULT_INTERVAL_S
    timeout: float = DEFAULT_TIMEOUT_S
    # Consecutive failures after which the endpoint's snapshot stops counting as fresh.
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    gauge_interval: float = DEFAULT_GAUGE_INTERVAL_S
    engine: Engine = "vllm"
    path: str = "/metrics"
    transport: Transport = DEFAULT_TRANSPORT


def make_fetcher(config: ScrapeConfig, ticker: Ticker | None = None) -> Fetcher:
    """The Fetcher named by `config.transport`, with the per-call timeout (the built-in
    client's timeouts run on `ticker` when given)."""
    if config.transport == "aiohttp":
        return AiohttpFetcher(config.timeout)
    return HttpFetcher(config.timeout, ticker=ticker)


class EndpointSource(Protocol):
    """What the manager needs from the datastore."""

    def endpoints(self) -> tuple[Endpoint, ...]: ...

    def on_endpoints_changed(self, listener: Callable[[tuple[Endpoint, ...]], None]) -> None: ...

    def pool(self) -> InferencePool | None: ...


class ScrapeManager:
    """Owns a task per endpoint (hard references kept) plus the pool-gauge task.

    Call `start()` from the running event loop (it subscribes to endpoint changes) and
    `stop()` on shutdown; loops never exit on errors, only on cancellation.
    """

    def __init__(
        self,
        source: EndpointSource,
        store: MetricsStore,
        *,
        metrics: PickerMetrics | None = None,
        config: ScrapeConfig | None = None,
        fetcher: Fetcher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._store = store
        self._metrics = metrics
        self._config = config or ScrapeConfig()
        # One ticker for every scrape loop's next scrape and the built-in client's timeouts.
        self._ticker = Ticker(min(MAX_TICK_S, self._config.interval / 5))
        self._fetcher = fetcher or make_fetcher(self._config, self._ticker)
        self._clock = clock
        self._names = metric_names(self._config.engine)
        self._scrapes: dict[str, _EndpointScrape] = {}
        self._gauge_task: asyncio.Task[None] | None = None
        self._started = False
        self._subscribed = False
        if metrics is not None:
            metrics.watch_scrapes(self.health)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        if not self._subscribed:
            self._source.on_endpoints_changed(self._on_endpoints)
            self._subscribed = True
        self._on_endpoints(self._source.endpoints())
        if self._metrics is not None:
            self._gauge_task = asyncio.create_task(self._gauge_loop(), name="scrape-pool-gauges")

    async def stop(self) -> None:
        self._started = False
        tasks = [t for scrape in self._scrapes.values() if (t := scrape.cancel()) is not None]
        if self._gauge_task is not None:
            self._gauge_task.cancel()
            tasks.append(self._gauge_task)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._scrapes.clear()
        self._gauge_task = None
        await self._fetcher.close()
        self._ticker.close()

    def scraping(self) -> frozenset[str]:
        """Addresses with a running scrape loop."""
        return frozenset(self._scrapes)

    def health(self) -> list[ScrapeHealth]:
        """Each scrape loop's endpoint: fresh or not, snapshot age, failures by error type."""
        now = self._clock()
        out = []
        for address, scrape in self._scrapes.items():
            snapshot = self._store.get(address)
            out.append(
                ScrapeHealth(
                    endpoint=address,
                    fresh=self._store.is_fresh(address, now),
                    age_seconds=None if snapshot is None else max(0.0, now - snapshot.updated_at),
                    failures=dict(scrape.failures_by_reason),
                )
            )
        return out

    def _on_endpoints(self, endpoints: tuple[Endpoint, ...]) -> None:
        if not self._started:
            return
        wanted = {e.address: e for e in endpoints}
        for address in [a for a in self._scrapes if a not in wanted]:
            scrape = self._scrapes.pop(address)
            scrape.cancel()
            self._fetcher.forget(scrape.url)  # its kept-alive connection
            self._store.remove(address)
            log.info("scrape_stopped", endpoint=address)
        for address in wanted:
            if address not in self._scrapes:
                scrape = _EndpointScrape(
                    address, self._fetcher, store=self._store, config=self._config,
                    names=self._names, clock=self._clock, ticker=self._ticker,
                )  # fmt: skip
                self._scrapes[address] = scrape
                scrape.start()
                log.info("scrape_started", endpoint=address)

    async def _gauge_loop(self) -> None:
        assert self._metrics is not None
        shown: str | None = None  # the pool whose series are exported
        while True:
            try:
                pool = self._source.pool()
                name = pool.name if pool is not None else None
                if shown is not None and shown != name:  # gone or renamed: no phantom pool
                    remove_series(self._metrics, shown)
                shown = name
                if name is not None:
                    update_pool_gauges(
                        self._metrics, name, self._source.endpoints(), self._store, self._clock()
                    )
            except Exception as exc:
                log.error("pool_gauges_failed", error=type(exc).__name__, detail=str(exc))
            await asyncio.sleep(self._config.gauge_interval)


class _EndpointScrape:
    """One endpoint's scrape loop, driven by callbacks: fetch, parse, store, wait, again.

    With the built-in HTTP client the request starts on the kept-alive connection and its
    completion calls back here (`CallbackFetcher.start_fetch`): no task, sleep or future per
    scrape, which was a fifth of the scraper's CPU (`make bench-scheduling`). Other fetchers,
    and the first request of a connection, run as one short task per fetch. The wait before
    the next scrape runs on the manager's `Ticker`, shared by all loops.
    """

    def __init__(
        self,
        address: str,
        fetcher: Fetcher,
        *,
        store: MetricsStore,
        config: ScrapeConfig,
        names: MetricNames,
        clock: Callable[[], float],
        ticker: Ticker,
    ) -> None:
        self._address = address
        self.url = f"http://{address}{config.path}"
        self._fetcher = fetcher
        self._start_fetch: Callable[[str, Completion], bool] | None = (
            fetcher.start_fetch if isinstance(fetcher, CallbackFetcher) else None
        )
        self._store = store
        self._config = config
        self._names = names
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._ticker = ticker
        self._timer: asyncio.Handle | None = None  # the first scrape's
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._started_at = 0.0
        self.failures = 0  # in a row
        self.failures_by_reason: dict[str, int] = {}  # since the start, by error type
        # The last page and its snapshot: an unchanged page (an idle server) is not parsed again,
        # its snapshot is re-stamped. Bytes equality is one memcmp.
        self._last_body: bytes | None = None
        self._last: EndpointMetrics | None = None

    def start(self) -> None:
        self._timer = self._loop.call_soon(self._fire)

    def cancel(self) -> asyncio.Task[None] | None:
        """Stop for good; returns the fetch task in flight (cancelled), if any, to await."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    def _fire(self) -> None:
        self._timer = None
        self._started_at = self._clock()
        if self._start_fetch is not None and self._start_fetch(self.url, self._done):
            return
        self._task = self._loop.create_task(self._fetch(), name=f"scrape-{self._address}")

    async def _fetch(self) -> None:
        try:
            body = await self._fetcher.fetch(self.url)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure counts; the loop goes on
            self._task = None
            self._done(None, exc)
            return
        self._task = None
        self._done(body, None)

    def _done(self, body: bytes | None, error: BaseException | None) -> None:
        if self._stopped:
            return
        try:
            self._record(body, error)
        except Exception as exc:
            log.error("scrape_failed", endpoint=self._address, error=repr(exc), exc_info=True)
        wait = max(0.0, self._config.interval - (self._clock() - self._started_at))
        self._ticker.call_later(wait, self._next)

    def _next(self) -> None:
        if not self._stopped:
            self._fire()

    def _record(self, body: bytes | None, error: BaseException | None) -> None:
        snapshot: EndpointMetrics | None = None
        if error is None and body is not None:
            try:
                if self._last is not None and body == self._last_body:
                    snapshot = dataclasses.replace(self._last, updated_at=self._clock())
                else:
                    snapshot = parse_metrics(body, self._names, self._clock())
                self._last_body, self._last = body, snapshot
            except Exception as exc:  # an unparsable page is a failed scrape
                error = exc
        threshold = self._config.failure_threshold
        if snapshot is None:
            self.failures += 1
            reason = type(error).__name__ if error is not None else "Unknown"
            self.failures_by_reason[reason] = self.failures_by_reason.get(reason, 0) + 1
            if self.failures == threshold:
                self._store.mark_unhealthy(self._address)
                detail = str(error)[:200] if error is not None else ""
                log.warning("scrape_unhealthy", endpoint=self._address, failures=self.failures,
                            error=type(error).__name__, detail=detail)  # fmt: skip
            return
        if self.failures >= threshold:
            log.info("scrape_recovered", endpoint=self._address, failures=self.failures)
        self.failures = 0
        self._store.put(self._address, snapshot)
