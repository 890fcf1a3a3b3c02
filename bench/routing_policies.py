"""bench-routing's policies: what each compared cell runs, and the stack it runs on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.routing_report import PODS, ROUND_ROBIN
from bench.routing_workload import documents
from extproc.envoyconf.bootstrap import CircuitBreaker
from extproc.stack.stack import LocalStack, StackConfig

RANDOM_CONFIG = """\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
  - type: random-picker
schedulingProfiles:
  - name: default
    plugins:
      - {pluginRef: random-picker}
"""


def policy_configs(workdir: Path, extra: list[str]) -> dict[str, dict[str, Any]]:
    random_file = workdir / "random.yaml"
    random_file.write_text(RANDOM_CONFIG)
    policies: dict[str, dict[str, Any]] = {
        ROUND_ROBIN: {"with_picker": False},
        "random": {"picker_args": ("--config-file", str(random_file))},
        "legacy-v0.3": {"picker_args": ("--profile", "legacy-v0.3")},
        "reference-default": {"picker_args": ("--profile", "reference-default")},
        "default": {"picker_args": ("--profile", "default")},
    }
    for item in extra:
        name, _, path = item.partition("=")
        policies[name] = {"picker_args": ("--config-file", str(Path(path).resolve()))}
    for cfg in policies.values():
        if "picker_args" in cfg:
            cfg["picker_args"] = (*cfg["picker_args"], "--seed", "1")
    return policies


def make_stack(policy: dict[str, Any], speed: float, workdir: Path) -> LocalStack:
    workdir.mkdir(parents=True, exist_ok=True)
    return LocalStack(
        StackConfig(
            pods=PODS, speed=speed, breaker=CircuitBreaker(), documents=documents(),
            sim_args=("--seed", "7"), log_dir=workdir, **policy,
        )
    )  # fmt: skip
