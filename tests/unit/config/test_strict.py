"""Strict YAML reading: duplicate keys, finite and bounded numbers."""

from __future__ import annotations

import pytest
import yaml

from extproc.config.strict import Fields, load_yaml, load_yaml_all
from extproc.errors import ConfigError


def test_duplicate_keys_are_errors_merge_keys_are_not() -> None:
    with pytest.raises(yaml.YAMLError, match="found duplicate key 'a'"):
        load_yaml("a: 1\nb: {c: 2}\na: 3\n")
    with pytest.raises(yaml.YAMLError, match="found duplicate key 'c'"):
        next(iter(load_yaml_all("---\nb: {c: 2, c: 3}\n")))
    # `<<: *anchor` merges, and the mapping may override what it merged.
    merged = load_yaml("base: &b {x: 1, y: 1}\nother:\n  <<: *b\n  y: 2\n")
    assert merged == {"base": {"x": 1, "y": 1}, "other": {"x": 1, "y": 2}}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10**400], ids=["nan", "inf", "huge"])
def test_numbers_must_be_finite(value: float) -> None:
    with pytest.raises(ConfigError, match=r"here.n: must be a finite number"):
        Fields({"n": value}, "here").number("n")


def test_numbers_within_bounds() -> None:
    f = Fields({"n": 1.5}, "here")
    with pytest.raises(ConfigError, match=r"here.n: 1.5 is above the maximum 1"):
        f.number("n", lo=0.0, hi=1.0)
    assert Fields({"n": 1}, "here").number("n", lo=0.0, hi=1.0) == 1.0
