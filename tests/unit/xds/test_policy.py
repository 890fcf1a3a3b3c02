"""BackendTrafficPolicy: reading, validation messages, precedence and translation."""

from __future__ import annotations

from typing import Any

import pytest

from extproc.config.static import parse_static_config
from extproc.envoyconf.bootstrap import CircuitBreaker
from extproc.envoyconf.policy import CircuitBreakerSpec, policy_for_pool
from extproc.errors import ConfigError

from .builders import config_text, endpoints_doc, policy_doc


def _parse(*docs: str) -> Any:
    return parse_static_config(config_text(endpoints_doc("10.0.0.1:8000"), *docs), "cfg.yaml")


def test_policy_is_read_into_static_config() -> None:
    cfg = _parse(policy_doc(maxParallelRequests=3, maxPendingRequests=1))
    (policy,) = cfg.policies
    assert policy.name == "breaker"
    assert policy.circuit_breaker.max_parallel_requests == 3
    assert policy.circuit_breaker.max_pending_requests == 1
    assert policy.circuit_breaker.max_connections is None


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        pytest.param(CircuitBreakerSpec(), CircuitBreaker(), id="unset-keeps-envoy-defaults"),
        pytest.param(
            CircuitBreakerSpec(
                max_connections=10,
                max_pending_requests=2,
                max_parallel_requests=3,
                max_parallel_retries=0,
                max_requests_per_connection=5,
            ),
            CircuitBreaker(
                max_connections=10, max_pending_requests=2, max_requests=3, max_retries=0
            ),
            id="every-field-mapped",
        ),
        pytest.param(
            CircuitBreakerSpec(max_parallel_requests=1),
            CircuitBreaker(max_requests=1),
            id="maxParallelRequests-is-max_requests",
        ),
    ],
)
def test_thresholds(spec: CircuitBreakerSpec, want: CircuitBreaker) -> None:
    assert spec.thresholds() == want


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        pytest.param(
            policy_doc(maxParallelRequests=-1),
            "cfg.yaml: BackendTrafficPolicy/breaker: spec.circuitBreaker.maxParallelRequests: "
            "-1 is below the minimum 0",
            id="negative",
        ),
        pytest.param(
            policy_doc(maxPendingRequests=1.5),
            "cfg.yaml: BackendTrafficPolicy/breaker: spec.circuitBreaker.maxPendingRequests: "
            "expected an integer, got a number",
            id="float",
        ),
        pytest.param(
            policy_doc(maxConnections="10"),
            "spec.circuitBreaker.maxConnections: expected an integer, got a string",
            id="string",
        ),
        pytest.param(
            policy_doc(maxRequestsPerConnection=True),
            "spec.circuitBreaker.maxRequestsPerConnection: expected an integer, got a boolean",
            id="boolean",
        ),
        pytest.param(
            policy_doc(maxParallelRetries=2**32),
            "spec.circuitBreaker.maxParallelRetries: 4294967296 is above the maximum",
            id="above-uint32",
        ),
        pytest.param(
            policy_doc(maxParallelRequest=3),
            "BackendTrafficPolicy/breaker: spec.circuitBreaker: unknown field 'maxParallelRequest'",
            id="unknown-breaker-field",
        ),
        pytest.param(
            policy_doc(spec_extra={"retry": {}}, maxParallelRequests=1),
            "BackendTrafficPolicy/breaker: spec: unknown field 'retry'",
            id="unknown-spec-field",
        ),
        pytest.param(
            policy_doc(target={"kind": "Service", "name": "x"}),
            "spec.targetRefs[0].kind: 'Service' is not one of 'HTTPRoute', 'InferencePool'",
            id="bad-target-kind",
        ),
        pytest.param(
            policy_doc(target={"kind": "InferencePool", "name": "x", "group": "apps"}),
            "spec.targetRefs[0].group: 'apps' is not one of 'inference.networking.x-k8s.io'",
            id="bad-target-group",
        ),
    ],
)
def test_invalid_policy_names_file_object_field(doc: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _parse(doc)
    assert message in str(err.value)


def test_policy_without_target_is_rejected() -> None:
    doc = policy_doc(maxParallelRequests=1).replace(
        "targetRefs:\n  - kind: InferencePool\n    name: pool\n", ""
    )
    with pytest.raises(ConfigError, match="set targetRefs"):
        _parse(doc)


def test_single_target_ref_is_accepted() -> None:
    doc = policy_doc(maxParallelRequests=1).replace(
        "targetRefs:\n  - kind: InferencePool\n    name: pool\n",
        "targetRef: {kind: InferencePool, name: pool}\n",
    )
    assert _parse(doc).policies[0].target_refs[0].name == "pool"


def test_pool_policy_beats_route_policy_and_oldest_wins() -> None:
    cfg = _parse(
        policy_doc("route", target={"kind": "HTTPRoute", "name": "r"}, maxParallelRequests=9),
        policy_doc("second", maxParallelRequests=2),
        policy_doc("other-pool", target={"kind": "InferencePool", "name": "x"}),
        policy_doc("third", maxParallelRequests=3),
    )
    chosen = policy_for_pool(cfg.policies, "pool")
    assert chosen is not None and chosen.name == "second"
    route_only = policy_for_pool(cfg.policies[:1], "pool")
    assert route_only is not None and route_only.name == "route"
    assert policy_for_pool(cfg.policies[2:3], "pool") is None
