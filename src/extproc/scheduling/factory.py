"""Building plugins, profiles and the Scheduler from an EndpointPickerConfig."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from extproc.config.strict import Fields
from extproc.endpoints import Endpoint
from extproc.errors import ConfigError
from extproc.metrics import PickerMetrics
from extproc.scheduling.config import EndpointPickerConfig, ProfileSpec, load_profile
from extproc.scheduling.context import PluginHandle
from extproc.scheduling.framework import SchedulingProfile, WeightedScorer
from extproc.scheduling.inflight import InFlight
from extproc.scheduling.plugin import Filter, Picker, Plugin, PostPick, Scorer
from extproc.scheduling.plugins.max_score_picker import MaxScorePicker
from extproc.scheduling.registry import REGISTRY
from extproc.scheduling.saturation import SaturationDetector
from extproc.scheduling.scheduler import Scheduler
from extproc.scraper.snapshot import MetricsStore

DEFAULT_WEIGHT = 1.0


class EndpointSource(Protocol):
    def endpoints(self) -> tuple[Endpoint, ...]: ...


def instantiate(
    config: EndpointPickerConfig, rng: random.Random, handle: PluginHandle | None = None
) -> dict[str, Plugin]:
    """Build every declared plugin in order; unknown parameters are errors naming the key."""
    handle = handle or PluginHandle(rng)
    plugins: dict[str, Plugin] = {}
    for spec in config.plugins:
        params = Fields(spec.parameters, f"{spec.where}: parameters")
        plugin = REGISTRY[spec.type](spec.name, params, handle)
        params.done()
        plugins[spec.name] = plugin
        handle.add(spec.name, plugin)
    return plugins


def build_profile(
    spec: ProfileSpec,
    plugins: dict[str, Plugin],
    rng: random.Random,
    metrics: PickerMetrics | None = None,
) -> tuple[SchedulingProfile, list[PostPick]]:
    """The profile's filters (in order), weighted scorers and its one picker (default
    max-score-picker), plus the post-pick hooks among its plugins."""
    filters: list[Filter] = []
    scorers: list[WeightedScorer] = []
    picker: Picker | None = None
    hooks: list[PostPick] = []
    for ref in spec.plugins:
        plugin = plugins[ref.plugin_ref]
        if ref.weight is not None and not isinstance(plugin, Scorer):
            raise ConfigError(f"{ref.where}.weight: only scorers take a weight")
        if isinstance(plugin, Filter):
            filters.append(plugin)
        elif isinstance(plugin, Scorer):
            weight = DEFAULT_WEIGHT if ref.weight is None else ref.weight
            scorers.append(WeightedScorer(plugin, weight))
        elif isinstance(plugin, Picker):
            if picker is not None:
                raise ConfigError(
                    f"{ref.where}: a second picker in profile {spec.name!r} "
                    f"(it has {picker.name!r} already)"
                )
            picker = plugin
        # A plugin's post-pick hooks run whenever it is in the profile, and so do those of the
        # plugins it reads (prefill-scorer's prefix index learns even if its scorer is absent).
        for hooked in (*plugin.dependencies(), plugin):
            if isinstance(hooked, PostPick) and hooked not in hooks:
                hooks.append(hooked)
    if picker is None:
        picker = MaxScorePicker("max-score-picker", rng)
    profile = SchedulingProfile(
        spec.name, filters=filters, scorers=scorers, picker=picker, metrics=metrics
    )
    return profile, hooks


def build_scheduler(
    config: str | Path | EndpointPickerConfig,
    *,
    datastore: EndpointSource,
    store: MetricsStore,
    inflight: InFlight,
    metrics: PickerMetrics | None,
    rng: random.Random,
    fallbacks: int = 0,
    profile: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Scheduler:
    """The Scheduler for `config`: a shipped profile name, a config file path, or a parsed config.

    `profile` selects a scheduling profile by name (default: the first). `fallbacks` is how
    many ordered fallback endpoints follow the primary. Raises ConfigError on invalid config.
    """
    parsed = config if isinstance(config, EndpointPickerConfig) else load_profile(config)
    handle = PluginHandle(rng, inflight)
    plugins = instantiate(parsed, rng, handle)
    spec = parsed.profiles[0]
    if profile is not None:
        found = [p for p in parsed.profiles if p.name == profile]
        if not found:
            raise ConfigError(f"{parsed.source}: no scheduling profile named {profile!r}")
        spec = found[0]
    for other in parsed.profiles:  # every profile is checked, not only the one in use
        if other is not spec:
            build_profile(other, plugins, rng)
    built, hooks = build_profile(spec, plugins, rng, metrics)
    scheduler = Scheduler(
        endpoints=datastore.endpoints,
        store=store,
        inflight=inflight,
        profile=built,
        saturation=SaturationDetector(parsed.saturation),
        rng=rng,
        post_pick=hooks,
        metrics=metrics,
        fallbacks=fallbacks,
        clock=clock,
    )
    scheduler.watchers = tuple(handle.watchers)
    return scheduler
