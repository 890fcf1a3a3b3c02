"""Fault injection for one pod: error answers, added latency and stalls, changeable at runtime.

Faults apply to the inference endpoints (/v1/chat/completions, /v1/completions) only, so a
faulty pod still reports metrics and health the way a sick-but-alive vLLM does. Latency is in
wall-clock milliseconds (not scaled by --speed): it models the network or a proxy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass

from extproc.sim.openai_api import ApiError

DEFAULT_ERROR_STATUS = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultConfig:
    """What to inject: ``error_rate`` (0..1) of answers get ``error_status`` (5xx);
    every answer waits ``latency_ms`` first; ``stall`` accepts requests and never answers."""

    error_rate: float = 0.0
    error_status: int = DEFAULT_ERROR_STATUS
    latency_ms: float = 0.0
    stall: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        if not 500 <= self.error_status <= 599:
            raise ValueError("error_status must be a 5xx status")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must not be negative")

    def updated(self, changes: Mapping[str, object]) -> FaultConfig:
        """A copy with ``changes`` applied; ValueError names an unknown key or a bad value."""
        fields = {f.name: f.type for f in dataclasses.fields(self)}
        values: dict[str, object] = {}
        for key, value in changes.items():
            if key not in fields:
                raise ValueError(f"unknown fault setting {key!r} (known: {', '.join(fields)})")
            if key == "stall":
                if not isinstance(value, bool):
                    raise ValueError("stall must be a boolean")
            elif key == "error_status":
                if type(value) is not int:
                    raise ValueError("error_status must be an integer")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{key} must be a number")
            values[key] = float(value) if key in ("error_rate", "latency_ms") else value
        return dataclasses.replace(self, **values)  # type: ignore[arg-type]


class Faults:
    """The live fault settings of one pod."""

    def __init__(self, config: FaultConfig, *, seed: int) -> None:
        self.config = config
        self._rng = random.Random(seed)
        # Set at shutdown so stalled handlers return and the server can close.
        self.released = asyncio.Event()
        self.injected_errors = 0

    async def apply(self) -> None:
        """Run the configured faults for one request; raise ApiError for an injected error."""
        config = self.config
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000.0)
        if config.stall:
            await self.released.wait()
            raise ApiError("Pod is shutting down.", status=503)
        if config.error_rate > 0 and self._rng.random() < config.error_rate:
            self.injected_errors += 1
            raise ApiError("Injected fault.", status=config.error_status)
