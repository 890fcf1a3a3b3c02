"""`extproc serve` flags for Kubernetes, TLS and leader election."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from extproc.cli import build_parser
from extproc.k8s.settings import default_namespace
from extproc.serve_cli import UsageError, _kubernetes, _secure_serving


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["--pool-name", "p"], True, id="pool-default-on"),
        pytest.param(["--pool-name", "p", "--secure-serving=false"], False, id="pool-off"),
        pytest.param(["--pool-name", "p", "--secure-serving"], True, id="bare-flag"),
        pytest.param(["--config", "f"], False, id="static-default-off"),
        pytest.param(["--config", "f", "--secure-serving=true"], True, id="static-on"),
        pytest.param(["--config", "f", "--cert-path", "d"], True, id="cert-path-implies-tls"),
    ],
)
def test_secure_serving_defaults(argv: list[str], expected: bool) -> None:
    assert _secure_serving(parse(*argv)) is expected


def test_kubernetes_defaults() -> None:
    settings = _kubernetes(parse("--pool-name", "p"))
    assert settings is not None
    assert settings.namespace == default_namespace()
    assert settings.leader_election is not None
    assert settings.leader_election.lease_name == "p-epp-leader"
    assert settings.leader_election.lease_duration == 15.0
    assert settings.leader_election.retry_period == 2.0


def test_kubernetes_flags() -> None:
    args = parse(
        "--pool-name", "p", "--pool-namespace", "ns", "--kubeconfig", "/k",
        "--lease-name", "l", "--lease-duration", "2",
    )  # fmt: skip
    settings = _kubernetes(args)
    assert settings is not None and settings.leader_election is not None
    assert (settings.namespace, settings.kubeconfig) == ("ns", Path("/k"))
    assert settings.leader_election.lease_name == "l"
    assert settings.leader_election.retry_period == 0.5
    no_election = _kubernetes(parse("--pool-name", "p", "--leader-election=false"))
    assert no_election is not None and no_election.leader_election is None


def test_default_namespace_reads_the_service_account_file(tmp_path: Path) -> None:
    (tmp_path / "namespace").write_text("inference\n")
    assert default_namespace(tmp_path / "namespace") == "inference"
    assert default_namespace(tmp_path / "missing") == "default"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--config", "f", "--kubeconfig", "k"], "--kubeconfig needs --pool-name",
                     id="kubeconfig-without-pool"),
        pytest.param(["--config", "f", "--leader-election"], "--leader-election needs",
                     id="election-without-pool"),
    ],
)  # fmt: skip
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        _kubernetes(parse(*argv))


def test_cert_path_with_tls_off_is_an_error() -> None:
    with pytest.raises(UsageError, match="--cert-path needs TLS"):
        _secure_serving(parse("--pool-name", "p", "--cert-path", "d", "--secure-serving=false"))


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="neither"),
        pytest.param(["--config", "f", "--pool-name", "p"], id="both"),
        pytest.param(["--pool-name", "p", "--secure-serving=maybe"], id="bad-bool"),
    ],
)
def test_source_flags_are_exclusive_and_required(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


def test_metrics_path() -> None:
    assert parse("--config", "f").metrics_path == "/metrics"
    assert parse("--config", "f", "--metrics-path", "/prometheus/metrics").metrics_path == (
        "/prometheus/metrics"
    )
    for bad in ("metrics", "/a b", "/m#x"):
        with pytest.raises(SystemExit):
            parse("--config", "f", "--metrics-path", bad)
