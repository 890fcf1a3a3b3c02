"""The xDS process: the config watcher and the ADS gRPC server, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import grpc

from extproc.envoyconf.ads import DEFAULT_XDS_PORT, ClusterMode
from extproc.logs import get_logger
from extproc.xds import DEFAULT_HOST, DEFAULT_POLL_INTERVAL
from extproc.xds.cache import ResourceCache
from extproc.xds.server import AdsServicer
from extproc.xds.watcher import ConfigWatcher

log = get_logger(__name__)
# Open ADS streams never end on their own; on shutdown they get this long, then are cancelled.
STOP_GRACE_SECONDS = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class XdsConfig:
    config_file: Path
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
        self.watcher = ConfigWatcher(
            config.config_file, config.cluster_mode, self.cache, config.poll_interval
        )
        self.port = 0
        self.listening = asyncio.Event()

    def load(self) -> None:
        self.watcher.load()

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        # grpcio binds with SO_REUSEPORT by default: a stale server would silently share the port.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((self.servicer.handler(),))
        self.port = server.add_insecure_port(f"{cfg.host}:{cfg.port}")
        await server.start()
        watch = asyncio.create_task(self.watcher.run(stop), name="xds-config-watcher")
        log.info("serving", host=cfg.host, port=self.port, mode=cfg.cluster_mode)
        print(f"extproc xds serving xds={cfg.host}:{self.port}", flush=True)
        self.listening.set()
        try:
            await stop.wait()
        finally:
            log.info("shutting_down", open_streams=self.servicer.open_streams)
            stop.set()
            await server.stop(STOP_GRACE_SECONDS)
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            log.info("stopped")
