"""Fixtures: a fake API server on loopback and a KubernetesSource feeding a Datastore."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from extproc.datastore import Datastore
from extproc.k8s.client import load_api_client
from extproc.k8s.settings import WatchSettings
from extproc.k8s.source import KubernetesSource
from tests.unit.k8s.builders import POOL
from tests.unit.k8s.fake_apiserver import FakeApiServer

FAST_WATCH = WatchSettings(backoff=0.02, max_backoff=0.2, connect_timeout=2, list_timeout=5)


@pytest.fixture
async def apiserver() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def api_client(apiserver: FakeApiServer, tmp_path: Path) -> Any:
    client = load_api_client(apiserver.write_kubeconfig(tmp_path / "kubeconfig"))
    yield client
    client.close()


StartSource = Callable[[], Awaitable[tuple[KubernetesSource, Datastore]]]


@pytest.fixture
async def start_source(api_client: Any) -> AsyncIterator[StartSource]:
    sources: list[KubernetesSource] = []

    async def start() -> tuple[KubernetesSource, Datastore]:
        datastore = Datastore(random.Random(0))
        source = KubernetesSource(datastore, POOL, "default", api_client, watch=FAST_WATCH)
        sources.append(source)
        await source.start()
        return source, datastore

    yield start
    for source in sources:
        await source.stop()
