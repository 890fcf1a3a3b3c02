"""EndpointPickerConfig: strict loading of the plugin and profile file, and shipped profiles."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from extproc.config.strict import Fields, load_yaml
from extproc.errors import ConfigError
from extproc.scheduling.registry import REGISTRY
from extproc.scheduling.saturation import (
    DEFAULT_KV_THRESHOLD,
    DEFAULT_QUEUE_THRESHOLD,
    DEFAULT_SHED_WITHOUT_METRICS,
    SaturationConfig,
)

API_VERSION = "inference.networking.x-k8s.io/v1alpha1"
KIND = "EndpointPickerConfig"
DEFAULT_PROFILE = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginSpec:
    type: str
    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    where: str  # e.g. "epp.yaml: plugins[2] (queue-scorer)"


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginRef:
    plugin_ref: str
    weight: float | None = None
    where: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileSpec:
    name: str
    plugins: tuple[PluginRef, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointPickerConfig:
    source: str
    plugins: tuple[PluginSpec, ...]
    profiles: tuple[ProfileSpec, ...]
    saturation: SaturationConfig = field(default_factory=SaturationConfig)


def parse_config(text: str, source: str) -> EndpointPickerConfig:
    """Validate an EndpointPickerConfig document; raise ConfigError naming plugin and key.

    Plugin parameters are checked when the plugins are built (`instantiate`)."""
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    top = Fields(data, source)
    if top.string("apiVersion") != API_VERSION:
        raise ConfigError(f"{source}.apiVersion: expected {API_VERSION!r}")
    if top.string("kind") != KIND:
        raise ConfigError(f"{source}.kind: expected {KIND!r}")
    plugins = _plugins(top.sequence("plugins"), source)
    names = {p.name for p in plugins}
    profiles = _profiles(top.sequence("schedulingProfiles"), source, names)
    sat = top.sub("saturationDetector", required=False)
    saturation = SaturationConfig()
    if sat is not None:
        saturation = SaturationConfig(
            queue_threshold=sat.integer("queueDepthThreshold", DEFAULT_QUEUE_THRESHOLD, lo=0),
            kv_threshold=sat.number("kvCacheUtilThreshold", DEFAULT_KV_THRESHOLD, lo=0.0, hi=1.0),
            shed_without_metrics=sat.boolean("shedWithoutMetrics", DEFAULT_SHED_WITHOUT_METRICS),
        )
        sat.done()
    top.ignore("metadata")
    top.done()
    return EndpointPickerConfig(
        source=source, plugins=plugins, profiles=profiles, saturation=saturation
    )


def _plugins(items: list[Any], source: str) -> tuple[PluginSpec, ...]:
    out: list[PluginSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        f = Fields(item, f"{source}: plugins[{i}]")
        kind = f.string("type")
        where = f"{source}: plugins[{i}] ({kind})"
        f.where = where
        if kind not in REGISTRY:
            raise ConfigError(
                f"{where}: unknown plugin type {kind!r} (known: {', '.join(sorted(REGISTRY))})"
            )
        name = f.string("name", kind)
        if name in seen:
            raise ConfigError(f"{where}: duplicate plugin name {name!r}")
        seen.add(name)
        params = f.mapping("parameters", {})
        f.done()
        out.append(PluginSpec(type=kind, name=name, parameters=params, where=where))
    return tuple(out)


def _profiles(items: list[Any], source: str, names: set[str]) -> tuple[ProfileSpec, ...]:
    if not items:
        raise ConfigError(f"{source}.schedulingProfiles: at least one profile is required")
    out: list[ProfileSpec] = []
    for i, item in enumerate(items):
        f = Fields(item, f"{source}: schedulingProfiles[{i}]")
        name = f.string("name")
        f.where = f"{source}: schedulingProfiles[{i}] ({name})"
        refs: list[PluginRef] = []
        for j, ref_item in enumerate(f.sequence("plugins")):
            r = Fields(ref_item, f"{f.where}: plugins[{j}]")
            ref = r.string("pluginRef")
            r.where = f"{f.where}: plugins[{j}] ({ref})"
            if ref not in names:
                raise ConfigError(f"{r.where}: pluginRef {ref!r} names no plugin in `plugins`")
            weight = r.number("weight", None, lo=0.0)
            r.done()
            refs.append(PluginRef(plugin_ref=ref, weight=weight, where=r.where))
        f.done()
        if name in {p.name for p in out}:
            raise ConfigError(f"{f.where}: duplicate profile name")
        out.append(ProfileSpec(name=name, plugins=tuple(refs)))
    return tuple(out)


def shipped_profiles() -> tuple[str, ...]:
    folder = resources.files("extproc").joinpath("profiles")
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")))


def load_profile(name_or_path: str | Path) -> EndpointPickerConfig:
    """A shipped profile by name (`default`, `reference-default`, `legacy-v0.3`) or a file."""
    text_name = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text_name or text_name.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        return parse_config(text, str(path))
    resource = resources.files("extproc").joinpath("profiles", f"{text_name}.yaml")
    if not resource.is_file():
        known = ", ".join(shipped_profiles())
        raise ConfigError(f"unknown scheduling profile {text_name!r} (shipped: {known})")
    return parse_config(resource.read_text(encoding="utf-8"), f"{text_name}.yaml")
