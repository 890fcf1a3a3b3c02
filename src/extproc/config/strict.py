"""Strict reading of YAML mappings: wrong types and unknown keys are errors naming the place."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import yaml

from extproc.errors import ConfigError

T = TypeVar("T")
_MISSING: Any = object()


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of duplicate keys; a configuration must not say a thing twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: overriding is fine
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark,
                )  # fmt: skip
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    """One YAML document; duplicate keys are errors (yaml.YAMLError, with the line)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_yaml_all(text: str) -> Iterator[Any]:
    """Every document of a multi-document YAML text, as `load_yaml`."""
    return yaml.load_all(text, Loader=_UniqueKeyLoader)


class Fields:
    """Reads the keys of one mapping and remembers which were read.

    `where` is a human path such as ``pools.yaml: InferencePool/p1: spec``; every error message
    starts with it. Call `done()` after reading to reject keys nobody asked for.
    """

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {_type_name(data)}")
        self._data: Mapping[str, Any] = data
        self._seen: set[str] = set()
        self.where = where

    def _get(self, key: str, expected: type[T] | tuple[type, ...], default: Any) -> Any:
        self._seen.add(key)
        value = self._data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise ConfigError(f"{self.where}: missing required field {key!r}")
            return default
        # bool is an int in Python; a YAML `true` must not pass as a port number.
        wants_int = expected is int or (isinstance(expected, tuple) and int in expected)
        if wants_int and isinstance(value, bool):
            raise ConfigError(f"{self.where}.{key}: expected an integer, got a boolean")
        if not isinstance(value, expected):
            raise ConfigError(
                f"{self.where}.{key}: expected {_expected_name(expected)}, got {_type_name(value)}"
            )
        return value

    def string(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, str, default)
        if isinstance(value, str) and default is _MISSING and not value:
            raise ConfigError(f"{self.where}.{key}: must not be empty")
        return value

    def integer(
        self, key: str, default: Any = _MISSING, *, lo: int | None = None, hi: int | None = None
    ) -> Any:
        value = self._get(key, int, default)
        if isinstance(value, int) and not isinstance(value, bool):
            if lo is not None and value < lo:
                raise ConfigError(f"{self.where}.{key}: {value} is below the minimum {lo}")
            if hi is not None and value > hi:
                raise ConfigError(f"{self.where}.{key}: {value} is above the maximum {hi}")
        return value

    def number(
        self, key: str, default: Any = _MISSING, *, lo: float | None = None, hi: float | None = None
    ) -> Any:
        """A finite number (NaN and infinities are never valid settings), within [lo, hi]."""
        value = self._get(key, (int, float), default)
        if value is None:
            return value
        try:
            value = float(value)
        except OverflowError:  # an integer beyond the float range
            value = math.inf
        if not math.isfinite(value):
            raise ConfigError(f"{self.where}.{key}: must be a finite number, got {value}")
        if lo is not None and value < lo:
            raise ConfigError(f"{self.where}.{key}: {value:g} is below the minimum {lo:g}")
        if hi is not None and value > hi:
            raise ConfigError(f"{self.where}.{key}: {value:g} is above the maximum {hi:g}")
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, bool, default)

    def mapping(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, Mapping, default)

    def sequence(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, list, default)

    def sub(self, key: str, *, required: bool = True) -> Fields | None:
        value = self.mapping(key, _MISSING if required else None)
        return None if value is None else Fields(value, f"{self.where}.{key}")

    def choice(self, key: str, choices: tuple[T, ...], default: Any = _MISSING) -> T:
        value = self.string(key, default)
        if value not in choices:
            allowed = ", ".join(map(repr, choices))
            raise ConfigError(f"{self.where}.{key}: {value!r} is not one of {allowed}")
        result: T = value
        return result

    def str_map(self, key: str, default: Any = _MISSING) -> dict[str, str]:
        value = self.mapping(key, default)
        out: dict[str, str] = {}
        for k, v in (value or {}).items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ConfigError(f"{self.where}.{key}: keys and values must be strings")
            out[k] = v
        return out

    def ignore(self, *keys: str) -> None:
        """Accept keys whose content does not matter here (e.g. Kubernetes `status`)."""
        self._seen.update(keys)

    def done(self) -> None:
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            raise ConfigError(f"{self.where}: unknown field {unknown[0]!r}")


def _type_name(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    return type(value).__name__


def _expected_name(expected: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        bool: "a boolean",
        list: "a list",
        Mapping: "a mapping",
        float: "a number",
    }
    if isinstance(expected, tuple):
        return " or ".join(names.get(t, t.__name__) for t in expected)
    return names.get(expected, expected.__name__)
