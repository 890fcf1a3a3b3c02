"""Real processes for the xDS tests: simulated pods, the picker, `extproc xds` and Envoy.

Everything runs on free loopback ports and is stopped by `XdsStack.stop()` (or the `with`
block). The static config file is shared by the picker and the xDS server unless a test gives
the picker its own.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from extproc.config.static import render_static_config
from extproc.endpoints import Endpoint, parse_address
from extproc.envoyconf.ads import AdsBootstrapParams, ClusterMode, render_ads_bootstrap
from extproc.envoyconf.bootstrap import BootstrapParams
from extproc.stack.process import ManagedProcess, free_port
from extproc.stack.stack import (
    SCENARIO_MODEL,
    envoy_binary,
    retry_port_clash,
    scenario_documents,
)
from tests.integration.httpclient import Response, chat, request
from tests.integration.polling import wait_until

STARTUP = 30.0
OVERFLOW_BODY = b"upstream connect error or disconnect/reset before headers. reset reason: overflow"


def policy_doc(pool: str, **breaker: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "BackendTrafficPolicy",
        "metadata": {"name": "pool-breaker"},
        "spec": {
            "targetRefs": [
                {"group": "inference.networking.x-k8s.io", "kind": "InferencePool", "name": pool}
            ],
            "circuitBreaker": breaker,
        },
    }


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class XdsStack:
    def __init__(
        self,
        *,
        pods: int = 2,
        mode: ClusterMode = "pool",
        failure_mode: str = "FailClose",
        picker_args: tuple[str, ...] = ("--profile", "least-inflight"),
    ) -> None:
        self.pods = pods
        self.mode = mode
        self.picker_args = picker_args
        self._tmp = tempfile.TemporaryDirectory(prefix="extproc-xds-")
        self.dir = Path(self._tmp.name)
        self.config_path = self.dir / "config.yaml"
        self.picker_config_path = self.config_path
        self.sim: ManagedProcess | None = None
        self.picker: ManagedProcess | None = None
        self.xds: ManagedProcess | None = None
        self.envoys: list[ManagedProcess] = []
        self.endpoints: list[Endpoint] = []
        self.picker_port = 0
        self.xds_port = 0
        self.xds_metrics_port = 0
        docs = scenario_documents()
        self.pool = copy.deepcopy(next(d for d in docs if d["kind"] == "InferencePool"))
        self.pool["spec"].setdefault("extensionRef", {"name": "picker"})
        self.set_failure_mode(failure_mode)
        self.models = [d for d in docs if d["kind"] == "InferenceModel"]
        self.pool_name: str = self.pool["metadata"]["name"]

    def __enter__(self) -> XdsStack:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        for proc in (*self.envoys, self.xds, self.picker, self.sim):
            if proc is not None:
                proc.stop()
        self._tmp.cleanup()

    # -- processes ----------------------------------------------------------------------------
    def start_sim(self) -> list[Endpoint]:
        argv = [
            sys.executable, "-m", "extproc", "sim", "--pods", str(self.pods), "--base-port", "0",
            "--host", "127.0.0.1", "--model", SCENARIO_MODEL, "--speed", "1",
        ]  # fmt: skip
        self.sim = ManagedProcess("sim", argv, self.dir / "sim.log")
        self.sim.wait_for(r"^ready\b", STARTUP)
        for m in self.sim.lines_matching(r"^pod=(\S+) address=(\S+)"):
            ip, port = parse_address(m.group(2))
            self.endpoints.append(Endpoint(name=m.group(1), ip=ip, port=port))
        return self.endpoints

    def config_text(self, endpoints: list[Endpoint], policy: dict[str, Any] | None) -> str:
        text = render_static_config(self.pool, self.models, endpoints)
        if policy is not None:
            text += "---\n" + yaml.safe_dump(policy, sort_keys=False)
        return text

    def write_config(
        self, endpoints: list[Endpoint] | None = None, path: Path | None = None, **breaker: Any
    ) -> float:
        """Write the config (atomically); return the time.monotonic() of the write."""
        eps = self.endpoints if endpoints is None else endpoints
        policy = policy_doc(self.pool_name, **breaker) if breaker else None
        write_atomic(path or self.config_path, self.config_text(eps, policy))
        return time.monotonic()

    def start_picker(self, port: int = 0, extra: tuple[str, ...] = ()) -> None:
        argv = [
            sys.executable, "-m", "extproc", "serve", "--config", str(self.picker_config_path),
            "--host", "127.0.0.1", "--grpc-port", str(port), "--grpc-health-port", "0",
            "--metrics-port", "0", *self.picker_args, *extra,
        ]  # fmt: skip
        self.picker = ManagedProcess("picker", argv, self.dir / "picker.log")
        m = self.picker.wait_for(r"extproc serving grpc=\S+:(\d+)", STARTUP)
        self.picker_port = int(m.group(1))

    def stop_picker(self) -> None:
        if self.picker is not None:
            self.picker.stop()
            self.picker = None

    def start_xds(self, port: int = 0) -> None:
        argv = [
            sys.executable, "-m", "extproc", "xds", "--config", str(self.config_path),
            "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0",
            "--cluster-mode", self.mode,
        ]  # fmt: skip
        self.xds = ManagedProcess("xds", argv, self.dir / "xds.log")
        m = self.xds.wait_for(r"extproc xds serving xds=\S+:(\d+) metrics=\S+:(\d+)", STARTUP)
        self.xds_port, self.xds_metrics_port = int(m.group(1)), int(m.group(2))

    def xds_metric(self, prefix: str) -> float:
        """The sum of the xDS server's samples whose line starts with `prefix`."""
        text = request(f"http://127.0.0.1:{self.xds_metrics_port}", "/metrics", method="GET").body
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.decode().splitlines()
            if line.startswith(prefix)
        )

    def stop_xds(self) -> None:
        if self.xds is not None:
            self.xds.stop()

    def set_failure_mode(self, failure_mode: str) -> None:
        """The pool's extensionRef.failureMode for the next `write_config`."""
        self.failure_mode = failure_mode
        self.pool["spec"]["extensionRef"]["failureMode"] = failure_mode

    def start_envoy(self) -> Envoy:
        envoy = retry_port_clash(lambda: Envoy(
            self.dir / f"envoy-{len(self.envoys)}",
            AdsBootstrapParams(
                base=BootstrapParams(
                    listen_address="127.0.0.1", listen_port=free_port(), admin_port=free_port(),
                    extproc_port=self.picker_port, message_timeout_ms=2000,
                ),
                cluster_mode=self.mode, xds_port=self.xds_port,
            ),
        ))  # fmt: skip
        self.envoys.append(envoy.proc)
        return envoy


