"""Builders of Kubernetes objects as the API server returns them, and a bounded poll helper."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

POOL = "vllm-pool"
SELECTOR = {"app": "vllm"}
PORT = 8000


def make_pod(
    name: str,
    ip: str | None = "10.0.0.1",
    *,
    labels: dict[str, str] | None = None,
    ready: bool = True,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default",
                            "labels": SELECTOR if labels is None else labels}  # fmt: skip
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    status: dict[str, Any] = {
        "phase": "Running",
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True" if ready else "False"},
        ],
    }
    if ip is not None:
        status["podIP"] = ip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "vllm"}]}, "status": status}  # fmt: skip


def make_pool(
    name: str = POOL, *, selector: dict[str, str] | None = None, port: int = PORT
) -> dict[str, Any]:
    return {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferencePool",
        "metadata": {
            "name": name,
            "namespace": "default",
            "generation": 1,
            "uid": "u-" + name,
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {
            "selector": SELECTOR if selector is None else selector,
            "targetPortNumber": port,
            "extensionRef": {"name": "epp"},
        },
        "status": {"parent": []},
    }


def make_model(
    name: str,
    model_name: str,
    *,
    pool: str = POOL,
    created: str | None = None,
    criticality: str | None = None,
    targets: list[str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"modelName": model_name, "poolRef": {"name": pool}}
    if criticality:
        spec["criticality"] = criticality
    if targets:
        spec["targetModels"] = [{"name": t, "weight": 1} for t in targets]
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if created:
        meta["creationTimestamp"] = created
    return {"apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferenceModel",
            "metadata": meta, "spec": spec}  # fmt: skip


async def eventually(
    predicate: Callable[[], Any], within: float = 5.0, what: str = "condition"
) -> None:
    """Poll `predicate` every 10 ms until true; fail with `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        last = predicate()
        if last:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)
