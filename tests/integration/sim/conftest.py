"""Fixtures: simulator clusters on free loopback ports, and an HTTP client."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from extproc.sim.cluster import SimCluster
from extproc.sim.config import SimConfig
from extproc.sim.profiles import A10_7B

StartCluster = Callable[..., Awaitable[SimCluster]]


@pytest.fixture
async def start_cluster() -> AsyncIterator[StartCluster]:
    """``await start_cluster(pods=2, speed=20, num_gpu_blocks=64, ...)``; stopped at teardown.

    Keyword arguments naming Profile fields override the a10-7b profile; the rest go to
    SimConfig.
    """
    clusters: list[SimCluster] = []
    profile_fields = {f.name for f in dataclasses.fields(A10_7B)}

    async def start(**kwargs: Any) -> SimCluster:
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in profile_fields}
        kwargs.setdefault("speed", 20.0)
        config = SimConfig(profile=dataclasses.replace(A10_7B, **overrides), **kwargs)
        cluster = SimCluster(config)
        await cluster.start()
        clusters.append(cluster)
        return cluster

    yield start
    for cluster in clusters:
        await cluster.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session
