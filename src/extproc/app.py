"""Composition root of `extproc serve`: builds the object graph and owns every task."""

from __future__ import annotations

import asyncio
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from extproc.cli_common import serve_until_signalled
from extproc.config.reload import DEFAULT_POLL_INTERVAL, StaticConfigReloader
from extproc.config.static import StaticConfig, load_static_config
from extproc.datastore import Datastore
from extproc.endpoints import host_port
from extproc.errors import ConfigError
from extproc.k8s.settings import KubernetesSettings
from extproc.logs import get_logger
from extproc.metrics import PickerMetrics, start_metrics_server
from extproc.scheduling.factory import build_scheduler
from extproc.scheduling.inflight import InFlight
from extproc.scheduling.least_inflight import LeastInFlightPicker
from extproc.scheduling.types import EndpointPicker, FollowsFiles
from extproc.scraper.manager import ScrapeConfig, ScrapeManager
from extproc.scraper.pool_gauges import remove_series
from extproc.scraper.snapshot import DEFAULT_STALENESS_S, MetricsStore
from extproc.server.exchange import Exchange, ExchangeSettings
from extproc.server.listeners import (
    BUILTIN,
    BuiltinListener,
    ExtProcListener,
    GrpcioListener,
    grpcio_options,
)
from extproc.server.observer import MetricsObserver
from extproc.server.service import SERVICE_NAME, ExternalProcessor
from extproc.tls import server_credentials, server_ssl_context, service_hosts

log = get_logger(__name__)

DEFAULT_GRPC_PORT = 9002
DEFAULT_HEALTH_PORT = 9003
DEFAULT_METRICS_PORT = 9090
DEFAULT_DRAIN_SECONDS = 30.0
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeConfig:
    host: str = "0.0.0.0"
    grpc_port: int = DEFAULT_GRPC_PORT
    grpc_health_port: int = DEFAULT_HEALTH_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    static_config: Path | None = None
    exchange: ExchangeSettings = field(default_factory=ExchangeSettings)
    fallbacks: int = 0
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    seed: int | None = None
    # A shipped profile name (default, reference-default, legacy-v0.3), an EndpointPickerConfig
    # file, or LEAST_INFLIGHT for the metrics-free picker (no scraping at all).
    scheduler: str | Path = "default"  # a shipped profile name or an EndpointPickerConfig file
    scheduling_profile: str | None = None
    scrape: ScrapeConfig = field(default_factory=ScrapeConfig)
    metrics_staleness: float = DEFAULT_STALENESS_S
    # Exactly one source: `static_config` (a file) or `kubernetes` (watch the cluster).
    kubernetes: KubernetesSettings | None = None
    # TLS on the ext_proc port (the health port stays plaintext for kubelet probes).
    secure_serving: bool = False
    cert_path: Path | None = None  # tls.crt/tls.key, reloaded on change; None: self-signed
    # How often the static config file is checked for changes; 0 disables reloading.
    config_poll_interval: float = DEFAULT_POLL_INTERVAL
    # The ext_proc port's server: "builtin" (server/h2.py) or "grpcio" (grpc.aio).
    grpc_server: str = BUILTIN


LEAST_INFLIGHT = "least-inflight"


