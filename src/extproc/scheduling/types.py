"""The request and result types of a scheduling cycle, and the picker interface."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from extproc.api.v1alpha2 import Criticality
from extproc.endpoints import Endpoint

if TYPE_CHECKING:
    from extproc.config.reload import StaticConfigReloader


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMRequest:
    """What scheduling may look at: never wire state, never the raw body bytes."""

    request_id: str
    model: str
    target_model: str
    criticality: Criticality = "Standard"
    # The decoded JSON body (for prompt-aware plugins); empty for header-only requests.
    body: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    # IPs the proxy allows (Envoy's subset hint); None means no restriction.
    subset: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class PickResult:
    """The chosen endpoint first, then ordered fallbacks."""

    endpoints: tuple[Endpoint, ...]
    # Prompt tokens the primary endpoint is estimated to prefill for this request (its prompt
    # minus the prefix it likely holds); 0 when no plugin estimated it.
    prefill_tokens: int = 0

    @property
    def primary(self) -> Endpoint:
        return self.endpoints[0]


class EndpointPicker(Protocol):
    """Pick endpoints for a request; raise NoEndpoint or PoolSaturated when it cannot."""

    def pick(self, request: LLMRequest) -> PickResult: ...


@runtime_checkable
class FollowsFiles(Protocol):
    """A picker whose plugins follow files (e.g. an `endpoint-capacity-filter` staticConfig):
    the app runs these reloaders, off the hot path."""

    watchers: tuple[StaticConfigReloader, ...]
