"""Bad input to the `extproc` commands (serve, xds, local): one line on stderr naming the
problem and a non-zero exit status, never a traceback; and what the commands accept works."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

MAIN = Path(__file__).resolve().parents[2]
STATIC = str(MAIN / "examples" / "static-config.yaml")
PROFILE = MAIN / "src" / "extproc" / "profiles" / "default.yaml"
SERVE = ["serve", "--host", "127.0.0.1", "--grpc-port", "0", "--grpc-health-port", "0",
         "--metrics-port", "0"]  # fmt: skip
XDS = ["xds", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"]


def run_cli(*args: str, timeout: float = 20, cwd: Path = MAIN) -> subprocess.CompletedProcess[str]:
    """Run `python -m extproc ARGS`; a process still running after `timeout` fails the test."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "extproc", *args],
            cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"extproc {' '.join(args)} still running after {timeout}s: {exc.stderr!r}")


def exit_status(args: list[str], cwd: Path, still_running: str) -> int:
    """The exit status of `extproc ARGS`, which should refuse to start; fail if it serves."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "extproc", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        return proc.wait(timeout=8)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
        pytest.fail(f"still serving: {still_running}")


def assert_clean_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Non-zero exit, no Python traceback, and a message naming the problem."""
    assert "Traceback" not in result.stderr, result.stderr[-1500:]
    assert result.returncode != 0, (result.returncode, result.stderr[-800:])
    for needle in needles:
        assert needle in result.stderr, result.stderr[-800:]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port held by a listening socket (as another process would)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def not_utf8(tmp_path: Path) -> Path:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("# caf\xe9\n".encode("latin-1"))  # e.g. an editor saving Latin-1
    return path