class PickerApp:
    """The running picker. `run()` serves until `stop` is set, then drains and exits."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        rng = random.Random(config.seed)
        self.datastore = Datastore(rng)
        self.metrics = PickerMetrics()
        self.inflight = InFlight()
        self.metrics.watch_step_durations(self.inflight.step_durations)
        self.store = MetricsStore(staleness=config.metrics_staleness)
        self.scrapes: ScrapeManager | None = None
        self.picker: EndpointPicker
        if config.scheduler == LEAST_INFLIGHT:
            self.picker = LeastInFlightPicker(
                self.datastore.endpoints, self.inflight, rng, fallbacks=config.fallbacks
            )
        else:
            self.picker = build_scheduler(
                config.scheduler,
                datastore=self.datastore,
                store=self.store,
                inflight=self.inflight,
                metrics=self.metrics,
                rng=rng,
                fallbacks=config.fallbacks,
                profile=config.scheduling_profile,
            )
            self.scrapes = ScrapeManager(
                self.datastore, self.store, metrics=self.metrics, config=config.scrape
            )
            self.datastore.on_endpoints_changed(self.picker.endpoints_changed)
        self.processor = ExternalProcessor(self._new_exchange, self._may_serve)
        self.health = HealthServicer()
        # The same statuses for the built-in server's synchronous health Check.
        self.health_status: dict[str, int] = {}
        self.ports: dict[str, int] = {}
        # Kubernetes mode (built by `load()`): the watchers, leader election, API client.
        self.source: Any = None  # KubernetesSource; typed loosely to keep `kubernetes` lazy
        self.elector: Any = None  # LeaderElector
        self._api_client: Any = None
        self.reloader: StaticConfigReloader | None = None
        self._pool_shown: str | None = None  # the static pool whose gauges are exported
        self._health_changed = asyncio.Event()
        self._serving_now: bool | None = None

    def _new_exchange(self) -> Exchange:
        return Exchange(
            self.datastore, self.picker, self.inflight,
            MetricsObserver(self.metrics), self.config.exchange,
        )  # fmt: skip

    def load(self) -> None:
        """Load or prepare the configured source (raises ConfigError)."""
        cfg = self.config
        if (cfg.static_config is None) == (cfg.kubernetes is None):
            raise ConfigError("exactly one configuration source: --config FILE or --pool-name NAME")
        if cfg.kubernetes is not None:
            self._prepare_kubernetes(cfg.kubernetes)
            return
        assert cfg.static_config is not None
        if cfg.config_poll_interval > 0:
            # Before the read: the reloader's baseline is the file as it was before it, so an
            # edit landing in between is applied at the first poll.
            self.reloader = StaticConfigReloader(
                cfg.static_config, self._apply_static, cfg.config_poll_interval
            )
        self._apply_static(load_static_config(cfg.static_config))

    def _apply_static(self, static: StaticConfig) -> None:
        """Install a (re)loaded static configuration; unchanged endpoints keep their state."""
        self.datastore.set_pool(static.pool)
        self.datastore.replace_models(static.models)
        self.datastore.set_endpoints(static.endpoints)
        # Endpoints change only here in static mode; a renamed pool leaves no series behind.
        if self._pool_shown not in (None, static.pool.name):
            remove_series(self.metrics, self._pool_shown)
        self._pool_shown = static.pool.name
        self.metrics.pool_ready_pods.labels(static.pool.name).set(len(static.endpoints))
        log.info(
            "config_loaded", file=str(self.config.static_config), pool=static.pool.name,
            models=len(static.models), endpoints=len(static.endpoints),
        )  # fmt: skip

    def _count_ready_pods(self, pool: str) -> None:
        self.metrics.pool_ready_pods.labels(pool).set(len(self.datastore.endpoints()))
        self.datastore.on_endpoints_changed(
            lambda eps: self.metrics.pool_ready_pods.labels(pool).set(len(eps))
        )

    def _prepare_kubernetes(self, k8s: KubernetesSettings) -> None:
        from extproc.k8s.client import load_api_client
        from extproc.k8s.leader import LeaderElector
        from extproc.k8s.source import KubernetesSource

        self._api_client = load_api_client(k8s.kubeconfig)
        self.source = KubernetesSource(
            self.datastore, k8s.pool_name, k8s.namespace, self._api_client, watch=k8s.watch
        )
        self.source.on_change(self._health_changed.set)
        if k8s.leader_election is not None:
            self.elector = LeaderElector(self._api_client, k8s.namespace, k8s.leader_election)
            self.elector.on_change(self._health_changed.set)
        self._count_ready_pods(k8s.pool_name)
        log.info(
            "kubernetes_source", pool=k8s.pool_name, namespace=k8s.namespace,
            leader_election=k8s.leader_election is not None,
        )  # fmt: skip

    def _may_serve(self) -> bool:
        """Asked per new ext_proc stream: only a standby (leader election) refuses streams."""
        return self.elector is None or self.serving

    @property
    def serving(self) -> bool:
        """May this replica route requests? Static: always. Kubernetes: synced, pool present,
        and (with leader election) leading."""
        if self.source is None:
            return True
        leading = self.elector is None or bool(self.elector.is_leader)
        return bool(self.source.ready) and leading

    async def _set_serving(self, serving: bool) -> None:
        status = _SERVING if serving else _NOT_SERVING
        for service in ("readiness", SERVICE_NAME, ""):
            await self._set_health(service, status)
        if serving != self._serving_now:
            log.info("serving_changed", serving=serving)
        self._serving_now = serving

    async def _set_health(self, service: str, status: Any) -> None:
        """One status for both health services: grpcio's (health port) and the built-in's."""
        await self.health.set(service, status)
        self.health_status[service] = status

    async def _health_loop(self) -> None:
        """Mirror `serving` into the gRPC health services on every change."""
        while True:
            await self._health_changed.wait()
            self._health_changed.clear()
            await self._set_serving(self.serving)

    def _grpc_servers(self) -> tuple[ExtProcListener, grpc.aio.Server]:
        """The ext_proc server (TLS with --secure-serving) and the plaintext health server."""
        cfg = self.config
        address = (cfg.host, cfg.grpc_port)
        hosts = service_hosts(cfg.kubernetes.namespace if cfg.kubernetes else "default")
        server: ExtProcListener
        if cfg.grpc_server == BUILTIN:
            tls = server_ssl_context(cfg.cert_path, hosts) if cfg.secure_serving else None
            server = BuiltinListener(
                self.processor, self.health_status.get, address, tls, self.metrics
            )
        else:
            credentials = server_credentials(cfg.cert_path, hosts) if cfg.secure_serving else None
            server = GrpcioListener(self.processor, self.health, address, credentials)

        # Plaintext on purpose: kubelet's gRPC probes do not speak TLS.
        health_server = grpc.aio.server(options=grpcio_options())
        health_pb2_grpc.add_HealthServicer_to_server(self.health, health_server)
        self.ports["health"] = health_server.add_insecure_port(
            host_port(cfg.host, cfg.grpc_health_port)
        )
        return server, health_server

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        server, health_server = self._grpc_servers()
        metrics_runner, self.ports["metrics"] = await start_metrics_server(
            self.metrics.registry, cfg.host, cfg.metrics_port
        )

        if self.scrapes is not None:
            await self.scrapes.start()
        await self._set_health("liveness", _SERVING)
        await self._set_serving(self.serving)
        health_task = asyncio.create_task(self._health_loop(), name="health")
        # The picker's own static config, and files scheduling plugins follow.
        reloaders = [self.reloader] if self.reloader is not None else []
        if isinstance(self.picker, FollowsFiles):
            reloaders += self.picker.watchers
        reload_tasks = [
            asyncio.create_task(r.run(stop), name=f"config-reload-{r.changes.path.name}")
            for r in reloaders
        ]
        if self.source is not None:
            await self.source.start()
        if self.elector is not None:
            await self.elector.start()
        # Ports in a stable order (grpc, health, metrics): scripts parse the line below.
        self.ports = {"grpc": await server.start(), **self.ports}
        await health_server.start()
        log.info("serving", host=cfg.host, tls=cfg.secure_serving, **self.ports)
        print(
            "extproc serving "
            + " ".join(f"{name}={cfg.host}:{port}" for name, port in self.ports.items()),
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            log.info("shutting_down", open_streams=self.processor.open_streams)
            health_task.cancel()
            await asyncio.gather(health_task, return_exceptions=True)
            await asyncio.gather(*reload_tasks)  # they return once `stop` is set
            await self._set_serving(False)
            if self.elector is not None:
                # Release first: the standby takes over while our open streams drain.
                await self.elector.stop()
            # New streams are refused at once; open ones get the drain deadline, then cancel.
            await server.stop(cfg.drain_seconds)
            await health_server.stop(0)
            await self._stop_sources()
            await metrics_runner.cleanup()
            log.info("stopped")

    async def _stop_sources(self) -> None:
        if self.source is not None:
            await self.source.stop()
        if self.scrapes is not None:
            await self.scrapes.stop()
        if self._api_client is not None:
            self._api_client.close()


def serve(config: ServeConfig) -> int:
    """Run the picker until SIGINT/SIGTERM; return the process exit code."""
    try:
        app = PickerApp(config)
        app.load()
    except ConfigError as exc:
        print(f"extproc: configuration error: {exc}", file=sys.stderr)
        return 2

    return serve_until_signalled("extproc", app.run)