class Envoy:
    """One Envoy with the ADS bootstrap; `url`, `admin` helpers."""

    def __init__(self, base: Path, params: AdsBootstrapParams) -> None:
        self.params = params
        config = base.with_suffix(".yaml")
        config.write_text(render_ads_bootstrap(params))
        argv = [
            envoy_binary(), "-c", str(config), "--concurrency", "2", "--disable-hot-restart",
            "--log-level", "warn",
        ]  # fmt: skip
        self.proc = ManagedProcess("envoy", argv, base.with_suffix(".log"))
        try:
            wait_until(self._ready, STARTUP, "envoy ready")
        except BaseException:
            self.proc.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.params.base.listen_port}"

    def _ready(self) -> bool:
        if not self.proc.alive():
            raise RuntimeError(f"envoy exited:\n{self.proc.tail()}")
        try:
            return self.admin("/ready").strip() == "LIVE"
        except OSError:
            return False

    def admin(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.params.base.admin_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())

    def stats(self, prefix: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.admin(f"/stats?filter={prefix}").splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def stat(self, name: str) -> int:
        return self.stats("^" + name.replace(".", r"\.") + "$").get(name, 0)

    def max_requests(self, cluster: str) -> int | None:
        key = f"{cluster}::default_priority::max_requests::"
        for line in self.admin("/clusters").splitlines():
            if line.startswith(key):
                return int(line[len(key) :])
        return None

    def clusters(self) -> dict[str, str]:
        """Dynamic cluster name → the version_info it was last updated with."""
        dump = json.loads(self.admin("/config_dump?resource=dynamic_active_clusters"))
        return {c["cluster"]["name"]: c["version_info"] for c in dump.get("configs", [])}


class Background:
    """A request in a thread; `result()` joins it."""

    def __init__(self, url: str, max_tokens: int) -> None:
        self.response: Response | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(url, max_tokens), daemon=True)
        self._thread.start()

    def _run(self, url: str, max_tokens: int) -> None:
        try:
            self.response = request(url, body=chat(max_tokens=max_tokens), timeout=60)
        except BaseException as exc:
            self.error = exc

    def result(self, timeout: float = 60) -> Response:
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        assert self.response is not None, "request did not finish"
        return self.response


def send(url: str, max_tokens: int = 2) -> Response:
    return request(url, body=chat(max_tokens=max_tokens), timeout=30)


def is_overflow(resp: Response) -> bool:
    return resp.status == 503 and resp.headers.get("x-envoy-overloaded") == "true"
