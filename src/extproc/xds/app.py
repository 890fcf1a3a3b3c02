"""The xDS process: a state watcher (the config file or Kubernetes) and the ADS gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc

from extproc.envoyconf.ads import DEFAULT_XDS_PORT, ClusterMode
from extproc.errors import ConfigError
from extproc.k8s.settings import KubernetesSettings
from extproc.logs import get_logger
from extproc.xds import DEFAULT_HOST, DEFAULT_POLL_INTERVAL
from extproc.xds.cache import ResourceCache
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


class XdsApp:
    """`load()` (raises ConfigError), then `await run(stop)`; `port` is set once listening."""

    def __init__(self, config: XdsConfig) -> None:
        self.config = config
        self.cache = ResourceCache()
        self.servicer = AdsServicer(self.cache)
        self.watcher: StateWatcher | None = None
        self._api_client: Any = None
        self.port = 0
        self.listening = asyncio.Event()

    def load(self) -> None:
        """Read the config file, or prepare the Kubernetes client (nothing is listed yet)."""
        cfg = self.config
        if (cfg.config_file is None) == (cfg.kubernetes is None):
            raise ConfigError("exactly one configuration source: --config FILE or --pool-name NAME")
        if cfg.config_file is not None:
            watcher = ConfigWatcher(
                cfg.config_file, cfg.cluster_mode, self.cache, cfg.poll_interval
            )
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
        )  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        if self.watcher is None:
            self.load()
        assert self.watcher is not None
        # grpcio binds with SO_REUSEPORT by default: a stale server would silently share the port.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((self.servicer.handler(),))
        self.port = server.add_insecure_port(f"{cfg.host}:{cfg.port}")
        await server.start()
        watch = asyncio.create_task(self.watcher.run(stop), name="xds-state-watcher")
        log.info("serving", host=cfg.host, port=self.port, mode=cfg.cluster_mode)
        print(f"extproc xds serving xds={cfg.host}:{self.port}", flush=True)
        self.listening.set()
        try:
            await stop.wait()
        finally:
            log.info("shutting_down", open_streams=self.servicer.open_streams)
            stop.set()
            await server.stop(STOP_GRACE_SECONDS)
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(watch, WATCHER_STOP_SECONDS)
            if self._api_client is not None:
                self._api_client.close()
            log.info("stopped")
