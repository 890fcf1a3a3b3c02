"""Plugin kinds of a scheduling profile: filters, scorers, pickers and post-pick hooks.

Plugins are synchronous and pure: no I/O, no await. They read a SchedulingContext; the
framework applies weights, clamps scores to [0, 1] and times every call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

from extproc.config.strict import Fields
from extproc.endpoints import Endpoint
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.types import LLMRequest
from extproc.scraper.snapshot import EndpointMetrics


class Plugin:
    """A named instance of a plugin type (the kebab-case key of the registry)."""

    plugin_type: ClassVar[str] = ""

    def __init__(self, name: str) -> None:
        self.name = name

    def dependencies(self) -> Sequence[Plugin]:
        """Other plugins this one reads (their post-pick hooks must run with it)."""
        return ()


class Filter(Plugin, ABC):
    @abstractmethod
    def filter(self, ctx: SchedulingContext) -> Sequence[int]:
        """Indices of the endpoints to keep. An empty result makes the framework keep all."""


class Scorer(Plugin, ABC):
    # True when `score` provably returns values in [0, 1] and never NaN, whatever the inputs;
    # the framework then skips its clamp check (two passes per scorer per cycle).
    bounded: ClassVar[bool] = False

    @abstractmethod
    def score(self, ctx: SchedulingContext) -> Sequence[float]:
        """One score per endpoint, ideally in [0, 1] (the framework clamps)."""


class Picker(Plugin, ABC):
    @abstractmethod
    def pick(self, ctx: SchedulingContext, scores: Sequence[float], count: int) -> list[int]:
        """Up to `count` distinct indices, best first (primary, then fallbacks)."""


class PostPick(ABC):
    """Mixin for plugins that learn from the decision (e.g. the prefix index)."""

    @abstractmethod
    def post_pick(
        self,
        request: LLMRequest,
        state: dict[str, object],
        endpoint: Endpoint,
        metrics: EndpointMetrics | None,
    ) -> None: ...

    def forget(self, address: str) -> None:  # noqa: B027 - optional hook, no-op by default
        """Drop what was learnt about an endpoint that left the pool (default: nothing)."""


PluginFactory = Callable[[str, Fields, PluginHandle], Plugin]
