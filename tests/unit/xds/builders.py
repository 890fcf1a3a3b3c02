"""Builders for xDS tests: static config text with policies, and parsed configs."""

from __future__ import annotations

from typing import Any

import yaml

from extproc.config.static import StaticConfig, parse_static_config

POOL = """\
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: pool}
spec:
  targetPortNumber: 8000
  selector: {app: vllm}
  extensionRef: {name: epp}
"""


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


def make_config(*addresses: str, **breaker: Any) -> StaticConfig:
    docs = [endpoints_doc(*addresses)]
    if breaker:
        docs.append(policy_doc(**breaker))
    return parse_static_config(config_text(*docs), "cfg.yaml")
