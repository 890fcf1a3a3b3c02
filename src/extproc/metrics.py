"""The picker's Prometheus metrics, with the reference EPP's names, on a registry we own."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15,
    20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600,
)  # fmt: skip
_SIZE_BUCKETS = tuple(float(2**i) for i in range(6, 31, 2))
_TOKEN_BUCKETS = tuple(float(2**i) for i in range(17))
_SCHEDULER_BUCKETS = (
    0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
)  # fmt: skip
_MODEL_LABELS = ("model_name", "target_model_name")


@dataclass(frozen=True, slots=True)
class ScrapeHealth:
    """One endpoint's scrape loop, as operators see it."""

    endpoint: str
    fresh: bool  # its snapshot is recent and its scrapes are not failing: the scheduler uses it
    age_seconds: float | None  # since the last successful scrape; None: none yet
    failures: Mapping[str, int]  # failed scrapes since the loop started, by error type


@dataclass(frozen=True, slots=True)
class ModelSeries:
    """The per-request series of one (model, target model) pair, looked up once."""

    request_total: Any
    request_sizes: Any
    request_duration: Any
    response_sizes: Any
    input_tokens: Any
    output_tokens: Any
    running: Any


class PickerMetrics:
    """All series the picker exports. One instance per process, built by the composition root."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._series: dict[tuple[str, str], ModelSeries] = {}
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_total = Counter(
            "inference_model_request", "Requests routed, per model and target model.",
            _MODEL_LABELS, registry=r,
        )  # fmt: skip
        self.request_error_total = Counter(
            "inference_model_request_error", "Requests answered with an error by the picker.",
            (*_MODEL_LABELS, "error_code"), registry=r,
        )  # fmt: skip
        self.request_duration = Histogram(
            "inference_model_request_duration_seconds",
            "Time from request headers to the end of the response, as seen by the picker.",
            _MODEL_LABELS, buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.request_sizes = Histogram(
            "inference_model_request_sizes", "Request body size in bytes.",
            _MODEL_LABELS, buckets=_SIZE_BUCKETS, registry=r,
        )  # fmt: skip
        self.response_sizes = Histogram(
            "inference_model_response_sizes", "Response body size in bytes.",
            _MODEL_LABELS, buckets=_SIZE_BUCKETS, registry=r,
        )  # fmt: skip
        self.input_tokens = Histogram(
            "inference_model_input_tokens", "Prompt tokens reported in the response usage.",
            _MODEL_LABELS, buckets=_TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.output_tokens = Histogram(
            "inference_model_output_tokens", "Completion tokens reported in the response usage.",
            _MODEL_LABELS, buckets=_TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.running_requests = Gauge(
            "inference_model_running_requests", "Requests in flight through the picker.",
            ("model_name",), registry=r,
        )  # fmt: skip
        self.pool_average_kv_cache = Gauge(
            "inference_pool_average_kv_cache_utilization",
            "Mean KV-cache utilisation (0-1) over the pool's endpoints with fresh metrics.",
            ("name",), registry=r,
        )  # fmt: skip
        self.pool_average_queue = Gauge(
            "inference_pool_average_queue_size",
            "Mean waiting-queue length over the pool's endpoints with fresh metrics.",
            ("name",), registry=r,
        )  # fmt: skip
        self.pool_ready_pods = Gauge(
            "inference_pool_ready_pods", "Ready endpoints in the pool.", ("name",), registry=r,
        )  # fmt: skip
        self.scheduler_e2e = Histogram(
            "inference_extension_scheduler_e2e_duration_seconds",
            "Duration of one scheduling cycle.", buckets=_SCHEDULER_BUCKETS, registry=r,
        )  # fmt: skip
        self.plugin_duration = Histogram(
            "inference_extension_plugin_duration_seconds",
            "Duration of one scheduling plugin call.",
            ("extension_point", "plugin_type", "plugin_name"),
            buckets=_SCHEDULER_BUCKETS, registry=r,
        )  # fmt: skip

        # The ext_proc port's built-in HTTP/2 server (read at scrape time; no hot-path cost).
        self.grpc_connections = Gauge(
            "extproc_grpc_connections", "Open HTTP/2 connections on the ext_proc port.",
            registry=r,
        )  # fmt: skip
        self.grpc_open_streams = Gauge(
            "extproc_grpc_open_streams",
            "Open gRPC streams on the ext_proc port (one per HTTP request Envoy is processing).",
            registry=r,
        )  # fmt: skip
        self.grpc_connection_errors = Counter(
            "extproc_grpc_connection_errors",
            "ext_proc connections closed by the picker on an HTTP/2 error, by RFC 9113 code.",
            ("code",), registry=r,
        )  # fmt: skip

    def watch_step_durations(self, source: Callable[[], Mapping[str, float]]) -> None:
        """Export `source()` (endpoint address → estimated engine step, seconds) at scrape
        time as `extproc_endpoint_step_duration_seconds{endpoint}`."""
        self.registry.register(
            ByLabel(
                GaugeMetricFamily,
                "extproc_endpoint_step_duration_seconds",
                "Engine step duration per endpoint, estimated from the response chunks the "
                "picker relays (endpoints with streamed requests in flight).",
                "endpoint",
                source,
            )
        )

    def watch_grpc_resets(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Export `source()` (stage → streams the client reset while open) at scrape time as
        `extproc_grpc_stream_resets_total{stage}`."""
        self.registry.register(
            ByLabel(
                CounterMetricFamily,
                "extproc_grpc_stream_resets",
                "ext_proc streams the client reset while open: under_way (after a request "
                "message; Envoy ends every call this way) or before_message (what the "
                "rapid-reset budget counts).",
                "stage",
                source,
            )
        )

    def watch_scrapes(self, source: Callable[[], Iterable[ScrapeHealth]]) -> None:
        """Export the scrape loops' state at scrape time: `extproc_scrape_failures_total`,
        `extproc_endpoint_metrics_age_seconds` and `extproc_endpoint_metrics_fresh`, each
        `{endpoint}` (failures also `{reason}`, the error type)."""
        self.registry.register(_Scrapes(source))

    def model_series(self, model_name: str, target_model: str) -> ModelSeries:
        """Children of the per-model metrics, cached: `labels()` is costly on the hot path."""
        key = (model_name, target_model)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = ModelSeries(
                request_total=self.request_total.labels(*key),
                request_sizes=self.request_sizes.labels(*key),
                request_duration=self.request_duration.labels(*key),
                response_sizes=self.response_sizes.labels(*key),
                input_tokens=self.input_tokens.labels(*key),
                output_tokens=self.output_tokens.labels(*key),
                running=self.running_requests.labels(model_name),
            )
        return series


