"""Configuration of a simulated cluster: pods, model, profile, speed and faults."""

from __future__ import annotations

from dataclasses import dataclass, field

from extproc.sim.faults import FaultConfig
from extproc.sim.profiles import A10_7B, Profile

DEFAULT_HOST = "127.0.0.1"
DEFAULT_MODEL = "/model/llama2"
DEFAULT_MAX_LORAS = 4
DEFAULT_SPEED = 1.0
DEFAULT_SHUTDOWN_TIMEOUT_S = 2.0
# Output length when the request sets no max_tokens: drawn uniformly (seeded) in this range,
# reported with finish_reason "stop" as if the model had emitted EOS.
DEFAULT_OUTPUT_MIN = 16
DEFAULT_OUTPUT_MAX = 128


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """Everything a SimCluster needs. Pod ``i`` is named ``sim-i`` and listens on
    ``base_port + i`` (any free port when ``base_port`` is 0); its random streams are
    seeded with ``seed + i``."""

    pods: int = 1
    host: str = DEFAULT_HOST
    base_port: int = 0
    model: str = DEFAULT_MODEL
    loras: tuple[str, ...] = ()
    max_loras: int = DEFAULT_MAX_LORAS
    seed: int = 0
    speed: float = DEFAULT_SPEED
    profile: Profile = A10_7B
    legacy_metrics: bool = False
    faults: FaultConfig = field(default_factory=FaultConfig)
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.pods < 1:
            raise ValueError("pods must be at least 1")
        if self.base_port and not 1 <= self.base_port <= 65536 - self.pods:
            raise ValueError("ports base_port .. base_port+pods-1 must lie in 1..65535")
        if self.speed <= 0:
            raise ValueError("speed must be positive")
        if self.max_loras < 1:
            raise ValueError("max_loras must be at least 1")
        if self.model in self.loras:
            raise ValueError("a LoRA adapter cannot have the base model's name")

    def port(self, index: int) -> int:
        return self.base_port + index if self.base_port else 0
