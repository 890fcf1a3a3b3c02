"""Kubernetes mode against a fake API server: the served clusters follow pods and policies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from grpc_health.v1 import health_pb2

from extproc.envoyconf.ads import ClusterMode
from extproc.envoyconf.bootstrap import POOL_CLUSTER, CircuitBreaker
from extproc.k8s.policies import POLICY_RESOURCE
from extproc.k8s.settings import KubernetesSettings
from extproc.xds.app import XdsConfig
from extproc.xds.cache import ResourceCache
from extproc.xds.kubernetes import KubernetesWatcher
from extproc.xds.resources import CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE
from tests.unit.k8s.builders import POOL, eventually, make_pod, make_pool
from tests.unit.k8s.conftest import FAST_WATCH
from tests.unit.k8s.fake_apiserver import FakeApiServer

from .builders import health, make_policy, running

DEFAULT_MAX_REQUESTS = CircuitBreaker().max_requests


def clusters(cache: ResourceCache) -> dict[str, Cluster]:
    snap = cache.get(CLUSTER_TYPE)
    assert snap is not None
    out = {}
    for name, packed in snap.resources.items():
        cluster = packed.unpack()
        assert isinstance(cluster, Cluster)
        out[name] = cluster
    return out


def max_requests(cache: ResourceCache, name: str = POOL_CLUSTER) -> int | None:
    if cache.get(CLUSTER_TYPE) is None:  # nothing published yet
        return None
    cluster = clusters(cache).get(name)
    if cluster is None or cluster.circuit_breakers is None:
        return None
    return cluster.circuit_breakers.thresholds[0].max_requests


def eds_addresses(cache: ResourceCache) -> list[str]:
    snap = cache.get(ENDPOINT_TYPE)
    assert snap is not None
    cla = snap.resources[POOL_CLUSTER].unpack()
    assert isinstance(cla, ClusterLoadAssignment)
    out = []
    for locality in cla.endpoints:
        for lb in locality.lb_endpoints:
            assert lb.endpoint is not None and lb.endpoint.address is not None
            sock = lb.endpoint.address.socket_address
            assert sock is not None
            out.append(f"{sock.address}:{sock.port_value}")
    return out


StartWatcher = Callable[..., Awaitable[KubernetesWatcher]]


@pytest.fixture
async def start_watcher(api_client: Any) -> AsyncIterator[StartWatcher]:
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(mode: ClusterMode = "pool", route_name: str | None = None) -> KubernetesWatcher:
        watcher = KubernetesWatcher(
            api_client, pool_name=POOL, namespace="default", route_name=route_name, mode=mode,
            cache=ResourceCache(), watch=FAST_WATCH,
        )  # fmt: skip
        stop = asyncio.Event()
        running.append((stop, asyncio.create_task(watcher.run(stop))))
        await asyncio.wait_for(watcher.synced.wait(), 5)
        return watcher

    yield start
    for stop, task in running:
        stop.set()
        await asyncio.wait_for(task, 10)


async def wait_max_requests(w: KubernetesWatcher, expected: int) -> None:
    await eventually(lambda: max_requests(w.cache) == expected, what=f"max_requests {expected}")


def _rejections(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        str(r.kv["error"])  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "invalid_policy_ignored"
    ]


async def test_nothing_is_published_before_both_sources_listed(
    apiserver: FakeApiServer, api_client: Any
) -> None:
    apiserver.put("inferencepools", make_pool())
    apiserver.fail_next[POLICY_RESOURCE] = [500] * 6  # the policy list fails for ~0.5 s
    cache = ResourceCache()
    watcher = KubernetesWatcher(
        api_client, pool_name=POOL, namespace="default", route_name=None, mode="pool",
        cache=cache, watch=FAST_WATCH,
    )  # fmt: skip
    apiserver.put(POLICY_RESOURCE, make_policy(maxParallelRequests=2))
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        await asyncio.wait_for(watcher.source.synced.wait(), 5)
        assert cache.get(CLUSTER_TYPE) is None  # no transient "no policy" cluster
        await asyncio.wait_for(watcher.synced.wait(), 5)
        assert max_requests(cache) == 2
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_per_endpoint_clusters_follow_ready_pods(
    apiserver: FakeApiServer, start_watcher: StartWatcher
) -> None:
    apiserver.put("inferencepools", make_pool())
    apiserver.put("pods", make_pod("p1", "10.0.0.1"))
    apiserver.put("pods", make_pod("p2", "10.0.0.2", ready=False))
    apiserver.put(POLICY_RESOURCE, make_policy(maxParallelRequests=1))
    w = await start_watcher("per-endpoint")
    assert sorted(clusters(w.cache)) == ["10.0.0.1:8000"]
    assert max_requests(w.cache, "10.0.0.1:8000") == 1

    apiserver.put("pods", make_pod("p2", "10.0.0.2"))  # turns Ready
    await eventually(lambda: sorted(clusters(w.cache)) == ["10.0.0.1:8000", "10.0.0.2:8000"])
    snap = w.cache.get(CLUSTER_TYPE)
    assert snap is not None
    p2_bytes = snap.wire["10.0.0.2:8000"]

    apiserver.delete("pods", "p1")
    await eventually(lambda: sorted(clusters(w.cache)) == ["10.0.0.2:8000"], what="p1 gone")
    snap = w.cache.get(CLUSTER_TYPE)
    assert snap is not None and snap.wire["10.0.0.2:8000"] == p2_bytes  # untouched in Envoy

    apiserver.put(POLICY_RESOURCE, make_policy(maxParallelRequests=4))
    await eventually(lambda: max_requests(w.cache, "10.0.0.2:8000") == 4, what="policy edit")

    apiserver.put("inferencepools", make_pool(port=9000))  # targetPortNumber change
    await eventually(lambda: sorted(clusters(w.cache)) == ["10.0.0.2:9000"], what="new port")

    apiserver.delete("inferencepools", POOL)  # no pool: no endpoints
    await eventually(lambda: clusters(w.cache) == {}, what="no clusters")


async def test_fail_open_assignment_follows_ready_pods(
    apiserver: FakeApiServer, start_watcher: StartWatcher
) -> None:
    apiserver.put("inferencepools", make_pool())
    apiserver.put("pods", make_pod("p1", "10.0.0.1"))
    w = await start_watcher("fail-open")
    assert eds_addresses(w.cache) == ["10.0.0.1:8000"]
    cluster_version = w.cache.versions()[CLUSTER_TYPE]

    apiserver.put("pods", make_pod("p2", "10.0.0.2"))
    await eventually(lambda: eds_addresses(w.cache) == ["10.0.0.1:8000", "10.0.0.2:8000"])
    apiserver.put("pods", make_pod("p1", "10.0.0.1", ready=False))
    await eventually(lambda: eds_addresses(w.cache) == ["10.0.0.2:8000"], what="p1 unready")
    assert w.cache.versions()[CLUSTER_TYPE] == cluster_version  # churn sends EDS only


def failure_mode_allow(cache: ResourceCache) -> bool | None:
    """The route's ext_proc override (None before anything is published)."""
    snap = cache.get(ROUTE_TYPE)
    if snap is None:
        return None
    (route,) = snap.resources["inference"].unpack().virtual_hosts[0].routes  # type: ignore[union-attr]
    allow: bool | None = (
        route.typed_per_filter_config["envoy.filters.http.ext_proc"]
        .unpack()
        .overrides.failure_mode_allow
    )  # type: ignore[union-attr]
    return allow


