"""The xDS process: a state watcher (the config file or Kubernetes), the ADS gRPC server with
gRPC health on the same port, and Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from extproc.endpoints import host_port
from extproc.envoyconf.ads import DEFAULT_XDS_PORT, ClusterMode
from extproc.envoyconf.bootstrap import ROUTE_TIMEOUT_S
from extproc.errors import ConfigError
from extproc.k8s.settings import KubernetesSettings
from extproc.logs import get_logger
from extproc.metrics import start_metrics_server
from extproc.xds import DEFAULT_HOST, DEFAULT_POLL_INTERVAL
from extproc.xds.cache import ResourceCache
from extproc.xds.metrics import XdsMetrics
from extproc.xds.server import AdsServicer
from extproc.xds.watcher import ConfigWatcher

log = get_logger(__name__)
# Open ADS streams never end on their own; on shutdown they get this long, then are cancelled.
STOP_GRACE_SECONDS = 1.0
# The watcher returns once `stop` is set (Kubernetes: after joining its watch threads).
WATCHER_STOP_SECONDS = 6.0


class StateWatcher(Protocol):
    """Publishes into the cache until `stop` is set."""

    async def run(self, stop: asyncio.Event) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class XdsConfig:
    """Exactly one source: `config_file` (file mode) or `kubernetes` (watch the cluster)."""

    config_file: Path | None = None
    kubernetes: KubernetesSettings | None = None
    # Kubernetes mode: the HTTPRoute whose policies apply to the pool (None: any in the namespace).
    route_name: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_XDS_PORT
    cluster_mode: ClusterMode = "pool"
    poll_interval: float = DEFAULT_POLL_INTERVAL
    # Prometheus `/metrics` (0: a free port); None: not served.
    metrics_port: int | None = None
    # The route's upstream timeout: the longest completion Envoy waits for.
    route_timeout_s: int = ROUTE_TIMEOUT_S


class XdsApp:
    """`load()` (raises ConfigError), then `await run(stop)`; `port` is set once listening."""

    def __init__(self, config: XdsConfig) -> None:
        self.config = config
        self.cache = ResourceCache()
        self.servicer = AdsServicer(self.cache)
        self.metrics = XdsMetrics(
            self.cache, self.servicer.counts, lambda: self.servicer.open_streams
        )
        # Service "" on the ADS port: SERVING once something is published (file mode: at
        # load; Kubernetes mode: once the pool, pods and policies are listed), for probes.
        self.health = HealthServicer()
        self.watcher: StateWatcher | None = None
        self._api_client: Any = None
        self.port = 0
        self.metrics_port = 0
        self.listening = asyncio.Event()
        self._ready_task: asyncio.Task[None] | None = None

    def load(self) -> None:
        """Read the config file, or prepare the Kubernetes client (nothing is listed yet)."""
        cfg = self.config
        if (cfg.config_file is None) == (cfg.kubernetes is None):
            raise ConfigError("exactly one configuration source: --config FILE or --pool-name NAME")
        if cfg.config_file is not None:
            watcher = ConfigWatcher(
                cfg.config_file, cfg.cluster_mode, self.cache, cfg.poll_interval,
                route_timeout_s=cfg.route_timeout_s,
            )  # fmt: skip
            watcher.load()
            self.watcher = watcher
            return
        assert cfg.kubernetes is not None
        from extproc.k8s.client import load_api_client
        from extproc.xds.kubernetes import KubernetesWatcher

        k8s = cfg.kubernetes
        self._api_client = load_api_client(k8s.kubeconfig)
        self.watcher = KubernetesWatcher(
            self._api_client, pool_name=k8s.pool_name, namespace=k8s.namespace,
            route_name=cfg.route_name, mode=cfg.cluster_mode, cache=self.cache, watch=k8s.watch,
            route_timeout_s=cfg.route_timeout_s,
        )  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        if self.watcher is None:
            self.load()
        assert self.watcher is not None
        # grpcio binds with SO_REUSEPORT by default: a stale server would silently share the port.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((self.servicer.handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        self.port = server.add_insecure_port(host_port(cfg.host, cfg.port))
        runner: web.AppRunner | None = None
        if cfg.metrics_port is not None:
            runner, self.metrics_port = await start_metrics_server(
                self.metrics.registry, cfg.host, cfg.metrics_port
            )
        await self._set_serving(bool(self.cache.versions()))
        self.cache.subscribe(self._published)
        await server.start()
        watch = asyncio.create_task(self.watcher.run(stop), name="xds-state-watcher")
        ports = f"xds={cfg.host}:{self.port}"
        if runner is not None:
            ports += f" metrics={cfg.host}:{self.metrics_port}"
        log.info("serving", host=cfg.host, port=self.port, metrics_port=self.metrics_port,
                 mode=cfg.cluster_mode)  # fmt: skip
        print(f"extproc xds serving {ports}", flush=True)
        self.listening.set()
        try:
            await stop.wait()
        finally:
            log.info("shutting_down", open_streams=self.servicer.open_streams)
            stop.set()
            self.cache.unsubscribe(self._published)
            await self._set_serving(False)
            await server.stop(STOP_GRACE_SECONDS)
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(watch, WATCHER_STOP_SECONDS)
            if self._api_client is not None:
                self._api_client.close()
            if runner is not None:
                await runner.cleanup()
            log.info("stopped")

    def _published(self, _: list[str]) -> None:
        """The first publication makes the server ready (later ones change nothing)."""
        self.cache.unsubscribe(self._published)
        # Held until done: the loop keeps only a weak reference to a task.
        self._ready_task = asyncio.get_running_loop().create_task(self._set_serving(True))

    async def _set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else _NOT_SERVING
        await self.health.set("", status)


_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
