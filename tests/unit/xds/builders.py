"""Builders for xDS tests: static config text with policies, parsed configs, policy objects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import yaml
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest
from envoy_data_plane.google.rpc import Status
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc.config.static import StaticConfig, parse_static_config
from extproc.envoyconf.policy import TARGET_GROUPS
from extproc.xds.app import XdsApp, XdsConfig
from extproc.xds.cache import ResourceCache
from extproc.xds.resources import CLUSTER_TYPE, build_resources
from tests.unit.config.test_static import POOL
from tests.unit.k8s.builders import POOL as K8S_POOL


def endpoints_doc(*addresses: str) -> str:
    doc = {
        "apiVersion": "extproc.local/v1alpha1",
        "kind": "StaticEndpoints",
        "metadata": {"name": "pool"},
        "spec": {
            "poolRef": {"name": "pool"},
            "endpoints": [{"name": f"p{i}", "address": a} for i, a in enumerate(addresses)],
        },
    }
    return yaml.safe_dump(doc)


def policy_doc(
    name: str = "breaker",
    *,
    target: dict[str, Any] | None = None,
    spec_extra: dict[str, Any] | None = None,
    **breaker: Any,
) -> str:
    spec: dict[str, Any] = {
        "targetRefs": [target or {"kind": "InferencePool", "name": "pool"}],
        "circuitBreaker": breaker,
        **(spec_extra or {}),
    }
    doc = {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "BackendTrafficPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }
    return yaml.safe_dump(doc)


def config_text(*docs: str) -> str:
    return "---\n".join([POOL, *docs])


def make_config(*addresses: str, failure_mode: str | None = None, **breaker: Any) -> StaticConfig:
    docs = [endpoints_doc(*addresses)]
    if breaker:
        docs.append(policy_doc(**breaker))
    text = config_text(*docs)
    if failure_mode is not None:
        ref = "extensionRef: {name: epp}"
        text = text.replace(ref, f"extensionRef: {{name: epp, failureMode: {failure_mode}}}", 1)
    return parse_static_config(text, "cfg.yaml")


def make_policy(
    name: str = "breaker", *, kind: str = "InferencePool", target: str = K8S_POOL, **breaker: Any
) -> dict[str, Any]:
    """A BackendTrafficPolicy object as the API server returns it."""
    return {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "BackendTrafficPolicy",
        "metadata": {"name": name, "namespace": "default", "generation": 1},
        "spec": {
            "targetRefs": [{"group": TARGET_GROUPS[kind], "kind": kind, "name": target}],
            "circuitBreaker": breaker,
        },
        "status": {"ancestors": []},
    }


def served_cache(mode: str = "pool", **breaker: int) -> ResourceCache:
    """A cache serving two endpoints' resources in `mode`."""
    cache = ResourceCache()
    cache.update(build_resources(make_config("10.0.0.1:8000", "10.0.0.2:8000", **breaker), mode))  # type: ignore[arg-type]
    return cache


def discovery_request(
    type_url: str = CLUSTER_TYPE,
    *,
    version: str = "",
    nonce: str = "",
    names: tuple[str, ...] = (),
    error: str = "",
) -> DiscoveryRequest:
    """What Envoy sends: a subscription, an ACK (`nonce`) or a NACK (`nonce` and `error`)."""
    return DiscoveryRequest(
        version_info=version,
        node=Node(id="envoy-1"),
        resource_names=list(names),
        type_url=type_url,
        response_nonce=nonce,
        error_detail=Status(code=3, message=error) if error else None,
    )


@asynccontextmanager
async def running(config: XdsConfig) -> AsyncIterator[XdsApp]:
    """An `XdsApp` loaded and listening; stopped on exit."""
    app = XdsApp(config)
    app.load()
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        await asyncio.wait_for(app.listening.wait(), 5)
        yield app
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def health(app: XdsApp) -> Any:
    """The gRPC health status of service "" on the app's ADS port."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        return (await check(health_pb2.HealthCheckRequest(service=""), timeout=5)).status