async def test_the_routes_failure_mode_follows_the_pools_extension_ref(
    apiserver: FakeApiServer, start_watcher: StartWatcher
) -> None:
    pool = make_pool()
    pool["spec"]["extensionRef"]["failureMode"] = "FailOpen"
    apiserver.put("inferencepools", pool)
    apiserver.put("pods", make_pod("p1", "10.0.0.1"))
    w = await start_watcher("fail-open")
    await eventually(lambda: failure_mode_allow(w.cache) is True, what="FailOpen")
    versions = w.cache.versions()

    pool["spec"]["extensionRef"]["failureMode"] = "FailClose"
    apiserver.put("inferencepools", pool)
    await eventually(lambda: failure_mode_allow(w.cache) is False, what="FailClose")
    # Only the route changed.
    changed = {t for t, v in w.cache.versions().items() if versions[t] != v}
    assert changed == {ROUTE_TYPE}

    apiserver.delete("inferencepools", POOL)  # no pool: fail closed
    await eventually(lambda: eds_addresses(w.cache) == [], what="no endpoints")
    assert failure_mode_allow(w.cache) is False


async def test_without_the_policy_crd_the_pool_is_served_with_default_thresholds(
    apiserver: FakeApiServer, start_watcher: StartWatcher
) -> None:
    # A standalone Envoy without Envoy Gateway: backendtrafficpolicies answers 404 until its
    # CRD is installed. The clusters must not wait for it.
    apiserver.fail_next[POLICY_RESOURCE] = [404] * 10_000
    apiserver.put("inferencepools", make_pool())
    apiserver.put("pods", make_pod("p1", "10.0.0.1"))
    w = await start_watcher("pool")
    assert max_requests(w.cache) == DEFAULT_MAX_REQUESTS
    # The CRD is installed and a policy created: it applies once the list is retried.
    apiserver.fail_next[POLICY_RESOURCE].clear()
    apiserver.put(POLICY_RESOURCE, make_policy(maxParallelRequests=2))
    await wait_max_requests(w, 2)


