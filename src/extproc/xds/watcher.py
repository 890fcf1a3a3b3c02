"""Re-read the static config file when it changes and publish the translated resources.

Polls the file's (mtime, size, inode) every `interval` seconds (no inotify: works on every
filesystem and with editors that replace the file). An invalid file is logged with the reason
(file, object, field) and the last good resources stay in force.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from extproc.config.reload import FileChanges
from extproc.config.static import StaticConfig, load_static_config
from extproc.envoyconf.ads import ClusterMode
from extproc.envoyconf.bootstrap import ROUTE_TIMEOUT_S
from extproc.errors import ConfigError
from extproc.logs import get_logger
from extproc.xds import DEFAULT_POLL_INTERVAL
from extproc.xds.cache import ResourceCache, short_types
from extproc.xds.resources import build_resources

log = get_logger(__name__)


class ConfigWatcher:
    def __init__(
        self,
        path: Path,
        mode: ClusterMode,
        cache: ResourceCache,
        interval: float = DEFAULT_POLL_INTERVAL,
        route_timeout_s: int = ROUTE_TIMEOUT_S,
    ) -> None:
        self.path = path
        self.mode = mode
        self.route_timeout_s = route_timeout_s
        self.cache = cache
        self.interval = interval
        self.config: StaticConfig | None = None
        self._changes = FileChanges(path)

    def load(self) -> StaticConfig:
        """First load: raise ConfigError (the process should not start on a bad file)."""
        self._changes = FileChanges(self.path)
        config = load_static_config(self.path)
        self._publish(config)
        return config

    def poll(self) -> bool:
        """Reload if the file changed; return True when new resources were published."""
        if not self._changes.changed():
            return False
        try:
            config = load_static_config(self.path)
        except ConfigError as exc:
            log.error(
                "config_rejected", file=str(self.path), error=str(exc),
                kept_versions=self.cache.versions_text(),
            )  # fmt: skip
            return False
        return self._publish(config)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.poll()
            except Exception:  # keep watching whatever happens to one reload
                log.error("config_reload_failed", file=str(self.path), exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    def _publish(self, config: StaticConfig) -> bool:
        self.config = config
        changed = self.cache.update(
            build_resources(config, self.mode, route_timeout_s=self.route_timeout_s)
        )
        log.info(
            "config_loaded", file=str(self.path), mode=self.mode, endpoints=len(config.endpoints),
            policies=len(config.policies), changed=short_types(changed),
            versions=self.cache.versions_text(),
        )  # fmt: skip
        return bool(changed)
