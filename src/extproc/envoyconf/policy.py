"""Envoy Gateway's `BackendTrafficPolicy` (circuit breaker part) as frozen data, and its reading.

Only ``spec.targetRefs`` / ``spec.targetRef`` and ``spec.circuitBreaker`` are understood; any
other spec field is rejected so that a policy cannot silently do less than its author meant::

    apiVersion: gateway.envoyproxy.io/v1alpha1
    kind: BackendTrafficPolicy
    metadata: {name: pool-breaker}
    spec:
      targetRefs:
        - {group: inference.networking.x-k8s.io, kind: InferencePool, name: vllm-llama2-7b-pool}
      circuitBreaker:
        maxParallelRequests: 3      # -> max_requests
        maxPendingRequests: 1       # -> max_pending_requests
        maxConnections: 1024        # -> max_connections
        maxParallelRetries: 3       # -> max_retries
        maxRequestsPerConnection: 0 # -> HttpProtocolOptions.common_http_protocol_options
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from extproc.config.strict import Fields
from extproc.envoyconf.bootstrap import CircuitBreaker
from extproc.errors import ConfigError

POLICY_API_VERSION = "gateway.envoyproxy.io/v1alpha1"
POLICY_KIND = "BackendTrafficPolicy"
TargetKind = Literal["HTTPRoute", "InferencePool"]
TARGET_KINDS: tuple[TargetKind, ...] = ("HTTPRoute", "InferencePool")
TARGET_GROUPS = {
    "HTTPRoute": "gateway.networking.k8s.io",
    "InferencePool": "inference.networking.x-k8s.io",
}
_KINDS = "an InferencePool or an HTTPRoute"
# Envoy's thresholds are uint32 wrappers.
UINT32_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetRef:
    group: str
    kind: TargetKind
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakerSpec:
    """`spec.circuitBreaker`; None means "not set" (Envoy's default applies)."""

    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_parallel_requests: int | None = None
    max_parallel_retries: int | None = None
    max_requests_per_connection: int | None = None

    def thresholds(self) -> CircuitBreaker:
        """Envoy `circuit_breakers.thresholds` (unset fields keep Envoy's defaults)."""
        default = CircuitBreaker()
        return CircuitBreaker(
            max_connections=_or(self.max_connections, default.max_connections),
            max_pending_requests=_or(self.max_pending_requests, default.max_pending_requests),
            max_requests=_or(self.max_parallel_requests, default.max_requests),
            max_retries=_or(self.max_parallel_retries, default.max_retries),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendTrafficPolicy:
    name: str
    namespace: str = "default"
    target_refs: tuple[TargetRef, ...]
    circuit_breaker: CircuitBreakerSpec
    # (creationTimestamp, document index): the oldest policy wins a conflict.
    age_key: tuple[str, int] = ("", 0)

    def targets(self, kind: TargetKind, name: str | None = None) -> bool:
        return any(r.kind == kind and (name is None or r.name == name) for r in self.target_refs)


def parse_policy(
    spec: Fields, name: str, namespace: str, age: tuple[str, int]
) -> BackendTrafficPolicy:
    """Read a BackendTrafficPolicy `spec`; ConfigError names file, object and field."""
    refs: list[TargetRef] = []
    raw_refs = spec.sequence("targetRefs", [])
    for i, raw in enumerate(raw_refs):
        refs.append(_target_ref(Fields(raw, f"{spec.where}.targetRefs[{i}]")))
    single = spec.sub("targetRef", required=False)
    if single is not None:
        refs.append(_target_ref(single))
    if not refs:
        raise ConfigError(f"{spec.where}: set targetRefs (or targetRef) to a {_KINDS}")
    cb = spec.sub("circuitBreaker", required=False)
    breaker = CircuitBreakerSpec()
    if cb is not None:
        breaker = CircuitBreakerSpec(
            max_connections=cb.integer("maxConnections", None, lo=0, hi=UINT32_MAX),
            max_pending_requests=cb.integer("maxPendingRequests", None, lo=0, hi=UINT32_MAX),
            max_parallel_requests=cb.integer("maxParallelRequests", None, lo=0, hi=UINT32_MAX),
            max_parallel_retries=cb.integer("maxParallelRetries", None, lo=0, hi=UINT32_MAX),
            max_requests_per_connection=cb.integer(
                "maxRequestsPerConnection", None, lo=0, hi=UINT32_MAX
            ),
        )
        cb.done()
    spec.done()
    return BackendTrafficPolicy(
        name=name,
        namespace=namespace,
        target_refs=tuple(refs),
        circuit_breaker=breaker,
        age_key=age,
    )


def parse_policy_object(obj: object, where: str, order: int = 0) -> BackendTrafficPolicy:
    """A BackendTrafficPolicy as the API server returns it (metadata read leniently).

    The spec goes through `parse_policy`, the static file's reader, so both sources accept and
    reject exactly the same documents. Errors start with ``where: BackendTrafficPolicy/NS/NAME``.
    """
    head = Fields(obj, where)
    head.choice("kind", (POLICY_KIND,), POLICY_KIND)
    head.choice("apiVersion", (POLICY_API_VERSION,), POLICY_API_VERSION)
    meta = head.sub("metadata")
    assert meta is not None
    name = meta.string("name")
    namespace = meta.string("namespace", "default")
    created = meta.string("creationTimestamp", "")
    spec = head.sub("spec")
    assert spec is not None
    spec.where = f"{where}: {POLICY_KIND}/{namespace}/{name}: spec"
    return parse_policy(spec, name, namespace, (created, order))


def policy_for_pool(
    policies: Sequence[BackendTrafficPolicy], pool_name: str, route_name: str | None = None
) -> BackendTrafficPolicy | None:
    """The policy that governs the pool's cluster(s).

    A policy naming the InferencePool beats one attached to an HTTPRoute; among equals the
    oldest wins, as in Gateway API conflict resolution. `route_name` None accepts any HTTPRoute
    (the static config has one route: the one in front of the pool); otherwise only that one.
    """
    direct = [p for p in policies if p.targets("InferencePool", pool_name)]
    routed = [p for p in policies if p.targets("HTTPRoute", route_name)]
    chosen = direct or routed
    return min(chosen, key=lambda p: p.age_key) if chosen else None


def _target_ref(ref: Fields) -> TargetRef:
    kind = ref.choice("kind", TARGET_KINDS)
    group = ref.choice("group", (TARGET_GROUPS[kind],), TARGET_GROUPS[kind])
    name = ref.string("name")
    ref.ignore("namespace", "sectionName")
    ref.done()
    return TargetRef(group=group, kind=kind, name=name)


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