async def test_policy_create_update_delete(
    apiserver: FakeApiServer, start_watcher: StartWatcher
) -> None:
    apiserver.put("inferencepools", make_pool())
    w = await start_watcher("pool")
    assert max_requests(w.cache) == DEFAULT_MAX_REQUESTS  # no policy: Envoy's defaults

    apiserver.put(POLICY_RESOURCE, make_policy(maxParallelRequests=1, maxPendingRequests=1))
    await wait_max_requests(w, 1)
    breakers = clusters(w.cache)[POOL_CLUSTER].circuit_breakers
    assert breakers is not None and breakers.thresholds[0].max_pending_requests == 1

    apiserver.put(POLICY_RESOURCE, make_policy(maxParallelRequests=3, maxPendingRequests=1))
    await wait_max_requests(w, 3)

    apiserver.delete(POLICY_RESOURCE, "breaker")
    await wait_max_requests(w, DEFAULT_MAX_REQUESTS)


async def test_invalid_policy_is_ignored_and_last_good_kept(
    apiserver: FakeApiServer, start_watcher: StartWatcher, caplog: pytest.LogCaptureFixture
) -> None:
    apiserver.put("inferencepools", make_pool())
    apiserver.put(POLICY_RESOURCE, make_policy(maxParallelRequests=3))
    caplog.set_level(logging.ERROR, logger="extproc.k8s.policies")
    w = await start_watcher("pool")
    assert max_requests(w.cache) == 3
    version = w.cache.versions()[CLUSTER_TYPE]

    apiserver.put(POLICY_RESOURCE, make_policy(maxParallelRequests=-1))
    await eventually(lambda: len(_rejections(caplog)) == 1, what="rejection logged")
    assert _rejections(caplog)[0] == (
        "kubernetes: BackendTrafficPolicy/default/breaker: "
        "spec.circuitBreaker.maxParallelRequests: -1 is below the minimum 0"
    )
    record = next(r for r in caplog.records if r.getMessage() == "invalid_policy_ignored")
    assert record.kv["namespace"] == "default" and record.kv["name"] == "breaker"  # type: ignore[attr-defined]
    assert record.kv["kept_last_good"] is True  # type: ignore[attr-defined]

    unknown = make_policy("retries", maxParallelRequests=1)
    unknown["spec"]["retry"] = {"numRetries": 2}  # an Envoy Gateway feature not implemented
    apiserver.put(POLICY_RESOURCE, unknown)
    await eventually(lambda: len(_rejections(caplog)) == 2, what="second rejection")
    assert (
        "BackendTrafficPolicy/default/retries: spec: unknown field 'retry'"
        in (_rejections(caplog)[1])
    )

    # A relist (watch expired) sees the invalid objects again: still the last good thresholds.
    apiserver.expire_watches(POLICY_RESOURCE)
    await eventually(lambda: len(_rejections(caplog)) == 4, what="rejections after relist")
    await asyncio.sleep(0.05)
    assert max_requests(w.cache) == 3 and w.cache.versions()[CLUSTER_TYPE] == version

    apiserver.put(POLICY_RESOURCE, make_policy(maxParallelRequests=5))  # fixed
    await wait_max_requests(w, 5)
    apiserver.delete(POLICY_RESOURCE, "breaker")  # the invalid "retries" never counted
    await wait_max_requests(w, DEFAULT_MAX_REQUESTS)


