"""TLS on the ext_proc port: a real Envoy routes through the picker over TLS; plaintext fails."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import sys
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from extproc.endpoints import parse_address
from extproc.envoyconf.bootstrap import EXTPROC_CLUSTER, BootstrapParams, build_bootstrap
from extproc.stack.process import ManagedProcess, free_port
from extproc.stack.stack import envoy_binary, wait_envoy_ready
from tests.integration.httpclient import request
from tests.integration.k8s.conftest import StartPicker, health_status
from tests.unit.k8s.builders import make_model, make_pod, make_pool
from tests.unit.k8s.fake_apiserver import FakeApiServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

MODEL = "/model/llama2"
SNI = "inference-gateway-ext-proc.default.svc"


def server_certificate(port: int) -> str:
    """The PEM certificate the picker presents (fetched with a verification-free handshake)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=SNI) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return ssl.DER_cert_to_PEM_cert(der)


def envoy_config(extproc_port: int, ca_pem: str) -> tuple[dict[str, Any], int, int]:
    listen, admin = free_port(), free_port()
    config = build_bootstrap(
        BootstrapParams(
            listen_address="127.0.0.1", listen_port=listen, admin_port=admin,
            extproc_port=extproc_port,
        )
    )  # fmt: skip
    cluster = next(
        c for c in config["static_resources"]["clusters"] if c["name"] == EXTPROC_CLUSTER
    )
    cluster["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/"
            "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": SNI,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                # Pin the generated certificate and check its SAN, as a client with the CA would.
                "validation_context": {
                    "trusted_ca": {"inline_string": ca_pem},
                    "match_typed_subject_alt_names": [
                        {"san_type": "DNS", "matcher": {"exact": SNI}}
                    ],
                },
            },
        },
    }
    return config, listen, admin


async def test_envoy_reaches_a_pod_through_the_picker_over_tls(
    apiserver: FakeApiServer, start_picker: StartPicker, tmp_path: Path
) -> None:
    sim = ManagedProcess(
        "sim",
        [
            sys.executable,
            "-m",
            "extproc",
            "sim",
            "--pods",
            "1",
            "--base-port",
            "0",
            "--host",
            "127.0.0.1",
            "--model",
            MODEL,
            "--speed",
            "20",
        ],
        tmp_path / "sim.log",
    )
    envoy: ManagedProcess | None = None
    try:
        await asyncio.to_thread(sim.wait_for, r"^ready\b", 20)
        pod_name = sim.lines_matching(r"pod=(\S+) address=(\S+)")[0].group(1)
        address = sim.lines_matching(r"pod=(\S+) address=(\S+)")[0].group(2)
        ip, port = parse_address(address)
        apiserver.put("inferencepools", make_pool(port=port))
        apiserver.put("pods", make_pod(pod_name, ip))
        apiserver.put("inferencemodels", make_model("llama2", MODEL))

        picker = await start_picker("--leader-election=false")  # TLS is the default
        grpc_port = picker.ports["grpc"]
        # The health port stays plaintext (kubelet probes); the pool syncs there.
        for _ in range(200):
            if await picker.health("readiness") == "SERVING":
                break
            await asyncio.sleep(0.05)
        assert await picker.health("readiness") == "SERVING"

        # A plaintext client on the ext_proc port fails; a TLS client trusting the cert works.
        plain = await health_status(f"127.0.0.1:{grpc_port}", "readiness")
        assert plain.startswith("UNREACHABLE"), plain
        ca_pem = await asyncio.to_thread(server_certificate, grpc_port)
        tls = await health_status(
            f"127.0.0.1:{grpc_port}", "readiness",
            grpc.ssl_channel_credentials(root_certificates=ca_pem.encode()),
            options=[("grpc.ssl_target_name_override", SNI)],
        )  # fmt: skip
        assert tls == "SERVING"

        config, listen, admin = envoy_config(grpc_port, ca_pem)
        config_path = tmp_path / "envoy.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        envoy = ManagedProcess(
            "envoy",
            [
                envoy_binary(),
                "-c",
                str(config_path),
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "warn",
            ],
            tmp_path / "envoy.log",
        )
        await asyncio.to_thread(wait_envoy_ready, envoy, admin)

        body = {"model": MODEL, "max_tokens": 3,
                "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
        reply = await asyncio.to_thread(request, f"http://127.0.0.1:{listen}", body=body)
        assert reply.status == 200, reply.body
        assert reply.json()["object"] == "chat.completion"
        assert reply.json()["model"] == MODEL
        stats = await asyncio.to_thread(
            lambda: (
                urllib.request.urlopen(
                    f"http://127.0.0.1:{admin}/stats?filter=cluster.extproc.ssl.handshake"
                )
                .read()
                .decode()
            )
        )
        handshakes = re.search(r"cluster\.extproc\.ssl\.handshake: (\d+)", stats)
        assert handshakes is not None and int(handshakes.group(1)) >= 1, stats
    finally:
        if envoy is not None:
            await asyncio.to_thread(envoy.stop, 5.0)
        await asyncio.to_thread(sim.stop, 5.0)
