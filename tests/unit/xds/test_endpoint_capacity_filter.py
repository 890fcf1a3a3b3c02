"""endpoint-capacity-filter (a scheduling plugin for per-endpoint mode): full endpoints skipped."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from extproc.config.strict import Fields
from extproc.errors import ConfigError
from extproc.scheduling.context import PluginHandle
from extproc.scheduling.plugins.endpoint_capacity_filter import EndpointCapacityFilter
from extproc.scheduling.registry import REGISTRY

from ..scheduling.builders import make_context, make_endpoint, make_request
from .builders import config_text, endpoints_doc, policy_doc


def _build(params: dict[str, Any], handle: PluginHandle | None = None) -> EndpointCapacityFilter:
    fields = Fields(params, "epp.yaml: plugins[0] (endpoint-capacity-filter): parameters")
    handle = handle or PluginHandle(random.Random(0))
    plugin = REGISTRY["endpoint-capacity-filter"]("cap", fields, handle)
    fields.done()
    assert isinstance(plugin, EndpointCapacityFilter)
    return plugin


@pytest.mark.parametrize(
    ("limit", "inflight", "want"),
    [
        pytest.param(1, [0, 1, 0], [0, 2], id="busy-one-skipped"),
        pytest.param(2, [1, 2, 3], [0], id="at-and-over-limit-skipped"),
        pytest.param(1, [1, 1], [], id="all-full-empty-so-framework-keeps-all"),
        pytest.param(3, [0, 0], [0, 1], id="all-free"),
    ],
)
def test_filter(limit: int, inflight: list[int], want: list[int]) -> None:
    pods = [make_endpoint(f"p{i}", inflight=n) for i, n in enumerate(inflight)]
    ctx = make_context(pods, make_request())
    assert list(_build({"maxParallelRequests": limit}).filter(ctx)) == want


def test_limit_from_the_static_config_policy(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(config_text(endpoints_doc("10.0.0.1:8000"), policy_doc(maxParallelRequests=4)))
    assert _build({"staticConfig": str(path)}).limit == 4


def test_limit_follows_edits_of_the_static_config(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(config_text(endpoints_doc("10.0.0.1:8000"), policy_doc(maxParallelRequests=4)))
    handle = PluginHandle(random.Random(0))
    plugin = _build({"staticConfig": str(path)}, handle)
    (watcher,) = handle.watchers
    assert not watcher.poll()  # unchanged

    def edit(*docs: str) -> None:
        path.write_text(config_text(*docs))
        watcher.changes._seen = None  # same-second edits: do not depend on mtime resolution

    edit(endpoints_doc("10.0.0.1:8000"), policy_doc(maxParallelRequests=2))
    assert watcher.poll() and plugin.limit == 2
    edit(endpoints_doc("10.0.0.1:8000"))  # the policy removed: the last limit stays
    assert watcher.poll() and plugin.limit == 2
    edit("kind: Nonsense")  # invalid: rejected, last limit stays
    assert not watcher.poll() and plugin.limit == 2
    edit(endpoints_doc("10.0.0.1:8000"), policy_doc(maxConnections=5))
    assert watcher.poll() and plugin.limit == 1024  # unset: Envoy's default


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({}, "set exactly one of maxParallelRequests, staticConfig", id="none"),
        pytest.param({"maxParallelRequests": 0}, "0 is below the minimum 1", id="zero"),
        pytest.param({"maxParallelRequests": 1, "staticConfig": "x"}, "set exactly one", id="both"),
    ],
)
def test_invalid_parameters(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _build(params)


def test_static_config_without_policy_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(config_text(endpoints_doc("10.0.0.1:8000")))
    with pytest.raises(ConfigError, match="no BackendTrafficPolicy for the pool"):
        _build({"staticConfig": str(path)})