async def test_policy_targeting_another_pool_is_ignored(
    apiserver: FakeApiServer, start_watcher: StartWatcher
) -> None:
    apiserver.put("inferencepools", make_pool())
    apiserver.put(POLICY_RESOURCE, make_policy("other", target="other-pool", maxParallelRequests=7))
    w = await start_watcher("pool")
    assert max_requests(w.cache) == DEFAULT_MAX_REQUESTS

    # Events arrive in order: once "mine" shows, "other-edit" was handled (and ignored).
    apiserver.put(POLICY_RESOURCE, make_policy("other", target="other-pool", maxParallelRequests=8))
    apiserver.put(POLICY_RESOURCE, make_policy("mine", maxParallelRequests=2))
    await wait_max_requests(w, 2)
    apiserver.delete(POLICY_RESOURCE, "mine")
    await wait_max_requests(w, DEFAULT_MAX_REQUESTS)


@pytest.mark.parametrize(
    ("route_name", "expected"),
    [
        pytest.param(None, 6, id="any-route-by-default"),
        pytest.param("llm-route", 6, id="named-route"),
        pytest.param("other-route", DEFAULT_MAX_REQUESTS, id="another-route-ignored"),
    ],
)
async def test_route_policies(
    apiserver: FakeApiServer, start_watcher: StartWatcher, route_name: str | None, expected: int
) -> None:
    apiserver.put("inferencepools", make_pool())
    apiserver.put(POLICY_RESOURCE, make_policy(kind="HTTPRoute", target="llm-route",
                                               maxParallelRequests=6))  # fmt: skip
    w = await start_watcher("pool", route_name)
    assert max_requests(w.cache) == expected

    apiserver.put(POLICY_RESOURCE, make_policy("direct", maxParallelRequests=2))
    await wait_max_requests(w, 2)  # a policy on the InferencePool beats one on the route


def _kubernetes_config(apiserver: FakeApiServer, tmp_path: Path) -> XdsConfig:
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    settings = KubernetesSettings(pool_name=POOL, kubeconfig=kubeconfig, watch=FAST_WATCH)
    return XdsConfig(kubernetes=settings, port=0)


async def test_app_is_ready_once_it_has_published(apiserver: FakeApiServer, tmp_path: Path) -> None:
    apiserver.put("inferencepools", make_pool())
    apiserver.fail_next[POLICY_RESOURCE] = [500] * 10_000  # the policies cannot be listed yet
    async with running(_kubernetes_config(apiserver, tmp_path)) as app:
        assert await health(app) == health_pb2.HealthCheckResponse.NOT_SERVING
        apiserver.fail_next[POLICY_RESOURCE].clear()
        await eventually(lambda: max_requests(app.cache) is not None, what="published")
        for _ in range(100):  # the status is set by a task the publication starts
            if await health(app) == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.01)
        assert await health(app) == health_pb2.HealthCheckResponse.SERVING


async def test_app_in_kubernetes_mode_serves_and_stops(
    apiserver: FakeApiServer, tmp_path: Path
) -> None:
    apiserver.put("inferencepools", make_pool())
    apiserver.put(POLICY_RESOURCE, make_policy(maxParallelRequests=1))
    async with running(_kubernetes_config(apiserver, tmp_path)) as app:
        assert app.port > 0
        await eventually(lambda: max_requests(app.cache) == 1, what="published")
        apiserver.put(POLICY_RESOURCE, make_policy(maxParallelRequests=3))
        await eventually(lambda: max_requests(app.cache) == 3, what="policy edit")