class _Scrapes(Collector):
    """Read at scrape time from the scrape loops: nothing on the scrape path but a failure
    count, and no series left behind by departed endpoints."""

    FAILURES = "extproc_scrape_failures"
    FAILURES_HELP = "Failed scrapes of an endpoint's metrics page, by error type."
    AGE = "extproc_endpoint_metrics_age_seconds"
    AGE_HELP = "Seconds since the endpoint's metrics page was last scraped successfully."
    FRESH = "extproc_endpoint_metrics_fresh"
    FRESH_HELP = (
        "1 when the endpoint's metrics are recent and its scrapes are not failing (the "
        "scheduler considers it), else 0."
    )

    def __init__(self, source: Callable[[], Iterable[ScrapeHealth]]) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.FAILURES, self.FAILURES_HELP, labels=("endpoint", "reason"))
        yield GaugeMetricFamily(self.AGE, self.AGE_HELP, labels=("endpoint",))
        yield GaugeMetricFamily(self.FRESH, self.FRESH_HELP, labels=("endpoint",))

    def collect(self) -> Iterator[Metric]:
        failures = CounterMetricFamily(
            self.FAILURES, self.FAILURES_HELP, labels=("endpoint", "reason")
        )
        age = GaugeMetricFamily(self.AGE, self.AGE_HELP, labels=("endpoint",))
        fresh = GaugeMetricFamily(self.FRESH, self.FRESH_HELP, labels=("endpoint",))
        for health in sorted(self._source(), key=lambda h: h.endpoint):
            for reason, count in sorted(health.failures.items()):
                failures.add_metric((health.endpoint, reason), count)
            if health.age_seconds is not None:
                age.add_metric((health.endpoint,), health.age_seconds)
            fresh.add_metric((health.endpoint,), 1.0 if health.fresh else 0.0)
        yield failures
        yield age
        yield fresh


class ByLabel(Collector):
    """One family read at scrape time from `source()` (label value → value): no hot-path
    cost, and no series left behind by label values that went away (departed endpoints)."""

    def __init__(
        self,
        family: type[GaugeMetricFamily | CounterMetricFamily],
        name: str,
        documentation: str,
        label: str,
        source: Callable[[], Mapping[str, float]],
    ) -> None:
        self._family = family
        self._name = name
        self._documentation = documentation
        self._label = label
        self._source = source

    def _new(self) -> GaugeMetricFamily | CounterMetricFamily:
        return self._family(self._name, self._documentation, labels=(self._label,))

    def describe(self) -> Iterator[Metric]:
        yield self._new()

    def collect(self) -> Iterator[Metric]:
        family = self._new()
        for key, value in sorted(self._source().items()):
            family.add_metric((key,), value)
        yield family


async def start_metrics_server(
    registry: CollectorRegistry, host: str, port: int
) -> tuple[web.AppRunner, int]:
    """Serve `registry` at `http://host:port/metrics` (port 0: a free one); return the runner
    (`cleanup()` stops it) and the bound port. The picker and `extproc xds` use it."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # aiohttp exposes no public accessor for the bound socket
    sockets = getattr(server, "sockets", None) or []
    return runner, int(sockets[0].getsockname()[1]) if sockets else 0
