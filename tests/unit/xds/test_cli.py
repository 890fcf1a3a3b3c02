"""`extproc xds` flags: exactly one source, Kubernetes flags only with --pool-name."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from extproc.cli import build_parser
from extproc.errors import ConfigError
from extproc.k8s.settings import default_namespace
from extproc.xds.app import XdsApp, XdsConfig
from extproc.xds.cli import UsageError, kubernetes_settings


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["xds", *argv])


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="neither"),
        pytest.param(["--config", "f", "--pool-name", "p"], id="both"),
    ],
)
def test_source_flags_are_exclusive_and_required(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


def test_file_mode_has_no_kubernetes_settings() -> None:
    args = parse("--config", "cfg.yaml")
    assert args.config == Path("cfg.yaml")
    assert kubernetes_settings(args) is None


def test_kubernetes_flags() -> None:
    settings = kubernetes_settings(parse("--pool-name", "p"))
    assert settings is not None
    assert (settings.pool_name, settings.namespace, settings.kubeconfig) == (
        "p", default_namespace(), None,
    )  # fmt: skip
    assert settings.leader_election is None
    args = parse("--pool-name", "p", "--pool-namespace", "ns", "--kubeconfig", "/k",
                 "--route-name", "r")  # fmt: skip
    settings = kubernetes_settings(args)
    assert settings is not None
    assert (settings.namespace, settings.kubeconfig, args.route_name) == ("ns", Path("/k"), "r")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--kubeconfig", "k"], "--kubeconfig needs --pool-name", id="kubeconfig"),
        pytest.param(["--pool-namespace", "n"], "--pool-namespace needs", id="namespace"),
        pytest.param(["--route-name", "r"], "--route-name needs --pool-name", id="route"),
    ],
)
def test_kubernetes_flags_need_pool_name(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        kubernetes_settings(parse("--config", "f", *argv))


def test_app_needs_exactly_one_source() -> None:
    with pytest.raises(ConfigError, match="exactly one configuration source"):
        XdsApp(XdsConfig()).load()


def test_route_timeout_and_metrics_port_flags() -> None:
    args = parse("--config", "f")
    assert (args.route_timeout, args.metrics_port) == (600, 9091)
    args = parse("--config", "f", "--route-timeout", "3600", "--metrics-port", "0")
    assert (args.route_timeout, args.metrics_port) == (3600, 0)
