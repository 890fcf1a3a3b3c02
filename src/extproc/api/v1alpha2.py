"""InferencePool and InferenceModel (`inference.networking.x-k8s.io/v1alpha2`) as frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

GROUP = "inference.networking.x-k8s.io"
API_VERSION = f"{GROUP}/v1alpha2"

Criticality = Literal["Critical", "Standard", "Sheddable"]
FailureMode = Literal["FailOpen", "FailClose"]
CRITICALITIES: tuple[Criticality, ...] = ("Critical", "Standard", "Sheddable")
FAILURE_MODES: tuple[FailureMode, ...] = ("FailOpen", "FailClose")

DEFAULT_EXTENSION_PORT = 9002
MAX_MODEL_NAME_LENGTH = 256
MAX_TARGET_MODELS = 10
MAX_TARGET_WEIGHT = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtensionRef:
    name: str
    group: str = ""
    kind: str = "Service"
    port_number: int = DEFAULT_EXTENSION_PORT
    failure_mode: FailureMode = "FailClose"


@dataclass(frozen=True, slots=True, kw_only=True)
class InferencePool:
    name: str
    namespace: str = "default"
    selector: dict[str, str] = field(default_factory=dict)
    target_port: int
    extension_ref: ExtensionRef | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetModel:
    name: str
    weight: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceModel:
    name: str
    namespace: str = "default"
    model_name: str
    criticality: Criticality = "Standard"
    target_models: tuple[TargetModel, ...] = ()
    pool_name: str
    # Sort key for "the oldest object wins": (creationTimestamp, document order).
    age_key: tuple[str, int] = ("", 0)