@pytest.fixture
def bad_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nclusters: [\n")
    return path


# --- 1. a config file that is not UTF-8 -------------------------------------------------------
def test_serve_config_not_utf8(not_utf8: Path) -> None:
    assert_clean_error(run_cli(*SERVE, "--config", str(not_utf8)), str(not_utf8))


def test_serve_config_file_not_utf8(not_utf8: Path) -> None:
    assert_clean_error(
        run_cli(*SERVE, "--config", STATIC, "--config-file", str(not_utf8)), str(not_utf8)
    )


def test_xds_config_not_utf8(not_utf8: Path) -> None:
    assert_clean_error(run_cli(*XDS, "--config", str(not_utf8)), str(not_utf8))


# --- 2. a port already in use -----------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--grpc-port", "--grpc-health-port", "--metrics-port"])
def test_serve_port_in_use(busy_port: int, flag: str) -> None:
    args = [a for a in SERVE]
    args[args.index(flag) + 1] = str(busy_port)
    assert_clean_error(run_cli(*args, "--config", STATIC), str(busy_port))


def test_serve_grpcio_port_in_use(busy_port: int) -> None:
    args = [a for a in SERVE]
    args[args.index("--grpc-port") + 1] = str(busy_port)
    assert_clean_error(
        run_cli(*args, "--grpc-server", "grpcio", "--config", STATIC), str(busy_port)
    )


@pytest.mark.parametrize("flag", ["--port", "--metrics-port"])
def test_xds_port_in_use(busy_port: int, flag: str) -> None:
    args = [a for a in XDS]
    args[args.index(flag) + 1] = str(busy_port)
    assert_clean_error(run_cli(*args, "--config", STATIC), str(busy_port))


# --- 3. --cert-path that does not exist or holds no valid pair --------------------------------
@pytest.mark.parametrize("server", ["builtin", "grpcio"])
def test_serve_cert_path_missing(tmp_path: Path, server: str) -> None:
    missing = tmp_path / "no-such-dir"
    result = run_cli(
        *SERVE, "--config", STATIC, "--grpc-server", server, "--cert-path", str(missing)
    )
    assert_clean_error(result, "--cert-path", str(missing))


def test_serve_cert_path_invalid_pem(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text("not a certificate\n")
    (tmp_path / "tls.key").write_text("not a key\n")
    result = run_cli(*SERVE, "--config", STATIC, "--cert-path", str(tmp_path))
    assert_clean_error(result, "--cert-path")
    assert "cannot read None" not in result.stderr  # ssl.SSLError is an OSError: wrong message


# --- 4. a --kubeconfig that is not valid YAML ---------------------------------------------------
def test_serve_kubeconfig_bad_yaml(bad_yaml: Path) -> None:
    assert_clean_error(
        run_cli(*SERVE, "--pool-name", "p", "--kubeconfig", str(bad_yaml)), str(bad_yaml)
    )


def test_xds_kubeconfig_bad_yaml(bad_yaml: Path) -> None:
    assert_clean_error(
        run_cli(*XDS, "--pool-name", "p", "--kubeconfig", str(bad_yaml)), str(bad_yaml)
    )


# --- 5. --config-file FILE given as a bare relative name is taken for a profile name ------------
def test_serve_config_file_bare_relative_name(tmp_path: Path) -> None:
    (tmp_path / "epp-config").write_text(PROFILE.read_text())
    proc = subprocess.Popen(
        [sys.executable, "-m", "extproc", *SERVE, "--config", STATIC, "--config-file", "epp-config"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("extproc serving"), (line, proc.stderr.read() if proc.stderr else "")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)


def test_serve_config_file_named_like_a_profile_is_read(tmp_path: Path) -> None:
    """`--config-file default` with ./default present must read the file, not the shipped one."""
    (tmp_path / "default").write_text("this: is not an EndpointPickerConfig\n")
    args = [*SERVE, "--config", STATIC, "--config-file", "default"]
    assert exit_status(args, tmp_path, "the invalid ./default was ignored") == 2


# --- 6. --host with an IPv6 address -------------------------------------------------------------
@pytest.mark.parametrize("cmd", ["serve", "xds"])
def test_ipv6_host(cmd: str) -> None:
    args = [*(SERVE if cmd == "serve" else XDS), "--config", STATIC]
    args[args.index("--host") + 1] = "::1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "extproc", *args],
        cwd=MAIN, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "serving" in line, err[-600:]
    assert proc.returncode == 0


# --- 7. `extproc local`: bad flags crash instead of a usage error -----------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["--port", "70000"],
        ["--port", "-1"],
        ["--pods", "-1"],
        ["--speed", "0"],
        ["--max-requests", "-5"],
    ],
)
def test_local_invalid_numbers_are_usage_errors(args: list[str]) -> None:
    result = run_cli("local", *args, timeout=60)
    assert_clean_error(result, args[0])
    assert result.returncode == 2


def test_local_log_dir_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("")
    assert_clean_error(
        run_cli("local", "--port", "0", "--log-dir", str(target), timeout=60), str(target)
    )


# --- 8. `extproc sim --shutdown-timeout N` takes 2N seconds to exit ----------------------------
def test_xds_route_timeout_too_large() -> None:
    result = run_cli(*XDS, "--config", STATIC, "--route-timeout", "99999999999999")
    assert_clean_error(result, "--route-timeout")


# --- 10. --fallbacks -1 is accepted, and the least-inflight picker then returns no endpoint -----
def test_serve_negative_fallbacks_rejected() -> None:
    args = [*SERVE, "--config", STATIC, "--profile", "least-inflight", "--fallbacks", "-1"]
    assert exit_status(args, MAIN, "--fallbacks -1 accepted") == 2


def test_least_inflight_with_negative_fallbacks_picks_nothing() -> None:
    """What `--profile least-inflight --fallbacks -1` does today: every pick is empty."""
    from extproc.app import LEAST_INFLIGHT, PickerApp, ServeConfig
    from extproc.scheduling.types import LLMRequest

    app = PickerApp(ServeConfig(static_config=Path(STATIC), scheduler=LEAST_INFLIGHT, fallbacks=-1))
    app.load()
    assert app.datastore.endpoints()
    result = app.picker.pick(LLMRequest(request_id="r", model="m", target_model="m"))
    assert len(result.endpoints) >= 1, result
