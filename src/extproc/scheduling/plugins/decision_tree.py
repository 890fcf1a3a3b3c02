"""decision-tree: the v0.3 filter chain, different for Critical and other requests."""

from __future__ import annotations

from collections.abc import Sequence

from extproc.config.strict import Fields
from extproc.errors import ConfigError, PoolSaturated
from extproc.scheduling.context import PluginHandle, SchedulingContext
from extproc.scheduling.plugin import Filter


class DecisionTreeFilter(Filter):
    """Critical requests run the `critical` chain. Others first pass `nonCriticalGate`: if it
    keeps nothing the request is shed (PoolSaturated, 429); then the `nonCritical` chain.
    In a chain, a filter that keeps nothing passes its input on.

    Parameters (names of filter plugins declared earlier in `plugins`): `critical` (list),
    `nonCritical` (list), `nonCriticalGate` (optional name).
    """

    plugin_type = "decision-tree"

    def __init__(
        self,
        name: str,
        *,
        critical: Sequence[Filter],
        non_critical: Sequence[Filter],
        gate: Filter | None,
    ) -> None:
        super().__init__(name)
        self.critical = tuple(critical)
        self.non_critical = tuple(non_critical)
        self.gate = gate

    def filter(self, ctx: SchedulingContext) -> Sequence[int]:
        indices = list(range(len(ctx)))
        chain = self.critical
        if ctx.request.criticality != "Critical":
            chain = self.non_critical
            if self.gate is not None:
                kept = self.gate.filter(ctx)
                if not kept:
                    raise PoolSaturated("no endpoint has capacity for a non-critical request")
                indices = list(kept)
        view = ctx if len(indices) == len(ctx) else ctx.select(indices)
        for plugin in chain:
            kept = plugin.filter(view)
            if kept and len(kept) != len(view):
                indices = [indices[i] for i in kept]
                view = view.select(kept)
        return indices


def _filter_ref(params: Fields, key: str, ref: object, handle: PluginHandle) -> Filter:
    plugin = handle.plugin(ref) if isinstance(ref, str) else None
    if not isinstance(plugin, Filter):
        raise ConfigError(
            f"{params.where}.{key}: {ref!r} is not a filter plugin declared before this one"
        )
    return plugin


def factory(name: str, params: Fields, handle: PluginHandle) -> DecisionTreeFilter:
    critical = [_filter_ref(params, "critical", r, handle) for r in params.sequence("critical")]
    non_critical = [
        _filter_ref(params, "nonCritical", r, handle) for r in params.sequence("nonCritical")
    ]
    gate_name = params.string("nonCriticalGate", None)
    gate = None if gate_name is None else _filter_ref(params, "nonCriticalGate", gate_name, handle)
    return DecisionTreeFilter(name, critical=critical, non_critical=non_critical, gate=gate)
