"""Runs N simulated pods in one event loop; usable from the CLI and from tests.

async with SimCluster(SimConfig(pods=2, speed=20)) as cluster:
    cluster.addresses  # ["127.0.0.1:41233", "127.0.0.1:38811"]
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from extproc.logs import get_logger
from extproc.sim.config import SimConfig
from extproc.sim.server import PodServer

log = get_logger(__name__)


class SimCluster:
    """The pods of one SimConfig. ``start`` binds every port (all or none); ``stop`` drains."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.pods = [PodServer(config, i) for i in range(config.pods)]
        self._started = False

    @property
    def addresses(self) -> list[str]:
        """``ip:port`` of each pod, in pod order (valid after start)."""
        return [pod.address for pod in self.pods]

    def pod(self, name_or_address: str) -> PodServer:
        """The pod with this name (``sim-0``) or address; KeyError otherwise."""
        for pod in self.pods:
            if name_or_address in (pod.name, pod.address):
                return pod
        raise KeyError(name_or_address)

    async def crash(self, name_or_address: str) -> None:
        """Make one pod stop listening and drop its connections (as ``POST /admin/crash``)."""
        await self.pod(name_or_address).crash()

    async def restart(self, name_or_address: str) -> None:
        """Make a crashed pod listen again on its address."""
        await self.pod(name_or_address).restart()

    async def start(self) -> None:
        try:
            for pod in self.pods:
                await pod.start()
        except BaseException:
            await self.stop()
            raise
        self._started = True
        log.info(
            "cluster_ready",
            pods=len(self.pods),
            profile=self.config.profile.name,
            speed=self.config.speed,
        )

    async def stop(self) -> None:
        await asyncio.gather(*(pod.stop() for pod in self.pods))
        self._started = False

    async def __aenter__(self) -> SimCluster:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
