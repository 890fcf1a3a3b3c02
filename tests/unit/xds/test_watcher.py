"""ConfigWatcher: reloads on change; an invalid file is logged and the last good config stays."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from extproc.errors import ConfigError
from extproc.xds.cache import ResourceCache
from extproc.xds.resources import CLUSTER_TYPE
from extproc.xds.watcher import ConfigWatcher

from .builders import config_text, endpoints_doc, policy_doc


def _write(path: Path, text: str, tick: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(tick * 10**9, tick * 10**9))  # a distinct mtime per write


def test_reload_invalid_then_valid(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cfg.yaml"
    eps = endpoints_doc("10.0.0.1:8000")
    _write(path, config_text(eps, policy_doc(maxParallelRequests=1)), 1)
    cache = ResourceCache()
    watcher = ConfigWatcher(path, "pool", cache)
    watcher.load()
    first = cache.versions()[CLUSTER_TYPE]
    assert not watcher.poll()  # unchanged file

    _write(path, config_text(eps, policy_doc(maxParallelRequests=-1)), 2)
    with caplog.at_level(logging.ERROR, logger="extproc.xds.watcher"):
        assert not watcher.poll()
    (record,) = [r for r in caplog.records if r.getMessage() == "config_rejected"]
    assert "spec.circuitBreaker.maxParallelRequests: -1 is below the minimum 0" in str(
        record.kv["error"]  # type: ignore[attr-defined]
    )
    assert cache.versions()[CLUSTER_TYPE] == first

    _write(path, config_text(eps, policy_doc(maxParallelRequests=3)), 3)
    assert watcher.poll()
    assert cache.versions()[CLUSTER_TYPE] != first


def test_first_load_of_an_invalid_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    _write(path, config_text(endpoints_doc("10.0.0.1:8000"), policy_doc(maxConnections=1.5)), 1)
    with pytest.raises(ConfigError, match="maxConnections: expected an integer"):
        ConfigWatcher(path, "pool", ResourceCache()).load()
