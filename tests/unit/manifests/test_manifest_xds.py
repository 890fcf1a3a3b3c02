"""manifests/xds (a standalone Envoy fed by `extproc xds`) agrees with itself, the picker's
manifests, the xDS server's flags and the generated bootstrap."""

from __future__ import annotations

import pytest
import yaml
from manifest_helpers import (
    MANIFESTS,
    Doc,
    container,
    container_port,
    docs_in,
    find,
    flag,
    service_port,
)

from extproc.tools.gen_envoy import K8S_BOOTSTRAP, render_k8s_bootstrap

XDS = "extproc-xds"
ENVOY = "inference-gateway-envoy"
POOL = "vllm-llama2-7b-pool"
XDS_DOCS = docs_in(MANIFESTS / "xds")
PICKER_DOCS = docs_in(MANIFESTS / "picker")


def _xds() -> Doc:
    return find(XDS_DOCS, "Deployment", XDS)


def _args() -> list[str]:
    args: list[str] = container(_xds())["args"]
    return args


def _bootstrap() -> Doc:
    text = find(XDS_DOCS, "ConfigMap", "envoy-ads-bootstrap")["data"]["envoy.yaml"]
    bootstrap: Doc = yaml.safe_load(text)
    return bootstrap


def _cluster(name: str) -> Doc:
    clusters = _bootstrap()["static_resources"]["clusters"]
    (cluster,) = [c for c in clusters if c["name"] == name]
    return cluster


def _target(cluster: Doc) -> tuple[str, int]:
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    socket = address["address"]["socket_address"]
    return socket["address"], socket["port_value"]


def test_the_bootstrap_is_generated() -> None:
    assert K8S_BOOTSTRAP.read_text() == render_k8s_bootstrap(), "run `make envoy-config`"


@pytest.mark.parametrize(
    ("port_name", "flag_name", "number"),
    [("grpc", "--port", 18000), ("metrics", "--metrics-port", 9091)],
)
def test_xds_service_container_and_flag_ports_agree(
    port_name: str, flag_name: str, number: int
) -> None:
    service = find(XDS_DOCS, "Service", XDS)
    assert int(flag(_args(), flag_name)) == number
    assert container_port(container(_xds()), port_name) == number
    assert service_port(service, port_name)["port"] == number
    assert (
        service["spec"]["selector"].items()
        <= _xds()["spec"]["template"]["metadata"]["labels"].items()
    )


def test_xds_follows_the_pool_and_is_ready_on_its_grpc_health() -> None:
    args = _args()
    assert args[0] == "xds"
    assert flag(args, "--pool-name") == POOL
    assert flag(args, "--pool-namespace") == "default"
    assert flag(args, "--host") == "0.0.0.0"
    probe = container(_xds())["readinessProbe"]["grpc"]
    assert probe == {"port": int(flag(args, "--port")), "service": ""}


def test_envoy_reaches_the_xds_and_picker_services_by_dns() -> None:
    xds_service = find(XDS_DOCS, "Service", XDS)
    host, port = _target(_cluster("xds"))
    assert host == f"{XDS}.default.svc.cluster.local"
    assert port == service_port(xds_service, "grpc")["port"]
    assert _cluster("xds")["type"] == "STRICT_DNS"
    picker = find(PICKER_DOCS, "Service", "inference-gateway-ext-proc")
    host, port = _target(_cluster("extproc"))
    assert host == "inference-gateway-ext-proc.default.svc.cluster.local"
    assert port == service_port(picker, "grpc")["port"]


def test_envoy_mounts_its_bootstrap_and_listens_where_the_service_points() -> None:
    deployment = find(XDS_DOCS, "Deployment", ENVOY)
    c = container(deployment)
    config = flag(c["args"], "-c")
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    assert volume["configMap"]["name"] == "envoy-ads-bootstrap"
    mount = next(m for m in c["volumeMounts"] if m["name"] == volume["name"])
    (item,) = volume["configMap"]["items"]
    assert config == f"{mount['mountPath']}/{item['path']}"
    listener = _bootstrap()["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert listener["address"] == "0.0.0.0"
    assert container_port(c, "http") == listener["port_value"]
    assert (
        service_port(find(XDS_DOCS, "Service", ENVOY), "http")["targetPort"]
        == listener["port_value"]
    )
    # Admin stays on loopback: it can change the running config.
    assert _bootstrap()["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_xds_rbac_is_read_only() -> None:
    sa = _xds()["spec"]["template"]["spec"]["serviceAccountName"]
    binding = find(XDS_DOCS, "RoleBinding", XDS)
    assert {"kind": "ServiceAccount", "name": sa, "namespace": "default"} in binding["subjects"]
    find(XDS_DOCS, "ServiceAccount", sa)
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in find(XDS_DOCS, "Role", binding["roleRef"]["name"])["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert granted == {
        ("", "pods"): {"get", "list", "watch"},
        ("inference.networking.x-k8s.io", "inferencepools"): {"get", "list", "watch"},
        ("inference.networking.x-k8s.io", "inferencemodels"): {"get", "list", "watch"},
        ("gateway.envoyproxy.io", "backendtrafficpolicies"): {"get", "list", "watch"},
    }
